-- Martian Doves PostgreSQL store, schema version 1.
-- Runs with search_path set to the store's schema, inside the migration transaction.

-- One row per state, roots and successors alike: the table *is* the lineage.
CREATE TABLE states (
    -- File name in the directory format (countdown.state-2); what export writes.
    -- Byte order (C collation): cheaper comparisons, and a lineage (x.state-1,
    -- x.state-2~3 ...) is one key range, so history needs no index of its own.
    name          text COLLATE "C" PRIMARY KEY,
    -- The state whose tick produced this one; NULL for a submitted root.
    parent        text,
    -- The submitted root this lineage started from.
    root          text COLLATE "C" NOT NULL,
    -- Successor index: 0 for a root, parent's step + 1 for a successor.
    step          integer NOT NULL DEFAULT 0,
    state         text NOT NULL,
    payload       jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'in_progress', 'done', 'failed')),
    -- Failed attempts so far, and their one-line summaries, oldest first.
    attempts      integer NOT NULL DEFAULT 0,
    errors        jsonb NOT NULL DEFAULT '[]'::jsonb,
    -- A pending state is not claimed before this (retry backoff).
    not_before    timestamptz NOT NULL DEFAULT now(),
    submitted_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at    timestamptz,
    finished_at   timestamptz,
    -- Worker holding (or that last held) the claim.
    worker        text,
    lease_expires timestamptz,
    -- Fencing token of the current (or last) claim. It stays on the row after the
    -- claim ends so that an operation retried after a lost connection can tell
    -- "I already did this" from "my claim was taken over".
    token         text,
    -- Machine-readable failure reason (Failure.as_dict plus worker, failed_at).
    reason        jsonb,
    -- Submission batch id: a submit retried after a lost connection recognises its rows.
    batch         text
);

-- Few indexes on purpose: a transition inserts one row and updates another (not a
-- HOT update, status changes), and each index costs an insertion on both.
-- Finding work: only pending rows are indexed, so the cost follows what is pending.
CREATE INDEX states_runnable ON states (not_before) WHERE status = 'pending';
-- Recovering expired leases on every claim: only in-progress rows.
CREATE INDEX states_leases ON states (lease_expires) WHERE status = 'in_progress';
CREATE INDEX states_failed ON states (finished_at) WHERE status = 'failed';

-- Live workers, for liveness and `doves status`.
CREATE TABLE workers (
    name       text PRIMARY KEY,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);
