-- Named queries of the PostgreSQL store. Each starts at a "-- name: NAME" line.
-- Each is a single statement, atomic; most run in autocommit (one round trip, one
-- transaction), those that wait, wake or spawn in a transaction with `lock` first. Times come from the database clock (now()), so the clocks of
-- the worker hosts never matter for leases. %(channel)s is the store's NOTIFY channel.

-- name: version_table
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: has_versions
SELECT to_regclass(%(table)s)

-- name: version
SELECT coalesce(max(version), 0) FROM schema_version

-- name: set_version
INSERT INTO schema_version (version) VALUES (%(version)s)

-- name: claim
-- Takes over expired leases first (one attempt used, an error recorded), then the
-- oldest due pending states; SKIP LOCKED lets concurrent claimers pass each other.
-- Only states named in %(states)s (the machines the worker has; NULL: every state) are taken.
-- A claim need not wait for its WAL flush: a server crash that undoes it undoes only a
-- claim (the state is pending again, and the tick's commit, fenced, is refused).
WITH quick AS (
    SELECT set_config('synchronous_commit', 'off', true)
), expired AS (
    SELECT name FROM states
    WHERE status = 'in_progress' AND lease_expires < now()
      AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
    ORDER BY lease_expires
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT name FROM states
    WHERE status = 'pending' AND not_before <= now()
      AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
    ORDER BY not_before
    LIMIT greatest(%(limit)s - (SELECT count(*) FROM expired), 0)
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT name, taken_over, row_number() OVER () AS n
    FROM (SELECT name, true AS taken_over FROM expired UNION ALL SELECT name, false FROM due) AS both_kinds
)
UPDATE states AS s SET
    attempts = s.attempts + CASE WHEN s.status = 'in_progress' THEN 1 ELSE 0 END,
    errors = CASE WHEN s.status = 'in_progress'
        THEN s.errors || jsonb_build_array('worker ' || coalesce(s.worker, '?') || ' stopped renewing its lease')
        ELSE s.errors END,
    status = 'in_progress',
    worker = %(worker)s,
    token = %(batch)s::text || '.' || picked.n,
    claimed_at = now(),
    lease_expires = now() + %(lease)s * interval '1 second'
FROM picked
WHERE s.name = picked.name AND (SELECT count(*) FROM quick) = 1
RETURNING s.name, s.state, s.payload, s.parent, s.token, s.attempts, s.errors, s.retries, picked.taken_over,
    extract(epoch FROM s.not_before)::float8, s.root, s.wait, s.origin_parent, s.origin_index

-- name: adopt
-- After a claim whose reply was lost with the connection: the rows it did claim.
SELECT name, state, payload, parent, token, attempts, errors, retries, false AS taken_over,
    extract(epoch FROM not_before)::float8, root, wait, origin_parent, origin_index
FROM states
WHERE status = 'in_progress' AND lease_expires IS NOT NULL AND token LIKE %(pattern)s

-- name: commit_end
-- The fast paths of a commit (the general one follows). A machine's last tick: the
-- state is marked done only while it is still claimed with this token.
UPDATE states SET status = 'done', finished_at = now(), lease_expires = NULL
WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
RETURNING NULL::text

-- name: commit_keep
-- Parent done and successor inserted, already claimed by the same worker (chaining),
-- under the first successor name. If that name exists the insert fails, the whole
-- statement with it, and the general commit below picks the name. A successor belongs
-- to its parent's machine (root) and, in a child machine, keeps its origin.
WITH parent AS (
    UPDATE states SET status = 'done', finished_at = now(), lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
    RETURNING root, step, origin_parent, origin_index
)
INSERT INTO states (name, parent, root, step, state, payload, status, worker, token, claimed_at, lease_expires,
                    origin_parent, origin_index)
SELECT %(child)s::text, %(name)s::text, root, step + 1, %(state)s::text, %(payload)s::jsonb,
       'in_progress', %(worker)s::text, %(child_token)s::text, now(), now() + %(lease)s * interval '1 second',
       origin_parent, origin_index
FROM parent
RETURNING name

-- name: commit_pass
-- As commit_keep, the successor left pending for any worker (and a wake-up sent, which
-- also makes idle workers look again at the next due time: a timer, %(not_before)s).
WITH parent AS (
    UPDATE states SET status = 'done', finished_at = now(), lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
    RETURNING root, step, origin_parent, origin_index
), child AS (
    INSERT INTO states (name, parent, root, step, state, payload, not_before, origin_parent, origin_index)
    SELECT %(child)s::text, %(name)s::text, root, step + 1, %(state)s::text, %(payload)s::jsonb,
           coalesce(to_timestamp(%(not_before)s::float8), now()), origin_parent, origin_index
    FROM parent
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM child
)
SELECT name FROM child WHERE (SELECT count(*) FROM wake) >= 0

-- name: commit_batch
-- Several plain commits (no waiting entry, no children, no lock) in one statement: one
-- transaction, one WAL flush (see group.py). Each is commit_end, commit_keep or commit_pass
-- (%(states)s NULL: the end; %(keeps)s: claimed at once). A parent is settled only while
-- claimed with its token and only if its successor's first name is free; one left out is
-- committed by the general path (a taken name, a lost claim, an earlier try that did it).
WITH item AS (
    SELECT * FROM unnest(%(names)s::text[], %(tokens)s::text[], %(children)s::text[], %(states)s::text[],
                         %(payloads)s::text[], %(keeps)s::boolean[], %(workers)s::text[], %(child_tokens)s::text[],
                         %(not_befores)s::float8[])
        AS i(name, token, child, state, payload, keep, worker, child_token, not_before)
), parent AS (
    UPDATE states AS s SET status = 'done', finished_at = now(), lease_expires = NULL
    FROM item
    WHERE s.name = ANY(%(names)s::text[]) AND s.name = item.name AND s.token = item.token AND s.status = 'in_progress'
      AND (item.state IS NULL OR NOT EXISTS (SELECT 1 FROM states AS taken WHERE taken.name = item.child))
    RETURNING s.name, s.root, s.step, s.origin_parent, s.origin_index
), child AS (
    INSERT INTO states (name, parent, root, step, state, payload, status, worker, token, claimed_at, lease_expires,
                        not_before, origin_parent, origin_index)
    SELECT item.child, parent.name, parent.root, parent.step + 1, item.state, item.payload::jsonb,
           CASE WHEN item.keep THEN 'in_progress' ELSE 'pending' END,
           CASE WHEN item.keep THEN item.worker END,
           CASE WHEN item.keep THEN item.child_token END,
           CASE WHEN item.keep THEN now() END,
           CASE WHEN item.keep THEN now() + %(lease)s * interval '1 second' END,
           coalesce(to_timestamp(item.not_before), now()), parent.origin_parent, parent.origin_index
    FROM parent JOIN item ON item.name = parent.name
    WHERE item.state IS NOT NULL
    RETURNING name, parent, status
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM child WHERE status = 'pending' LIMIT 1) AS w
)
SELECT parent.name, child.name FROM parent LEFT JOIN child ON child.parent = parent.name
WHERE (SELECT count(*) FROM wake) >= 0

