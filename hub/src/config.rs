//! `hub serve` settings: flags, then `HUB_*` environment variables, then an
//! optional TOML file, then the embedded defaults, in that order of
//! precedence. [`ServeArgs`] is what clap parses (every field optional so
//! that "not given" can fall through to the file); [`Config`] is the
//! validated result the rest of the hub uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use thiserror::Error;

use crate::credentials::TokenPolicy;
use crate::presence::HeartbeatPolicy;
use crate::store::Synchronous;

mod tls;

pub use tls::TlsFiles;

/// Longest heartbeat interval accepted: one day.
const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 24 * 3600;
/// Longest token lifetime accepted: ten years.
const MAX_TOKEN_LIFETIME_DAYS: u32 = 3650;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Why the configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML file is not valid.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid setting `{name}`: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Flags of `hub serve`; each also reads `HUB_<NAME>`.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// REST listener [default: 0.0.0.0:8080].
    #[arg(long, env = "HUB_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Device MQTT over TLS listener [default: 0.0.0.0:8883].
    #[arg(long, env = "HUB_MQTTS_ADDR")]
    pub mqtts_addr: Option<SocketAddr>,
    /// Plaintext device MQTT listener for local development [default: off].
    #[arg(long, env = "HUB_MQTT_ADDR")]
    pub mqtt_addr: Option<SocketAddr>,
    /// Where the database and the admin token live [default: ./data].
    #[arg(long, env = "HUB_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the dev CA and server certificate live, created when missing
    /// [default: ./certs/dev]; unused with --tls-cert.
    #[arg(long, env = "HUB_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
    /// The device edge's own certificate chain (PEM, leaf first), in place
    /// of the dev certificates; needs --tls-key. Never modified.
    #[arg(long, env = "HUB_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long, env = "HUB_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// With --tls-cert: CA certificates (PEM) that sign appliances' client
    /// certificates, for --device-auth certificate or either.
    #[arg(long, env = "HUB_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// With --tls-cert: the CA certificate (PEM) `POST /va/register/` hands
    /// to appliances as `caCert` [default: none, appliances verify the edge
    /// with the roots they have].
    #[arg(long, env = "HUB_REGISTRATION_CA")]
    pub registration_ca: Option<PathBuf>,
    /// External MQTT broker (`mqtt://host:port`); the embedded one otherwise.
    #[arg(long, env = "HUB_BROKER_URL")]
    pub broker_url: Option<String>,
    /// Username for the external broker.
    #[arg(long, env = "HUB_BROKER_USERNAME")]
    pub broker_username: Option<String>,
    /// Password for the external broker.
    #[arg(long, env = "HUB_BROKER_PASSWORD", hide_env_values = true)]
    pub broker_password: Option<String>,
    /// Shared subscription group, so that hub replicas split device traffic.
    #[arg(long, env = "HUB_SHARE_GROUP")]
    pub share_group: Option<String>,
    /// MQTT client id of this hub replica [default: fleethub-hub].
    #[arg(long, env = "HUB_CLIENT_ID")]
    pub client_id: Option<String>,
    /// SQLite `synchronous` setting: full, normal or off [default: full].
    #[arg(long, env = "HUB_SYNCHRONOUS")]
    pub synchronous: Option<String>,
    /// Host name appliances use to reach this hub, put in certificates and
    /// registration answers [default: localhost].
    #[arg(long, env = "HUB_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// How appliances authenticate: token, certificate or either [default: token].
    #[arg(long, env = "HUB_DEVICE_AUTH")]
    pub device_auth: Option<String>,
    /// Product key of the appliances' namespace [default: va].
    #[arg(long, env = "HUB_PRODUCT_KEY")]
    pub product_key: Option<String>,
    /// Seconds between two heartbeats to every connected appliance
    /// [default: 300].
    #[arg(long, env = "HUB_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Days an appliance token is valid [default: 60].
    #[arg(long, env = "HUB_TOKEN_LIFETIME_DAYS")]
    pub token_lifetime_days: Option<u32>,
    /// Days before expiry at which an appliance gets a new token
    /// [default: 10].
    #[arg(long, env = "HUB_TOKEN_RENEW_BEFORE_DAYS")]
    pub token_renew_before_days: Option<u32>,
    /// Base URL of the signed links appliances get (downloads, log
    /// uploads) [default: http://{public-host}:{REST port}].
    #[arg(long, env = "HUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest artifact upload: bytes, or with a unit (KiB, MiB, GiB)
    /// [default: 2GiB].
    #[arg(long, env = "HUB_MAX_ARTIFACT_SIZE")]
    pub max_artifact_size: Option<ByteSize>,
    /// Largest log archive an appliance uploads [default: 256MiB].
    #[arg(long, env = "HUB_MAX_LOG_SIZE")]
    pub max_log_size: Option<ByteSize>,
    /// How long a signed link stays valid, in seconds [default: 604800, 7 days].
    #[arg(long, env = "HUB_LINK_TTL")]
    pub link_ttl: Option<u64>,
    /// Honour the `x-customer-id` header set by a trusted gateway in front
    /// of the hub, in place of the customer's api key [default: off].
    #[arg(long, env = "HUB_TRUST_GATEWAY", num_args = 0..=1, default_missing_value = "true")]
    pub trust_gateway: Option<bool>,
    /// Days a customer's register token stays valid [default: 30].
    #[arg(long, env = "HUB_REGISTER_TOKEN_DAYS")]
    pub register_token_days: Option<u32>,
    /// TOML file with any of the settings above (kebab-case keys).
    #[arg(long, env = "HUB_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// The validated settings of a running hub.
