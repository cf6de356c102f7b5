// Command accounts owns the chat's accounts, sessions and mutes and answers
// the auth.* requests over NATS. Configuration comes from ACCOUNTS_*
// environment variables; run it with -h to list them.
package main

import (
	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/shared/service"
)

func main() {
	service.Main("accounts", accounts.Prefix, accounts.Run)
}
