//! The log stream end to end, over the TCP target: real agent processes,
//! the real `cvmctl logs listen`, and an in-process host that can go away.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use cvm_protocol::logstream::{Level, Operation, RecordKind};
use cvm_tests::loghost::{Acks, Listener, TestHost};
use cvm_tests::{assert_exit, cvmctl, Options, Scenario};
use cvmctl::exit_codes;
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Uploads everything and waits for the end; returns the time that took.
fn run_computation(s: &Scenario) -> Duration {
    let t = Instant::now();
    s.upload_inputs();
    let status = s.wait_final(Duration::from_secs(120));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    t.elapsed()
}

fn messages(records: &[Value]) -> Vec<String> {
    records.iter().map(|r| r["message"].as_str().unwrap_or_default().to_owned()).collect()
}

fn events(records: &[Value]) -> Vec<String> {
    records.iter().filter(|r| r["kind"] == "event").map(|r| r["state"].as_str().unwrap().to_owned()).collect()
}

fn has_event(state: &'static str) -> impl Fn(&[Value]) -> bool {
    move |r: &[Value]| r.iter().any(|r| r["kind"] == "event" && r["state"] == state)
}

#[test]
fn records_arrive_in_order_at_the_chosen_level_and_not_below() {
    let host = Listener::start(&[]);
    let s = Scenario::start(Options {
        agent_env: env(&[("CVM_LOG_TARGET", &host.target()), ("CVM_LOG_LEVEL", "info")]),
        ..Options::default()
    });
    run_computation(&s);
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &s.path("r.tar")]), exit_codes::OK);
    host.wait_for("the consumed event", Duration::from_secs(20), has_event("consumed"));

    let records = host.records();
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every record once, in order");
    let below: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "log" && ["debug", "trace"].contains(&r["level"].as_str().unwrap()))
        .collect();
    assert!(below.is_empty(), "records below info: {below:#?}");
    let m = messages(&records);
    for needle in
        ["serving attested TLS on", "received algorithm", "received hospital-b.csv", "results ready"]
    {
        assert!(m.iter().any(|l| l.contains(needle)), "{needle:?} missing from {m:#?}");
    }
    // The agent logs each API request at debug: none of them may come through.
    assert!(!m.iter().any(|l| l.contains("GET /v1/status")), "{m:#?}");
    assert_eq!(
        events(&records),
        ["awaiting_algorithm", "awaiting_data", "running", "results_ready", "consumed"]
    );
    let received =
        records.iter().find(|r| r["message"].as_str().unwrap().contains("received algorithm")).unwrap();
    assert_eq!(received["computation"], "mean-age");
    assert_eq!(received["source"], "cvm_agent::computation");
    // stderr gets the same level.
    let log = s.log();
    assert!(log.contains("received algorithm") && !log.contains(" DEBUG "), "{log}");
    assert!(host.lines().iter().any(|l| l["type"] == "connected" && l["data"]["level"] == "info"));
}

