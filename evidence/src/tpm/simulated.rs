//! A software attestation key that makes quotes as a TPM would: for tests
//! of the verifier's TPM checks without a TPM. Its quotes go through exactly
//! the same parsing and signature checks as a real TPM's.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::alg;
use crate::eventlog::PcrBank;

/// An ECDSA P-256 / SHA-256 attestation key held in software.
pub struct SimulatedAk {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SimulatedAk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimulatedAk")
    }
}

fn tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl SimulatedAk {
    /// A fresh key.
    pub fn generate() -> Result<SimulatedAk, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| e.to_string())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| e.to_string())?;
        Ok(SimulatedAk { key, rng })
    }

    /// Its marshalled `TPMT_PUBLIC`: an ECC P-256 restricted signing key
    /// with an ECDSA/SHA-256 scheme, as `tpm2_createak` makes one.
    pub fn public(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        let mut out = Vec::new();
        out.extend_from_slice(&alg::ECC.to_be_bytes());
        out.extend_from_slice(&alg::SHA256.to_be_bytes());
        // fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign.
        out.extend_from_slice(&0x0005_0072u32.to_be_bytes());
        tpm2b(&mut out, &[]);
        out.extend_from_slice(&alg::NULL.to_be_bytes()); // symmetric
        out.extend_from_slice(&alg::ECDSA.to_be_bytes());
        out.extend_from_slice(&alg::SHA256.to_be_bytes());
        out.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
        out.extend_from_slice(&alg::NULL.to_be_bytes()); // kdf
        tpm2b(&mut out, &point[1..33]);
        tpm2b(&mut out, &point[33..65]);
        out
    }

    /// A quote (marshalled `TPMS_ATTEST` and `TPMT_SIGNATURE`) of `pcrs`
    /// (bank, index, value; in the order a TPM digests them: banks as
    /// listed, indices ascending) over `nonce`.
    pub fn quote(
        &self,
        nonce: &[u8],
        pcrs: &[(PcrBank, u32, Vec<u8>)],
    ) -> Result<(Vec<u8>, Vec<u8>), String> {
        let mut attest = Vec::new();
        attest.extend_from_slice(&0xff54_4347u32.to_be_bytes());
        attest.extend_from_slice(&0x8018u16.to_be_bytes());
        tpm2b(&mut attest, &[0; 34]); // qualifiedSigner
        tpm2b(&mut attest, nonce);
        attest.extend_from_slice(&1000u64.to_be_bytes()); // clock
        attest.extend_from_slice(&1u32.to_be_bytes()); // resetCount
        attest.extend_from_slice(&0u32.to_be_bytes()); // restartCount
        attest.push(1); // safe
        attest.extend_from_slice(&0u64.to_be_bytes()); // firmwareVersion
        let mut banks: Vec<(PcrBank, [u8; 3])> = Vec::new();
        for (bank, pcr, _) in pcrs {
            let index = banks.iter().position(|(b, _)| b == bank).unwrap_or_else(|| {
                banks.push((*bank, [0; 3]));
                banks.len() - 1
            });
            let byte = (*pcr / 8) as usize;
            if byte >= 3 {
                return Err(format!("PCR {pcr} does not exist"));
            }
            banks[index].1[byte] |= 1 << (pcr % 8);
        }
        attest.extend_from_slice(&(banks.len() as u32).to_be_bytes());
        for (bank, bitmap) in &banks {
            attest.extend_from_slice(&bank.alg_id().to_be_bytes());
            attest.push(3);
            attest.extend_from_slice(bitmap);
        }
        let mut ordered: Vec<&(PcrBank, u32, Vec<u8>)> = pcrs.iter().collect();
        ordered.sort_by_key(|(bank, pcr, _)| (banks.iter().position(|(b, _)| b == bank), *pcr));
        let concatenated: Vec<u8> = ordered.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        tpm2b(&mut attest, &PcrBank::Sha256.digest(&concatenated));
        let sig = self.key.sign(&self.rng, &attest).map_err(|e| e.to_string())?;
        let sig = sig.as_ref();
        let mut signature = Vec::new();
        signature.extend_from_slice(&alg::ECDSA.to_be_bytes());
        signature.extend_from_slice(&alg::SHA256.to_be_bytes());
        tpm2b(&mut signature, &sig[..32]);
        tpm2b(&mut signature, &sig[32..]);
        Ok((attest, signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{AkPublic, Quote, Signature};

    #[test]
    fn its_quotes_verify_like_a_tpms() {
        let ak = SimulatedAk::generate().unwrap();
        let public = AkPublic::parse(&ak.public()).unwrap();
        let (attest, sig) = ak
            .quote(&[5; 32], &[(PcrBank::Sha256, 11, vec![1; 32]), (PcrBank::Sha256, 4, vec![2; 32])])
            .unwrap();
        public.verify(&attest, &Signature::parse(&sig).unwrap()).unwrap();
        let quote = Quote::parse(&attest).unwrap();
        assert_eq!(quote.selection.to_string(), "sha256:4+sha256:11");
        let mut both = vec![2; 32];
        both.extend_from_slice(&[1; 32]);
        assert_eq!(quote.pcr_digest, PcrBank::Sha256.digest(&both));
    }
}
