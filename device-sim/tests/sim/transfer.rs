//! The shell's downloads over HTTP: a download stopped half way resumes
//! from its checkpoint with a Range request (206), an expired link (403)
//! stops at once and keeps what was received, and a checkpoint that holds
//! the whole file is only checked, with no request.

use device_sim::appliance::DownloadFailure;
use device_sim::hub_api::http_client;
use device_sim::transfer::{Checkpoint, DownloadSpec, Transfer, TransferEvent};
use protocol::TaskId;
use sha2::{Digest, Sha256};

use crate::support::{file_server, WAIT};

fn spec(base: &str, path: &str, image: &[u8]) -> anyhow::Result<DownloadSpec> {
    Ok(DownloadSpec {
        task_id: TaskId::new_random(),
        url: format!("{base}{path}").parse()?,
        size: image.len() as u64,
        sha256: hex::encode(Sha256::digest(image)),
        throttle: None,
    })
}

async fn step(transfer: &mut Transfer) -> anyhow::Result<TransferEvent> {
    Ok(tokio::time::timeout(WAIT, transfer.step()).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_expiry_and_a_complete_checkpoint() -> anyhow::Result<()> {
    let image: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let (base, log) = file_server(image.clone()).await?;
    let http = http_client(None)?;

    // Stopped after some bytes, resumed with Range from where it stopped.
    let mut first = Transfer::download(
        http.clone(),
        spec(&base, "/files/fw.img", &image)?,
        Checkpoint::default(),
    );
    let stopped_at = loop {
        match step(&mut first).await? {
            TransferEvent::Progress { received, .. } if received > 0 => break received,
            TransferEvent::Progress { .. } => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    let checkpoint = first.into_checkpoint();
    assert_eq!(checkpoint.offset, stopped_at);
    let mut second = Transfer::download(
        http.clone(),
        spec(&base, "/files/fw.img", &image)?,
        checkpoint,
    );
    assert_eq!(
        step(&mut second).await?,
        TransferEvent::Resumed { from: stopped_at }
    );
    let done = loop {
        match step(&mut second).await? {
            TransferEvent::Progress { .. } => {}
            other => break other,
        }
    };
    assert_eq!(done, TransferEvent::Downloaded(Ok(())));
    let ranges = log.ranges.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(ranges, [format!("bytes={stopped_at}-")]);
    let whole = second.into_checkpoint();
    assert_eq!(whole.offset, image.len() as u64);

    // An expired link: no retry, the checkpoint is kept.
    let kept = whole.clone();
    let mut expired = Transfer::download(
        http.clone(),
        spec(&base, "/files/expired.img", &image)?,
        Checkpoint::default(),
    );
    assert_eq!(
        step(&mut expired).await?,
        TransferEvent::Downloaded(Err(DownloadFailure::Expired))
    );

    // Everything was received before a cut: checked, nothing requested
    // (the expired link would refuse it).
    let mut complete = Transfer::download(http, spec(&base, "/files/expired.img", &image)?, kept);
    assert_eq!(
        step(&mut complete).await?,
        TransferEvent::Downloaded(Ok(()))
    );
    Ok(())
}
