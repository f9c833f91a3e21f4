-- Retries a handler asked for (raise Retry): counted apart from failed attempts, with a
-- bound of their own (--max-requested-retries).
ALTER TABLE states ADD COLUMN retries integer NOT NULL DEFAULT 0;
