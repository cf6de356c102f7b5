-- How the gateway knew a message's author (account, guest, token); empty
-- for messages published on NATS directly and for rows stored before.
ALTER TABLE messages ADD COLUMN auth TEXT NOT NULL DEFAULT '';
