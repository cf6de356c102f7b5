-- Rendered as a Go template: .Timestamp is the dialect's timestamp type,
-- .Dialect is "postgres" or "sqlite".
--
-- A CHAT stream that is deleted and created again (or loses its store)
-- numbers its messages from 1 again. The stream's epoch, its creation time
-- in microseconds, joins the key, so the new stream's messages are new rows
-- and not duplicates of the old stream's. Rows stored before this migration
-- get epoch 0, which the service hands to the first stream it meets
-- (Store.AddEpoch).
--
-- Adding the column first also guards the migration: run a second time
-- (two SQLite processes migrating the same file at once) it fails on the
-- existing column and changes nothing, and the service retries.
ALTER TABLE messages ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

--bun:split
{{if eq .Dialect "postgres"}}
ALTER TABLE messages DROP CONSTRAINT messages_pkey;

--bun:split

ALTER TABLE messages ADD PRIMARY KEY (room, epoch, seq);
{{else}}
-- SQLite cannot change a primary key: copy into a new table.
CREATE TABLE messages_v2 (
	room       TEXT NOT NULL,
	epoch      BIGINT NOT NULL DEFAULT 0,
	seq        BIGINT NOT NULL,
	"user"     TEXT NOT NULL,
	text       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	client_id  TEXT NOT NULL DEFAULT '',
	created_at {{.Timestamp}} NOT NULL,
	PRIMARY KEY (room, epoch, seq)
);

--bun:split

INSERT INTO messages_v2 (room, epoch, seq, "user", text, kind, client_id, created_at)
SELECT room, epoch, seq, "user", text, kind, client_id, created_at FROM messages;

--bun:split

DROP TABLE messages;

--bun:split

ALTER TABLE messages_v2 RENAME TO messages;
{{end}}
--bun:split

-- Every epoch the service has stored messages of, so the newest is known
-- and older ones can be named.
CREATE TABLE epochs (
	epoch      BIGINT PRIMARY KEY,
	first_seen {{.Timestamp}} NOT NULL
);
