//! cvmctl as a user runs it: real files, the real binary, exit codes by name.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use cvm_test_support::{assert_exit, run, stderr, stdout};
use cvmctl::exit_codes;
use cvmctl::output::{Line, Verdict};

/// This crate's own cvmctl, the one cargo built for these tests.
fn cvmctl(args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_cvmctl"), args)
}

fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../evidence/testdata/amd").join(name)
}

fn json_lines(o: &Output) -> Vec<Line> {
    stdout(o).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

fn verdict(o: &Output) -> Verdict {
    let lines = json_lines(o);
    let last = lines.last().expect("output");
    assert_eq!(last.kind, "verdict");
    serde_json::from_value(last.data.clone()).expect("verdict")
}

fn failed_checks(o: &Output) -> Vec<String> {
    json_lines(o)
        .into_iter()
        .filter(|l| l.kind == "check" && l.data["status"] == "failed")
        .map(|l| l.data["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A dir with only the VCEK of a vector: the built-in roots must do the rest.
fn vcek_only_dir(vector_name: &str, file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(vector(vector_name).join(file), dir.path().join(file)).unwrap();
    dir
}

/// One simulated chain for the whole binary; other reports reuse it with --chain.
fn simulated() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        let o = cvmctl(&["report", "simulate", "--out", out, "--measurement", &"ab".repeat(48)]);
        assert_exit(&o, exit_codes::OK);
        dir
    })
    .path()
}

/// Simulates a report from the shared chain with extra arguments.
fn simulate(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let chain = simulated().join("simulated-chain.key");
    let mut args =
        vec!["report", "simulate", "--out", dir.path().to_str().unwrap(), "--chain", chain.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = cvmctl(&args);
    assert_exit(&o, exit_codes::OK);
    dir
}

fn verify_dir(dir: &Path, extra: &[&str]) -> Output {
    let report = dir.join("report.bin");
    let mut args =
        vec!["report", "verify", report.to_str().unwrap(), "--certs", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    cvmctl(&args)
}

#[test]
fn help_works_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["report", "--help"],
        vec!["report", "show", "--help"],
        vec!["report", "verify", "--help"],
        vec!["report", "simulate", "--help"],
    ] {
        let o = cvmctl(&args);
        assert_exit(&o, exit_codes::OK);
        assert!(stdout(&o).contains("Usage: cvmctl"), "{args:?}: {}", stdout(&o));
    }
}

#[test]
fn bad_usage_exits_2() {
    assert_exit(&cvmctl(&["report"]), exit_codes::USAGE);
    assert_exit(&cvmctl(&["report", "verify"]), exit_codes::USAGE);
    let report = vector("milan-virtee").join("report.bin");
    let o = cvmctl(&[
        "report",
        "verify",
        report.to_str().unwrap(),
        "--certs",
        "/nonexistent",
        "--at",
        "yesterday",
    ]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("RFC 3339"), "{}", stderr(&o));
}

#[test]
fn show_prints_every_field() {
    let report = vector("genoa-oak-v5").join("report.bin");
    let o = cvmctl(&["report", "show", report.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    let text = stdout(&o);
    for field in
        ["version", "policy", "measurement", "reported_tcb", "chip_id", "launch_mit_vector", "signature_s"]
    {
        assert!(text.lines().any(|l| l.starts_with(field)), "{field} missing:\n{text}");
    }
    assert!(text.contains("bootloader=10"), "{text}");

    let o = cvmctl(&["report", "show", report.to_str().unwrap(), "--json"]);
    assert_exit(&o, exit_codes::OK);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].kind, "report");
    let data = &lines[0].data;
    assert_eq!(data["version"], 5);
    assert_eq!(data["cpuid_fam_id"], 0x19);
    assert_eq!(data["reported_tcb"]["bootloader"], 10);
    assert_eq!(data["policy"]["debug"], false);
    let raw = std::fs::read(&report).unwrap();
    assert_eq!(data["measurement"], hex::encode(&raw[0x90..0xc0]));
}

#[test]
fn show_of_a_truncated_file_is_unreadable_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.bin");
    std::fs::write(&path, &std::fs::read(vector("milan-virtee").join("report.bin")).unwrap()[..1000])
        .unwrap();
    let o = cvmctl(&["report", "show", path.to_str().unwrap()]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("expected 1184 bytes, found 1000"), "{}", stderr(&o));
}

