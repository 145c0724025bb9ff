//! The log stream's tests: round trips, the documented wire form, hostile frames.

use super::frame::encode_json;
use super::*;

fn record(seq: u64, kind: RecordKind) -> Record {
    Record {
        seq,
        time_ms: 1_700_000_000_123,
        level: Level::Info,
        kind,
        source: "cvm_agent::computation".into(),
        computation: Some("mean-age".into()),
        message: "received algorithm \"stats.py\" ✓".into(),
    }
}

fn frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut d = Deframer::new();
    d.push(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        out.push(f.to_vec());
    }
    assert_eq!(d.pending(), 0);
    out
}

#[test]
fn agent_messages_round_trip() {
    let msgs = vec![
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
            result: Ok(ReplyData::Status(AgentStatus {
                state: "awaiting_manifest".into(),
                reason: None,
                computation: None,
                manifest_digest: None,
                level: Level::Info,
                queued: 3,
                capacity: 4096,
                dropped_total: 0,
                last_seq: 3,
            })),
        }),
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        m.encode(&mut wire).unwrap();
    }
    let back: Vec<AgentMessage> = frames(&wire).iter().map(|f| AgentMessage::decode(f).unwrap()).collect();
    assert_eq!(back, msgs);
}

#[test]
fn host_messages_round_trip() {
    let msgs = vec![
        HostMessage::Hello(HostHello { version: VERSION }),
        HostMessage::Ack { seq: 42 },
        HostMessage::Request(Request { id: 1, op: Operation::Manifest { json: "{\"id\": 1}".into() } }),
        HostMessage::Request(Request { id: 2, op: Operation::Status }),
        HostMessage::Request(Request { id: 3, op: Operation::SetLevel(Level::Warn) }),
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        m.encode(&mut wire).unwrap();
    }
    let back: Vec<HostMessage> = frames(&wire).iter().map(|f| HostMessage::decode(f).unwrap()).collect();
    assert_eq!(back, msgs);
}

#[test]
fn the_wire_form_is_the_documented_one() {
    let mut wire = Vec::new();
    AgentMessage::Record(record(9, RecordKind::Dropped { first_seq: 3 })).encode(&mut wire).unwrap();
    let body = &wire[4..];
    assert_eq!(u32::from_be_bytes(wire[..4].try_into().unwrap()) as usize, body.len());
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "record", "seq": 9, "time_ms": 1_700_000_000_123u64, "level": "info",
            "kind": "dropped", "source": "cvm_agent::computation", "computation": "mean-age",
            "message": "received algorithm \"stats.py\" ✓", "first_seq": 3, "count": 7})
    );
}

