-- Rendered as a Go template: .Timestamp is the dialect's timestamp type.
-- IF NOT EXISTS keeps the migration harmless when two SQLite processes
-- migrate the same file at once (Postgres serialises them with a lock).

-- name_key is the lower-case name: names are unique ignoring letter case.
CREATE TABLE IF NOT EXISTS accounts (
	name_key            TEXT PRIMARY KEY,
	name                TEXT NOT NULL,
	password_hash       TEXT NOT NULL,
	admin               BOOLEAN NOT NULL DEFAULT FALSE,
	created_at          {{.Timestamp}} NOT NULL,
	password_changed_at {{.Timestamp}} NOT NULL
);

--bun:split

-- token_hash is the hex SHA-256 of the session token; the token itself is
-- never stored.
CREATE TABLE IF NOT EXISTS sessions (
	token_hash  TEXT PRIMARY KEY,
	account_key TEXT NOT NULL REFERENCES accounts (name_key),
	created_at  {{.Timestamp}} NOT NULL,
	expires_at  {{.Timestamp}} NOT NULL
);

--bun:split

CREATE INDEX IF NOT EXISTS sessions_account_key_idx ON sessions (account_key);

--bun:split

CREATE INDEX IF NOT EXISTS sessions_expires_at_idx ON sessions (expires_at);

--bun:split

CREATE TABLE IF NOT EXISTS mutes (
	room       TEXT NOT NULL,
	user_key   TEXT NOT NULL,
	"user"     TEXT NOT NULL,
	muted_by   TEXT NOT NULL,
	until      {{.Timestamp}} NOT NULL,
	created_at {{.Timestamp}} NOT NULL,
	PRIMARY KEY (room, user_key)
);

--bun:split

CREATE INDEX IF NOT EXISTS mutes_until_idx ON mutes (until);

--bun:split

-- One fixed window of attempts per limited thing ("name:alice",
-- "addr:203.0.113.7"), shared by every instance of the service.
CREATE TABLE IF NOT EXISTS rate_limits (
	limit_key    TEXT PRIMARY KEY,
	window_start {{.Timestamp}} NOT NULL,
	attempts     INTEGER NOT NULL
);
