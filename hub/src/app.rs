//! Assembles a running hub from a [`Config`]: store, broker (embedded or
//! external), the MQTT client and its dispatcher, the outbox, the
//! scheduler and the REST listener. [`Hub::shutdown`] stops accepting,
//! lets every task finish and drains the store's writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use broker::edge::{AuthMode, Edge, EdgeConfig, EdgeHandle, TlsListener};
use broker::{BrokerLimits, Credentials, EmbeddedBroker};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

use crate::api::register::RegistrationSettings;
use crate::api::{self, AppState};
use crate::artifacts::logs::LogService;
use crate::artifacts::{ArtifactService, Links, UrlSigner};
use crate::clock::SharedClock;
use crate::config::{Config, DeviceAuth};
use crate::credentials::AdminToken;
use crate::device::DeviceGateway;
use crate::jobs::JobService;
use crate::mqtt::outbox::Outbox;
use crate::mqtt::throttle::Throttle;
use crate::mqtt::{dispatch, link, MqttSettings};
use crate::register_token::RegisterTokens;
use crate::scheduler::{self, SchedulerConfig, SchedulerHandle};
use crate::store::{Store, StoreError, StoreOptions};

/// Most device messages handled concurrently.
const MAX_IN_FLIGHT: usize = 4096;
/// How long the hub waits for its subscriptions before starting the edge.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the hub could not start.
#[derive(Debug, Error)]
pub enum HubError {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The embedded broker did not start.
    #[error("embedded broker: {0}")]
    Broker(#[from] broker::BrokerError),
    /// The dev certificates could not be created or read.
    #[error("certificates: {0}")]
    Certs(#[from] broker::certs::CertsError),
    /// The device edge did not start.
    #[error("device edge: {0}")]
    Edge(#[from] broker::edge::EdgeError),
    /// The broker did not acknowledge the hub's subscriptions in time.
    #[error("the broker did not acknowledge the hub's subscriptions within {0:?}")]
    NotSubscribed(Duration),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HubError {
    let what = what.into();
    move |source| HubError::Io { what, source }
}

/// A running hub.
pub struct Hub {
    http_addr: SocketAddr,
    artifacts: ArtifactService,
    logs: LogService,
    broker: Option<EmbeddedBroker>,
    edge: Option<EdgeHandle>,
    new_admin_token: Option<String>,
    store: Store,
    scheduler: SchedulerHandle,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Hub {
    /// Starts everything the configuration asks for and returns once every
    /// listener is bound.
    pub async fn start(config: Config, clock: SharedClock) -> Result<Self, HubError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(io(format!("creating {}", config.data_dir.display())))?;
        // Bound first: links carry the public URL, whose default port is
        // the one bound.
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(io(format!("binding REST listener {}", config.http_addr)))?;
        let http_addr = listener
            .local_addr()
            .map_err(io("reading the REST address"))?;
        let signer = Arc::new(
            UrlSigner::load_or_create(
                &config.data_dir,
                &public_url(&config, http_addr),
                config.link_ttl_secs,
                clock.clone(),
            )
            .map_err(io("reading the link signing key"))?,
        );
        let store = Store::open_with_links(
            &config.data_dir.join("hub.db"),
            StoreOptions {
                synchronous: config.synchronous,
                ..StoreOptions::default()
            },
            Some(Arc::new(Links(Arc::clone(&signer)))),
        )?;
        let (admin_token, new_admin_token) = match &config.admin_token {
            Some(secret) => (AdminToken::from_secret(secret), None),
            None => AdminToken::load_or_create(&config.data_dir)
                .map_err(io("reading the admin token"))?,
        };
        let (broker, mqtt) = connect_broker(&config).await?;

        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let link = link::start(&mqtt, shutdown.clone(), &tracker);
        let subscribed = link.subscribed();
        let link::Link {
            client, inbound, ..
        } = link;
        let outbox =
            Outbox::start(client.clone(), store.clone(), shutdown.clone(), &tracker).await?;
        let scheduler = scheduler::start(
            store.clone(),
            outbox.clone(),
            clock.clone(),
            SchedulerConfig {
                heartbeat: config.heartbeat,
                tokens: config.tokens,
            },
            shutdown.clone(),
            &tracker,
        );
        let gateway =
            DeviceGateway::new(store.clone(), clock.clone()).with_heartbeat(config.heartbeat);
        tracker.spawn(dispatch::run(
            inbound,
            client,
            gateway,
            Arc::new(Throttle::new(50, 20)),
            MAX_IN_FLIGHT,
            shutdown.clone(),
            tracker.clone(),
        ));
        let edge = start_edge_when_subscribed(
            &config,
            broker.as_ref(),
            subscribed,
            &store,
            &clock,
            &shutdown,
            &tracker,
        );
        let edge = match edge.await {
            Ok(edge) => edge,
            Err(err) => {
                shutdown.cancel();
                return Err(err);
            }
        };

        // The REST API reads through its own connections: device traffic
        // (credentials on connect, `$next`, job/get) cannot queue them.
        let api_store = store.with_own_readers(API_READERS);
        let jobs = JobService::new(api_store.clone(), outbox, scheduler.clone(), clock.clone());
        let artifacts = ArtifactService::open(
            &config.data_dir,
            api_store.clone(),
            Arc::clone(&signer),
            clock.clone(),
            config.max_artifact_size,
        )
        .map_err(io("opening the artifact store"))?;
        let logs = LogService::open(
            &config.data_dir,
            api_store.clone(),
            jobs.clone(),
            signer,
            clock.clone(),
            config.max_log_size,
        )
        .map_err(io("opening the log store"))?;
        let registration = registration_settings(&config, edge.as_ref())?;
        let state = AppState {
            store: api_store,
            jobs,
            admin_token,
            clock,
            product_key: config.product_key.clone(),
            artifacts: artifacts.clone(),
            logs: logs.clone(),
            registration: Arc::new(registration),
        };
        if let Err(err) = serve_http(listener, state, shutdown.clone(), &tracker) {
            shutdown.cancel();
            return Err(err);
        }
        tracing::info!(%http_addr, "REST API listening");
        Ok(Self {
            http_addr,
            artifacts,
            logs,
            broker,
            edge,
            new_admin_token,
            store,
            scheduler,
            shutdown,
            tracker,
        })
    }

    /// Where the REST API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where appliances connect over TLS (the device edge), when it runs.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().and_then(EdgeHandle::mqtts_addr)
    }

    /// The plaintext device listener, when it was asked for.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().and_then(EdgeHandle::mqtt_addr)
    }

    /// The embedded broker's loopback address, when it is used.
    pub fn broker_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(EmbeddedBroker::addr)
    }

    /// Internal credentials of the embedded broker (tests use them to play
    /// appliances before the device edge is in front).
    pub fn broker_credentials(&self) -> Option<&Credentials> {
        self.broker.as_ref().map(EmbeddedBroker::hub_credentials)
    }

    /// The admin token, when this start created it (print it once).
    pub fn new_admin_token(&self) -> Option<&str> {
        self.new_admin_token.as_deref()
    }

    /// The store, for tests and tools in this process.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The scheduler, to wake it (tests that move a manual clock).
    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.scheduler
    }

