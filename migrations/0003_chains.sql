-- Every message that shows a generation's image (the result, and any Undo re-post),
-- so a reply or a button on any of them finds its place in the chain.
CREATE TABLE result_messages (
    message_id     INTEGER PRIMARY KEY,
    channel_id     INTEGER NOT NULL,
    generation_id  INTEGER NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    attachment_id  INTEGER,
    url            TEXT,
    posted_at      REAL NOT NULL,
    deleted_at     REAL
);

CREATE INDEX result_messages_generation ON result_messages (generation_id);

-- What Discord told us about the input, so a later Reroll can check it again.
ALTER TABLE generations ADD COLUMN input_filename TEXT;
ALTER TABLE generations ADD COLUMN input_content_type TEXT;
ALTER TABLE generations ADD COLUMN input_size INTEGER;
ALTER TABLE generations ADD COLUMN input_width INTEGER;
ALTER TABLE generations ADD COLUMN input_height INTEGER;
