-- Every edit waits in the queue as a row, so a crash or restart loses nothing.
CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY,
    guild_id             INTEGER,
    channel_id           INTEGER NOT NULL,
    user_id              INTEGER NOT NULL,
    request              TEXT NOT NULL,  -- JSON: options, image description, parent, roles
    reply_to_message_id  INTEGER,
    state                TEXT NOT NULL DEFAULT 'queued'
                         CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    created_at           REAL NOT NULL,
    started_at           REAL,
    finished_at          REAL
);

CREATE INDEX jobs_state ON jobs (state);

ALTER TABLE generations ADD COLUMN job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL;
-- The result's bytes on disk, kept until it is delivered (then the file is removed).
ALTER TABLE generations ADD COLUMN result_path TEXT;
