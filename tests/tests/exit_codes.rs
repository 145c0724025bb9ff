//! Every cvmctl command that talks to an agent, against a real agent on
//! loopback: its exit code (by name, `cvmctl::exit_codes`) when it succeeds,
//! when the agent's evidence is rejected, when the agent refuses the request
//! or cannot be reached, and on bad usage; and its `--json` output parsed
//! with cvmctl's own types (`cvmctl::output::Message`) in each of those cases.
//! The exit-code table of docs/cvmctl.md is what these tests check.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::{Path, PathBuf};
use std::process::Output;

use cvm_tests::{assert_exit, cvmctl, stderr, write_pinned_policy, Options, Prepared, Scenario};
use cvmctl::exit_codes;
use cvmctl::output::{CheckOutcome, Message, Verdict};

/// Every stdout line, parsed as cvmctl's typed JSON lines.
fn messages(o: &Output) -> Vec<Message> {
    cvm_test_support::json_lines(o)
}

/// The `verdict` line that ends a verification's JSON.
fn verdict(o: &Output) -> Verdict {
    match messages(o).pop() {
        Some(Message::Verdict(v)) => v,
        other => panic!("the last line is no verdict: {other:?}\n{}", stderr(o)),
    }
}

/// A policy that pins a launch measurement the simulated platform does not report.
fn other_measurement(s: &Scenario) -> PathBuf {
    let path = s.dir.path().join("other-measurement.json");
    write_pinned_policy(&path, serde_json::json!({ "measurements": ["00".repeat(48)] }));
    path
}

/// `command` with the scenario's arguments, but aimed at a port nobody listens on.
fn unreachable(s: &Scenario, command: &str, key: Option<&cvm_tests::Owner>, extra: &[&str]) -> Output {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut args = vec![command.to_owned()];
    args.extend(
        s.agent_args(key).into_iter().map(|a| if a == s.addr.to_string() { closed.clone() } else { a }),
    );
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    cvmctl(&refs)
}

/// A rejected verification's JSON: only typed lines, the failed measurement
/// check among them, and a verdict that names the manifest and says no.
fn assert_rejected_json(o: &Output, s: &Scenario) {
    assert_exit(o, exit_codes::REJECTED);
    let lines = messages(o);
    assert!(
        lines.iter().any(
            |m| matches!(m, Message::Check(c) if c.name == "measurement" && c.outcome == CheckOutcome::Failed)
        ),
        "{lines:?}"
    );
    let v = verdict(o);
    assert!(!v.accepted && v.failed >= 1, "{v:?}");
    assert_eq!(v.manifest_digest.map(|d| d.to_string()), Some(s.digest.clone()));
}

