//! GCP's vTPM end to end: a swtpm provisioned as Google provisions its
//! vTPM (an attestation-key template and that key's certificate in NV),
//! a real agent that finds them and quotes with the certified key, and
//! cvmctl, which accepts the certificate only under a root it trusts:
//! Google's pinned one, or a simulated CA the test passes explicitly.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::Path;
use std::process::{Command, Output};
use std::str::FromStr as _;
use std::sync::Arc;

use cvm_evidence::gcp::{AK_CERT_NV_ECC, AK_TEMPLATE_NV_ECC};
use cvm_evidence::simulator::gcp::SimulatedAkCa;
use cvm_protocol::api::VtpmEvidence;
use cvm_tests::{assert_exit, Options, Scenario};
use cvmctl::exit_codes;
use der::EncodePem as _;

fn out(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Google's ECC attestation-key template as a `TPMT_PUBLIC`: a restricted
/// ECDSA/SHA-256 signing key on P-256 made in the TPM (empty unique field).
fn ecc_ak_template() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&0x0023u16.to_be_bytes()); // TPM_ALG_ECC
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // nameAlg sha256
                                                   // fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign.
    t.extend_from_slice(&0x0005_0072u32.to_be_bytes());
    t.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric null
    t.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
    t.extend_from_slice(&0x000bu16.to_be_bytes()); // sha256
    t.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
    t.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf null
    t.extend_from_slice(&[0, 0, 0, 0]); // unique: empty x and y
    t
}

fn tpm2(tcti: &str, args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).env("TPM2TOOLS_TCTI", tcti).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", out(&o));
}

/// Writes `data` into a new owner-readable NV index.
fn nv_write(dir: &Path, tcti: &str, index: u32, data: &[u8]) {
    let file = dir.join(format!("nv-{index:08x}.bin"));
    std::fs::write(&file, data).unwrap();
    let index = format!("0x{index:08x}");
    let size = data.len().to_string();
    tpm2(
        tcti,
        &["tpm2_nvdefine", &index, "-C", "o", "-s", &size, "-a", "ownerread|ownerwrite|authread|authwrite"],
    );
    tpm2(tcti, &["tpm2_nvwrite", &index, "-C", "o", "-i", file.to_str().unwrap()]);
}

/// The public area of the key the template makes in the endorsement
/// hierarchy, made with tpm2-tss as the agent makes it.
fn primary_from_template(tcti: &str, template: &[u8]) -> Vec<u8> {
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::structures::Public;
    use tss_esapi::traits::{Marshall as _, UnMarshall as _};
    let conf = tss_esapi::tcti_ldr::TctiNameConf::from_str(tcti).unwrap();
    let mut ctx = tss_esapi::Context::new(conf).unwrap();
    let public = Public::unmarshall(template).unwrap();
    let created = ctx
        .execute_with_nullauth_session(|c| {
            c.create_primary(Hierarchy::Endorsement, public, None, None, None, None)
        })
        .unwrap();
    ctx.flush_context(created.key_handle.into()).unwrap();
    created.out_public.marshall().unwrap()
}

