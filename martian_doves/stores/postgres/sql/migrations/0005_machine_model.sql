-- Machines that wait, listen and branch: timers, waiting entries, events, children, and the
-- states each worker can run.
--
-- A timer is a pending row whose not_before lies ahead (the claim's index already skips it
-- until due). A waiting entry (doves.wait, doves.join) is a pending row with `wait` set and
-- not_before at its deadline, or 'infinity' when nothing but an event or its children can
-- wake it: waking it is setting not_before to now(). So finding what is due, timers and woken
-- waits alike, is the one range scan of states_runnable that costs what is due, never what is
-- scheduled or waiting; and the next due time is that index's first entry.

-- What a waiting entry waits for (WaitFor.as_dict); NULL on every other state.
ALTER TABLE states ADD COLUMN wait jsonb;
-- On every state of a child machine: the state whose tick spawned it, and its position.
ALTER TABLE states ADD COLUMN origin_parent text COLLATE "C";
ALTER TABLE states ADD COLUMN origin_index integer;

-- Waiting entries of a machine, to wake those waiting for an event that was just sent, or
-- the join of a spawner whose last child just ended (few rows: only pending waits).
CREATE INDEX states_waits ON states (root) WHERE wait IS NOT NULL AND status = 'pending';
-- A spawner's children (their roots), in order: the join's outcomes and `history`.
CREATE INDEX states_children ON states (origin_parent, origin_index)
    WHERE origin_parent IS NOT NULL AND name = root;
-- States of child machines still running: "have all children of S ended?" is one probe.
CREATE INDEX states_live_children ON states (origin_parent)
    WHERE origin_parent IS NOT NULL AND status IN ('pending', 'in_progress');

-- The mailboxes: every event sent to a machine (keyed by its root's name), in order of
-- sending (sends to one machine are serialised, so the sequence is that order). An event
-- is bound for good to the waiting entry that took it (`taken_by`, its name), so whoever
-- runs that entry, first or after a takeover, gets the same event; events stay after
-- delivery, for `history`.
CREATE TABLE events (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine  text COLLATE "C" NOT NULL,
    name     text NOT NULL,
    data     jsonb NOT NULL,
    sent_at  timestamptz NOT NULL DEFAULT now(),
    taken_by text COLLATE "C",
    -- Who sent it (one id per call): a send retried after a lost connection recognises it.
    sent_id  text
);
-- Untaken events of a machine by name, oldest first: what a wait takes next.
CREATE INDEX events_mailbox ON events (machine, name, seq) WHERE taken_by IS NULL;
-- At most one event per waiting entry: two workers racing to bind cannot both succeed.
CREATE UNIQUE INDEX events_taken ON events (taken_by) WHERE taken_by IS NOT NULL;

-- When a waiting entry may run: now() if what it waits for is there (its event, bound or in
-- the mailbox; all its children ended), else its deadline, else never ('infinity'). Called
-- under the transaction lock of what would wake it (see store.py), so no wake-up is lost.
CREATE FUNCTION wait_due(entry_name text, entry_root text, entry_parent text, entry_wait jsonb)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN entry_wait IS NULL THEN now()
        WHEN entry_wait ->> 'event' IS NULL THEN
            CASE WHEN EXISTS (SELECT 1 FROM states WHERE origin_parent = entry_parent
                                                     AND status IN ('pending', 'in_progress'))
                 THEN 'infinity'::timestamptz ELSE now() END
        WHEN EXISTS (SELECT 1 FROM events WHERE taken_by = entry_name)
          OR EXISTS (SELECT 1 FROM events WHERE machine = entry_root AND name = entry_wait ->> 'event'
                                            AND taken_by IS NULL)
            THEN now()
        ELSE coalesce(to_timestamp((entry_wait ->> 'deadline')::float8), 'infinity'::timestamptz)
    END
$$;

-- One state as `show` and `history` tell it: the columns of inspection.py's record_of (a
-- timer not yet due reads scheduled, a waiting entry not woken yet waiting), then what the
-- machine model adds (what it waits for, its machine's origin, the event it received, the
-- children its tick spawned), then its step in the lineage.
CREATE VIEW state_records AS
SELECT s.name, s.state,
       CASE WHEN s.status = 'pending' AND s.not_before > now()
            THEN CASE WHEN s.wait IS NULL THEN 'scheduled' ELSE 'waiting' END ELSE s.status END AS status,
       s.payload, s.worker, extract(epoch FROM s.finished_at)::float8 AS finished_at, s.attempts, s.reason,
       s.errors, s.parent, s.root, extract(epoch FROM s.submitted_at)::float8 AS submitted_at,
       extract(epoch FROM s.claimed_at)::float8 AS claimed_at, s.retries,
       CASE WHEN s.not_before < 'infinity' THEN extract(epoch FROM s.not_before)::float8 END AS not_before,
       s.wait, s.origin_parent, s.origin_index,
       e.name AS event, e.data AS event_data, extract(epoch FROM e.sent_at)::float8 AS event_sent_at,
       ARRAY(SELECT c.name FROM states AS c WHERE c.origin_parent = s.name AND c.name = c.root
             ORDER BY c.origin_index) AS children,
       s.step
FROM states AS s LEFT JOIN events AS e ON e.taken_by = s.name;

-- The state names each worker has machines for (NULL: every state), so `status` can tell
-- which runnable states no live worker can run.
ALTER TABLE workers ADD COLUMN states text[];