-- name: commit
-- Fenced commit: the parent is marked done only while it is still claimed with this
-- token, and only together with its successor (inserted claimed by the same worker
-- when %(keep)s). The successor takes the first candidate name that is free; a
-- candidate that already holds this parent's successor (a lineage re-run after
-- `reset`) is reused, one held by another machine's state is skipped. A concurrent
-- insert of the chosen name aborts the whole statement (unique violation): retried.
-- A waiting entry (%(wait)s) is due when what it waits for is there (wait_due); the
-- caller holds the lock of what would wake it, so nothing sent meanwhile is missed.
WITH target AS (
    SELECT c.candidate AS name, s.name IS NOT NULL AS existing
    FROM unnest(%(candidates)s::text[]) WITH ORDINALITY AS c(candidate, position)
    LEFT JOIN states s ON s.name = c.candidate
    WHERE s.name IS NULL OR s.parent = %(name)s
    ORDER BY c.position
    LIMIT 1
), parent AS (
    UPDATE states SET status = 'done', finished_at = now(), lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
      AND (%(state)s::text IS NULL OR EXISTS (SELECT 1 FROM target))
    RETURNING name, root, step, origin_parent, origin_index
), child AS (
    INSERT INTO states (name, parent, root, step, state, payload, status, worker, token, claimed_at, lease_expires,
                        not_before, wait, origin_parent, origin_index)
    SELECT target.name, parent.name, parent.root, parent.step + 1, %(state)s::text, %(payload)s::jsonb,
           CASE WHEN %(keep)s THEN 'in_progress' ELSE 'pending' END,
           CASE WHEN %(keep)s THEN %(worker)s::text END,
           CASE WHEN %(keep)s THEN %(child_token)s::text END,
           CASE WHEN %(keep)s THEN now() END,
           CASE WHEN %(keep)s THEN now() + %(lease)s * interval '1 second' END,
           CASE WHEN %(wait)s::jsonb IS NULL THEN coalesce(to_timestamp(%(not_before)s::float8), now())
                ELSE wait_due(target.name, parent.root, parent.name, %(wait)s::jsonb) END,
           %(wait)s::jsonb, parent.origin_parent, parent.origin_index
    FROM parent, target
    WHERE %(state)s::text IS NOT NULL AND NOT target.existing
    RETURNING name, status
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM child WHERE status = 'pending'
)
SELECT (SELECT name FROM child) FROM parent WHERE (SELECT count(*) FROM wake) >= 0

