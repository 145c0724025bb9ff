//! Software stand-ins for Google's two CAs, for tests: the EK/AK CA that
//! certifies a GCP vTPM's attestation key, and the signer of launch
//! endorsements.
//!
//! Their certificates carry Google's names (the EK/AK CA's are copied from
//! Google's own certificates, byte for byte), so
//! that nothing but the keys tells them from Google's: a verifier accepts
//! them only when the caller trusts their root explicitly
//! ([`crate::gcp::AkAnchors::trust_additional_root`], or the root given to
//! [`crate::gcp::check_launch_endorsement`]). Keys are RSA-2048, certificates
//! signed with RSASSA-PSS/SHA-384, endorsements with RSASSA-PSS/SHA-256
//! (what Google's verifier expects).

use std::str::FromStr as _;

use der::{Decode as _, Encode as _};
use rand_core::OsRng;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use x509_cert::name::Name;
use x509_cert::Certificate;

use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use super::{enc, extension, rsa_spki, sign_rsa_pss, tbs, SimulatorError};
use crate::gcp::{GoldenMeasurement, LaunchEndorsement};
use crate::tpm::AkPublic;

/// The caIssuers URL in the simulated CA's leaves (nothing is served there).
pub const SIMULATED_CA_ISSUERS_URL: &str = "http://ca.invalid/simulated-ek-ak-intermediate.crt";

fn google_name(cn: &str) -> Result<Name, SimulatorError> {
    Name::from_str(&format!("CN={cn},OU=Google Cloud,O=Google LLC,L=Mountain View,ST=California,C=US"))
        .map_err(enc)
}

fn rsa_key() -> Result<rsa::RsaPrivateKey, SimulatorError> {
    rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| SimulatorError::Crypto(e.to_string()))
}

fn years(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    (now - time::Duration::days(365), now + time::Duration::days(20 * 365))
}

/// A simulated EK/AK CA: a root, an intermediate, and leaf certificates
/// for attestation keys.
pub struct SimulatedAkCa {
    intermediate_key: rsa::RsaPrivateKey,
    root: Certificate,
    intermediate: Certificate,
}

impl std::fmt::Debug for SimulatedAkCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimulatedAkCa")
    }
}

impl SimulatedAkCa {
    /// A new root and intermediate, valid from a year before `now` for twenty years.
    pub fn generate(now: OffsetDateTime) -> Result<SimulatedAkCa, SimulatorError> {
        let (root_key, intermediate_key) = (rsa_key()?, rsa_key()?);
        let (nb, na) = years(now);
        // Exactly the names of Google's root and intermediate (encoding included).
        let google = crate::gcp::AkAnchors::google().map_err(enc)?;
        let root_name = google.roots()[0].tbs_certificate.subject.clone();
        let intermediate_name = google.intermediates()[0].tbs_certificate.subject.clone();
        let root = sign_rsa_pss(
            tbs(1, root_name.clone(), root_name.clone(), nb, na, rsa_spki(&root_key)?, None)?,
            &root_key,
        )?;
        let intermediate = sign_rsa_pss(
            tbs(2, root_name, intermediate_name, nb, na, rsa_spki(&intermediate_key)?, None)?,
            &root_key,
        )?;
        Ok(SimulatedAkCa { intermediate_key, root, intermediate })
    }

    /// The root (trust it explicitly to accept this CA's certificates).
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// The intermediate that issues the leaves.
    pub fn intermediate(&self) -> &Certificate {
        &self.intermediate
    }

    /// A certificate for the attestation key `ak_public` (marshalled
    /// `TPMT_PUBLIC`), issued by the intermediate, valid from `not_before` to `not_after`.
    pub fn certify(
        &self,
        ak_public: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Certificate, SimulatorError> {
        let ak = AkPublic::parse(ak_public).map_err(|e| SimulatorError::Params(e.to_string()))?;
        let spki_der = ak.to_spki_der().map_err(enc)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(enc)?;
        let subject = Name::from_str("CN=simulated-instance,O=cvm-agent tests").map_err(enc)?;
        // Google's leaves name their issuer's certificate by URL, as this does.
        let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
            access_method: der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2"),
            access_location: GeneralName::UniformResourceIdentifier(
                der::asn1::Ia5String::new(SIMULATED_CA_ISSUERS_URL).map_err(enc)?,
            ),
        }]);
        let aia_oid = der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
        let exts = vec![extension(aia_oid, aia.to_der().map_err(enc)?)?];
        sign_rsa_pss(
            tbs(
                3,
                self.intermediate.tbs_certificate.subject.clone(),
                subject,
                not_before,
                not_after,
                spki,
                Some(exts),
            )?,
            &self.intermediate_key,
        )
    }

    /// [`SimulatedAkCa::certify`] as DER, valid around `now`.
    pub fn certify_der(&self, ak_public: &[u8], now: OffsetDateTime) -> Result<Vec<u8>, SimulatorError> {
        let (nb, na) = years(now);
        self.certify(ak_public, nb, na)?.to_der().map_err(enc)
    }
}

/// A simulated launch-endorsement signer: a root and the signing key's certificate.
pub struct SimulatedEndorser {
    signer_key: rsa::RsaPrivateKey,
    root: Certificate,
    signer: Certificate,
}

impl std::fmt::Debug for SimulatedEndorser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimulatedEndorser")
    }
}

impl SimulatedEndorser {
    /// A new root and signer, valid from a year before `now` for twenty years.
    pub fn generate(now: OffsetDateTime) -> Result<SimulatedEndorser, SimulatorError> {
        let (root_key, signer_key) = (rsa_key()?, rsa_key()?);
        let (nb, na) = years(now);
        let root_name = google_name("GCE-cc-tcb-root")?;
        let root = sign_rsa_pss(
            tbs(1, root_name.clone(), root_name.clone(), nb, na, rsa_spki(&root_key)?, None)?,
            &root_key,
        )?;
        let signer = sign_rsa_pss(
            tbs(2, root_name, google_name("GCE-uefi-signer")?, nb, na, rsa_spki(&signer_key)?, None)?,
            &root_key,
        )?;
        Ok(SimulatedEndorser { signer_key, root, signer })
    }

    /// The root (what an owner passes as `--gce-root`).
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// A serialized `VMLaunchEndorsement` of `golden` with this signer's
    /// certificate in its `cert` field.
    pub fn endorse(&self, golden: &GoldenMeasurement) -> Result<Vec<u8>, SimulatorError> {
        let mut golden = golden.clone();
        golden.cert = self.signer.to_der().map_err(enc)?;
        let bytes = golden.encode();
        let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(self.signer_key.clone());
        let sig = signer
            .try_sign_with_rng(&mut OsRng, &bytes)
            .map_err(|e| SimulatorError::Crypto(e.to_string()))?;
        Ok(LaunchEndorsement::encode(&bytes, &sig.to_vec()))
    }
}
