-- An edit whose input the bot converted (HEIC, AVIF, TIFF, BMP) says so on every post of
-- its result, re-posts (Undo, Deliver) included: they are rebuilt from this row.
ALTER TABLE generations ADD COLUMN input_converted_from TEXT;
