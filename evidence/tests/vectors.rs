//! The real AMD-signed reports in testdata/amd verify with the built-in roots,
//! and stop verifying after any change.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use cvm_evidence::certs::{parse_certificate, CertChain, TrustAnchors};
use cvm_evidence::{AttestationReport, Outcome, Policy, Verifier};
use time::macros::datetime;
use time::OffsetDateTime;

const AT: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

fn read(vector: &str, file: &str) -> Vec<u8> {
    let path = format!("{}/testdata/amd/{vector}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn vek_only(vector: &str, file: &str) -> CertChain {
    CertChain { ark: None, intermediate: None, vek: parse_certificate(&read(vector, file), file).unwrap() }
}

fn verify(report: &[u8], chain: &CertChain, at: OffsetDateTime) -> Result<(), String> {
    let report = AttestationReport::from_bytes(report).map_err(|e| e.to_string())?;
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    Verifier::new(&anchors, &policy, at).verify(&report, chain).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn verify_succeeds_with_every_real_vcek_vector_and_builtin_roots() {
    for v in ["milan-virtee", "milan-trustee", "genoa-oak-v5"] {
        verify(&read(v, "report.bin"), &vek_only(v, "vcek.der"), AT).unwrap_or_else(|e| panic!("{v}: {e}"));
    }
}

#[test]
fn verify_succeeds_with_the_supplied_ark_and_ask() {
    let v = "milan-virtee";
    let chain = CertChain {
        ark: Some(parse_certificate(&read(v, "ark.pem"), "ark.pem").unwrap()),
        intermediate: Some(parse_certificate(&read(v, "ask.pem"), "ask.pem").unwrap()),
        vek: parse_certificate(&read(v, "vcek.der"), "vcek.der").unwrap(),
    };
    verify(&read(v, "report.bin"), &chain, AT).unwrap();
}

#[test]
fn vlek_vector_verifies_inside_its_validity_and_not_after() {
    let v = "milan-vlek-trustee";
    let chain = vek_only(v, "vlek.der");
    verify(&read(v, "report.bin"), &chain, datetime!(2025-06-01 00:00 UTC)).unwrap();
    let err = verify(&read(v, "report.bin"), &chain, AT).unwrap_err();
    assert!(err.contains("vek_validity") && err.contains("expired at 2025-12-10"), "{err}");
}

#[test]
fn verify_fails_after_any_single_byte_flip_in_the_signed_range() {
    let v = "milan-virtee";
    let good = read(v, "report.bin");
    let chain = vek_only(v, "vcek.der");
    let report_anchor = AttestationReport::from_bytes(&good).unwrap();
    assert_eq!(report_anchor.signed_bytes().len(), 0x2a0);
    for i in 0..0x2a0 {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(verify(&bad, &chain, AT).is_err(), "flip of byte {i:#x} was accepted");
    }
}

#[test]
fn verify_fails_after_a_flip_in_the_signature() {
    let v = "milan-virtee";
    let good = read(v, "report.bin");
    let chain = vek_only(v, "vcek.der");
    for i in [0x2a0, 0x2a0 + 47, 0x2a0 + 48, 0x2a0 + 72, 0x2a0 + 143, 0x2a0 + 144, 1183] {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        assert!(verify(&bad, &chain, AT).is_err(), "flip of byte {i:#x} was accepted");
    }
}

#[test]
fn verify_fails_with_another_vcek() {
    let report = read("milan-virtee", "report.bin");
    let chain = vek_only("milan-trustee", "vcek.der");
    let err = verify(&report, &chain, AT).unwrap_err();
    assert!(err.contains("report_signature") || err.contains("hw_id"), "{err}");
    let r = AttestationReport::from_bytes(&report).unwrap();
    let (anchors, policy) = (TrustAnchors::amd(), Policy::default());
    let checks = Verifier::new(&anchors, &policy, AT).check(&r, &chain);
    assert_eq!(checks.check("report_signature").unwrap().outcome, Outcome::Failed);
    assert_eq!(checks.check("hw_id").unwrap().outcome, Outcome::Failed);
}

#[test]
fn verify_fails_with_a_genoa_root_for_a_milan_report() {
    let v = "milan-virtee";
    let genoa_ark = parse_certificate(&read("genoa-oak-v5", "ark.pem"), "ark.pem").unwrap();
    let chain = CertChain { ark: Some(genoa_ark), ..vek_only(v, "vcek.der") };
    let err = verify(&read(v, "report.bin"), &chain, AT).unwrap_err();
    assert!(err.contains("ark_pinned: expected Milan ARK with SHA-256 69d063b4"), "{err}");
    assert!(err.contains("CN=ARK-Genoa"), "{err}");
}

#[test]
fn verify_fails_with_a_genoa_ask_for_a_milan_report() {
    let v = "milan-virtee";
    let genoa_ask = parse_certificate(&read("genoa-oak-v5", "ask.pem"), "ask.pem").unwrap();
    let chain = CertChain { intermediate: Some(genoa_ask), ..vek_only(v, "vcek.der") };
    let err = verify(&read(v, "report.bin"), &chain, AT).unwrap_err();
    assert!(err.contains("intermediate_signed_by_ark"), "{err}");
}

#[test]
fn verify_fails_when_the_vcek_is_not_yet_valid() {
    let v = "milan-virtee";
    let err = verify(&read(v, "report.bin"), &vek_only(v, "vcek.der"), datetime!(2023-01-01 00:00 UTC))
        .unwrap_err();
    assert!(err.contains("vek_validity: expected valid from 2023-04-03T19:23:43Z"), "{err}");
    assert!(err.contains("not valid before"), "{err}");
}
