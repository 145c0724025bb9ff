//! /sys/kernel/config/tsm/report (Linux 6.7+).

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{parse_cert_table, TeeError, TeeEvidence, TeeProvider};

/// The configfs-tsm report directory.
pub(super) const ROOT: &str = "/sys/kernel/config/tsm/report";

/// Reports through configfs-tsm: write `inblob`, read `outblob` and
/// `auxblob`, and check that `generation` did not move in between (another
/// writer would have changed the request under us).
#[derive(Debug)]
pub struct ConfigfsTsm {
    counter: AtomicU64,
}

impl ConfigfsTsm {
    /// A provider using the standard configfs path.
    pub fn new() -> ConfigfsTsm {
        ConfigfsTsm { counter: AtomicU64::new(0) }
    }
}

impl Default for ConfigfsTsm {
    fn default() -> Self {
        ConfigfsTsm::new()
    }
}

impl TeeProvider for ConfigfsTsm {
    fn name(&self) -> &'static str {
        "configfs-tsm"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeError> {
        let err = |message: String| TeeError { provider: "configfs-tsm", message };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(ROOT).join(format!("cvm-agent-{}-{n}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        let result = (|| {
            let provider = fs::read_to_string(dir.join("provider")).unwrap_or_default();
            if provider.trim() != "sev_guest" {
                return Err(err(format!("provider is {:?}, not sev_guest", provider.trim())));
            }
            let generation = || fs::read_to_string(dir.join("generation")).map(|s| s.trim().to_owned());
            fs::write(dir.join("privlevel"), "0").ok();
            fs::write(dir.join("inblob"), report_data).map_err(|e| err(format!("write inblob: {e}")))?;
            let before = generation().map_err(|e| err(format!("read generation: {e}")))?;
            let report = fs::read(dir.join("outblob")).map_err(|e| err(format!("read outblob: {e}")))?;
            let aux = fs::read(dir.join("auxblob")).unwrap_or_default();
            let after = generation().map_err(|e| err(format!("read generation: {e}")))?;
            if before != after {
                return Err(err(format!(
                    "generation changed from {before} to {after}: a concurrent writer raced us"
                )));
            }
            let mut ev =
                if aux.is_empty() { TeeEvidence::default() } else { parse_cert_table(&aux).map_err(err)? };
            ev.report = report;
            Ok(ev)
        })();
        let _ = fs::remove_dir(&dir);
        result
    }
}
