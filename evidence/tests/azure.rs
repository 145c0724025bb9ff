//! The Azure flavour against a real vector: an HCL report from a DCasv5 VM,
//! its VCEK and a TPM quote by the paravisor's attestation key.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use cvm_evidence::azure::{check_ak_matches, check_hcl_report, check_quote, hcl, HclReport};
use cvm_evidence::certs::{parse_certificate, CertChain, TrustAnchors};
use cvm_evidence::policy::Platform;
use cvm_evidence::{Outcome, Policy, VerificationReport, Verifier};
use time::macros::datetime;
use time::OffsetDateTime;

const HCL: &[u8] = include_bytes!("../testdata/azure/hcl-report.bin");
const VCEK: &[u8] = include_bytes!("../testdata/azure/vcek.der");
const QUOTE: &[u8] = include_bytes!("../testdata/azure/quote.msg");
const SIG: &[u8] = include_bytes!("../testdata/azure/quote.sig");
const HCL_2: &[u8] = include_bytes!("../testdata/azure/hcl-report-2.bin");
const VCEK_2: &[u8] = include_bytes!("../testdata/azure/vcek-2.pem");
const NOW: OffsetDateTime = datetime!(2026-11-30 00:00 UTC);

fn chain() -> CertChain {
    CertChain { ark: None, intermediate: None, vek: parse_certificate(VCEK, "vcek.der").unwrap() }
}

/// The quote's qualifying data: the first 48 bytes of the claims' user data.
fn nonce() -> Vec<u8> {
    QUOTE[44..92].to_vec()
}

fn check(policy: &Policy, hcl: &[u8], quote: &[u8], sig: &[u8]) -> VerificationReport {
    let anchors = TrustAnchors::amd();
    let verifier = Verifier::new(&anchors, policy, NOW);
    let (mut result, verified) = check_hcl_report(&verifier, hcl, &chain(), None);
    let ak = verified.as_ref().and_then(|v| v.ak.as_ref());
    check_quote(&mut result, ak, quote, sig, &nonce());
    result
}

fn failed(result: &VerificationReport) -> Vec<&'static str> {
    result.failures().map(|c| c.name).collect()
}

#[test]
fn the_real_azure_vector_verifies_with_the_default_policy() {
    let result = check(&Policy::default(), HCL, QUOTE, SIG);
    assert!(result.accepted(), "{:#?}", failed(&result));
    for name in [
        "hcl_format",
        "ark_pinned",
        "vek_signed_by_intermediate",
        "report_signature",
        "vmpl",
        "runtime_claims_hash",
        "runtime_claims",
        "hcl_attestation_key",
        "vtpm_quote_format",
        "vtpm_quote_signature",
        "vtpm_quote_nonce",
    ] {
        assert_eq!(result.check(name).unwrap().outcome, Outcome::Passed, "{name}");
    }
    assert_eq!(result.check("vmpl").unwrap().expected, "0");
    assert!(matches!(result.check("platform").unwrap().outcome, Outcome::Skipped { .. }));
    assert!(matches!(result.check("hcl_user_data").unwrap().outcome, Outcome::Skipped { .. }));
    assert_eq!(result.product, Some(cvm_evidence::Product::Milan));
}

#[test]
fn the_other_real_report_verifies_with_its_chain() {
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let mut certs = Vec::new();
    for block in String::from_utf8(VCEK_2.to_vec()).unwrap().split_inclusive("-----END CERTIFICATE-----\n") {
        if block.contains("BEGIN") {
            certs.push(parse_certificate(block.trim_start().as_bytes(), "vcek-2.pem").unwrap());
        }
    }
    let chain = CertChain {
        vek: certs[0].clone(),
        intermediate: Some(certs[1].clone()),
        ark: Some(certs[2].clone()),
    };
    let (result, _) = check_hcl_report(&Verifier::new(&anchors, &policy, NOW), HCL_2, &chain, None);
    assert!(result.accepted(), "{:#?}", failed(&result));
}

#[test]
fn the_user_data_is_compared_with_the_binding() {
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let verifier = Verifier::new(&anchors, &policy, NOW);
    let mut want = [0u8; 64];
    want[..48].copy_from_slice(&nonce());
    let (result, _) = check_hcl_report(&verifier, HCL, &chain(), Some(&want));
    assert_eq!(result.check("hcl_user_data").unwrap().outcome, Outcome::Passed);
    want[63] = 1;
    let (result, _) = check_hcl_report(&verifier, HCL, &chain(), Some(&want));
    assert_eq!(failed(&result), ["hcl_user_data"]);
}

#[test]
fn a_policy_for_another_flavour_refuses_it() {
    for (platform, ok) in [(Platform::Azure, true), (Platform::SevSnp, false), (Platform::Gcp, false)] {
        let policy = Policy { platform: Some(platform), ..Policy::default() };
        let result = check(&policy, HCL, QUOTE, SIG);
        assert_eq!(result.accepted(), ok, "{platform}");
        assert_eq!(result.check("platform").unwrap().outcome == Outcome::Passed, ok);
    }
}

#[test]
fn a_policy_pinning_another_vmpl_refuses_it() {
    let policy = Policy { vmpl: Some(2), ..Policy::default() };
    assert_eq!(failed(&check(&policy, HCL, QUOTE, SIG)), ["vmpl"]);
}

