-- A worker its supervisor saw die is shown dead at once, with why, rather than after its
-- lease: NULL while nobody has said so.
ALTER TABLE workers ADD COLUMN ended text;
