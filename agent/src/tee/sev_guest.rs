//! /dev/sev-guest through the `sev` crate.

use sev::firmware::guest::Firmware;

use super::{TeeError, TeeEvidence, TeeProvider};

/// The SNP guest device.
pub(super) const DEVICE: &str = "/dev/sev-guest";

/// Reports from /dev/sev-guest: the extended request (report plus the host's
/// certificates), falling back to the plain request when the host supplied
/// no certificates or the extended call fails.
#[derive(Debug, Clone, Copy)]
pub struct SevGuest;

impl TeeProvider for SevGuest {
    fn name(&self) -> &'static str {
        "sev-guest"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeError> {
        let err = |message: String| TeeError { provider: "sev-guest", message };
        let mut fw = Firmware::open().map_err(|e| err(format!("cannot open {DEVICE}: {e}")))?;
        match fw.get_ext_report(None, Some(*report_data), Some(0)) {
            Ok((report, Some(certs))) if !certs.is_empty() => {
                // The sev crate has already split the host's certificate table.
                let mut ev = TeeEvidence { report, ..TeeEvidence::default() };
                for c in certs {
                    use sev::firmware::host::CertType;
                    match c.cert_type {
                        CertType::VCEK | CertType::VLEK => ev.vek = Some(c.data),
                        CertType::ASK => ev.ask = Some(c.data),
                        CertType::ARK => ev.ark = Some(c.data),
                        _ => {}
                    }
                }
                Ok(ev)
            }
            Ok((report, _)) => Ok(TeeEvidence { report, ..TeeEvidence::default() }),
            Err(ext_err) => {
                log::debug!("extended report request failed ({ext_err}); trying the plain one");
                let report = fw
                    .get_report(None, Some(*report_data), Some(0))
                    .map_err(|e| err(format!("report request failed: {e}")))?;
                Ok(TeeEvidence { report, ..TeeEvidence::default() })
            }
        }
    }
}
