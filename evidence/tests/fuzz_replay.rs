//! The fuzz targets' properties on stable Rust: every input of the committed
//! corpus (`fuzz/corpus-replay/<target>/`) and every past finding
//! (`fuzz/findings/<target>/`) goes through the same property function the
//! fuzz target calls, under the same allocation bound, so a regression fails
//! `make test` without nightly or cargo-fuzz. See `docs/fuzzing.md`.
//!
//! `CVM_FUZZ_SEEDS=DIR cargo test -p cvm-evidence --test fuzz_replay -- --ignored write_seeds`
//! writes seed inputs made from the test vectors and the crate's own
//! encoders into `DIR/<target>/` (`scripts/fuzz` does this before fuzzing).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::alloc::System;
use std::path::{Path, PathBuf};

use cap::Cap;
use cvm_evidence::binding::{boot_report_data, BootEvidence, CMW_EXTENSION_ARCS};
use cvm_evidence::certs::parse_certificate;
use cvm_evidence::fuzzing::{self, allocation_bound, TARGETS};
use cvm_test_support::fuzz_replay;
use der::Encode;

/// Counts every allocation; a limit set around a property call makes any
/// allocation past the bound fail (and the test process abort, naming the size).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Runs `f` on `input` with at most [`allocation_bound`] more bytes allocated at once.
fn bounded(f: fn(&[u8]), input: &[u8]) {
    fuzz_replay::bounded(&ALLOCATOR, allocation_bound(input.len()), fuzzing::warm_up, f, input);
}

/// Replays the committed inputs of `target` through [`bounded`].
fn replay(target: &str) {
    fuzz_replay::replay(target, TARGETS, bounded);
}

#[test]
fn snp_report() {
    replay("snp_report");
}

#[test]
fn snp_verify() {
    replay("snp_verify");
}

#[test]
fn certificate() {
    replay("certificate");
}

#[test]
fn boot_evidence() {
    replay("boot_evidence");
}

#[test]
fn policy() {
    replay("policy");
}

#[test]
fn hcl_report() {
    replay("hcl_report");
}

#[test]
fn tpm_quote() {
    replay("tpm_quote");
}

#[test]
fn tpm_signature() {
    replay("tpm_signature");
}

#[test]
fn tpm_public() {
    replay("tpm_public");
}

#[test]
fn event_log() {
    replay("event_log");
}

#[test]
fn vtpm_check() {
    replay("vtpm_check");
}

#[test]
fn simulated_bundle() {
    replay("simulated_bundle");
}

#[test]
fn tcg_event_log() {
    replay("tcg_event_log");
}

#[test]
fn measured_boot() {
    replay("measured_boot");
}

#[test]
fn uki() {
    replay("uki");
}

#[test]
fn gce_endorsement() {
    replay("gce_endorsement");
}

#[test]
fn every_target_has_a_test_here() {
    let _exclusive = fuzz_replay::exclusive();
    let source = include_str!("fuzz_replay.rs");
    for (name, _) in TARGETS {
        assert!(source.contains(&format!("replay(\"{name}\")")), "no replay test for {name}");
    }
}

// ---- issue 13's finding, by name ------------------------------------------

/// 15 bytes whose serial number claims 0x0fffffff bytes made the der crate
/// allocate 256 MiB before it found the bytes missing, in
/// `parse_certificate` (DER and PEM) and `BootEvidence::from_certificate`:
/// cvmctl runs both on the certificate a server shows. Under the replay's
/// allocation bound (1 MiB here) that allocation now aborts this test
/// process; the lengths are refused first.
#[test]
fn issue13_der_lengths_past_the_input_allocate_nothing() {
    let _exclusive = fuzz_replay::exclusive();
    for file in
        ["certificate/issue13-serial-claims-256mib.der", "certificate/issue13-serial-claims-256mib.pem"]
    {
        let bytes = std::fs::read(fuzz_replay::repo().join("fuzz/findings").join(file)).unwrap();
        bounded(fuzzing::certificate, &bytes);
        let err = parse_certificate(&bytes, "server").unwrap_err().to_string();
        assert!(err.contains("claims 268435455 bytes"), "{file}: {err}");
    }
    let der = std::fs::read(
        fuzz_replay::repo().join("fuzz/findings/boot_evidence/issue13-serial-claims-256mib.der"),
    )
    .unwrap();
    bounded(fuzzing::boot_evidence, &der);
    let err = BootEvidence::from_certificate(&der).unwrap_err().to_string();
    assert!(err.contains("claims 268435455 bytes"), "{err}");
}

