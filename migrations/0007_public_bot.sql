-- A public bot: the operator gives each server a budget (none: SERVER_BUDGET_CREDITS),
-- chooses which servers are served (on top of ALLOWED_GUILD_IDS), can pause every edit,
-- and a server's admins may turn the safety filter off in age-restricted channels.
CREATE TABLE server_budgets (
    guild_id  INTEGER PRIMARY KEY,
    credits   REAL NOT NULL CHECK (credits >= 0)
);

CREATE TABLE server_access (
    guild_id  INTEGER PRIMARY KEY,
    allowed   INTEGER NOT NULL CHECK (allowed IN (0, 1))
);

-- Bot-wide state the operator sets (e.g. a pause), kept across restarts.
CREATE TABLE bot_state (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

ALTER TABLE guild_settings ADD COLUMN safety_filter_off INTEGER;

-- A server's spend this period is read before every edit.
CREATE INDEX charges_guild ON charges (guild_id, created_at);
