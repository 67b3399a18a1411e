//! The test's stand-in for the hub: an MQTT client subscribed to every
//! appliance's device -> hub topics that publishes notifies and replies, and
//! a file server (axum, port 0) that honours Range and accepts PUT uploads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use broker::{BrokerLimits, EmbeddedBroker};
use device_sim::appliance::Behaviour;
use device_sim::fleet::{Fleet, FleetConfig};
use device_sim::hub_api::{http_client, HubApi};
use device_sim::identity::Identities;
use device_sim::mqtt::BrokerTarget;
use protocol::message::{
    decode_get, decode_update, notify, GetReplyData, Reply, Request, Task, UpdateParams,
    UpdateReplyData,
};
use protocol::topic::hub_filters;
use protocol::{ExecutionStatus, MessageKind, ReplyCode, Topic};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeFilter};

/// Longest any single wait of a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// One message an appliance sent to the hub.
#[derive(Debug)]
pub enum Uplink {
    Get(Topic, Request<protocol::message::GetParams>),
    Update(Topic, Request<UpdateParams>),
    Metrics,
}

/// The test's hub: one MQTT client of the embedded broker.
pub struct TestHub {
    client: AsyncClient,
    events: EventLoop,
}

impl TestHub {
    /// Connects as the broker's `hub` principal and subscribes to every
    /// appliance's uplink topics.
    pub async fn connect(broker: &EmbeddedBroker) -> anyhow::Result<Self> {
        let creds = broker.hub_credentials();
        let mut options = MqttOptions::new("test-hub", "127.0.0.1", broker.addr().port());
        options.set_credentials(creds.username.clone(), creds.password.clone());
        options.set_keep_alive(Duration::from_secs(30));
        let (client, events) = AsyncClient::new(options, 64);
        let filters = hub_filters(None)
            .into_iter()
            .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
        client.subscribe_many(filters).await?;
        let mut hub = Self { client, events };
        hub.until(|event| matches!(event, Event::Incoming(Packet::SubAck(_))))
            .await?;
        Ok(hub)
    }

    async fn until(&mut self, mut want: impl FnMut(&Event) -> bool) -> anyhow::Result<Event> {
        let poll = async {
            loop {
                let event = self.events.poll().await?;
                if want(&event) {
                    return Ok::<_, anyhow::Error>(event);
                }
            }
        };
        tokio::time::timeout(WAIT, poll)
            .await
            .context("hub waited too long")?
    }

    /// The next message from any appliance.
    pub async fn next(&mut self) -> anyhow::Result<Uplink> {
        let event = self
            .until(|e| matches!(e, Event::Incoming(Packet::Publish(_))))
            .await?;
        let Event::Incoming(Packet::Publish(publish)) = event else {
            bail!("not a publish");
        };
        let topic = Topic::parse(&publish.topic)?;
        Ok(match topic.kind {
            MessageKind::JobGet => Uplink::Get(topic, decode_get(&publish.payload)?),
            MessageKind::JobUpdate => Uplink::Update(topic, decode_update(&publish.payload)?),
            MessageKind::MetricsPost => Uplink::Metrics,
            other => bail!("unexpected uplink {other:?}"),
        })
    }

    /// The next update, answering every get on the way with `$next`.
    pub async fn next_update(
        &mut self,
        next: Option<&Task>,
    ) -> anyhow::Result<(Topic, Request<UpdateParams>)> {
        loop {
            match self.next().await? {
                Uplink::Update(topic, update) => return Ok((topic, update)),
                Uplink::Get(topic, get) => self.reply_get(&topic, &get.id, next).await?,
                Uplink::Metrics => {}
            }
        }
    }

    pub async fn publish(
        &self,
        topic: &Topic,
        kind: MessageKind,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        let to = Topic::new(topic.product_key.clone(), topic.appliance_id, kind);
        self.client
            .publish(to.to_string(), QoS::AtLeastOnce, false, payload)
            .await?;
        Ok(())
    }

    pub async fn reply_get(
        &self,
        topic: &Topic,
        id: &str,
        task: Option<&Task>,
    ) -> anyhow::Result<()> {
        let data = GetReplyData::One {
            task: task.cloned().map(Box::new),
        };
        let reply = Reply::ok(id, MessageKind::JobGetReply, data);
        self.publish(topic, MessageKind::JobGetReply, serde_json::to_vec(&reply)?)
            .await
    }

