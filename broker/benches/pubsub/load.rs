//! The load generator: N subscribers over TLS and N publishers on plaintext
//! loopback, all rumqttc clients, publisher i sending QoS 1 to subscriber
//! i's topic. Every payload carries (pair, sequence, send instant) so the
//! subscriber checks order, counts duplicates and gaps, and measures the
//! latency against one process-wide epoch.
//!
//! Two ways to drive the publishers:
//! - [`Load::saturate`]: closed loop, each pair has `window` messages in
//!   flight end to end (a permit is taken before a publish and given back
//!   when the subscriber receives it), so no queue grows without bound;
//! - [`Load::paced`]: open loop, each publisher on a tokio interval.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use protocol::{ApplianceId, MessageKind, ProductKey, Topic};
use rumqttc::mqttbytes::v4::SubscribeReasonCode;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, NetworkOptions, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

/// Bytes of every message.
pub const PAYLOAD: usize = 128;
/// Time every client gets to connect (and subscribe).
const CONNECT_LIMIT: Duration = Duration::from_secs(60);
/// Time the messages still in flight get to arrive after a phase.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
/// Latency histogram shards (subscriber i records into shard i % SHARDS).
const SHARDS: usize = 16;

/// Where the clients connect.
pub struct Target {
    /// TLS listener the subscribers connect to.
    pub subscribers: SocketAddr,
    /// Plaintext listeners the publishers are spread over.
    pub publishers: Vec<SocketAddr>,
    /// Username and password of the publishers, if the broker wants one.
    pub login: Option<(String, String)>,
    /// Client configuration trusting the dev CA.
    pub tls: Arc<rustls::ClientConfig>,
}

/// One subscriber's identity; publisher i publishes to `pairs[i].topic`.
pub struct Pair {
    pub id: ApplianceId,
    pub token: String,
    pub topic: String,
}

impl Pair {
    /// `count` fresh appliances, each with its `job/notify` topic.
    pub fn generate(count: usize) -> Vec<Pair> {
        (0..count)
            .map(|i| {
                let id = ApplianceId::new_random();
                let topic = Topic::new(ProductKey::default(), id, MessageKind::JobNotify);
                Pair {
                    id,
                    token: format!("bench-token-{i}-{}", ApplianceId::new_random()),
                    topic: topic.to_string(),
                }
            })
            .collect()
    }
}

/// Nanoseconds since the bench's epoch (one clock for the whole process).
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let nanos = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// What a payload carries.
struct Stamp {
    pair: u64,
    seq: u64,
    sent_ns: u64,
    windowed: bool,
}

impl Stamp {
    fn encode(&self) -> Bytes {
        let mut payload = vec![0x5a; PAYLOAD];
        payload[0..8].copy_from_slice(&self.pair.to_le_bytes());
        payload[8..16].copy_from_slice(&self.seq.to_le_bytes());
        payload[16..24].copy_from_slice(&self.sent_ns.to_le_bytes());
        payload[24] = u8::from(self.windowed);
        Bytes::from(payload)
    }

    fn decode(payload: &[u8]) -> Option<Stamp> {
        if payload.len() != PAYLOAD {
            return None;
        }
        let word = |at: usize| {
            let bytes: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        };
        Some(Stamp {
            pair: word(0)?,
            seq: word(8)?,
            sent_ns: word(16)?,
            windowed: payload[24] == 1,
        })
    }
}

/// The end-to-end window and the next sequence number of one pair.
struct Flow {
    window: Semaphore,
    next_seq: AtomicU64,
}

/// Counters shared by every client.
pub struct Counters {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages received again (sequence below the next expected one).
    pub duplicates: AtomicU64,
    /// Messages skipped over (sequence above the next expected one).
    pub gaps: AtomicU64,
    /// Messages for another pair, or not a bench payload.
    pub misrouted: AtomicU64,
    /// Connections lost after they were established.
    pub closed: AtomicU64,
    recording: AtomicBool,
    latency: Vec<Mutex<Histogram<u64>>>,
}

