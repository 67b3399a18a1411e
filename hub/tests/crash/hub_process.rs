//! `hub serve` as a child process: started on port 0 in a data directory,
//! its bound addresses read from its log, killed with SIGKILL; and a
//! minimal HTTP/1.1 client for its REST API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The admin token the child hubs run with.
pub const ADMIN_TOKEN: &str = "crash-test-admin-token-0123456789";

/// A running `hub serve`.
pub struct HubProcess {
    child: Child,
    /// REST address.
    pub http: SocketAddr,
    /// Device edge (MQTT over TLS) address.
    pub mqtts: SocketAddr,
}

/// A copy of the binary under test, so that another build replacing the
/// target directory's `hub` while this test runs cannot swap it.
pub fn private_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    let copy = dir.join("hub-under-test");
    std::fs::copy(env!("CARGO_BIN_EXE_hub"), &copy).context("copying the hub binary")?;
    Ok(copy)
}

fn field(line: &str, name: &str) -> Option<SocketAddr> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    line[start..].split_whitespace().next()?.parse().ok()
}

impl HubProcess {
    /// Starts `binary serve` on `data_dir` and waits until both listeners
    /// are bound.
    pub fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--http-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--certs-dir")
            .arg(data_dir.join("certs"))
            .env_clear()
            .env("HUB_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info,rumqttd=off")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting hub serve")?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads the log to its end (the child's lifetime); the first two
        // addresses go to the test.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let found = if line.contains("REST API listening") {
                    field(&line, "http_addr").map(|a| ("http", a))
                } else if line.contains("device MQTT over TLS listening") {
                    field(&line, "addr").map(|a| ("mqtts", a))
                } else {
                    None
                };
                if let Some(found) = found {
                    let _ = tx.send(found);
                }
            }
        });
        let (mut http, mut mqtts) = (None, None);
        while http.is_none() || mqtts.is_none() {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(("http", addr)) => http = Some(addr),
                Ok((_, addr)) => mqtts = Some(addr),
                Err(_) => {
                    let _ = child.kill();
                    bail!("hub serve did not report its addresses");
                }
            }
        }
        Ok(Self {
            child,
            http: http.context("http")?,
            mqtts: mqtts.context("mqtts")?,
        })
    }

    /// SIGKILL, and reap.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().context("SIGKILL")?;
        self.child.wait().context("reaping the hub")?;
        Ok(())
    }

    /// One REST request with the admin token; status and JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let mut stream = TcpStream::connect(self.http).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.http,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8(response)?;
        let (head, body) = text.split_once("\r\n\r\n").context("an HTTP response")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("a status line")?;
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
