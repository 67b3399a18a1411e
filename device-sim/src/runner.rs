//! The I/O shell of one appliance: one tokio task that owns the rumqttc
//! event loop, the appliance's state ([`crate::appliance::Appliance`]) and
//! at most one HTTP transfer, and selects over the network, the next timer
//! of the state, the transfer and the fleet's shutdown. It turns events
//! into calls on the state and carries out the actions it returns; it
//! decides nothing itself beyond reconnect back-off.
//!
//! Bounded by construction: one task per appliance, a request channel of
//! [`crate::mqtt::REQUEST_CHANNEL`] to the event loop (a full channel drops
//! the publish and counts it; the state repeats what matters), at most one
//! transfer, and no other buffer that grows with traffic.

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use protocol::{TaskId, Topic};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS, SubscribeFilter,
};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::appliance::{Action, Appliance, DownloadFailure, Now, Offline};
use crate::hub_api::HubApi;
use crate::identity::IdentityChange;
use crate::mqtt::{BrokerTarget, REQUEST_CHANNEL};
use crate::stats::{Counter, Stats};
use crate::transfer::{Checkpoint, DownloadSpec, Transfer, TransferEvent};

/// First pause before reconnecting after a failure; doubles up to the max.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a graceful disconnect may take.
const GOODBYE: Duration = Duration::from_millis(500);

/// What every appliance of a fleet shares.
#[derive(Debug)]
pub struct Shared {
    /// Where to connect.
    pub broker: BrokerTarget,
    /// The hub's REST API (resolves relative download/upload URLs).
    pub hub: HubApi,
    /// Statistics.
    pub stats: Arc<Stats>,
    /// Monotonic zero of the fleet.
    pub epoch: Instant,
    /// Wall clock at `epoch`, epoch milliseconds.
    pub epoch_wall_ms: i64,
    /// Cancelled when the fleet stops.
    pub shutdown: CancellationToken,
}

impl Shared {
    fn now(&self) -> Now {
        let mono = self.epoch.elapsed().as_millis() as u64;
        Now {
            mono,
            wall: self.epoch_wall_ms + mono as i64,
        }
    }
}

/// Runs appliance `index` of the fleet until the fleet shuts down or it
/// unregisters.
pub async fn run(shared: Arc<Shared>, index: usize, app: Appliance) {
    let options = shared.broker.options(app.identity());
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL);
    // rumqttc preallocates room for 100 buffered events per connection
    // (about 10 KiB); an appliance sees a handful at a time, so let the
    // queue grow on demand instead.
    eventloop.state.events = std::collections::VecDeque::new();
    let jitter = app.identity().appliance_id.as_uuid().as_u128() as u64;
    let shell = Shell {
        shared,
        index,
        client,
        eventloop,
        transfer: None,
        partial: None,
        received: 0,
        offline_until: None,
        connecting_since: Some(Instant::now()),
        connected: false,
        subscribed: false,
        backoff: FIRST_BACKOFF,
        jitter,
    };
    shell.run(app).await;
}

struct Shell {
    shared: Arc<Shared>,
    index: usize,
    client: AsyncClient,
    eventloop: EventLoop,
    transfer: Option<Box<Transfer>>,
    /// A download cut by a crash or an expired link: what was received,
    /// to resume from.
    partial: Option<(TaskId, Checkpoint)>,
    received: u64,
    offline_until: Option<Instant>,
    connecting_since: Option<Instant>,
    connected: bool,
    subscribed: bool,
    backoff: Duration,
    jitter: u64,
}

