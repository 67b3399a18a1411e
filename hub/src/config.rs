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

use crate::store::Synchronous;

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
    /// Where the CA and server certificate live [default: ./certs/dev].
    #[arg(long, env = "HUB_CERTS_DIR")]
    pub certs_dir: Option<PathBuf>,
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
    /// CA and server certificate.
    pub certs_dir: PathBuf,
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
    /// Whether `x-customer-id` from a trusted gateway identifies customers.
    pub trust_gateway: bool,
    /// Lifetime of register tokens, in milliseconds.
    pub register_token_lifetime_ms: i64,
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
            trust_gateway: first.trust_gateway.or(file.trust_gateway).unwrap_or(false),
            register_token_lifetime_ms: i64::from(register_token_days) * 24 * 3600 * 1000,
        })
    }
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
        assert_eq!(config.synchronous, Synchronous::Full);
        assert!(!config.trust_gateway);
        assert_eq!(config.register_token_lifetime_ms, 30 * 24 * 3600 * 1000);
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
        assert!(toml::from_str::<ServeArgs>("unknown-key = 1").is_err());
        assert!(Config::merge(
            ServeArgs::default(),
            ServeArgs::default(),
            Some("short".into())
        )
        .is_err());
    }
}
