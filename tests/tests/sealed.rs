//! Sealed inputs end to end, with real agent processes: model weights read
//! from a file standing in for host storage, a sealed dataset uploaded, a
//! sealed algorithm, key release and every refusal; and afterwards no file
//! anywhere holds their plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cvm_tests::{assert_exit, seal, sealing_key, stderr, Options, Prepared, Scenario};
use cvmctl::exit_codes;

/// A random marker that appears in the secret weights and nowhere else.
fn marker() -> String {
    let mut r = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut r)).unwrap();
    format!("SECRET-WEIGHTS-{}", hex::encode(r))
}

/// 3 MiB and a bit of "weights" with the marker in every 64 KiB.
fn weights(marker: &str) -> Vec<u8> {
    let mut w: Vec<u8> = (0..(3u32 << 20) + 4321).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    for at in (0..w.len() - marker.len()).step_by(64 << 10) {
        w[at..at + marker.len()].copy_from_slice(marker.as_bytes());
    }
    w
}

/// The algorithm: uses the weights (mmap, hash), reads the datasets (one of
/// them sealed), tries to write the weights, writes a summary, prints nothing secret.
const ALGORITHM: &str = r#"import hashlib, json, mmap, os
w = os.path.join(os.environ["CVM_ARTIFACTS"], "weights.bin")
with open(w, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    digest, size = hashlib.sha256(m).hexdigest(), len(m)
try:
    open(w, "r+b").write(b"x")
    write = "written"
except OSError as e:
    write = "blocked: " + e.__class__.__name__
rows = {}
for name in sorted(os.listdir(os.environ["CVM_DATASETS"])):
    rows[name] = len(open(os.path.join(os.environ["CVM_DATASETS"], name)).read().splitlines()) - 1
json.dump({"weights_sha256": digest, "weights_size": size, "write": write, "rows": rows},
          open(os.path.join(os.environ["CVM_RESULTS"], "summary.json"), "w"))
print("used", size, "bytes of weights")
"#;

/// What the sealed scenario prepared.
struct Sealed {
    marker: String,
    weights_sha256: String,
    host_disk: PathBuf,
}

/// A scenario with a sealed algorithm (script), hospital B's dataset sealed,
/// and weights on "host storage" (a file, padded like a disk).
fn sealed_scenario(marker: &str) -> (Scenario, Sealed) {
    sealed_scenario_on(marker, false)
}

/// [`sealed_scenario`], the weights' "host storage" being a FIFO the test
/// writes the ciphertext into when it chooses (`on_fifo`), or a file.
fn sealed_scenario_on(marker: &str, on_fifo: bool) -> (Scenario, Sealed) {
    let marker_owned = marker.to_owned();
    let prepare: cvm_tests::Prepare = Box::new(move |p: &Prepared<'_>, m: &mut serde_json::Value| {
        let d = p.dir;
        std::fs::write(d.join("stats.py"), ALGORITHM).unwrap();
        let alg_key = sealing_key(d, "alg-sealing.key");
        let b_key = sealing_key(d, "b-sealing.key");
        let algorithm = seal(&alg_key, &d.join("stats.py"), &d.join("stats.py.sealed"));
        let dataset = seal(&b_key, &d.join("hospital-b.csv"), &d.join("hospital-b.csv.sealed"));
        let plain = d.join("weights.bin");
        std::fs::write(&plain, weights(&marker_owned)).unwrap();
        let artifact = seal(&alg_key, &plain, &d.join("host-disk.img"));
        // The owner's plaintext stays on the owner's machine: not here.
        std::fs::remove_file(&plain).unwrap();
        // A disk is larger than the stream it holds.
        let mut disk = std::fs::OpenOptions::new().append(true).open(d.join("host-disk.img")).unwrap();
        std::io::Write::write_all(&mut disk, &[0u8; 8192]).unwrap();
        m["algorithm"].as_object_mut().unwrap().remove("digest");
        m["algorithm"]["sealed"] = algorithm;
        m["datasets"][1].as_object_mut().unwrap().remove("digest");
        m["datasets"][1]["sealed"] = dataset;
        m["artifacts"] = serde_json::json!([
            {"name": "weights.bin", "sealed": artifact, "source": "host-path", "provider_key": p.alg.public}
        ]);
        m["logging"] = serde_json::json!({"algorithm_output": "forward"});
        let storage = if on_fifo {
            let fifo = d.join("host-fifo");
            assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
            fifo
        } else {
            d.join("host-disk.img")
        };
        vec![("CVM_HOST_ARTIFACTS".into(), format!("weights.bin={}", storage.display()))]
    });
    let s = Scenario::start(Options { prepare: Some(prepare), ..Options::default() });
    let w = weights(marker);
    let weights_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&w));
    let host_disk = s.dir.path().join("host-disk.img");
    (s, Sealed { marker: marker.to_owned(), weights_sha256, host_disk })
}

