//! The sealed stream format: large artifacts encrypted in chunks.
//!
//! AES-256-GCM in the STREAM construction (Hoang, Reyhanitabar, Rogaway,
//! Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance", 2015): the plaintext is cut into chunks of
//! `chunk_size` bytes, each sealed under its own nonce `prefix || counter`,
//! with the whole header, the chunk's index and a last-chunk flag as
//! associated data. Every chunk's tag therefore authenticates its position,
//! its stream and whether it ends the stream: truncation, reordering,
//! duplication and chunks from other streams all fail, and encryption and
//! decryption run in constant memory, one chunk at a time.
//!
//! The byte layout, and why a stream identity pins the content, are in
//! `docs/sealed-stream.md` at the repository root; in short:
//!
//! ```text
//! header (64 bytes)
//!   0..8    magic "cvm-seal"
//!   8       version (1)
//!   9..12   zero
//!   12..16  chunk size, bytes of plaintext per chunk (u32 big-endian, 4 KiB ..= 16 MiB)
//!   16..32  key id = HKDF-SHA256(key, info "cvm-seal/v1/key-id")[..16]
//!   32..48  stream id (random per stream)
//!   48..56  plaintext length (u64 big-endian)
//!   56..60  nonce prefix (random per stream)
//!   60..64  zero
//! chunks: max(1, ceil(length / chunk size)) of them, each
//!   ciphertext (chunk size bytes, the last one shorter) || 16-byte tag
//! ```
//!
//! The stream key is `HKDF-SHA256(key, salt = stream id, info =
//! "cvm-seal/v1/stream-key")`, so nonces never repeat across streams even if
//! two streams drew the same prefix. The key id is derived from the key, so
//! it commits to it: a key whose id matches the manifest's is the key the
//! stream was sealed with (up to a 128-bit collision), which lets the agent
//! refuse a wrong key when it is released, before reading any ciphertext.
//!
//! The AEAD is RustCrypto's `aes-gcm` (AES-NI or VAES and carry-less
//! multiplication on x86-64, the ARMv8 AES and PMULL instructions on
//! aarch64, detected at run time; its key schedule and GHASH key are zeroed
//! on drop). Chunks are independent, so a stream opens and seals on every
//! core at once ([`Opener::open_parallel_into`], [`Opener::open_parallel_to`],
//! [`seal_parallel`]); ring, an implementation that shares no code with it,
//! checks the format in the tests. Figures are in `scripts/bench`.
//!
//! # Example
//!
//! ```
//! use cvm_protocol::sealed::{seal, unseal, SealingKey, DEFAULT_CHUNK};
//! let key = SealingKey::generate()?;
//! let plain = b"model weights".to_vec();
//! let mut sealed = Vec::new();
//! let identity = seal(&key, &mut &plain[..], plain.len() as u64, &mut sealed, DEFAULT_CHUNK)?;
//! let mut opened = Vec::new();
//! assert_eq!(unseal(&key, &sealed[..], &mut opened)?, identity);
//! assert_eq!(opened, plain);
//! # Ok::<(), cvm_protocol::sealed::SealError>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

mod parallel;
pub use parallel::{seal_parallel, WriteAt, MAX_WORKERS};

/// The header's magic bytes.
pub const MAGIC: &[u8; 8] = b"cvm-seal";
/// The only version.
pub const VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 64;
/// Tag length per chunk.
pub const TAG_LEN: usize = 16;
/// Smallest allowed chunk size.
pub const MIN_CHUNK: u32 = 4 << 10;
/// Largest allowed chunk size.
pub const MAX_CHUNK: u32 = 16 << 20;
/// Default chunk size: 1 MiB.
pub const DEFAULT_CHUNK: u32 = 1 << 20;

const KEY_ID_INFO: &[u8] = b"cvm-seal/v1/key-id";
const STREAM_KEY_INFO: &[u8] = b"cvm-seal/v1/stream-key";