-- name: lock
-- Serialises, until the transaction ends, everything that could wake one waiting entry
-- (%(key)s: a machine's mailbox, or a spawner's join) with what makes it wait, so a
-- wake-up and a wait settled at the same moment never miss each other.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))

-- name: fence
-- Locks a claimed row for the rest of the transaction (no takeover meanwhile) and says
-- who holds it.
SELECT status, token FROM states WHERE name = %(name)s FOR UPDATE

-- name: spawn
-- Children of %(spawner)s: roots of machines of their own, linked to it by origin. A
-- name already taken is left alone (the caller reuses it if it is this very child).
INSERT INTO states (name, root, state, payload, origin_parent, origin_index)
SELECT n, n, s, p::jsonb, %(spawner)s::text, i
FROM unnest(%(names)s::text[], %(states)s::text[], %(payloads)s::text[], %(indexes)s::int[]) AS u(n, s, p, i)
ON CONFLICT (name) DO NOTHING
RETURNING name

-- name: origins
SELECT name, origin_parent, origin_index FROM states WHERE name = ANY(%(names)s::text[])

-- name: wake_join
-- A child machine of %(spawner)s ended: its join runs once no child of it runs any more.
WITH woken AS (
    UPDATE states SET not_before = now()
    WHERE root = (SELECT root FROM states WHERE name = %(spawner)s) AND wait IS NOT NULL AND status = 'pending'
      AND parent = %(spawner)s AND not_before > now()
      AND NOT EXISTS (SELECT 1 FROM states WHERE origin_parent = %(spawner)s AND status IN ('pending', 'in_progress'))
    RETURNING name
)
SELECT pg_notify(%(channel)s, '') FROM woken

-- name: release_wait
-- A waiting entry given back waits again (or is due at once if what it waits for is there).
WITH given AS (
    UPDATE states SET status = 'pending', not_before = wait_due(name, root, parent, wait), lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
    RETURNING name, not_before
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM given WHERE not_before <= now()
)
SELECT name FROM given, (SELECT count(*) FROM wake) AS w

-- name: machine_live
-- Whether a machine still runs: a live state in its lineage (one key range of the primary
-- key, as for `history`).
SELECT EXISTS (
    SELECT 1 FROM states
    WHERE root = %(root)s AND (name = %(root)s OR (name >= %(low)s AND name < %(high)s))
      AND status IN ('pending', 'in_progress'))

-- name: sent
-- After a send whose reply was lost with the connection: whether it was sent.
SELECT 1 FROM events WHERE machine = %(machine)s AND sent_id = %(sent)s

-- name: send
WITH sent AS (
    INSERT INTO events (machine, name, data, sent_id) VALUES (%(machine)s, %(event)s, %(data)s::jsonb, %(sent)s)
    RETURNING seq
), woken AS (
    UPDATE states SET not_before = now()
    WHERE root = %(machine)s AND wait IS NOT NULL AND status = 'pending' AND wait ->> 'event' = %(event)s
      AND not_before > now()
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM woken
)
SELECT (SELECT seq FROM sent), (SELECT count(*) FROM wake)

