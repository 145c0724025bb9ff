//! Sealed streams: round trips at every size boundary and for several GiB,
//! and every tampering the format must catch.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::io::Read;

use cvm_protocol::sealed::{
    seal, sealed_len, unseal, Header, Opener, SealError, SealingKey, StreamIdentity, HEADER_LEN, MIN_CHUNK,
    TAG_LEN,
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
    // Seal into a pipe and open from it concurrently: no buffer holds more
    // than a chunk. Both ends generate and check the same deterministic
    // pattern (a block whose first bytes count blocks), which is cheaper
    // than hashing and catches any lost, repeated or moved chunk.
    const SIZE: u64 = 3 << 30;
    const BLOCK: usize = 1 << 20;
    let key = SealingKey::generate().unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let k = key.clone();
    let sealer = std::thread::spawn(move || {
        let mut input = Pattern::new(SIZE, BLOCK);
        seal(&k, &mut input, SIZE, &mut writer, 1 << 20).unwrap()
    });
    let mut opener = Opener::new(&key, reader).unwrap();
    let mut expected = Pattern::new(SIZE, BLOCK);
    let mut want = vec![0u8; BLOCK];
    let mut seen = 0u64;
    while let Some(chunk) = opener.next_chunk().unwrap() {
        // Chunks and pattern blocks are both 1 MiB.
        let n = expected.read(&mut want).unwrap();
        assert_eq!(n, chunk.len());
        assert!(chunk == &want[..n], "chunk at {seen} differs");
        seen += n as u64;
    }
    let identity = opener.finish().unwrap();
    assert_eq!(sealer.join().unwrap(), identity);
    assert_eq!((identity.size, seen), (SIZE, SIZE));
}

/// A reader of `left` bytes: a fixed block whose first bytes count blocks.
struct Pattern {
    left: u64,
    block: Vec<u8>,
    n: u64,
}

impl Pattern {
    fn new(left: u64, block: usize) -> Pattern {
        Pattern { left, block: data(block), n: 0 }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left).min(self.block.len() as u64) as usize;
        self.n += 1;
        self.block[..8].copy_from_slice(&self.n.to_le_bytes());
        buf[..n].copy_from_slice(&self.block[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn the_wrong_key_is_refused_before_any_plaintext() {
    let ct = sealed(&SealingKey::generate().unwrap(), &data(100));
    let err = open(&SealingKey::generate().unwrap(), &ct).unwrap_err();
    assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
    // The id commits to the key: a key file with another key under the
    // stream's id is refused as damaged, and the key it holds has another id.
    let key = SealingKey::generate().unwrap();
    let text = key.to_text();
    let forged = format!("{} {}", &text[..text.len() - 65], "00".repeat(32));
    let err = SealingKey::from_text(&forged).err().unwrap();
    assert!(err.to_string().contains("damaged"), "{err}");
    let other = SealingKey::from_bytes(&[0; 32]);
    let err = open(&other, &sealed(&key, &data(100))).unwrap_err();
    assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
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

/// Opens `ct` with ring, an implementation that shares no code with the
/// one under test, following docs/sealed-stream.md byte by byte: header
/// fields at their offsets, HKDF stream key, nonce prefix || counter, aad
/// header || counter || last flag.
fn ring_open(key_bytes: &[u8; 32], ct: &[u8]) -> Vec<u8> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let h: [u8; HEADER_LEN] = ct[..HEADER_LEN].try_into().unwrap();
    assert_eq!(&h[..8], b"cvm-seal");
    assert_eq!(h[8], 1);
    let chunk = u32::from_be_bytes(h[12..16].try_into().unwrap()) as usize;
    let mut id = [0u8; 16];
    hkdf::Hkdf::<sha2::Sha256>::new(None, key_bytes).expand(b"cvm-seal/v1/key-id", &mut id).unwrap();
    assert_eq!(h[16..32], id);
    let len = u64::from_be_bytes(h[48..56].try_into().unwrap()) as usize;
    let mut stream_key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&h[32..48]), key_bytes)
        .expand(b"cvm-seal/v1/stream-key", &mut stream_key)
        .unwrap();
    let cipher = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &stream_key).unwrap());
    let chunks = len.div_ceil(chunk).max(1);
    assert_eq!(ct.len(), HEADER_LEN + len + chunks * TAG_LEN);
    let mut opened = Vec::new();
    let mut at = HEADER_LEN;
    for i in 0..chunks as u64 {
        let n = (len - opened.len()).min(chunk) + TAG_LEN;
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&h[56..60]);
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let mut aad = h.to_vec();
        aad.extend_from_slice(&i.to_be_bytes());
        aad.push(u8::from(i + 1 == chunks as u64));
        let mut buf = ct[at..at + n].to_vec();
        let pt = cipher
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut buf)
            .unwrap_or_else(|_| panic!("ring refuses chunk {i}"));
        opened.extend_from_slice(pt);
        at += n;
    }
    assert_eq!(at, ct.len());
    opened
}