impl Counters {
    fn new() -> anyhow::Result<Counters> {
        let latency = (0..SHARDS)
            .map(|_| Histogram::new_with_bounds(1, 60_000_000, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Counters {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            latency,
        })
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Latencies recorded so far (microseconds), merged; the shards are
    /// emptied.
    fn take_latency(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = Histogram::new_with_bounds(1, 60_000_000, 3)?;
        for shard in &self.latency {
            let mut shard = shard.lock().map_err(|_| anyhow!("poisoned"))?;
            all.add(&*shard)?;
            shard.reset();
        }
        Ok(all)
    }
}

/// State of the load shared by its tasks.
struct Shared {
    flows: Vec<Flow>,
    counters: Counters,
}

impl Shared {
    /// Checks a message received by subscriber `index`.
    fn receive(&self, index: usize, payload: &[u8], expected: &mut u64) {
        let c = &self.counters;
        let Some(stamp) = Stamp::decode(payload).filter(|s| s.pair == index as u64) else {
            return Counters::bump(&c.misrouted, 1);
        };
        if stamp.seq < *expected {
            return Counters::bump(&c.duplicates, 1);
        }
        if stamp.seq > *expected {
            Counters::bump(&c.gaps, stamp.seq - *expected);
        }
        *expected = stamp.seq + 1;
        Counters::bump(&c.delivered, 1);
        if stamp.windowed {
            self.flows[index].window.add_permits(1);
        }
        if c.recording.load(Ordering::Relaxed) {
            let micros = now_ns().saturating_sub(stamp.sent_ns) / 1_000;
            if let Ok(mut shard) = c.latency[index % SHARDS].lock() {
                shard.saturating_record(micros.max(1));
            }
        }
    }
}

/// Connected clients, ready to publish.
pub struct Load {
    shared: Arc<Shared>,
    publishers: Vec<(AsyncClient, String)>,
    /// Event loops of every client; aborted when the load is dropped.
    clients: JoinSet<()>,
    /// Time from the first subscriber's connect to the last SUBACK.
    pub subscribed_in: Duration,
}

/// Result of a closed-loop run.
pub struct Saturation {
    /// Delivered messages per second over the measured window.
    pub rate: f64,
    pub window: Duration,
    /// Sent and delivered over the whole phase (warm-up and drain included).
    pub sent: u64,
    pub delivered: u64,
}

/// Result of an open-loop run.
pub struct Paced {
    /// Rate asked for (messages per second, all publishers together).
    pub target_rate: f64,
    /// Rate sent during the measured window.
    pub sent_rate: f64,
    /// Latency (microseconds) of the messages received in the window.
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub delivered: u64,
}

impl Load {
    /// Connects the subscribers at `rate` per second and waits for every
    /// SUBACK, then connects the publishers the same way.
    pub async fn connect(target: &Target, pairs: &[Pair], rate: u32) -> anyhow::Result<Load> {
        let shared = Arc::new(Shared {
            flows: (0..pairs.len())
                .map(|_| Flow {
                    window: Semaphore::new(0),
                    next_seq: AtomicU64::new(0),
                })
                .collect(),
            counters: Counters::new()?,
        });
        let mut clients = JoinSet::new();
        let (ready_tx, mut ready) = mpsc::channel(pairs.len().max(1));
        let started = Instant::now();
        let mut pace = pacer(rate);
        for (index, pair) in pairs.iter().enumerate() {
            pace.tick().await;
            let id = pair.id.to_string();
            let mut options = options(id.clone(), target.subscribers);
            options
                .set_credentials(id, pair.token.clone())
                .set_transport(Transport::Tls(TlsConfiguration::Rustls(target.tls.clone())));
            let (client, eventloop) = client(options);
            let subscriber = Subscriber {
                index,
                topic: pair.topic.clone(),
                client,
                shared: Arc::clone(&shared),
            };
            clients.spawn(subscriber.run(eventloop, ready_tx.clone()));
        }
        await_ready(&mut ready, pairs.len(), "subscribers").await?;
        let subscribed_in = started.elapsed();
        let mut publishers = Vec::with_capacity(pairs.len());
        for (index, pair) in pairs.iter().enumerate() {
            pace.tick().await;
            let addr = target.publishers[index % target.publishers.len()];
            // Not UUID-like, no '/': see the rumqttd quirks in `edge::link`.
            let mut options = options(format!("pubsub-bench-{index}"), addr);
            if let Some((user, password)) = &target.login {
                options.set_credentials(user.clone(), password.clone());
            }
            let (client, eventloop) = client(options);
            publishers.push((client, pair.topic.clone()));
            let shared = Arc::clone(&shared);
            clients.spawn(drive_publisher(eventloop, shared, ready_tx.clone()));
        }
        await_ready(&mut ready, pairs.len(), "publishers").await?;
        Ok(Load {
            shared,
            publishers,
            clients,
            subscribed_in,
        })
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Closed loop with `window` messages in flight per pair: warm up, then
    /// count deliveries over `measure`, then stop and let the last ones
    /// arrive.
    pub async fn saturate(
        &self,
        window: usize,
        warmup: Duration,
        measure: Duration,
    ) -> anyhow::Result<Saturation> {
        let before = self.totals();
        for flow in &self.shared.flows {
            flow.window.add_permits(window);
        }
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for index in 0..self.publishers.len() {
            let publisher = self.publisher(index);
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let flow = &publisher.shared.flows[index];
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => return Ok(()),
                        permit = flow.window.acquire() => permit?.forget(),
                    }
                    publisher.publish(true).await?;
                }
            });
        }
        tokio::time::sleep(warmup).await;
        let (start, delivered0) = (Instant::now(), self.delivered());
        tokio::time::sleep(measure).await;
        let (end, delivered1) = (Instant::now(), self.delivered());
        finish(stop, tasks).await?;
        self.drain().await;
        for flow in &self.shared.flows {
            flow.window.forget_permits(window);
        }
        let after = self.totals();
        let elapsed = end - start;
        Ok(Saturation {
            rate: (delivered1 - delivered0) as f64 / elapsed.as_secs_f64(),
            window: elapsed,
            sent: after.0 - before.0,
            delivered: after.1 - before.1,
        })
    }

    /// Open loop at `rate` messages per second in all, each publisher on a
    /// tokio interval (`MissedTickBehavior::Skip`: a late publisher skips
    /// ticks rather than bursting), starts staggered over one period.
    pub async fn paced(
        &self,
        rate: f64,
        warmup: Duration,
        measure: Duration,
    ) -> anyhow::Result<Paced> {
        let before = self.totals();
        let count = self.publishers.len();
        let period = Duration::from_secs_f64(count as f64 / rate.max(1.0));
        let (stop, stopped) = watch::channel(false);
        let first = tokio::time::Instant::now() + Duration::from_millis(10);
        let mut tasks = JoinSet::new();
        for index in 0..count {
            let publisher = self.publisher(index);
            let mut stopped = stopped.clone();
            let at = first + period.mul_f64(index as f64 / count as f64);
            tasks.spawn(async move {
                let mut ticks = tokio::time::interval_at(at, period);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        biased;
                        _ = stopped.wait_for(|s| *s) => return Ok(()),
                        _ = ticks.tick() => {}
                    }
                    publisher.publish(false).await?;
                }
            });
        }
        tokio::time::sleep(warmup).await;
        let counters = &self.shared.counters;
        counters.take_latency()?;
        counters.recording.store(true, Ordering::Relaxed);
        let (start, sent0) = (Instant::now(), Counters::get(&counters.sent));
        tokio::time::sleep(measure).await;
        counters.recording.store(false, Ordering::Relaxed);
        let (end, sent1) = (Instant::now(), Counters::get(&counters.sent));
        finish(stop, tasks).await?;
        self.drain().await;
        let after = self.totals();
        Ok(Paced {
            target_rate: rate,
            sent_rate: (sent1 - sent0) as f64 / (end - start).as_secs_f64(),
            latency: counters.take_latency()?,
            sent: after.0 - before.0,
            delivered: after.1 - before.1,
        })
    }

    /// Stops every client (their connections drop).
    pub async fn close(mut self) {
        self.clients.shutdown().await;
    }

    fn publisher(&self, index: usize) -> Publisher {
        let (client, topic) = &self.publishers[index];
        Publisher {
            index,
            client: client.clone(),
            topic: topic.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    fn delivered(&self) -> u64 {
        Counters::get(&self.shared.counters.delivered)
    }

    /// (sent, delivered) so far.
    fn totals(&self) -> (u64, u64) {
        let c = &self.shared.counters;
        (Counters::get(&c.sent), Counters::get(&c.delivered))
    }

    /// Waits until every message sent was delivered, at most
    /// [`DRAIN_LIMIT`] (what is missing then is lost).
    async fn drain(&self) {
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            let (sent, delivered) = self.totals();
            if delivered >= sent || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Client options every bench client shares: clean session, 60 s
/// keepalive, room for the pair's window.
fn options(id: String, addr: SocketAddr) -> MqttOptions {
    let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(60))
        .set_inflight(100)
        .set_max_packet_size(4096, 4096);
    options
}

/// A client with TCP_NODELAY (the edge sets it on appliance sockets too).
fn client(options: MqttOptions) -> (AsyncClient, EventLoop) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(CONNECT_LIMIT.as_secs());
    eventloop.set_network_options(network);
    (client, eventloop)
}

fn pacer(rate: u32) -> tokio::time::Interval {
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    pace.set_missed_tick_behavior(MissedTickBehavior::Burst);
    pace
}

async fn await_ready(
    ready: &mut mpsc::Receiver<Result<(), String>>,
    count: usize,
    what: &str,
) -> anyhow::Result<()> {
    let all = async {
        for _ in 0..count {
            match ready.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => bail!("one of the {what} failed: {e}"),
                None => bail!("{what}: every client is gone"),
            }
        }
        Ok(())
    };
    tokio::time::timeout(CONNECT_LIMIT, all)
        .await
        .with_context(|| format!("{what} not all ready after {CONNECT_LIMIT:?}"))?
}

