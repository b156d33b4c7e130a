-- An edit of a result's image (the "Edit image" menu on it, or a link to it) continues
-- that result's chain: the result is found by its Discord attachment.
CREATE INDEX result_messages_attachment ON result_messages (attachment_id);
