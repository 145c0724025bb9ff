//! The fuzz targets' properties on stable Rust: every input of the committed
//! corpus (`fuzz/corpus-replay/<target>/`) and every past finding
//! (`fuzz/findings/<target>/`) goes through the same property function the
//! fuzz target calls, under the same allocation bound, so a regression fails
//! `make test` without nightly or cargo-fuzz. See `docs/fuzzing.md`.
//!
//! `CVM_FUZZ_SEEDS=DIR cargo test -p cvm-protocol --test fuzz_replay -- --ignored write_seeds`
//! writes seed inputs made by the crate's own encoders into `DIR/<target>/`
//! (`scripts/fuzz` does this before fuzzing).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::alloc::System;
use std::path::PathBuf;

use cap::Cap;
use cvm_protocol::fuzzing::{self, allocation_bound, FUZZ_SEALING_KEY, TARGETS};
use cvm_protocol::logstream::{
    AgentHello, AgentMessage, AgentStatus, HostHello, HostMessage, Level, Operation, Record, RecordKind,
    Reply, ReplyData, Request, VERSION,
};
use cvm_protocol::manifest::{Manifest, MAX_SAFE_INTEGER};
use cvm_protocol::sealed::{seal, SealingKey, MIN_CHUNK};
use cvm_test_support::fuzz_replay;

/// Counts every allocation; a limit set around a property call makes any
/// allocation past the bound fail (and the test process abort, naming the size).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Runs `f` on `input` with at most [`allocation_bound`] more bytes allocated at once.
fn bounded(f: fn(&[u8]), input: &[u8]) {
    fuzz_replay::bounded(&ALLOCATOR, allocation_bound(input.len()), || {}, f, input);
}

/// Replays the committed inputs of `target` through [`bounded`].
fn replay(target: &str) {
    fuzz_replay::replay(target, TARGETS, bounded);
}

#[test]
fn manifest() {
    replay("manifest");
}

#[test]
fn api_body() {
    replay("api_body");
}

#[test]
fn public_key() {
    replay("public_key");
}

#[test]
fn sealed_header() {
    replay("sealed_header");
}

#[test]
fn sealed_stream() {
    replay("sealed_stream");
}

#[test]
fn sealing_key() {
    replay("sealing_key");
}

#[test]
fn log_deframer() {
    replay("log_deframer");
}

#[test]
fn log_agent_message() {
    replay("log_agent_message");
}

#[test]
fn log_host_message() {
    replay("log_host_message");
}

#[test]
fn every_target_has_a_test_here() {
    let _exclusive = fuzz_replay::exclusive();
    let source = include_str!("fuzz_replay.rs");
    for (name, _) in TARGETS {
        assert!(source.contains(&format!("replay(\"{name}\")")), "no replay test for {name}");
    }
}

// ---- issue 13's findings, by name -----------------------------------------

/// A dropped record numbered u64::MAX: `dropped_count` computed `seq + 1`
/// (a panic in debug builds, a wrong count in release ones). Such a record
/// is refused at decode now.
#[test]
fn issue13_record_numbered_u64_max_is_refused_at_decode() {
    let _exclusive = fuzz_replay::exclusive();
    let body = std::fs::read(
        fuzz_replay::repo().join("fuzz/findings/log_agent_message/issue13-dropped-seq-u64-max.json"),
    )
    .unwrap();
    let err = AgentMessage::decode(&body).unwrap_err().to_string();
    assert!(err.contains("`seq`") && err.contains("9007199254740991"), "{err}");
    bounded(fuzzing::log_agent_message, &body);
}

/// Integers above 2^53 - 1 did not survive the canonical form (u64::MAX
/// came back as 18446744073709552000, which does not parse; 2^53 + 1 came
/// back as 2^53, another manifest with the same digest). They are refused,
/// naming the field.
#[test]
fn issue13_manifest_integers_above_2_pow_53_are_refused_by_name() {
    let _exclusive = fuzz_replay::exclusive();
    for (file, field) in [
        ("issue13-max-upload-u64-max.json", "limits.max_upload_bytes"),
        ("issue13-run-timeout-2pow53-plus-1.json", "limits.run_timeout_s"),
        ("issue13-sealed-size-2pow53.json", "datasets[0].sealed.size"),
    ] {
        let text = std::fs::read(fuzz_replay::repo().join("fuzz/findings/manifest").join(file)).unwrap();
        let err = Manifest::from_json(&text).unwrap_err();
        assert_eq!(err.field, field, "{file}: {err}");
        assert!(err.message.contains("9007199254740991"), "{file}: {err}");
        bounded(fuzzing::manifest, &text);
    }
    // The largest safe integer is accepted, and survives the canonical form.
    let text = std::fs::read_to_string(
        fuzz_replay::repo().join("fuzz/findings/manifest/issue13-run-timeout-2pow53-plus-1.json"),
    )
    .unwrap()
    .replace("9007199254740993", &MAX_SAFE_INTEGER.to_string());
    let m = Manifest::from_json(text.as_bytes()).unwrap();
    assert_eq!(m.limits.run_timeout_s, MAX_SAFE_INTEGER);
    assert_eq!(Manifest::from_json(&m.canonical_json()).unwrap(), m);
}