#[test]
fn unknown_and_malformed_requests_are_unsupported_with_a_reason() {
    let parse = |json: &str| {
        let mut wire = Vec::new();
        encode_json(&mut wire, &serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap();
        HostMessage::decode(&wire[4..]).unwrap()
    };
    for (json, op, reason) in [
        (
            r#"{"type":"request","id":1,"op":"shell","cmd":"id"}"#,
            "shell",
            "only manifest, status and set_level",
        ),
        (
            r#"{"type":"request","id":2,"op":"set_level","level":"loud"}"#,
            "set_level",
            "\"loud\" is not error",
        ),
        (r#"{"type":"request","id":3,"op":"set_level"}"#, "set_level", "`level` field is missing"),
        (r#"{"type":"request","id":4,"op":"manifest"}"#, "manifest", "`manifest` field"),
    ] {
        match parse(json) {
            HostMessage::Request(Request { op: Operation::Unsupported { op: o, reason: r }, .. }) => {
                assert_eq!(o, op);
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn bad_messages_are_errors_naming_what_is_wrong() {
    let cases: [(&str, &str); 8] = [
        (
            r#"{"type":"hello","version":2,"boot":"00112233445566778899aabbccddeeff","agent":"a","level":"info"}"#,
            "version 2",
        ),
        (r#"{"type":"hello","version":1,"boot":"xyz","agent":"a","level":"info"}"#, "`boot`"),
        (
            r#"{"type":"record","seq":0,"time_ms":1,"level":"info","kind":"log","source":"s","message":"m"}"#,
            "`seq`",
        ),
        (
            r#"{"type":"record","seq":1,"time_ms":1,"level":"loud","kind":"log","source":"s","message":"m"}"#,
            "loud",
        ),
        (
            r#"{"type":"record","seq":1,"time_ms":1,"level":"info","kind":"poem","source":"s","message":"m"}"#,
            "`kind`",
        ),
        (
            r#"{"type":"record","seq":5,"time_ms":1,"level":"info","kind":"dropped","first_seq":6,"count":0,"source":"s","message":"m"}"#,
            "`first_seq`",
        ),
        (
            r#"{"type":"record","seq":5,"time_ms":1,"level":"info","kind":"dropped","first_seq":2,"count":3,"source":"s","message":"m"}"#,
            "`count`",
        ),
        (r#"{"type":"reply","id":1}"#, "`result`"),
    ];
    for (json, needle) in cases {
        let e = AgentMessage::decode(json.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
    assert!(matches!(AgentMessage::decode(b"[1,2]"), Err(LogStreamError::Malformed(_))));
    assert!(matches!(HostMessage::decode(b"{\"type\":\"shell\"}"), Err(LogStreamError::Malformed(_))));
}

#[test]
fn oversized_and_empty_frames_are_refused_from_their_header() {
    let mut d = Deframer::new();
    d.push(&((MAX_FRAME + 1) as u32).to_be_bytes());
    assert_eq!(d.next_frame(), Err(LogStreamError::FrameTooLarge { len: MAX_FRAME + 1, max: MAX_FRAME }));
    let mut d = Deframer::new();
    d.push(&[0, 0, 0, 0, b'{']);
    assert_eq!(d.next_frame(), Err(LogStreamError::EmptyFrame));
    let huge = Request { id: 1, op: Operation::Manifest { json: "x".repeat(MAX_FRAME) } };
    let mut out = vec![1, 2, 3];
    assert!(matches!(HostMessage::Request(huge).encode(&mut out), Err(LogStreamError::FrameTooLarge { .. })));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn frames_split_at_every_byte_reassemble() {
    let mut wire = Vec::new();
    for seq in 1..=5 {
        AgentMessage::Record(record(seq, RecordKind::Log)).encode(&mut wire).unwrap();
    }
    let mut d = Deframer::new();
    let mut seqs = Vec::new();
    for b in &wire {
        d.push(std::slice::from_ref(b));
        while let Some(f) = d.next_frame().unwrap() {
            match AgentMessage::decode(f).unwrap() {
                AgentMessage::Record(r) => seqs.push(r.seq),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

#[test]
fn random_and_truncated_input_never_panics() {
    // A small xorshift generator: deterministic, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut valid = Vec::new();
    AgentMessage::Record(record(3, RecordKind::Dropped { first_seq: 1 })).encode(&mut valid).unwrap();
    HostMessage::Request(Request { id: 1, op: Operation::SetLevel(Level::Debug) })
        .encode(&mut valid)
        .unwrap();
    for round in 0..20_000 {
        let mut bytes = if round % 2 == 0 {
            let n = (next() % 64) as usize;
            (0..n).map(|_| next() as u8).collect::<Vec<u8>>()
        } else {
            valid.clone()
        };
        // Truncate, and flip a few bytes.
        bytes.truncate((next() as usize) % (bytes.len() + 1));
        for _ in 0..(next() % 4) {
            if !bytes.is_empty() {
                let i = (next() as usize) % bytes.len();
                bytes[i] ^= next() as u8;
            }
        }
        let mut d = Deframer::new();
        d.push(&bytes);
        while let Ok(Some(f)) = d.next_frame() {
            let _ = AgentMessage::decode(f);
            let _ = HostMessage::decode(f);
        }
        let _ = AgentMessage::decode(&bytes);
        let _ = HostMessage::decode(&bytes);
    }
}

#[test]
fn lost_counts_only_what_the_host_did_not_get() {
    let r = record(10, RecordKind::Dropped { first_seq: 4 });
    assert_eq!(r.dropped_count(), Some(7));
    assert_eq!(r.lost_after(0), Some(7));
    assert_eq!(r.lost_after(3), Some(7));
    assert_eq!(r.lost_after(6), Some(4));
    assert_eq!(r.lost_after(10), Some(0));
    assert_eq!(record(1, RecordKind::Log).lost_after(0), None);
}

#[test]
fn records_numbered_past_max_seq_are_refused_both_ways() {
    let json = |seq: u64, first: u64| {
        format!(
            r#"{{"type":"record","seq":{seq},"time_ms":1,"level":"info","kind":"dropped","first_seq":{first},"count":{},"source":"s","message":"m"}}"#,
            seq - first + 1
        )
    };
    let last = AgentMessage::decode(json(MAX_SEQ, 1).as_bytes()).unwrap();
    let AgentMessage::Record(r) = &last else { panic!("{last:?}") };
    assert_eq!(r.dropped_count(), Some(MAX_SEQ));
    for seq in [MAX_SEQ + 1, u64::MAX] {
        let e = AgentMessage::decode(json(seq, 1).as_bytes()).unwrap_err();
        assert!(matches!(e, LogStreamError::Invalid { field: "seq", .. }), "{e}");
        let mut out = vec![9];
        let r = record(seq, RecordKind::Dropped { first_seq: 1 });
        assert!(AgentMessage::Record(r.clone()).encode(&mut out).is_err());
        assert!(AgentMessage::encode_record(&r, &mut out).is_err());
        assert_eq!(out, [9]);
        // Counting never wraps, even on a record that could not be sent.
        assert_eq!(r.dropped_count(), Some(seq));
        assert_eq!(r.lost_after(u64::MAX), Some(0));
    }
}

#[test]
fn cut_respects_character_boundaries() {
    assert_eq!(cut("abc", 5), "abc");
    assert_eq!(cut("aé", 2), "a");
    assert_eq!(cut("ééé", 4), "éé");
}
