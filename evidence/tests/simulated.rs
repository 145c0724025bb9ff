//! Simulated evidence: it passes the same verifier as real evidence, and each
//! policy rule rejects what it should. One fixture, one change per test.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::sync::OnceLock;

use cvm_evidence::certs::{CertChain, TrustAnchors};
use cvm_evidence::policy::AcceptedKey;
use cvm_evidence::report::{
    GuestPolicy, KeyInfo, PlatformInfo, ReportBody, SigningKey, TcbParts, TcbVersion,
};
use cvm_evidence::simulator::{ChainParams, SimulatedChain};
use cvm_evidence::{AttestationReport, HexBytes, Outcome, Policy, Product, VerificationReport, Verifier};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// One simulated chain per product and test binary: RSA-4096 key generation is slow.
fn chain_for(product: Product) -> &'static SimulatedChain {
    static CHAINS: [OnceLock<SimulatedChain>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = Product::ALL.iter().position(|p| *p == product).unwrap_or(0);
    CHAINS[i]
        .get_or_init(|| SimulatedChain::generate(ChainParams::new(product, NOW)).expect("simulated chain"))
}

fn chain() -> &'static SimulatedChain {
    chain_for(Product::Milan)
}

fn anchors_for(chain: &SimulatedChain) -> TrustAnchors {
    let mut anchors = TrustAnchors::amd();
    anchors.trust_additional_ark(chain.ark().clone()).expect("simulated ARK names its product");
    anchors
}

fn cert_chain(chain: &SimulatedChain) -> CertChain {
    CertChain {
        ark: Some(chain.ark().clone()),
        intermediate: Some(chain.ask().clone()),
        vek: chain.vek().clone(),
    }
}

const MEASUREMENT: [u8; 48] = [0x11; 48];
const REPORT_DATA: [u8; 64] = [0x22; 64];
const HOST_DATA: [u8; 32] = [0x33; 32];

fn good_body() -> ReportBody {
    let mut body = chain().report_template();
    body.measurement = MEASUREMENT;
    body.report_data = REPORT_DATA;
    body.host_data = HOST_DATA;
    body
}

fn strict_policy() -> Policy {
    Policy {
        measurements: vec![HexBytes(MEASUREMENT)],
        min_tcb: Some(chain().params().tcb),
        min_guest_svn: Some(0),
        vmpl: Some(0),
        host_data: Some(HexBytes(HOST_DATA)),
        report_data: Some(HexBytes(REPORT_DATA)),
        signing_keys: vec![AcceptedKey::Vcek],
        ..Policy::default()
    }
}

fn check_with(
    chain: &SimulatedChain,
    body: &ReportBody,
    policy: &Policy,
    at: OffsetDateTime,
) -> VerificationReport {
    let report = chain.sign(body).expect("sign");
    Verifier::new(&anchors_for(chain), policy, at).check(&report, &cert_chain(chain))
}

fn check(body: &ReportBody, policy: &Policy) -> VerificationReport {
    check_with(chain(), body, policy, NOW)
}

/// Asserts the only failures are `names`, and returns the first failure's text.
#[track_caller]
fn assert_fails_only(result: &VerificationReport, names: &[&str]) -> String {
    let failed: Vec<&str> = result.failures().map(|c| c.name).collect();
    assert_eq!(failed, names, "{:#?}", result.checks);
    assert!(!result.accepted());
    result.failures().next().map(ToString::to_string).unwrap_or_default()
}

#[test]
fn verify_succeeds_with_a_simulated_report_and_a_strict_policy() {
    let result = check(&good_body(), &strict_policy());
    assert!(result.accepted(), "{:#?}", result.checks);
    assert_eq!(result.product, Some(Product::Milan));
    for name in ["ark_pinned", "report_signature", "hw_id", "tcb_extensions", "measurement", "report_data"] {
        assert_eq!(result.check(name).map(|c| &c.outcome), Some(&Outcome::Passed), "{name}");
    }
}

