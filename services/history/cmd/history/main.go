// Command history stores every chat message in the database and answers
// history queries over NATS. Configuration comes from HISTORY_* environment
// variables; run it with -h to list them.
package main

import (
	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/shared/service"
)

func main() {
	service.Main("history", history.Prefix, history.Run)
}
