//! Azure confidential VMs: reports through Microsoft's paravisor.
//!
//! The guest cannot ask the AMD secure processor for a report. It writes the
//! 64 bytes it wants bound (the same REPORT_DATA formula as everywhere, boot
//! or session) as user data to the vTPM's NV index 0x01400002; the paravisor
//! then requests a fresh SNP report whose REPORT_DATA is the hash of its
//! runtime claims, which hold that user data and the paravisor's attestation
//! key, and writes the HCL report to NV index 0x01400001. The refresh is
//! asynchronous: the agent reads the index until its claims carry the user
//! data just written, backing off between reads, and gives up at a deadline
//! (never a fixed sleep, which is either too long or too short).
//!
//! The VCEK and its chain come from Azure's THIM endpoint ([`super::thim`])
//! once, at start, or not at all (`azure_thim = none`: the owners then give
//! cvmctl the certificates). Quotes use the paravisor's attestation key at
//! persistent handle 0x81000003 (see `crate::vtpm::AkSource`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cvm_evidence::azure::{HclReport, RuntimeClaims, NV_HCL_REPORT, NV_USER_DATA};

use super::{TeeError, TeeEvidence, TeeProvider};
use crate::vtpm::Vtpm;

/// The largest HCL report the agent reads.
pub const MAX_REPORT: usize = cvm_evidence::azure::hcl::MAX_LEN;

/// What happens between the agent's write of user data and its reads: on
/// Azure nothing the agent does (the paravisor refreshes the report on its
/// own); in the simulated mode, the simulated paravisor's work.
pub trait Paravisor: Send + Sync {
    /// Called after the user data was written.
    fn user_data_written(&self, vtpm: &Vtpm, user_data: &[u8; 64]) -> Result<(), TeeError>;
}

/// Azure's own paravisor: it needs no help.
#[derive(Debug)]
pub struct Microsoft;

impl Paravisor for Microsoft {
    fn user_data_written(&self, _vtpm: &Vtpm, _user_data: &[u8; 64]) -> Result<(), TeeError> {
        Ok(())
    }
}

/// The Azure provider.
pub struct Azure {
    vtpm: Arc<Vtpm>,
    certs: TeeEvidence,
    deadline: Duration,
    paravisor: Box<dyn Paravisor>,
    name: &'static str,
    /// One write-and-wait at a time: another request's user data written in
    /// between would make this one wait for a report that never comes.
    turn: std::sync::Mutex<()>,
}

impl Azure {
    /// A provider writing and reading through `vtpm`, attaching `certs`
    /// (VCEK, ASK, ARK; the report field unused), waiting up to `deadline`
    /// for each refresh.
    pub fn new(
        vtpm: Arc<Vtpm>,
        certs: TeeEvidence,
        deadline: Duration,
        paravisor: Box<dyn Paravisor>,
        name: &'static str,
    ) -> Azure {
        Azure { vtpm, certs, deadline, paravisor, name, turn: std::sync::Mutex::new(()) }
    }
}

impl TeeProvider for Azure {
    fn name(&self) -> &'static str {
        self.name
    }

    fn platform(&self) -> cvm_evidence::policy::Platform {
        cvm_evidence::policy::Platform::Azure
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeError> {
        let err = |message: String| TeeError { provider: self.name, message };
        // A panic while holding the turn leaves nothing half done that the next write does not redo.
        let _turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        self.vtpm
            .nv_write(NV_USER_DATA, report_data)
            .map_err(|e| err(format!("handing the paravisor the user data: {e}")))?;
        self.paravisor.user_data_written(&self.vtpm, report_data)?;
        let report = wait_for_report(
            || self.vtpm.nv_read(NV_HCL_REPORT, MAX_REPORT).map_err(|e| e.to_string()),
            report_data,
            self.deadline,
        )
        .map_err(err)?;
        Ok(TeeEvidence { report, ..self.certs.clone() })
    }
}

/// Reads with `read` until the HCL report's claims carry `user_data`,
/// backing off from 5 ms to 250 ms between reads; fails at `deadline`,
/// saying what the last read found.
pub fn wait_for_report(
    mut read: impl FnMut() -> Result<Vec<u8>, String>,
    user_data: &[u8; 64],
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut reads = 0u32;
    loop {
        reads += 1;
        let last = match read() {
            Ok(bytes) => match carried_user_data(&bytes) {
                Ok(found) if &found == user_data => {
                    log::debug!(
                        "Azure: the HCL report carried our user data after {reads} reads, {} ms",
                        start.elapsed().as_millis()
                    );
                    return Ok(bytes);
                }
                Ok(found) => format!("the report still carries user data {}", hex::encode(&found[..8])),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let waited = start.elapsed();
        if waited >= deadline {
            return Err(format!(
                "the paravisor did not refresh the HCL report (NV index 0x{NV_HCL_REPORT:08x}) with our user \
                 data within {} ms; last read: {last}",
                deadline.as_millis()
            ));
        }
        std::thread::sleep(pause.min(deadline - waited));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The user data in an HCL report's claims.
fn carried_user_data(bytes: &[u8]) -> Result<[u8; 64], String> {
    let report = HclReport::parse(bytes).map_err(|e| e.to_string())?;
    let claims = RuntimeClaims::parse(&report.claims).map_err(|e| e.to_string())?;
    claims.user_data().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCL: &[u8] = include_bytes!("../../../evidence/testdata/azure/hcl-report.bin");

    fn vector_user_data() -> [u8; 64] {
        carried_user_data(HCL).unwrap()
    }

    #[test]
    fn the_report_is_read_until_it_carries_the_user_data() {
        let stale = include_bytes!("../../../evidence/testdata/azure/hcl-report-2.bin").to_vec();
        let mut reads = 0;
        let got = wait_for_report(
            || {
                reads += 1;
                Ok(if reads < 4 { stale.clone() } else { HCL.to_vec() })
            },
            &vector_user_data(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((got.as_slice(), reads), (HCL, 4));
    }

    #[test]
    fn a_report_that_never_carries_it_fails_at_the_deadline() {
        let start = Instant::now();
        let mut other = vector_user_data();
        other[0] ^= 1;
        let err = wait_for_report(|| Ok(HCL.to_vec()), &other, Duration::from_millis(300)).unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "{took:?}");
        assert!(err.contains("within 300 ms") && err.contains("still carries user data"), "{err}");
        let err =
            wait_for_report(|| Err("NV index gone".into()), &other, Duration::from_millis(50)).unwrap_err();
        assert!(err.contains("NV index gone"), "{err}");
    }
}