#[test]
fn every_flipped_byte_of_the_signed_snp_part_is_caught() {
    // [0x20, 0x20 + 0x2A0): the bytes the VCEK signed.
    for i in (hcl::SNP_OFFSET..hcl::SNP_OFFSET + 0x2a0).step_by(7) {
        let mut bad = HCL.to_vec();
        bad[i] ^= 0x01;
        let result = check(&Policy::default(), &bad, QUOTE, SIG);
        let names = failed(&result);
        assert!(
            names.contains(&"report_signature") || names.contains(&"hcl_format"),
            "byte {i:#x}: {names:?}"
        );
    }
}

#[test]
fn every_flipped_byte_of_the_runtime_claims_is_caught() {
    let report = HclReport::parse(HCL).unwrap();
    for i in (hcl::CLAIMS_OFFSET..hcl::CLAIMS_OFFSET + report.claims.len()).step_by(3) {
        let mut bad = HCL.to_vec();
        bad[i] ^= 0x01;
        let names = failed(&check(&Policy::default(), &bad, QUOTE, SIG));
        assert!(names.contains(&"runtime_claims_hash"), "byte {i:#x}: {names:?}");
    }
}

#[test]
fn a_changed_claims_header_is_caught() {
    for (offset, value, check_name) in [
        (hcl::CLAIMS_HEADER_OFFSET + 12, 2u32, "runtime_claims_hash"), // SHA-384 instead of SHA-256
        (hcl::CLAIMS_HEADER_OFFSET + 12, 9, "hcl_format"),             // no such hash
        (hcl::CLAIMS_HEADER_OFFSET + 8, 4, "hcl_format"),              // TDX
        (hcl::CLAIMS_HEADER_OFFSET + 16, 1109, "hcl_format"),          // claims one byte shorter
        (0, 0x414c_4349, "hcl_format"),                                // "ICLA"
    ] {
        let mut bad = HCL.to_vec();
        bad[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        let names = failed(&check(&Policy::default(), &bad, QUOTE, SIG));
        assert!(names.contains(&check_name), "{offset:#x}={value}: {names:?}");
    }
}

#[test]
fn every_flipped_byte_of_the_quote_is_caught() {
    for i in 0..QUOTE.len() {
        let mut bad = QUOTE.to_vec();
        bad[i] ^= 0x01;
        let result = check(&Policy::default(), HCL, &bad, SIG);
        let names = failed(&result);
        assert!(
            names.contains(&"vtpm_quote_signature") || names.contains(&"vtpm_quote_format"),
            "byte {i}: {names:?}"
        );
    }
    let mut bad = SIG.to_vec();
    bad[100] ^= 0x01;
    assert_eq!(failed(&check(&Policy::default(), HCL, QUOTE, &bad)), ["vtpm_quote_signature"]);
}

#[test]
fn a_quote_checked_against_the_wrong_key_fails() {
    // The other real report's attestation key did not sign this quote.
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let verifier = Verifier::new(&anchors, &policy, NOW);
    let (_, other) = check_hcl_report(&verifier, HCL_2, &chain(), None);
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    assert!(check_quote(&mut result, other.unwrap().ak.as_ref(), QUOTE, SIG, &nonce()).is_none());
    assert_eq!(failed(&result), ["vtpm_quote_signature"]);
}

#[test]
fn a_quote_over_another_nonce_fails() {
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let (_, v) = check_hcl_report(&Verifier::new(&anchors, &policy, NOW), HCL, &chain(), None);
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let mut other = nonce();
    other[0] ^= 1;
    assert!(check_quote(&mut result, v.unwrap().ak.as_ref(), QUOTE, SIG, &other).is_none());
    assert_eq!(failed(&result), ["vtpm_quote_nonce"]);
}

#[test]
fn an_attestation_key_the_agent_names_must_be_the_paravisors() {
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let (_, v) = check_hcl_report(&Verifier::new(&anchors, &policy, NOW), HCL, &chain(), None);
    let ak = v.unwrap().ak.unwrap();
    // The paravisor's key as a TPM would describe it: RSA-2048, RSASSA/SHA-256.
    let tpmt = |modulus: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&0x0001u16.to_be_bytes()); // RSA
        out.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
        out.extend_from_slice(&0x0005_0072u32.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&0x0010u16.to_be_bytes()); // no symmetric
        out.extend_from_slice(&0x0014u16.to_be_bytes()); // RSASSA
        out.extend_from_slice(&0x000bu16.to_be_bytes());
        out.extend_from_slice(&2048u16.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(modulus.len() as u16).to_be_bytes());
        out.extend_from_slice(modulus);
        out
    };
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    check_ak_matches(&mut result, Some(&ak), Some(&tpmt(&ak.modulus)));
    let mut other = ak.modulus.clone();
    other[5] ^= 1;
    check_ak_matches(&mut result, Some(&ak), Some(&tpmt(&other)));
    check_ak_matches(&mut result, Some(&ak), None);
    let outcomes: Vec<Outcome> = result.checks.iter().map(|c| c.outcome.clone()).collect();
    assert_eq!(outcomes, [Outcome::Passed, Outcome::Failed, Outcome::Failed]);
}

#[test]
fn truncated_or_oversized_reports_are_refused_before_reading() {
    for n in [0, 4, hcl::CLAIMS_OFFSET - 1] {
        assert!(HclReport::parse(&HCL[..n]).is_err(), "{n}");
    }
    let mut huge = HCL.to_vec();
    huge.resize(hcl::MAX_LEN + 1, 0);
    assert!(HclReport::parse(&huge).is_err());
    // A claims size past the end is refused, not read.
    let mut bad = HCL.to_vec();
    bad[hcl::CLAIMS_HEADER_OFFSET + 16..hcl::CLAIMS_HEADER_OFFSET + 20]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    let err = HclReport::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("claims size"), "{err}");
}
