//! The checks of an HCL report, its claims, and quotes by its attestation key.

use sha2::{Digest as _, Sha256};

use super::claims::{RsaJwk, RuntimeClaims};
use super::hcl::HclReport;
use crate::certs::CertChain;
use crate::policy::platform::{check_platform, Platform};
use crate::tpm::{alg, AkPublic, KeyParams, Quote, Signature};
use crate::{VerificationReport, Verifier};

/// What [`check_hcl_report`] could establish, as far as it got.
#[derive(Clone, Debug)]
pub struct VerifiedHcl {
    /// The parsed report.
    pub report: HclReport,
    /// The claims, when they parse.
    pub claims: Option<RuntimeClaims>,
    /// The paravisor's attestation key, when the claims hold a usable one.
    pub ak: Option<RsaJwk>,
}

/// Checks an HCL report against `verifier` (its anchors, policy and time)
/// and `chain` (the VCEK of the chip, and optionally its ASK and ARK), and
/// that its user data is `user_data` when given. Records every check (see
/// the module documentation); returns what was parsed, when it was.
pub fn check_hcl_report(
    verifier: &Verifier<'_>,
    hcl: &[u8],
    chain: &CertChain,
    user_data: Option<&[u8; 64]>,
) -> (VerificationReport, Option<VerifiedHcl>) {
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    check_platform(&mut result, verifier.policy().platform, Platform::Azure);
    let report = match HclReport::parse(hcl) {
        Ok(r) => {
            result.record(
                "hcl_format",
                true,
                "an HCL report holding an SNP report and runtime claims",
                format!(
                    "HCL report version {}, {} bytes of claims hashed with {}",
                    r.version,
                    r.claims.len(),
                    r.hash
                ),
            );
            r
        }
        Err(e) => {
            result.record(
                "hcl_format",
                false,
                "an HCL report holding an SNP report and runtime claims",
                e.to_string(),
            );
            return (result, None);
        }
    };

    // The paravisor requests the report at VMPL 0; a report from any other
    // VMPL came from the guest itself, which could have written any claims.
    // So VMPL 0 is required whatever the policy pins (`hcl_vmpl`): a policy
    // naming `"platform": "azure"` cannot pin another, and one naming no
    // platform that pins another must not open the door to claims the guest
    // wrote (red team). The policy's own `vmpl` rule is checked as well.
    let mut policy = verifier.policy().clone();
    policy.vmpl.get_or_insert(0);
    let snp = Verifier::new(verifier.anchors(), &policy, verifier.at()).check(&report.snp, chain);
    result.product = snp.product;
    result.checks.extend(snp.checks);
    result.record(
        "hcl_vmpl",
        report.snp.vmpl == 0,
        "VMPL 0: the paravisor's, which alone writes the runtime claims",
        format!("VMPL {}", report.snp.vmpl),
    );

    let want = report.expected_report_data();
    let found = report.snp.report_data;
    result.record(
        "runtime_claims_hash",
        want == found,
        format!("the {} of the runtime claims, then zeros: {}", report.hash, hex::encode(want)),
        hex::encode(found),
    );

    let claims = match RuntimeClaims::parse(&report.claims) {
        Ok(c) => {
            result.record(
                "runtime_claims",
                true,
                "JSON runtime claims with keys and user-data",
                describe_claims(&c),
            );
            c
        }
        Err(e) => {
            result.record(
                "runtime_claims",
                false,
                "JSON runtime claims with keys and user-data",
                e.to_string(),
            );
            for name in ["hcl_attestation_key", "hcl_user_data"] {
                result.record_skipped(name, "the runtime claims cannot be read");
            }
            return (result, Some(VerifiedHcl { report, claims: None, ak: None }));
        }
    };
    let ak = match claims.attestation_key() {
        Ok(ak) => {
            result.record(
                "hcl_attestation_key",
                true,
                "the paravisor's RSA attestation key (HCLAkPub)",
                describe_rsa(&ak),
            );
            Some(ak)
        }
        Err(e) => {
            result.record(
                "hcl_attestation_key",
                false,
                "the paravisor's RSA attestation key (HCLAkPub)",
                e.to_string(),
            );
            None
        }
    };
    match (claims.user_data(), user_data) {
        (Ok(found), Some(want)) => {
            result.record("hcl_user_data", &found == want, hex::encode(want), hex::encode(found));
        }
        (Err(e), Some(want)) => {
            result.record("hcl_user_data", false, hex::encode(want), e.to_string());
        }
        (found, None) => result.record_skipped(
            "hcl_user_data",
            format!(
                "no binding to compare with (the claims' user data is {})",
                found.map_or_else(|e| e.to_string(), hex::encode)
            ),
        ),
    }
    (result, Some(VerifiedHcl { report, claims: Some(claims), ak }))
}

