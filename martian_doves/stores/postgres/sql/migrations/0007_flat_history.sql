-- A transition costs the same however many settled states the table holds.
--
-- The lease index covered the in-progress rows (WHERE status = 'in_progress'); a commit,
-- fenced by `status = 'in_progress'` too, matched that predicate, so the planner, told by
-- the statistics that few rows are in progress, found the row through it rather than
-- through the primary key: walking every entry the index still held, and it holds one
-- for every state claimed since the last vacuum. A commit grew slower with every
-- transition until a vacuum, and a vacuum comes later the bigger the table. Indexed now on
-- what only a claimed row carries (every end of a claim clears lease_expires), the
-- index serves what looks for leases and nothing that looks for one row by name.
DROP INDEX IF EXISTS states_leases;
CREATE INDEX states_leases ON states (lease_expires) WHERE lease_expires IS NOT NULL;

-- The partial indexes of what is due and what is claimed keep an entry for each row that
-- has left them until a vacuum removes it, and a claim walks those from the start. By
-- default autovacuum waits for a fifth of the table to be dead rows: two million at ten
-- million states. Vacuum after a fixed number of changes instead, so those indexes stay
-- as small as what is pending and claimed, at any size of the history.
ALTER TABLE states SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50000,
                        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,
                        autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 200000);
-- The counters' deltas are appended and deleted all the time (see migration 0006).
ALTER TABLE state_count_deltas SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
                                    autovacuum_vacuum_insert_scale_factor = 0,
                                    autovacuum_vacuum_insert_threshold = 5000);
