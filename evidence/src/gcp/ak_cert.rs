//! The GCP vTPM's attestation-key certificate: that Google's EK/AK CA
//! issued it, and that the key it certifies is the key that signed the quote.
//!
//! [`check_ak_certificate`] records, in order:
//!
//! - `vtpm_ak_certificate`: the agent sent the certificate it read from the
//!   vTPM's NV storage, and it is X.509 DER. Without one the remaining
//!   checks are skipped; it fails only when `required` (the policy's
//!   platform is `gcp`).
//! - `vtpm_ak_certificate_chain`: it chains, through an intermediate or
//!   directly, to a trusted root ([`AkAnchors`]: Google's pinned one unless
//!   the caller added another), each link's signature verified.
//! - `vtpm_ak_certificate_validity`: every certificate of that chain is
//!   valid at the verification time.
//! - `vtpm_ak_certificate_key`: the certified public key is the attestation
//!   key of the boot evidence, the one whose signature on the quotes the
//!   vTPM checks verified (`vtpm_quote_signature`, `boot_quote_signature`).

use time::OffsetDateTime;
use x509_cert::Certificate;

use super::roots::AkAnchors;
use super::{describe, rfc3339};
use crate::certs::{self, parse_certificate, x509_signature::verify_x509_issued_by};
use crate::tpm::AkPublic;
use crate::VerificationReport;

const LATER: [&str; 3] =
    ["vtpm_ak_certificate_chain", "vtpm_ak_certificate_validity", "vtpm_ak_certificate_key"];

/// Checks the attestation-key certificate against `anchors` at `at`, and
/// that it certifies `ak_public` (marshalled `TPMT_PUBLIC`). Returns the
/// certificate when every check passed.
pub fn check_ak_certificate(
    result: &mut VerificationReport,
    anchors: &AkAnchors,
    at: OffsetDateTime,
    required: bool,
    certificate: Option<&[u8]>,
    ak_public: Option<&[u8]>,
) -> Option<Certificate> {
    let skip_rest = |result: &mut VerificationReport, reason: &str| {
        for name in LATER {
            result.record_skipped(name, reason);
        }
    };
    let expected = "the vTPM's attestation-key certificate (from its NV index 0x01c10002 or 0x01c10000)";
    let leaf = match certificate.map(|der| parse_certificate(der, "AK certificate")) {
        None if required => {
            result.record(
                "vtpm_ak_certificate",
                false,
                format!("{expected}: the policy's platform is gcp"),
                "none",
            );
            skip_rest(result, "no AK certificate");
            return None;
        }
        None => {
            result.record_skipped("vtpm_ak_certificate", "the agent sent no AK certificate (not a GCP vTPM)");
            skip_rest(result, "no AK certificate");
            return None;
        }
        Some(Err(e)) => {
            result.record("vtpm_ak_certificate", false, expected, e.to_string());
            skip_rest(result, "the AK certificate cannot be read");
            return None;
        }
        Some(Ok(cert)) => {
            result.record("vtpm_ak_certificate", true, expected, describe(&cert));
            cert
        }
    };

    let chain = chain_to_root(anchors, &leaf);
    let roots: Vec<String> = anchors.roots().iter().map(describe).collect();
    let chain_ok = result_of(
        result,
        "vtpm_ak_certificate_chain",
        chain
            .as_ref()
            .map(|path| {
                let links: Vec<String> = path.iter().map(|c| describe(c)).collect();
                format!("issued by {}", links.join(", issued by "))
            })
            .map_err(Clone::clone),
        format!("issued by a trusted EK/AK CA root: {}", roots.join(" or ")),
    );

    match &chain {
        Ok(path) => {
            let mut problems = Vec::new();
            for cert in std::iter::once(&leaf).chain(path.iter().copied()) {
                let (nb, na) = certs::validity(cert);
                let t = at.unix_timestamp();
                if t < nb || t > na {
                    problems.push(format!(
                        "{} valid from {} to {}",
                        certs::subject_cn(cert).unwrap_or_default(),
                        rfc3339(nb),
                        rfc3339(na)
                    ));
                }
            }
            result.record(
                "vtpm_ak_certificate_validity",
                problems.is_empty(),
                format!("every certificate of the chain valid at {}", rfc3339(at.unix_timestamp())),
                if problems.is_empty() { "all valid".to_owned() } else { problems.join("; ") },
            );
        }
        Err(_) => result.record_skipped("vtpm_ak_certificate_validity", "the chain did not verify"),
    }

    let certified = certified_key_matches(&leaf, ak_public);
    let key_ok = result_of(
        result,
        "vtpm_ak_certificate_key",
        certified,
        "the certified key is the attestation key bound to the SNP evidence, which signed the quotes",
    );
    let valid =
        result.check("vtpm_ak_certificate_validity").is_some_and(|c| c.outcome == crate::Outcome::Passed);
    (chain_ok && key_ok && valid).then_some(leaf)
}

