// Package chat is the wire contract shared by every service: NATS subject
// names, the JSON payloads that travel on them (chat messages, bot commands,
// history queries, accounts and sessions), the key formats of the KV buckets
// other services watch, and the validation of room and user names that
// become subject tokens.
package chat