-- name: take_event
-- The event bound to this waiting entry, else the first untaken one of its name, bound to
-- it now: only while it is claimed with this token (a late worker binds nothing).
WITH bound AS (
    SELECT seq, name, data, sent_at FROM events WHERE taken_by = %(name)s
), next AS (
    SELECT seq FROM events
    WHERE machine = %(machine)s AND name = %(event)s AND taken_by IS NULL
      AND NOT EXISTS (SELECT 1 FROM bound)
      AND EXISTS (SELECT 1 FROM states WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress')
    ORDER BY seq LIMIT 1
    FOR UPDATE
), taken AS (
    UPDATE events e SET taken_by = %(name)s FROM next WHERE e.seq = next.seq
    RETURNING e.seq, e.name, e.data, e.sent_at
)
SELECT name, data, extract(epoch FROM sent_at)::float8 FROM bound
UNION ALL
SELECT name, data, extract(epoch FROM sent_at)::float8 FROM taken

-- name: children
-- How each child of %(spawner)s ended: its lineage's last state, or NULL while one runs.
SELECT c.name, last.state, last.status, last.payload, last.reason
FROM states c
LEFT JOIN LATERAL (
    SELECT s.state, s.status, s.payload, s.reason FROM states s
    WHERE s.root = c.name AND (s.name = c.name OR (s.name >= c.name || '-' AND s.name < c.name || '.'))
    ORDER BY s.step DESC, s.name DESC LIMIT 1
) AS last ON true
WHERE c.origin_parent = %(spawner)s AND c.name = c.root
ORDER BY c.origin_index

-- name: owner
-- Who holds a state now: decides between "already done by me" and "taken over".
SELECT status, token FROM states WHERE name = %(name)s

-- name: kept_child
-- The successor an earlier attempt of this commit inserted already claimed for us
-- (tokens are unique; only the few claimed rows are looked at).
SELECT name FROM states WHERE status = 'in_progress' AND lease_expires IS NOT NULL AND token = %(child_token)s AND parent = %(name)s

-- name: heartbeat
-- Renews the leases still held with these tokens and returns every token still on
-- its row (as of the statement's start): a claim committed or given back meanwhile
-- is not "lost", only one whose row now carries another worker's token.
WITH seen AS (
    INSERT INTO workers (name, host, pid, lease_seconds, states)
    VALUES (%(worker)s, %(host)s, %(pid)s, %(lease)s, %(states)s::text[])
    ON CONFLICT (name) DO UPDATE SET last_seen = now()
), renewed AS (
    -- A row locked now is being committed or given back: it needs no renewal, and skipping
    -- it means a heartbeat never waits for, nor deadlocks with, a batch of commits.
    UPDATE states AS s SET lease_expires = now() + %(lease)s * interval '1 second'
    FROM (SELECT h.name FROM states AS h
          JOIN unnest(%(names)s::text[], %(tokens)s::text[]) AS c(name, token) ON h.name = c.name AND h.token = c.token
          WHERE h.status = 'in_progress'
          FOR UPDATE OF h SKIP LOCKED) AS mine
    WHERE s.name = mine.name
)
SELECT s.token FROM states AS s
JOIN unnest(%(names)s::text[], %(tokens)s::text[]) AS c(name, token) ON s.name = c.name AND s.token = c.token

-- name: retry_later
-- A failed attempt records its error (the newest %(kept)s kept); a retry the handler asked for
-- (%(requested)s) counts a retry instead.
WITH given AS (
    UPDATE states SET status = 'pending',
        attempts = attempts + CASE WHEN %(requested)s THEN 0 ELSE 1 END,
        retries = retries + CASE WHEN %(requested)s THEN 1 ELSE 0 END,
        errors = CASE WHEN %(requested)s THEN errors ELSE (
            SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb) FROM (
                SELECT e, i FROM jsonb_array_elements(errors || jsonb_build_array(%(error)s::text))
                    WITH ORDINALITY AS kept(e, i)
                ORDER BY i DESC LIMIT %(kept)s) AS newest) END,
        not_before = now() + %(delay)s * interval '1 second', lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM given
)
SELECT name FROM given, (SELECT count(*) FROM wake) AS w

-- name: release
WITH given AS (
    UPDATE states SET status = 'pending', not_before = now(), lease_expires = NULL
    WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM given
)
SELECT name FROM given, (SELECT count(*) FROM wake) AS w

-- name: fail
UPDATE states SET status = 'failed', finished_at = now(), lease_expires = NULL,
    attempts = %(attempts)s, errors = %(errors)s::jsonb, reason = %(reason)s::jsonb
WHERE name = %(name)s AND token = %(token)s AND status = 'in_progress'
RETURNING name

-- name: register_worker
WITH pruned AS (
    -- Registrations silent for ten leases belong to workers that died long ago.
    DELETE FROM workers WHERE last_seen < now() - 10 * %(lease)s * interval '1 second'
)
INSERT INTO workers (name, host, pid, lease_seconds, states)
VALUES (%(worker)s, %(host)s, %(pid)s, %(lease)s, %(states)s::text[])
ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = now(), last_seen = now(),
    lease_seconds = excluded.lease_seconds, states = excluded.states

-- name: unregister_worker
WITH gone AS (
    DELETE FROM workers WHERE name = %(worker)s
), given AS (
    -- A waiting entry too is due at once: whoever claims it next waits again if nothing came.
    UPDATE states SET status = 'pending', not_before = now(), lease_expires = NULL
    WHERE status = 'in_progress' AND lease_expires IS NOT NULL AND worker = %(worker)s
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM given LIMIT 1) AS g
)
SELECT (SELECT count(*) FROM given), (SELECT count(*) FROM wake)

