//! `cargo bench -p hub --bench downloads`: concurrent resumable downloads
//! of one artifact over loopback (issue 7's Performance section).
//!
//! Starts the release `hub` binary as its own process, uploads an artifact
//! of DOWNLOADS_SIZE bytes (default 157,000,000), then DOWNLOADS_CLIENTS
//! (default 200) clients download it at once over its signed link, each
//! interrupted twice and resumed with `Range: bytes=<offset>-`. Reports the
//! aggregate throughput and the hub's resident memory (sampled every
//! 50 ms, and its VmHWM). Then the same workload against nginx serving the
//! same file from the same page cache (when `nginx` is installed), and the
//! speed of reading the file into one buffer, as bounds. Every client's
//! byte count is checked; every 25th client's sha256 too.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::try_join_all;
use sha2::{Digest, Sha256};

const TOKEN: &str = "bench-admin-token-0123456789";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let clients = env_or("DOWNLOADS_CLIENTS", 200) as usize;
    let size = env_or("DOWNLOADS_SIZE", 157_000_000);
    // reqwest's rustls has no built-in provider choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(clients, size))
}

async fn run(clients: usize, size: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("artifact.img");
    let sha256 = write_artifact(&file, size)?;
    println!(
        "downloads: {clients} clients x {size} bytes ({:.1} GB in all), resumed twice each",
        (clients as u64 * size) as f64 / 1e9
    );
    println!("machine: {} CPUs, {}", cpus(), cpu_model());
    let bound = read_speed(&file)?;
    println!(
        "bound: reading the cached file into one buffer: {:.2} GB/s",
        bound / 1e9
    );

    let mut hub = HubProcess::start(&dir.path().join("hub"))?;
    let url = hub.upload(&file, &sha256).await?;
    let idle = rss_kib(hub.pid())?;
    let sampler = RssSampler::start(hub.pid());
    let hub_run = download_all(&url, clients, size, &sha256).await?;
    let peak = sampler.stop().await;
    let hwm = hwm_kib(hub.pid())?;
    hub.stop();
    println!(
        "fleethub: {:.2} GB/s aggregate ({:.1} s), hub RSS idle {} MiB, peak {} MiB \
         (VmHWM {} MiB)",
        hub_run.throughput() / 1e9,
        hub_run.elapsed.as_secs_f64(),
        idle / 1024,
        peak / 1024,
        hwm / 1024
    );

    match Nginx::start(dir.path(), &file, &url) {
        Ok(Some(nginx)) => {
            let peer = download_all(&nginx.url, clients, size, &sha256).await?;
            drop(nginx);
            println!(
                "nginx (sendfile, 2 workers): {:.2} GB/s aggregate ({:.1} s); fleethub/nginx = {:.2}",
                peer.throughput() / 1e9,
                peer.elapsed.as_secs_f64(),
                hub_run.throughput() / peer.throughput()
            );
        }
        Ok(None) => println!("nginx: not installed, no peer measured"),
        Err(err) => println!("nginx: could not run ({err:#})"),
    }
    Ok(())
}

/// Writes `size` pseudo-random bytes; returns their sha256.
fn write_artifact(path: &Path, size: u64) -> anyhow::Result<String> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut hasher = Sha256::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(hex::encode(hasher.finalize()))
}

/// Bytes per second of reading the (cached) file into one 1 MiB buffer.
fn read_speed(path: &Path) -> anyhow::Result<f64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut best = 0f64;
    for _ in 0..3 {
        let mut file = std::fs::File::open(path)?;
        let start = Instant::now();
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        best = best.max(total as f64 / start.elapsed().as_secs_f64());
    }
    Ok(best)
}

struct RunResult {
    bytes: u64,
    elapsed: Duration,
}

impl RunResult {
    fn throughput(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64()
    }
}