/// A 256-bit sealing key and its 16-byte id (derived from the key). No
/// `Debug`; zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SealingKey {
    id: [u8; 16],
    key: [u8; 32],
}

/// What identifies a sealed stream: the manifest pins these three values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamIdentity {
    /// The key id, hex.
    #[serde(with = "hex16")]
    pub key_id: [u8; 16],
    /// The random stream id, hex.
    #[serde(with = "hex16")]
    pub stream_id: [u8; 16],
    /// The plaintext length.
    pub size: u64,
}

/// A sealed stream that cannot be opened; nothing of it may be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The header is not a sealed stream header.
    #[error("sealed stream header: {0}")]
    Header(String),
    /// The stream was sealed to another key.
    #[error("sealed to key {found}, not to the given key {expected}")]
    WrongKey {
        /// The given key's id.
        expected: String,
        /// The header's key id.
        found: String,
    },
    /// A chunk failed authentication: modified, reordered, from another
    /// stream, or not the last chunk where the stream claims one.
    #[error("chunk {index} failed authentication (modified, reordered, from another stream, or the stream was cut)")]
    Chunk {
        /// The chunk's index.
        index: u64,
    },
    /// The stream ends before its header's length.
    #[error("truncated: the stream ends in chunk {index} of {chunks}")]
    Truncated {
        /// Where it ended.
        index: u64,
        /// How many chunks there should be.
        chunks: u64,
    },
    /// Bytes follow the last chunk.
    #[error("trailing data after the last chunk")]
    Trailing,
    /// The identity differs from the expected one.
    #[error("stream identity ({found}) differs from the expected ({expected})")]
    Identity {
        /// Expected.
        expected: StreamIdentity,
        /// Found.
        found: StreamIdentity,
    },
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// A key file is malformed, or no key could be made.
    #[error("sealing key: {0}")]
    Key(String),
    /// A caller's buffer is smaller than a chunk (a bug of the caller).
    #[error("buffer of {given} bytes is smaller than the chunk of {needed} bytes")]
    BufferTooSmall {
        /// The chunk's plaintext length.
        needed: usize,
        /// The buffer's length.
        given: usize,
    },
}

impl fmt::Display for StreamIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} stream {} size {}",
            hex::encode(self.key_id),
            hex::encode(self.stream_id),
            self.size
        )
    }
}

impl StreamIdentity {
    /// The form measured into the event log: `sealed:<key id>:<stream id>:<size>`.
    pub fn measurement(&self) -> String {
        format!("sealed:{}:{}:{}", hex::encode(self.key_id), hex::encode(self.stream_id), self.size)
    }
}

