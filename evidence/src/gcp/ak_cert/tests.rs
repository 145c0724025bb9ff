use der::Encode as _;
use time::macros::datetime;

use super::*;
use crate::simulator::gcp::SimulatedAkCa;
use crate::tpm::SimulatedAk;
use crate::Outcome;

const NOW: OffsetDateTime = datetime!(2026-11-30 09:00 UTC);

fn ca() -> &'static SimulatedAkCa {
    static CA: std::sync::OnceLock<SimulatedAkCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| SimulatedAkCa::generate(NOW).unwrap())
}

fn trusting_the_simulated_root() -> AkAnchors {
    let mut anchors = AkAnchors::google().unwrap();
    anchors.trust_additional_root(ca().root().clone());
    anchors.add_intermediate(ca().intermediate().clone());
    anchors
}

fn check(anchors: &AkAnchors, at: OffsetDateTime, cert: Option<&[u8]>, ak: &[u8]) -> VerificationReport {
    let mut r = VerificationReport { product: None, checks: Vec::new() };
    check_ak_certificate(&mut r, anchors, at, true, cert, Some(ak));
    r
}

fn failed(r: &VerificationReport) -> Vec<&'static str> {
    r.failures().map(|c| c.name).collect()
}

#[test]
fn a_simulated_chain_is_accepted_only_when_its_root_is_trusted_explicitly() {
    let ak = SimulatedAk::generate().unwrap().public();
    let cert = ca().certify_der(&ak, NOW).unwrap();

    let accepted = check(&trusting_the_simulated_root(), NOW, Some(&cert), &ak);
    assert!(accepted.accepted(), "{:?}", accepted.checks);
    let chain = accepted.check("vtpm_ak_certificate_chain").unwrap();
    assert!(
        chain.found.contains("CN=EK/AK CA Intermediate") && chain.found.contains("CN=EK/AK CA Root"),
        "{chain}"
    );

    // Against Google's pinned roots alone the same names lead to Google's
    // intermediate, whose key did not sign it.
    let google = AkAnchors::google().unwrap();
    let rejected = check(&google, NOW, Some(&cert), &ak);
    assert_eq!(failed(&rejected), ["vtpm_ak_certificate_chain"]);
    let found = &rejected.check("vtpm_ak_certificate_chain").unwrap().found;
    assert!(found.contains("does not verify"), "{found}");
    assert!(rejected
        .check("vtpm_ak_certificate_chain")
        .unwrap()
        .expected
        .contains(super::super::roots::GOOGLE_AK_ROOT_SHA256));
    // The root trusted but the intermediate not at hand: the certificate's
    // caIssuers URL says where it is.
    let mut root_only = AkAnchors::google().unwrap();
    root_only.trust_additional_root(ca().root().clone());
    let rejected = check(&root_only, NOW, Some(&cert), &ak);
    assert_eq!(failed(&rejected), ["vtpm_ak_certificate_chain"]);
    let found = &rejected.check("vtpm_ak_certificate_chain").unwrap().found;
    assert!(
        found.contains(crate::simulator::gcp::SIMULATED_CA_ISSUERS_URL)
            && found.contains("--ak-intermediate"),
        "{found}"
    );
    // Offering the simulated intermediate widens nothing: its root is not trusted.
    let mut offered = AkAnchors::google().unwrap();
    offered.add_intermediate(ca().intermediate().clone());
    let rejected = check(&offered, NOW, Some(&cert), &ak);
    assert_eq!(failed(&rejected), ["vtpm_ak_certificate_chain"]);
}

#[test]
fn a_certificate_of_another_key_than_the_quotes_is_rejected() {
    let ak = SimulatedAk::generate().unwrap().public();
    let other = SimulatedAk::generate().unwrap().public();
    let cert = ca().certify_der(&other, NOW).unwrap();
    let r = check(&trusting_the_simulated_root(), NOW, Some(&cert), &ak);
    assert_eq!(failed(&r), ["vtpm_ak_certificate_key"]);
    assert!(r.check("vtpm_ak_certificate_key").unwrap().found.contains("the AK is SPKI sha256:"));
}

#[test]
fn expiry_garbage_and_absence_are_named() {
    let ak = SimulatedAk::generate().unwrap().public();
    let old = ca()
        .certify(&ak, datetime!(2020-01-01 00:00 UTC), datetime!(2021-01-01 00:00 UTC))
        .unwrap()
        .to_der()
        .unwrap();
    let r = check(&trusting_the_simulated_root(), NOW, Some(&old), &ak);
    assert_eq!(failed(&r), ["vtpm_ak_certificate_validity"]);

    let r = check(&trusting_the_simulated_root(), NOW, Some(b"not a certificate"), &ak);
    assert_eq!(failed(&r), ["vtpm_ak_certificate"]);
    assert_eq!(r.checks.len(), 4);

    let r = check(&trusting_the_simulated_root(), NOW, None, &ak);
    assert_eq!(failed(&r), ["vtpm_ak_certificate"]);
    let mut r = VerificationReport { product: None, checks: Vec::new() };
    check_ak_certificate(&mut r, &AkAnchors::google().unwrap(), NOW, false, None, Some(&ak));
    assert!(r.accepted());
    assert!(r.checks.iter().all(|c| matches!(c.outcome, Outcome::Skipped { .. })));
}