/// Every client downloads the whole file in three requests: from 0,
/// dropped at 1/5-3/5 of the way; resumed, dropped again; resumed to the
/// end.
async fn download_all(
    url: &str,
    clients: usize,
    size: u64,
    sha256: &str,
) -> anyhow::Result<RunResult> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let downloads = (0..clients).map(|i| {
        let (http, total) = (http.clone(), Arc::clone(&total));
        let url = url.to_owned();
        let verify = i % 25 == 0;
        tokio::spawn(async move {
            let first_stop = size / 5 + (size / 5) * (i as u64 % 3);
            let second_stop = first_stop + (size - first_stop) / 2;
            let mut hasher = verify.then(Sha256::new);
            let mut offset = 0u64;
            for stop in [first_stop, second_stop, size] {
                offset = fetch(&http, &url, offset, stop, hasher.as_mut()).await?;
            }
            total.fetch_add(offset, Ordering::Relaxed);
            if offset != size {
                bail!("client {i} got {offset} bytes of {size}");
            }
            Ok(hasher.map(|h| hex::encode(h.finalize())))
        })
    });
    let results = try_join_all(downloads).await?;
    let elapsed = start.elapsed();
    for result in results {
        if let Some(digest) = result? {
            if digest != sha256 {
                bail!("a download's sha256 is {digest}, not {sha256}");
            }
        }
    }
    Ok(RunResult {
        bytes: total.load(Ordering::Relaxed),
        elapsed,
    })
}

/// Downloads from `offset` and drops the connection at `stop` (or reads to
/// the end when `stop` is the size). Returns the new offset.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    offset: u64,
    stop: u64,
    mut hasher: Option<&mut Sha256>,
) -> anyhow::Result<u64> {
    let mut request = http.get(url);
    if offset > 0 {
        request = request.header("range", format!("bytes={offset}-"));
    }
    let mut response = request.send().await?;
    let expected = if offset > 0 { 206 } else { 200 };
    if response.status().as_u16() != expected {
        bail!("answered {} to a download from {offset}", response.status());
    }
    let mut at = offset;
    while let Some(chunk) = response.chunk().await? {
        let take = chunk.len().min((stop - at) as usize);
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&chunk[..take]);
        }
        at += take as u64;
        if at >= stop {
            break;
        }
    }
    Ok(at)
}

struct HubProcess {
    child: Child,
    base: String,
}

impl HubProcess {
    fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hub"))
            .arg("serve")
            .args(["--http-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"])
            .args(["--public-host", "127.0.0.1", "--synchronous", "off"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--certs-dir")
            .arg(data_dir.join("certs"))
            .env("HUB_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info,rumqttd=off")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the hub binary")?;
        let stdout = child.stdout.take().context("hub stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                bail!("the hub exited before listening");
            };
            let line = line?;
            if let Some(rest) = line.split("http_addr=").nth(1) {
                if line.contains("REST API listening") {
                    break rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                }
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            base: format!("http://{addr}"),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn upload(&self, file: &Path, sha256: &str) -> anyhow::Result<String> {
        let bytes = std::fs::read(file)?;
        let response = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/artifacts?name=va-image.img&sha256={sha256}",
                self.base
            ))
            .bearer_auth(TOKEN)
            .body(bytes)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if !status.is_success() {
            bail!("upload answered {status}: {body}");
        }
        body["downloadUrl"]
            .as_str()
            .map(str::to_owned)
            .context("downloadUrl")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{field} of {pid}"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

struct RssSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    _ = &mut stopped => break peak,
                    _ = tick.tick() => peak = peak.max(rss_kib(pid).unwrap_or(0)),
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0)
    }
}

/// nginx serving the same file at the same path, on a free loopback port.
struct Nginx {
    child: Child,
    url: String,
}

impl Nginx {
    fn start(dir: &Path, file: &Path, hub_url: &str) -> anyhow::Result<Option<Self>> {
        let Some(binary) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            return Ok(None);
        };
        let prefix = dir.join("nginx");
        let (path, _) = hub_url
            .split_once("/artifacts/")
            .map(|(_, rest)| (format!("/artifacts/{rest}"), ()))
            .context("artifact path")?;
        let path = path.split('?').next().unwrap_or_default().to_owned();
        let target = prefix.join("root").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().context("parent")?)?;
        std::fs::hard_link(file, &target).or_else(|_| std::fs::copy(file, &target).map(|_| ()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = prefix.join("nginx.conf");
        let p = prefix.display();
        std::fs::write(
            &conf,
            format!(
                "worker_processes 2; daemon off; master_process on; pid {p}/nginx.pid;\n\
                 error_log {p}/error.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{ access_log off; sendfile on; tcp_nopush on;\n\
                   client_body_temp_path {p}/body; proxy_temp_path {p}/proxy;\n\
                   fastcgi_temp_path {p}/fastcgi; uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
                   server {{ listen 127.0.0.1:{port}; root {p}/root; }} }}\n"
            ),
        )?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let nginx = Self {
            child,
            url: format!("http://127.0.0.1:{port}{path}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Some(nginx))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to the master: it stops its workers (a SIGKILL would
        // leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
