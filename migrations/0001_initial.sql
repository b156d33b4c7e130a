-- Every edit attempt that reached the API, and every credit balance the API reported.
CREATE TABLE generations (
    id                    INTEGER PRIMARY KEY,
    guild_id              INTEGER,
    channel_id            INTEGER NOT NULL,
    user_id               INTEGER NOT NULL,
    parent_id             INTEGER REFERENCES generations(id) ON DELETE SET NULL,
    source                TEXT NOT NULL,
    interaction_id        INTEGER,
    model                 TEXT NOT NULL,
    prompt                TEXT NOT NULL,
    seed                  INTEGER NOT NULL,
    seed_explicit         INTEGER NOT NULL DEFAULT 0,
    guidance              REAL NOT NULL,
    steps                 INTEGER NOT NULL,
    aspect_ratio          TEXT NOT NULL,
    output_format         TEXT NOT NULL,
    quality               INTEGER NOT NULL,
    input_mode            TEXT NOT NULL,
    input_url             TEXT NOT NULL,
    input_attachment_id   INTEGER,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'succeeded', 'failed')),
    failure_reason        TEXT,
    api_seed              INTEGER,
    api_time_s            REAL,
    api_request_id        TEXT,
    cost                  REAL,
    cost_source           TEXT CHECK (cost_source IN ('header', 'balance_drop', 'estimate')),
    remaining_credits     REAL,
    result_reencoded      INTEGER NOT NULL DEFAULT 0,
    result_channel_id     INTEGER,
    result_message_id     INTEGER,
    result_attachment_id  INTEGER,
    result_url            TEXT,
    created_at            REAL NOT NULL,
    finished_at           REAL
);

CREATE INDEX generations_user ON generations (guild_id, user_id, created_at);
CREATE INDEX generations_message ON generations (result_message_id);
CREATE INDEX generations_status ON generations (status);

CREATE TABLE credit_readings (
    id             INTEGER PRIMARY KEY,
    at             REAL NOT NULL,
    remaining      REAL NOT NULL,
    generation_id  INTEGER REFERENCES generations(id) ON DELETE SET NULL
);
