//! Sealed streams opened and sealed on several workers: the same bytes and
//! the same refusals as the sequential opener, for every tampering, and
//! for the ones aimed at the split into workers.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::io::{Read, Seek};

use cvm_protocol::sealed::{
    seal, seal_parallel, sealed_len, unseal, Header, Opener, SealError, SealingKey, StreamIdentity,
    HEADER_LEN, MIN_CHUNK, TAG_LEN,
};

const CHUNK: u32 = MIN_CHUNK;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()
}

fn sealed(key: &SealingKey, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal(key, &mut &plain[..], plain.len() as u64, &mut out, CHUNK).unwrap();
    out
}

/// Offsets of chunk `i` (with its tag) in a stream.
fn chunk_range(i: usize, plain_len: usize) -> std::ops::Range<usize> {
    let c = CHUNK as usize;
    let start = HEADER_LEN + i * (c + TAG_LEN);
    let len = plain_len.saturating_sub(i * c).min(c) + TAG_LEN;
    start..start + len
}

/// The sequential open: the reference.
fn open_seq(key: &SealingKey, ct: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::new();
    unseal(key, ct, &mut out).map(|_| out)
}

/// The agent's open: in place, on `workers` threads, then `finish`.
fn open_par(key: &SealingKey, ct: &[u8], workers: usize) -> Result<Vec<u8>, SealError> {
    let mut opener = Opener::new(key, ct)?;
    let mut dest = vec![0u8; opener.header().identity.size as usize];
    opener.open_parallel_into(&mut dest, workers, &|_| {})?;
    opener.finish()?;
    Ok(dest)
}

/// cvmctl's open: through chunk buffers into a file, then `finish`.
fn open_par_file(key: &SealingKey, ct: &[u8], workers: usize) -> Result<Vec<u8>, SealError> {
    let mut out = tempfile::tempfile().unwrap();
    let mut opener = Opener::new(key, ct)?;
    opener.open_parallel_to(&out, workers, &|_| {})?;
    opener.finish()?;
    let mut v = Vec::new();
    out.rewind().unwrap();
    out.read_to_end(&mut v).unwrap();
    Ok(v)
}

/// Both parallel opens with several worker counts agree with the sequential
/// one: the same plaintext, or the same error.
///
/// A header claiming more plaintext than the stream holds cannot open (and
/// the agent refuses it by its pinned identity before it makes room for
/// it): there, only that refusal is checked.
fn agree(key: &SealingKey, ct: &[u8], what: &str) -> Result<Vec<u8>, SealError> {
    let reference = open_seq(key, ct);
    if let Ok(h) = Header::read_from(&mut &ct[..]) {
        if h.identity.size > ct.len() as u64 {
            assert!(reference.is_err(), "{what}");
            let pinned = StreamIdentity { size: 1, ..h.identity };
            let e = Opener::expecting(key, ct, &pinned).err().unwrap();
            assert!(matches!(e, SealError::Identity { .. } | SealError::WrongKey { .. }), "{what}: {e}");
            return reference;
        }
    }
    for workers in [1, 2, 3, 4, 8] {
        for (how, got) in
            [("in place", open_par(key, ct, workers)), ("to a file", open_par_file(key, ct, workers))]
        {
            match (&reference, &got) {
                (Ok(a), Ok(b)) => assert!(a == b, "{what}: {how}, {workers} workers: other plaintext"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string(), "{what}: {how}, {workers} workers")
                }
                _ => panic!(
                    "{what}: {how}, {workers} workers: {got:?} where the sequential open gave {reference:?}"
                ),
            }
        }
    }
    reference
}

#[test]
fn parallel_opens_round_trip_at_every_boundary() {
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    for len in [0, 1, 15, c - 1, c, c + 1, c + 15, c + 16, c + 17, 3 * c, 5 * c + 17, 40 * c + 3] {
        let plain = data(len);
        assert_eq!(agree(&key, &sealed(&key, &plain), &format!("len {len}")).unwrap(), plain, "len {len}");
    }
}

