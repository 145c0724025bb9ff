//! The vTPM against a real swtpm: extend, read back, quote, verify and
//! replay with cvm-evidence, and the refusal of a PCR already in use.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use cvm_agent::measurements::{Event, EventLog, VtpmState};
use cvm_agent::vtpm::Vtpm;
use cvm_evidence::eventlog::{replay_pcr, EventRecord, PcrBank};
use cvm_evidence::vtpm::{check_measurements, VtpmClaim};
use cvm_evidence::VerificationReport;
use cvm_protocol::api::VtpmEvidence;
use cvm_test_support::Swtpm;
use std::sync::Arc;

fn events() -> Vec<Event> {
    vec![
        Event { kind: "manifest", name: "mean-age".into(), digest: format!("sha256:{}", "11".repeat(32)) },
        Event { kind: "algorithm", name: "algorithm".into(), digest: format!("sha256:{}", "22".repeat(32)) },
        Event {
            kind: "sealed_artifact",
            name: "weights".into(),
            digest: "sealed:key=k1;stream=s1;size=42".into(),
        },
    ]
}

#[test]
fn extends_match_the_replay_and_the_quote_verifies() {
    let tpm = Swtpm::start();
    let vtpm = Arc::new(Vtpm::open(&tpm.tcti(), 15).unwrap());
    let mut banks = vtpm.banks().to_vec();
    banks.sort();
    assert_eq!(banks, [PcrBank::Sha256, PcrBank::Sha384]);
    let mut log = EventLog::new(VtpmState::Active(Arc::clone(&vtpm)));
    for e in events() {
        log.record(e);
    }
    let records: Vec<EventRecord> = events().iter().map(Event::record).collect();
    for (bank, value) in vtpm.read().unwrap() {
        assert_eq!(value, replay_pcr(bank, &records), "{bank}");
    }

    let nonce = [0x5a; 32];
    let snap = log.snapshot(&nonce);
    let VtpmEvidence::Quoted { quote, signature, pcr, banks, .. } = &snap.vtpm else {
        panic!("{:?}", snap.vtpm)
    };
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).unwrap();
    let (quote, signature) = (b64(quote), b64(signature));
    let banks: Vec<PcrBank> =
        banks.iter().map(|b| if b == "sha256" { PcrBank::Sha256 } else { PcrBank::Sha384 }).collect();
    let claim =
        VtpmClaim::Quoted { quote: &quote, signature: &signature, pcr: *pcr, banks: &banks, kind: "test" };
    let mut report = VerificationReport { product: None, checks: Vec::new() };
    let (digest, verified) =
        check_measurements(&mut report, true, Some(vtpm.ak_public()), &claim, &nonce, &snap.digest, &records);
    assert!(report.accepted(), "{:#?}", report.checks);
    assert_eq!(digest, snap.digest);
    for (bank, value) in verified.unwrap().values {
        assert_eq!(value, replay_pcr(bank, &records));
    }

    // One event fewer no longer replays to the quoted PCRs.
    let mut report = VerificationReport { product: None, checks: Vec::new() };
    check_measurements(
        &mut report,
        true,
        Some(vtpm.ak_public()),
        &claim,
        &nonce,
        &snap.digest,
        &records[..2],
    );
    let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
    assert_eq!(failed, ["event_log", "vtpm_event_replay"]);
}

#[test]
fn a_pcr_already_extended_is_refused() {
    let tpm = Swtpm::start();
    let first = Vtpm::open(&tpm.tcti(), 14).unwrap();
    first.extend(b"something else").unwrap();
    drop(first);
    let err = Vtpm::open(&tpm.tcti(), 14).err().unwrap().to_string();
    // Either bank may be named first (tss-esapi orders banks by a hash map).
    assert!(err.contains("PCR 14 (sha") && err.contains(") is already extended"), "{err}");
    // Another PCR of the same TPM is still fresh.
    Vtpm::open(&tpm.tcti(), 13).unwrap();
}

#[test]
fn an_unreachable_tpm_is_a_clear_error() {
    let err = Vtpm::open("swtpm:host=127.0.0.1,port=1", 15).err().unwrap();
    assert_eq!(err.step, "connecting");
    let err = Vtpm::open("nonsense", 15).err().unwrap();
    assert_eq!(err.step, "reading the TCTI");
}