fn release(s: &Scenario, owner: &cvm_tests::Owner, what: &[&str], key: &str) -> Output {
    let mut extra: Vec<&str> = what.to_vec();
    let key = s.path(key);
    extra.extend(["--key-file", key.as_str()]);
    s.run("release-key", Some(owner), &extra)
}

/// Regular files under `root` (not following links), written since
/// `since`, that contain `needle`. (Older files cannot hold a plaintext made
/// during the test; skipping them keeps the scan of a busy /tmp short.)
fn files_containing(root: &Path, needle: &[u8], since: std::time::SystemTime, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let path = e.path();
        if t.is_dir() {
            files_containing(&path, needle, since, found);
        } else if t.is_file() {
            let fresh =
                e.metadata().is_ok_and(|m| m.len() <= 512 << 20 && m.modified().is_ok_and(|t| t >= since));
            if fresh && std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                found.push(path);
            }
        }
    }
}

/// The agent's open memfds of sealed inputs (one name per memfd, however
/// many descriptors it has open).
fn sealed_memfds(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .filter(|l| l.contains("cvm-sealed"))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn model_weights_from_host_storage_are_used_and_no_file_holds_their_plaintext() {
    let started = std::time::SystemTime::now() - Duration::from_secs(2);
    let marker = marker();
    let (s, sealed) = sealed_scenario(&marker);

    // A sealed input cannot be uploaded before its key is released.
    let o = s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py.sealed")]);
    assert!(stderr(&o).contains("409") && stderr(&o).contains("release-key"), "{}", stderr(&o));

    assert_exit(&release(&s, &s.alg, &["--algorithm"], "alg-sealing.key"), exit_codes::OK);
    let o = s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py.sealed")]);
    assert_exit(&o, exit_codes::OK);
    assert!(stderr(&o).contains("verified it and holds the plaintext in memory"), "{}", stderr(&o));
    assert_exit(
        &s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]),
        exit_codes::OK,
    );
    assert_exit(&release(&s, &s.b, &["--dataset", "hospital-b.csv"], "b-sealing.key"), exit_codes::OK);
    assert_exit(
        &s.run("upload-dataset", Some(&s.b), &["hospital-b.csv", &s.path("hospital-b.csv.sealed")]),
        exit_codes::OK,
    );
    assert_eq!(s.status()["artifacts_missing"], serde_json::json!(["weights.bin"]));
    // The weights: read from "host storage" during the release, verified, in memory.
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert_exit(&o, exit_codes::OK);
    assert!(
        stderr(&o).contains(&format!("decrypted it in memory ({} bytes)", (3 << 20) + 4321)),
        "{}",
        stderr(&o)
    );

    let status = s.wait_final(Duration::from_secs(60));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let o = std::process::Command::new("tar").args(["-xOf", &out, "results/summary.json"]).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["weights_sha256"], sealed.weights_sha256.as_str(), "{summary}");
    assert_eq!(summary["weights_size"], (3 << 20) + 4321);
    assert!(summary["write"].as_str().unwrap().starts_with("blocked"), "{summary}");
    assert_eq!(summary["rows"], serde_json::json!({"hospital-a.csv": 4, "hospital-b.csv": 3}));

    // Measured by stream identity, as sealed inputs.
    let log = s.log();
    for input in ["algorithm", "hospital-b.csv", "weights.bin"] {
        assert!(log.contains(&format!("received {input} (sealed:")), "{input}\n{log}");
    }
    assert!(log.contains("wiping 3 sealed input(s) from memory"), "{log}");
    assert!(sealed_memfds(s.agent_pid()).is_empty(), "{:?}", sealed_memfds(s.agent_pid()));

    // No file anywhere holds the plaintext: not the work directory, not the
    // scenario's directory, not /tmp, /dev/shm or /run; and not the log.
    let mut found = Vec::new();
    for root in
        [s.work.clone(), s.dir.path().to_path_buf(), std::env::temp_dir(), "/dev/shm".into(), "/run".into()]
    {
        files_containing(&root, sealed.marker.as_bytes(), started, &mut found);
    }
    assert!(found.is_empty(), "plaintext of the weights in {found:?}");
    // The scan does find the marker where it is (a control, so that the
    // check above cannot pass by looking nowhere).
    let control = s.work.join("control.bin");
    std::fs::write(&control, weights(&sealed.marker)).unwrap();
    let mut found = Vec::new();
    files_containing(&std::env::temp_dir(), sealed.marker.as_bytes(), started, &mut found);
    files_containing(&s.work, sealed.marker.as_bytes(), started, &mut found);
    assert!(found.contains(&control), "{found:?}");
    std::fs::remove_file(&control).unwrap();
    assert!(!log.contains(&sealed.marker));
    // The ciphertext on "host storage" is what the files hold.
    assert!(std::fs::metadata(&sealed.host_disk).unwrap().len() > (3 << 20));
}