#[derive(Debug, Clone)]
pub struct Config {
    /// REST listener.
    pub http_addr: SocketAddr,
    /// Device MQTT over TLS listener.
    pub mqtts_addr: SocketAddr,
    /// Plaintext device listener, off unless asked for.
    pub mqtt_addr: Option<SocketAddr>,
    /// Database, admin token.
    pub data_dir: PathBuf,
    /// Dev CA and server certificate (when `tls_files` is None).
    pub certs_dir: PathBuf,
    /// The operator's TLS files for the device edge; None: the dev
    /// certificates of `certs_dir`, created when missing.
    pub tls_files: Option<TlsFiles>,
    /// External broker, or `None` for the embedded one.
    pub broker: Option<ExternalBroker>,
    /// Shared subscription group.
    pub share_group: Option<String>,
    /// MQTT client id of this replica.
    pub client_id: String,
    /// SQLite durability.
    pub synchronous: Synchronous,
    /// Host name appliances use to reach the hub.
    pub public_host: String,
    /// Product key of the namespace.
    pub product_key: protocol::ProductKey,
    /// Admin token from `HUB_ADMIN_TOKEN`, if set.
    pub admin_token: Option<String>,
    /// How appliances authenticate at the device edge.
    pub device_auth: DeviceAuth,
    /// Heartbeat interval and liveness rules.
    pub heartbeat: HeartbeatPolicy,
    /// Appliance token lifetime and renewal.
    pub tokens: TokenPolicy,
    /// Whether `x-customer-id` from a trusted gateway identifies customers.
    pub trust_gateway: bool,
    /// Lifetime of register tokens, in milliseconds.
    pub register_token_lifetime_ms: i64,
    /// Base URL of signed links; None: `http://{public_host}:{REST port}`
    /// with the port the REST listener bound.
    pub public_url: Option<String>,
    /// Largest artifact upload, bytes.
    pub max_artifact_size: u64,
    /// Largest log archive, bytes.
    pub max_log_size: u64,
    /// Lifetime of a signed link, seconds.
    pub link_ttl_secs: u64,
}

