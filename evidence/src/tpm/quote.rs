//! Quotes (`TPMS_ATTEST` of type TPM_ST_ATTEST_QUOTE, Part 2 §10.12) and
//! their signatures (`TPMT_SIGNATURE`, §11.3.4).

use super::reader::Reader;
use super::{alg, alg_name, TpmError};

/// TPM_GENERATED_VALUE: the TPM puts it in every structure it signs, and a
/// restricted key signs nothing that starts with it unless the TPM made it.
const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
const ST_ATTEST_QUOTE: u16 = 0x8018;

/// The TPM's clock when it quoted (TPMS_CLOCK_INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its clock was last set.
    pub clock: u64,
    /// TPM resets (power cycles) so far.
    pub reset_count: u32,
    /// TPM restarts (resume from hibernation) since the last reset.
    pub restart_count: u32,
    /// Whether `clock` is known not to have gone back.
    pub safe: bool,
}

/// Which PCRs of which banks a quote covers (TPML_PCR_SELECTION), in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcrSelection(pub Vec<(u16, Vec<u8>)>);

impl PcrSelection {
    /// (bank algorithm, PCR index) pairs, in the order their values are digested.
    pub fn pcrs(&self) -> Vec<(u16, u32)> {
        let mut out = Vec::new();
        for (alg, bitmap) in &self.0 {
            for (byte_index, byte) in bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        out.push((*alg, (byte_index * 8 + bit) as u32));
                    }
                }
            }
        }
        out
    }
}

impl std::fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.pcrs().iter().map(|(a, p)| format!("{}:{p}", alg_name(*a))).collect();
        if parts.is_empty() {
            f.write_str("no PCRs")
        } else {
            f.write_str(&parts.join("+"))
        }
    }
}

/// A parsed quote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// The signer's qualified name.
    pub qualified_signer: Vec<u8>,
    /// extraData: the verifier's nonce.
    pub extra_data: Vec<u8>,
    /// The TPM's clock.
    pub clock: ClockInfo,
    /// The TPM vendor's firmware version.
    pub firmware_version: u64,
    /// The PCRs quoted.
    pub selection: PcrSelection,
    /// The digest (with the AK's scheme hash) of the selected PCR values, concatenated in selection order.
    pub pcr_digest: Vec<u8>,
}

impl Quote {
    /// Parses a marshalled `TPMS_ATTEST` and checks it is a TPM-generated quote.
    pub fn parse(bytes: &[u8]) -> Result<Quote, TpmError> {
        let mut r = Reader::new(bytes, "quote (TPMS_ATTEST)");
        let magic = r.u32()?;
        if magic != TPM_GENERATED {
            return Err(TpmError::Unexpected {
                what: "quote magic",
                expected: format!("0x{TPM_GENERATED:08x} (TPM_GENERATED_VALUE)"),
                found: format!("0x{magic:08x}"),
            });
        }
        let kind = r.u16()?;
        if kind != ST_ATTEST_QUOTE {
            return Err(TpmError::Unexpected {
                what: "attestation type",
                expected: format!("0x{ST_ATTEST_QUOTE:04x} (quote)"),
                found: format!("0x{kind:04x}"),
            });
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        let (clock, reset_count, restart_count) = (r.u64()?, r.u32()?, r.u32()?);
        // TPMI_YES_NO: 0 or 1, nothing else (Part 2, 9.2). Reading any
        // non-zero byte as "yes" would let two byte strings be one quote.
        let safe = match r.u8()? {
            0 => false,
            1 => true,
            other => {
                return Err(TpmError::Unexpected {
                    what: "clockInfo.safe (TPMI_YES_NO)",
                    expected: "0 or 1".into(),
                    found: other.to_string(),
                })
            }
        };
        let clock = ClockInfo { clock, reset_count, restart_count, safe };
        let firmware_version = r.u64()?;
        let count = r.u32()?;
        if count > 16 {
            return Err(TpmError::Unexpected {
                what: "PCR selection count",
                expected: "at most 16 banks".into(),
                found: count.to_string(),
            });
        }
        let mut banks = Vec::new();
        for _ in 0..count {
            let alg = r.u16()?;
            let size = r.u8()?;
            banks.push((alg, r.take(usize::from(size))?.to_vec()));
        }
        let pcr_digest = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(Quote {
            qualified_signer,
            extra_data,
            clock,
            firmware_version,
            selection: PcrSelection(banks),
            pcr_digest,
        })
    }
}

/// A parsed `TPMT_SIGNATURE` (ECDSA, RSASSA or RSAPSS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// TPM_ALG_ECDSA, RSASSA or RSAPSS.
    pub scheme: u16,
    /// The hash algorithm signed with.
    pub hash: u16,
    /// ECDSA r (empty for RSA).
    pub ecdsa_r: Vec<u8>,
    /// ECDSA s (empty for RSA).
    pub ecdsa_s: Vec<u8>,
    /// The RSA signature (empty for ECDSA).
    pub rsa: Vec<u8>,
}

impl Signature {
    /// Parses a marshalled `TPMT_SIGNATURE`.
    pub fn parse(bytes: &[u8]) -> Result<Signature, TpmError> {
        let mut r = Reader::new(bytes, "signature (TPMT_SIGNATURE)");
        let scheme = r.u16()?;
        let hash = r.u16()?;
        let sig = match scheme {
            alg::ECDSA => {
                let ecdsa_r = r.tpm2b()?.to_vec();
                let ecdsa_s = r.tpm2b()?.to_vec();
                Signature { scheme, hash, ecdsa_r, ecdsa_s, rsa: Vec::new() }
            }
            alg::RSASSA | alg::RSAPSS => {
                let rsa = r.tpm2b()?.to_vec();
                Signature { scheme, hash, ecdsa_r: Vec::new(), ecdsa_s: Vec::new(), rsa }
            }
            other => {
                return Err(TpmError::Unexpected {
                    what: "signature algorithm",
                    expected: "ecdsa, rsassa or rsapss".into(),
                    found: alg_name(other),
                })
            }
        };
        r.finish()?;
        Ok(sig)
    }
}
