-- 001_initial: the tables jobs need (customers, appliances, jobs,
-- job_documents, executions, heartbeats) and the outbox of MQTT messages.
--
-- Double-brace placeholders are filled in at load by store/schema.rs from the
-- Rust enums' one as_str, so that a status has exactly one spelling:
-- "column IN LIST" becomes (column = 'A' OR column = 'B' ...), which SQLite
-- evaluates without building a temporary b-tree on every write.
-- Times are epoch milliseconds; ids are lowercase hyphenated UUIDs;
-- JSON columns hold compact JSON text.

CREATE TABLE customers (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE appliances (
    id               TEXT PRIMARY KEY NOT NULL,
    customer_id      TEXT REFERENCES customers(id),
    product_key      TEXT NOT NULL,
    status           TEXT NOT NULL CHECK ({{status IN APPLIANCE_STATUSES}}),
    version          TEXT,
    token_hash       TEXT NOT NULL,
    token_expires_at INTEGER NOT NULL,
    connected_at     INTEGER,
    last_seen        INTEGER,
    rolled_back      INTEGER NOT NULL DEFAULT 0 CHECK (rolled_back = 0 OR rolled_back = 1),
    settings         TEXT CHECK (settings IS NULL OR json_valid(settings)),
    capacity         TEXT CHECK (capacity IS NULL OR json_valid(capacity)),
    created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX appliances_by_customer ON appliances(customer_id);

-- The hot part of a job: status and one counter column per execution
-- status, kept incrementally by the writer in the transaction that moves an
-- execution (a job summary never counts rows). The document and the
-- targets live in job_documents: SQLite rewrites a whole row, overflow
-- pages included, on every UPDATE, and a 10,000-target list is ~380 KB.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    task_type   TEXT NOT NULL CHECK ({{task_type IN TASK_TYPES}}),
    status      TEXT NOT NULL CHECK ({{status IN JOB_STATUSES}}),
    {{EXECUTION_COUNTERS}},
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- The cold part of a job, written once.
CREATE TABLE job_documents (
    job_id   TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id),
    document TEXT NOT NULL CHECK (json_valid(document)),
    targets  TEXT NOT NULL CHECK (json_valid(targets))
) STRICT;

CREATE INDEX jobs_by_customer ON jobs(customer_id, created_at);

-- One attempt of one job on one appliance (the original backend's IoT task).
-- JSON columns are written only by the store from typed values, so they
-- carry no json_valid CHECK: this is the hot path of every transition.
CREATE TABLE executions (
    task_id          TEXT PRIMARY KEY NOT NULL,
    job_id           TEXT NOT NULL REFERENCES jobs(id),
    appliance_id     TEXT NOT NULL REFERENCES appliances(id),
    execution_number INTEGER NOT NULL CHECK (execution_number >= 1),
    status           TEXT NOT NULL CHECK ({{status IN EXECUTION_STATUSES}}),
    version_number   INTEGER NOT NULL CHECK (version_number >= 1),
    progress         INTEGER CHECK (progress BETWEEN 0 AND 100),
    status_details   TEXT,
    result           TEXT,
    error_message    TEXT,
    client_tokens    TEXT NOT NULL DEFAULT '[]',
    queued_at        INTEGER NOT NULL,
    sent_at          INTEGER,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    UNIQUE (job_id, appliance_id, execution_number)
) STRICT;

-- The oldest non-terminal execution of an appliance ($next, $list).
CREATE INDEX executions_open_by_appliance ON executions(appliance_id, queued_at)
    WHERE {{status IN OPEN_STATUSES}};
-- The oldest queued executions, of any job or of one (release).
CREATE INDEX executions_queued ON executions(queued_at)
    WHERE {{status IN QUEUED}};
CREATE INDEX executions_queued_by_job ON executions(job_id, queued_at)
    WHERE {{status IN QUEUED}};
-- A job's executions are found through UNIQUE (job_id, ...): no index on
-- status, which would change with every transition.

-- The last heartbeat of each appliance, upserted.
CREATE TABLE heartbeats (
    appliance_id TEXT PRIMARY KEY NOT NULL REFERENCES appliances(id),
    result       TEXT CHECK (result IS NULL OR json_valid(result)),
    received_at  INTEGER NOT NULL
) STRICT;

-- MQTT messages caused by a transition, written in its transaction and
-- deleted once published. AUTOINCREMENT: an id is never reused, so a late
-- acknowledgement can never delete a newer message.
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    appliance_id TEXT NOT NULL REFERENCES appliances(id),
    kind         TEXT NOT NULL CHECK ({{kind IN OUTBOX_KINDS}}),
    payload      BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
