//! Sealed streams: round trips at every size boundary and for several GiB,
//! and every tampering the format must catch.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::io::{Read, Write};

use cvm_protocol::sealed::{seal, unseal, Opener, SealError, SealingKey, HEADER_LEN, MIN_CHUNK, TAG_LEN};
use sha2::{Digest, Sha256};

const CHUNK: u32 = MIN_CHUNK;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect()
}

fn sealed(key: &SealingKey, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    seal(key, &mut &plain[..], plain.len() as u64, &mut out, CHUNK).unwrap();
    out
}

fn open(key: &SealingKey, ct: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::new();
    unseal(key, ct, &mut out).map(|_| out)
}

/// Offsets of chunk `i` (with its tag) in a stream.
fn chunk_range(i: usize, plain_len: usize) -> std::ops::Range<usize> {
    let c = CHUNK as usize;
    let start = HEADER_LEN + i * (c + TAG_LEN);
    let len = plain_len.saturating_sub(i * c).min(c) + TAG_LEN;
    start..start + len
}

#[test]
fn round_trips_at_every_boundary() {
    let key = SealingKey::generate().unwrap();
    let c = CHUNK as usize;
    for len in [0, 1, c - 1, c, c + 1, 3 * c, 5 * c + 17] {
        let plain = data(len);
        let ct = sealed(&key, &plain);
        let chunks = len.div_ceil(c).max(1);
        assert_eq!(ct.len(), HEADER_LEN + len + chunks * TAG_LEN, "len {len}");
        assert_eq!(open(&key, &ct).unwrap(), plain, "len {len}");
    }
}

#[test]
fn identity_is_in_the_header_and_random_per_stream() {
    let key = SealingKey::generate().unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let ia = seal(&key, &mut &b"same"[..], 4, &mut a, CHUNK).unwrap();
    let ib = seal(&key, &mut &b"same"[..], 4, &mut b, CHUNK).unwrap();
    assert_eq!((ia.key_id, ia.size), (key.id(), 4));
    assert_ne!(ia.stream_id, ib.stream_id);
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..], "same plaintext, different ciphertext");
    let opener = Opener::new(&key, &a[..]).unwrap();
    assert_eq!(opener.header().identity, ia);
}

#[test]
fn several_gib_round_trip_in_constant_memory() {
    // Seal into a pipe and open from it concurrently: no buffer holds more than a chunk.
    const SIZE: u64 = 3 << 30;
    let key = SealingKey::generate().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let k = key.clone();
    let sealer = std::thread::spawn(move || {
        let mut input = Pattern { left: SIZE, block: data(1 << 20), n: 0, hash: Sha256::new() };
        seal(&k, &mut input, SIZE, &mut writer, 1 << 20).unwrap();
        input.hash.finalize()
    });
    let mut sink = HashSink(Sha256::new(), 0);
    let identity = unseal(&key, reader, &mut sink).unwrap();
    let sent = sealer.join().unwrap();
    assert_eq!(identity.size, SIZE);
    assert_eq!(sink.1, SIZE);
    assert_eq!(sink.0.finalize(), sent);
}

/// A reader of `left` bytes: a fixed block whose first bytes count reads,
/// hashed as it goes (cheap even in unoptimised test builds).
struct Pattern {
    left: u64,
    block: Vec<u8>,
    n: u64,
    hash: Sha256,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left).min(self.block.len() as u64) as usize;
        self.n += 1;
        self.block[..8].copy_from_slice(&self.n.to_le_bytes());
        buf[..n].copy_from_slice(&self.block[..n]);
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

struct HashSink(Sha256, u64);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn the_wrong_key_is_refused_before_any_plaintext() {
    let ct = sealed(&SealingKey::generate().unwrap(), &data(100));
    let err = open(&SealingKey::generate().unwrap(), &ct).unwrap_err();
    assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
    // Same id, other key bytes: the first chunk fails.
    let key = SealingKey::generate().unwrap();
    let text = key.to_text();
    let forged = format!("{} {}", &text[..text.len() - 65], "00".repeat(32));
    let err = open(&SealingKey::from_text(&forged).unwrap(), &sealed(&key, &data(100))).unwrap_err();
    assert!(matches!(err, SealError::Chunk { index: 0 }), "{err}");
}

