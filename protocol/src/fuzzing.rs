//! The properties the fuzz targets check, one function per target.
//!
//! Each function takes the fuzzer's bytes, runs the parser they are meant
//! for, and panics when a property fails: a decoded value that does not
//! re-encode to what the format says, a canonical form that does not parse
//! back to the same manifest, a deframer that cuts differently depending on
//! how the bytes arrive. Bytes the parser refuses are fine; a panic is a
//! finding.
//!
//! `fuzz/` (cargo-fuzz, nightly) calls these functions from its targets, with
//! a global allocator that refuses to go over [`allocation_bound`]; the
//! stable tests (`tests/fuzz_replay.rs`) call the same functions on the
//! committed corpus and on every past finding, under the same bound. See
//! `docs/fuzzing.md` at the repository root.
//!
//! Not part of the crate's API: hidden from the docs, no stability promise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a property that does not hold is a panic: that is what the fuzzer reports"
)]

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{ErrorBody, EvidenceRequest, KeyRelease, KeyReleased, SessionEvidence, Status, Uploaded};
use crate::logstream::{AgentMessage, Deframer, HostMessage, LogStreamError, Operation, MAX_FRAME};
use crate::manifest::{Manifest, MAX_SAFE_INTEGER};
use crate::sealed::{unseal, Header, Opener, SealingKey, HEADER_LEN, TAG_LEN};
use crate::{Digest, PublicKey};

/// A property function: panics when the property does not hold for the input.
pub type Property = fn(&[u8]);

/// Every target of this crate: its name (the file in `fuzz/fuzz_targets/`
/// and the directory of its corpus) and its property function.
pub const TARGETS: &[(&str, Property)] = &[
    ("manifest", manifest),
    ("api_body", api_body),
    ("public_key", public_key),
    ("sealed_header", sealed_header),
    ("sealed_stream", sealed_stream),
    ("sealing_key", sealing_key),
    ("log_deframer", log_deframer),
    ("log_agent_message", log_agent_message),
    ("log_host_message", log_host_message),
];

/// The key every `sealed_stream` input is opened with; the seeds are sealed
/// to it, so the fuzzer starts from streams that open.
pub const FUZZ_SEALING_KEY: [u8; 32] = [0x5e; 32];

/// The most bytes a property function may hold allocated at once for an
/// input of `len` bytes: 1 MiB, or 64 bytes per input byte if that is more.
///
/// Every parser here is meant to allocate in proportion to what it was
/// given, never to what the input claims; the fuzz targets' allocator and
/// the replay tests fail an input that needs more.
pub fn allocation_bound(len: usize) -> usize {
    (1usize << 20).max(len.saturating_mul(64))
}

/// A manifest that parses has a canonical form that parses back to the
/// same manifest (so the digest names exactly one manifest), whose own
/// canonical form is the same bytes, and whose digest is the SHA-256 of
/// those bytes; every integer in it is JSON-safe.
pub fn manifest(data: &[u8]) {
    let Ok(m) = Manifest::from_json(data) else { return };
    let canonical = m.canonical_json();
    let back = Manifest::from_json(&canonical).unwrap_or_else(|e| {
        panic!("the canonical form {:?} does not parse: {e}", String::from_utf8_lossy(&canonical))
    });
    assert_eq!(back, m, "the canonical form is another manifest: {}", String::from_utf8_lossy(&canonical));
    assert_eq!(back.canonical_json(), canonical, "the canonical form is not stable");
    let digest = m.digest();
    assert_eq!(digest, Digest::of(&canonical));
    assert_eq!(digest.to_string().parse::<Digest>().expect("a digest's text parses"), digest);
    let value: serde_json::Value = serde_json::from_slice(&canonical).expect("the canonical form is JSON");
    assert_no_unsafe_integer(&value);
}

fn assert_no_unsafe_integer(v: &serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => {
            let exact = n.as_u64().is_some_and(|u| u <= MAX_SAFE_INTEGER);
            assert!(exact, "the canonical form holds {n}, not an integer in 0..=2^53-1");
        }
        serde_json::Value::Array(a) => a.iter().for_each(assert_no_unsafe_integer),
        serde_json::Value::Object(o) => o.values().for_each(assert_no_unsafe_integer),
        _ => {}
    }
}

