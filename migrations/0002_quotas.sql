-- Per-member allowances in Segmind credits, the money ledger, blocks and the admin audit trail.
CREATE TABLE guild_quotas (
    guild_id    INTEGER PRIMARY KEY,
    credits     REAL NOT NULL CHECK (credits >= 0),
    period      TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'none'))
);

CREATE TABLE role_quotas (
    guild_id    INTEGER NOT NULL,
    role_id     INTEGER NOT NULL,
    credits     REAL NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (guild_id, role_id)
);

CREATE TABLE member_quotas (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    credits     REAL NOT NULL CHECK (credits >= 0),
    PRIMARY KEY (guild_id, user_id)
);

-- `/admin quota reset` clears usage before this instant for the member.
CREATE TABLE usage_resets (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    reset_at    REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

CREATE TABLE blocks (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    reason      TEXT,
    blocked_by  INTEGER NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- One row per edit that passed the quota check: reserved, then committed or released.
CREATE TABLE charges (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    generation_id  INTEGER REFERENCES generations(id) ON DELETE SET NULL,
    state          TEXT NOT NULL DEFAULT 'reserved'
                   CHECK (state IN ('reserved', 'committed', 'released')),
    reserved       REAL NOT NULL CHECK (reserved >= 0),
    amount         REAL CHECK (amount >= 0),
    cost_source    TEXT,
    created_at     REAL NOT NULL,
    settled_at     REAL
);

CREATE INDEX charges_member ON charges (guild_id, user_id, created_at);
CREATE INDEX charges_state ON charges (state);

CREATE TABLE guild_settings (
    guild_id           INTEGER PRIMARY KEY,
    alerts_channel_id  INTEGER
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    actor_id    INTEGER NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    before      TEXT,
    after       TEXT,
    at          REAL NOT NULL
);

CREATE INDEX audit_guild ON audit_log (guild_id, at);
