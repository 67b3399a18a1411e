//! Running MQTT clients nobody here wrote: Debian's `mosquitto_pub` /
//! `mosquitto_sub` and python3-paho-mqtt scripts (under `tests/mqtt/paho/`,
//! run with Debian's `/usr/bin/python3`). Output is read line by line and
//! every wait has a timeout.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;

/// Generous bound for an external client to finish.
pub const TOOL_WAIT: Duration = Duration::from_secs(15);

pub struct Tool {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Tool {
    pub fn spawn(program: &str, args: &[String]) -> Result<Tool> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {program} (is it installed?)"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(Tool {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        })
    }

    /// A program whose C stdio would block-buffer a pipe (mosquitto_sub):
    /// run under `stdbuf -oL` so each line arrives as it is printed.
    pub fn spawn_line_buffered(program: &str, args: &[String]) -> Result<Tool> {
        let mut all = vec!["-oL".to_owned(), program.to_owned()];
        all.extend_from_slice(args);
        Tool::spawn("stdbuf", &all)
    }

    /// A paho script from `tests/mqtt/paho/`.
    pub fn paho(script: &str, args: &[String]) -> Result<Tool> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mqtt/paho")
            .join(script);
        let mut all = vec![path.display().to_string()];
        all.extend_from_slice(args);
        Tool::spawn("/usr/bin/python3", &all)
    }

    /// Reads stdout until a line satisfies `want`; returns that line.
    pub async fn line_where(&mut self, want: impl Fn(&str) -> bool) -> Result<String> {
        let found = timeout(TOOL_WAIT, async {
            while let Some(line) = self.lines.next_line().await? {
                self.seen.push(line.clone());
                if want(&line) {
                    return Ok::<_, anyhow::Error>(Some(line));
                }
            }
            Ok(None)
        })
        .await;
        match found {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!(
                "output ended without the expected line; saw {:?}",
                self.seen
            ),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!(
                "expected line not seen in {TOOL_WAIT:?}; saw {:?}",
                self.seen
            ),
        }
    }

    /// Waits for exit; returns the status, all stdout lines and stderr.
    pub async fn finish(mut self) -> Result<(ExitStatus, Vec<String>, String)> {
        let run = async {
            while let Some(line) = self.lines.next_line().await? {
                self.seen.push(line);
            }
            let output = self.child.wait_with_output().await?;
            Ok::<_, anyhow::Error>((
                output.status,
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ))
        };
        let (status, stderr) = timeout(TOOL_WAIT, run)
            .await
            .map_err(|_| anyhow!("tool still running after {TOOL_WAIT:?}"))??;
        Ok((status, self.seen, stderr))
    }
}

/// Common mosquitto_* arguments: TLS to the edge with the dev CA, MQTT
/// 3.1.1, QoS 1, debug output.
pub fn mosquitto_args(
    port: u16,
    cafile: &Path,
    id: &str,
    user: &str,
    password: &str,
) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cafile",
        &cafile.display().to_string(),
        "-i",
        id,
        "-u",
        user,
        "-P",
        password,
        "-q",
        "1",
        "-V",
        "mqttv311",
        "-d",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Arguments of the paho scripts' common options.
pub fn paho_args(port: u16, cafile: &Path, id: &str, user: &str, password: &str) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--cafile",
        &cafile.display().to_string(),
        "--id",
        id,
        "--user",
        user,
        "--password",
        password,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}