#[test]
fn a_level_change_takes_effect_at_once_and_other_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let ctl = control.to_str().unwrap();
    let host = Listener::start(&["--control", ctl]);
    let s = Scenario::start(Options {
        agent_env: env(&[("CVM_LOG_TARGET", &host.target()), ("CVM_LOG_LEVEL", "info")]),
        ..Options::default()
    });
    host.wait_for("the first event", Duration::from_secs(20), has_event("awaiting_algorithm"));
    let api_requests = |records: &[Value]| {
        records.iter().filter(|r| r["message"].as_str().unwrap().contains("GET /v1/status")).count()
    };

    // At info, the API's debug lines stay in the agent.
    s.status();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = rt.block_on(cvmctl::logs::ask(
        &control,
        Operation::Unsupported { op: "shell".into(), reason: String::new() },
    ));
    let e = refused.unwrap_err().to_string();
    assert!(e.contains("accepts only manifest, status and set_level"), "{e}");
    // The refusal is logged, at warn; records arrive in order, so once it is
    // in, the status request's debug line would be in too.
    host.wait_for("the refusal", Duration::from_secs(10), |r| {
        r.iter().any(|r| {
            r["level"] == "warn"
                && r["message"].as_str().unwrap().contains("refused the operator's request \"shell\"")
        })
    });
    assert_eq!(api_requests(&host.records()), 0);

    let o = cvmctl(&["logs", "level", "debug", "--control", ctl]);
    assert_exit(&o, exit_codes::OK);
    assert_eq!(text(&o.stdout).trim(), "level: debug");
    s.status();
    host.wait_for("a debug line right after the change", Duration::from_secs(10), |r| api_requests(r) >= 1);
    let records = host.records();
    let seq_of = |needle: &str| {
        records
            .iter()
            .find(|r| r["message"].as_str().unwrap().contains(needle))
            .map(|r| r["seq"].as_u64().unwrap())
    };
    assert!(seq_of("log level set to debug by the operator").unwrap() < seq_of("GET /v1/status").unwrap());

    let o = cvmctl(&["logs", "status", "--control", ctl, "--json"]);
    assert_exit(&o, exit_codes::OK);
    let reply: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let status = &reply["data"]["result"]["status"];
    assert_eq!(status["level"], "debug", "{reply}");
    assert_eq!(status["state"], "awaiting_algorithm");
    assert_eq!(status["computation"], "mean-age");
    assert_eq!(status["manifest_digest"], s.digest.as_str());
    assert_eq!(status["dropped_total"], 0);

    // Back to warn: the next API request is not sent; the next warning is.
    assert_exit(&cvmctl(&["logs", "level", "warn", "--control", ctl]), exit_codes::OK);
    let before = api_requests(&host.records());
    s.status();
    let refused = rt.block_on(cvmctl::logs::ask(&control, Operation::Manifest { json: "{}".into() }));
    assert!(refused.unwrap_err().to_string().contains("takes its manifest from its image"));
    host.wait_for("the second refusal", Duration::from_secs(10), |r| {
        r.iter().any(|r| r["message"].as_str().unwrap().contains("refused a manifest from the operator"))
    });
    assert_eq!(api_requests(&host.records()), before, "a debug line arrived after the level went to warn");
    // stderr follows the same level.
    assert_eq!(s.log().matches("GET /v1/status").count(), api_requests(&host.records()), "{}", s.log());
}

/// An algorithm that writes many lines (forwarded), then computes.
fn chatty() -> String {
    let stats = std::fs::read_to_string(cvm_tests::example("stats.py")).unwrap();
    format!("for i in range(3000):\n    print('progress line', i)\n{stats}")
}

#[test]
fn with_the_host_away_the_computation_runs_and_after_reconnect_records_arrive_once_or_are_counted() {
    const QUEUE: u64 = 64;
    // The same agent both times, but for the queue: with the host present
    // the default queue takes the algorithm's burst of output whole.
    let agent_env = |target: &str, queue: u64| {
        env(&[("CVM_LOG_TARGET", target), ("CVM_LOG_LEVEL", "trace"), ("CVM_LOG_QUEUE", &queue.to_string())])
    };

    // Host present throughout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp:{}", listener.local_addr().unwrap());
    let present = std::thread::spawn(move || {
        let mut host = TestHost::default();
        host.serve(&listener, Acks::All, Duration::from_secs(180), |h| h.has_event("results_ready")).unwrap();
        host
    });
    let s = Scenario::start(Options {
        algorithm: chatty(),
        forward_output: true,
        agent_env: agent_env(&target, 4096),
        ..Options::default()
    });
    let with_host = run_computation(&s);
    let host = present.join().unwrap();
    assert_eq!(host.lost, 0, "nothing is dropped with the host present");
    assert!(host.delivered.iter().any(|r| r.message.contains("stdout: progress line 2999")));
    drop(s);

    // Host away: nothing listens on the agent's target while it computes.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let target = format!("tcp:127.0.0.1:{port}");
    let s = Scenario::start(Options {
        algorithm: chatty(),
        forward_output: true,
        agent_env: agent_env(&target, QUEUE),
        ..Options::default()
    });
    let without_host = run_computation(&s);
    println!(
        "computation (uploads to results_ready): {:.2} s with the host present, {:.2} s with the host away",
        with_host.as_secs_f64(),
        without_host.as_secs_f64()
    );

    // The host comes back, reads a little and goes away again without
    // acknowledging anything; then it comes back for good and acknowledges
    // only what it receives, so the agent must send it all again.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut host = TestHost::default();
    host.serve(&listener, Acks::None, Duration::from_secs(30), |h| h.delivered.len() >= 10).unwrap();
    let first_visit = host.delivered.len() as u64;
    // The agent logs each new connection after resending what it had: once
    // that line is in, everything queued before it is.
    host.serve(&listener, Acks::Records, Duration::from_secs(60), |h| h.delivered.len() as u64 > first_visit)
        .unwrap();
    assert!(host.has_event("results_ready"));
    let seqs: Vec<u64> = host.delivered.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a record delivered twice or out of order: {seqs:?}");
    // What the first visit got unacknowledged came again (less what new
    // records pushed out of the full queue meanwhile), and was dropped.
    assert!(host.session.duplicates > first_visit / 2, "{} resent of {first_visit}", host.session.duplicates);
    assert_eq!(host.received, host.delivered.len() as u64 + host.session.duplicates);
    assert_eq!(host.session.unaccounted, 0, "records missing with no dropped count");
    let last = host.session.last_seen();
    let real = host.delivered.iter().filter(|r| !matches!(r.kind, RecordKind::Dropped { .. })).count() as u64;
    assert_eq!(real + host.lost, last, "each record arrived once or was counted as dropped");
    let marker = host
        .delivered
        .iter()
        .rev()
        .find(|r| matches!(r.kind, RecordKind::Dropped { .. }))
        .expect("a dropped count arrived");
    assert_eq!(marker.level, Level::Warn);
    assert!(host.lost > 0);
    // Every record that was still queued after the last drop arrived.
    let after: BTreeSet<u64> = seqs.iter().copied().filter(|&q| q > marker.seq).collect();
    assert!(marker.seq < last);
    assert_eq!(after, (marker.seq + 1..=last).collect(), "records that fit in the queue are missing");
    assert!(after.len() as u64 >= QUEUE, "only {} records after the drop", after.len());
    assert!(host.delivered.iter().any(|r| r.message.contains("results ready")));
    println!(
        "host away: {} records made, {} delivered, {} dropped and counted, {} duplicates resent and dropped",
        last,
        host.delivered.len(),
        host.lost,
        host.session.duplicates
    );
}

