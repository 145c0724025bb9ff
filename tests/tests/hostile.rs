//! Hostile algorithms against the whole agent on this host: each test is an
//! attack that must fail, and after each the agent still serves and attests.
//!
//! A development host has no cgroup2 controllers, so the agent runs its
//! sandbox best-effort here: the attacks that only cgroups stop (memory over
//! many processes, a fork bomb's count) run in the VM test, which also
//! tries vsock (never tried here: this machine's vsock belongs to the machine).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::time::Duration;

use cvm_tests::{assert_exit, processes_of, vm, Options, Scenario};
use cvmctl::exit_codes;

/// A scenario whose algorithm is the static hostile binary with `args`.
fn hostile(args: &[&str], vtpm: bool) -> Scenario {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    Scenario::start(Options {
        algorithm_file: Some(vm::static_hostile().clone()),
        interpreter: None,
        // A static binary: the sandbox shows nothing of the image.
        runtime: Vec::new(),
        vtpm,
        max_upload_bytes: 16 << 20,
        prepare: Some(Box::new(move |_, manifest| {
            manifest["algorithm"]["args"] = serde_json::json!(args);
            Vec::new()
        })),
        ..Options::default()
    })
}

fn run_to_the_end(s: &Scenario) -> serde_json::Value {
    s.upload_inputs();
    s.wait_final(Duration::from_secs(90))
}

/// After any attack: the agent serves, attests, and no process of the sandbox is left.
#[track_caller]
fn still_healthy(s: &mut Scenario) {
    assert!(s.agent_alive(), "the agent died:\n{}", s.log());
    assert_exit(&s.run("attest", None, &[]), exit_codes::OK);
    assert_eq!(processes_of(s.sandbox_uid), 0, "processes of the sandbox outlived the run");
}

fn results_file(s: &Scenario, name: &str) -> Vec<u8> {
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let o =
        std::process::Command::new("tar").args(["-xOf", &out, &format!("results/{name}")]).output().unwrap();
    assert!(o.status.success(), "results/{name}: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn a_probing_algorithm_escapes_nowhere_and_the_event_log_still_replays() {
    // What the algorithm would love to reach: a TCP listener on loopback and
    // an abstract Unix socket, both in the agent's network namespace.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let name = format!("cvm-hostile-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let unix = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    unix.set_nonblocking(true).unwrap();

    // The agent has a vTPM (swtpm, reached over a TCP descriptor the
    // algorithm must not inherit).
    let mut s = hostile(&["probe", "--tcp-port", &port, "--abstract", &name], true);
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&results_file(&s, "report.json")).unwrap();
    let escaped: Vec<String> = report
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| v.starts_with("ESCAPED")))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert!(escaped.is_empty(), "the algorithm escaped:\n{}\n{report:#?}", escaped.join("\n"));
    // The probe ran what it should (so that "nothing escaped" means something).
    for probe in [
        "socket.inet",
        "socket.inet6",
        "socket.netlink",
        "socket.packet",
        "socketpair.inet",
        "tcp.loopback",
        "unix.abstract",
        "fds.inherited",
        "tpm.extend_through_inherited",
        "proc.other_processes",
        "read/proc/1/mem",
        "see/run/cvm-agent",
        "see/dev/vda",
        "see/sys/firmware/qemu_fw_cfg/by_name",
        "write/datasets/hostile-was-here",
        "write.dataset_in_place",
        "exec.from_results",
        "io_uring_setup",
        "ptrace.attach_init",
        "ptrace.any_pid",
        "process_vm_readv.init",
        "unshare.user",
        "clone.newuser",
        "mount",
        "caps.CapBnd",
        "oom_score_adj",
        "caps.CapEff",
        "socket.number_high_bits",
        "socket.family_high_bits",
        "socket.int80",
        "sched.realtime",
        "nice.raise",
        "pidfd.signal_init",
        "prctl.set_mm",
        "ipc.others_segments",
        "root.above/..",
        "root.above/proc/self/root/..",
        "root.above_by_descriptor",
        "mountinfo.foreign_mounts",
        "sealed.write",
        "exec.memfd",
        "memfd.exec_flag",
        "write/dev/urandom",
        "env.extra",
    ] {
        let v =
            report.get(probe).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no {probe} in {report:#?}"));
        assert!(v.starts_with("blocked"), "{probe}: {v}");
    }
    assert_eq!(report["info.write_results"], "allowed");
    assert_eq!(report["info.socketpair.unix"], "allowed", "AF_UNIX between its own processes stays allowed");
    assert!(report["info.Seccomp"].as_str().unwrap().starts_with('2'), "{}", report["info.Seccomp"]);
    assert_eq!(report["info.NoNewPrivs"], "1");
    assert!(tcp.accept().is_err(), "the TCP listener got a connection from the sandbox");
    assert!(unix.accept().is_err(), "the abstract socket got a connection from the sandbox");

    // The daemon it left behind died with the run: nothing of it in the
    // results, and no process of the sandbox's uid anywhere.
    std::thread::sleep(Duration::from_secs(4));
    still_healthy(&mut s);
    let out = s.path("results.tar");
    let mut listing = String::new();
    std::process::Command::new("tar")
        .args(["-tf", &out])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
        .stdout
        .unwrap()
        .read_to_string(&mut listing)
        .unwrap();
    assert!(!listing.contains("daemon-was-here"), "{listing}");
    // The vTPM descriptor never reached the algorithm: the event log still
    // replays to the quoted PCR, results included.
    let o = s.run("attest", None, &["--events"]);
    assert_exit(&o, exit_codes::OK);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("vTPM quote: verified") && text.contains("  results "), "{text}");
    // The datasets are as they were uploaded.
    let a = std::fs::read(s.work.join("datasets/hospital-a.csv")).unwrap();
    assert_eq!(a, std::fs::read(cvm_tests::example("hospital-a.csv")).unwrap());
}

