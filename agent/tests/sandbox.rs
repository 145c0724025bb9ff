//! The sandbox, with real processes and the real launcher (the agent's
//! binary): what the algorithm can and cannot do. These tests need root, as
//! the agent does. A development host may lack cgroup2 controllers, so the
//! sandbox runs best-effort here; the VM test runs it strict.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use cvm_agent::sandbox::{FailReason, Mode, Program, RunOutcome, RunSpec, Sandbox, Scratch};
use cvm_test_support::processes_of;

/// A uid per test, so one test's clean-up cannot kill another's processes.
fn uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    63000 + (std::process::id() % 200) * 20 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The image paths a bash script needs (Debian's merged /usr).
const RUNTIME: [&str; 4] = ["/usr", "/bin", "/lib", "/lib64"];

fn the_sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| Sandbox::new(Mode::BestEffort, env!("CARGO_BIN_EXE_cvm-agent").into()).unwrap())
}

struct Case {
    dir: tempfile::TempDir,
    spec: RunSpec,
    results_bytes: u64,
}

fn sandbox(script: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let datasets = dir.path().join("datasets");
    std::fs::create_dir(&datasets).unwrap();
    std::fs::write(datasets.join("data.csv"), "x\n1\n2\n3\n").unwrap();
    let artifacts = dir.path().join("artifacts");
    std::fs::create_dir(&artifacts).unwrap();
    let script_path = dir.path().join("algo.sh");
    std::fs::write(&script_path, script).unwrap();
    let id = uid();
    let spec = RunSpec {
        program: Program::File { path: script_path, executable: false },
        interpreter: Some("/bin/bash".into()),
        args: Vec::new(),
        runtime: RUNTIME.iter().map(Into::into).collect(),
        datasets,
        artifacts,
        root: dir.path().join("root"),
        hidden: vec![dir.path().to_path_buf()],
        env: Vec::new(),
        uid: id,
        gid: id,
        memory_bytes: 512 << 20,
        max_processes: 64,
        timeout: Duration::from_secs(20),
        output_limit: 64 << 10,
        inherit_fds: Vec::new(),
    };
    Case { dir, spec, results_bytes: 8 << 20 }
}

/// Runs the case; the scratch space (results and /tmp) stays mounted until
/// the returned [`Scratch`] is dropped.
fn run_keep(c: &Case) -> (RunOutcome, Scratch) {
    let scratch =
        Scratch::mount(&c.dir.path().join("scratch"), c.results_bytes, c.spec.uid, c.spec.gid).unwrap();
    let outcome = block_on(the_sandbox().run(&c.spec, &scratch));
    (outcome, scratch)
}

fn run(c: &Case) -> RunOutcome {
    run_keep(c).0
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
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
    let s = sandbox("id -u; wc -l < \"$CVM_DATASETS/data.csv\" > sum.txt");
    let (outcome, scratch) = run_keep(&s);
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(stdout(&outcome).trim(), s.spec.uid.to_string());
    let result = scratch.results().join("sum.txt");
    assert_eq!(std::fs::read_to_string(&result).unwrap().trim(), "4");
    let meta = std::fs::metadata(&result).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), s.spec.uid);
}

#[test]
fn cannot_write_rename_or_delete_datasets() {
    let s = sandbox(
        "echo evil >> \"$CVM_DATASETS/data.csv\" 2>/dev/null && echo appended; \
         mv \"$CVM_DATASETS/data.csv\" \"$CVM_DATASETS/x\" 2>/dev/null && echo renamed; \
         rm -f \"$CVM_DATASETS/data.csv\" 2>/dev/null; [ -e \"$CVM_DATASETS/data.csv\" ] || echo deleted; \
         touch \"$CVM_DATASETS/new\" 2>/dev/null && echo created; echo done",
    );
    let outcome = run(&s);
    assert_eq!(stdout(&outcome).trim(), "done", "{outcome:?}");
    assert_eq!(std::fs::read_to_string(s.spec.datasets.join("data.csv")).unwrap(), "x\n1\n2\n3\n");
}

#[test]
fn has_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = sandbox(&format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>&1 && echo connected; \
         (exec 3<>/dev/tcp/1.1.1.1/53) 2>/dev/null && echo outside; \
         [ -e /proc/net/dev ] && echo proc-net; echo done"
    ));
    let outcome = run(&s);
    let out = stdout(&outcome);
    assert!(out.ends_with("done\n") && !out.contains("connected") && !out.contains("outside"), "{out}");
    // Refused by the seccomp filter before any namespace is asked.
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(!out.contains("proc-net"), "the sandbox's /proc shows /proc/net");
    assert!(listener.accept().is_err(), "the listener got a connection from the sandbox");
}