impl SealingKey {
    /// A new random key.
    pub fn generate() -> Result<SealingKey, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut *key).map_err(|e| SealError::Key(format!("no randomness: {e}")))?;
        Ok(SealingKey::from_bytes(&key))
    }

    /// The key with these 32 bytes; its id is derived from them.
    pub fn from_bytes(key: &[u8; 32]) -> SealingKey {
        let mut id = [0u8; 16];
        // HKDF-SHA256 expands to 16 bytes, far below its 255 * 32 limit.
        let _ = Hkdf::<Sha256>::new(None, key).expand(KEY_ID_INFO, &mut id);
        SealingKey { id, key: *key }
    }

    /// The key's id.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// The key file's text: `cvm-sealing-key v1 <id hex> <key hex>`.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut key_hex = Zeroizing::new(hex::encode(self.key));
        let text = Zeroizing::new(format!("cvm-sealing-key v1 {} {}\n", hex::encode(self.id), &*key_hex));
        key_hex.zeroize();
        text
    }

    /// Parses a key file's text; the id must be the one derived from the key.
    pub fn from_text(text: &str) -> Result<SealingKey, SealError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let bad = || SealError::Key("expected `cvm-sealing-key v1 <32 hex digits> <64 hex digits>`".into());
        let [tag, v, id, key] = parts.as_slice() else { return Err(bad()) };
        if *tag != "cvm-sealing-key" || *v != "v1" {
            return Err(bad());
        }
        let mut given_id = [0u8; 16];
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(id, &mut given_id).map_err(|_| bad())?;
        hex::decode_to_slice(key, &mut *bytes).map_err(|_| bad())?;
        let k = SealingKey::from_bytes(&bytes);
        if k.id != given_id {
            return Err(SealError::Key(format!(
                "the key file names id {} but its key has id {}: the file is damaged",
                hex::encode(given_id),
                hex::encode(k.id)
            )));
        }
        Ok(k)
    }

    fn stream_cipher(&self, stream_id: &[u8; 16]) -> StreamCipher {
        let mut okm = Zeroizing::new([0u8; 32]);
        // HKDF-SHA256 expands to 32 bytes, far below its 255 * 32 limit.
        let _ = Hkdf::<Sha256>::new(Some(stream_id), &self.key).expand(STREAM_KEY_INFO, &mut *okm);
        // From the slice, not a copied array: the key bytes stay in `okm`,
        // zeroed here. The key schedule is zeroed on drop (the `zeroize`
        // feature); the copy left on the stack while it was made and moved
        // into its box is not.
        match Aes256Gcm::new_from_slice(&okm[..]) {
            Ok(k) => StreamCipher(Box::new(k)),
            Err(_) => unreachable!("AES-256-GCM takes 32-byte keys"),
        }
    }
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of plaintext per chunk.
    pub chunk_size: u32,
    /// Who can open it, what it is, how long.
    pub identity: StreamIdentity,
    /// The random nonce prefix.
    pub nonce_prefix: [u8; 4],
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8] = VERSION;
        h[12..16].copy_from_slice(&self.chunk_size.to_be_bytes());
        h[16..32].copy_from_slice(&self.identity.key_id);
        h[32..48].copy_from_slice(&self.identity.stream_id);
        h[48..56].copy_from_slice(&self.identity.size.to_be_bytes());
        h[56..60].copy_from_slice(&self.nonce_prefix);
        h
    }

    /// Parses and checks a header.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, SealError> {
        if &h[0..8] != MAGIC {
            return Err(SealError::Header("not a sealed stream (bad magic)".into()));
        }
        if h[8] != VERSION {
            return Err(SealError::Header(format!("version {}, expected {VERSION}", h[8])));
        }
        if h[9..12] != [0; 3] || h[60..64] != [0; 4] {
            return Err(SealError::Header("reserved bytes are not zero".into()));
        }
        let chunk_size = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
            return Err(SealError::Header(format!(
                "chunk size {chunk_size} outside {MIN_CHUNK}..={MAX_CHUNK}"
            )));
        }
        let mut identity = StreamIdentity { key_id: [0; 16], stream_id: [0; 16], size: 0 };
        identity.key_id.copy_from_slice(&h[16..32]);
        identity.stream_id.copy_from_slice(&h[32..48]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&h[48..56]);
        identity.size = u64::from_be_bytes(size);
        let mut nonce_prefix = [0u8; 4];
        nonce_prefix.copy_from_slice(&h[56..60]);
        Ok(Header { chunk_size, identity, nonce_prefix })
    }

    /// Reads and parses the header at the start of `input`.
    pub fn read_from(input: &mut impl Read) -> Result<Header, SealError> {
        let mut encoded = [0u8; HEADER_LEN];
        if read_full(input, &mut encoded)? < HEADER_LEN {
            return Err(SealError::Header(format!("shorter than the {HEADER_LEN}-byte header")));
        }
        Header::decode(&encoded)
    }

    /// How many chunks the stream has.
    pub fn chunks(&self) -> u64 {
        self.identity.size.div_ceil(u64::from(self.chunk_size)).max(1)
    }

    /// The whole stream's length in bytes: header, ciphertext and tags.
    pub fn stream_len(&self) -> u64 {
        sealed_len(self.identity.size, self.chunk_size)
    }

    /// Plaintext length of chunk `index`.
    fn chunk_len(&self, index: u64) -> usize {
        let start = index * u64::from(self.chunk_size);
        // At most chunk_size (<= 16 MiB), so it fits in usize.
        (self.identity.size - start).min(u64::from(self.chunk_size)) as usize
    }
}