#[test]
fn parallel_seal_makes_the_same_format() {
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    for len in [0, 1, c, 7 * c + 5] {
        let plain = data(len);
        for workers in [1, 3] {
            let mut out = tempfile::tempfile().unwrap();
            let id = seal_parallel(&key, &mut &plain[..], len as u64, &out, CHUNK, workers, &|_| {}).unwrap();
            let mut ct = Vec::new();
            out.rewind().unwrap();
            out.read_to_end(&mut ct).unwrap();
            assert_eq!(ct.len() as u64, sealed_len(len as u64, CHUNK));
            let mut opened = Vec::new();
            assert_eq!(unseal(&key, &ct[..], &mut opened).unwrap(), id);
            assert_eq!(opened, plain, "len {len}, {workers} workers");
        }
    }
    // An input shorter or longer than announced is refused.
    let out = tempfile::tempfile().unwrap();
    let short = seal_parallel(&key, &mut &data(10)[..], 11, &out, CHUNK, 2, &|_| {}).unwrap_err();
    assert!(short.to_string().contains("ended after 10 of 11 bytes"), "{short}");
    let long = seal_parallel(&key, &mut &data(12)[..], 11, &out, CHUNK, 2, &|_| {}).unwrap_err();
    assert!(long.to_string().contains("longer than 11 bytes"), "{long}");
}

#[test]
fn every_tampering_is_caught_by_the_parallel_opens_as_by_the_sequential_one() {
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    let len = 3 * c + 5;
    let ct = sealed(&key, &data(len));
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // A flipped byte: every header byte, the start, middle and end of chunks, the last tag.
    for pos in (0..HEADER_LEN).chain([
        chunk_range(0, len).start,
        chunk_range(1, len).start + 100,
        chunk_range(2, len).end - 1,
        chunk_range(3, len).start,
        ct.len() - 1,
    ]) {
        let mut bad = ct.clone();
        bad[pos] ^= 0x01;
        cases.push((format!("flip at {pos}"), bad));
    }
    // Cut anywhere: in the header, at and inside chunk boundaries, in a tag; bytes appended.
    for cut in [
        0,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 1,
        chunk_range(0, len).end - TAG_LEN,
        chunk_range(0, len).end - 1,
        chunk_range(0, len).end,
        chunk_range(2, len).start + 10,
        chunk_range(3, len).start,
        ct.len() - 1,
    ] {
        cases.push((format!("cut at {cut}"), ct[..cut].to_vec()));
    }
    cases.push(("one byte appended".into(), [&ct[..], &[0]].concat()));
    cases.push(("a chunk appended".into(), [&ct[..], &ct[chunk_range(1, len)]].concat()));
    // Reordered, duplicated, from another stream, the last chunk dropped with the length edited.
    let (c0, c1, c2, c3) =
        (chunk_range(0, len), chunk_range(1, len), chunk_range(2, len), chunk_range(3, len));
    let head = &ct[..HEADER_LEN];
    cases.push((
        "0 and 1 swapped".into(),
        [head, &ct[c1.clone()], &ct[c0.clone()], &ct[c2.clone()], &ct[c3.clone()]].concat(),
    ));
    cases.push((
        "0 twice".into(),
        [head, &ct[c0.clone()], &ct[c0.clone()], &ct[c2.clone()], &ct[c3.clone()]].concat(),
    ));
    let other = sealed(&key, &data(len));
    cases.push((
        "1 from another stream".into(),
        [head, &ct[c0.clone()], &other[c1.clone()], &ct[c2.clone()], &ct[c3.clone()]].concat(),
    ));
    cases.push(("another stream's header".into(), [&other[..HEADER_LEN], &ct[HEADER_LEN..]].concat()));
    let mut shorter = [head, &ct[c0.clone()], &ct[c1.clone()], &ct[c2.clone()]].concat();
    shorter[48..56].copy_from_slice(&(3 * c as u64).to_be_bytes());
    cases.push(("last chunk dropped, length edited".into(), shorter));
    for (what, bad) in &cases {
        assert!(agree(&key, bad, what).is_err(), "{what} went unnoticed");
    }
    // And the wrong key.
    let wrong = SealingKey::generate().unwrap();
    assert!(matches!(agree(&wrong, &ct, "wrong key").unwrap_err(), SealError::WrongKey { .. }));
}