// ---- seeds -----------------------------------------------------------------

fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(path)).unwrap()
}

/// An agent's certificate as the agent makes it (rcgen, a P-256 key, the
/// evidence in id-pe-cmw), over a report of the simulated chain.
fn agent_certificate(with_chain: bool, ak_public: Option<Vec<u8>>) -> Vec<u8> {
    let chain = fuzzing::simulated_chain();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let manifest_digest = [0x42; 32];
    let mut body = chain.report_template();
    body.report_data = boot_report_data(&spki, &manifest_digest, ak_public.as_deref());
    let report = chain.sign(&body).unwrap();
    let der = |c: &cvm_evidence::certs::Certificate| c.to_der().unwrap();
    let boot = BootEvidence {
        version: 1,
        platform: cvm_evidence::policy::Platform::SevSnp,
        report: report.raw().to_vec(),
        vek: Some(der(chain.vek())),
        ask: with_chain.then(|| der(chain.ask())),
        ark: with_chain.then(|| der(chain.ark())),
        manifest_digest,
        ak_public,
    };
    let mut params = rcgen::CertificateParams::new(vec!["cvm-agent".to_owned()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "cvm-agent attested TLS");
    params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
        &CMW_EXTENSION_ARCS,
        boot.to_extension_value().unwrap(),
    ));
    params.self_signed(&key).unwrap().der().to_vec()
}

/// Seeds of every target, from the test vectors and the crate's own encoders.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let vectors = ["milan-virtee", "milan-trustee", "genoa-oak-v5", "milan-vlek-trustee"];
    for v in vectors {
        out.push(("snp_report", v.into(), testdata(&format!("amd/{v}/report.bin"))));
    }
    let chain = fuzzing::simulated_chain();
    for body in fuzzing::simulated_bodies(chain) {
        let report = chain.sign(&body).unwrap();
        out.push(("snp_report", format!("simulated-v{}", body.version), report.raw().to_vec()));
    }
    for (i, seed) in fuzzing::snp_verify_seeds().into_iter().enumerate() {
        out.push(("snp_verify", format!("chain-{}-{i}", seed[0]), seed));
    }
    for (name, path) in [
        ("milan-vcek.der", "amd/milan-virtee/vcek.der"),
        ("milan-trustee-vcek.der", "amd/milan-trustee/vcek.der"),
        ("genoa-vcek.der", "amd/genoa-oak-v5/vcek.der"),
        ("milan-vlek.der", "amd/milan-vlek-trustee/vlek.der"),
        ("milan-ark.pem", "amd/milan-virtee/ark.pem"),
        ("milan-ask.pem", "amd/milan-virtee/ask.pem"),
        ("genoa-ask.pem", "amd/genoa-oak-v5/ask.pem"),
        ("milan-asvk.pem", "amd/milan-vlek-trustee/asvk.pem"),
    ] {
        out.push(("certificate", name.into(), testdata(path)));
    }
    for (name, cert) in [("ark", chain.ark()), ("ask", chain.ask()), ("vek", chain.vek())] {
        out.push(("certificate", format!("simulated-{name}.der"), cert.to_der().unwrap()));
    }
    let agent = agent_certificate(true, Some(testdata("tpm/ak.pub.tpmt")));
    out.push(("certificate", "agent.der".into(), agent.clone()));
    out.push(("boot_evidence", "agent-with-chain-and-ak.der".into(), agent));
    out.push(("boot_evidence", "agent-vek-only.der".into(), agent_certificate(false, None)));
    out.push((
        "policy",
        "example.json".into(),
        std::fs::read(fuzz_replay::repo().join("examples/policy.json")).unwrap(),
    ));
    let full = serde_json::json!({
        "measurements": ["00".repeat(48)], "min_tcb": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": 1},
        "min_guest_svn": 2, "allow_debug": true, "allow_migration_agent": false, "allow_smt": false,
        "vmpl": 1, "host_data": "11".repeat(32), "report_data": "22".repeat(64),
        "id_key_digests": ["33".repeat(48)], "author_key_digests": ["44".repeat(48)],
        "signing_keys": ["vcek", "vlek"], "require_vtpm": true
    });
    out.push(("policy", "every-field.json".into(), full.to_string().into_bytes()));
    out.push(("tpm_quote", "swtpm.msg".into(), testdata("tpm/quote.msg")));
    out.push(("tpm_signature", "swtpm.sig".into(), testdata("tpm/quote.sig")));
    out.push(("tpm_public", "swtpm-ak.tpmt".into(), testdata("tpm/ak.pub.tpmt")));
    let events = serde_json::json!([
        {"kind": "manifest", "name": "stats-1", "identity": format!("sha256:{}", "ab".repeat(32))},
        {"kind": "algorithm", "name": "stats.py", "identity": format!("sha256:{}", "cd".repeat(32))},
        {"kind": "sealed_artifact", "name": "weights.bin", "identity": format!("sealed:{}:{}:42", "11".repeat(16), "22".repeat(16))},
        {"kind": "results", "name": "", "identity": "\u{e9}\u{0}"}
    ]);
    out.push(("event_log", "four-events.json".into(), events.to_string().into_bytes()));
    out.push(("event_log", "empty.json".into(), b"[]".to_vec()));
    for (i, seed) in fuzzing::vtpm_check_seeds().into_iter().enumerate() {
        out.push(("vtpm_check", format!("swtpm-{i}"), seed));
    }
    out.push(("simulated_bundle", "milan-chain.txt".into(), fuzzing::SIMULATED_CHAIN.as_bytes().to_vec()));
    out.push(("tcg_event_log", "ovmf-swtpm-uki.bin".into(), testdata("tcglog/ovmf-swtpm-uki.bin")));
    for (i, seed) in fuzzing::measured_boot_seeds().into_iter().enumerate() {
        out.push(("measured_boot", format!("boot-{i}"), seed));
    }
    out.push(("uki", "small-uki.efi".into(), fuzzing::uki_seed()));
    out.push(("gce_endorsement", "simulated".into(), simulated_endorsement()));
    out.push(("hcl_report", "azure-dcasv5.bin".into(), testdata("azure/hcl-report.bin")));
    out.push(("hcl_report", "azure-other.bin".into(), testdata("azure/hcl-report-2.bin")));
    out
}