/// A size in bytes, written as a number of bytes or with a unit: `B`,
/// `KiB`, `MiB`, `GiB`, `TiB` (or `K`, `M`, `G`, `T`; case-insensitive;
/// all powers of 1024). In TOML, a number or such a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            "t" | "tib" => 40,
            _ => {
                return Err(format!(
                    "`{s}`: expected bytes, or a number with KiB, MiB, GiB or TiB"
                ))
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1u64 << shift))
            .map(Self)
            .ok_or_else(|| format!("`{s}`: expected bytes, or a number with KiB, MiB, GiB or TiB"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Self(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// How appliances prove who they are at the device edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceAuth {
    /// MQTT password = appliance token.
    #[default]
    Token,
    /// A client certificate signed by the hub's CA, CN = appliance id.
    Certificate,
    /// A client certificate when presented, else the token.
    Either,
}

/// An external MQTT broker.
#[derive(Debug, Clone)]
pub struct ExternalBroker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Credentials, if the broker wants them.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

impl Config {
    /// Merges flags/env (already in `args` by clap) over the TOML file named
    /// by `args.config`, over the defaults, and validates the result.
    pub fn load(args: ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => ServeArgs::default(),
        };
        Self::merge(args, file, std::env::var("HUB_ADMIN_TOKEN").ok())
    }

    /// Merge without reading anything: `first` wins over `file`.
    pub fn merge(
        first: ServeArgs,
        file: ServeArgs,
        admin_token: Option<String>,
    ) -> Result<Self, ConfigError> {
        let pick = |a: Option<String>, b: Option<String>| a.or(b);
        let broker_url = pick(first.broker_url, file.broker_url);
        let broker = broker_url
            .map(|url| {
                parse_broker_url(&url).map(|(host, port)| ExternalBroker {
                    host,
                    port,
                    username: pick(first.broker_username, file.broker_username),
                    password: pick(first.broker_password, file.broker_password),
                })
            })
            .transpose()?;
        let synchronous = match pick(first.synchronous, file.synchronous).as_deref() {
            None | Some("full") => Synchronous::Full,
            Some("normal") => Synchronous::Normal,
            Some("off") => Synchronous::Off,
            Some(other) => {
                return Err(invalid(
                    "synchronous",
                    format!("`{other}` is not full, normal or off"),
                ))
            }
        };
        let product_key = pick(first.product_key, file.product_key)
            .unwrap_or_else(|| protocol::DEFAULT_PRODUCT_KEY.to_owned())
            .parse()
            .map_err(|e: protocol::ProtocolError| invalid("product-key", e.to_string()))?;
        let share_group = pick(first.share_group, file.share_group);
        if let Some(group) = &share_group {
            let ok = !group.is_empty()
                && group.len() <= 64
                && group
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid(
                    "share-group",
                    "expected 1-64 characters of A-Z, a-z, 0-9, '-' and '_'".into(),
                ));
            }
        }
        let device_auth = match pick(first.device_auth, file.device_auth).as_deref() {
            None | Some("token") => DeviceAuth::Token,
            Some("certificate") => DeviceAuth::Certificate,
            Some("either") => DeviceAuth::Either,
            Some(other) => {
                return Err(invalid(
                    "device-auth",
                    format!("`{other}` is not token, certificate or either"),
                ))
            }
        };
        let tls_files = tls::tls_files(
            tls::Given {
                cert: first.tls_cert.or(file.tls_cert),
                key: first.tls_key.or(file.tls_key),
                client_ca: first.client_ca.or(file.client_ca),
                registration_ca: first.registration_ca.or(file.registration_ca),
            },
            device_auth,
        )?;
        let public_url = pick(first.public_url, file.public_url)
            .map(|url| check_public_url(&url))
            .transpose()?;
        let max_artifact_size = first
            .max_artifact_size
            .or(file.max_artifact_size)
            .map_or(crate::artifacts::DEFAULT_MAX_ARTIFACT_SIZE, |s| s.0);
        let max_log_size = first
            .max_log_size
            .or(file.max_log_size)
            .map_or(crate::artifacts::DEFAULT_MAX_LOG_SIZE, |s| s.0);
        if max_artifact_size == 0 || max_log_size == 0 {
            return Err(invalid(
                "max-artifact-size / max-log-size",
                "must be at least 1 byte".into(),
            ));
        }
        let link_ttl_secs = first
            .link_ttl
            .or(file.link_ttl)
            .unwrap_or(crate::artifacts::signer::DEFAULT_TTL_SECS);
        if !(60..=MAX_LINK_TTL_SECS).contains(&link_ttl_secs) {
            return Err(invalid(
                "link-ttl",
                format!("expected 60-{MAX_LINK_TTL_SECS} seconds"),
            ));
        }
        let register_token_days = first
            .register_token_days
            .or(file.register_token_days)
            .unwrap_or(30);
        if !(1..=3650).contains(&register_token_days) {
            return Err(invalid(
                "register-token-days",
                format!("{register_token_days} is not 1-3650"),
            ));
        }
        let admin_token = admin_token.filter(|t| !t.is_empty());
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "HUB_ADMIN_TOKEN",
                "must be at least 16 characters".into(),
            ));
        }
        let heartbeat = heartbeat_policy(first.heartbeat_interval.or(file.heartbeat_interval))?;
        let tokens = token_policy(
            first.token_lifetime_days.or(file.token_lifetime_days),
            first
                .token_renew_before_days
                .or(file.token_renew_before_days),
        )?;
        Ok(Self {
            http_addr: first
                .http_addr
                .or(file.http_addr)
                .unwrap_or(([0, 0, 0, 0], 8080).into()),
            mqtts_addr: first
                .mqtts_addr
                .or(file.mqtts_addr)
                .unwrap_or(([0, 0, 0, 0], 8883).into()),
            mqtt_addr: first.mqtt_addr.or(file.mqtt_addr),
            data_dir: first
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "data".into()),
            certs_dir: first
                .certs_dir
                .or(file.certs_dir)
                .unwrap_or_else(|| Path::new("certs").join("dev")),
            tls_files,
            broker,
            share_group,
            client_id: pick(first.client_id, file.client_id)
                .unwrap_or_else(|| "fleethub-hub".into()),
            synchronous,
            public_host: pick(first.public_host, file.public_host)
                .unwrap_or_else(|| "localhost".into()),
            product_key,
            admin_token,
            device_auth,
            heartbeat,
            tokens,
            public_url,
            max_artifact_size,
            max_log_size,
            link_ttl_secs,
            trust_gateway: first.trust_gateway.or(file.trust_gateway).unwrap_or(false),
            register_token_lifetime_ms: i64::from(register_token_days) * 24 * 3600 * 1000,
        })
    }
}