#[test]
fn a_chunk_swapped_between_two_workers_shares_is_caught() {
    // 16 chunks on 4 workers: chunks 1 and 14 are read far apart, so
    // different workers open them, each at the other's position.
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    let len = 16 * c;
    let ct = sealed(&key, &data(len));
    let mut swapped = ct.clone();
    let (a, b) = (chunk_range(1, len), chunk_range(14, len));
    swapped[a.clone()].copy_from_slice(&ct[b.clone()]);
    swapped[b].copy_from_slice(&ct[a]);
    let err = agree(&key, &swapped, "1 and 14 swapped").unwrap_err();
    assert!(matches!(err, SealError::Chunk { index: 1 }), "{err}");
    for workers in [2, 4] {
        let err = open_par(&key, &swapped, workers).unwrap_err();
        assert!(matches!(err, SealError::Chunk { index: 1 }), "{err}");
    }
    // Every chunk rotated by one worker's share: all fail, the first is named.
    let mut rotated = ct[..HEADER_LEN].to_vec();
    for i in 0..16 {
        rotated.extend_from_slice(&ct[chunk_range((i + 4) % 16, len)]);
    }
    let err = open_par(&key, &rotated, 4).unwrap_err();
    assert!(matches!(err, SealError::Chunk { index: 0 }), "{err}");
}

#[test]
fn a_stream_cut_exactly_at_a_worker_boundary_is_truncated() {
    // The cut falls after whole chunks, where one worker's batch ends and
    // the next would begin: every chunk read verifies, the missing rest is
    // what fails.
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    let len = 16 * c;
    let ct = sealed(&key, &data(len));
    for (workers, cut_after) in [(4usize, 4usize), (4, 8), (2, 15), (3, 12)] {
        let cut = chunk_range(cut_after - 1, len).end;
        let err = open_par(&key, &ct[..cut], workers).unwrap_err();
        assert!(
            matches!(err, SealError::Truncated { index, chunks: 16 } if index == cut_after as u64),
            "{workers} workers, cut after {cut_after} chunks: {err}"
        );
        let err = open_par_file(&key, &ct[..cut], workers).unwrap_err();
        assert!(matches!(err, SealError::Truncated { .. }), "{err}");
    }
}

#[test]
fn a_failed_parallel_open_zeroes_the_failed_chunk_and_reports_progress_only_for_verified_ones() {
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    let len = 8 * c;
    let mut ct = sealed(&key, &data(len));
    let at = chunk_range(5, len).start + 7;
    ct[at] ^= 0x80;
    let mut opener = Opener::new(&key, &ct[..]).unwrap();
    let mut dest = vec![0xAA; len];
    let seen = std::sync::atomic::AtomicU64::new(0);
    let err = opener
        .open_parallel_into(&mut dest, 3, &|n| {
            seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap_err();
    assert!(matches!(err, SealError::Chunk { index: 5 }), "{err}");
    assert!(dest[5 * c..6 * c].iter().all(|b| *b == 0), "the failed chunk's bytes were not zeroed");
    assert!(seen.into_inner() <= 7 * c as u64);
    assert!(opener.finish().is_err(), "a failed open never finishes");
    // The destination must be the plaintext's exact length.
    let mut opener = Opener::new(&key, &ct[..]).unwrap();
    let err = opener.open_parallel_into(&mut vec![0; len - 1], 2, &|_| {}).unwrap_err();
    assert!(matches!(err, SealError::BufferTooSmall { .. }), "{err}");
}