/// A scenario whose swtpm holds a Google-shaped AK template and that key's
/// certificate from `ca`; the CA's root and intermediate are in `ak-ca.pem`.
fn google_vtpm(ca: Arc<SimulatedAkCa>, certify_another_key: bool) -> Scenario {
    let firmware: cvm_tests::Firmware = Box::new(move |dir: &Path, tcti: &str| {
        let template = ecc_ak_template();
        let mut ak = primary_from_template(tcti, &template);
        if certify_another_key {
            ak = cvm_evidence::tpm::SimulatedAk::generate().unwrap().public();
        }
        let now = time::OffsetDateTime::now_utc();
        let cert = ca.certify_der(&ak, now).unwrap();
        nv_write(dir, tcti, AK_TEMPLATE_NV_ECC, &template);
        nv_write(dir, tcti, AK_CERT_NV_ECC, &cert);
        let bundle = [ca.root(), ca.intermediate()]
            .iter()
            .map(|c| c.to_pem(der::pem::LineEnding::LF).unwrap())
            .collect::<String>();
        std::fs::write(dir.join("ak-ca.pem"), bundle).unwrap();
        std::fs::write(dir.join("ak-root.pem"), ca.root().to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
        std::fs::write(dir.join("ak-intermediate.der"), der::Encode::to_der(ca.intermediate()).unwrap())
            .unwrap();
        Vec::new()
    });
    Scenario::start(Options {
        vtpm: true,
        firmware: Some(firmware),
        policy: Some(serde_json::json!({"platform": "gcp", "require_vtpm": true})),
        ..Options::default()
    })
}

fn ca() -> Arc<SimulatedAkCa> {
    Arc::new(SimulatedAkCa::generate(time::OffsetDateTime::now_utc()).unwrap())
}

#[test]
fn the_agent_quotes_with_the_certified_key_and_cvmctl_checks_its_chain() {
    let s = google_vtpm(ca(), false);
    assert!(s.log().contains("attestation-key certificate is provisioned at NV 0x01c10002"), "{}", s.log());

    // The simulated CA, trusted explicitly: accepted, the certificate's key is the quotes'.
    let bundle = s.path("ak-ca.pem");
    let o = s.run("attest", None, &["--verbose", "--trust-ak-ca", &bundle]);
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    for check in [
        "vtpm_quote_signature",
        "boot_quote_signature",
        "vtpm_ak_certificate",
        "vtpm_ak_certificate_chain",
        "vtpm_ak_certificate_key",
    ] {
        assert!(text.contains(&format!("PASS  {check} ")), "{check}: {}", out(&o));
    }
    assert!(text.contains("its attestation key is certified by EK/AK CA Intermediate"), "{}", out(&o));
    assert!(text.contains("flavour         gcp (report from the AMD secure processor"), "{}", out(&o));
    assert!(
        text.contains("outside SNP     the guest image: the SNP measurement covers Google's firmware only"),
        "{}",
        out(&o)
    );

    // The root alone: the certificate's caIssuers URL names the missing
    // intermediate, which --ak-intermediate supplies (as a caIssuers URL serves it: DER).
    let root = s.path("ak-root.pem");
    let o = s.run("attest", None, &["--trust-ak-ca", &root]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(String::from_utf8_lossy(&o.stderr).contains("pass it with --ak-intermediate"), "{}", out(&o));
    let o =
        s.run("attest", None, &["--trust-ak-ca", &root, "--ak-intermediate", &s.path("ak-intermediate.der")]);
    assert_exit(&o, exit_codes::OK);

    // Against Google's pinned root alone: rejected, naming the chain.
    let o = s.run("attest", None, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("rejected: vtpm_ak_certificate_chain: expected issued by a trusted EK/AK CA root"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_certificate_of_another_key_than_the_quotes_is_rejected() {
    let s = google_vtpm(ca(), true);
    let bundle = s.path("ak-ca.pem");
    let o = s.run("attest", None, &["--trust-ak-ca", &bundle]);
    assert_exit(&o, exit_codes::REJECTED);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rejected: vtpm_ak_certificate_key"), "{}", out(&o));
    assert!(!err.contains("vtpm_ak_certificate_chain"), "{}", out(&o));
}

#[test]
fn a_gcp_policy_rejects_an_agent_without_googles_attestation_key() {
    // swtpm as it comes: no certificate in NV, so the agent quotes with its own key.
    let s = Scenario::start(Options {
        vtpm: true,
        policy: Some(serde_json::json!({"platform": "gcp", "require_vtpm": true})),
        ..Options::default()
    });
    let o = s.run("attest", None, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rejected: platform: expected gcp, found sev-snp"), "{}", out(&o));
    // The same agent under a sev-snp policy: the certificate is not asked for.
    let policy = s.path("sev-snp.json");
    cvm_tests::write_pinned_policy(Path::new(&policy), serde_json::json!({"require_vtpm": true}));
    let o = s.run_with_policy("attest", None, Path::new(&policy), &["--verbose"]);
    assert_exit(&o, exit_codes::OK);
    assert!(String::from_utf8_lossy(&o.stdout).contains("SKIP  vtpm_ak_certificate "), "{}", out(&o));
}

#[test]
fn attest_checks_googles_launch_endorsement_for_the_vms_vcpu_count() {
    use cvm_evidence::gcp::{GoldenMeasurement, LaunchEndorsement, SevSnpGolden};
    use cvm_evidence::simulator::gcp::SimulatedEndorser;

    let s = Scenario::start(Options::default());
    let now = time::OffsetDateTime::now_utc();
    let endorser = SimulatedEndorser::generate(now).unwrap();
    let measurement: [u8; 48] = hex::decode(cvm_tests::MEASUREMENT).unwrap().try_into().unwrap();
    let golden = |m4: [u8; 48]| GoldenMeasurement {
        timestamp: Some((now.unix_timestamp(), 0)),
        cl_spec: 7,
        digest: vec![0xd1; 48],
        sev_snp: Some(SevSnpGolden {
            svn: 2,
            measurements: [(4, m4), (8, [0x88; 48])].into_iter().collect(),
            ..SevSnpGolden::default()
        }),
        ..GoldenMeasurement::default()
    };
    let root = s.path("gce-root.pem");
    std::fs::write(&root, endorser.root().to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = s.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let good = write("endorsement.binarypb", &endorser.endorse(&golden(measurement)).unwrap());
    let attest = |file: &str, vcpus: &str| {
        s.run("attest", None, &["--gce-endorsement", file, "--gce-root", &root, "--gce-vcpus", vcpus])
    };

    let o = attest(&good, "4");
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "firmware        Google's launch endorsement verified: endorsed for 4 vCPUs (Google's SVN 2)"
        ),
        "{}",
        out(&o)
    );

    let rejected = |o: &Output, check: &str| {
        assert_exit(o, exit_codes::REJECTED);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("rejected: {check}: ")),
            "{check}: {}",
            out(o)
        );
    };
    // Another vCPU count: the endorsement gives another measurement for 8.
    rejected(&attest(&good, "8"), "gce_endorsement_measurement");
    // An endorsement of another measurement.
    let other = write("other.binarypb", &endorser.endorse(&golden([0x55; 48])).unwrap());
    rejected(&attest(&other, "4"), "gce_endorsement_measurement");
    // A bad signature.
    let e = LaunchEndorsement::parse(&std::fs::read(&good).unwrap()).unwrap();
    let mut sig = e.signature.clone();
    sig[0] ^= 0x80;
    let forged = write("forged.binarypb", &LaunchEndorsement::encode(&e.serialized_golden, &sig));
    rejected(&attest(&forged, "4"), "gce_endorsement_signature");
    // Signed by another (simulated) Google than the root given.
    let stranger = SimulatedEndorser::generate(now).unwrap().endorse(&golden(measurement)).unwrap();
    rejected(&attest(&write("stranger.binarypb", &stranger), "4"), "gce_endorsement_signer");
    // An endorsement without the root and the vCPU count is a usage error.
    let o = s.run("attest", None, &["--gce-endorsement", &good]);
    assert_exit(&o, exit_codes::USAGE);
}

#[test]
fn session_evidence_without_the_ak_certificate_is_rejected_under_a_gcp_policy() {
    // An agent that names its flavour gcp but sends no certificate (the
    // flavour is only its claim): the certificate is what proves it. Under a
    // policy naming gcp, and (red team) under one naming no platform: the
    // agent's own claim of gcp requires the certificate, so that cvmctl never
    // says "gcp" of a vTPM whose key nothing certified.
    let s = google_vtpm(ca(), false);
    let mut args = s.agent_args(None);
    args.extend(["--trust-ak-ca".to_owned(), s.path("ak-ca.pem")]);
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for platform_named in [true, false] {
        if !platform_named {
            let mut policy: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&s.policy).unwrap()).unwrap();
            assert!(policy.as_object_mut().unwrap().remove("platform").is_some());
            std::fs::write(&s.policy, policy.to_string()).unwrap();
        }
        let args = args.clone();
        tokio.block_on(async {
            let hs = cvm_tests::parse_agent_args(args).handshake().await.map_err(|e| e.to_string()).unwrap();
            let nonce = hs.nonce().unwrap();
            let ekm = hs.exporter(&nonce).unwrap();
            let mut agent = hs.into_agent().await.unwrap();
            let evidence = agent.session_evidence(&nonce).await.unwrap();
            assert!(agent.verify_session(&evidence, &nonce, &ekm).unwrap().accepted());
            let mut stripped = evidence.clone();
            let VtpmEvidence::Quoted { ak_certificate, .. } = &mut stripped.vtpm else { panic!("no quote") };
            *ak_certificate = None;
            let report = agent.verify_session(&stripped, &nonce, &ekm).unwrap();
            let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
            assert_eq!(failed, ["vtpm_ak_certificate"], "platform named in the policy: {platform_named}");
        });
    }
}