fn heartbeat_policy(interval_secs: Option<u64>) -> Result<HeartbeatPolicy, ConfigError> {
    let mut policy = HeartbeatPolicy::default();
    if let Some(secs) = interval_secs {
        if !(1..=MAX_HEARTBEAT_INTERVAL_SECS).contains(&secs) {
            return Err(invalid(
                "heartbeat-interval",
                format!("expected 1-{MAX_HEARTBEAT_INTERVAL_SECS} seconds"),
            ));
        }
        policy.interval_ms = i64::try_from(secs * 1000).unwrap_or(i64::MAX);
    }
    Ok(policy)
}

fn token_policy(
    lifetime_days: Option<u32>,
    renew_before_days: Option<u32>,
) -> Result<TokenPolicy, ConfigError> {
    let mut policy = TokenPolicy::default();
    if let Some(days) = lifetime_days {
        if !(1..=MAX_TOKEN_LIFETIME_DAYS).contains(&days) {
            return Err(invalid(
                "token-lifetime-days",
                format!("expected 1-{MAX_TOKEN_LIFETIME_DAYS}"),
            ));
        }
        policy.lifetime_ms = i64::from(days) * DAY_MS;
    }
    if let Some(days) = renew_before_days {
        policy.renew_before_ms = i64::from(days) * DAY_MS;
    }
    if policy.renew_before_ms >= policy.lifetime_ms {
        return Err(invalid(
            "token-renew-before-days",
            "must be shorter than the token lifetime".into(),
        ));
    }
    Ok(policy)
}

/// Longest link lifetime: one year.
const MAX_LINK_TTL_SECS: u64 = 365 * 24 * 3600;