/// The length of a sealed stream of `size` plaintext bytes in chunks of `chunk_size`.
pub fn sealed_len(size: u64, chunk_size: u32) -> u64 {
    let chunks = size.div_ceil(u64::from(chunk_size.max(1))).max(1);
    (HEADER_LEN as u64).saturating_add(size).saturating_add(chunks.saturating_mul(TAG_LEN as u64))
}

/// A stream's AES-256-GCM key schedule, boxed so that moving an opener
/// leaves no copy of it behind; zeroed on drop where it lives.
pub(crate) struct StreamCipher(Box<Aes256Gcm>);

impl StreamCipher {
    /// Encrypts chunk `index` in place; returns its tag.
    pub(crate) fn seal_chunk(
        &self,
        header: &Header,
        encoded: &[u8; HEADER_LEN],
        index: u64,
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let last = index + 1 == header.chunks();
        let tag = self
            .0
            .encrypt_inout_detached(
                &nonce(&header.nonce_prefix, index).into(),
                &aad(encoded, index, last),
                buf.into(),
            )
            .map_err(|_| SealError::Key("encryption failed".into()))?;
        Ok(tag.into())
    }

    /// Decrypts chunk `index` in place if its tag verifies; otherwise zeroes
    /// `buf` and names the chunk.
    pub(crate) fn open_chunk(
        &self,
        header: &Header,
        encoded: &[u8; HEADER_LEN],
        index: u64,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), SealError> {
        let last = index + 1 == header.chunks();
        let opened = self.0.decrypt_inout_detached(
            &nonce(&header.nonce_prefix, index).into(),
            &aad(encoded, index, last),
            (&mut *buf).into(),
            &(*tag).into(),
        );
        if opened.is_err() {
            buf.zeroize();
            return Err(SealError::Chunk { index });
        }
        Ok(())
    }
}

/// The nonce of chunk `index`: unique per (stream key, index), as the
/// counter never repeats within a stream and every stream has its own key.
fn nonce(prefix: &[u8; 4], index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(prefix);
    n[4..].copy_from_slice(&index.to_be_bytes());
    n
}

