-- tollgate cluster mode, schema version 4: team document quotas exact
-- across the cluster (ARCHITECTURE.md, "Cluster mode"). One row per team
-- that acquired documents: what it uses. An acquire is one
-- `UPDATE ... SET used = used + n WHERE used + n <= limit`; a release
-- lowers it (never below zero) once per release id, so a release retried
-- after an answer was lost is not applied twice. Release ids are kept a
-- week. The per-node counts of earlier versions are not carried over: a
-- team's count starts at 0 here.
CREATE TABLE tollgate_documents (
    team_id text    PRIMARY KEY,
    used    bigint  NOT NULL CHECK (used >= 0)
);

CREATE TABLE tollgate_document_releases (
    id  text         PRIMARY KEY,
    at  timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX tollgate_document_releases_at ON tollgate_document_releases (at);