#[test]
fn results_that_fill_their_limit_fail_the_run() {
    let mut s = hostile(&["fill-results"], false);
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("filled its results limit"), "{reason}");
    still_healthy(&mut s);
}

#[test]
fn a_sparse_file_cannot_blow_up_the_results_package() {
    let mut s = hostile(&["sparse-results"], false);
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("sparse files counted whole") && reason.contains("1099511627776"), "{reason}");
    still_healthy(&mut s);
    assert!(
        !s.work.join("results.tar").exists()
            || std::fs::metadata(s.work.join("results.tar")).unwrap().len() < 1 << 20
    );
}

#[test]
fn a_system_call_through_the_x32_abi_kills_the_algorithm() {
    let mut s = hostile(&["x32"], false);
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("killed by signal 31"), "SIGSYS expected: {reason}");
    still_healthy(&mut s);
}

#[test]
fn a_fork_bomb_is_contained_and_nothing_of_it_outlives_the_run() {
    let mut s = hostile(&["forkbomb"], false);
    let status = run_to_the_end(&s);
    // Without the pids controller (a development host) the bomb ends as it
    // likes; the VM test checks that it fails at the process limit.
    assert!(["failed", "results_ready"].contains(&status["state"].as_str().unwrap()), "{status}");
    still_healthy(&mut s);
    assert!(std::process::Command::new("true").status().unwrap().success(), "this machine no longer forks");
}