    /// Accepts an update: 200 with the status it reported.
    pub async fn accept(
        &self,
        topic: &Topic,
        update: &Request<UpdateParams>,
        version: u64,
    ) -> anyhow::Result<()> {
        let data = UpdateReplyData {
            task_id: update.params.task_id.clone(),
            status: update.params.status.execution_status(),
            version_number: version,
        };
        let reply = Reply::new(
            &update.id,
            MessageKind::JobUpdateReply,
            ReplyCode::Ok,
            Some(data),
            "success",
        );
        self.publish(
            topic,
            MessageKind::JobUpdateReply,
            serde_json::to_vec(&reply)?,
        )
        .await
    }

    pub async fn notify(&self, topic: &Topic, task: &Task) -> anyhow::Result<()> {
        let message = notify(format!("n-{}", task.task_id), task.clone());
        self.publish(topic, MessageKind::JobNotify, serde_json::to_vec(&message)?)
            .await
    }
}

/// A task as the hub would send it.
pub fn task(document: protocol::JobDocument, file: Option<protocol::JobFile>) -> Task {
    Task {
        task_id: protocol::TaskId::new_random(),
        status: ExecutionStatus::Sent,
        execution_number: 1,
        version_number: 2,
        queued_at: 1,
        progress: None,
        status_details: None,
        job_document: document,
        job_file: file,
    }
}

/// Starts a fleet of `count` appliances on the embedded broker, connecting
/// with the edge's internal credentials, with downloads served by `files`.
pub fn fleet(
    broker: &EmbeddedBroker,
    files: &str,
    count: usize,
    behaviour: Behaviour,
    seed: u64,
) -> anyhow::Result<Fleet> {
    let mut target = BrokerTarget::from_url(&format!("mqtt://{}", broker.addr()), None)?;
    let edge = broker.edge_credentials();
    target.credentials = Some((edge.username.clone(), edge.password.clone()));
    let hub = HubApi::new(http_client(None)?, files, None)?;
    let config = FleetConfig {
        broker: target,
        hub,
        behaviour,
        seed,
        connect_rate: 0,
    };
    let identities = Identities::random(count, "unused");
    Ok(Fleet::start(config, identities.appliances))
}

pub async fn embedded_broker() -> anyhow::Result<EmbeddedBroker> {
    Ok(EmbeddedBroker::start(BrokerLimits::default()).await?)
}

/// What the file server saw.
#[derive(Debug, Default)]
pub struct FileLog {
    pub ranges: Mutex<Vec<String>>,
    pub uploads: AtomicUsize,
}

#[derive(Clone)]
struct Files {
    image: Bytes,
    log: Arc<FileLog>,
}

/// Serves `image` at `/files/fw.img` (with Range), answers 403 (an
/// expired link) at `/files/expired.img` and accepts PUT on
/// `/upload/{name}`; returns the base URL and what it saw.
pub async fn file_server(image: Vec<u8>) -> anyhow::Result<(String, Arc<FileLog>)> {
    let log = Arc::new(FileLog::default());
    let files = Files {
        image: Bytes::from(image),
        log: log.clone(),
    };
    let app = Router::new()
        .route("/files/fw.img", get(serve_image))
        .route(
            "/files/expired.img",
            get(|| async { StatusCode::FORBIDDEN }),
        )
        .route("/upload/{name}", put(take_upload))
        .with_state(files);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), log))
}

async fn serve_image(State(files): State<Files>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<usize>().ok());
    match range {
        Some(start) if start < files.image.len() => {
            if let Ok(mut ranges) = files.log.ranges.lock() {
                ranges.push(format!("bytes={start}-"));
            }
            let end = files.image.len() - 1;
            let content_range = format!("bytes {start}-{end}/{}", files.image.len());
            (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, content_range)],
                files.image.slice(start..),
            )
                .into_response()
        }
        _ => files.image.clone().into_response(),
    }
}

async fn take_upload(State(files): State<Files>, body: Bytes) -> StatusCode {
    if body.is_empty() {
        return StatusCode::BAD_REQUEST;
    }
    files.log.uploads.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}