/// A base URL for links: `http://` or `https://`, at most 512 visible
/// ASCII characters (so that every link fits a task's 1024-byte
/// `fileUrl`), no query or fragment; a trailing slash is dropped.
fn check_public_url(url: &str) -> Result<String, ConfigError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && url.len() <= 512
        && url.bytes().all(|b| (b'!'..=b'~').contains(&b))
        && !url.contains(['?', '#']);
    if !ok {
        return Err(invalid(
            "public-url",
            "expected http(s)://host[:port][/path], at most 512 characters, no query".into(),
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn parse_broker_url(url: &str) -> Result<(String, u16), ConfigError> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| invalid("broker-url", "expected mqtt://host:port".into()))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| invalid("broker-url", "expected mqtt://host:port".into()))?;
    let port = port
        .parse()
        .map_err(|_| invalid("broker-url", format!("`{port}` is not a port")))?;
    if host.is_empty() || host.contains('/') {
        return Err(invalid("broker-url", "missing host".into()));
    }
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

fn invalid(name: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let config =
            Config::merge(ServeArgs::default(), ServeArgs::default(), None).expect("valid");
        assert_eq!(config.http_addr, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(config.mqtts_addr, "0.0.0.0:8883".parse().expect("addr"));
        assert!(config.mqtt_addr.is_none());
        assert!(config.broker.is_none());
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert_eq!(config.certs_dir, Path::new("certs").join("dev"));
        assert_eq!(config.tls_files, None);
        assert_eq!(config.synchronous, Synchronous::Full);
        assert_eq!(config.heartbeat.interval_ms, 300_000);
        assert_eq!(config.tokens.lifetime_ms, 60 * DAY_MS);
        assert_eq!(config.tokens.renew_before_ms, 10 * DAY_MS);
        assert_eq!(config.public_url, None);
        assert_eq!(config.max_artifact_size, 2 << 30);
        assert_eq!(config.max_log_size, 256 << 20);
        assert_eq!(config.link_ttl_secs, 7 * 24 * 3600);
        assert!(!config.trust_gateway);
        assert_eq!(config.register_token_lifetime_ms, 30 * 24 * 3600 * 1000);
    }

    #[test]
    fn artifact_settings_parse_sizes_and_urls() {
        let file: ServeArgs = toml::from_str(
            "max-artifact-size = \"3GiB\"\nmax-log-size = 1024\npublic-url = \"https://hub.example.com/\"\nlink-ttl = 3600",
        )
        .expect("toml");
        let config = Config::merge(ServeArgs::default(), file, None).expect("valid");
        assert_eq!(config.max_artifact_size, 3 << 30);
        assert_eq!(config.max_log_size, 1024);
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://hub.example.com")
        );
        assert_eq!(config.link_ttl_secs, 3600);
        for (text, bytes) in [
            ("10", 10),
            ("1k", 1024),
            ("2 MiB", 2 << 20),
            ("1T", 1 << 40),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "1PB",
            "99999999999999999999",
            "17179869184GiB",
        ] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        for url in [
            "ftp://x",
            "http://",
            "http:///x",
            "http://x?y",
            "http://a b",
            "x",
        ] {
            let args = ServeArgs {
                public_url: Some(url.into()),
                ..ServeArgs::default()
            };
            assert!(
                Config::merge(args, ServeArgs::default(), None).is_err(),
                "{url}"
            );
        }
        for ttl in [0, 59, 366 * 24 * 3600] {
            let args = ServeArgs {
                link_ttl: Some(ttl),
                ..ServeArgs::default()
            };
            assert!(
                Config::merge(args, ServeArgs::default(), None).is_err(),
                "{ttl}"
            );
        }
    }

    #[test]
    fn gateway_trust_and_token_lifetime_are_settings() {
        let file: ServeArgs =
            toml::from_str("trust-gateway = true\nregister-token-days = 7").expect("toml");
        let config = Config::merge(ServeArgs::default(), file, None).expect("valid");
        assert!(config.trust_gateway);
        assert_eq!(config.register_token_lifetime_ms, 7 * 24 * 3600 * 1000);
        let zero = ServeArgs {
            register_token_days: Some(0),
            ..ServeArgs::default()
        };
        assert!(Config::merge(zero, ServeArgs::default(), None).is_err());
    }

    #[test]
    fn flags_win_over_file() {
        let file: ServeArgs = toml::from_str(
            "http-addr = \"127.0.0.1:1\"\ndata-dir = \"/x\"\nbroker-url = \"mqtt://b:1883\"",
        )
        .expect("toml");
        let flags = ServeArgs {
            http_addr: Some("127.0.0.1:2".parse().expect("addr")),
            ..ServeArgs::default()
        };
        let config = Config::merge(flags, file, None).expect("valid");
        assert_eq!(config.http_addr.port(), 2);
        assert_eq!(config.data_dir, PathBuf::from("/x"));
        let broker = config.broker.expect("external broker");
        assert_eq!((broker.host.as_str(), broker.port), ("b", 1883));
    }

    #[test]
    fn bad_values_are_errors() {
        for (args, name) in [
            (
                ServeArgs {
                    broker_url: Some("tcp://x:1".into()),
                    ..ServeArgs::default()
                },
                "broker-url",
            ),
            (
                ServeArgs {
                    broker_url: Some("mqtt://x:port".into()),
                    ..ServeArgs::default()
                },
                "broker-url",
            ),
            (
                ServeArgs {
                    synchronous: Some("fast".into()),
                    ..ServeArgs::default()
                },
                "synchronous",
            ),
            (
                ServeArgs {
                    share_group: Some("a/b".into()),
                    ..ServeArgs::default()
                },
                "share-group",
            ),
            (
                ServeArgs {
                    product_key: Some("A+".into()),
                    ..ServeArgs::default()
                },
                "product-key",
            ),
        ] {
            match Config::merge(args, ServeArgs::default(), None) {
                Err(ConfigError::Invalid { name: got, .. }) => assert_eq!(got, name),
                other => panic!("expected an error for {name}, got {other:?}"),
            }
        }
        for (args, name) in [
            (
                ServeArgs {
                    heartbeat_interval: Some(0),
                    ..ServeArgs::default()
                },
                "heartbeat-interval",
            ),
            (
                ServeArgs {
                    token_lifetime_days: Some(5),
                    ..ServeArgs::default()
                },
                "token-renew-before-days",
            ),
        ] {
            match Config::merge(args, ServeArgs::default(), None) {
                Err(ConfigError::Invalid { name: got, .. }) => assert_eq!(got, name),
                other => panic!("expected an error for {name}, got {other:?}"),
            }
        }
        assert!(toml::from_str::<ServeArgs>("unknown-key = 1").is_err());
        assert!(Config::merge(
            ServeArgs::default(),
            ServeArgs::default(),
            Some("short".into())
        )
        .is_err());
    }
}
