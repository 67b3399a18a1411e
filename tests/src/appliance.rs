//! An appliance played by a rumqttc client: subscribes to its own topics,
//! and sends get / update requests and waits for their replies by id.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use protocol::message::{
    decode_get_reply, decode_notify, decode_update_reply, GetReplyData, Notify, Reply,
    UpdateReplyData,
};
use protocol::{ApplianceId, MessageKind, ProductKey, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::within;

/// Credentials of a provisioned appliance.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Client id and username.
    pub appliance_id: ApplianceId,
    /// Password.
    pub appliance_token: String,
}

enum Inbound {
    SubAck,
    Message(MessageKind, Vec<u8>),
    Disconnected(String),
}

/// One connected appliance.
pub struct TestAppliance {
    /// Its id.
    pub id: ApplianceId,
    client: AsyncClient,
    inbox: mpsc::UnboundedReceiver<Inbound>,
    held: VecDeque<(MessageKind, Vec<u8>)>,
    /// Notifies received while waiting for another kind: heartbeats while
    /// waiting for a task, tasks while waiting for a heartbeat.
    heartbeats: VecDeque<Notify>,
    tasks: VecDeque<Notify>,
    driver: JoinHandle<()>,
    next_request: u64,
}

impl Drop for TestAppliance {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl TestAppliance {
    /// Connects over plaintext MQTT and subscribes to its own topics.
    pub async fn connect_plain(
        id: ApplianceId,
        addr: SocketAddr,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let mut options = MqttOptions::new(id.to_string(), addr.ip().to_string(), addr.port());
        options
            .set_credentials(username, password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        Self::connect_with(id, options).await
    }

    /// Connects over TLS to the device edge with its token, trusting the
    /// CA in `ca_pem`, and subscribes to its own topics.
    pub async fn connect_tls(
        identity: &Identity,
        addr: SocketAddr,
        ca_pem: &[u8],
    ) -> anyhow::Result<Self> {
        let options = tls_options(identity, addr, ca_pem)?;
        Self::connect_with(identity.appliance_id, options).await
    }

    /// Connects with the given options and subscribes to its own topics.
    pub async fn connect_with(id: ApplianceId, options: MqttOptions) -> anyhow::Result<Self> {
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, inbox) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                let inbound = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => Inbound::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => match Topic::parse(&p.topic) {
                        Ok(topic) => Inbound::Message(topic.kind, p.payload.to_vec()),
                        Err(_) => continue,
                    },
                    Ok(_) => continue,
                    Err(err) => {
                        let _ = tx.send(Inbound::Disconnected(err.to_string()));
                        return;
                    }
                };
                if tx.send(inbound).is_err() {
                    return;
                }
            }
        });
        let filters = protocol::topic::device_filters(&ProductKey::default(), &id);
        for filter in filters {
            client.subscribe(filter, QoS::AtLeastOnce).await?;
        }
        let mut appliance = Self {
            id,
            client,
            inbox,
            held: VecDeque::new(),
            heartbeats: VecDeque::new(),
            tasks: VecDeque::new(),
            driver,
            next_request: 0,
        };
        for _ in 0..3 {
            within("SUBACK", appliance.wait_suback()).await??;
        }
        Ok(appliance)
    }

    async fn wait_suback(&mut self) -> anyhow::Result<()> {
        loop {
            match self.inbox.recv().await {
                Some(Inbound::SubAck) => return Ok(()),
                Some(Inbound::Message(kind, payload)) => self.held.push_back((kind, payload)),
                Some(Inbound::Disconnected(err)) => bail!("disconnected: {err}"),
                None => bail!("connection task ended"),
            }
        }
    }

    /// The next message of `kind` (others are kept for later).
    pub async fn recv(&mut self, kind: MessageKind) -> anyhow::Result<Vec<u8>> {
        if let Some(pos) = self.held.iter().position(|(k, _)| *k == kind) {
            if let Some((_, payload)) = self.held.remove(pos) {
                return Ok(payload);
            }
        }
        within(kind.suffix(), async {
            loop {
                match self.inbox.recv().await {
                    Some(Inbound::Message(k, payload)) if k == kind => return Ok(payload),
                    Some(Inbound::Message(k, payload)) => self.held.push_back((k, payload)),
                    Some(Inbound::SubAck) => {}
                    Some(Inbound::Disconnected(err)) => bail!("disconnected: {err}"),
                    None => bail!("connection task ended"),
                }
            }
        })
        .await?
    }

    /// Waits until the connection is closed (by the other side).
    pub async fn closed(&mut self) -> anyhow::Result<String> {
        within("the connection to close", async {
            loop {
                match self.inbox.recv().await {
                    Some(Inbound::Disconnected(err)) => return err,
                    Some(Inbound::Message(kind, payload)) => self.held.push_back((kind, payload)),
                    Some(Inbound::SubAck) => {}
                    None => return "connection task ended".to_owned(),
                }
            }
        })
        .await
    }

    /// The next notify.
    ///
    /// Heartbeat notifies (sent to connected appliances every heartbeat
    /// interval) are kept aside for [`Self::heartbeat`].
    pub async fn notify(&mut self) -> anyhow::Result<Notify> {
        if let Some(notify) = self.tasks.pop_front() {
            return Ok(notify);
        }
        loop {
            let notify = self.any_notify().await?;
            if is_heartbeat(&notify) {
                self.heartbeats.push_back(notify);
            } else {
                return Ok(notify);
            }
        }
    }

    /// The next heartbeat notify; task notifies that come first are kept
    /// for [`Self::notify`].
    pub async fn heartbeat(&mut self) -> anyhow::Result<Notify> {
        if let Some(notify) = self.heartbeats.pop_front() {
            return Ok(notify);
        }
        loop {
            let notify = self.any_notify().await?;
            if is_heartbeat(&notify) {
                return Ok(notify);
            }
            self.tasks.push_back(notify);
        }
    }

    async fn any_notify(&mut self) -> anyhow::Result<Notify> {
        let payload = self.recv(MessageKind::JobNotify).await?;
        Ok(decode_notify(&payload)?)
    }

    /// Publishes raw bytes on one of its own device-to-hub topics.
    pub async fn publish_raw(&self, kind: MessageKind, payload: Vec<u8>) -> anyhow::Result<()> {
        self.publish_to(
            &Topic::new(ProductKey::default(), self.id, kind).to_string(),
            payload,
        )
        .await
    }

    /// Publishes raw bytes on any topic.
    pub async fn publish_to(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .context("publish")
    }

    fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!("{}-{}", &self.id.to_string()[..8], self.next_request)
    }

    /// Sends get for `task_id` (`$next`, `$list` or an id) and waits for its reply.
    pub async fn get(&mut self, task_id: &str) -> anyhow::Result<Reply<GetReplyData>> {
        let id = self.request_id();
        let body = json!({"id": id, "version": "1.0", "params": {"taskId": task_id}});
        self.publish_raw(MessageKind::JobGet, serde_json::to_vec(&body)?)
            .await?;
        self.reply(MessageKind::JobGetReply, &id, decode_get_reply)
            .await
    }

    /// Sends update with `params` and waits for its reply.
    pub async fn update(&mut self, params: Value) -> anyhow::Result<Reply<UpdateReplyData>> {
        let id = self.request_id();
        let body = json!({"id": id, "version": "1.0", "params": params});
        self.publish_raw(MessageKind::JobUpdate, serde_json::to_vec(&body)?)
            .await?;
        self.reply(MessageKind::JobUpdateReply, &id, decode_update_reply)
            .await
    }

    /// Waits for the reply of kind `kind` whose id is `id`.
    pub async fn reply<D>(
        &mut self,
        kind: MessageKind,
        id: &str,
        decode: fn(&[u8]) -> Result<Reply<D>, protocol::ProtocolError>,
    ) -> anyhow::Result<Reply<D>> {
        loop {
            let payload = self.recv(kind).await?;
            let reply = decode(&payload)?;
            if reply.id == id {
                return Ok(reply);
            }
        }
    }
}

fn is_heartbeat(notify: &Notify) -> bool {
    notify.params.task.job_document.task_type() == protocol::TaskType::Heartbeat
}

/// MQTT options for an appliance connecting over TLS with its token.
pub fn tls_options(
    identity: &Identity,
    addr: SocketAddr,
    ca_pem: &[u8],
) -> anyhow::Result<MqttOptions> {
    let id = identity.appliance_id.to_string();
    let mut options = MqttOptions::new(id.clone(), addr.ip().to_string(), addr.port());
    options
        .set_credentials(id, identity.appliance_token.clone())
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(client_config(ca_pem)?)),
        ));
    Ok(options)
}

/// A rustls client configuration trusting only the CA in `ca_pem`.
pub fn client_config(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
