-- Issue 12, exact money under faults.

-- A paid result's cost is 'held' from the API's answer until Discord has the result (then
-- 'committed'); a result never delivered is refunded ('released') when its kept copy
-- expires. SQLite cannot change a CHECK constraint: the table is rebuilt.
CREATE TABLE charges_new (
    id             INTEGER PRIMARY KEY,
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    generation_id  INTEGER REFERENCES generations(id) ON DELETE SET NULL,
    state          TEXT NOT NULL DEFAULT 'reserved'
                   CHECK (state IN ('reserved', 'held', 'committed', 'released')),
    reserved       REAL NOT NULL CHECK (reserved >= 0),
    amount         REAL CHECK (amount >= 0),
    cost_source    TEXT,
    created_at     REAL NOT NULL,
    settled_at     REAL
);

INSERT INTO charges_new (id, guild_id, user_id, generation_id, state, reserved, amount,
                         cost_source, created_at, settled_at)
SELECT id, guild_id, user_id, generation_id, state, reserved, amount, cost_source,
       created_at, settled_at
FROM charges;

DROP TABLE charges;
ALTER TABLE charges_new RENAME TO charges;
CREATE INDEX charges_member ON charges (guild_id, user_id, created_at);
CREATE INDEX charges_state ON charges (state);
CREATE INDEX charges_generation ON charges (generation_id);
-- The rebuild drops 0007's index on a server's spend: made again.
CREATE INDEX charges_guild ON charges (guild_id, created_at);

-- Results charged before this version but still kept, never delivered: held again, so
-- they are charged when delivered and refunded when they expire, like new ones.
UPDATE charges SET state = 'held', settled_at = NULL
WHERE state = 'committed' AND generation_id IN
      (SELECT id FROM generations WHERE status = 'succeeded'
       AND result_message_id IS NULL AND result_path IS NOT NULL);

-- What a call was measured to cost (its own balance drop, or x-cost), apart from what its
-- member was charged: the cost of an edit is the median of the latest measured costs.
ALTER TABLE generations ADD COLUMN measured_cost REAL;
UPDATE generations SET measured_cost = cost
WHERE cost_source IN ('header', 'balance_drop') AND cost > 0;
CREATE INDEX generations_measured ON generations (model, id) WHERE measured_cost IS NOT NULL;