#[test]
fn attest_exits_by_the_table_and_its_json_is_typed_even_when_rejected() {
    let s = Scenario::start(Options::default());
    let o = s.run("attest", None, &["--json"]);
    assert_exit(&o, exit_codes::OK);
    let lines = messages(&o);
    assert!(lines.iter().any(|m| matches!(m, Message::Sandbox(_))), "{lines:?}");
    let v = verdict(&o);
    assert!(v.accepted && v.failed == 0, "{v:?}");
    assert_eq!(v.manifest_digest.map(|d| d.to_string()), Some(s.digest.clone()));

    // Rejected: the same shape of verdict, and no text for people on stdout.
    assert_rejected_json(&s.run_with_policy("attest", None, &other_measurement(&s), &["--json"]), &s);
    let o = s.run_with_policy("attest", None, &other_measurement(&s), &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(stderr(&o).contains("cvmctl: rejected: measurement"), "{}", stderr(&o));

    // The agent cannot be reached: 3, and nothing on stdout.
    let o = unreachable(&s, "attest", None, &["--json"]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(messages(&o).is_empty());

    // Bad usage: 2.
    assert_exit(&s.run("attest", None, &["--no-such-flag"]), exit_codes::USAGE);
    let missing = s.path("no-such-policy.json");
    assert_exit(&s.run_with_policy("attest", None, Path::new(&missing), &["--json"]), exit_codes::USAGE);
}

#[test]
fn status_exits_by_the_table_and_its_json_is_typed_even_when_rejected() {
    let s = Scenario::start(Options::default());
    let o = s.run("status", Some(&s.consumer), &["--json"]);
    assert_exit(&o, exit_codes::OK);
    match messages(&o).as_slice() {
        [Message::Status(st)] => {
            assert_eq!(st.state.name(), "awaiting_algorithm");
            assert_eq!(st.manifest_digest.to_string(), s.digest);
        }
        other => panic!("{other:?}"),
    }
    assert_rejected_json(
        &s.run_with_policy("status", Some(&s.consumer), &other_measurement(&s), &["--json"]),
        &s,
    );
    assert_exit(&unreachable(&s, "status", None, &["--json"]), exit_codes::AGENT_ERROR);
    assert_exit(&s.run("status", None, &["--wait", "soon"]), exit_codes::USAGE);

    // A failed computation: 3, the status still printed, typed, and the reason on stderr.
    let s = Scenario::start(Options { algorithm: "import sys\nsys.exit(7)\n".into(), ..Options::default() });
    s.upload_inputs();
    let o = s.run("status", None, &["--json", "--wait", "30"]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    match messages(&o).as_slice() {
        [Message::Status(st)] => assert_eq!(st.state.name(), "failed"),
        other => panic!("{other:?}"),
    }
    assert!(
        stderr(&o).contains("cvmctl: the computation failed: the algorithm exited with code 7"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn uploads_and_results_exit_by_the_table() {
    let s = Scenario::start(Options::default());
    let stats = s.path("stats.py");
    let a_csv = s.path("hospital-a.csv");
    let out = s.path("results.tar");

    // Rejected evidence: 1, and nothing was sent.
    let other = other_measurement(&s);
    assert_exit(
        &s.run_with_policy("upload-algorithm", Some(&s.alg), &other, &[&stats]),
        exit_codes::REJECTED,
    );
    assert_exit(
        &s.run_with_policy("upload-dataset", Some(&s.a), &other, &["hospital-a.csv", &a_csv]),
        exit_codes::REJECTED,
    );
    assert_exit(
        &s.run_with_policy("results", Some(&s.consumer), &other, &["--out", &out]),
        exit_codes::REJECTED,
    );
    assert!(!s.log().contains("PUT /v1/"), "{}", s.log());

    // The agent refuses: 3, with the agent's code in the message.
    let o = s.run("upload-algorithm", Some(&s.consumer), &[&stats]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("the agent refused: 403 Forbidden (forbidden)"), "{}", stderr(&o));
    let o = s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &a_csv]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("(conflict)"), "{}", stderr(&o));
    let o = s.run("results", Some(&s.consumer), &["--out", &out]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("(not_ready)"), "{}", stderr(&o));
    let o = s.run("upload-artifact", Some(&s.alg), &["weights.bin", &stats]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("(unknown_input)"), "{}", stderr(&o));

    // Unreachable: 3.
    assert_exit(&unreachable(&s, "upload-algorithm", Some(&s.alg), &[&stats]), exit_codes::AGENT_ERROR);
    assert_exit(&unreachable(&s, "results", Some(&s.consumer), &["--out", &out]), exit_codes::AGENT_ERROR);

    // Bad usage: 2 (a missing file, a missing flag).
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("nope.py")]), exit_codes::USAGE);
    assert_exit(
        &s.run("upload-artifact", Some(&s.alg), &["weights.bin", &s.path("nope")]),
        exit_codes::USAGE,
    );
    assert_exit(&s.run("results", Some(&s.consumer), &[]), exit_codes::USAGE);

    // Success: 0, through to the results.
    s.upload_inputs();
    s.wait_final(std::time::Duration::from_secs(30));
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
}

#[test]
fn release_key_exits_by_the_table() {
    let prepare: cvm_tests::Prepare = Box::new(|p: &Prepared<'_>, m: &mut serde_json::Value| {
        let d = p.dir;
        let key = d.join("b-sealing.key");
        assert_exit(&cvmctl(&["keygen", "--sealing", "--out", key.to_str().unwrap()]), exit_codes::OK);
        let o = cvmctl(&[
            "seal",
            "--json",
            "--key-file",
            key.to_str().unwrap(),
            "--out",
            d.join("hospital-b.csv.sealed").to_str().unwrap(),
            d.join("hospital-b.csv").to_str().unwrap(),
        ]);
        assert_exit(&o, exit_codes::OK);
        let identity = match messages(&o).as_slice() {
            [Message::Sealed(id)] => serde_json::to_value(id).unwrap(),
            other => panic!("{other:?}"),
        };
        m["datasets"][1].as_object_mut().unwrap().remove("digest");
        m["datasets"][1]["sealed"] = identity;
        Vec::new()
    });
    let s = Scenario::start(Options { prepare: Some(prepare), ..Options::default() });
    let key = s.path("b-sealing.key");
    let args = ["--dataset", "hospital-b.csv", "--key-file", key.as_str()];

    assert_exit(
        &s.run_with_policy("release-key", Some(&s.b), &other_measurement(&s), &args),
        exit_codes::REJECTED,
    );
    assert_exit(&unreachable(&s, "release-key", Some(&s.b), &args), exit_codes::AGENT_ERROR);
    // The key of a dataset the manifest does not seal: the owner's mistake, nothing sent.
    let o = s.run("release-key", Some(&s.a), &["--dataset", "hospital-a.csv", "--key-file", &key]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("does not seal"), "{}", stderr(&o));
    assert_exit(&s.run("release-key", Some(&s.b), &["--key-file", &key]), exit_codes::USAGE);

    assert_exit(&s.run("release-key", Some(&s.b), &args), exit_codes::OK);
    // Twice: the agent refuses.
    let o = s.run("release-key", Some(&s.b), &args);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("(conflict)") && stderr(&o).contains("already released"), "{}", stderr(&o));
}