/// The first byte picks one of the API's JSON bodies; the rest is parsed as
/// it, and what parses serialises to JSON that parses to the same value and
/// serialises to the same bytes again.
pub fn api_body(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 7 {
        0 => json_round_trip::<EvidenceRequest>(body),
        1 => json_round_trip::<KeyRelease>(body),
        2 => json_round_trip::<Status>(body),
        3 => json_round_trip::<SessionEvidence>(body),
        4 => json_round_trip::<Uploaded>(body),
        5 => json_round_trip::<KeyReleased>(body),
        _ => json_round_trip::<ErrorBody>(body),
    }
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(body) else { return };
    let text = serde_json::to_vec(&value).expect("a parsed body serialises");
    let back: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!("{} does not parse back: {e}", String::from_utf8_lossy(&text));
    });
    assert_eq!(back, value);
    assert_eq!(serde_json::to_vec(&back).expect("serialises"), text, "the JSON form is not stable");
}

/// A key that parses is exactly the DER it came from, and survives the
/// manifest's base64 form; base64 that parses names the same key as its DER.
pub fn public_key(data: &[u8]) {
    if let Ok(key) = PublicKey::from_spki_der(data) {
        assert_eq!(key.spki_der(), data);
        let again = PublicKey::from_base64(&key.to_base64()).expect("a key's base64 parses");
        assert_eq!(again, key);
        assert_eq!(again.algorithm(), key.algorithm());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = PublicKey::from_base64(text) {
            let again = PublicKey::from_spki_der(key.spki_der()).expect("a key's DER parses");
            assert_eq!(again, key);
        }
    }
}

/// A 64-byte header that decodes encodes to the same 64 bytes; its chunk
/// count and stream length are what the format says, without overflow.
pub fn sealed_header(data: &[u8]) {
    let Ok(bytes) = <&[u8; HEADER_LEN]>::try_from(data) else { return };
    let Ok(header) = Header::decode(bytes) else { return };
    assert_eq!(&header.encode(), bytes, "the header re-encodes differently");
    let size = u128::from(header.identity.size);
    let chunk = u128::from(header.chunk_size);
    let chunks = size.div_ceil(chunk).max(1);
    assert_eq!(u128::from(header.chunks()), chunks);
    let len = HEADER_LEN as u128 + size + chunks * TAG_LEN as u128;
    assert_eq!(u128::from(header.stream_len()), len.min(u128::from(u64::MAX)));
}

/// Opens the bytes as a stream sealed to [`FUZZ_SEALING_KEY`]: a stream
/// that opens gives exactly its header's size in plaintext, is exactly the
/// header's stream length, and `unseal` agrees with the chunk-by-chunk
/// opener on both the verdict and the plaintext.
pub fn sealed_stream(data: &[u8]) {
    let key = SealingKey::from_bytes(&FUZZ_SEALING_KEY);
    let mut by_chunk = Vec::new();
    let opened = (|| {
        let mut opener = Opener::new(&key, data)?;
        let chunk_size = opener.header().chunk_size as usize;
        while let Some(chunk) = opener.next_chunk()? {
            assert!(chunk.len() <= chunk_size, "a chunk longer than the chunk size");
            by_chunk.extend_from_slice(chunk);
        }
        let identity = opener.finish()?;
        assert_eq!(identity, opener.header().identity);
        assert_eq!(data.len() as u64, opener.header().stream_len(), "an authentic stream of another length");
        Ok::<_, crate::sealed::SealError>(identity)
    })();
    let mut whole = Vec::new();
    let unsealed = unseal(&key, data, &mut whole);
    match (&opened, &unsealed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(by_chunk.len() as u64, a.size, "plaintext of another length than the header says");
            assert_eq!(by_chunk, whole);
        }
        (Err(_), Err(_)) => {}
        _ => panic!("the opener says {opened:?}, unseal says {unsealed:?}"),
    }
    // The parallel open (the agent's) gives the same verdict, the same
    // error and the same plaintext. (Only where the claimed size could be
    // in the input: a stream that opens is longer than its plaintext.)
    let Ok(mut opener) = Opener::new(&key, data) else { return };
    let Ok(size) = usize::try_from(opener.header().identity.size) else { return };
    if size > data.len() {
        return;
    }
    let mut dest = vec![0u8; size];
    let parallel = opener.open_parallel_into(&mut dest, 2, &|_| {}).and_then(|()| opener.finish());
    match (&parallel, &unsealed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(dest, whole, "the parallel open gives another plaintext");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "the parallel open fails otherwise"),
        _ => panic!("the parallel open says {parallel:?}, unseal says {unsealed:?}"),
    }
}