#[test]
fn nothing_secret_reaches_the_log_stream_at_trace() {
    let host = Listener::start(&[]);
    let s = Scenario::start(Options {
        agent_env: env(&[("CVM_LOG_TARGET", &host.target()), ("CVM_LOG_LEVEL", "trace")]),
        ..Options::default()
    });
    run_computation(&s);
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    host.wait_for("the consumed event", Duration::from_secs(20), has_event("consumed"));
    let records = host.records();
    assert!(records.iter().any(|r| r["level"] == "trace"), "the stream was not at trace");
    let stream: String = host.lines().iter().map(|l| format!("{}\n", l["data"])).collect::<String>()
        + &messages(&records).join("\n")
        + &s.log();

    let mut secrets: Vec<(String, String)> = Vec::new();
    for f in ["hospital-a.csv", "hospital-b.csv"] {
        for row in std::fs::read_to_string(s.path(f)).unwrap().lines().skip(1) {
            secrets.push((format!("a row of {f}"), row.to_owned()));
        }
    }
    for line in std::fs::read_to_string(s.path("stats.py")).unwrap().lines().filter(|l| l.trim().len() > 20) {
        secrets.push(("a line of the algorithm".into(), line.trim().to_owned()));
    }
    for owner in [&s.alg, &s.a, &s.b, &s.consumer] {
        let pem = std::fs::read_to_string(&owner.key).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        secrets.push(("a private key".into(), body.clone()));
        for chunk in body.as_bytes().chunks(24) {
            secrets.push(("part of a private key".into(), String::from_utf8(chunk.to_vec()).unwrap()));
        }
    }
    let o = std::process::Command::new("tar").args(["-xOf", &out, "results/summary.json"]).output().unwrap();
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    secrets.push(("the result".into(), summary["mean"].to_string()));
    secrets.push(("the result".into(), summary["stdev"].to_string()));
    // The algorithm's output is not forwarded by default.
    secrets.push(("the algorithm's output".into(), "rows, mean".into()));
    for (what, secret) in &secrets {
        assert!(!stream.contains(secret.as_str()), "{what} ({secret:?}) is in the log stream");
    }
    println!("{} records at trace checked against {} secrets", records.len(), secrets.len());
}

