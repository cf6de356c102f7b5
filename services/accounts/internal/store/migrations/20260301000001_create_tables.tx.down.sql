DROP TABLE IF EXISTS rate_limits;

--bun:split

DROP TABLE IF EXISTS mutes;

--bun:split

DROP TABLE IF EXISTS sessions;

--bun:split

DROP TABLE IF EXISTS accounts;