    /// The artifact store (signs links too).
    pub fn artifacts(&self) -> &ArtifactService {
        &self.artifacts
    }

    /// Log collection.
    pub fn logs(&self) -> &LogService {
        &self.logs
    }

    /// Stops accepting, waits for every task, and drains the writer.
    pub async fn shutdown(self) {
        if let Some(edge) = self.edge {
            edge.shutdown().await;
        }
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(err) = self.store.close().await {
            tracing::error!(%err, "closing the store");
        }
    }
}

/// What `POST /va/register/` hands out: the register token keys, the
/// device edge's host and the port its TLS listener actually bound, and
/// the CA certificate appliances trust.
fn registration_settings(
    config: &Config,
    edge: Option<&EdgeHandle>,
) -> Result<RegistrationSettings, HubError> {
    let tokens =
        RegisterTokens::load_or_create(&config.data_dir, config.register_token_lifetime_ms)
            .map_err(io("reading the register token secret"))?;
    let ca_cert = match &config.tls_files {
        Some(files) => match &files.registration_ca {
            Some(path) => {
                let what = format!("reading --registration-ca {}", path.display());
                let pem = std::fs::read_to_string(path).map_err(io(what.clone()))?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    let not_pem = std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "no PEM certificate in the file",
                    );
                    return Err(io(what)(not_pem));
                }
                Some(pem)
            }
            None => None,
        },
        None => {
            let ca_path = config.certs_dir.join("ca.pem");
            match std::fs::read_to_string(&ca_path) {
                Ok(pem) => Some(pem),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => return Err(io(format!("reading {}", ca_path.display()))(err)),
            }
        }
    };
    let iot_port = edge
        .and_then(EdgeHandle::mqtts_addr)
        .map_or(config.mqtts_addr.port(), |addr| addr.port());
    Ok(RegistrationSettings {
        tokens,
        iot_host: config.public_host.clone(),
        iot_port,
        ca_cert,
        trust_gateway: config.trust_gateway,
        appliance_token_lifetime_ms: config.tokens.lifetime_ms,
    })
}

async fn connect_broker(
    config: &Config,
) -> Result<(Option<EmbeddedBroker>, MqttSettings), HubError> {
    let settings = |host: String, port, username, password| MqttSettings {
        host,
        port,
        username,
        password,
        client_id: config.client_id.clone(),
        share_group: config.share_group.clone(),
        max_in_flight: MAX_IN_FLIGHT,
    };
    match &config.broker {
        Some(external) => Ok((
            None,
            settings(
                external.host.clone(),
                external.port,
                external.username.clone(),
                external.password.clone(),
            ),
        )),
        None => {
            let broker = EmbeddedBroker::start(BrokerLimits::default()).await?;
            let creds = broker.hub_credentials().clone();
            let addr = broker.addr();
            tracing::info!(%addr, "embedded broker listening on loopback");
            let mqtt = settings(
                addr.ip().to_string(),
                addr.port(),
                Some(creds.username),
                Some(creds.password),
            );
            Ok((Some(broker), mqtt))
        }
    }
}

