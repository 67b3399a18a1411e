-- 003_artifacts: the artifact store's catalogue and the log archives that
-- appliances upload for collectLog tasks.
--
-- An artifact is content-addressed: its sha256 (64 lowercase hex digits)
-- is its key and the name of its file under <data dir>/artifacts/. An
-- external artifact has no file here: appliances download it from
-- external_url, and check it by the same sha256 and size.

CREATE TABLE artifacts (
    sha256       TEXT PRIMARY KEY NOT NULL
                 CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    size         INTEGER NOT NULL CHECK (size >= 0),
    content_type TEXT NOT NULL,
    external_url TEXT,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX artifacts_by_created ON artifacts(created_at, sha256);

-- The log archive of a collectLog execution: its file is
-- <data dir>/logs/<task_id>-<sha256>. A second upload replaces the row (and
-- then the file) in one transaction.
CREATE TABLE log_uploads (
    task_id     TEXT PRIMARY KEY NOT NULL REFERENCES executions(task_id),
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    size        INTEGER NOT NULL CHECK (size >= 0),
    uploaded_at INTEGER NOT NULL
) STRICT;

-- Every execution of an appliance, by job (an appliance's latest
-- collectLog task). Transitions never change these columns, so the index
-- costs nothing on the hot path; only job creation writes it. It does not
-- end with queued_at on purpose: `$next` and `$list` must keep using the
-- partial index of open executions, which gives them their order.
CREATE INDEX executions_by_appliance ON executions(appliance_id, job_id);