-- name: submit
WITH added AS (
    INSERT INTO states (name, root, state, payload, batch)
    SELECT n, n, s, p::jsonb, %(batch)s::text
    FROM unnest(%(names)s::text[], %(states)s::text[], %(payloads)s::text[]) AS u(n, s, p)
    ON CONFLICT (name) DO NOTHING
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM added LIMIT 1) AS a
)
SELECT name FROM added, (SELECT count(*) FROM wake) AS w

-- name: submitted
-- After a submit whose reply was lost with the connection: the rows it did add.
SELECT name FROM states WHERE batch = %(batch)s AND name = ANY(%(names)s::text[])

-- name: counts
-- Pending (due now), scheduled (a timer or a retry's backoff ahead), waiting (a waiting
-- entry not woken yet), in progress, done, failed. The totals by status are the counters
-- (state_counts and the deltas not folded yet, see migration 0006); only pending splits by
-- time. What is not due yet is the counted pending minus the rows due now, read from the
-- start of states_runnable: a progress display or a metrics scrape then costs what is due
-- (nothing, on an idle fleet), never what is scheduled (a hundred thousand timers were a
-- scan of 100 ms every second). Only past 10,000 due rows (a backlog) are the rows not due
-- yet counted instead. Waiting entries are counted along states_waits (only pending waits).
WITH counted AS (
    SELECT status, sum(n) AS n
    FROM (SELECT status, n FROM state_counts UNION ALL SELECT status, n FROM state_count_deltas) AS c
    GROUP BY status
), due AS MATERIALIZED (
    SELECT count(*) AS n FROM (SELECT 1 FROM states WHERE status = 'pending' AND not_before <= now() LIMIT 10000) AS d
), later AS MATERIALIZED (  -- counted once, though read three times
    SELECT CASE WHEN due.n < 10000 THEN coalesce((SELECT n FROM counted WHERE status = 'pending'), 0) - due.n
                ELSE (SELECT count(*) FROM states WHERE status = 'pending' AND not_before > now()) END AS n,
           (SELECT count(*) FROM states WHERE wait IS NOT NULL AND status = 'pending' AND not_before > now()) AS waits
    FROM due
)
SELECT coalesce((SELECT n FROM counted WHERE status = 'pending'), 0) - later.n,
       later.n - later.waits,
       later.waits,
       coalesce((SELECT n FROM counted WHERE status = 'in_progress'), 0),
       coalesce((SELECT n FROM counted WHERE status = 'done'), 0),
       coalesce((SELECT n FROM counted WHERE status = 'failed'), 0)
FROM later

-- name: oldest_pending
-- Since when the longest-waiting runnable state has been due: the first entry of states_runnable.
SELECT extract(epoch FROM min(not_before))::float8 FROM states WHERE status = 'pending' AND not_before <= now()