#[test]
fn verify_succeeds_for_every_product_and_report_version() {
    for product in Product::ALL {
        let chain = chain_for(product);
        for version in [2, 3, 5] {
            let mut body = chain.report_template();
            body.version = version;
            body.cpuid = if version >= 3 { body.cpuid } else { None };
            body.launch_mit_vector = (version >= 5).then_some(1);
            body.current_mit_vector = (version >= 5).then_some(1);
            if version == 2 && product == Product::Turin {
                continue; // Turin firmware makes version 3 and later only.
            }
            let result = check_with(chain, &body, &Policy::default(), NOW);
            assert!(result.accepted(), "{product} v{version}: {:#?}", result.failures().collect::<Vec<_>>());
        }
    }
}

#[test]
fn simulated_ark_is_not_trusted_unless_added() {
    let report = chain().sign(&good_body()).unwrap();
    let policy = Policy::default();
    let result = Verifier::new(&TrustAnchors::amd(), &policy, NOW).check(&report, &cert_chain(chain()));
    let msg = assert_fails_only(&result, &["ark_pinned"]);
    assert!(msg.contains("expected Milan ARK with SHA-256 69d063b4"), "{msg}");
}

#[test]
fn verify_fails_with_debug_on() {
    let mut body = good_body();
    body.policy = GuestPolicy(body.policy.0 | GuestPolicy::DEBUG);
    let msg = assert_fails_only(&check(&body, &strict_policy()), &["debug"]);
    assert_eq!(msg, "debug: expected debug off, found debug allowed by the guest policy");
    let allowing = Policy { allow_debug: true, ..strict_policy() };
    assert!(check(&body, &allowing).accepted());
}

#[test]
fn verify_fails_with_a_migration_agent_allowed() {
    let mut body = good_body();
    body.policy = GuestPolicy(body.policy.0 | GuestPolicy::MIGRATE_MA);
    assert_fails_only(&check(&body, &strict_policy()), &["migration_agent"]);
}

#[test]
fn verify_fails_with_smt_when_the_policy_forbids_it() {
    let mut body = good_body();
    body.platform_info = PlatformInfo(1);
    let policy = Policy { allow_smt: false, ..strict_policy() };
    assert_fails_only(&check(&body, &policy), &["smt"]);
    body.platform_info = PlatformInfo(0);
    assert!(check(&body, &policy).accepted());
}

#[test]
fn verify_fails_with_tcb_below_minimum() {
    let mut min = chain().params().tcb;
    min.snp += 1;
    min.microcode = min.microcode.saturating_add(1);
    let policy = Policy { min_tcb: Some(min), ..strict_policy() };
    let msg = assert_fails_only(&check(&good_body(), &policy), &["min_tcb"]);
    assert!(msg.contains("snp 8 < 9") && msg.contains("microcode 115 < 116"), "{msg}");
}

#[test]
fn verify_fails_with_wrong_vmpl() {
    let mut body = good_body();
    body.vmpl = 2;
    let msg = assert_fails_only(&check(&body, &strict_policy()), &["vmpl"]);
    assert_eq!(msg, "vmpl: expected 0, found 2");
}

#[test]
fn verify_fails_with_wrong_measurement() {
    let mut body = good_body();
    body.measurement[47] ^= 1;
    let msg = assert_fails_only(&check(&body, &strict_policy()), &["measurement"]);
    assert!(
        msg.starts_with(&format!(
            "measurement: expected {}, found {}",
            hex::encode(MEASUREMENT),
            hex::encode(body.measurement)
        )),
        "{msg}"
    );
}

#[test]
fn verify_fails_with_wrong_report_data_and_host_data() {
    let mut body = good_body();
    body.report_data[0] ^= 1;
    assert_fails_only(&check(&body, &strict_policy()), &["report_data"]);
    let mut body = good_body();
    body.host_data[31] ^= 1;
    assert_fails_only(&check(&body, &strict_policy()), &["host_data"]);
}

#[test]
fn verify_fails_with_unlisted_id_or_author_key_digest() {
    let mut body = good_body();
    body.id_key_digest = [0x44; 48];
    body.author_key_digest = [0x55; 48];
    let policy = Policy {
        id_key_digests: vec![HexBytes([0x45; 48])],
        author_key_digests: vec![HexBytes([0x55; 48])],
        ..strict_policy()
    };
    assert_fails_only(&check(&body, &policy), &["id_key_digest"]);
}

