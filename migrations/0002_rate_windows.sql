-- tollgate cluster mode, schema version 2: per-key rate limits shared by
-- every node (ARCHITECTURE.md, "Cluster mode"). One row per key with a rate
-- limit that was used: the cluster's current window (started at the first
-- request after the previous one ended, on PostgreSQL's clock) and the
-- requests leased to nodes in it.
CREATE TABLE tollgate_windows (
    key_id     text    PRIMARY KEY,
    started_ms bigint  NOT NULL,
    used       bigint  NOT NULL CHECK (used >= 0)
);
