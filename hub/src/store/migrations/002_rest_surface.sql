-- 002_rest_surface: what the REST surface of the original backend needs:
-- customers' api keys and register tokens, the appliance facts given at
-- registration, the catalogs operators publish (appliance versions,
-- services and their versions, tags), the services installed on each
-- appliance, metrics time series (bounded retention, kept by the store),
-- and the appliances' audit log.
--
-- Placeholders as in 001 (filled in by store/schema.rs).

-- Api keys of customers, stored as sha256 hex of the key: a request's key
-- is hashed and looked up.
CREATE TABLE api_keys (
    key_hash    TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX api_keys_by_customer ON api_keys(customer_id);

-- The register token (a signed JWT) currently handed out to a customer;
-- replaced by a fresh one when it has expired.
CREATE TABLE register_tokens (
    customer_id TEXT PRIMARY KEY NOT NULL REFERENCES customers(id),
    token       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

-- Facts an appliance gives when it registers, and the latest metrics
-- sample (the series is in appliance_metrics). unregistered_at is set when
-- its customer deletes it: the unregister task is on its way, and the
-- appliance becomes REMOVED when it succeeds.
ALTER TABLE appliances ADD COLUMN hostname TEXT;
ALTER TABLE appliances ADD COLUMN ipv4_address TEXT;
ALTER TABLE appliances ADD COLUMN registered_at INTEGER;
ALTER TABLE appliances ADD COLUMN unregistered_at INTEGER;
ALTER TABLE appliances ADD COLUMN metrics TEXT CHECK (metrics IS NULL OR json_valid(metrics));
ALTER TABLE appliances ADD COLUMN metrics_at INTEGER;

-- Firmware versions, ordered by major.minor.revision.build.
CREATE TABLE appliance_versions (
    version         TEXT PRIMARY KEY NOT NULL,
    major           INTEGER NOT NULL CHECK (major >= 0),
    minor           INTEGER NOT NULL CHECK (minor >= 0),
    revision        INTEGER NOT NULL CHECK (revision >= 0),
    build           INTEGER NOT NULL CHECK (build >= 0),
    display_version TEXT NOT NULL,
    firmware_path   TEXT NOT NULL,
    firmware_sha256 TEXT NOT NULL,
    enabled         INTEGER NOT NULL CHECK (enabled = 0 OR enabled = 1),
    published_at    INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (major, minor, revision, build)
) STRICT;

CREATE TABLE services (
    code       TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- A service's packages; v1..v4 are the version's numeric parts, for order.
CREATE TABLE service_versions (
    service_code   TEXT NOT NULL REFERENCES services(code),
    version        TEXT NOT NULL,
    v1             INTEGER NOT NULL,
    v2             INTEGER NOT NULL,
    v3             INTEGER NOT NULL,
    v4             INTEGER NOT NULL,
    branch         TEXT NOT NULL,
    image_path     TEXT NOT NULL,
    image_sha256   TEXT NOT NULL,
    request_cpu    REAL NOT NULL CHECK (request_cpu >= 0),
    request_memory INTEGER NOT NULL CHECK (request_memory >= 0),
    enabled        INTEGER NOT NULL CHECK (enabled = 0 OR enabled = 1),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (service_code, version)
) STRICT;

-- Services installed on appliances, as the finished tasks left them.
CREATE TABLE appliance_services (
    appliance_id    TEXT NOT NULL REFERENCES appliances(id),
    service_code    TEXT NOT NULL REFERENCES services(code),
    version         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK ({{status IN SERVICE_STATUSES}}),
    health          TEXT,
    request_cpu     REAL NOT NULL CHECK (request_cpu >= 0),
    request_memory  INTEGER NOT NULL CHECK (request_memory >= 0),
    settings        TEXT CHECK (settings IS NULL OR json_valid(settings)),
    setting_version INTEGER NOT NULL DEFAULT 0 CHECK (setting_version >= 0),
    installed_at    INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (appliance_id, service_code)
) STRICT;

-- Metrics samples; the store keeps the last 7 days and at most a few
-- thousand per appliance.
CREATE TABLE appliance_metrics (
    id           INTEGER PRIMARY KEY,
    appliance_id TEXT NOT NULL REFERENCES appliances(id),
    sampled_at   INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    sample       TEXT NOT NULL CHECK (json_valid(sample))
) STRICT;

CREATE INDEX appliance_metrics_by_appliance ON appliance_metrics(appliance_id, id);

-- Metrics a service reports over REST, same retention.
CREATE TABLE service_metrics (
    id           INTEGER PRIMARY KEY,
    appliance_id TEXT NOT NULL REFERENCES appliances(id),
    service_code TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    sample       TEXT NOT NULL CHECK (json_valid(sample))
) STRICT;

CREATE INDEX service_metrics_by_appliance ON service_metrics(appliance_id, service_code, id);

CREATE TABLE tags (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE appliance_tags (
    tag_id       TEXT NOT NULL REFERENCES tags(id),
    appliance_id TEXT NOT NULL REFERENCES appliances(id),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tag_id, appliance_id)
) STRICT;

CREATE INDEX appliance_tags_by_appliance ON appliance_tags(appliance_id);

-- Audit log entries uploaded by appliances.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    appliance_id TEXT NOT NULL REFERENCES appliances(id),
    time         INTEGER NOT NULL,
    actor        TEXT,
    action       TEXT NOT NULL,
    detail       TEXT,
    received_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_log_by_appliance ON audit_log(appliance_id, time);
