//! The Azure flavour end to end on this host: the agent's real Azure code
//! path (user data written to NV index 0x01400002, the HCL report read from
//! 0x01400001 until it carries that user data, quotes by the persistent key
//! at 0x81000003, the VCEK from a THIM endpoint) against swtpm, with the
//! agent's simulated paravisor (`tee = simulated-azure`) playing Microsoft's;
//! cvmctl verifies it as the Azure flavour.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::time::Duration;

use base64::Engine as _;
use cvm_evidence::simulator::SimulatedChain;
use cvm_tests::{assert_exit, parse_agent_args, platform, stderr, Options, Scenario};
use cvmctl::exit_codes;
use der::EncodePem as _;

/// Serves Azure's THIM answer (the simulated chain's VCEK, ASK and ARK) on
/// loopback, once; returns its URL.
fn thim() -> String {
    let chain = SimulatedChain::from_pem_bundle(&std::fs::read_to_string(&platform().1).unwrap()).unwrap();
    let pem = |c: &cvm_evidence::certs::Certificate| c.to_pem(der::pem::LineEnding::LF).unwrap();
    let body = serde_json::json!({
        "vcekCert": pem(chain.vek()),
        "certificateChain": format!("{}{}", pem(chain.ask()), pem(chain.ark())),
    })
    .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metadata/THIM/amd/certification", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("Metadata: true"));
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(answer.as_bytes()).unwrap();
    });
    url
}

fn azure(policy: serde_json::Value) -> Options {
    Options {
        vtpm: true,
        agent_env: vec![
            ("CVM_TEE".into(), "simulated-azure".into()),
            ("CVM_AZURE_THIM".into(), thim()),
            ("CVM_AZURE_DEADLINE_MS".into(), "5000".into()),
        ],
        policy: Some(policy),
        ..Options::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn attest_upload_run_and_results_on_the_azure_path() {
    let s = Scenario::start(azure(serde_json::json!({"platform": "azure", "require_vtpm": true})));
    let log = s.log();
    assert!(log.contains("TEE provider: simulated-azure"), "{log}");
    assert!(log.contains("VCEK and chain from THIM"), "{log}");
    let o = s.run("attest", None, &["--verbose"]);
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    for check in [
        "platform",
        "hcl_format",
        "report_signature",
        "vmpl",
        "runtime_claims_hash",
        "hcl_attestation_key",
        "hcl_ak_binding",
        "boot_binding",
        "session_binding",
        "vtpm_quote_signature",
        "vtpm_event_replay",
    ] {
        assert!(text.contains(&format!("PASS  {check} ")), "{check}: {text}");
    }
    assert!(text.contains("flavour         azure"), "{text}");
    assert!(text.contains("outside SNP     the guest image"), "{text}");
    assert!(text.contains("kind: the paravisor's"), "{text}");
    // The agent read the report until it carried its user data (no fixed sleep).
    assert!(s.log().contains("Azure: the HCL report carried our user data after"), "{}", s.log());

    s.upload_inputs();
    let status = s.wait_final(Duration::from_secs(30));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let summary =
        std::process::Command::new("tar").args(["-xOf", &out, "results/summary.json"]).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&summary.stdout).unwrap();
    assert_eq!(summary["count"], 7);
}

#[test]
fn a_replayed_hcl_report_and_another_flavours_policy_are_rejected() {
    let s = Scenario::start(azure(serde_json::json!({"require_vtpm": true})));
    runtime().block_on(async {
        let session = || async {
            let hs =
                parse_agent_args(s.agent_args(None)).handshake().await.map_err(|e| e.to_string()).unwrap();
            let nonce = hs.nonce().unwrap();
            let ekm = hs.exporter(&nonce).unwrap();
            let mut agent = hs.into_agent().await.unwrap();
            let evidence = agent.session_evidence(&nonce).await.unwrap();
            (agent, nonce, ekm, evidence)
        };
        let (_, _, _, earlier) = session().await;
        let (agent, nonce, ekm, evidence) = session().await;
        let report = agent.verify_session(&evidence, &nonce, &ekm).unwrap();
        assert!(report.accepted(), "{:?}", report.failures().collect::<Vec<_>>());

        // The HCL report of the earlier session: genuine, signed, the
        // paravisor's key; its user data binds another session.
        let mut replayed = evidence.clone();
        replayed.report = earlier.report.clone();
        let report = agent.verify_session(&replayed, &nonce, &ekm).unwrap();
        let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
        assert_eq!(failed, ["session_binding"], "{report:?}");

        // One flipped byte of the runtime claims.
        let mut hcl = base64::engine::general_purpose::STANDARD.decode(&evidence.report).unwrap();
        let n = hcl.len();
        hcl[n - 40] ^= 1;
        let mut flipped = evidence.clone();
        flipped.report = base64::engine::general_purpose::STANDARD.encode(&hcl);
        let report = agent.verify_session(&flipped, &nonce, &ekm).unwrap();
        let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
        assert!(failed.contains(&"runtime_claims_hash"), "{failed:?}");
    });

    // A policy for our own hosts does not accept an Azure guest.
    let strict = s.dir.path().join("sev-snp.json");
    cvm_tests::write_pinned_policy(&strict, serde_json::json!({"platform": "sev-snp"}));
    let o = s.run_with_policy("attest", None, &strict, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(stderr(&o).contains("platform: expected sev-snp, found azure"), "{}", stderr(&o));
}

#[test]
fn auto_finds_the_paravisor_by_its_nv_index_and_waits_for_it_only_until_the_deadline() {
    // A scenario gives the manifest and the simulated platform; its own agent has no vTPM.
    let s = Scenario::start(Options::default());
    let d = s.dir.path();
    let tpm = cvm_tests::Swtpm::start();
    let tcti = tpm.tcti();
    let start = |work: &str, env: &[(&str, &str)]| {
        let mut all =
            vec![("CVM_VTPM", "required"), ("CVM_TPM_TCTI", tcti.as_str()), ("CVM_AZURE_THIM", "none")];
        all.extend_from_slice(env);
        cvm_tests::start_agent_env(d, &d.join("manifest.json"), &d.join(work), &all)
    };

    // No /dev/sev-guest, no HCL report in the vTPM: no TEE.
    let err = start("w1", &[("CVM_TEE", "auto")]).expect_err("no TEE");
    assert!(err.contains("no SNP guest interface found") && err.contains("0x01400001"), "{err}");

    // The simulated paravisor leaves the vTPM as Azure's: its key at
    // 0x81000003 and an HCL report at 0x01400001 (for another agent's user data).
    let (mut child, _, _) = start("w2", &[("CVM_TEE", "simulated-azure")]).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // Now `auto` takes the Azure path, and Microsoft's paravisor (absent
    // here) never refreshes the report: the agent gives up at the deadline.
    let began = std::time::Instant::now();
    let err = start("w3", &[("CVM_TEE", "auto"), ("CVM_TPM_PCR", "14"), ("CVM_AZURE_DEADLINE_MS", "400")])
        .expect_err("no paravisor refreshes the report");
    assert!(err.contains("TEE provider: azure"), "{err}");
    assert!(
        err.contains("did not refresh the HCL report")
            && err.contains("within 400 ms")
            && err.contains("still carries user data"),
        "{err}"
    );
    assert!(began.elapsed() < Duration::from_secs(20), "{:?}", began.elapsed());
}
