DROP TABLE IF EXISTS messages;

--bun:split

DROP TABLE IF EXISTS users;

--bun:split

DROP TABLE IF EXISTS rooms;
