-- tollgate cluster mode, schema version 1 (ARCHITECTURE.md, "Cluster mode").
-- Applied by `tollgate migrate` and at the start of `tollgate serve --postgres`,
-- under an advisory lock, in one transaction with its row in tollgate_migrations.

-- The replicated records: the same bytes as the embedded store's values
-- (a version byte, then postcard), by table tag and id.
CREATE TABLE tollgate_records (
    tbl   text   NOT NULL,
    id    text   NOT NULL,
    value bytea  NOT NULL,
    PRIMARY KEY (tbl, id)
);

-- The change log. `seq` is given by the writer as the head it has applied
-- plus one (not a sequence: a sequence's numbers are taken before commit, so
-- a follower could see 11 committed before 10 and skip 10). The primary key
-- makes the log gapless and in commit order.
CREATE TABLE tollgate_changes (
    seq   bigint       PRIMARY KEY CHECK (seq > 0),
    node  text         NOT NULL,
    at    timestamptz  NOT NULL DEFAULT now(),
    body  bytea        NOT NULL
);

-- Remaining uses of keys that have a limit, not yet leased to a node.
-- `generation` is the seq of the change that last set the count: a use
-- leased under an older generation is never returned into a newer one.
CREATE TABLE tollgate_credits (
    key_id     text    PRIMARY KEY,
    remaining  bigint  NOT NULL CHECK (remaining >= 0),
    generation bigint  NOT NULL
);

-- Uses leased to a node and not yet returned (spent or not: the node knows).
CREATE TABLE tollgate_leases (
    key_id     text         NOT NULL,
    node       text         NOT NULL,
    generation bigint       NOT NULL,
    amount     bigint       NOT NULL CHECK (amount >= 0),
    expires_at timestamptz  NOT NULL,
    PRIMARY KEY (key_id, node)
);
CREATE INDEX tollgate_leases_node ON tollgate_leases (node);
CREATE INDEX tollgate_leases_expiry ON tollgate_leases (expires_at);