// ---- seeds -----------------------------------------------------------------

const KEY_A: &str = "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=";
const KEY_B: &str = "MCowBQYDK2VwAyEA3eT9q8fEqjpGkGg5r3ZKrJiUAVpQyk1G+AQlK+HoE9c=";
// A P-256 SPKI.
const KEY_P256: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPyTelxfKxA7J8A2Fd2PhncvwjzgEe1ED/k3PyUKYN2SS6TK5E8VVfejZVVdgaCDZtGMmRcrf1HTal/7Ka6bEGQ==";

fn manifests() -> Vec<(&'static str, String)> {
    let d = "ab".repeat(32);
    let sealed =
        format!(r#"{{"key_id": "{}", "stream_id": "{}", "size": 42}}"#, "11".repeat(16), "22".repeat(16));
    let script = format!(
        r#"{{"id": "stats-1", "name": "Mean age",
  "algorithm": {{"digest": "sha256:{d}", "provider_key": "{KEY_A}", "kind": "script",
                "interpreter": "/usr/bin/python3", "args": ["--column", "age"],
                "runtime": ["/usr/lib/python3.11", "/lib64"]}},
  "datasets": [{{"name": "hospital-a.csv", "digest": "sha256:{d}", "provider_key": "{KEY_B}"}},
               {{"name": "hospital-b.csv", "sealed": {sealed}, "provider_key": "{KEY_P256}"}}],
  "result_consumers": [{{"key": "{KEY_A}"}}, {{"key": "{KEY_B}", "seal_results": false}}],
  "limits": {{"max_upload_bytes": 1048576, "run_timeout_s": 30, "memory_bytes": 268435456,
             "results_bytes": 1048576, "max_processes": 8}},
  "logging": {{"algorithm_output": "forward"}}}}"#
    );
    let binary = format!(
        r#"{{"id":"weights","name":"Model","algorithm":{{"sealed":{sealed},"provider_key":"{KEY_A}","kind":"binary"}},"datasets":[],"artifacts":[{{"name":"weights.bin","sealed":{sealed},"source":"host-path","provider_key":"{KEY_B}"}},{{"name":"w2","sealed":{sealed},"source":"upload","provider_key":"{KEY_A}"}}],"result_consumers":[{{"key":"{KEY_A}"}}],"limits":{{"max_upload_bytes":9007199254740991,"run_timeout_s":1,"memory_bytes":16777216}}}}"#
    );
    let m = Manifest::from_json(script.as_bytes()).unwrap();
    let canonical = String::from_utf8(m.canonical_json()).unwrap();
    vec![("script", script), ("binary-sealed", binary), ("canonical", canonical)]
}

fn agent_messages() -> Vec<AgentMessage> {
    let record = |seq, kind| Record {
        seq,
        time_ms: 1_700_000_000_123,
        level: Level::Info,
        kind,
        source: "cvm_agent::computation".into(),
        computation: Some("mean-age".into()),
        message: "received algorithm \"stats.py\" \u{2713}".into(),
    };
    vec![
        AgentMessage::Hello(AgentHello {
            version: VERSION,
            boot: "00112233445566778899aabbccddeeff".into(),
            agent: "cvm-agent 0.1.0".into(),
            level: Level::Debug,
        }),
        AgentMessage::Record(record(1, RecordKind::Log)),
        AgentMessage::Record(record(2, RecordKind::Event { state: "running".into() })),
        AgentMessage::Record(record(9, RecordKind::Dropped { first_seq: 3 })),
        AgentMessage::Reply(Reply { id: 7, result: Ok(ReplyData::Level { level: Level::Trace }) }),
        AgentMessage::Reply(Reply { id: 8, result: Err("no".into()) }),
        AgentMessage::Reply(Reply {
            id: 9,
            result: Ok(ReplyData::Manifest { digest: format!("sha256:{}", "cd".repeat(32)) }),
        }),
        AgentMessage::Reply(Reply {
            id: 10,
            result: Ok(ReplyData::Status(AgentStatus {
                state: "failed".into(),
                reason: Some("timeout".into()),
                computation: Some("stats-1".into()),
                manifest_digest: Some(format!("sha256:{}", "cd".repeat(32))),
                level: Level::Info,
                queued: 3,
                capacity: 4096,
                dropped_total: 0,
                last_seq: 3,
            })),
        }),
    ]
}

fn host_messages() -> Vec<HostMessage> {
    vec![
        HostMessage::Hello(HostHello { version: VERSION }),
        HostMessage::Ack { seq: 42 },
        HostMessage::Request(Request { id: 1, op: Operation::Manifest { json: manifests()[0].1.clone() } }),
        HostMessage::Request(Request { id: 2, op: Operation::Status }),
        HostMessage::Request(Request { id: 3, op: Operation::SetLevel(Level::Warn) }),
    ]
}

fn frame_body(encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    encode(&mut out);
    out.split_off(4)
}

