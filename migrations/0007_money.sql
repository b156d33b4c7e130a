-- Issue 12, exact money under faults.

-- What a call was measured to cost (its own balance drop, or x-cost), apart from what its
-- member was charged: the cost of an edit is the median of the latest measured costs.
ALTER TABLE generations ADD COLUMN measured_cost REAL;
UPDATE generations SET measured_cost = cost
WHERE cost_source IN ('header', 'balance_drop') AND cost > 0;
CREATE INDEX generations_measured ON generations (model, id) WHERE measured_cost IS NOT NULL;