/// Checks a TPM quote (marshalled TPMS_ATTEST) and its signature (a
/// marshalled TPMT_SIGNATURE, or the bare RSA signature as Azure's tools
/// store it) with the paravisor's attestation key, and that its
/// qualifying data is `nonce`. Records `vtpm_quote_format`,
/// `vtpm_quote_signature` and `vtpm_quote_nonce`; returns the quote when
/// all three passed.
pub fn check_quote(
    result: &mut VerificationReport,
    ak: Option<&RsaJwk>,
    quote: &[u8],
    signature: &[u8],
    nonce: &[u8],
) -> Option<Quote> {
    let Some(ak) = ak else {
        for name in ["vtpm_quote_format", "vtpm_quote_signature", "vtpm_quote_nonce"] {
            result.record_skipped(name, "no attestation key from the runtime claims");
        }
        return None;
    };
    let parsed = Quote::parse(quote).and_then(|q| {
        let sig = match Signature::parse(signature) {
            Ok(s) => s,
            Err(_) if signature.len() == ak.modulus.len() => Signature {
                scheme: alg::RSASSA,
                hash: alg::SHA256,
                ecdsa_r: Vec::new(),
                ecdsa_s: Vec::new(),
                rsa: signature.to_vec(),
            },
            Err(e) => return Err(e),
        };
        Ok((q, sig))
    });
    let (parsed, signature) = match parsed {
        Ok(x) => {
            result.record("vtpm_quote_format", true, "TPMS_ATTEST quote and its signature", "parsed");
            x
        }
        Err(e) => {
            result.record("vtpm_quote_format", false, "TPMS_ATTEST quote and its signature", e.to_string());
            for name in ["vtpm_quote_signature", "vtpm_quote_nonce"] {
                result.record_skipped(name, "the quote cannot be parsed");
            }
            return None;
        }
    };
    let signed = ak.to_ak().verify(quote, &signature);
    let signed_ok = signed.is_ok();
    result.record(
        "vtpm_quote_signature",
        signed.is_ok(),
        format!("signed by the paravisor's attestation key ({})", describe_rsa(ak)),
        signed.err().map_or_else(|| "valid".into(), |e| e.to_string()),
    );
    let nonce_ok = parsed.extra_data == nonce;
    result.record("vtpm_quote_nonce", nonce_ok, hex::encode(nonce), hex::encode(&parsed.extra_data));
    (signed_ok && nonce_ok).then_some(parsed)
}

/// Records `hcl_ak_binding`: the attestation key the agent names (a
/// marshalled TPMT_PUBLIC, bound by the agent's user data) is the
/// paravisor's key from the claims. Without it, the agent's quotes could
/// come from any TPM.
pub fn check_ak_matches(
    result: &mut VerificationReport,
    claims_ak: Option<&RsaJwk>,
    ak_public: Option<&[u8]>,
) {
    let expected = claims_ak.map_or_else(
        || "the paravisor's attestation key (none in the claims)".to_owned(),
        |k| format!("the paravisor's attestation key, {}", describe_rsa(k)),
    );
    let Some(bytes) = ak_public else {
        result.record("hcl_ak_binding", false, expected, "the agent names no attestation key");
        return;
    };
    let found = match AkPublic::parse(bytes) {
        Ok(AkPublic { key: KeyParams::Rsa { modulus, exponent }, .. }) => {
            let modulus: Vec<u8> = modulus.iter().copied().skip_while(|&b| b == 0).collect();
            Ok(RsaJwk { modulus, exponent })
        }
        Ok(_) => Err("an ECC key".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match (claims_ak, found) {
        (Some(want), Ok(got)) => {
            result.record("hcl_ak_binding", want == &got, expected, describe_rsa(&got));
        }
        (_, Err(e)) => result.record("hcl_ak_binding", false, expected, e),
        (None, Ok(got)) => result.record("hcl_ak_binding", false, expected, describe_rsa(&got)),
    }
}

fn describe_rsa(k: &RsaJwk) -> String {
    format!(
        "RSA-{} e={} modulus sha256:{}",
        k.modulus.len() * 8,
        k.exponent,
        hex::encode(Sha256::digest(&k.modulus))
    )
}

fn describe_claims(c: &RuntimeClaims) -> String {
    let kids: Vec<&str> = c.keys.iter().map(|k| k.kid.as_str()).collect();
    let mut s = format!("keys [{}]", kids.join(", "));
    if let Some(vm) = &c.vm_configuration {
        let flag = |b: Option<bool>| b.map_or("?", |b| if b { "on" } else { "off" });
        s.push_str(&format!(
            ", secure boot {}, vTPM {}, console {}, VM id {}",
            flag(vm.secure_boot),
            flag(vm.tpm_enabled),
            flag(vm.console_enabled),
            vm.vm_unique_id.as_deref().unwrap_or("?")
        ));
    }
    s
}