/// A launch endorsement of a simulated Google signer, with SEV-SNP
/// measurements for 1, 4 and 8 vCPUs.
fn simulated_endorsement() -> Vec<u8> {
    use cvm_evidence::gcp::{GoldenMeasurement, SevSnpGolden};
    let golden = GoldenMeasurement {
        timestamp: Some((1_764_000_000, 0)),
        cl_spec: 1,
        commit: b"c0ffee".to_vec(),
        digest: vec![0xd1; 48],
        sev_snp: Some(SevSnpGolden {
            svn: 1,
            measurements: [(1, [0x11; 48]), (4, [0x44; 48]), (8, [0x88; 48])].into_iter().collect(),
            family_id: vec![1; 16],
            image_id: vec![2; 16],
            policy: 0x30000,
            ca_bundle: Vec::new(),
        }),
        ..GoldenMeasurement::default()
    };
    let now = time::OffsetDateTime::now_utc();
    cvm_evidence::simulator::gcp::SimulatedEndorser::generate(now).unwrap().endorse(&golden).unwrap()
}

#[test]
fn every_seed_holds_its_property() {
    let _exclusive = fuzz_replay::exclusive();
    for (target, _, data) in seeds() {
        let (_, f) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
        bounded(*f, &data);
    }
}

#[test]
#[ignore = "writes seed files: CVM_FUZZ_SEEDS=DIR (scripts/fuzz runs it)"]
fn write_seeds() {
    let _exclusive = fuzz_replay::exclusive();
    let dir = PathBuf::from(std::env::var_os("CVM_FUZZ_SEEDS").expect("CVM_FUZZ_SEEDS=DIR"));
    for (target, name, data) in seeds() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir).unwrap();
        std::fs::write(target_dir.join(format!("seed-{name}")), data).unwrap();
    }
}