#[test]
fn verify_fails_with_guest_svn_below_minimum() {
    let policy = Policy { min_guest_svn: Some(3), ..strict_policy() };
    let mut body = good_body();
    body.guest_svn = 2;
    assert_fails_only(&check(&body, &policy), &["guest_svn"]);
    body.guest_svn = 3;
    assert!(check(&body, &policy).accepted());
}

#[test]
fn verify_fails_with_hw_id_mismatch() {
    let mut body = good_body();
    body.chip_id[0] ^= 0xff;
    let msg = assert_fails_only(&check(&body, &strict_policy()), &["hw_id"]);
    assert!(msg.starts_with("hw_id: expected "), "{msg}");
}

#[test]
fn verify_fails_with_tcb_extension_mismatch() {
    let mut body = good_body();
    let mut tcb = chain().params().tcb;
    tcb.bootloader += 1;
    body.reported_tcb = TcbVersion::from_parts(tcb, Product::Milan);
    let msg = assert_fails_only(&check(&body, &strict_policy()), &["tcb_extensions"]);
    assert!(msg.contains("bootloader=4"), "{msg}");
}

#[test]
fn verify_fails_with_expired_or_not_yet_valid_vcek() {
    let mut params = chain().params().clone();
    params.vek_not_before = NOW - Duration::days(30);
    params.vek_not_after = NOW - Duration::days(1);
    let expired = chain().reissue(params.clone()).unwrap();
    let msg = assert_fails_only(
        &check_with(&expired, &expired.report_template(), &Policy::default(), NOW),
        &["vek_validity"],
    );
    assert!(msg.contains("expired at 2026-05-31"), "{msg}");

    params.vek_not_before = NOW + Duration::days(1);
    params.vek_not_after = NOW + Duration::days(300);
    let future = chain().reissue(params).unwrap();
    let msg = assert_fails_only(
        &check_with(&future, &future.report_template(), &Policy::default(), NOW),
        &["vek_validity"],
    );
    assert!(msg.contains("not valid before 2026-06-02"), "{msg}");
}

#[test]
fn verify_fails_when_the_time_is_outside_the_chain_validity() {
    let long_ago = NOW - Duration::days(3650);
    let result = check_with(chain(), &good_body(), &Policy::default(), long_ago);
    let failed: Vec<&str> = result.failures().map(|c| c.name).collect();
    assert!(failed.contains(&"ark_validity") && failed.contains(&"vek_validity"), "{failed:?}");
}

#[test]
fn verify_fails_with_a_vlek_report_and_a_vcek() {
    let mut body = good_body();
    body.key_info = KeyInfo::new(false, false, SigningKey::Vlek);
    let msg = assert_fails_only(&check(&body, &Policy::default()), &["signing_key"]);
    assert_eq!(
        msg,
        "signing_key: expected VCEK (the certificate given), found VLEK (key_info of the report)"
    );
}

#[test]
fn vlek_chain_verifies_and_policy_can_refuse_vleks() {
    let mut params = chain().params().clone();
    params.signing_key = SigningKey::Vlek;
    let vlek = SimulatedChain::generate(params).unwrap();
    let body = vlek.report_template();
    let result = check_with(&vlek, &body, &Policy::default(), NOW);
    assert!(result.accepted(), "{:#?}", result.failures().collect::<Vec<_>>());
    assert!(matches!(result.check("hw_id").map(|c| &c.outcome), Some(Outcome::Skipped { .. })));
    let vcek_only = Policy { signing_keys: vec![AcceptedKey::Vcek], ..Policy::default() };
    assert_fails_only(&check_with(&vlek, &body, &vcek_only, NOW), &["signing_key_allowed"]);
}

#[test]
fn verify_fails_with_a_report_signed_by_another_chip() {
    let other = chain().reissue(chain().params().clone()).unwrap();
    let report = other.sign(&good_body()).unwrap();
    let result =
        Verifier::new(&anchors_for(chain()), &strict_policy(), NOW).check(&report, &cert_chain(chain()));
    assert_fails_only(&result, &["report_signature"]);
}