impl Shell {
    async fn run(mut self, mut app: Appliance) {
        let mut out = Vec::new();
        loop {
            if !out.is_empty() {
                // Boxed: acting is rare next to waiting, and its future
                // (graceful disconnects, ...) would otherwise enlarge every
                // idle appliance's task.
                Box::pin(self.carry_out(&mut app, &mut out)).await;
            }
            if app.is_forgotten() || self.shared.shutdown.is_cancelled() {
                break;
            }
            let epoch = self.shared.epoch;
            let wake = app.next_wake().map(|ms| epoch + Duration::from_millis(ms));
            let offline = self.offline_until;
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => break,
                event = self.eventloop.poll(), if offline.is_none() => {
                    self.on_event(event, &mut app, &mut out);
                }
                _ = sleep_until_some(offline), if offline.is_some() => {
                    self.offline_until = None;
                    self.connecting_since = Some(Instant::now());
                }
                event = step_some(&mut self.transfer), if self.transfer.is_some() => {
                    self.on_transfer(event, &mut app, &mut out);
                }
                _ = sleep_until_some(wake), if wake.is_some() => {
                    app.on_tick(self.shared.now(), &mut out);
                }
            }
        }
        Box::pin(self.goodbye()).await;
    }

    fn on_event(
        &mut self,
        event: Result<Event, ConnectionError>,
        app: &mut Appliance,
        out: &mut Vec<Action>,
    ) {
        let now = self.shared.now();
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let since = self.connecting_since.take().unwrap_or_else(Instant::now);
                self.shared.stats.connected(since.elapsed());
                self.connected = true;
                self.backoff = FIRST_BACKOFF;
                app.on_connected(now, out);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !self.subscribed => {
                self.subscribed = true;
                self.shared.stats.subscribed();
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => match Topic::parse(&publish.topic) {
                Ok(topic) if topic.appliance_id == app.identity().appliance_id => {
                    app.on_message(topic.kind, &publish.payload, now, out);
                }
                _ => self.shared.stats.add(Counter::BadMessages, 1),
            },
            Ok(_) => {}
            Err(error) => self.lost(&error, app),
        }
    }

    /// The connection failed or dropped: count it and back off before the
    /// event loop tries again.
    fn lost(&mut self, error: &ConnectionError, app: &mut Appliance) {
        if self.connected {
            tracing::debug!(appliance = %app.identity().appliance_id, %error, "connection lost");
            self.shared.stats.disconnected(self.subscribed);
            app.on_disconnected();
        } else {
            tracing::debug!(appliance = %app.identity().appliance_id, %error, "connect failed");
            self.shared.stats.add(Counter::ConnectErrors, 1);
        }
        self.connected = false;
        self.subscribed = false;
        let half = (self.backoff.as_millis() as u64 / 2).max(1);
        self.jitter = self.jitter.rotate_left(7) ^ 0x9E37_79B9;
        let pause = Duration::from_millis(half + self.jitter % half);
        self.offline_until = Some(Instant::now() + pause);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn on_transfer(&mut self, event: TransferEvent, app: &mut Appliance, out: &mut Vec<Action>) {
        let now = self.shared.now();
        let Some(task) = self.transfer.as_ref().map(|t| t.task_id.clone()) else {
            return;
        };
        match event {
            TransferEvent::Resumed { from } => {
                self.received = from;
                self.shared.stats.add(Counter::DownloadsResumed, 1);
            }
            TransferEvent::Progress { received, total } => {
                // Below what was counted: the server sent the whole file
                // again instead of the range asked for.
                let delta = received.checked_sub(self.received).unwrap_or(received);
                self.shared.stats.add(Counter::DownloadedBytes, delta);
                self.received = received;
                app.on_download_progress(&task, received, total, now, out);
            }
            TransferEvent::Downloaded(result) => {
                if let Some(transfer) = self.transfer.take() {
                    if result == Err(DownloadFailure::Expired) {
                        self.partial = Some((task.clone(), transfer.into_checkpoint()));
                    }
                }
                app.on_download_done(&task, result, now, out);
            }
            TransferEvent::Uploaded(result) => {
                self.transfer = None;
                if result.is_ok() {
                    self.shared.stats.add(Counter::Uploads, 1);
                }
                app.on_upload_done(&task, result, now, out);
            }
        }
    }

    /// Carries out actions until the state asks for nothing more.
    async fn carry_out(&mut self, app: &mut Appliance, out: &mut Vec<Action>) {
        while !out.is_empty() {
            for action in std::mem::take(out) {
                self.act(action, app, out).await;
            }
        }
    }

    async fn act(&mut self, action: Action, app: &mut Appliance, out: &mut Vec<Action>) {
        match action {
            Action::Subscribe(filters) => {
                let filters = filters
                    .into_iter()
                    .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                if self.client.try_subscribe_many(filters).is_err() {
                    self.shared.stats.add(Counter::PublishDropped, 1);
                }
            }
            Action::Publish { kind, payload } => {
                let identity = app.identity();
                let topic = Topic::new(identity.product_key.clone(), identity.appliance_id, kind);
                let sent =
                    self.client
                        .try_publish(topic.to_string(), QoS::AtLeastOnce, false, payload);
                if sent.is_err() {
                    self.shared.stats.add(Counter::PublishDropped, 1);
                }
            }
            Action::Download(download) => self.start_download(download, app, out),
            Action::Upload(upload) => match self.shared.hub.resolve(&upload.url) {
                Ok(url) => {
                    let http = self.shared.hub.http().clone();
                    let transfer = Transfer::upload(http, upload.task_id, url, upload.body);
                    self.transfer = Some(Box::new(transfer));
                }
                Err(error) => {
                    let now = self.shared.now();
                    app.on_upload_done(&upload.task_id, Err(error.to_string()), now, out);
                }
            },
            Action::CancelTransfer => {
                self.transfer = None;
                self.partial = None;
            }
            Action::GoOffline { reason, for_ms } => self.go_offline(reason, for_ms).await,
            Action::SetPassword(token) => {
                if let Some(password) = self.shared.broker.password_for(&token) {
                    let user = app.identity().appliance_id.to_string();
                    self.eventloop.mqtt_options.set_credentials(user, password);
                }
                let change = IdentityChange::Token(token);
                self.shared.stats.identity_changed(self.index, change);
            }
            Action::Forget => {
                self.shared.stats.add(Counter::Unregistered, 1);
                let change = IdentityChange::Forgotten;
                self.shared.stats.identity_changed(self.index, change);
            }
            Action::Record(record) => self.shared.stats.record(record),
        }
    }

    fn start_download(
        &mut self,
        download: crate::appliance::Download,
        app: &mut Appliance,
        out: &mut Vec<Action>,
    ) {
        let url = match self.shared.hub.resolve(&download.url) {
            Ok(url) => url,
            Err(error) => {
                let failure = crate::appliance::DownloadFailure::Transfer(error.to_string());
                let now = self.shared.now();
                return app.on_download_done(&download.task_id, Err(failure), now, out);
            }
        };
        let checkpoint = match self.partial.take() {
            Some((task, checkpoint)) if download.resume && task == download.task_id => checkpoint,
            _ => Checkpoint::default(),
        };
        self.received = checkpoint.offset;
        let spec = DownloadSpec {
            task_id: download.task_id,
            url,
            size: download.size,
            sha256: download.sha256,
            throttle: download.throttle,
        };
        let http = self.shared.hub.http().clone();
        self.transfer = Some(Box::new(Transfer::download(http, spec, checkpoint)));
    }

    /// Disconnects (gracefully for a reboot, abruptly for a crash or
    /// churn) and stays away until `for_ms` has passed.
    async fn go_offline(&mut self, reason: Offline, for_ms: u64) {
        match reason {
            Offline::Reboot => self.say_goodbye().await,
            Offline::Crash => {
                if let Some(transfer) = self.transfer.take() {
                    let task = transfer.task_id.clone();
                    self.partial = Some((task, transfer.into_checkpoint()));
                }
            }
            Offline::Churn => {}
        }
        self.eventloop.clean();
        self.eventloop.pending.clear();
        if self.connected {
            self.shared.stats.disconnected(self.subscribed);
        }
        self.connected = false;
        self.subscribed = false;
        self.offline_until = Some(Instant::now() + Duration::from_millis(for_ms));
    }

    /// Sends DISCONNECT and drives the event loop until it is written.
    async fn say_goodbye(&mut self) {
        if !self.connected || self.client.try_disconnect().is_err() {
            return;
        }
        let flushed = async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = timeout(GOODBYE, flushed).await;
    }

    async fn goodbye(mut self) {
        self.say_goodbye().await;
        if self.connected {
            self.shared.stats.disconnected(self.subscribed);
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}

async fn step_some(transfer: &mut Option<Box<Transfer>>) -> TransferEvent {
    match transfer {
        // Boxed: only a transferring appliance pays for the HTTP future.
        Some(transfer) => Box::pin(transfer.step()).await,
        None => pending().await,
    }
}