#[test]
fn gets_only_the_given_environment() {
    std::env::set_var("CVM_SECRET_FOR_TEST", "leak");
    let s = sandbox("env | sort | cut -d= -f1 | tr '\\n' ' '");
    let outcome = run(&s);
    let names: Vec<String> = stdout(&outcome).split_whitespace().map(str::to_owned).collect();
    for name in &names {
        assert!(
            [
                "CVM_DATASETS",
                "CVM_ARTIFACTS",
                "CVM_RESULTS",
                "TMPDIR",
                "HOME",
                "LANG",
                "PATH",
                "PWD",
                "SHLVL",
                "_",
                "OLDPWD"
            ]
            .contains(&name.as_str()),
            "unexpected {name}: {names:?}"
        );
    }
}

#[test]
fn exit_codes_and_signals_are_failures() {
    let outcome = run(&sandbox("exit 3"));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::ExitCode(3), .. }), "{outcome:?}");
    let outcome = run(&sandbox("kill -SEGV $$"));
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::Signal(11), .. }), "{outcome:?}");
}

#[test]
fn inherits_no_descriptor_whatever_flags_it_was_opened_with() {
    // What tpm2-tss does with the vTPM: a descriptor without O_CLOEXEC.
    let leaky = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    nix::fcntl::fcntl(&leaky, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    let s = sandbox("ls /proc/self/fd | sort -n | tr '\\n' ' '");
    let outcome = run(&s);
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    // 0, 1, 2, and the directory ls reads.
    assert_eq!(stdout(&outcome).trim(), "0 1 2 3", "{outcome:?}");
    drop(leaky);
}

#[test]
fn a_script_runs_with_only_its_interpreter_and_the_runtime_it_declares() {
    // /usr/bin/python3 is a link to python3.11, /lib64 a link to usr/lib64,
    // and the loader in it a link through /lib: the links are recreated and
    // followed inside.
    let mut s = sandbox(
        "import os, sys\nprint(sys.version_info[0], sorted(os.listdir('/')), sorted(os.listdir('/usr')))\n",
    );
    s.spec.interpreter = Some("/usr/bin/python3".into());
    let runtime = ["/usr/lib/python3.11", "/usr/lib/x86_64-linux-gnu", "/lib64/ld-linux-x86-64.so.2"];
    s.spec.runtime = runtime.iter().map(Into::into).collect();
    let outcome = run(&s);
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(
        stdout(&outcome).trim(),
        "3 ['algorithm', 'artifacts', 'datasets', 'dev', 'lib', 'lib64', 'proc', 'results', 'tmp', 'usr'] \
         ['bin', 'lib', 'lib64']",
        "{outcome:?}"
    );
    // Without the loader, the error names it.
    s.spec.runtime.pop();
    let outcome = run(&s);
    assert!(
        matches!(&outcome, RunOutcome::Failed { reason: FailReason::SpawnFailed(e), .. }
            if e.contains("its ELF interpreter /lib64/ld-linux-x86-64.so.2 is not in the sandbox")),
        "{outcome:?}"
    );
    // A runtime path that leads to the agent's own files is refused.
    let mut s = sandbox("true");
    s.spec.runtime = vec![s.dir.path().to_path_buf()];
    let outcome = run(&s);
    assert!(
        matches!(&outcome, RunOutcome::Failed { reason: FailReason::SpawnFailed(e), .. } if e.contains("never shows")),
        "{outcome:?}"
    );
}

#[test]
fn cannot_regain_root() {
    let s = sandbox("su -c id 2>/dev/null && echo root; sudo id 2>/dev/null && echo root; cat /etc/shadow 2>/dev/null && echo shadow; echo done");
    let outcome = run(&s);
    assert_eq!(stdout(&outcome).trim(), "done", "{outcome:?}");
}

#[test]
fn a_timeout_kills_the_algorithm_and_its_detached_children() {
    let mut s = sandbox("setsid sleep 300 & setsid sleep 300 & sleep 300");
    s.spec.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let outcome = run(&s);
    assert!(matches!(outcome, RunOutcome::Failed { reason: FailReason::Timeout(_), .. }), "{outcome:?}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(processes_of(s.spec.uid), 0, "{}", ps(s.spec.uid));
}

#[test]
fn children_left_behind_by_a_successful_run_are_killed() {
    let s = sandbox("setsid sleep 300 & disown; exit 0");
    let outcome = run(&s);
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    assert_eq!(processes_of(s.spec.uid), 0, "{}", ps(s.spec.uid));
}

#[test]
fn a_fork_bomb_fails_and_leaves_nothing_behind() {
    let mut s = sandbox("bomb() { bomb | bomb & }; bomb; sleep 60");
    s.spec.timeout = Duration::from_secs(3);
    s.spec.max_processes = 32;
    let outcome = run(&s);
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
    let outcome = run(&s);
    assert!(matches!(outcome, RunOutcome::Failed { .. }), "{outcome:?}");
}

#[test]
fn output_is_capped() {
    let mut s = sandbox("head -c 100000 /dev/zero | tr '\\0' x");
    s.spec.output_limit = 1000;
    let outcome = run(&s);
    assert_eq!(stdout(&outcome).len(), 1000);
}

#[test]
fn root_as_sandbox_user_is_refused() {
    let mut s = sandbox("true");
    s.spec.uid = 0;
    let outcome = run(&s);
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
