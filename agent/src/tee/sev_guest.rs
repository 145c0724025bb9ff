//! /dev/sev-guest through the `sev` crate.

use sev::firmware::guest::Firmware;

use super::{TeeError, TeeEvidence, TeeProvider};

/// The SNP guest device.
pub(super) const DEVICE: &str = "/dev/sev-guest";

/// Reports from /dev/sev-guest: the extended request (report plus the host's
/// certificates), falling back to the plain request when the host supplied
/// no certificates or the extended call fails.
///
/// On GCP this is the provider, and the host fills the certificate table:
/// the VCEK comes from it, and the agent needs no network to be verified.
/// Google may add its launch endorsement under its own GUID
/// (9f4116cd-c503-4f5a-8f6f-fb68882f4ce2); entries of GUIDs other than
/// AMD's are left out of the evidence (the owner gives the endorsement to
/// `cvmctl attest --gce-endorsement`).
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
            Ok((report, Some(certs))) if !certs.is_empty() => Ok(from_cert_table(report, certs)),
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

/// The evidence of a report and the host's certificate table, as the `sev`
/// crate split it: the VCEK or VLEK, ASK and ARK by their GUIDs; entries of
/// other GUIDs are left out.
fn from_cert_table(report: Vec<u8>, certs: Vec<sev::firmware::host::CertTableEntry>) -> TeeEvidence {
    use sev::firmware::host::CertType;
    let mut ev = TeeEvidence { report, ..TeeEvidence::default() };
    for c in certs {
        match c.cert_type {
            CertType::VCEK | CertType::VLEK => ev.vek = Some(c.data),
            CertType::ASK => ev.ask = Some(c.data),
            CertType::ARK => ev.ark = Some(c.data),
            _ => {}
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use sev::firmware::host::CertTableEntry;

    use super::*;

    const VCEK: &[u8] = include_bytes!("../../../evidence/testdata/amd/milan-virtee/vcek.der");

    /// A GUID as the table stores it: its 16 bytes in the order of its text
    /// form, as the `sev` crate and Google's go-sev-guest read and write them.
    fn stored(guid: &str) -> Vec<u8> {
        hex::decode(guid.replace('-', "")).unwrap()
    }

    #[test]
    fn a_gcp_shaped_certificate_table_yields_its_vcek() {
        // What GCP's host writes: the VCEK and Google's launch endorsement,
        // each at its offset after the entries and the zero terminator.
        let endorsement = b"a serialized VMLaunchEndorsement".to_vec();
        let entries = [
            ("63da758d-e664-4564-adc5-f4b93be8accd", VCEK.to_vec()),
            ("9f4116cd-c503-4f5a-8f6f-fb68882f4ce2", endorsement.clone()),
        ];
        let mut offset = 24 * (entries.len() + 1);
        let (mut table, mut data) = (Vec::new(), Vec::new());
        for (guid, bytes) in &entries {
            table.extend_from_slice(&stored(guid));
            table.extend_from_slice(&(offset as u32).to_le_bytes());
            table.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            data.extend_from_slice(bytes);
            offset += bytes.len();
        }
        table.extend_from_slice(&[0; 24]);
        table.extend_from_slice(&data);
        // configfs-tsm's auxblob is the same table: its parser finds the same VCEK.
        let auxblob = super::super::parse_cert_table(&table).unwrap();
        assert_eq!(auxblob.vek.as_deref(), Some(VCEK));
        // The `sev` crate's parser of the extended report's table, as get_ext_report runs it.
        let certs = CertTableEntry::vec_bytes_to_cert_table(&mut table).unwrap();
        assert_eq!(certs.len(), 2);
        let ev = from_cert_table(vec![7; 1184], certs);
        assert_eq!(ev.vek.as_deref(), Some(VCEK));
        assert_eq!((ev.ask, ev.ark), (None, None));
        // The VCEK is the one the report verification needs.
        let cert = cvm_evidence::certs::parse_certificate(ev.vek.as_deref().unwrap(), "vcek").unwrap();
        assert_eq!(cvm_evidence::certs::vek_kind(&cert), Some(cvm_evidence::certs::VekKind::Vcek));
    }
}