fn result_of(
    result: &mut VerificationReport,
    name: &'static str,
    found: Result<String, String>,
    expected: impl Into<String>,
) -> bool {
    let ok = found.is_ok();
    result.record(name, ok, expected, found.unwrap_or_else(|e| e));
    ok
}

/// The path from `leaf` to a trusted root (issuers in order, the root last).
fn chain_to_root<'a>(anchors: &'a AkAnchors, leaf: &Certificate) -> Result<Vec<&'a Certificate>, String> {
    let issuer = &leaf.tbs_certificate.issuer;
    let mut tried = Vec::new();
    for root in anchors.roots().iter().filter(|r| &r.tbs_certificate.subject == issuer) {
        match verify_x509_issued_by(root, leaf) {
            Ok(()) => return Ok(vec![root]),
            Err(e) => tried.push(format!("{}: {e}", describe(root))),
        }
    }
    for mid in anchors.intermediates().iter().filter(|m| &m.tbs_certificate.subject == issuer) {
        if let Err(e) = verify_x509_issued_by(mid, leaf) {
            tried.push(format!("{}: {e}", describe(mid)));
            continue;
        }
        let mid_issuer = &mid.tbs_certificate.issuer;
        for root in anchors.roots().iter().filter(|r| &r.tbs_certificate.subject == mid_issuer) {
            match verify_x509_issued_by(root, mid) {
                Ok(()) => return Ok(vec![mid, root]),
                Err(e) => tried.push(format!("{} under {}: {e}", describe(mid), describe(root))),
            }
        }
        tried.push(format!("{}: no trusted root of its issuer's name", describe(mid)));
    }
    // Google issues the leaves from more than one intermediate of the same
    // name, each under the pinned root: say where the missing one is.
    let hint = match ca_issuers_url(leaf) {
        Some(url) => format!(
            "; the issuing intermediate is named by the certificate ({url}): fetch it and pass it with \
             --ak-intermediate (it is trusted only if the pinned root signed it)"
        ),
        None => String::new(),
    };
    if tried.is_empty() {
        Err(format!("issuer {}: no trusted root or intermediate of that name{hint}", name_cn(issuer)))
    } else {
        Err(format!("issuer {}: {}{hint}", name_cn(issuer), tried.join("; ")))
    }
}

/// The caIssuers URL of the certificate's Authority Information Access
/// extension, if it has one: where its issuer's certificate is published.
pub fn ca_issuers_url(cert: &Certificate) -> Option<String> {
    use der::Decode as _;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
    const AIA: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
    const CA_ISSUERS: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
    let ext = cert.tbs_certificate.extensions.as_deref()?.iter().find(|e| e.extn_id == AIA)?;
    let aia = AuthorityInfoAccessSyntax::from_der(ext.extn_value.as_bytes()).ok()?;
    aia.0.into_iter().find(|d| d.access_method == CA_ISSUERS).and_then(|d| match d.access_location {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    })
}

/// Whether the certificate's key is the AK's: both as DER SubjectPublicKeyInfo.
fn certified_key_matches(leaf: &Certificate, ak_public: Option<&[u8]>) -> Result<String, String> {
    use der::Encode as _;
    let ak_public = ak_public.ok_or("no attestation key in the boot evidence")?;
    let ak = AkPublic::parse(ak_public).map_err(|e| format!("the attestation key: {e}"))?;
    let ak_spki = ak.to_spki_der().map_err(|e| e.to_string())?;
    let cert_spki = leaf.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
    let hash = |b: &[u8]| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b));
    if ak_spki == cert_spki {
        Ok(format!("the AK, SPKI sha256:{}", hash(&ak_spki)))
    } else {
        Err(format!(
            "the certificate certifies SPKI sha256:{}, the AK is SPKI sha256:{}",
            hash(&cert_spki),
            hash(&ak_spki)
        ))
    }
}

fn name_cn(name: &x509_cert::name::Name) -> String {
    let cert_like = name.to_string();
    if cert_like.is_empty() {
        "(empty name)".into()
    } else {
        cert_like
    }
}

#[cfg(test)]
mod tests;