#[test]
fn verify_fails_after_any_byte_flip_of_a_simulated_report() {
    let report = chain().sign(&good_body()).unwrap();
    let anchors = anchors_for(chain());
    let policy = Policy::default();
    let verifier = Verifier::new(&anchors, &policy, NOW);
    let certs = cert_chain(chain());
    for i in (0..0x2a0).step_by(7) {
        let mut raw = report.raw().to_vec();
        raw[i] ^= 0x40;
        if let Ok(bad) = AttestationReport::from_bytes(&raw) {
            assert!(!verifier.check(&bad, &certs).accepted(), "flip at {i:#x} accepted");
        }
    }
}

#[test]
fn turin_tcb_with_fmc_is_checked() {
    let mut params = chain_for(Product::Turin).params().clone();
    params.tcb = TcbParts { bootloader: 1, tee: 2, snp: 3, microcode: 4, fmc: Some(5) };
    let turin = chain_for(Product::Turin).reissue(params).unwrap();
    let mut min = turin.params().tcb;
    let body = turin.report_template();
    assert!(check_with(&turin, &body, &Policy { min_tcb: Some(min), ..Policy::default() }, NOW).accepted());
    min.fmc = Some(6);
    let result = check_with(&turin, &body, &Policy { min_tcb: Some(min), ..Policy::default() }, NOW);
    let msg = assert_fails_only(&result, &["min_tcb"]);
    assert!(msg.contains("fmc 5 < 6"), "{msg}");
}

/// Red team: a guest at VMPL 2 writes "runtime claims" of its own (its own
/// attestation key and user data) and gets a VMPL-2 report over their hash.
/// A policy that pins `vmpl: 2` and names no platform must still refuse it
/// as Azure evidence: only the paravisor, at VMPL 0, writes the claims.
#[test]
fn an_hcl_report_from_vmpl_2_is_refused_whatever_vmpl_the_policy_pins() {
    use cvm_evidence::azure::claims::RsaJwk;
    use cvm_evidence::azure::{check_hcl_report, ClaimsHash, HclReport, RuntimeClaims};
    use cvm_evidence::certs::{CertChain, TrustAnchors};
    use cvm_evidence::simulator::{ChainParams, SimulatedChain};
    use cvm_evidence::{Policy, Product, Verifier};

    let now = time::macros::datetime!(2026-06-01 00:00 UTC);
    let measurement = [0x11; 48];
    let chain = SimulatedChain::generate(ChainParams::new(Product::Milan, now)).unwrap();
    let mut anchors = TrustAnchors::amd();
    anchors.trust_additional_ark(chain.ark().clone()).unwrap();
    let certs = CertChain {
        ark: Some(chain.ark().clone()),
        intermediate: Some(chain.ask().clone()),
        vek: chain.vek().clone(),
    };
    let want = [0x42u8; 64];
    let claims =
        RuntimeClaims::encode(&RsaJwk { modulus: vec![0xC5; 256], exponent: 65537 }, &want, "forged");
    let mut body = chain.report_template();
    body.measurement = measurement;
    body.report_data = HclReport::report_data_for(&claims, ClaimsHash::Sha256);
    let pinned = |vmpl: &str| {
        let json = format!(r#"{{"measurements": ["{}"]{vmpl}}}"#, hex::encode(measurement));
        Policy::from_json(&json).unwrap()
    };
    for (vmpl, policy, accepted) in [(0, pinned(""), true), (2, pinned(r#", "vmpl": 2"#), false)] {
        body.vmpl = vmpl;
        let hcl = HclReport::encode(chain.sign(&body).unwrap().raw(), &claims, ClaimsHash::Sha256);
        let (result, _) = check_hcl_report(&Verifier::new(&anchors, &policy, now), &hcl, &certs, Some(&want));
        let failed: Vec<&str> = result.failures().map(|c| c.name).collect();
        if accepted {
            assert_eq!(failed, Vec::<&str>::new(), "the paravisor's VMPL 0");
        } else {
            assert_eq!(failed, ["hcl_vmpl"], "a report of VMPL {vmpl}");
        }
    }
}
