//! The results: packed into a capped tar file, recorded, fetched by each consumer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cvm_protocol::api::State;
use cvm_protocol::{Digest, PublicKey};
use sha2::{Digest as _, Sha256};

use super::{Computation, FlowError, Role};
use crate::measurements::Event;
use crate::sandbox::Scratch;

impl Computation {
    /// Packs the results, records them, and lets the scratch space go.
    pub(super) async fn package(self: &Arc<Self>, scratch: Scratch) -> State {
        let this = Arc::clone(self);
        // Packed and recorded (a vTPM extend) on a blocking thread.
        let packed = tokio::task::spawn_blocking(move || {
            let r = this.package_results(&scratch.results(), scratch.limit());
            drop(scratch);
            let digest = r?;
            this.record(Event { kind: "results", name: "results.tar".into(), digest: digest.to_string() });
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match packed {
            Ok(()) => State::ResultsReady,
            Err(e) => State::Failed(format!("packaging the results failed: {e}")),
        }
    }
    /// Packs the results directory into a tar file; returns its digest.
    ///
    /// The files' apparent sizes must fit in `limit` too: a sparse file
    /// takes no space on the tmpfs but would take its whole length in the tar.
    /// And so must the package itself, names and headers included: empty
    /// files with the longest paths take no space on the tmpfs but some 5 kB
    /// each in the tar (80 MB for the 16384 files the tmpfs allows), in the
    /// agent's memory and on the consumers' wire.
    fn package_results(&self, results: &Path, limit: u64) -> std::io::Result<Digest> {
        let apparent = apparent_size(results)?;
        if apparent > limit {
            return Err(std::io::Error::other(format!(
                "the results add up to {apparent} bytes (sparse files counted whole), over their limit of {limit} bytes"
            )));
        }
        let file = std::fs::File::create(&self.dirs.results_tar)?;
        let mut builder = tar::Builder::new(Capped { inner: file, written: 0, limit });
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        let packed = builder.append_dir_all("results", results).and_then(|()| builder.into_inner());
        let file = match packed {
            Ok(capped) => capped.inner,
            Err(e) => {
                let _ = std::fs::remove_file(&self.dirs.results_tar);
                return Err(e);
            }
        };
        file.sync_all()?;
        let mut file = std::fs::File::open(&self.dirs.results_tar)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(Digest(hasher.finalize().into()))
    }

    /// Checks that `key` may fetch the results now, and returns the package's path.
    pub fn results(&self, key: Option<&PublicKey>) -> Result<PathBuf, FlowError> {
        self.require(key, &Role::ResultConsumer)?;
        let inner = self.lock();
        match &inner.state {
            State::ResultsReady | State::Consumed => Ok(self.dirs.results_tar.clone()),
            other => Err(FlowError::NotReady(other.clone())),
        }
    }

    /// Records that `key` fetched the results; the last consumer moves the state to Consumed.
    pub fn results_fetched(&self, key: &PublicKey) {
        let mut inner = self.lock();
        inner.fetched_by.insert(key.spki_der().to_vec());
        let all = self.manifest.result_consumers.iter().all(|c| inner.fetched_by.contains(c.key.spki_der()));
        if all && inner.state == State::ResultsReady {
            inner.enter(State::Consumed);
            log::info!("every result consumer fetched the results");
        }
    }
}

/// A writer that refuses to grow past `limit` bytes: the results package.
struct Capped<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = buf.len() as u64;
        if self.written.saturating_add(len) > self.limit {
            return Err(std::io::Error::other(format!(
                "the results package (names and headers included) would be over the results limit of {} bytes",
                self.limit
            )));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The sum of the lengths of the regular files below `dir` (links not
/// followed; a stack, not recursion: the algorithm chooses the depth).
fn apparent_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}