#[test]
fn real_milan_report_verifies_with_builtin_roots() {
    let certs = vcek_only_dir("milan-virtee", "vcek.der");
    let report = vector("milan-virtee").join("report.bin");
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.json");
    let o = cvmctl(&[
        "report",
        "verify",
        report.to_str().unwrap(),
        "--certs",
        certs.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--at",
        "2026-01-01T00:00:00Z",
    ]);
    assert_exit(&o, exit_codes::OK);
    assert!(stdout(&o).contains("ACCEPTED"), "{}", stdout(&o));
    assert!(stdout(&o).contains("PASS  ark_pinned"), "{}", stdout(&o));
}

#[test]
fn truncated_or_oversized_reports_are_rejected() {
    let certs = vcek_only_dir("milan-virtee", "vcek.der");
    let good = std::fs::read(vector("milan-virtee").join("report.bin")).unwrap();
    for len in [0usize, 1183, 1185, 2048] {
        let mut bytes = good.clone();
        bytes.resize(len, 0);
        std::fs::write(certs.path().join("report.bin"), &bytes).unwrap();
        let o = verify_dir(certs.path(), &[]);
        assert_exit(&o, exit_codes::REJECTED);
        assert_eq!(failed_checks(&o), ["report_format"]);
        let line = &json_lines(&o)[0];
        assert_eq!(line.data["found"], format!("report length: expected 1184 bytes, found {len}"));
    }
}

