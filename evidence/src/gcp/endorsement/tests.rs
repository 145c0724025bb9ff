use time::macros::datetime;

use super::*;
use crate::simulator::gcp::SimulatedEndorser;

const NOW: OffsetDateTime = datetime!(2026-11-30 09:00 UTC);
const M4: [u8; 48] = [0x44; 48];
const M8: [u8; 48] = [0x88; 48];

fn endorser() -> &'static SimulatedEndorser {
    static E: std::sync::OnceLock<SimulatedEndorser> = std::sync::OnceLock::new();
    E.get_or_init(|| SimulatedEndorser::generate(NOW).unwrap())
}

fn golden() -> GoldenMeasurement {
    GoldenMeasurement {
        timestamp: Some((1_764_000_000, 5)),
        cl_spec: 123_456,
        commit: b"0123abcd".to_vec(),
        digest: vec![0xd1; 48],
        sev_snp: Some(SevSnpGolden {
            svn: 3,
            measurements: [(4, M4), (8, M8)].into_iter().collect(),
            family_id: vec![1; 16],
            image_id: vec![2; 16],
            policy: 0x30000,
            ca_bundle: Vec::new(),
        }),
        ..GoldenMeasurement::default()
    }
}

fn check(bytes: &[u8], measurement: &[u8; 48], vcpus: u32) -> VerificationReport {
    let mut r = VerificationReport { product: None, checks: Vec::new() };
    check_launch_endorsement(&mut r, bytes, endorser().root(), NOW, measurement, vcpus);
    r
}

fn failed(r: &VerificationReport) -> Vec<&'static str> {
    r.failures().map(|c| c.name).collect()
}

#[test]
fn the_encoding_parses_back_to_itself() {
    let g = golden();
    assert_eq!(GoldenMeasurement::parse(&g.encode()).unwrap(), g);
    let e = LaunchEndorsement::parse(&LaunchEndorsement::encode(&g.encode(), b"sig")).unwrap();
    assert_eq!((e.golden, e.signature), (g, b"sig".to_vec()));
}

#[test]
fn a_simulated_endorsement_of_the_measurement_for_its_vcpu_count_is_accepted() {
    let bytes = endorser().endorse(&golden()).unwrap();
    let r = check(&bytes, &M4, 4);
    assert!(r.accepted(), "{:?}", r.checks);
    let names: Vec<&str> = r.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "gce_endorsement_format",
            "gce_endorsement_signer",
            "gce_endorsement_signature",
            "gce_endorsement_measurement"
        ]
    );
    assert!(r.check("gce_endorsement_measurement").unwrap().found.contains("SVN 3"));
    assert!(check(&bytes, &M8, 8).accepted());
}

#[test]
fn another_measurement_or_vcpu_count_is_rejected() {
    let bytes = endorser().endorse(&golden()).unwrap();
    let r = check(&bytes, &[0x55; 48], 4);
    assert_eq!(failed(&r), ["gce_endorsement_measurement"]);
    // The report's measurement is endorsed, but for 8 vCPUs, not for the 4 this VM has.
    let r = check(&bytes, &M8, 4);
    assert_eq!(failed(&r), ["gce_endorsement_measurement"]);
    assert!(r.check("gce_endorsement_measurement").unwrap().found.contains("for 4 vCPUs"));
    let r = check(&bytes, &M4, 16);
    assert_eq!(failed(&r), ["gce_endorsement_measurement"]);
    assert!(
        r.check("gce_endorsement_measurement").unwrap().found.contains("it lists 4, 8 vCPUs"),
        "{:?}",
        r.checks
    );
}

#[test]
fn a_bad_signature_or_another_root_is_rejected() {
    let bytes = endorser().endorse(&golden()).unwrap();
    let e = LaunchEndorsement::parse(&bytes).unwrap();
    let mut sig = e.signature.clone();
    sig[10] ^= 1;
    let r = check(&LaunchEndorsement::encode(&e.serialized_golden, &sig), &M4, 4);
    assert_eq!(failed(&r), ["gce_endorsement_signature"]);
    // A changed measurement under the old signature.
    let mut g = e.golden.clone();
    g.sev_snp.as_mut().unwrap().measurements.insert(4, [0x55; 48]);
    let r = check(&LaunchEndorsement::encode(&g.encode(), &e.signature), &[0x55; 48], 4);
    assert_eq!(failed(&r), ["gce_endorsement_signature"]);
    // Signed by another simulated Google: its root is not the one given.
    let other = SimulatedEndorser::generate(NOW).unwrap().endorse(&golden()).unwrap();
    let r = check(&other, &M4, 4);
    assert_eq!(failed(&r), ["gce_endorsement_signer"]);
    assert!(r.check("gce_endorsement_signer").unwrap().found.contains("does not verify"));
}

#[test]
fn malformed_endorsements_name_the_field() {
    let r = check(b"\x0a\x05abc", &M4, 4);
    assert_eq!(failed(&r), ["gce_endorsement_format"]);
    assert!(r.check("gce_endorsement_format").unwrap().found.contains("field claims 5 bytes"));
    let mut g = golden();
    g.sev_snp = None;
    let bytes = endorser().endorse(&g).unwrap();
    assert_eq!(failed(&check(&bytes, &M4, 4)), ["gce_endorsement_measurement"]);
    // A 47-byte measurement.
    let mut snp = Writer::default();
    let mut entry = Writer::default();
    entry.uint(1, 4);
    entry.bytes(2, &[0; 47]);
    snp.message(2, &entry.0);
    let err = SevSnpGolden::parse(&snp.0).unwrap_err().to_string();
    assert!(err.contains("sev_snp.measurements[4]: 47 bytes"), "{err}");
    // The same vCPU count twice.
    let mut entry = Writer::default();
    entry.uint(1, 4);
    entry.bytes(2, &[0; 48]);
    let mut w = Writer::default();
    w.message(2, &entry.0);
    let twice = [w.0.clone(), w.0].concat();
    let err = SevSnpGolden::parse(&twice).unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    // A singular field twice.
    let err = LaunchEndorsement::parse(b"\x12\x01a\x12\x01b\x0a\x00").unwrap_err().to_string();
    assert!(err.contains("field 2 appears twice"), "{err}");
}
