-- Only the newest epoch's rows can keep the (room, seq) key; the others go.
DELETE FROM messages WHERE epoch <> (SELECT COALESCE(MAX(epoch), 0) FROM epochs);

--bun:split

DROP TABLE epochs;

--bun:split
{{if eq .Dialect "postgres"}}
ALTER TABLE messages DROP CONSTRAINT messages_pkey;

--bun:split

ALTER TABLE messages ADD PRIMARY KEY (room, seq);

--bun:split

ALTER TABLE messages DROP COLUMN epoch;
{{else}}
CREATE TABLE messages_v1 (
	room       TEXT NOT NULL,
	seq        BIGINT NOT NULL,
	"user"     TEXT NOT NULL,
	text       TEXT NOT NULL,
	kind       TEXT NOT NULL,
	client_id  TEXT NOT NULL DEFAULT '',
	created_at {{.Timestamp}} NOT NULL,
	PRIMARY KEY (room, seq)
);

--bun:split

INSERT INTO messages_v1 (room, seq, "user", text, kind, client_id, created_at)
SELECT room, seq, "user", text, kind, client_id, created_at FROM messages;

--bun:split

DROP TABLE messages;

--bun:split

ALTER TABLE messages_v1 RENAME TO messages;
{{end}}
