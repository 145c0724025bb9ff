//! Google's EK/AK CA, built in and pinned: the root and the intermediate
//! that issue the GCP vTPM's attestation-key certificates.
//!
//! The two DER files are the public certificates of Google's go-tpm-tools
//! project (`server/ca-certs/`, Apache-2.0). The root is pinned by the
//! SHA-256 of its DER encoding: a chain is trusted only when it ends in a
//! root of exactly this fingerprint, or in one the caller adds explicitly
//! ([`AkAnchors::trust_additional_root`]). Intermediates are never trusted
//! by themselves: one is used only when a trusted root signed it.

use x509_cert::Certificate;

use crate::certs::{fingerprint, parse_certificate};
use crate::CertError;

const ROOT_DER: &[u8] = include_bytes!("roots/gcp_ek_ak_ca_root.crt");
const INTERMEDIATE_V3_DER: &[u8] = include_bytes!("roots/gcp_ek_ak_ca_intermediate_v3.crt");

/// SHA-256 of the DER of Google's `EK/AK CA Root`.
pub const GOOGLE_AK_ROOT_SHA256: &str = "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2";

/// The CA certificates an attestation-key certificate may chain through.
#[derive(Clone, Debug)]
pub struct AkAnchors {
    roots: Vec<Certificate>,
    intermediates: Vec<Certificate>,
}

impl AkAnchors {
    /// Google's pinned root and its intermediate, and nothing else.
    pub fn google() -> Result<AkAnchors, CertError> {
        let root = parse_certificate(ROOT_DER, "built-in Google EK/AK CA root")?;
        let pin = hex::encode(fingerprint(&root));
        if pin != GOOGLE_AK_ROOT_SHA256 {
            // The file and the constant are both in this crate; a test checks them.
            return Err(CertError::Decode {
                what: "built-in Google EK/AK CA root".into(),
                reason: format!("fingerprint {pin}, pinned {GOOGLE_AK_ROOT_SHA256}"),
            });
        }
        let intermediate = parse_certificate(INTERMEDIATE_V3_DER, "built-in Google EK/AK CA intermediate")?;
        Ok(AkAnchors { roots: vec![root], intermediates: vec![intermediate] })
    }

    /// Also trusts `root` as an EK/AK CA root.
    ///
    /// This is how a simulated CA becomes acceptable in tests; it is named
    /// so that a reviewer sees every place that widens trust beyond Google.
    pub fn trust_additional_root(&mut self, root: Certificate) {
        self.roots.push(root);
    }

    /// Offers `cert` as an intermediate. It widens no trust: it is used only
    /// when a trusted root signed it.
    pub fn add_intermediate(&mut self, cert: Certificate) {
        self.intermediates.push(cert);
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[Certificate] {
        &self.roots
    }

    /// The intermediates on offer.
    pub fn intermediates(&self) -> &[Certificate] {
        &self.intermediates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::subject_cn;

    #[test]
    fn googles_root_is_pinned_and_is_the_vectors_file() {
        let anchors = AkAnchors::google().unwrap();
        assert_eq!(anchors.roots().len(), 1);
        assert_eq!(hex::encode(fingerprint(&anchors.roots()[0])), GOOGLE_AK_ROOT_SHA256);
        assert_eq!(subject_cn(&anchors.roots()[0]).as_deref(), Some("EK/AK CA Root"));
        assert_eq!(subject_cn(&anchors.intermediates()[0]).as_deref(), Some("EK/AK CA Intermediate"));
        // The files are the ones in the shared vectors, when those are at hand.
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/gcp/roots/");
        if let Ok(root) = std::fs::read(format!("{shared}gcp_ek_ak_ca_root.crt")) {
            assert_eq!(root, ROOT_DER);
            assert_eq!(
                std::fs::read(format!("{shared}gcp_ek_ak_ca_intermediate_v3.crt")).unwrap(),
                INTERMEDIATE_V3_DER
            );
        }
    }
}
