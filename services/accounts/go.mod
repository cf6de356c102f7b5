module github.com/natschat/chat/services/accounts

go 1.26.0

require (
	github.com/nats-io/nats-server/v2 v2.15.2
	github.com/nats-io/nats.go v1.55.0
	github.com/natschat/chat/shared v0.0.0
	github.com/prometheus/client_golang v1.25.0
	github.com/uptrace/bun v1.2.18
	github.com/uptrace/bun/dialect/pgdialect v1.2.18
	github.com/uptrace/bun/dialect/sqlitedialect v1.2.18
	github.com/uptrace/bun/driver/pgdriver v1.2.18
	golang.org/x/crypto v0.58.0
	golang.org/x/sync v0.25.0
	modernc.org/sqlite v1.62.0
)

replace github.com/natschat/chat/shared => ../../shared