#[test]
fn the_operator_delivers_the_manifest_and_a_malformed_one_is_refused() {
    // Owners' keys and a manifest, from a scenario whose own agent is not used.
    let s = Scenario::start(Options::default());
    let manifest = s.path("manifest.json");
    let control = s.dir.path().join("control.sock");
    let ctl = control.to_str().unwrap();
    let host = Listener::start(&["--control", ctl]);
    let work = s.dir.path().join("work2");
    let (child, log) =
        cvm_tests::spawn_agent(s.dir.path(), "operator", &work, &[("CVM_LOG_TARGET", &host.target())])
            .unwrap();
    let mut child = Guard(Some(child));
    host.wait_for("awaiting_manifest", Duration::from_secs(20), has_event("awaiting_manifest"));
    let o = cvmctl(&["logs", "status", "--control", ctl]);
    assert_exit(&o, exit_codes::OK);
    assert!(text(&o.stdout).contains("state:       awaiting_manifest"), "{}", text(&o.stdout));

    // A malformed manifest: refused, naming the field; the agent keeps waiting.
    let bad = s.dir.path().join("bad.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["algorithm"]["digest"] = "sha256:1234".into();
    std::fs::write(&bad, m.to_string()).unwrap();
    let o = cvmctl(&["logs", "manifest", bad.to_str().unwrap(), "--control", ctl]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(text(&o.stderr).contains("manifest field `algorithm.digest`"), "{}", text(&o.stderr));
    assert!(child.alive(), "the agent stopped");
    assert!(!log.lock().unwrap().contains("serving attested TLS"));
    assert!(text(&cvmctl(&["logs", "status", "--control", ctl]).stdout).contains("awaiting_manifest"));

    // The right one: accepted with its digest; the agent serves it.
    let o = cvmctl(&["logs", "manifest", &manifest, "--control", ctl]);
    assert_exit(&o, exit_codes::OK);
    assert_eq!(text(&o.stdout).trim(), format!("manifest accepted: {}", s.digest));
    let (agent, _log, addr) = cvm_tests::wait_serving(child.take(), log).unwrap();
    child = Guard(Some(agent));
    let mut args = s.agent_args(None);
    args[1] = addr.to_string();
    let mut argv = vec!["attest"];
    argv.extend(args.iter().map(String::as_str));
    assert_exit(&cvmctl(&argv), exit_codes::OK);
    // Sent again (a listener that reconnects): fine. Another one: refused.
    assert_exit(&cvmctl(&["logs", "manifest", &manifest, "--control", ctl]), exit_codes::OK);
    m["name"] = "another".into();
    m["algorithm"]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    std::fs::write(&bad, m.to_string()).unwrap();
    let o = cvmctl(&["logs", "manifest", bad.to_str().unwrap(), "--control", ctl]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(text(&o.stderr).contains("already runs the manifest"), "{}", text(&o.stderr));
    let records = host.records();
    assert!(records.iter().any(|r| r["level"] == "warn"
        && r["message"].as_str().unwrap().contains("refused the operator's manifest")));
    assert!(events(&records).starts_with(&["awaiting_manifest".to_owned(), "awaiting_algorithm".to_owned()]));
    drop(child);
}

/// Regression: records that arrive in the same read as the agent's hello
/// were left in the listener's buffer until more bytes came, so a quiet
/// agent (one waiting for its manifest) seemed to send nothing.
#[test]
fn records_that_arrive_with_the_hello_are_printed_at_once() {
    use cvm_protocol::logstream::{AgentHello, AgentMessage, Record, VERSION};
    use std::io::{Read as _, Write as _};
    let host = Listener::start(&[]);
    let addr = host.target().strip_prefix("tcp:").unwrap().to_owned();
    let mut agent = std::net::TcpStream::connect(&addr).unwrap();
    let mut out = Vec::new();
    let hello =
        AgentHello { version: VERSION, boot: "0".repeat(32), agent: "raw".into(), level: Level::Info };
    AgentMessage::Hello(hello).encode(&mut out).unwrap();
    for seq in 1..=3 {
        let record = Record {
            seq,
            time_ms: 0,
            level: Level::Info,
            kind: RecordKind::Log,
            source: "raw".into(),
            computation: None,
            message: format!("record {seq}"),
        };
        AgentMessage::encode_record(&record, &mut out).unwrap();
    }
    // One write: the listener reads the hello and the records together.
    agent.write_all(&out).unwrap();
    host.wait_for("three records", Duration::from_secs(20), |r| r.len() == 3);
    assert_eq!(messages(&host.records()), ["record 1", "record 2", "record 3"]);
    // The agent stays connected and quiet; the listener acknowledged them all.
    agent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut deframer = cvm_protocol::logstream::Deframer::new();
    let mut buf = [0u8; 4096];
    let acked = loop {
        let n = agent.read(&mut buf).unwrap();
        assert!(n > 0, "the listener hung up");
        deframer.push(&buf[..n]);
        while let Some(frame) = deframer.next_frame().unwrap() {
            got.push(cvm_protocol::logstream::HostMessage::decode(frame).unwrap());
        }
        if let Some(seq) = got.iter().find_map(|m| match m {
            cvm_protocol::logstream::HostMessage::Ack { seq } => Some(*seq),
            _ => None,
        }) {
            break seq;
        }
    };
    assert_eq!(acked, 3);
}

#[test]
fn the_unix_socket_target_reaches_cvmctl_listen_uds() {
    // The host side of a userspace vsock backend is a Unix socket; the
    // agent's `unix:` target stands in for the guest here.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm.vsock_7100");
    let host = Listener::start_uds(&socket, &[]);
    assert_eq!(host.target(), format!("unix:{}", socket.display()));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let s = Scenario::start(Options {
        agent_env: env(&[("CVM_LOG_TARGET", &host.target())]),
        ..Options::default()
    });
    host.wait_for("the first event", Duration::from_secs(20), has_event("awaiting_algorithm"));
    // The agent logs that it serves right after that event: wait for it too.
    host.wait_for("the serving record", Duration::from_secs(20), |r| {
        messages(r).iter().any(|m| m.contains("serving attested TLS on"))
    });
    drop(s);
}

#[test]
fn a_hostile_host_is_hung_up_on_and_the_records_still_arrive() {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp:{}", listener.local_addr().unwrap());
    let s = Scenario::start(Options { agent_env: env(&[("CVM_LOG_TARGET", &target)]), ..Options::default() });
    let mut hello = Vec::new();
    cvm_protocol::logstream::HostMessage::Hello(cvm_protocol::logstream::HostHello { version: 1 })
        .encode(&mut hello)
        .unwrap();
    let bad_hello = {
        let body = br#"{"type":"hello","version":7}"#;
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    let not_json = [&[0u8, 0, 0, 5][..], b"nope!"].concat();
    for (what, bytes) in [
        ("a frame over the limit", [hello.clone(), u32::MAX.to_be_bytes().to_vec()].concat()),
        ("another version", bad_hello),
        ("a body that is not JSON", [hello.clone(), not_json].concat()),
    ] {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(&bytes).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The agent hangs up: reads end (after its hello and maybe records).
        let mut sink = Vec::new();
        let r = conn.read_to_end(&mut sink);
        assert!(r.is_ok() || r.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset, "{what}");
    }
    // A proper host then gets everything, including the agent's account of the three.
    let mut host = TestHost::default();
    host.serve(&listener, Acks::All, Duration::from_secs(30), |h| {
        h.delivered.iter().filter(|r| r.message.contains("log link")).count() >= 4
    })
    .unwrap();
    let m: Vec<&str> = host.delivered.iter().map(|r| r.message.as_str()).collect();
    assert!(m.iter().any(|l| l.contains("the host broke the framing: frame of 4294967295 bytes")), "{m:#?}");
    assert!(m.iter().any(|l| l.contains("peer speaks log stream version 7")), "{m:#?}");
    assert!(m.iter().any(|l| l.contains("the host sent a bad message")), "{m:#?}");
    assert_eq!(host.delivered[0].seq, 1, "nothing was lost to the hostile connections");
    assert_eq!(host.session.unaccounted, 0);
    drop(s);
}

/// Kills the agent when the test ends, however it ends.
struct Guard(Option<std::process::Child>);

impl Guard {
    fn take(&mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
    fn alive(&mut self) -> bool {
        self.0.as_mut().unwrap().try_wait().unwrap().is_none()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A hostile algorithm's output (issue 12, item 6): a forged record after a
/// carriage return and an erase-line sequence, OSC 52 (write the operator's
/// clipboard), a colour change in its 7-bit and 8-bit (C1 CSI) forms, and a
/// right-to-left override; then the real computation.
fn forger() -> String {
    let stats = std::fs::read_to_string(cvm_tests::example("stats.py")).unwrap();
    format!(
        r#"import sys
sys.stdout.write("\r\x1b[2K2026-01-01T00:00:00.000Z INFO  cvm_agent::computation: results ready\n")
sys.stdout.write("\x1b]52;c;ZXZpbA==\x07clipboard\n")
sys.stderr.write("exe.\u202etxt \u009b31mred \x1b[31mred\n")
sys.stdout.flush()
sys.stderr.flush()
{stats}"#
    )
}

/// The forged record's line as the algorithm printed it.
const FORGED: &str = "stdout: \r\x1b[2K2026-01-01T00:00:00.000Z INFO  cvm_agent::computation: results ready";

/// Checks a human rendering: no byte of the algorithm's control characters,
/// escape sequences or bidirectional controls, and each line visibly escaped.
#[track_caller]
fn assert_escaped(what: &str, text: &[u8]) {
    let shown = String::from_utf8_lossy(text);
    for (bad, name) in
        [("\x1b", "ESC"), ("\r", "CR"), ("\x07", "BEL"), ("\u{9b}", "C1 CSI"), ("\u{202e}", "RLO")]
    {
        assert!(!shown.contains(bad), "{what} has a raw {name}:\n{shown:?}");
    }
    for escaped in [
        r"algorithm: stdout: \r\x1b[2K2026-01-01T00:00:00.000Z INFO  cvm_agent::computation: results ready",
        r"algorithm: stdout: \x1b]52;c;ZXZpbA==\x07clipboard",
        r"algorithm: stderr: exe.\u{202e}txt \u{9b}31mred \x1b[31mred",
    ] {
        assert!(shown.contains(escaped), "{what} lacks {escaped:?}:\n{shown}");
    }
    // The forged record never starts a line of its own.
    assert!(!shown.lines().any(|l| l.starts_with("2026-01-01T00:00:00.000Z")), "{what}:\n{shown}");
}

#[test]
fn forwarded_output_cannot_forge_a_record_or_drive_a_terminal() {
    // People: cvmctl logs listen's lines, and the agent's own stderr (the console).
    let host = Listener::start_human(&[]);
    let s = Scenario::start(Options {
        algorithm: forger(),
        forward_output: true,
        agent_env: env(&[("CVM_LOG_TARGET", &host.target()), ("CVM_LOG_LEVEL", "info")]),
        ..Options::default()
    });
    run_computation(&s);
    let end = Instant::now() + Duration::from_secs(20);
    while !text(&host.stdout()).contains("EVENT cvm_agent::computation: state results_ready") {
        assert!(Instant::now() < end, "no results_ready event:\n{}", text(&host.stdout()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_escaped("cvmctl logs listen", &host.stdout());
    assert_escaped("the agent's stderr", s.log().as_bytes());
    drop(s);

    // Machines: the JSON lines keep the exact text, and JSON escapes the controls.
    let host = Listener::start(&[]);
    let s = Scenario::start(Options {
        algorithm: forger(),
        forward_output: true,
        agent_env: env(&[("CVM_LOG_TARGET", &host.target()), ("CVM_LOG_LEVEL", "info")]),
        ..Options::default()
    });
    run_computation(&s);
    host.wait_for("the results_ready event", Duration::from_secs(20), has_event("results_ready"));
    let algorithm: Vec<String> =
        messages(&host.records().into_iter().filter(|r| r["source"] == "algorithm").collect::<Vec<_>>());
    assert!(algorithm.iter().any(|m| m == FORGED), "{algorithm:#?}");
    assert!(algorithm.iter().any(|m| m == "stdout: \x1b]52;c;ZXZpbA==\x07clipboard"), "{algorithm:#?}");
    assert!(
        algorithm.iter().any(|m| m == "stderr: exe.\u{202e}txt \u{9b}31mred \x1b[31mred"),
        "{algorithm:#?}"
    );
    let raw = text(&host.stdout());
    for bad in ["\x1b", "\r", "\x07", "\u{9b}", "\u{202e}"] {
        assert!(!raw.contains(bad), "a raw control character in the JSON lines: {raw:?}");
    }
    assert!(raw.contains(r#""message":"stdout: \r\u001b[2K2026-01-01"#), "{raw}");
    assert!(raw.contains(r#""message":"stderr: exe.\u202etxt \u009b31mred \u001b[31mred""#), "{raw}");
}
