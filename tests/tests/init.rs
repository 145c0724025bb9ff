//! Init mode on the host: `cvm-agent init` supervises the agent as a child
//! subreaper (the mode for running next to another init). The PID-1 half
//! (mounts, modules, poweroff) runs in the VM test.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, Instant};

use cvm_tests::{owner, start_agent_as};
use sha2::{Digest as _, Sha256};

/// The children of `pid` (from /proc), with their state letter.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let rest: Vec<&str> =
            stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
        if rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((child, rest[0].to_owned()));
        }
    }
    out
}

#[test]
fn the_sandboxes_orphans_die_with_it_and_the_supervisor_stops_the_agent_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alg = owner(d, "alg", "p256");
    // The algorithm leaves an orphan behind: a background sleep whose parent
    // exits at once. It belongs to the sandbox's PID namespace, whose init
    // reaps it, and dies with that namespace when the run ends: it never
    // reaches the supervisor.
    let program = "#!/bin/sh\n(sleep 61 &)\necho done > \"$CVM_RESULTS/out.txt\"\n";
    std::fs::write(d.join("alg.sh"), program).unwrap();
    let manifest = serde_json::json!({
        "id": "orphan", "name": "orphan",
        "algorithm": {"digest": format!("sha256:{}", hex::encode(Sha256::digest(program))), "provider_key": alg.public, "kind": "binary", "runtime": cvm_tests::HOST_RUNTIME},
        "datasets": [], "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 4096, "run_timeout_s": 30, "memory_bytes": 268435456}
    });
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let work = d.join("work");
    let (mut sup, log, addr) =
        start_agent_as("init", d, &d.join("manifest.json"), &work).unwrap_or_else(|e| panic!("{e}"));
    let kids = children(sup.id());
    assert_eq!(kids.len(), 1, "the supervisor should have the agent as its only child: {kids:?}");
    let digest = String::from_utf8(
        cvm_tests::cvmctl(&["manifest", "digest", d.join("manifest.json").to_str().unwrap()]).stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let policy = cvm_tests::write_pinned_policy(&d.join("policy.json"), serde_json::Value::Null);
    let args = |cmd: &str, extra: &[&str]| {
        let mut v = vec![
            cmd.to_owned(),
            "--policy".into(),
            policy.clone(),
            "--agent".into(),
            addr.to_string(),
            "--manifest-digest".into(),
            digest.clone(),
            "--trust-ark".into(),
            cvm_tests::platform().2.display().to_string(),
            "--key".into(),
            alg.key.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        cvm_tests::cvmctl(&v.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = args("upload-algorithm", &[d.join("alg.sh").to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = args("status", &["--wait", "30", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("results_ready"),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        log.lock().unwrap()
    );

    // The orphan is gone with the sandbox's namespace: no `sleep 61` is
    // left anywhere, and the supervisor has no child but the agent.
    let kids = children(sup.id());
    assert!(kids.len() == 1 && kids[0].1 != "Z", "the supervisor has other children or zombies: {kids:?}");
    let sleepers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.trim() == "sleep 61")
        .collect();
    assert!(sleepers.is_empty(), "the orphan outlived the run: {sleepers:?}");
    assert!(!log.lock().unwrap().contains("init: reaped orphan"), "{}", log.lock().unwrap());

    // SIGTERM to the supervisor: the agent stops, wipes its work directory, and the supervisor exits 0.
    let agent_pid = children(sup.id())[0].0;
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &sup.id().to_string()])
        .status()
        .unwrap()
        .success());
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = sup.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the supervisor did not exit:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        !std::path::Path::new(&format!("/proc/{agent_pid}")).exists(),
        "the agent outlived its supervisor"
    );
    assert!(!work.exists(), "the work directory was not wiped");
    for line in ["init: stop requested", "signal received", "work directory", "init: the agent stopped"] {
        assert!(log.contains(line), "the log lacks {line:?}:\n{log}");
    }
}