/// Tells the publishing tasks to stop and waits for them.
async fn finish(
    stop: watch::Sender<bool>,
    mut tasks: JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// One subscriber: subscribes after CONNACK, reports its SUBACK, then
/// checks every message it receives (rumqttc answers PUBACK itself).
struct Subscriber {
    index: usize,
    topic: String,
    client: AsyncClient,
    shared: Arc<Shared>,
}

impl Subscriber {
    async fn run(self, mut eventloop: EventLoop, ready: mpsc::Sender<Result<(), String>>) {
        let mut ready = Some(ready);
        let mut expected = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    self.shared
                        .receive(self.index, &publish.payload, &mut expected);
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let topic = self.topic.clone();
                    if let Err(e) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                        return report(&mut ready, &self.shared, e.to_string()).await;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let granted = [SubscribeReasonCode::Success(QoS::AtLeastOnce)];
                    let answer = match ack.return_codes == granted {
                        true => Ok(()),
                        false => Err(format!("SUBACK {:?}", ack.return_codes)),
                    };
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(answer).await;
                    }
                }
                Ok(_) => {}
                Err(e) => return report(&mut ready, &self.shared, e.to_string()).await,
            }
        }
    }
}

/// Polls a publisher's event loop; reports its CONNACK.
async fn drive_publisher(
    mut eventloop: EventLoop,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut ready = Some(ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(())).await;
                }
            }
            Ok(_) => {}
            Err(e) => return report(&mut ready, &shared, e.to_string()).await,
        }
    }
}

/// A client's connection failed: before it was ready, that fails the
/// start; after, it counts as a closed connection.
async fn report(
    ready: &mut Option<mpsc::Sender<Result<(), String>>>,
    shared: &Shared,
    error: String,
) {
    match ready.take() {
        Some(ready) => {
            let _ = ready.send(Err(error)).await;
        }
        None => {
            eprintln!("pubsub: a connection closed during the run: {error}");
            Counters::bump(&shared.counters.closed, 1);
        }
    }
}

/// One publisher, as used by a publishing task.
struct Publisher {
    index: usize,
    client: AsyncClient,
    topic: String,
    shared: Arc<Shared>,
}

impl Publisher {
    async fn publish(&self, windowed: bool) -> anyhow::Result<()> {
        let flow = &self.shared.flows[self.index];
        let stamp = Stamp {
            pair: self.index as u64,
            seq: flow.next_seq.fetch_add(1, Ordering::Relaxed),
            sent_ns: now_ns(),
            windowed,
        };
        Counters::bump(&self.shared.counters.sent, 1);
        self.client
            .publish_bytes(self.topic.clone(), QoS::AtLeastOnce, false, stamp.encode())
            .await
            .context("publisher's event loop is gone")
    }
}
