-- Each worker's own lease, so liveness in `doves status` and `doves reset` is judged by
-- the lease the worker runs with, not by the options of whoever reads the table.
ALTER TABLE workers ADD COLUMN lease_seconds float8;
