-- 001_initial: the tables jobs need (customers, appliances, jobs,
-- executions, heartbeats) and the outbox of MQTT messages.
--
-- Double-brace placeholders are filled in at load by store/schema.rs from the
-- Rust enums' one as_str, so that a status has exactly one spelling.
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
    status           TEXT NOT NULL CHECK (status IN ({{APPLIANCE_STATUSES}})),
    version          TEXT,
    token_hash       TEXT NOT NULL,
    token_expires_at INTEGER NOT NULL,
    connected_at     INTEGER,
    last_seen        INTEGER,
    rolled_back      INTEGER NOT NULL DEFAULT 0 CHECK (rolled_back IN (0, 1)),
    settings         TEXT CHECK (settings IS NULL OR json_valid(settings)),
    capacity         TEXT CHECK (capacity IS NULL OR json_valid(capacity)),
    created_at       INTEGER NOT NULL
) STRICT;

CREATE INDEX appliances_by_customer ON appliances(customer_id);

-- One counter column per execution status, kept incrementally by the
-- writer in the transaction that moves an execution: a job summary never
-- counts rows.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    task_type   TEXT NOT NULL CHECK (task_type IN ({{TASK_TYPES}})),
    document    TEXT NOT NULL CHECK (json_valid(document)),
    targets     TEXT NOT NULL CHECK (json_valid(targets)),
    status      TEXT NOT NULL CHECK (status IN ({{JOB_STATUSES}})),
    {{EXECUTION_COUNTERS}},
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
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
    status           TEXT NOT NULL CHECK (status IN ({{EXECUTION_STATUSES}})),
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
    WHERE status IN ({{OPEN_STATUSES}});
-- The oldest queued executions, of any job or of one (release).
CREATE INDEX executions_queued ON executions(queued_at)
    WHERE status = {{QUEUED}};
CREATE INDEX executions_queued_by_job ON executions(job_id, queued_at)
    WHERE status = {{QUEUED}};
-- A job's executions in one status (listing with a status filter, cancel).
CREATE INDEX executions_by_job_status ON executions(job_id, status);

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
    kind         TEXT NOT NULL CHECK (kind IN ({{OUTBOX_KINDS}})),
    payload      BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