#[test]
fn a_flipped_byte_anywhere_is_caught() {
    let key = SealingKey::generate().unwrap();
    let len = 3 * CHUNK as usize + 5;
    let ct = sealed(&key, &data(len));
    let positions: Vec<usize> = (0..HEADER_LEN)
        .chain([
            chunk_range(0, len).start,
            chunk_range(1, len).start + 100,
            chunk_range(2, len).end - 1,
            ct.len() - 1,
        ])
        .collect();
    for pos in positions {
        let mut bad = ct.clone();
        bad[pos] ^= 0x01;
        assert!(open(&key, &bad).is_err(), "flip at {pos} went unnoticed");
    }
}

#[test]
fn truncation_and_a_cut_off_last_chunk_are_caught() {
    let key = SealingKey::generate().unwrap();
    let len = 3 * CHUNK as usize;
    let ct = sealed(&key, &data(len));
    for cut in
        [HEADER_LEN - 1, HEADER_LEN, chunk_range(0, len).end, chunk_range(2, len).start + 10, ct.len() - 1]
    {
        assert!(open(&key, &ct[..cut]).is_err(), "cut at {cut} went unnoticed");
    }
    let err = open(&key, &ct[..chunk_range(2, len).start]).unwrap_err();
    assert!(matches!(err, SealError::Truncated { index: 2, chunks: 3 }), "{err}");
    let mut longer = ct.clone();
    longer.push(0);
    assert!(matches!(open(&key, &longer).unwrap_err(), SealError::Trailing));
}

#[test]
fn reordered_duplicated_or_foreign_chunks_are_caught() {
    let key = SealingKey::generate().unwrap();
    let len = 3 * CHUNK as usize;
    let ct = sealed(&key, &data(len));
    let (c0, c1, c2) = (chunk_range(0, len), chunk_range(1, len), chunk_range(2, len));
    let head = &ct[..HEADER_LEN];
    let swapped = [head, &ct[c1.clone()], &ct[c0.clone()], &ct[c2.clone()]].concat();
    assert!(matches!(open(&key, &swapped).unwrap_err(), SealError::Chunk { index: 0 }));
    let duplicated = [head, &ct[c0.clone()], &ct[c0.clone()], &ct[c2.clone()]].concat();
    assert!(matches!(open(&key, &duplicated).unwrap_err(), SealError::Chunk { index: 1 }));
    // A chunk from another stream under the same key, at the same position.
    let other = sealed(&key, &data(len));
    let foreign = [head, &ct[c0.clone()], &other[c1.clone()], &ct[c2.clone()]].concat();
    assert!(matches!(open(&key, &foreign).unwrap_err(), SealError::Chunk { index: 1 }));
    // A shorter stream made by dropping the last chunk and claiming a smaller
    // size in the header fails: the header is authenticated by every chunk.
    let mut shorter = [head, &ct[c0.clone()], &ct[c1.clone()]].concat();
    shorter[48..56].copy_from_slice(&((2 * CHUNK) as u64).to_be_bytes());
    assert!(matches!(open(&key, &shorter).unwrap_err(), SealError::Chunk { index: 0 }));
}

#[test]
fn key_files_round_trip_and_reject_garbage() {
    let key = SealingKey::generate().unwrap();
    let back = SealingKey::from_text(&key.to_text()).unwrap();
    assert_eq!(back.id(), key.id());
    assert_eq!(open(&back, &sealed(&key, b"x")).unwrap(), b"x");
    for bad in ["", "cvm-sealing-key v2 00 00", "cvm-sealing-key v1 zz 00"] {
        assert!(SealingKey::from_text(bad).is_err(), "{bad}");
    }
}
