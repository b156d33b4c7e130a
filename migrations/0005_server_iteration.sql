-- A server's own choice of who may continue a result (NULL: the bot-wide ITERATE_AUTHOR_ONLY).
ALTER TABLE guild_settings ADD COLUMN iterate_author_only INTEGER;
