-- A server's spend kept as running totals per UTC day, so that a reservation checks the
-- budget by adding up at most a month of day rows instead of every charge of the period.
-- Triggers on `charges` keep them: no write to a charge can forget them.

-- What one charge counts, defined once (virtual: computed, never stored). Its day is
-- floor(created_at / 86400), the UTC day; CAST truncates towards zero and the quotient
-- can round up to the next whole day, so it steps back a day when that day starts after
-- the charge. It counts what the budget check counted before: its `amount` while committed
-- or held (spent), its `reserved` while reserved (held), nothing once released. In integer
-- nano-credits (1e-9, the ledger's EPSILON): adding and taking back the same charge returns
-- a total exactly to where it was, where REAL totals would drift.
ALTER TABLE charges ADD COLUMN spend_day INTEGER GENERATED ALWAYS AS (
    CAST(created_at / 86400 AS INTEGER) - (CAST(created_at / 86400 AS INTEGER) * 86400 > created_at)
) VIRTUAL;
ALTER TABLE charges ADD COLUMN spent_nano INTEGER GENERATED ALWAYS AS (
    CASE WHEN state IN ('committed', 'held')
         THEN CAST(ROUND(COALESCE(amount, 0) * 1e9) AS INTEGER) ELSE 0 END
) VIRTUAL;
ALTER TABLE charges ADD COLUMN held_nano INTEGER GENERATED ALWAYS AS (
    CASE WHEN state = 'reserved' THEN CAST(ROUND(reserved * 1e9) AS INTEGER) ELSE 0 END
) VIRTUAL;

-- Every budget window starts at a UTC midnight (bot/periods.py), or at 0 for "none".
CREATE TABLE server_spend (
    guild_id  INTEGER NOT NULL,
    day       INTEGER NOT NULL,            -- charges.spend_day
    spent     INTEGER NOT NULL DEFAULT 0,  -- nano-credits committed or held
    held      INTEGER NOT NULL DEFAULT 0,  -- nano-credits reserved by running edits
    PRIMARY KEY (guild_id, day)
) WITHOUT ROWID;

INSERT INTO server_spend (guild_id, day, spent, held)
SELECT guild_id, spend_day, SUM(spent_nano), SUM(held_nano) FROM charges
GROUP BY guild_id, spend_day;

CREATE TRIGGER server_spend_insert AFTER INSERT ON charges
BEGIN
    INSERT INTO server_spend (guild_id, day, spent, held)
    VALUES (NEW.guild_id, NEW.spend_day, NEW.spent_nano, NEW.held_nano)
    ON CONFLICT (guild_id, day) DO UPDATE
    SET spent = spent + excluded.spent, held = held + excluded.held;
END;

CREATE TRIGGER server_spend_update
AFTER UPDATE OF guild_id, state, reserved, amount, created_at ON charges
BEGIN
    INSERT INTO server_spend (guild_id, day, spent, held)
    VALUES (OLD.guild_id, OLD.spend_day, -OLD.spent_nano, -OLD.held_nano)
    ON CONFLICT (guild_id, day) DO UPDATE
    SET spent = spent + excluded.spent, held = held + excluded.held;
    INSERT INTO server_spend (guild_id, day, spent, held)
    VALUES (NEW.guild_id, NEW.spend_day, NEW.spent_nano, NEW.held_nano)
    ON CONFLICT (guild_id, day) DO UPDATE
    SET spent = spent + excluded.spent, held = held + excluded.held;
END;

CREATE TRIGGER server_spend_delete AFTER DELETE ON charges
BEGIN
    INSERT INTO server_spend (guild_id, day, spent, held)
    VALUES (OLD.guild_id, OLD.spend_day, -OLD.spent_nano, -OLD.held_nano)
    ON CONFLICT (guild_id, day) DO UPDATE
    SET spent = spent + excluded.spent, held = held + excluded.held;
END;
