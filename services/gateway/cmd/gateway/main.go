// Command gateway serves the chat's web UI and bridges browser WebSockets to
// NATS. Run it with -h for its configuration.
package main

import (
	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/shared/service"
)

func main() {
	service.Main("gateway", gateway.Prefix, gateway.Run)
}
