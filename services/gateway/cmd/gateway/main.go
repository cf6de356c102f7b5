// Command gateway serves the chat's web UI and bridges browser WebSockets to
// NATS. Run it with -h for its configuration.
package main

import (
	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/config"
)

func main() {
	config.Main("gateway", "GATEWAY", gateway.Run)
}