-- name: no_worker_for
-- Runnable states that no live worker has a machine for (a worker's `states` NULL: all);
-- the worker's own steps (doves.*) run anywhere. Only state names the counters show pending
-- and no live worker covers are looked at: usually none, and then nothing is read. For each,
-- what is due is its counted pending minus its rows not due yet (a range of states_runnable:
-- the timers, never the backlog), and the longest-due is the first of its rows along
-- states_runnable: a fleet started on ten million pending states learns at once that none of
-- its workers is up yet, without counting them.
WITH live AS (
    SELECT states FROM workers
    WHERE last_seen > now() - coalesce(lease_seconds, %(lease)s) * interval '1 second'
), uncovered AS (
    SELECT state, sum(n) AS n FROM (SELECT state, n FROM state_counts WHERE status = 'pending'
                                    UNION ALL SELECT state, n FROM state_count_deltas WHERE status = 'pending') AS c
    WHERE state NOT LIKE 'doves.%%' AND NOT EXISTS (SELECT 1 FROM live WHERE live.states IS NULL)
    GROUP BY state HAVING sum(n) > 0
       AND NOT EXISTS (SELECT 1 FROM live WHERE c.state = ANY(live.states))
), due AS (
    SELECT u.state,
           u.n - (SELECT count(*) FROM states s
                  WHERE s.status = 'pending' AND s.not_before > now() AND s.state = u.state) AS n,
           (SELECT extract(epoch FROM s.not_before)::float8 FROM states s
            WHERE s.status = 'pending' AND s.not_before <= now() AND s.state = u.state
            ORDER BY s.not_before LIMIT 1) AS since
    FROM uncovered u
)
SELECT state, n, since FROM due WHERE n > 0 AND since IS NOT NULL ORDER BY state LIMIT 50

-- name: read_only
-- Whether this session may write: not on a standby (in recovery), nor where
-- default_transaction_read_only is on (a database or role made read-only).
SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'

-- name: workers
-- Alive: stamped within its own lease, and no supervisor said it died. `states`: the state
-- names it registered with (NULL: all).
SELECT name, host, pid, extract(epoch FROM last_seen)::float8,
       ended IS NULL AND last_seen > now() - coalesce(lease_seconds, %(lease)s) * interval '1 second',
       extract(epoch FROM started_at)::float8, ended, states
FROM workers ORDER BY name

-- name: worker_claims
-- What every worker holds now (few rows: only claimed ones), oldest claim first.
SELECT worker, name, state, extract(epoch FROM claimed_at)::float8
FROM states WHERE status = 'in_progress' AND lease_expires IS NOT NULL ORDER BY claimed_at, name

-- name: worker_outcomes
-- The outcomes the registered workers committed or failed that the table still holds (the counters).
SELECT worker, coalesce(sum(n) FILTER (WHERE status = 'done'), 0), coalesce(sum(n) FILTER (WHERE status = 'failed'), 0)
FROM (SELECT worker, status, n FROM state_counts UNION ALL SELECT worker, status, n FROM state_count_deltas) AS c
WHERE status IN ('done', 'failed') AND worker = ANY(%(workers)s::text[])
GROUP BY worker

-- name: fold_counts
-- Moves the counters' deltas into state_counts (one folder at a time; another skips).
WITH folded AS (
    DELETE FROM state_count_deltas
    WHERE pg_try_advisory_xact_lock(hashtextextended('doves-fold-counts:' || current_schema(), 0))
    RETURNING state, status, worker, n
)
INSERT INTO state_counts AS c (state, status, worker, n)
SELECT state, status, worker, sum(n) FROM folded GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (state, status, worker) DO UPDATE SET n = c.n + excluded.n

-- name: worker_exited
-- The supervisor saw the worker's process die: show it dead at once, and give back what it
-- held as a takeover would (one failed attempt, the newest %(kept)s errors kept).
WITH marked AS (
    UPDATE workers SET ended = %(reason)s WHERE name = %(worker)s
), given AS (
    UPDATE states SET status = 'pending', not_before = now(), lease_expires = NULL, attempts = attempts + 1,
        errors = (SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb) FROM (
            SELECT e, i FROM jsonb_array_elements(errors || jsonb_build_array(%(error)s::text))
                WITH ORDINALITY AS kept(e, i)
            ORDER BY i DESC LIMIT %(kept)s) AS newest)
    WHERE status = 'in_progress' AND lease_expires IS NOT NULL AND worker = %(worker)s
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM given LIMIT 1) AS g
)
SELECT (SELECT count(*) FROM given), (SELECT count(*) FROM wake)

-- name: recent_failures
SELECT name, coalesce(reason ->> 'code', 'error'), coalesce(reason ->> 'message', '')
FROM states WHERE status = 'failed' ORDER BY finished_at DESC NULLS LAST LIMIT 5

