//! The measurement log and the vTPM end to end: real agents, each with its
//! own swtpm, real TLS, cvmctl; tpm2-tools as an independent quote checker;
//! and every manipulation of the log or quote rejected with its reason.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::process::{Command, Output};
use std::time::Duration;

use cvm_protocol::api::{SessionEvidence, VtpmEvidence};
use cvm_tests::{assert_exit, cvmctl, parse_agent_args, start_agent_env, Options, Scenario};
use cvmctl::exit_codes;

fn out(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn with_vtpm() -> Options {
    Options { vtpm: true, policy: Some(serde_json::json!({"require_vtpm": true})), ..Options::default() }
}

fn run_computation(s: &Scenario) {
    s.upload_inputs();
    let status = s.wait_final(Duration::from_secs(30));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
}

#[test]
fn attest_events_prints_the_log_replayed_into_the_quote() {
    let s = Scenario::start(with_vtpm());
    run_computation(&s);
    let o = s.run("attest", None, &["--events", "--verbose"]);
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("event log (5 events, oldest first)"), "{text}");
    for kind in ["manifest", "algorithm", "dataset", "results"] {
        assert!(text.contains(&format!("  {kind} ")), "{kind}: {text}");
    }
    assert!(text.lines().any(|l| l.contains(" 0  manifest ") && l.ends_with(&s.digest)), "{text}");
    assert!(text.contains("vTPM quote: verified"), "{text}");
    assert!(text.contains("sha256:15") && text.contains("sha384:15"), "{text}");
    for check in [
        "vtpm_ak_binding",
        "vtpm_quote_signature",
        "vtpm_quote_nonce",
        "vtpm_pcr_selection",
        "vtpm_event_replay",
        "event_log",
        "session_binding",
    ] {
        assert!(text.contains(&format!("PASS  {check} ")), "{check}: {text}");
    }
    assert!(
        text.contains("kind: unverified (host-emulated as far as the agent can tell; not trusted"),
        "{text}"
    );
    assert!(s.log().contains("vTPM: swtpm:host=127.0.0.1"), "{}", s.log());
}

