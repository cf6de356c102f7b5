-- Rendered as a Go template: .Timestamp is the dialect's timestamp type.
-- IF NOT EXISTS keeps the migration harmless when two SQLite processes
-- migrate the same file at once (Postgres serialises them with a lock).
CREATE TABLE IF NOT EXISTS rooms (
	name            TEXT PRIMARY KEY,
	created_at      {{.Timestamp}} NOT NULL,
	last_message_at {{.Timestamp}} NOT NULL,
	message_count   BIGINT NOT NULL DEFAULT 0
);

--bun:split

CREATE INDEX IF NOT EXISTS rooms_last_message_at_idx ON rooms (last_message_at);

--bun:split

CREATE TABLE IF NOT EXISTS users (
	name       TEXT PRIMARY KEY,
	first_seen {{.Timestamp}} NOT NULL,
	last_seen  {{.Timestamp}} NOT NULL
);

--bun:split

-- seq is the CHAT stream sequence. The primary key (room, seq) is the unique
-- key that makes every redelivery of a message the same row, and its index
-- serves the per-room seq range queries of history requests.
CREATE TABLE IF NOT EXISTS messages (
	room       TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	"user"     TEXT NOT NULL,
	text       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	client_id  TEXT NOT NULL DEFAULT '',
	created_at {{.Timestamp}} NOT NULL,
	PRIMARY KEY (room, seq)
);