/// Starts the device edge in front of the embedded broker once the hub's
/// subscriptions are in place (the broker drops a device message that no
/// filter matches); `None` with an external broker, which appliances reach
/// directly.
async fn start_edge_when_subscribed(
    config: &Config,
    broker: Option<&EmbeddedBroker>,
    subscribed: impl std::future::Future<Output = bool>,
    store: &Store,
    clock: &SharedClock,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<EdgeHandle>, HubError> {
    let Some(broker) = broker else {
        tracing::info!("external broker: appliances connect to it, not to this hub");
        return Ok(None);
    };
    if !matches!(timeout(SUBSCRIBE_TIMEOUT, subscribed).await, Ok(true)) {
        return Err(HubError::NotSubscribed(SUBSCRIBE_TIMEOUT));
    }
    start_edge(config, broker, store, clock, shutdown.clone(), tracker)
        .await
        .map(Some)
}

async fn start_edge(
    config: &Config,
    broker: &EmbeddedBroker,
    store: &Store,
    clock: &SharedClock,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<EdgeHandle, HubError> {
    let listener = match &config.tls_files {
        Some(files) => TlsListener {
            addr: config.mqtts_addr,
            cert_chain: files.cert_chain.clone(),
            private_key: files.private_key.clone(),
            client_ca: files.client_ca.clone(),
        },
        None => {
            let certs = broker::certs::ensure_dev_certs(
                &config.certs_dir,
                std::slice::from_ref(&config.public_host),
            )?;
            TlsListener {
                addr: config.mqtts_addr,
                cert_chain: certs.server_cert,
                private_key: certs.server_key,
                client_ca: Some(certs.ca_cert),
            }
        }
    };
    let edge_config = EdgeConfig {
        mqtts: Some(listener),
        mqtt_addr: config.mqtt_addr,
        auth_mode: match config.device_auth {
            DeviceAuth::Token => AuthMode::Token,
            DeviceAuth::Certificate => AuthMode::Certificate,
            DeviceAuth::Either => AuthMode::Either,
        },
        product_key: config.product_key.clone(),
        ..EdgeConfig::default()
    };
    let endpoint = broker.edge_endpoint();
    let presence = crate::edge::start_presence(store.clone(), clock.clone(), shutdown, tracker);
    let authenticator = crate::edge::StoreAuthenticator::new(store.clone(), clock.clone());
    let edge = Edge::start(edge_config, endpoint, authenticator, presence).await?;
    if let Some(addr) = edge.mqtts_addr() {
        tracing::info!(%addr, "device MQTT over TLS listening");
    }
    if let Some(addr) = edge.mqtt_addr() {
        tracing::warn!(%addr, "plaintext device MQTT listening (development only)");
    }
    Ok(edge)
}

/// `--public-url`, or `http://{public host}:{bound REST port}`.
fn public_url(config: &Config, http_addr: SocketAddr) -> String {
    if let Some(url) = &config.public_url {
        return url.clone();
    }
    let host = &config.public_host;
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{}", http_addr.port())
    } else {
        format!("http://{host}:{}", http_addr.port())
    }
}

/// Reader connections of the REST API (beside the store's own pool).
const API_READERS: usize = 4;

/// Worker threads of the REST API's runtime.
const HTTP_WORKERS: usize = 2;

/// Serves the REST API on a runtime of its own (its own workers and its
/// own blocking pool for store reads and files), on a thread that ends
/// once the server has shut down gracefully; the tracker waits for it.
/// On the hub's main runtime a request waited behind the wake-ups of
/// every appliance session at each of its awaits: the job summary's p99
/// went from 10 ms idle to over a second during a job to 10,000
/// appliances (BENCHMARKS.md, REST under load).
fn serve_http(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), HubError> {
    let app = tower::util::MapRequestLayer::new(api::trim_trailing_slash).layer(api::router(state));
    let service = axum::ServiceExt::<Request>::into_make_service(app);
    let listener = listener
        .into_std()
        .map_err(io("handing the REST listener to its runtime"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(HTTP_WORKERS)
        .thread_name("hub-http")
        .enable_all()
        .build()
        .map_err(io("starting the REST runtime"))?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("hub-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::error!(%err, "REST listener");
                        return;
                    }
                };
                let server = axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown.cancelled_owned());
                if let Err(err) = server.await {
                    tracing::error!(%err, "REST server failed");
                }
            });
            // Waits for the reads and file transfers still on its pool.
            drop(runtime);
            let _ = done.send(());
        })
        .map_err(io("starting the REST thread"))?;
    tracker.spawn(async move {
        let _ = finished.await;
    });
    Ok(())
}
