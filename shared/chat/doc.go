// Package chat is the wire contract shared by every service: NATS subject
// names, the JSON payloads that travel on them, and the validation of room
// and user names that become subject tokens.
package chat
