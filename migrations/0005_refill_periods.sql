-- tollgate cluster mode, schema version 5: keys with a refill
-- (ARCHITECTURE.md, "Cluster mode"). A key's shared count refills lazily:
-- period n of a key runs from set_ms + n * interval to set_ms + (n + 1) *
-- interval (set_ms: when the count was set, on PostgreSQL's clock; the
-- interval is the key's refillInterval, sent by the node with each lease
-- statement), and the first lease statement of a later period sets
-- `remaining` to the refill amount and `period` to it. A lease is of one
-- (generation, period): uses of an older period are never returned into a
-- newer one, and its reserve goes nowhere when its row expires.
ALTER TABLE tollgate_credits ADD COLUMN period bigint NOT NULL DEFAULT 0;
ALTER TABLE tollgate_credits
    ADD COLUMN set_ms bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
ALTER TABLE tollgate_leases ADD COLUMN period bigint NOT NULL DEFAULT 0;