#[test]
fn the_exported_quote_verifies_with_tpm2_checkquote_and_a_wrong_nonce_does_not() {
    let s = Scenario::start(with_vtpm());
    let dir = s.path("quote");
    let o = s.run("attest", None, &["--export-quote", &dir]);
    assert_exit(&o, exit_codes::OK);
    let nonce = std::fs::read_to_string(format!("{dir}/nonce")).unwrap().trim().to_owned();
    let checkquote = |nonce: &str| {
        Command::new("tpm2_checkquote")
            .args(["-u", &format!("{dir}/ak.pem"), "-m", &format!("{dir}/quote.msg")])
            .args(["-s", &format!("{dir}/quote.sig"), "-f", &format!("{dir}/quote.pcrs")])
            .args(["-g", "sha256", "-q", nonce])
            .output()
            .expect("tpm2_checkquote (tpm2-tools; run scripts/setup)")
    };
    let good = checkquote(&nonce);
    assert!(good.status.success(), "{}", out(&good));
    // tpm2_checkquote prints the PCR values it checked: the manifest alone so far.
    let text = String::from_utf8_lossy(&good.stdout);
    assert!(text.contains("sha256:") && text.contains("15: 0x"), "{text}");
    let mut wrong = nonce.into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let bad = checkquote(std::str::from_utf8(&wrong).unwrap());
    assert!(!bad.status.success(), "{}", out(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nonce"), "{}", out(&bad));
}

/// Fresh session evidence over `nonce` on a verified connection, and a way
/// to check manipulated copies of it exactly as cvmctl does.
struct Session {
    agent: cvmctl::owner::Agent,
    ekm: [u8; 32],
    nonce: [u8; 32],
    evidence: SessionEvidence,
}

async fn session(s: &Scenario) -> Session {
    let hs = parse_agent_args(s.agent_args(None)).handshake().await.map_err(|e| e.to_string()).unwrap();
    let nonce = hs.nonce().unwrap();
    let ekm = hs.exporter(&nonce).unwrap();
    let mut agent = hs.into_agent().await.unwrap();
    let evidence = agent.session_evidence(&nonce).await.unwrap();
    Session { agent, ekm, nonce, evidence }
}

impl Session {
    /// The failed checks and cvmctl's reasons for `evidence` (checked over this session's nonce).
    fn rejected(&self, evidence: &SessionEvidence) -> (Vec<&'static str>, String) {
        let report = self.agent.verify_session(evidence, &self.nonce, &self.ekm).unwrap();
        let names = report.failures().map(|c| c.name).collect();
        let reasons = report.failures().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        (names, reasons)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn a_tampered_shortened_or_reordered_log_is_rejected() {
    let s = Scenario::start(with_vtpm());
    run_computation(&s);
    runtime().block_on(async {
        let sess = session(&s).await;
        assert!(sess.rejected(&sess.evidence).0.is_empty(), "{}", sess.rejected(&sess.evidence).1);
        assert_eq!(sess.evidence.events.len(), 5);

        // A dataset's digest changed (and the claimed log digest left alone).
        let mut tampered = sess.evidence.clone();
        tampered.events[2].identity = format!("sha256:{}", "00".repeat(32));
        let (failed, why) = sess.rejected(&tampered);
        // The boot quote covers the agent's PCR too, and fails the same way.
        assert_eq!(
            failed,
            ["session_binding", "event_log", "vtpm_event_replay", "boot_quote_event_replay"],
            "{why}"
        );
        assert!(why.contains("event_log: expected the digest of the 5 events sent"), "{why}");

        // The same, with the claimed digest made to match the forged log:
        // the SNP report and the vTPM still know better.
        let forged: Vec<_> = tampered
            .events
            .iter()
            .map(|e| {
                cvm_evidence::eventlog::EventRecord::new(e.kind.clone(), e.name.clone(), e.identity.clone())
            })
            .collect();
        tampered.event_log_digest = cvm_protocol::Digest(cvm_evidence::eventlog::log_digest(&forged));
        let (failed, why) = sess.rejected(&tampered);
        assert_eq!(failed, ["session_binding", "vtpm_event_replay", "boot_quote_event_replay"], "{why}");
        assert!(why.contains("vtpm_event_replay: expected the PCR digest of the 5 events replayed"), "{why}");

        // An event removed.
        let mut removed = sess.evidence.clone();
        removed.events.remove(3);
        let (failed, _) = sess.rejected(&removed);
        assert_eq!(failed, ["session_binding", "event_log", "vtpm_event_replay", "boot_quote_event_replay"]);

        // Two events swapped.
        let mut reordered = sess.evidence.clone();
        reordered.events.swap(2, 3);
        let (failed, why) = sess.rejected(&reordered);
        assert_eq!(
            failed,
            ["session_binding", "event_log", "vtpm_event_replay", "boot_quote_event_replay"],
            "{why}"
        );
    });
}

#[test]
fn a_quote_from_another_ak_or_over_a_stale_nonce_is_rejected() {
    let s = Scenario::start(with_vtpm());
    let other = Scenario::start(with_vtpm());
    runtime().block_on(async {
        let first = session(&s).await;
        let second = session(&s).await;
        assert_ne!(first.nonce, second.nonce);

        // The quote of an earlier session (a replay): only the nonce gives it away.
        let mut stale = second.evidence.clone();
        stale.vtpm = first.evidence.vtpm.clone();
        let (failed, why) = second.rejected(&stale);
        assert_eq!(failed, ["vtpm_quote_nonce"], "{why}");
        assert!(why.contains(&format!("vtpm_quote_nonce: expected {}", hex::encode(second.nonce))), "{why}");

        // Another vTPM's quote over this very nonce: another AK signed it.
        stale.vtpm = evidence_over(&other, &second.nonce).await.vtpm;
        let (failed, why) = second.rejected(&stale);
        assert!(failed.contains(&"vtpm_quote_signature"), "{why}");
        assert!(!failed.contains(&"vtpm_quote_nonce"), "{why}");
        assert!(why.contains("does not verify under the attestation key"), "{why}");

        // No quote at all, where the policy requires one.
        let mut none = second.evidence.clone();
        none.vtpm = VtpmEvidence::Unavailable { reason: "it broke".into() };
        let (failed, why) = second.rejected(&none);
        assert_eq!(failed, ["vtpm"], "{why}");
        assert!(why.contains("found none: it broke"), "{why}");
    });
}

/// Session evidence of `s`'s agent over a nonce chosen by the caller.
async fn evidence_over(s: &Scenario, nonce: &[u8; 32]) -> SessionEvidence {
    let hs = parse_agent_args(s.agent_args(None)).handshake().await.map_err(|e| e.to_string()).unwrap();
    let mut agent = hs.into_agent().await.unwrap();
    agent.session_evidence(nonce).await.unwrap()
}

#[test]
fn the_clients_policy_decides_about_an_agent_without_vtpm() {
    // vtpm = off: accepted by default, with the reason shown.
    let s = Scenario::start(Options::default());
    let o = s.run("attest", None, &["--events"]);
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("vTPM: off in the agent's configuration"), "{text}");
    assert!(text.contains("event log (1 events"), "{text}");
    // ... and rejected, with the reason, by a policy that requires a vTPM.
    let strict = s.dir.path().join("strict.json");
    cvm_tests::write_pinned_policy(&strict, serde_json::json!({"require_vtpm": true}));
    let o = s.run_with_policy("attest", None, &strict, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rejected: vtpm: expected a vTPM quote (the policy sets require_vtpm), found none: off"),
        "{err}"
    );
}

#[test]
fn vtpm_required_but_missing_stops_the_agent_and_optional_goes_on() {
    let s = Scenario::start(Options::default());
    let d = s.dir.path();
    // Nothing listens on port 1 of loopback.
    let tcti = ("CVM_TPM_TCTI", "swtpm:host=127.0.0.1,port=1");
    let err = start_agent_env(d, &d.join("manifest.json"), &d.join("w1"), &[("CVM_VTPM", "required"), tcti])
        .expect_err("the agent must refuse to start");
    assert!(err.contains("connecting") && err.contains("vtpm = required: refusing to start"), "{err}");

    let (mut child, log, addr) =
        start_agent_env(d, &d.join("manifest.json"), &d.join("w2"), &[("CVM_VTPM", "optional"), tcti])
            .unwrap();
    assert!(log.lock().unwrap().contains("going on without a vTPM (vtpm = optional)"));
    let mut args = s.agent_args(None);
    args[1] = addr.to_string();
    let mut cmd = vec!["attest".to_owned()];
    cmd.extend(args);
    let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let o = cvmctl(&refs);
    let _ = child.kill();
    let _ = child.wait();
    assert_exit(&o, exit_codes::OK);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("vTPM            none (vTPM (swtpm:host=127.0.0.1,port=1) connecting"),
        "{}",
        out(&o)
    );
}
