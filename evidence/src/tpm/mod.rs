//! TPM 2.0 structures a verifier needs, in pure Rust: the attestation key's
//! public area (`TPMT_PUBLIC`), quotes (`TPMS_ATTEST`), their signatures
//! (`TPMT_SIGNATURE`), and the files tpm2-tools reads (`tpm2_checkquote`).
//!
//! Everything is parsed from the TPM's big-endian wire encoding (TPM 2.0
//! Library, Part 2: Structures), in spec order, with every length checked:
//! these bytes come from a machine the verifier does not trust. Signatures are
//! checked with ring, as the SNP report's are.

mod export;
mod public;
mod quote;
mod reader;
#[cfg(feature = "simulator")]
mod simulated;

pub use export::{pcrs_file, PCRS_FILE_LEN};
pub use public::{AkPublic, KeyParams};
pub use quote::{ClockInfo, PcrSelection, Quote, Signature};
#[cfg(feature = "simulator")]
pub use simulated::SimulatedAk;

/// TPM algorithm identifiers (TPM_ALG_ID) this module knows.
pub mod alg {
    /// TPM_ALG_RSA.
    pub const RSA: u16 = 0x0001;
    /// TPM_ALG_SHA256.
    pub const SHA256: u16 = 0x000B;
    /// TPM_ALG_SHA384.
    pub const SHA384: u16 = 0x000C;
    /// TPM_ALG_NULL.
    pub const NULL: u16 = 0x0010;
    /// TPM_ALG_RSASSA.
    pub const RSASSA: u16 = 0x0014;
    /// TPM_ALG_RSAPSS.
    pub const RSAPSS: u16 = 0x0016;
    /// TPM_ALG_ECDSA.
    pub const ECDSA: u16 = 0x0018;
    /// TPM_ALG_ECC.
    pub const ECC: u16 = 0x0023;
}

/// A TPM structure that cannot be read or is of a kind this verifier refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The bytes end inside a structure.
    #[error("{what}: truncated at byte {offset}")]
    Truncated {
        /// The structure or field being read.
        what: &'static str,
        /// Where the bytes ended.
        offset: usize,
    },
    /// Bytes after the end of the structure.
    #[error("{what}: {extra} bytes after the end of the structure")]
    Trailing {
        /// The structure.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A field has a value this verifier does not accept.
    #[error("{what}: expected {expected}, found {found}")]
    Unexpected {
        /// The field.
        what: &'static str,
        /// What is accepted.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The signature does not verify under the key.
    #[error("signature: {0}")]
    BadSignature(String),
}

pub(crate) fn alg_name(id: u16) -> String {
    match id {
        alg::RSA => "rsa".into(),
        alg::SHA256 => "sha256".into(),
        alg::SHA384 => "sha384".into(),
        alg::NULL => "null".into(),
        alg::RSASSA => "rsassa".into(),
        alg::RSAPSS => "rsapss".into(),
        alg::ECDSA => "ecdsa".into(),
        alg::ECC => "ecc".into(),
        0x0004 => "sha1".into(),
        0x000D => "sha512".into(),
        other => format!("0x{other:04x}"),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256, Sha384};

    use super::*;

    const AK: &[u8] = include_bytes!("../../testdata/tpm/ak.pub.tpmt");
    const QUOTE: &[u8] = include_bytes!("../../testdata/tpm/quote.msg");
    const SIG: &[u8] = include_bytes!("../../testdata/tpm/quote.sig");

    #[test]
    fn a_real_swtpm_quote_verifies() {
        let ak = AkPublic::parse(AK).unwrap();
        assert!(matches!(ak.key, KeyParams::Ecc { curve: 0x0003, .. }));
        let quote = Quote::parse(QUOTE).unwrap();
        let sig = Signature::parse(SIG).unwrap();
        ak.verify(QUOTE, &sig).unwrap();
        assert_eq!(quote.extra_data, [7u8; 32]);
        assert_eq!(quote.selection.pcrs(), vec![(alg::SHA256, 15), (alg::SHA384, 15)]);
        assert_eq!(quote.selection.to_string(), "sha256:15+sha384:15");
        let mut sha256 = vec![0u8; 32];
        sha256.extend_from_slice(&[1; 32]);
        let mut sha384 = vec![0u8; 48];
        sha384.extend_from_slice(&[2; 48]);
        let mut both = Sha256::digest(&sha256).to_vec();
        both.extend_from_slice(&Sha384::digest(&sha384));
        assert_eq!(quote.pcr_digest, Sha256::digest(&both).to_vec());
        let spki = ak.to_spki_der().unwrap();
        assert_eq!(&spki[..2], &[0x30, 0x59]);
    }

    #[test]
    fn every_flipped_byte_of_the_quote_is_caught() {
        let ak = AkPublic::parse(AK).unwrap();
        let sig = Signature::parse(SIG).unwrap();
        for i in 0..QUOTE.len() {
            let mut q = QUOTE.to_vec();
            q[i] ^= 0x01;
            assert!(ak.verify(&q, &sig).is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_or_padded_structures_are_refused() {
        for n in 0..QUOTE.len() {
            assert!(matches!(Quote::parse(&QUOTE[..n]), Err(TpmError::Truncated { .. })), "{n}");
        }
        let mut long = QUOTE.to_vec();
        long.push(0);
        assert_eq!(Quote::parse(&long), Err(TpmError::Trailing { what: "quote (TPMS_ATTEST)", extra: 1 }));
        assert!(AkPublic::parse(&AK[..AK.len() - 1]).is_err());
        assert!(Signature::parse(&SIG[..10]).is_err());
    }

    #[test]
    fn a_clock_safe_byte_other_than_0_or_1_is_refused() {
        // Found by the tpm_quote fuzz target: `safe` was any non-zero byte,
        // so quotes differing in that byte parsed to one value.
        let mut q = QUOTE.to_vec();
        assert_eq!(q[92], 1, "clockInfo.safe of the test quote");
        q[92] = 7;
        let err = Quote::parse(&q).unwrap_err().to_string();
        assert!(err.contains("clockInfo.safe") && err.contains("found 7"), "{err}");
        q[92] = 0;
        assert!(!Quote::parse(&q).unwrap().clock.safe);
    }

    #[test]
    fn a_key_that_is_not_restricted_is_no_attestation_key() {
        let mut ak = AK.to_vec();
        ak[5] &= !0x01; // clear `restricted` (bit 16 of objectAttributes at bytes 4..8)
        let err = AkPublic::parse(&ak).unwrap_err().to_string();
        assert!(err.contains("AK attributes"), "{err}");
    }

    #[test]
    fn the_pcr_file_has_tpm2_tools_layout() {
        let f = pcrs_file(15, &[(crate::eventlog::PcrBank::Sha256, vec![0xaa; 32])]).unwrap();
        assert_eq!(f.len(), PCRS_FILE_LEN);
        assert_eq!(&f[..12], &[1, 0, 0, 0, 0x0b, 0, 3, 0, 0x80, 0, 0, 0]);
        assert_eq!(&f[132..142], &[1, 0, 0, 0, 1, 0, 0, 0, 32, 0]);
        assert_eq!(f[142], 0xaa);
    }
}
