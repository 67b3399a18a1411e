//! Files named by what they hold. A [`BlobDir`] receives a request body
//! into a temporary file in its own directory (`.tmp-<random>`), computing
//! sha256 and size while streaming and stopping at a size limit; the
//! caller then checks the digest and either persists the file under its
//! final name (a rename in the same directory: atomic, and the directory is
//! synced) or drops it, which deletes it. A crash leaves at worst a
//! `.tmp-*` file, removed at the next open.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::Sha256Digest;

const TEMP_PREFIX: &str = ".tmp-";
/// Write buffer of a receiving file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Why a body was not received.
#[derive(Debug, Error)]
pub enum ReceiveError {
    /// More bytes than the limit (nothing kept).
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The client's body broke off (nothing kept).
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The disk failed (nothing kept).
    #[error("writing the file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A directory of files named by the caller (digests, task ids).
#[derive(Debug, Clone)]
pub struct BlobDir {
    dir: PathBuf,
}

/// A received body in its temporary file, deleted on drop unless
/// persisted.
#[derive(Debug)]
pub struct Received {
    /// sha256 of the bytes.
    pub sha256: Sha256Digest,
    /// How many.
    pub size: u64,
    temp: TempFile,
}

#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), %err, "removing a temporary file failed");
            }
        }
    }
}

impl BlobDir {
    /// Creates the directory if needed and removes temporary files a crash
    /// left behind.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file `name` is (a digest or another name without '/').
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Streams `body` into a temporary file, hashing as it goes. Refuses
    /// (and deletes) it as soon as it passes `limit` bytes.
    pub async fn receive<S, E>(&self, body: S, limit: u64) -> Result<Received, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let name = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let path = self.dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        let temp = TempFile(Some(path));
        let mut writer = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReceiveError::Body(e.to_string()))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                return Err(ReceiveError::TooLarge { limit });
            }
            hasher.update(&chunk);
            writer.write_all(&chunk).await?;
        }
        writer.flush().await?;
        writer.into_inner().sync_all().await?;
        Ok(Received {
            sha256: Sha256Digest::from_hasher(hasher),
            size,
            temp,
        })
    }
}

impl Received {
    /// Moves the file to `<dir>/<name>` (replacing any file of that name
    /// atomically) and syncs the directory.
    pub async fn persist(mut self, dir: &BlobDir, name: &str) -> std::io::Result<PathBuf> {
        let target = dir.path(name);
        let Some(temp) = self.temp.0.take() else {
            return Err(std::io::Error::other("temporary file already gone"));
        };
        if let Err(err) = tokio::fs::rename(&temp, &target).await {
            self.temp.0 = Some(temp);
            return Err(err);
        }
        let dir = dir.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)??;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_body_is_hashed_while_streaming_and_persisted_by_name() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let blobs = BlobDir::open(&tmp.path().join("a")).expect("open");
        let received = blobs
            .receive(chunks(&[b"hello ", b"world"]), 11)
            .await
            .expect("received");
        assert_eq!(received.size, 11);
        assert_eq!(received.sha256, Sha256Digest::of(b"hello world"));
        let name = received.sha256.to_string();
        let path = received.persist(&blobs, &name).await.expect("persist");
        assert_eq!(std::fs::read(path).expect("read"), b"hello world");
        assert_eq!(names(blobs.dir()), vec![name]);
    }

    #[tokio::test]
    async fn refused_or_dropped_bodies_leave_nothing() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let blobs = BlobDir::open(tmp.path()).expect("open");
        let too_large = blobs.receive(chunks(&[b"12345", b"6"]), 5).await;
        assert!(matches!(
            too_large,
            Err(ReceiveError::TooLarge { limit: 5 })
        ));
        let broken = stream::iter(vec![Ok(Bytes::from_static(b"x")), Err("reset")]);
        let broken = blobs.receive(broken, 100).await;
        assert!(matches!(broken, Err(ReceiveError::Body(_))));
        let dropped = blobs
            .receive(chunks(&[b"abc"]), 100)
            .await
            .expect("received");
        drop(dropped);
        assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
    }

    #[tokio::test]
    async fn leftovers_of_a_crash_are_removed_at_open() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::write(tmp.path().join(".tmp-123"), b"half").expect("write");
        std::fs::write(tmp.path().join("kept"), b"whole").expect("write");
        BlobDir::open(tmp.path()).expect("open");
        assert_eq!(names(tmp.path()), vec!["kept".to_owned()]);
    }
}