fn aad(header: &[u8; HEADER_LEN], index: u64, last: bool) -> [u8; HEADER_LEN + 9] {
    let mut a = [0u8; HEADER_LEN + 9];
    a[..HEADER_LEN].copy_from_slice(header);
    a[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
    a[HEADER_LEN + 8] = u8::from(last);
    a
}

/// Reads up to `len` bytes into the start of `buf`, growing it (from 64 KiB,
/// doubling, up to `len`) only as bytes arrive; returns how many were read.
/// A grown buffer replaces the old one, which is zeroed when dropped: it may
/// still hold the previous chunk's plaintext.
fn read_growing(r: &mut impl Read, buf: &mut Zeroizing<Vec<u8>>, len: usize) -> io::Result<usize> {
    const FIRST: usize = 64 << 10;
    let mut filled = 0;
    while filled < len {
        if buf.len() <= filled {
            let size = FIRST.max(filled.saturating_mul(2)).min(len);
            let mut bigger = Zeroizing::new(vec![0u8; size]);
            bigger[..filled].copy_from_slice(&buf[..filled]);
            *buf = bigger;
        }
        let end = buf.len().min(len);
        let n = read_full(r, &mut buf[filled..end])?;
        filled += n;
        if filled < end {
            break;
        }
    }
    Ok(filled)
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The header of a new stream: a fresh random stream id and nonce prefix.
fn new_header(key: &SealingKey, size: u64, chunk_size: u32) -> Result<Header, SealError> {
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk_size) {
        return Err(SealError::Header(format!("chunk size {chunk_size} outside {MIN_CHUNK}..={MAX_CHUNK}")));
    }
    let mut stream_id = [0u8; 16];
    let mut nonce_prefix = [0u8; 4];
    getrandom::getrandom(&mut stream_id).map_err(|e| SealError::Key(format!("no randomness: {e}")))?;
    getrandom::getrandom(&mut nonce_prefix).map_err(|e| SealError::Key(format!("no randomness: {e}")))?;
    Ok(Header { chunk_size, identity: StreamIdentity { key_id: key.id, stream_id, size }, nonce_prefix })
}

/// Seals `size` bytes from `input` to `output`; returns the stream's identity.
///
/// The input must hold exactly `size` bytes: fewer or more is an error (the
/// output is then incomplete and must be discarded).
pub fn seal(
    key: &SealingKey,
    input: &mut impl Read,
    size: u64,
    output: &mut impl Write,
    chunk_size: u32,
) -> Result<StreamIdentity, SealError> {
    let header = new_header(key, size, chunk_size)?;
    let stream_id = header.identity.stream_id;
    let encoded = header.encode();
    output.write_all(&encoded)?;
    let cipher = key.stream_cipher(&stream_id);
    let chunks = header.chunks();
    let mut buf = Zeroizing::new(vec![0u8; chunk_size as usize]);
    for index in 0..chunks {
        let len = header.chunk_len(index);
        let got = read_full(input, &mut buf[..len])?;
        if got < len {
            return Err(SealError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the input ended after {} of {size} bytes",
                    index * u64::from(chunk_size) + got as u64
                ),
            )));
        }
        let tag = cipher.seal_chunk(&header, &encoded, index, &mut buf[..len])?;
        output.write_all(&buf[..len])?;
        output.write_all(&tag)?;
    }
    let mut extra = [0u8; 1];
    if read_full(input, &mut extra)? != 0 {
        return Err(SealError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the input is longer than {size} bytes"),
        )));
    }
    output.flush()?;
    Ok(header.identity)
}

/// Opens a sealed stream chunk by chunk.
///
/// Each chunk's plaintext is handed on only after its tag verified; the
/// stream as a whole is authentic only when [`Opener::finish`] (or
/// [`Opener::finish_at_length`]) succeeds, so a consumer must not use what
/// it received before then, and must discard it on any error.
pub struct Opener<R: Read> {
    input: R,
    header: Header,
    encoded: [u8; HEADER_LEN],
    cipher: StreamCipher,
    index: u64,
    buf: Zeroizing<Vec<u8>>,
}

impl<R: Read> Opener<R> {
    /// Reads the header and checks that it was sealed to `key`.
    pub fn new(key: &SealingKey, mut input: R) -> Result<Opener<R>, SealError> {
        let header = Header::read_from(&mut input)?;
        if header.identity.key_id != key.id {
            return Err(SealError::WrongKey {
                expected: hex::encode(key.id),
                found: hex::encode(header.identity.key_id),
            });
        }
        let cipher = key.stream_cipher(&header.identity.stream_id);
        Ok(Opener {
            input,
            encoded: header.encode(),
            header,
            cipher,
            index: 0,
            buf: Zeroizing::new(Vec::new()),
        })
    }

    /// Like [`Opener::new`], and the header must carry exactly `expected`
    /// (the identity a manifest pins), checked before any chunk is read.
    pub fn expecting(key: &SealingKey, input: R, expected: &StreamIdentity) -> Result<Opener<R>, SealError> {
        let opener = Opener::new(key, input)?;
        if opener.header.identity != *expected {
            return Err(SealError::Identity { expected: *expected, found: opener.header.identity });
        }
        Ok(opener)
    }

