-- Counters of states, so `doves status` costs the same at ten million states as at ten.
--
-- Every change of a row's state name, status or settling worker adds its delta (-1 for
-- what the row was, +1 for what it is) to state_count_deltas, from a trigger, in the very
-- transaction of the change: the counts are exactly as transactional as the rows, a crash
-- loses a delta only together with its change. Writers only ever append deltas (a table
-- with no index and no row two transactions share), so counting adds no lock, no hot row
-- and no deadlock to a claim or a commit. `fold_counts` (a worker's heartbeat) moves the
-- deltas into state_counts; the counts are state_counts plus the deltas not folded yet.

-- A row's counter key: its state name, its status, and who settled it (done or failed;
-- '' otherwise), so each worker's outcomes are counted too.
CREATE TABLE state_counts (
    state  text NOT NULL,
    status text NOT NULL,
    worker text NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (state, status, worker)
);

CREATE TABLE state_count_deltas (
    state  text NOT NULL,
    status text NOT NULL,
    worker text NOT NULL,
    n      integer NOT NULL
);

CREATE FUNCTION count_states() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO state_count_deltas VALUES
            (OLD.state, OLD.status, CASE WHEN OLD.status IN ('done', 'failed') THEN coalesce(OLD.worker, '') ELSE '' END, -1),
            (NEW.state, NEW.status, CASE WHEN NEW.status IN ('done', 'failed') THEN coalesce(NEW.worker, '') ELSE '' END, 1);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO state_count_deltas VALUES
            (NEW.state, NEW.status, CASE WHEN NEW.status IN ('done', 'failed') THEN coalesce(NEW.worker, '') ELSE '' END, 1);
    ELSE
        INSERT INTO state_count_deltas VALUES
            (OLD.state, OLD.status, CASE WHEN OLD.status IN ('done', 'failed') THEN coalesce(OLD.worker, '') ELSE '' END, -1);
    END IF;
    RETURN NULL;
END
$$;

-- Created before the counts are taken: it locks the table against writers until the
-- migration commits, so no change falls between the two.
CREATE TRIGGER states_counted_changes AFTER UPDATE OF state, status, worker ON states FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.status IS DISTINCT FROM NEW.status
          OR (NEW.status IN ('done', 'failed') AND OLD.worker IS DISTINCT FROM NEW.worker))
    EXECUTE FUNCTION count_states();
CREATE TRIGGER states_counted_rows AFTER INSERT OR DELETE ON states FOR EACH ROW EXECUTE FUNCTION count_states();

INSERT INTO state_counts (state, status, worker, n)
SELECT state, status, CASE WHEN status IN ('done', 'failed') THEN coalesce(worker, '') ELSE '' END, count(*)
FROM states GROUP BY 1, 2, 3;
