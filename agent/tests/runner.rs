//! The sandbox, with real processes: what the algorithm can and cannot do.
//! These tests need root (they switch to a sandbox uid), as the agent does.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cvm_agent::runner::{run, FailReason, RunOutcome, RunSpec};

/// A uid per test, so one test's clean-up cannot kill another's processes.
fn uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    63000 + (std::process::id() % 200) * 20 + NEXT.fetch_add(1, Ordering::Relaxed)
}

struct Sandbox {
    _dir: tempfile::TempDir,
    spec: RunSpec,
}

fn sandbox(script: &str) -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let datasets = dir.path().join("datasets");
    std::fs::create_dir(&datasets).unwrap();
    std::fs::write(datasets.join("data.csv"), "x\n1\n2\n3\n").unwrap();
    let script_path = dir.path().join("algo.sh");
    std::fs::write(&script_path, script).unwrap();
    std::fs::set_permissions(&script_path, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let mut spec = RunSpec::new("/bin/bash".into(), datasets.clone(), dir.path().join("results"));
    spec.args = vec![script_path.display().to_string()];
    spec.env =
        vec![("DATASETS".into(), datasets.display().to_string()), ("PATH".into(), "/usr/bin:/bin".into())];
    let id = uid();
    spec.uid = id;
    spec.gid = id;
    spec.timeout = Duration::from_secs(20);
    Sandbox { _dir: dir, spec }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

/// Live (not zombie) processes of `uid`: killed orphans stay zombies until
/// this machine's PID 1 reaps them.
fn processes_of(uid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string()))
                    && !s.lines().any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
            })
        })
        .count()
}

fn stdout(o: &RunOutcome) -> String {
    match o {
        RunOutcome::Succeeded { stdout, .. } | RunOutcome::Failed { stdout, .. } => {
            String::from_utf8_lossy(stdout).into_owned()
        }
    }
}

#[test]
fn reads_datasets_and_writes_results_as_the_sandbox_user() {
    let s = sandbox("id -u; wc -l < \"$DATASETS/data.csv\" > sum.txt");
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(stdout(&outcome).trim(), s.spec.uid.to_string());
    let result = s.spec.results_dir.join("sum.txt");
    assert_eq!(std::fs::read_to_string(&result).unwrap().trim(), "4");
    let meta = std::fs::metadata(&result).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), s.spec.uid);
}

#[test]
fn cannot_write_rename_or_delete_datasets() {
    let s = sandbox(
        "echo evil >> \"$DATASETS/data.csv\" 2>/dev/null && echo appended; \
         mv \"$DATASETS/data.csv\" \"$DATASETS/x\" 2>/dev/null && echo renamed; \
         rm -f \"$DATASETS/data.csv\" 2>/dev/null; [ -e \"$DATASETS/data.csv\" ] || echo deleted; \
         touch \"$DATASETS/new\" 2>/dev/null && echo created; echo done",
    );
    let outcome = block_on(run(&s.spec));
    assert_eq!(stdout(&outcome).trim(), "done", "{outcome:?}");
    assert_eq!(std::fs::read_to_string(s.spec.datasets_dir.join("data.csv")).unwrap(), "x\n1\n2\n3\n");
}

#[test]
fn has_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = sandbox(&format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo connected; \
         (exec 3<>/dev/tcp/1.1.1.1/53) 2>/dev/null && echo outside; \
         tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
    ));
    let outcome = block_on(run(&s.spec));
    let out = stdout(&outcome);
    assert!(!out.contains("connected") && !out.contains("outside"), "{out}");
    assert_eq!(out.trim(), "lo", "only a loopback in the sandbox's network namespace: {out}");
    assert!(listener.accept().is_err(), "the listener got a connection from the sandbox");
}

#[test]
fn gets_only_the_given_environment() {
    std::env::set_var("CVM_SECRET_FOR_TEST", "leak");
    let s = sandbox("env | sort | cut -d= -f1 | tr '\\n' ' '");
    let outcome = block_on(run(&s.spec));
    let names: Vec<String> = stdout(&outcome).split_whitespace().map(str::to_owned).collect();
    for name in &names {
        assert!(
            ["DATASETS", "PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name.as_str()),
            "unexpected {name}: {names:?}"
        );
    }
}

#[test]
fn exit_codes_and_signals_are_failures() {
    let outcome = block_on(run(&sandbox("exit 3").spec));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::ExitCode(3), .. }), "{outcome:?}");
    let outcome = block_on(run(&sandbox("kill -SEGV $$").spec));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::Signal(11), .. }), "{outcome:?}");
}

#[test]
fn cannot_regain_root() {
    let s = sandbox("su -c id 2>/dev/null && echo root; sudo id 2>/dev/null && echo root; cat /etc/shadow 2>/dev/null && echo shadow; echo done");
    let outcome = block_on(run(&s.spec));
    assert_eq!(stdout(&outcome).trim(), "done", "{outcome:?}");
}

#[test]
fn a_timeout_kills_the_algorithm_and_its_detached_children() {
    let mut s = sandbox("setsid sleep 300 & setsid sleep 300 & sleep 300");
    s.spec.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::Timeout(_), .. }), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(processes_of(s.spec.uid), 0, "{}", ps(s.spec.uid));
}

#[test]
fn children_left_behind_by_a_successful_run_are_killed() {
    let s = sandbox("setsid sleep 300 & disown; exit 0");
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(processes_of(s.spec.uid), 0, "{}", ps(s.spec.uid));
}

#[test]
fn a_fork_bomb_fails_and_leaves_nothing_behind() {
    let mut s = sandbox("bomb() { bomb | bomb & }; bomb; sleep 60");
    s.spec.timeout = Duration::from_secs(3);
    s.spec.max_processes = 32;
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(processes_of(s.spec.uid), 0, "{}", ps(s.spec.uid));
    // The machine still forks.
    assert!(std::process::Command::new("true").status().unwrap().success());
}

#[test]
fn a_memory_hog_fails() {
    let mut s = sandbox("python3 -c 'b = []\nwhile True: b.append(bytearray(64 << 20))'; exit $?");
    s.spec.memory_bytes = 256 << 20;
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
}

#[test]
fn output_is_capped() {
    let mut s = sandbox("head -c 100000 /dev/zero | tr '\\0' x");
    s.spec.output_limit = 1000;
    let outcome = block_on(run(&s.spec));
    assert_eq!(stdout(&outcome).len(), 1000);
}

#[test]
fn root_as_sandbox_user_is_refused() {
    let mut s = sandbox("true");
    s.spec.uid = 0;
    let outcome = block_on(run(&s.spec));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::SpawnFailed(_), .. }), "{outcome:?}");
    let _ = Path::new("/");
}

fn ps(uid: u32) -> String {
    let o = std::process::Command::new("ps")
        .args(["-o", "pid,ppid,stat,comm", "-u", &uid.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}
