//! The PCR file `tpm2_quote -o` writes and `tpm2_checkquote -f` reads.
//!
//! tpm2-tools 5.x writes the C structures as they lie in memory on the host
//! (little-endian x86_64), not in the TPM's wire encoding:
//!
//! ```text
//! TPML_PCR_SELECTION  u32 count, then 16 entries of 8 bytes
//!                     (u16 hash, u8 sizeofSelect, u8 pcrSelect[4], 1 byte padding)   132 bytes
//! u32                 number of TPML_DIGEST structures that follow (1 here)             4 bytes
//! TPML_DIGEST         u32 count, then 8 entries of TPM2B_DIGEST (u16 size, u8 [64])  532 bytes
//! ```
//!
//! (668 bytes, as tpm2_quote writes for up to 8 PCR values.)

use super::TpmError;
use crate::eventlog::PcrBank;

/// The size of a PCR file with at most 8 values.
pub const PCRS_FILE_LEN: usize = 132 + 4 + 532;

/// The PCR file for one PCR quoted in `banks` (in that order) with `values`.
pub fn pcrs_file(pcr: u32, banks: &[(PcrBank, Vec<u8>)]) -> Result<Vec<u8>, TpmError> {
    if banks.is_empty() || banks.len() > 8 || pcr >= 32 {
        return Err(TpmError::Unexpected {
            what: "PCR file",
            expected: "1 to 8 banks and a PCR below 32".into(),
            found: format!("{} banks, PCR {pcr}", banks.len()),
        });
    }
    let mut out = Vec::with_capacity(PCRS_FILE_LEN);
    out.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for i in 0..16 {
        let mut entry = [0u8; 8];
        if let Some((bank, _)) = banks.get(i) {
            entry[..2].copy_from_slice(&bank.alg_id().to_le_bytes());
            entry[2] = 3;
            entry[3 + (pcr / 8) as usize] = 1 << (pcr % 8);
        }
        out.extend_from_slice(&entry);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(banks.len() as u32).to_le_bytes());
    for i in 0..8 {
        let mut entry = [0u8; 66];
        if let Some((_, value)) = banks.get(i) {
            let n = value.len().min(64);
            entry[..2].copy_from_slice(&(n as u16).to_le_bytes());
            entry[2..2 + n].copy_from_slice(&value[..n]);
        }
        out.extend_from_slice(&entry);
    }
    Ok(out)
}