    /// The stream's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next chunk's plaintext, or `None` after the last one.
    ///
    /// The opener's buffer grows as the chunk's ciphertext arrives, not to
    /// the chunk size the header claims: a stream of a few bytes whose
    /// header claims 16 MiB chunks costs a few bytes.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, SealError> {
        if self.index >= self.header.chunks() {
            return Ok(None);
        }
        let len = self.header.chunk_len(self.index);
        let mut buf = std::mem::take(&mut self.buf);
        let mut tag = [0u8; TAG_LEN];
        let got = read_growing(&mut self.input, &mut buf, len).and_then(|n| {
            if n < len {
                Ok(n)
            } else {
                read_full(&mut self.input, &mut tag).map(|t| n + t)
            }
        });
        let end = len.min(buf.len());
        let result = self.open_chunk(&mut buf[..end], got, tag);
        self.buf = buf;
        match result? {
            Some(n) => Ok(Some(&self.buf[..n])),
            None => Ok(None),
        }
    }

    /// Decrypts the next chunk into the start of `dest` (at least the
    /// chunk's length), in place; returns its length, or `None` after the
    /// last chunk. On error the bytes written to `dest` are zeroed.
    pub fn next_chunk_into(&mut self, dest: &mut [u8]) -> Result<Option<usize>, SealError> {
        if self.index >= self.header.chunks() {
            return Ok(None);
        }
        let len = self.header.chunk_len(self.index);
        if dest.len() < len {
            return Err(SealError::BufferTooSmall { needed: len, given: dest.len() });
        }
        let out = &mut dest[..len];
        let mut tag = [0u8; TAG_LEN];
        let got = match read_full(&mut self.input, out) {
            Ok(n) if n < len => Ok(n),
            Ok(_) => read_full(&mut self.input, &mut tag).map(|n| n + len),
            Err(e) => Err(e),
        };
        self.open_chunk(out, got, tag)
    }

    /// Opens the chunk read into `out` (its whole plaintext length when
    /// `got`, the bytes read with the tag, is complete), in place.
    fn open_chunk(
        &mut self,
        out: &mut [u8],
        got: io::Result<usize>,
        tag: [u8; TAG_LEN],
    ) -> Result<Option<usize>, SealError> {
        let chunks = self.header.chunks();
        let len = self.header.chunk_len(self.index);
        let got = match got {
            Ok(n) => n,
            Err(e) => {
                out.zeroize();
                return Err(e.into());
            }
        };
        if got < len + TAG_LEN || out.len() != len {
            out.zeroize();
            return Err(SealError::Truncated { index: self.index, chunks });
        }
        self.cipher.open_chunk(&self.header, &self.encoded, self.index, out, &tag)?;
        self.index += 1;
        Ok(Some(len))
    }

    /// Checks that every chunk was read and nothing follows the last one;
    /// the stream is then authentic.
    pub fn finish(&mut self) -> Result<StreamIdentity, SealError> {
        self.check_complete()?;
        let mut extra = [0u8; 1];
        if read_full(&mut self.input, &mut extra)? != 0 {
            return Err(SealError::Trailing);
        }
        Ok(self.header.identity)
    }

    /// Checks that every chunk was read, and ignores what follows: for a
    /// stream on a block device, which is larger than the stream it holds.
    pub fn finish_at_length(&self) -> Result<StreamIdentity, SealError> {
        self.check_complete()?;
        Ok(self.header.identity)
    }

    fn check_complete(&self) -> Result<(), SealError> {
        if self.index < self.header.chunks() {
            return Err(SealError::Truncated { index: self.index, chunks: self.header.chunks() });
        }
        Ok(())
    }
}

/// Opens a whole stream into `output`; returns its identity.
///
/// On error, part of the plaintext may already be in `output`: write to a
/// place you discard on error (cvmctl writes an unnamed temporary file and
/// links it into place only on success).
pub fn unseal(
    key: &SealingKey,
    input: impl Read,
    output: &mut impl Write,
) -> Result<StreamIdentity, SealError> {
    let mut opener = Opener::new(key, input)?;
    while let Some(chunk) = opener.next_chunk()? {
        output.write_all(chunk)?;
    }
    output.flush()?;
    opener.finish()
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 16];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}