/// Seeds of every target, from the crate's own encoders and sample documents.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    for (name, text) in manifests() {
        out.push(("manifest", name.into(), text.into_bytes()));
    }
    let api: [(u8, &str, String); 8] = [
        (0, "evidence-request", format!(r#"{{"nonce":"{}"}}"#, "00".repeat(32))),
        (
            1,
            "key-release",
            format!(r#"{{"key":"cvm-sealing-key v1 {} {}"}}"#, "11".repeat(16), "22".repeat(32)),
        ),
        (
            2,
            "status",
            format!(
                r#"{{"manifest_digest":"sha256:{}","state":"failed","reason":"timeout","algorithm_received":true,"datasets_received":["a"],"datasets_missing":[],"artifacts_received":[],"artifacts_missing":["w"],"your_roles":["result_consumer"]}}"#,
                "ab".repeat(32)
            ),
        ),
        (
            3,
            "session-evidence-quoted",
            format!(
                r#"{{"report":"AAAA","event_log_digest":"sha256:{}","events":[{{"kind":"manifest","name":"stats-1","identity":"sha256:{}"}},{{"kind":"sealed_artifact","name":"w","identity":"sealed:{}:{}:42"}}],"vtpm":{{"status":"quoted","kind":"unverified","detail":"device:/dev/tpmrm0","pcr":15,"banks":["sha256","sha384"],"quote":"AAAA","signature":"AAAA"}}}}"#,
                "ab".repeat(32),
                "cd".repeat(32),
                "11".repeat(16),
                "22".repeat(16)
            ),
        ),
        (
            3,
            "session-evidence-off",
            format!(
                r#"{{"report":"","event_log_digest":"sha256:{}","vtpm":{{"status":"unavailable","reason":"no /dev/tpmrm0"}}}}"#,
                "00".repeat(32)
            ),
        ),
        (
            4,
            "uploaded",
            format!(
                r#"{{"name":"a.csv","sealed":{{"key_id":"{}","stream_id":"{}","size":42}},"bytes":106}}"#,
                "11".repeat(16),
                "22".repeat(16)
            ),
        ),
        (5, "key-released", r#"{"input":"artifacts/weights.bin","loaded":true,"bytes":4096}"#.into()),
        (
            6,
            "error",
            r#"{"error":{"code":"forbidden","message":"this key is not the dataset's provider"}}"#.into(),
        ),
    ];
    for (which, name, body) in api {
        let mut data = vec![which];
        data.extend_from_slice(body.as_bytes());
        out.push(("api_body", name.into(), data));
    }
    for (name, key) in [("ed25519", KEY_A), ("p256", KEY_P256)] {
        let der = cvm_protocol::PublicKey::from_base64(key).unwrap().spki_der().to_vec();
        out.push(("public_key", format!("{name}.der"), der));
        out.push(("public_key", format!("{name}.b64"), key.as_bytes().to_vec()));
    }
    let key = SealingKey::from_bytes(&FUZZ_SEALING_KEY);
    for size in [0usize, 1, 100, MIN_CHUNK as usize, MIN_CHUNK as usize + 1, 2 * MIN_CHUNK as usize + 7] {
        let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut sealed = Vec::new();
        seal(&key, &mut &plain[..], size as u64, &mut sealed, MIN_CHUNK).unwrap();
        if size == 100 {
            out.push(("sealed_header", "size-100".into(), sealed[..64].to_vec()));
        }
        out.push(("sealed_stream", format!("size-{size}"), sealed));
    }
    let mut big = Vec::new();
    seal(&key, &mut &[0u8; 10][..], 10, &mut big, 16 << 20).unwrap();
    out.push(("sealed_header", "chunk-16mib".into(), big[..64].to_vec()));
    out.push(("sealed_stream", "chunk-16mib-size-10".into(), big.clone()));
    out.push(("sealing_key", "key".into(), key.to_text().as_bytes().to_vec()));
    let mut all_frames = Vec::new();
    for (i, m) in agent_messages().iter().enumerate() {
        out.push(("log_agent_message", format!("agent-{i}"), frame_body(|o| m.encode(o).unwrap())));
        m.encode(&mut all_frames).unwrap();
    }
    for (i, m) in host_messages().iter().enumerate() {
        out.push(("log_host_message", format!("host-{i}"), frame_body(|o| m.encode(o).unwrap())));
        m.encode(&mut all_frames).unwrap();
    }
    out.push(("log_deframer", "every-message".into(), all_frames));
    out
}

#[test]
fn every_seed_holds_its_property() {
    let _exclusive = fuzz_replay::exclusive();
    for (target, name, data) in seeds() {
        let (_, f) = TARGETS.iter().find(|(t, _)| *t == target).unwrap();
        let _ = name;
        bounded(*f, &data);
    }
}

#[test]
#[ignore = "writes seed files: CVM_FUZZ_SEEDS=DIR (scripts/fuzz runs it)"]
fn write_seeds() {
    let _exclusive = fuzz_replay::exclusive();
    let dir = PathBuf::from(std::env::var_os("CVM_FUZZ_SEEDS").expect("CVM_FUZZ_SEEDS=DIR"));
    for (target, name, data) in seeds() {
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir).unwrap();
        std::fs::write(target_dir.join(format!("seed-{name}")), data).unwrap();
    }
}
