-- 004_fleet_operations: rollout progress of jobs, the ABORTED job status,
-- retries, heartbeat liveness, clock skew, token renewal and the due times
-- of the scheduler's fleet-wide duties.
--
-- Everything a scheduler needs to resume after a restart lives here: a
-- rollout's group, release count and last minute of release batches (the
-- rate limiter), the due times of its timeout, retry and continuous-target
-- checks, and the due time of the next heartbeat round and token check.

-- jobs: rebuilt for the CHECK that now includes ABORTED, and a flag for
-- jobs the scheduler completes (retries may follow the last terminal
-- update; a continuous job never completes on its own). The foreign keys
-- of job_documents and executions point at jobs by name: with deferred
-- checks, dropping the old table and refilling the new one under the same
-- name leaves them satisfied at commit.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE jobs_before_004 AS SELECT * FROM jobs;
DROP TABLE jobs;

CREATE TABLE jobs (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT REFERENCES customers(id),
    task_type   TEXT NOT NULL CHECK ({{task_type IN TASK_TYPES}}),
    status      TEXT NOT NULL CHECK ({{status IN JOB_STATUSES}}),
    {{EXECUTION_COUNTERS}},
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    scheduler_completes INTEGER NOT NULL DEFAULT 0
        CHECK (scheduler_completes = 0 OR scheduler_completes = 1)
) STRICT;

INSERT INTO jobs (id, customer_id, task_type, status, {{EXECUTION_COUNTER_COLUMNS}},
                  created_at, updated_at)
    SELECT id, customer_id, task_type, status, {{EXECUTION_COUNTER_COLUMNS}},
           created_at, updated_at
    FROM jobs_before_004;
DROP TABLE jobs_before_004;

CREATE INDEX jobs_by_customer ON jobs(customer_id, created_at);

-- A job's policy and its rollout's progress, one row per job. `active`
-- rows are those the scheduler looks at (the job is IN_PROGRESS and has
-- queued executions, or a policy that needs watching).
CREATE TABLE job_rollouts (
    job_id              TEXT PRIMARY KEY NOT NULL REFERENCES jobs(id),
    policy              TEXT NOT NULL CHECK (json_valid(policy)),
    targets             TEXT NOT NULL CHECK (json_valid(targets)),
    phase               TEXT NOT NULL CHECK ({{phase IN ROLLOUT_PHASES}}),
    active              INTEGER NOT NULL CHECK (active = 0 OR active = 1),
    group_index         INTEGER NOT NULL DEFAULT 0 CHECK (group_index >= 0),
    first_total         INTEGER NOT NULL CHECK (first_total >= 0),
    released            INTEGER NOT NULL DEFAULT 0 CHECK (released >= 0),
    retries             INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0),
    recent_releases     TEXT NOT NULL DEFAULT '[]',
    wake_at             INTEGER,
    timeouts_due_at     INTEGER,
    retries_due_at      INTEGER,
    retry_seen_failures INTEGER NOT NULL DEFAULT 0,
    targets_due_at      INTEGER,
    abort_reason        TEXT,
    updated_at          INTEGER NOT NULL
) STRICT;

CREATE INDEX job_rollouts_active ON job_rollouts(job_id) WHERE active = 1;

-- Jobs created before this migration: an empty policy, their appliance
-- list as targets.
INSERT INTO job_rollouts (job_id, policy, targets, phase, active, first_total, released,
                          updated_at)
    SELECT j.id, '{}', json_object('applianceIds', json_array_length(d.targets)),
           CASE j.status WHEN 'IN_PROGRESS' THEN 'RELEASING' ELSE j.status END,
           j.status = 'IN_PROGRESS',
           j.queued + j.sent + j.in_progress + j.succeeded + j.failed + j.rejected
               + j.timed_out + j.canceled + j.removed,
           j.sent + j.in_progress + j.succeeded + j.failed + j.rejected + j.timed_out,
           j.updated_at
    FROM jobs j JOIN job_documents d ON d.job_id = j.id;

-- Queued retries (attempt 2 and later) of a job, released before first
-- attempts and past a stage gate.
CREATE INDEX executions_retries_queued ON executions(job_id, queued_at)
    WHERE {{status IN QUEUED}} AND execution_number > 1;

-- Liveness: the edge connection (presence events) and the heartbeats sent
-- since the last reply; the last clock check; the token renewal under way
-- (the next token's hash and expiry, the task that carries it).
ALTER TABLE appliances ADD COLUMN edge_connected INTEGER NOT NULL DEFAULT 0
    CHECK (edge_connected = 0 OR edge_connected = 1);
ALTER TABLE appliances ADD COLUMN heartbeats_unanswered INTEGER NOT NULL DEFAULT 0
    CHECK (heartbeats_unanswered >= 0);
ALTER TABLE appliances ADD COLUMN clock_skew_ms INTEGER;
ALTER TABLE appliances ADD COLUMN clock_skewed INTEGER NOT NULL DEFAULT 0
    CHECK (clock_skewed = 0 OR clock_skewed = 1);
ALTER TABLE appliances ADD COLUMN next_token_hash TEXT;
ALTER TABLE appliances ADD COLUMN next_token_expires_at INTEGER;
ALTER TABLE appliances ADD COLUMN token_renewal_task TEXT;
ALTER TABLE appliances ADD COLUMN token_renew_after INTEGER;

UPDATE appliances SET edge_connected = 1 WHERE status = 'ONLINE';

-- The appliances whose token renewal is under way.
CREATE INDEX appliances_token_renewals ON appliances(token_renewal_task)
    WHERE token_renewal_task IS NOT NULL;

-- Due times of the fleet-wide duties ('heartbeat', 'tokens'), claimed in
-- a write transaction so that hub replicas sharing the database take turns.
-- A heartbeat round runs in batches: `round_at` is its serverTime and
-- `cursor` the last appliance id it reached.
CREATE TABLE scheduler_duties (
    duty     TEXT PRIMARY KEY NOT NULL,
    due_at   INTEGER NOT NULL,
    round_at INTEGER,
    cursor   TEXT
) STRICT;
