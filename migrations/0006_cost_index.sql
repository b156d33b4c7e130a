-- The expected cost of an edit is the average of the latest observed costs of the model.
CREATE INDEX generations_cost ON generations (model, cost_source, id);