#[test]
fn an_independent_ring_opens_the_documented_layout() {
    let key_bytes = [7u8; 32];
    let key = SealingKey::from_bytes(&key_bytes);
    for len in [0, 9, 2 * CHUNK as usize + 9] {
        let plain = data(len);
        assert_eq!(ring_open(&key_bytes, &sealed(&key, &plain)), plain, "len {len}");
        // The parallel sealer (cvmctl seal) writes the same layout.
        let mut out = tempfile::tempfile().unwrap();
        cvm_protocol::sealed::seal_parallel(&key, &mut &plain[..], len as u64, &out, CHUNK, 3, &|_| {})
            .unwrap();
        let mut ct = Vec::new();
        std::io::Seek::rewind(&mut out).unwrap();
        out.read_to_end(&mut ct).unwrap();
        assert_eq!(ring_open(&key_bytes, &ct), plain, "len {len}, parallel");
    }
    // ring opens the fixture it sealed before the switch, too.
    let (_, ct) = fixture();
    let key_bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(ring_open(&key_bytes, &ct), data(13288));
}

#[test]
fn an_expected_identity_is_checked_before_any_chunk() {
    let key = SealingKey::generate().unwrap();
    let ct = sealed(&key, &data(100));
    let header = Header::read_from(&mut &ct[..]).unwrap();
    assert!(Opener::expecting(&key, &ct[..], &header.identity).is_ok());
    for other in [
        StreamIdentity { size: 99, ..header.identity },
        StreamIdentity { stream_id: [0; 16], ..header.identity },
    ] {
        let err = Opener::expecting(&key, &ct[..], &other).err().unwrap();
        assert!(matches!(err, SealError::Identity { .. }), "{err}");
    }
}

#[test]
fn a_failed_chunk_leaves_no_plaintext_in_the_callers_buffer() {
    let key = SealingKey::generate().unwrap();
    let len = 2 * CHUNK as usize;
    let mut ct = sealed(&key, &data(len));
    let last = ct.len() - 1;
    ct[last] ^= 1; // the second chunk's tag
    let mut opener = Opener::new(&key, &ct[..]).unwrap();
    let mut dest = vec![0xAA; len];
    assert_eq!(opener.next_chunk_into(&mut dest).unwrap(), Some(CHUNK as usize));
    assert_eq!(&dest[..CHUNK as usize], &data(len)[..CHUNK as usize]);
    let err = opener.next_chunk_into(&mut dest[CHUNK as usize..]).unwrap_err();
    assert!(matches!(err, SealError::Chunk { index: 1 }), "{err}");
    assert!(dest[CHUNK as usize..].iter().all(|b| *b == 0), "the failed chunk's bytes were not zeroed");
    // A stream on a device larger than the stream: what follows is ignored
    // by finish_at_length, refused by finish.
    let good = [sealed(&key, b"abc"), vec![0; 512]].concat();
    let mut opener = Opener::new(&key, &good[..]).unwrap();
    assert_eq!(opener.next_chunk().unwrap(), Some(&b"abc"[..]));
    assert_eq!(opener.finish_at_length().unwrap().size, 3);
    let mut opener = Opener::new(&key, &good[..]).unwrap();
    opener.next_chunk().unwrap();
    assert!(matches!(opener.finish().unwrap_err(), SealError::Trailing));
}

/// `tests/fixtures/sealed-v1.sealed`: 13288 bytes of [`data`] in 4096-byte
/// chunks, sealed by `cvmctl seal` when sealed streams used ring's AES-GCM,
/// to `tests/fixtures/sealed-v1.key` (a published test key). Streams sealed
/// before a change of implementation must open after it.
fn fixture() -> (SealingKey, Vec<u8>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let key = SealingKey::from_text(&std::fs::read_to_string(dir.join("sealed-v1.key")).unwrap()).unwrap();
    (key, std::fs::read(dir.join("sealed-v1.sealed")).unwrap())
}

/// The fixture's identity, as `cvmctl seal` printed it.
const FIXTURE_IDENTITY: &str = include_str!("fixtures/sealed-v1.identity.json");

#[test]
fn a_stream_sealed_by_the_previous_implementation_opens() {
    let (key, ct) = fixture();
    let expected: StreamIdentity = serde_json::from_str(FIXTURE_IDENTITY).unwrap();
    assert_eq!(ct.len() as u64, sealed_len(13288, CHUNK));
    let mut out = Vec::new();
    assert_eq!(unseal(&key, &ct[..], &mut out).unwrap(), expected);
    assert_eq!(out, data(13288));
    // And one changed byte in its last chunk still fails.
    let mut bad = ct.clone();
    let at = bad.len() - 30;
    bad[at] ^= 1;
    assert!(matches!(open(&key, &bad).unwrap_err(), SealError::Chunk { index: 3 }));
    // The parallel open (the agent's) opens it as well.
    let mut opener = Opener::new(&key, &ct[..]).unwrap();
    let mut dest = vec![0u8; 13288];
    opener.open_parallel_into(&mut dest, 3, &|_| {}).unwrap();
    assert_eq!(opener.finish().unwrap(), expected);
    assert_eq!(dest, data(13288));
}