#[test]
fn genoa_root_for_a_milan_report_is_rejected() {
    let certs = vcek_only_dir("milan-virtee", "vcek.der");
    std::fs::copy(vector("genoa-oak-v5").join("ark.pem"), certs.path().join("ark.pem")).unwrap();
    std::fs::copy(vector("milan-virtee").join("report.bin"), certs.path().join("report.bin")).unwrap();
    let o = verify_dir(certs.path(), &["--at", "2026-01-01T00:00:00Z"]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(failed_checks(&o).contains(&"ark_pinned".to_owned()), "{}", stdout(&o));
    assert!(!verdict(&o).accepted);
}

#[test]
fn a_corrupt_certificate_is_a_rejection_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vcek.der"), b"not a certificate").unwrap();
    std::fs::copy(vector("milan-virtee").join("report.bin"), dir.path().join("report.bin")).unwrap();
    let o = verify_dir(dir.path(), &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert_eq!(failed_checks(&o), ["certificate_format"]);
    assert!(stdout(&o).contains("vcek.der: not an X.509 certificate"), "{}", stdout(&o));
}

#[test]
fn missing_inputs_and_bad_policies_are_usage_errors() {
    let report = vector("milan-virtee").join("report.bin");
    let empty = tempfile::tempdir().unwrap();
    let o =
        cvmctl(&["report", "verify", report.to_str().unwrap(), "--certs", empty.path().to_str().unwrap()]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("no VCEK certificate found"), "{}", stderr(&o));

    let certs = vcek_only_dir("milan-virtee", "vcek.der");
    let policy = certs.path().join("policy.json");
    std::fs::write(&policy, r#"{"vmpl": 0, "min_tcb": {"snp": "eight"}}"#).unwrap();
    let o = cvmctl(&[
        "report",
        "verify",
        report.to_str().unwrap(),
        "--certs",
        certs.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("policy field `min_tcb.snp`"), "{}", stderr(&o));

    let o = cvmctl(&["report", "show", "/nonexistent/report.bin"]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("cannot read /nonexistent/report.bin"), "{}", stderr(&o));
}

#[test]
fn vlek_report_verifies_only_inside_its_validity() {
    let certs = vcek_only_dir("milan-vlek-trustee", "vlek.der");
    std::fs::copy(vector("milan-vlek-trustee").join("report.bin"), certs.path().join("report.bin")).unwrap();
    assert_exit(&verify_dir(certs.path(), &["--at", "2025-06-01T00:00:00Z"]), exit_codes::OK);
    let o = verify_dir(certs.path(), &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert_eq!(failed_checks(&o), ["vek_validity"]);
}

#[test]
fn simulated_report_verifies_only_with_its_ark_trusted() {
    let dir = simulated();
    let o = verify_dir(dir, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert_eq!(failed_checks(&o), ["ark_pinned"]);

    let ark = dir.join("ark.pem");
    let o = verify_dir(dir, &["--trust-ark", ark.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    let v = verdict(&o);
    assert!(v.accepted);
    assert_eq!(v.product.as_deref(), Some("Milan"));
}

#[test]
fn simulated_reports_break_the_rules_they_are_told_to() {
    let ark = simulated().join("ark.pem");
    let ark = ark.to_str().unwrap();
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("p.json");
    std::fs::write(
        &policy,
        format!(r#"{{"vmpl": 0, "measurements": ["{}"], "report_data": "{}", "min_tcb": {{"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}}}"#, "ab".repeat(48), "cd".repeat(64)),
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let good = ["--measurement", &"ab".repeat(48), "--report-data", &"cd".repeat(64)];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--policy-bits", "0xb0000"], "debug"),
        (vec!["--vmpl", "1"], "vmpl"),
        (vec!["--tcb", "bootloader=2,tee=0,snp=8,microcode=115"], "min_tcb"),
        (vec!["--reported-tcb", "bootloader=3,tee=0,snp=9,microcode=115"], "tcb_extensions"),
        (
            vec!["--vek-not-after", "2025-01-01T00:00:00Z", "--vek-not-before", "2024-01-01T00:00:00Z"],
            "vek_validity",
        ),
        (
            vec!["--vek-not-before", "2099-01-01T00:00:00Z", "--vek-not-after", "2100-01-01T00:00:00Z"],
            "vek_validity",
        ),
    ];
    let dir = simulate(&good);
    assert_exit(&verify_dir(dir.path(), &["--trust-ark", ark, "--policy", policy]), exit_codes::OK);
    for (extra, check) in cases {
        let mut args = good.to_vec();
        args.extend_from_slice(&extra);
        let dir = simulate(&args);
        let o = verify_dir(dir.path(), &["--trust-ark", ark, "--policy", policy]);
        assert_exit(&o, exit_codes::REJECTED);
        assert_eq!(failed_checks(&o), [check], "{extra:?}");
    }
    // Wrong measurement and REPORT_DATA: a report made for another guest.
    let dir = simulate(&["--measurement", &"ac".repeat(48), "--report-data", &"cd".repeat(63)]);
    let o = verify_dir(dir.path(), &["--trust-ark", ark, "--policy", policy]);
    assert_eq!(failed_checks(&o), ["measurement", "report_data"]);
}

#[test]
fn simulate_rejects_bad_field_values() {
    let dir = tempfile::tempdir().unwrap();
    let chain = simulated().join("simulated-chain.key");
    for (args, msg) in [
        (vec!["--measurement", "abcd"], "--measurement: expected 48 bytes"),
        (vec!["--report-data", "zz"], "--report-data: not hex"),
        (vec!["--version", "4"], "--version: expected 2, 3 or 5, found 4"),
    ] {
        let mut all = vec![
            "report",
            "simulate",
            "--out",
            dir.path().to_str().unwrap(),
            "--chain",
            chain.to_str().unwrap(),
        ];
        all.extend_from_slice(&args);
        let o = cvmctl(&all);
        assert_exit(&o, exit_codes::USAGE);
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn a_reused_chain_keeps_its_ark() {
    let dir = simulate(&[]);
    let a = std::fs::read(dir.path().join("ark.pem")).unwrap();
    let b = std::fs::read(simulated().join("ark.pem")).unwrap();
    assert_eq!(a, b);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("simulated-chain.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// Everything in `dir`, hidden files included.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn seal_and_unseal_round_trip_and_print_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.key");
    let o = cvmctl(&["keygen", "--sealing", "--out", key.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    let key_id = stdout(&o).trim().to_owned();
    assert_eq!(key_id.len(), 32);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // An existing key is never overwritten.
    assert_exit(&cvmctl(&["keygen", "--sealing", "--out", key.to_str().unwrap()]), exit_codes::USAGE);

    let plain: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("p.bin"), &plain).unwrap();
    let o = cvmctl(&[
        "seal",
        "--key-file",
        key.to_str().unwrap(),
        "--out",
        d.join("p.sealed").to_str().unwrap(),
        "--chunk-size",
        "4096",
        "--json",
        d.join("p.bin").to_str().unwrap(),
    ]);
    assert_exit(&o, exit_codes::OK);
    let line = &json_lines(&o)[0];
    assert_eq!(line.kind, "sealed");
    assert_eq!(
        (line.data["key_id"].as_str().unwrap(), line.data["size"].as_u64().unwrap()),
        (key_id.as_str(), 70_000)
    );
    assert_eq!(std::fs::metadata(d.join("p.sealed")).unwrap().len(), 64 + 70_000 + 18 * 16);

    let o = cvmctl(&[
        "unseal",
        "--key-file",
        key.to_str().unwrap(),
        "--out",
        d.join("p.out").to_str().unwrap(),
        d.join("p.sealed").to_str().unwrap(),
    ]);
    assert_exit(&o, exit_codes::OK);
    assert_eq!(std::fs::read(d.join("p.out")).unwrap(), plain);
    assert_eq!(listing(d), ["k.key", "p.bin", "p.out", "p.sealed"]);
}

#[test]
fn unseal_of_a_bad_stream_writes_no_plaintext_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.key");
    let other = d.join("other.key");
    assert_exit(&cvmctl(&["keygen", "--sealing", "--out", key.to_str().unwrap()]), exit_codes::OK);
    assert_exit(&cvmctl(&["keygen", "--sealing", "--out", other.to_str().unwrap()]), exit_codes::OK);
    std::fs::write(d.join("p.bin"), vec![b'x'; 20_000]).unwrap();
    let sealed = d.join("p.sealed");
    let o = cvmctl(&[
        "seal",
        "--key-file",
        key.to_str().unwrap(),
        "--out",
        sealed.to_str().unwrap(),
        "--chunk-size",
        "4096",
        d.join("p.bin").to_str().unwrap(),
    ]);
    assert_exit(&o, exit_codes::OK);
    std::fs::remove_file(d.join("p.bin")).unwrap();
    let good = std::fs::read(&sealed).unwrap();
    let mut flipped = good.clone();
    flipped[64 + 4 * (4096 + 16) + 10] ^= 1; // the last chunk
    let cases: [(&str, Vec<u8>, &Path, &str); 4] = [
        ("flipped", flipped, &key, "chunk 4 failed authentication"),
        ("cut", good[..good.len() - 100].to_vec(), &key, "truncated"),
        (
            "last-chunk-dropped",
            good[..64 + 4 * (4096 + 16)].to_vec(),
            &key,
            "truncated: the stream ends in chunk 4 of 5",
        ),
        ("wrong-key", good.clone(), &other, "not to the given key"),
    ];
    for (name, bytes, k, message) in cases {
        let input = d.join(format!("{name}.sealed"));
        std::fs::write(&input, bytes).unwrap();
        let out = d.join(format!("{name}.out"));
        let o = cvmctl(&[
            "unseal",
            "--key-file",
            k.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert_exit(&o, exit_codes::REJECTED);
        assert!(
            stderr(&o).contains(message) && stderr(&o).contains("no plaintext was written"),
            "{name}: {}",
            stderr(&o)
        );
        assert!(!out.exists(), "{name}: plaintext written");
        std::fs::remove_file(&input).unwrap();
    }
    // Nothing else appeared either: no temporary file, hidden or not.
    assert_eq!(listing(d), ["k.key", "other.key", "p.sealed"]);
}

/// A loopback TCP listener standing in for an agent: it counts the
/// connections it gets and closes each one at once.
struct Tripwire {
    addr: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&hits);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Tripwire { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Every command that talks to an agent, with what it needs besides the agent arguments.
fn agent_commands(dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    let file = dir.join("input.bin");
    std::fs::write(&file, b"owner's bytes").unwrap();
    let sealing = dir.join("sealing.key");
    if !sealing.exists() {
        assert_exit(&cvmctl(&["keygen", "--sealing", "--out", sealing.to_str().unwrap()]), exit_codes::OK);
    }
    let f = file.display().to_string();
    vec![
        ("attest", vec![]),
        ("status", vec![]),
        ("results", vec!["--out".into(), dir.join("results.tar").display().to_string()]),
        ("upload-algorithm", vec![f.clone()]),
        ("upload-dataset", vec!["data.csv".into(), f.clone()]),
        ("upload-artifact", vec!["weights.bin".into(), f]),
        ("release-key", vec!["--algorithm".into(), "--key-file".into(), sealing.display().to_string()]),
    ]
}

fn run_against(cmd: &str, addr: &str, policy: Option<&Path>, key: &Path, extra: &[String]) -> Output {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut args = vec![cmd, "--agent", addr, "--manifest-digest", &digest, "--key", key.to_str().unwrap()];
    if let Some(p) = policy {
        args.extend(["--policy", p.to_str().unwrap()]);
    }
    args.extend(extra.iter().map(String::as_str));
    cvmctl(&args)
}

#[test]
fn no_command_connects_to_an_agent_without_a_pinned_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("owner.key");
    assert_exit(&cvmctl(&["keygen", "--out", key.to_str().unwrap()]), exit_codes::OK);
    std::fs::write(d.join("empty.json"), "{}").unwrap();
    std::fs::write(d.join("unpinned.json"), r#"{"measurements": [], "vmpl": 0, "require_vtpm": true}"#)
        .unwrap();
    let agent = Tripwire::start();
    for (cmd, extra) in agent_commands(d) {
        for policy in [None, Some(d.join("empty.json")), Some(d.join("unpinned.json"))] {
            let o = run_against(cmd, &agent.addr, policy.as_deref(), &key, &extra);
            assert_exit(&o, exit_codes::USAGE);
            let err = stderr(&o);
            for needle in [
                "pins no launch measurement",
                "no connection was made and nothing was sent",
                "`cvmctl measure`",
                "--insecure-any-measurement",
            ] {
                assert!(err.contains(needle), "{cmd} {policy:?}: {needle:?} missing in {err}");
            }
            match &policy {
                Some(p) => assert!(err.contains(&format!("the policy {}", p.display())), "{err}"),
                None => assert!(err.contains("no --policy was given"), "{err}"),
            }
        }
        assert_eq!(agent.hits(), 0, "{cmd} connected to the agent");
    }
}

#[test]
fn insecure_any_measurement_connects_and_warns_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("owner.key");
    assert_exit(&cvmctl(&["keygen", "--out", key.to_str().unwrap()]), exit_codes::OK);
    let agent = Tripwire::start();
    let insecure = ["--insecure-any-measurement".to_owned()];
    for (n, (cmd, extra)) in agent_commands(d).into_iter().enumerate() {
        let extra: Vec<String> = insecure.iter().chain(&extra).cloned().collect();
        let o = run_against(cmd, &agent.addr, None, &key, &extra);
        // The stand-in closes the connection: the handshake fails (exit 3), after connecting.
        assert_exit(&o, exit_codes::AGENT_ERROR);
        let err = stderr(&o);
        assert!(
            err.contains(
                "warning: --insecure-any-measurement: the agent is accepted whatever its launch measurement"
            ),
            "{cmd}: {err}"
        );
        assert_eq!(agent.hits(), n + 1, "{cmd} did not connect");
    }
    // With a pinned measurement the flag changes nothing, and says so.
    std::fs::write(d.join("pinned.json"), format!(r#"{{"measurements": ["{}"]}}"#, "ab".repeat(48))).unwrap();
    let o = run_against("attest", &agent.addr, Some(&d.join("pinned.json")), &key, &insecure);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(
        stderr(&o).contains("--insecure-any-measurement has no effect: the policy pins 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_help_explains_the_pinned_measurement() {
    for cmd in [
        "attest",
        "upload-algorithm",
        "upload-dataset",
        "upload-artifact",
        "release-key",
        "status",
        "results",
    ] {
        let o = cvmctl(&[cmd, "--help"]);
        assert_exit(&o, exit_codes::OK);
        let text = stdout(&o);
        assert!(text.contains("--insecure-any-measurement"), "{cmd}: {text}");
        assert!(text.contains("cvmctl measure"), "{cmd}: {text}");
    }
}

fn azure(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../evidence/testdata/azure").join(name)
}

/// `report verify` of the real Azure vector's HCL report, with `hcl` in its
/// place, the VCEK, and its quote (`quote`, `sig`) over the first 48 bytes
/// of the claims' user data.
fn verify_azure(hcl: &Path, quote: &Path, sig: &Path, extra: &[&str]) -> Output {
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(azure("vcek.der"), certs.path().join("vcek.der")).unwrap();
    let nonce = hex::encode(&std::fs::read(azure("quote.msg")).unwrap()[44..92]);
    let mut args = vec!["report", "verify", hcl.to_str().unwrap(), "--certs", certs.path().to_str().unwrap()];
    args.extend(["--tpm-quote", quote.to_str().unwrap(), "--tpm-signature", sig.to_str().unwrap()]);
    args.extend(["--nonce", &nonce]);
    args.extend(extra);
    cvmctl(&args)
}

#[test]
fn the_real_azure_vector_verifies_and_names_its_flavour() {
    let o = verify_azure(&azure("hcl-report.bin"), &azure("quote.msg"), &azure("quote.sig"), &[]);
    assert_exit(&o, exit_codes::OK);
    let text = stdout(&o);
    for check in [
        "hcl_format",
        "report_signature",
        "runtime_claims_hash",
        "hcl_attestation_key",
        "vtpm_quote_signature",
    ] {
        assert!(text.contains(&format!("PASS  {check} ")), "{check}: {text}");
    }
    assert!(text.contains("flavour: azure; outside the SNP boundary: the guest image"), "{text}");
    let o = verify_azure(&azure("hcl-report.bin"), &azure("quote.msg"), &azure("quote.sig"), &["--json"]);
    assert!(verdict(&o).accepted);
}

#[test]
fn a_flipped_byte_of_the_azure_vector_is_rejected_naming_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let hcl = std::fs::read(azure("hcl-report.bin")).unwrap();
    let quote = std::fs::read(azure("quote.msg")).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let flip = |bytes: &[u8], at: usize| {
        let mut b = bytes.to_vec();
        b[at] ^= 1;
        b
    };
    let (q, s) = (azure("quote.msg"), azure("quote.sig"));
    // The signed SNP part (its MEASUREMENT), the runtime claims, the quote.
    for (hcl_file, quote_file, check) in [
        (write("snp.bin", &flip(&hcl, 0x20 + 0x90)), q.clone(), "report_signature"),
        (write("claims.bin", &flip(&hcl, 0x4d4 + 300)), q.clone(), "runtime_claims_hash"),
        (azure("hcl-report.bin"), write("quote.msg", &flip(&quote, 60)), "vtpm_quote_signature"),
    ] {
        let o = verify_azure(&hcl_file, &quote_file, &s, &["--json"]);
        assert_exit(&o, exit_codes::REJECTED);
        assert!(failed_checks(&o).contains(&check.to_owned()), "{check}: {:?}", failed_checks(&o));
    }
    // A policy for another flavour.
    let policy = write("policy.json", br#"{"platform": "sev-snp"}"#);
    let o = verify_azure(&azure("hcl-report.bin"), &q, &s, &["--json", "--policy", policy.to_str().unwrap()]);
    assert_eq!(failed_checks(&o), ["platform"]);
}

/// Every line of `o`'s stdout, as cvmctl's typed `--json` messages.
fn messages(o: &Output) -> Vec<cvmctl::output::Message> {
    cvm_test_support::json_lines(o)
}

#[test]
fn report_commands_exit_by_the_table_and_their_json_is_typed() {
    use cvmctl::output::Message;
    // show: the report, or unreadable input.
    let report = vector("milan-virtee").join("report.bin");
    let o = cvmctl(&["report", "show", "--json", report.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    assert!(matches!(messages(&o).as_slice(), [Message::Report(r)] if r.is_object()), "{}", stdout(&o));
    assert_exit(&cvmctl(&["report", "show", "--json", "/nonexistent"]), exit_codes::USAGE);

    // simulate, then verify: accepted with its ARK trusted, rejected without it.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = cvmctl(&[
        "report",
        "simulate",
        "--json",
        "--out",
        out,
        "--chain",
        simulated().join("simulated-chain.key").to_str().unwrap(),
    ]);
    assert_exit(&o, exit_codes::OK);
    assert!(
        matches!(messages(&o).as_slice(), [Message::Simulated(s)] if s.files.iter().any(|f| f.ends_with("report.bin"))),
        "{}",
        stdout(&o)
    );
    let ark = dir.path().join("ark.pem");
    let o = verify_dir(dir.path(), &["--trust-ark", ark.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    let lines = messages(&o);
    assert!(lines.iter().any(|m| matches!(m, Message::Check(_))));
    assert!(matches!(lines.last(), Some(Message::Verdict(v)) if v.accepted && v.manifest_digest.is_none()));
    let o = verify_dir(dir.path(), &[]);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(matches!(messages(&o).last(), Some(Message::Verdict(v)) if !v.accepted && v.failed > 0));
    assert_exit(&verify_dir(dir.path(), &["--policy", "/nonexistent"]), exit_codes::USAGE);
}

#[test]
fn manifest_measure_and_logs_exit_by_the_table() {
    use cvmctl::output::Message;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("owner.pem");
    let o = cvmctl(&["keygen", "--json", "--out", key.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    let Some(Message::Key(k)) = messages(&o).pop() else { panic!("{}", stdout(&o)) };
    let manifest = dir.path().join("manifest.json");
    let json = serde_json::json!({
        "id": "m", "name": "m",
        "algorithm": {"digest": format!("sha256:{}", "ab".repeat(32)), "provider_key": k.public_key, "kind": "binary"},
        "datasets": [], "result_consumers": [{"key": k.public_key}],
        "limits": {"max_upload_bytes": 1024, "run_timeout_s": 10, "memory_bytes": 1 << 26},
        "logging": {"algorithm_output": "drop"},
    });
    std::fs::write(&manifest, json.to_string()).unwrap();
    let o = cvmctl(&["manifest", "digest", manifest.to_str().unwrap()]);
    assert_exit(&o, exit_codes::OK);
    assert!(stdout(&o).starts_with("sha256:"), "{}", stdout(&o));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{\"version\": 1}").unwrap();
    assert_exit(&cvmctl(&["manifest", "digest", bad.to_str().unwrap()]), exit_codes::USAGE);

    assert_exit(&cvmctl(&["measure", "--json"]), exit_codes::USAGE);
    // Debian's OVMF has no SEV metadata: unusable input of the user's own.
    let ovmf = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    if Path::new(ovmf).exists() {
        let o = cvmctl(&["measure", "--ovmf", ovmf, "--firmware-only", "--vcpu-type", "EPYC-v4", "--json"]);
        assert_exit(&o, exit_codes::USAGE);
        assert!(stdout(&o).is_empty(), "{}", stdout(&o));
    }
    assert_exit(&cvmctl(&["measure", "--uki", bad.to_str().unwrap(), "--json"]), exit_codes::USAGE);

    // No listener behind the control socket: 3, and a typed refusal.
    let sock = dir.path().join("control.sock");
    let o = cvmctl(&["logs", "status", "--json", "--control", sock.to_str().unwrap()]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(
        matches!(messages(&o).as_slice(), [Message::Reply(r)] if r.op == "status" && !r.ok && r.error.is_some()),
        "{}",
        stdout(&o)
    );
    assert_exit(&cvmctl(&["logs", "level", "loud", "--control", sock.to_str().unwrap()]), exit_codes::USAGE);
}