-- name: history
-- Each state of the lineage as a record (see state_records), oldest first.
SELECT * FROM state_records
WHERE root = %(root)s AND (name = %(root)s OR (name >= %(low)s AND name < %(high)s))
ORDER BY step, name

-- name: machine_names
-- Lineage roots, newest first (LIMIT NULL: all).
SELECT name FROM states WHERE step = 0 ORDER BY submitted_at DESC, name DESC LIMIT %(limit)s

-- name: show
SELECT * FROM state_records WHERE name = %(name)s

-- name: find
-- Every filter given must match (NULL: no filter); newest change first, one page. Statuses as
-- `status` reports them (a pending state not yet due is scheduled, or waiting for an event or children).
SELECT name, state, reported, payload, worker, extract(epoch FROM finished_at)::float8, attempts, reason, errors,
       parent, root, extract(epoch FROM submitted_at)::float8, extract(epoch FROM claimed_at)::float8, retries,
       CASE WHEN not_before < 'infinity' THEN extract(epoch FROM not_before)::float8 END
FROM (SELECT *, CASE WHEN status = 'pending' AND not_before > now()
                     THEN CASE WHEN wait IS NULL THEN 'scheduled' ELSE 'waiting' END ELSE status END AS reported,
             greatest(submitted_at, claimed_at, finished_at) AS updated_at
      FROM states) AS s
WHERE (%(status)s::text IS NULL OR reported = %(status)s::text)
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(code)s::text IS NULL OR (status = 'failed' AND reason ->> 'code' = %(code)s::text))
  AND (%(since)s::float8 IS NULL OR updated_at >= to_timestamp(%(since)s::float8))
  AND (%(text)s::text IS NULL OR strpos(lower(concat_ws(E'\n', name, state, reason ->> 'code', reason ->> 'message',
                                                         payload::text)), lower(%(text)s::text)) > 0)
ORDER BY updated_at DESC, name DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: find_failed
-- `find` of failed states (the failures list): read newest first along states_failed, so a
-- page costs the rows it looks at, not the table. A failed state's latest change is its failure.
SELECT name, state, status, payload, worker, extract(epoch FROM finished_at)::float8, attempts, reason, errors,
       parent, root, extract(epoch FROM submitted_at)::float8, extract(epoch FROM claimed_at)::float8, retries,
       extract(epoch FROM not_before)::float8
FROM states
WHERE status = 'failed'
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(code)s::text IS NULL OR reason ->> 'code' = %(code)s::text)
  AND (%(since)s::float8 IS NULL OR finished_at >= to_timestamp(%(since)s::float8))
  AND (%(text)s::text IS NULL OR strpos(lower(concat_ws(E'\n', name, state, reason ->> 'code', reason ->> 'message',
                                                         payload::text)), lower(%(text)s::text)) > 0)
ORDER BY finished_at DESC, name DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: counts_by_state
-- The counters by state name and status, pending split by time as in `counts`: what is
-- not due yet is the counted pending minus the rows due now (unless 10,000 or more are due),
-- and of it the waiting entries are counted along states_waits.
WITH counted AS (
    SELECT state, status, sum(n) AS n
    FROM (SELECT state, status, n FROM state_counts UNION ALL SELECT state, status, n FROM state_count_deltas) AS c
    GROUP BY 1, 2
), due AS MATERIALIZED (
    SELECT state FROM states WHERE status = 'pending' AND not_before <= now() LIMIT 10000
), waits AS MATERIALIZED (
    SELECT state, count(*) AS n FROM states WHERE wait IS NOT NULL AND status = 'pending' AND not_before > now()
    GROUP BY 1
), later AS (
    SELECT state, 'scheduled' AS status, sum(n) AS n
    FROM (SELECT state, n FROM counted WHERE status = 'pending'
          UNION ALL SELECT state, -count(*) FROM due GROUP BY 1
          UNION ALL SELECT state, -n FROM waits) AS not_due
    WHERE (SELECT count(*) FROM due) < 10000
    GROUP BY 1
    UNION ALL
    SELECT state, 'scheduled', count(*) FROM states
    WHERE status = 'pending' AND not_before > now() AND wait IS NULL AND (SELECT count(*) FROM due) >= 10000
    GROUP BY 1
    UNION ALL
    SELECT state, 'waiting', n FROM waits
)
SELECT state, status, n FROM (
    SELECT state, status, n - CASE WHEN status = 'pending'
                                   THEN coalesce((SELECT sum(l.n) FROM later l WHERE l.state = counted.state), 0)
                                   ELSE 0 END AS n
    FROM counted
    UNION ALL SELECT state, status, n FROM later
) AS c
WHERE n > 0 ORDER BY 1, 2