/// A key file that parses names a key whose own key file parses to the
/// same key, and that text is the canonical form.
pub fn sealing_key(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(key) = SealingKey::from_text(text) else { return };
    let canonical = key.to_text();
    let again = SealingKey::from_text(&canonical).expect("a key's own file parses");
    assert_eq!(again.id(), key.id());
    assert_eq!(*again.to_text(), *canonical, "the key file names another key");
}

/// The deframer cuts the same frames, and fails at the same point, whether
/// the bytes arrive at once or in pieces; every frame goes through both
/// message decoders' properties.
pub fn log_deframer(data: &[u8]) {
    let whole = frames(std::iter::once(data));
    // Piece lengths from the bytes themselves: deterministic, and varied.
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = (1 + (usize::from(rest[0]) ^ i.wrapping_mul(7)) % 23).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        pieces.push(piece);
        rest = tail;
        i += 1;
    }
    let split = frames(pieces.into_iter());
    assert_eq!(whole, split, "the frames depend on how the bytes arrived");
    for frame in whole.0 {
        log_agent_message(&frame);
        log_host_message(&frame);
    }
}

/// Every frame the deframer gives, and its error if it stopped on one.
fn frames<'a>(pieces: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, Option<LogStreamError>) {
    let mut d = Deframer::new();
    let mut out = Vec::new();
    let mut received = 0usize;
    for piece in pieces {
        d.push(piece);
        received += piece.len();
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    assert!(!f.is_empty() && f.len() <= MAX_FRAME);
                    out.push(f.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        let framed: usize = out.iter().map(|f| 4 + f.len()).sum();
        assert_eq!(d.pending(), received - framed, "pending bytes miscounted");
        assert!(d.pending() < 4 + MAX_FRAME, "the deframer holds more than one frame");
    }
    (out, None)
}

/// A message from the agent that decodes encodes to one frame that decodes
/// to the same message; a record's counts are computed without overflow.
pub fn log_agent_message(body: &[u8]) {
    let Ok(message) = AgentMessage::decode(body) else { return };
    if let AgentMessage::Record(r) = &message {
        if let Some(count) = r.dropped_count() {
            assert!(count >= 1, "a dropped record stands for at least one record");
            for last_seen in [0, 1, r.seq / 2, r.seq.saturating_sub(1), r.seq, u64::MAX] {
                let lost = r.lost_after(last_seen).expect("a dropped record has a loss count");
                assert!(lost <= count, "lost {lost} of {count} dropped records");
            }
        }
    }
    let mut frame = Vec::new();
    match message.encode(&mut frame) {
        Ok(()) => {}
        // Re-encoding may escape differently; only a body near the limit can grow past it.
        Err(LogStreamError::FrameTooLarge { .. }) if body.len() > MAX_FRAME / 2 => return,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    }
    let back = AgentMessage::decode(&frame[4..]).expect("an encoded message decodes");
    assert_eq!(back, message);
}

/// A message from the host that decodes encodes to one frame that decodes
/// to the same message. A request the agent refuses (`Unsupported`) is
/// kept only by its operation's name, which must survive.
pub fn log_host_message(body: &[u8]) {
    let Ok(message) = HostMessage::decode(body) else { return };
    let mut frame = Vec::new();
    match message.encode(&mut frame) {
        Ok(()) => {}
        Err(LogStreamError::FrameTooLarge { .. }) if body.len() > MAX_FRAME / 2 => return,
        Err(e) => panic!("a decoded message does not encode: {e}"),
    }
    let back = HostMessage::decode(&frame[4..]).expect("an encoded message decodes");
    match (&message, &back) {
        (HostMessage::Request(a), HostMessage::Request(b)) => {
            assert_eq!(a.id, b.id);
            match (&a.op, &b.op) {
                (Operation::Unsupported { op: x, .. }, Operation::Unsupported { op: y, .. }) => {
                    assert_eq!(x, y)
                }
                (x, y) => assert_eq!(x, y),
            }
        }
        _ => assert_eq!(back, message),
    }
}
