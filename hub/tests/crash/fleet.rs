//! Appliances played by rumqttc clients over TLS with their provisioned
//! tokens, following topics.md: `$next` on every connect, every task run
//! at most once (a task seen again gets its recorded final update again,
//! same clientToken), an update without a reply repeated after a timeout
//! (the hub may have died between the commit and the reply), reconnecting
//! to wherever the hub's edge is now. Each records every taskId it
//! received and ran.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::message::{
    decode_get_reply, decode_notify, decode_update_reply, GetReplyData, ReplyCode,
};
use protocol::{ApplianceId, ExecutionStatus, MessageKind, ProductKey, TaskId, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Delay before reconnecting after a connection ended.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How long an update waits for its reply before it is repeated
/// (topics.md says 10 s; shorter keeps the test short).
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// What one appliance saw and did.
#[derive(Debug, Default)]
pub struct Record {
    /// Notifies and `$next` answers per task (redeliveries included).
    pub received: HashMap<TaskId, u32>,
    /// Times each task was run: the appliance never runs one twice, so
    /// any count above 1 is a failure of this test's appliance, and a
    /// second task id is a second release.
    pub runs: HashMap<TaskId, u32>,
    /// Tasks whose final update the hub accepted.
    pub confirmed: HashSet<TaskId>,
    /// Replies other than 200 to an update.
    pub refused: Vec<String>,
    /// Final updates sent and not yet answered, with when they were sent.
    pub awaiting: HashMap<TaskId, std::time::Instant>,
    /// Updates repeated for want of a reply.
    pub repeated: u32,
    /// Connections made.
    pub connections: u32,
}

/// One simulated appliance.
pub struct Appliance {
    pub id: ApplianceId,
    pub token: String,
    pub record: Arc<Mutex<Record>>,
}

fn tls(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Appliance {
    /// Runs until `stop`, connecting to the address in `edge`.
    pub async fn run(
        self: Arc<Self>,
        edge: watch::Receiver<SocketAddr>,
        ca_pem: Arc<Vec<u8>>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let config = Arc::new(tls(&ca_pem)?);
        while !stop.is_cancelled() {
            let addr = *edge.borrow();
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.session(addr, config.clone()) => {}
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(RECONNECT_DELAY) => {}
            }
        }
        Ok(())
    }

    fn topic(&self, kind: MessageKind) -> String {
        Topic::new(ProductKey::default(), self.id, kind).to_string()
    }

    /// One connection, until it fails.
    async fn session(&self, addr: SocketAddr, config: Arc<rustls::ClientConfig>) {
        let id = self.id.to_string();
        let mut options = MqttOptions::new(id.clone(), addr.ip().to_string(), addr.port());
        options
            .set_credentials(id, self.token.clone())
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        for filter in protocol::topic::device_filters(&ProductKey::default(), &self.id) {
            if client.try_subscribe(filter, QoS::AtLeastOnce).is_err() {
                return;
            }
        }
        let mut subscribed = 0;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => match event {
                    Ok(event) => event,
                    Err(_) => return,
                },
                _ = check.tick() => {
                    self.repeat_unanswered(&client);
                    continue;
                }
            };
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    subscribed += 1;
                    if subscribed == 3 {
                        self.record.lock().map(|mut r| r.connections += 1).ok();
                        let get =
                            json!({"id": "next", "version": "1.0", "params": {"taskId": "$next"}});
                        let _ = client.try_publish(
                            self.topic(MessageKind::JobGet),
                            QoS::AtLeastOnce,
                            false,
                            get.to_string(),
                        );
                    }
                }
                Event::Incoming(Packet::Publish(publish)) => {
                    let Ok(topic) = Topic::parse(&publish.topic) else {
                        continue;
                    };
                    self.handle(&client, topic.kind, &publish.payload);
                }
                _ => {}
            }
        }
    }

    /// Repeats, byte for byte, the final updates still without a reply.
    fn repeat_unanswered(&self, client: &AsyncClient) {
        let overdue: Vec<TaskId> = {
            let mut record = self.record.lock().expect("record");
            let now = std::time::Instant::now();
            let overdue: Vec<TaskId> = record
                .awaiting
                .iter()
                .filter(|(_, sent)| now.duration_since(**sent) >= REPLY_TIMEOUT)
                .map(|(task, _)| task.clone())
                .collect();
            for task in &overdue {
                record.awaiting.insert(task.clone(), now);
                record.repeated += 1;
            }
            overdue
        };
        for task in overdue {
            self.send_final_update(client, &task);
        }
    }

    /// The final update of `task`: always the same id and clientToken.
    fn send_final_update(&self, client: &AsyncClient, task: &TaskId) {
        let update = json!({"id": format!("u-{task}"), "version": "1.0",
            "params": {"taskId": task, "status": "SUCCEEDED",
                       "clientToken": format!("done-{task}")}});
        let _ = client.try_publish(
            self.topic(MessageKind::JobUpdate),
            QoS::AtLeastOnce,
            false,
            update.to_string(),
        );
    }

    fn handle(&self, client: &AsyncClient, kind: MessageKind, payload: &[u8]) {
        let task = match kind {
            MessageKind::JobNotify => decode_notify(payload).ok().map(|n| n.params.task),
            MessageKind::JobGetReply => match decode_get_reply(payload).ok().and_then(|r| r.data) {
                Some(GetReplyData::One { task: Some(task) }) => Some(*task),
                _ => None,
            },
            MessageKind::JobUpdateReply => {
                if let Ok(reply) = decode_update_reply(payload) {
                    let mut record = self.record.lock().expect("record");
                    match (reply.code, reply.data) {
                        (ReplyCode::Ok, Some(data)) => {
                            record.awaiting.remove(&data.task_id);
                            record.confirmed.insert(data.task_id);
                        }
                        (code, _) => record.refused.push(format!("{code}: {}", reply.message)),
                    }
                }
                None
            }
            _ => None,
        };
        let Some(task) = task else { return };
        if !matches!(
            task.status,
            ExecutionStatus::Sent | ExecutionStatus::InProgress
        ) {
            return;
        }
        {
            let mut record = self.record.lock().expect("record");
            *record.received.entry(task.task_id.clone()).or_default() += 1;
            if record.confirmed.contains(&task.task_id) {
                return;
            }
            // Run it, unless it already ran: then only its final update
            // is repeated.
            if !record.runs.contains_key(&task.task_id) {
                record.runs.insert(task.task_id.clone(), 1);
            }
            record
                .awaiting
                .insert(task.task_id.clone(), std::time::Instant::now());
        }
        self.send_final_update(client, &task.task_id);
    }
}