-- name: forget
-- Whole machines whose every state is settled: their rows are locked first, so a retry or
-- reset running meanwhile either comes before (and the machine is kept) or waits.
WITH machines AS (
    SELECT DISTINCT root FROM states WHERE name = ANY(%(names)s::text[])
), locked AS (
    SELECT s.root, s.status FROM states AS s JOIN machines AS m ON s.root = m.root FOR UPDATE OF s
), settled AS (
    SELECT root FROM locked GROUP BY root HAVING bool_and(status IN ('done', 'failed'))
), ended AS (
    -- A child machine stays while the machine that spawned it runs: its join reads the child's
    -- outcome. That machine's states are one key range of the primary key (as for `history`).
    SELECT settled.root FROM settled JOIN states AS r ON r.name = settled.root
    LEFT JOIN states AS p ON p.name = r.origin_parent
    WHERE p.name IS NULL OR NOT EXISTS (
        SELECT 1 FROM states AS m
        WHERE m.root = p.root AND m.status IN ('pending', 'in_progress')
          AND (m.name = p.root
               OR (m.name >= regexp_replace(p.root, '(-[0-9]+)?(~[0-9]+)?$', '') || '-'
                   AND m.name < regexp_replace(p.root, '(-[0-9]+)?(~[0-9]+)?$', '') || '.')))
), mail AS (
    -- Its mailbox goes with it (an ended machine takes no event).
    DELETE FROM events USING ended WHERE events.machine = ended.root
)
DELETE FROM states AS s USING ended WHERE s.root = ended.root
RETURNING s.name

-- name: root_of
SELECT root FROM states WHERE name = %(name)s

-- name: is_finished
-- Counting only states named in %(states)s (NULL: every state). A wait that only an event
-- can end (no deadline: not_before is 'infinity') does not count.
SELECT NOT EXISTS (SELECT 1 FROM states WHERE status = 'pending' AND not_before < 'infinity'
                   AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[])))
   AND NOT EXISTS (SELECT 1 FROM states WHERE status = 'in_progress' AND lease_expires IS NOT NULL
                   AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[])))

-- name: next_due
-- Seconds until something may become claimable without a NOTIFY: a delayed retry or a
-- timer falling due, a wait's deadline, or a lease expiring (its worker may be dead).
-- Both are the first entry of a partial index: as cheap with a million timers as with none.
SELECT extract(epoch FROM least(
    (SELECT min(not_before) FROM states WHERE status = 'pending' AND not_before < 'infinity'),
    (SELECT min(lease_expires) FROM states WHERE status = 'in_progress' AND lease_expires IS NOT NULL)
) - now())::float8

-- name: live_workers
SELECT name FROM workers WHERE last_seen > now() - coalesce(lease_seconds, %(lease)s) * interval '1 second'
ORDER BY name

-- name: delete_successors
-- Successors, child machines and the mailboxes: only submitted roots are left.
WITH mail AS (
    DELETE FROM events
)
DELETE FROM states WHERE parent IS NOT NULL OR origin_parent IS NOT NULL

-- name: reset
-- Waiting entries too are due at once: whoever claims one waits again if nothing came.
WITH fresh AS (
    UPDATE states SET status = 'pending', attempts = 0, retries = 0, errors = '[]'::jsonb, not_before = now(),
        claimed_at = NULL, finished_at = NULL, worker = NULL, lease_expires = NULL, token = NULL, reason = NULL
    WHERE %(everything)s
       OR (status = 'failed' AND (%(names)s::text[] IS NULL OR name = ANY(%(names)s::text[])))
    RETURNING name
), wake AS (
    SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM fresh LIMIT 1) AS f
)
SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM wake)

-- name: export
SELECT name, state, payload, parent, status, attempts, errors,
       CASE WHEN not_before < 'infinity' THEN extract(epoch FROM not_before)::float8 END,
       worker, token, extract(epoch FROM claimed_at)::float8, reason, root, wait, origin_parent, origin_index
FROM states ORDER BY name