#[test]
fn a_best_effort_sandbox_is_shown_to_every_owner_and_strict_refuses_to_start_without_a_layer() {
    let s = Scenario::start(Options::default());
    // attest: a warning before anything else, a record in --json, a line in the claims.
    let o = s.run("attest", None, &["--json"]);
    assert_exit(&o, exit_codes::OK);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("WARNING: this agent's sandbox is best-effort"), "{err}");
    let sandbox = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "sandbox")
        .expect("no sandbox record");
    assert_eq!(sandbox["data"]["mode"], "best-effort");
    assert!(!sandbox["data"]["missing"].as_array().unwrap().is_empty(), "{sandbox}");
    let o = s.run("attest", None, &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("  sandbox         best-effort (WITHOUT: "));
    let o = s.run("status", Some(&s.consumer), &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sandbox:            best-effort (without: "));

    // The same agent, strict: it starts only where every layer is there.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(s.dir.path().join("manifest.json"), dir.path().join("manifest.json")).unwrap();
    let started = cvm_tests::start_agent_env(
        dir.path(),
        &dir.path().join("manifest.json"),
        &dir.path().join("work"),
        &[("CVM_SANDBOX", "strict")],
    );
    match started {
        Err(log) => {
            assert!(log.contains("refusing to start (sandbox = strict)") && log.contains("cgroup2"), "{log}");
        }
        Ok((mut agent, log, _)) => {
            let _ = agent.kill();
            let log = log.lock().unwrap().clone();
            assert!(log.contains("sandbox: strict: namespaces, Landlock ABI"), "{log}");
        }
    }
}

#[test]
fn a_sealed_hostile_algorithm_cannot_write_its_sealed_inputs() {
    // The algorithm and hospital B's dataset are sealed: both reach the
    // sandbox as inherited descriptors of the agent's memfds, which the
    // probe tries to reopen for writing, truncate and map writable.
    let prepare: cvm_tests::Prepare = Box::new(|p: &cvm_tests::Prepared<'_>, m: &mut serde_json::Value| {
        let d = p.dir;
        let seal = |key: &std::path::Path, input: &str| {
            cvm_tests::seal(key, &d.join(input), &d.join(format!("{input}.sealed")))
        };
        let (alg_key, b_key) =
            (cvm_tests::sealing_key(d, "alg-sealing.key"), cvm_tests::sealing_key(d, "b-sealing.key"));
        m["algorithm"].as_object_mut().unwrap().remove("digest");
        m["algorithm"]["sealed"] = seal(&alg_key, "stats.py");
        m["algorithm"]["args"] = serde_json::json!(["probe"]);
        m["datasets"][1].as_object_mut().unwrap().remove("digest");
        m["datasets"][1]["sealed"] = seal(&b_key, "hospital-b.csv");
        Vec::new()
    });
    let mut s = Scenario::start(Options {
        algorithm_file: Some(vm::static_hostile().clone()),
        interpreter: None,
        runtime: Vec::new(),
        max_upload_bytes: 16 << 20,
        prepare: Some(prepare),
        ..Options::default()
    });
    let release = |owner: &cvm_tests::Owner, what: &[&str], key: &str| {
        let mut extra: Vec<&str> = what.to_vec();
        let key = s.path(key);
        extra.extend(["--key-file", key.as_str()]);
        assert_exit(&s.run("release-key", Some(owner), &extra), exit_codes::OK);
    };
    release(&s.alg, &["--algorithm"], "alg-sealing.key");
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py.sealed")]), exit_codes::OK);
    assert_exit(
        &s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]),
        exit_codes::OK,
    );
    release(&s.b, &["--dataset", "hospital-b.csv"], "b-sealing.key");
    assert_exit(
        &s.run("upload-dataset", Some(&s.b), &["hospital-b.csv", &s.path("hospital-b.csv.sealed")]),
        exit_codes::OK,
    );
    let status = s.wait_final(Duration::from_secs(90));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&results_file(&s, "report.json")).unwrap();
    let escaped: Vec<String> = report
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| v.starts_with("ESCAPED")))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert!(escaped.is_empty(), "the algorithm escaped:\n{}\n{report:#?}", escaped.join("\n"));
    let sealed = report["sealed.write"].as_str().unwrap();
    assert!(sealed.starts_with("blocked: 2 sealed inputs stay read-only"), "{sealed}");
    still_healthy(&mut s);
}

#[test]
fn results_whose_names_dwarf_their_limit_cannot_blow_up_the_package() {
    // 16000 empty files with paths of 3.6 kB take no space on the results'
    // tmpfs, but each takes 5 kB of names and headers in the package: 80 MB
    // out of a results limit of 1 MiB, in the agent's memory (its work
    // directory is a tmpfs in the VM) and on the consumer's wire.
    let prepare: cvm_tests::Prepare = Box::new(|_, m: &mut serde_json::Value| {
        m["algorithm"]["args"] = serde_json::json!(["deep-results"]);
        m["limits"]["results_bytes"] = serde_json::json!(1 << 20);
        Vec::new()
    });
    let mut s = Scenario::start(Options {
        algorithm_file: Some(vm::static_hostile().clone()),
        interpreter: None,
        runtime: Vec::new(),
        max_upload_bytes: 16 << 20,
        prepare: Some(prepare),
        ..Options::default()
    });
    let status = run_to_the_end(&s);
    let package = std::fs::metadata(s.work.join("results.tar")).map(|m| m.len()).unwrap_or(0);
    assert!(package <= 1 << 20, "a results package of {package} bytes for a limit of 1 MiB");
    assert_eq!(status["state"], "failed", "{status}");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("the results package") && reason.contains("1048576"), "{reason}");
    still_healthy(&mut s);
}