#[test]
fn a_host_artifact_whose_owner_hangs_up_during_the_load_is_still_loaded_and_not_stuck() {
    let (s, sealed) = sealed_scenario_on(&marker(), true);
    // The agent blocks reading the host storage (a FIFO nobody writes yet);
    // the owner's cvmctl gives up meanwhile.
    let mut args: Vec<String> = vec!["release-key".into()];
    args.extend(s.agent_args(Some(&s.alg)));
    args.extend(["--artifact".into(), "weights.bin".into(), "--key-file".into(), s.path("alg-sealing.key")]);
    let mut owner = std::process::Command::new(cvm_tests::bin("cvmctl"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s.log().contains("released by its owner; reading") {
        assert!(std::time::Instant::now() < end, "{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    owner.kill().unwrap();
    owner.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Now the host storage delivers: the key was released, so the load goes on.
    std::fs::write(s.dir.path().join("host-fifo"), std::fs::read(&sealed.host_disk).unwrap()).unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let st = s.status();
        if st["artifacts_received"] == serde_json::json!(["weights.bin"]) {
            break;
        }
        assert!(std::time::Instant::now() < end, "{st}\n{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // And it is not left "being loaded": another release says it is done.
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("was already released"), "{}", stderr(&o));
}

#[test]
fn key_release_and_sealed_inputs_are_refused_with_clear_errors_and_nothing_kept() {
    let (s, sealed) = sealed_scenario(&marker());
    let pid = s.agent_pid();

    // Not the key's owner: the agent refuses (403); nothing changes.
    let o = release(&s, &s.consumer, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(
        stderr(&o).contains("403") && stderr(&o).contains("artifact_provider:weights.bin"),
        "{}",
        stderr(&o)
    );
    // An artifact the manifest does not name, a key the manifest does not
    // pin, an input that is not sealed: cvmctl sends nothing...
    let o = release(&s, &s.alg, &["--artifact", "other.bin"], "alg-sealing.key");
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("names no artifact \"other.bin\"; the key was not sent"), "{}", stderr(&o));
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "b-sealing.key");
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("the key was not sent"), "{}", stderr(&o));
    // ... and the agent refuses them too when a client sends them anyway.
    let args = cvm_tests::parse_agent_args(s.agent_args(Some(&s.alg)));
    let alg_key = std::fs::read_to_string(s.path("alg-sealing.key")).unwrap();
    let b_key = std::fs::read_to_string(s.path("b-sealing.key")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers = rt.block_on(async {
        let mut agent = args.connect().await.map_err(|e| e.to_string()).unwrap();
        let mut answers = Vec::new();
        for (path, key) in [
            ("/v1/keys/artifacts/other.bin", &alg_key),
            ("/v1/keys/artifacts/weights.bin", &b_key),
            ("/v1/keys/datasets/hospital-a.csv", &alg_key),
            ("/v1/keys/artifacts/weights.bin", &"cvm-sealing-key v1 00 00".to_owned()),
        ] {
            let body = serde_json::to_vec(&serde_json::json!({ "key": key })).unwrap();
            let (status, body) = agent.send(hyper::Method::PUT, path, Some(body)).await.unwrap();
            answers.push((status.as_u16(), String::from_utf8_lossy(&body).into_owned()));
        }
        answers
    });
    let expect = [(404, "unknown_input"), (422, "key_mismatch"), (409, "not_sealed"), (400, "bad_request")];
    for ((status, body), (want, code)) in answers.iter().zip(expect) {
        assert_eq!(*status, want, "{body}");
        assert!(body.contains(code), "{body}");
    }
    assert!(s.status()["artifacts_received"].as_array().unwrap().is_empty());

    // Host storage that was tampered with: refused with the chunk that
    // failed, no plaintext kept; once the operator restores it, a retry works.
    let good = std::fs::read(&sealed.host_disk).unwrap();
    let mut bad = good.clone();
    bad[64 + (1 << 20) + 16 + 5000] ^= 0x40; // inside chunk 1
    std::fs::write(&sealed.host_disk, &bad).unwrap();
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(
        stderr(&o).contains("422")
            && stderr(&o).contains("chunk 1 failed authentication")
            && stderr(&o).contains("nothing of it was kept"),
        "{}",
        stderr(&o)
    );
    // The last chunk cut off: refused as truncated.
    std::fs::write(&sealed.host_disk, &good[..64 + 3 * ((1 << 20) + 16)]).unwrap();
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert!(stderr(&o).contains("truncated: the stream ends in chunk 3 of 4"), "{}", stderr(&o));
    // Another stream under the same key (same content, sealed again): its identity differs.
    let plain = s.path("again.bin");
    std::fs::write(&plain, weights(&sealed.marker)).unwrap();
    seal(&PathBuf::from(s.path("alg-sealing.key")), Path::new(&plain), &sealed.host_disk);
    std::fs::remove_file(&plain).unwrap();
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert!(
        stderr(&o).contains("stream identity") && stderr(&o).contains("differs from the expected"),
        "{}",
        stderr(&o)
    );
    assert!(sealed_memfds(pid).is_empty(), "{:?}", sealed_memfds(pid));
    assert!(s.status()["artifacts_received"].as_array().unwrap().is_empty());
    std::fs::write(&sealed.host_disk, &good).unwrap();
    assert_exit(&release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key"), exit_codes::OK);
    assert_eq!(s.status()["artifacts_received"], serde_json::json!(["weights.bin"]));
    assert_eq!(sealed_memfds(pid).len(), 1);
    let o = release(&s, &s.alg, &["--artifact", "weights.bin"], "alg-sealing.key");
    assert!(stderr(&o).contains("409") && stderr(&o).contains("already released"), "{}", stderr(&o));

    // A sealed upload that is cut, has a flipped byte, or swaps chunks from
    // another stream under the same key is refused (422) and keeps nothing;
    // the full stream then goes in.
    assert_exit(&release(&s, &s.alg, &["--algorithm"], "alg-sealing.key"), exit_codes::OK);
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py.sealed")]), exit_codes::OK);
    assert_exit(&release(&s, &s.b, &["--dataset", "hospital-b.csv"], "b-sealing.key"), exit_codes::OK);
    let full = std::fs::read(s.path("hospital-b.csv.sealed")).unwrap();
    let mut flipped = full.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 1;
    let other_stream = s.path("hospital-b.again.sealed");
    seal(
        &PathBuf::from(s.path("b-sealing.key")),
        Path::new(&s.path("hospital-b.csv")),
        Path::new(&other_stream),
    );
    let mut foreign = full[..64].to_vec();
    foreign.extend_from_slice(&std::fs::read(&other_stream).unwrap()[64..]);
    for (name, bytes, message) in [
        ("cut", full[..full.len() - 7].to_vec(), "truncated"),
        ("flipped", flipped, "chunk 0 failed authentication"),
        ("foreign", foreign, "chunk 0 failed authentication"),
    ] {
        let path = s.path(&format!("b-{name}.sealed"));
        std::fs::write(&path, bytes).unwrap();
        let o = s.run("upload-dataset", Some(&s.b), &["hospital-b.csv", &path]);
        assert_exit(&o, exit_codes::AGENT_ERROR);
        assert!(stderr(&o).contains("422") && stderr(&o).contains(message), "{name}: {}", stderr(&o));
        assert_eq!(s.status()["datasets_received"], serde_json::json!([]), "{name}");
    }
    assert_exit(
        &s.run("upload-dataset", Some(&s.b), &["hospital-b.csv", &s.path("hospital-b.csv.sealed")]),
        exit_codes::OK,
    );
    assert_eq!(s.status()["datasets_received"], serde_json::json!(["hospital-b.csv"]));
}

#[test]
fn a_sealed_binary_algorithm_runs_from_memory() {
    let program = "#!/bin/sh\necho \"$# args: $*\" > \"$CVM_RESULTS/args.txt\"\ncat \"$CVM_DATASETS\"/*.csv | wc -l >> \"$CVM_RESULTS/args.txt\"\n";
    let prepare: cvm_tests::Prepare = Box::new(move |p: &Prepared<'_>, m: &mut serde_json::Value| {
        let key = sealing_key(p.dir, "alg-sealing.key");
        let sealed = seal(&key, &p.dir.join("stats.py"), &p.dir.join("program.sealed"));
        m["algorithm"].as_object_mut().unwrap().remove("digest");
        m["algorithm"]["sealed"] = sealed;
        Vec::new()
    });
    let s = Scenario::start(Options {
        algorithm: program.to_owned(),
        interpreter: None,
        prepare: Some(prepare),
        ..Options::default()
    });
    assert_exit(&release(&s, &s.alg, &["--algorithm"], "alg-sealing.key"), exit_codes::OK);
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("program.sealed")]), exit_codes::OK);
    for (owner, name) in [(&s.a, "hospital-a.csv"), (&s.b, "hospital-b.csv")] {
        assert_exit(&s.run("upload-dataset", Some(owner), &[name, &s.path(name)]), exit_codes::OK);
    }
    let status = s.wait_final(Duration::from_secs(60));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let o = std::process::Command::new("tar").args(["-xOf", &out, "results/args.txt"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "2 args: --column age\n9\n");
    assert!(!s.work.join("algorithm/algorithm").exists(), "a sealed algorithm never becomes a file");
}