#[test]
fn keygen_seal_and_unseal_json_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).display().to_string();
    let o = cvmctl(&["keygen", "--json", "--out", &path("owner.pem")]);
    assert_exit(&o, exit_codes::OK);
    assert!(matches!(messages(&o).as_slice(), [Message::Key(k)] if !k.public_key.is_empty()));
    let o = cvmctl(&["keygen", "--sealing", "--json", "--out", &path("s.key")]);
    assert_exit(&o, exit_codes::OK);
    assert!(matches!(messages(&o).as_slice(), [Message::SealingKey(k)] if k.key_id.len() == 32));
    // An existing key is never overwritten: the user's mistake.
    assert_exit(&cvmctl(&["keygen", "--sealing", "--json", "--out", &path("s.key")]), exit_codes::USAGE);

    std::fs::write(path("plain"), b"some plaintext").unwrap();
    let o =
        cvmctl(&["seal", "--json", "--key-file", &path("s.key"), "--out", &path("sealed"), &path("plain")]);
    assert_exit(&o, exit_codes::OK);
    assert!(matches!(messages(&o).as_slice(), [Message::Sealed(id)] if id.size == 14), "{:?}", messages(&o));
    let open =
        |out: &str| cvmctl(&["unseal", "--key-file", &path("s.key"), "--out", &path(out), &path("sealed")]);
    assert_exit(&open("opened"), exit_codes::OK);
    let mut sealed = std::fs::read(path("sealed")).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    std::fs::write(path("sealed"), sealed).unwrap();
    let o = open("tampered");
    assert_exit(&o, exit_codes::REJECTED);
    assert!(stderr(&o).contains("no plaintext was written"), "{}", stderr(&o));
    assert_exit(&open("x"), exit_codes::REJECTED);
    assert_exit(
        &cvmctl(&["unseal", "--key-file", &path("nope"), "--out", &path("y"), &path("sealed")]),
        exit_codes::USAGE,
    );
}
