//! Sealed streams on several cores: one thread reads, workers decrypt.
//!
//! The format's chunks are independent (each has its own nonce, and its
//! position, its stream and whether it is the last one are in its
//! associated data), so they can be opened in any order and on any core.
//! What must stay sequential is the input, so one thread (the caller's)
//! reads the stream in order, a chunk and its tag per read, and hands each
//! chunk to a pool of workers; the checks are the sequential opener's:
//!
//! - the header (and with [`Opener::expecting`] the identity) is checked
//!   before any chunk is read;
//! - chunk `i` is opened with nonce and associated data for position `i`,
//!   whichever worker opens it, so a chunk moved to another position (into
//!   another worker's share, or across a read) fails;
//! - the stream ending early, at a chunk boundary or inside a chunk, is
//!   [`SealError::Truncated`]; the last chunk must carry the last flag;
//! - on any failure the reader stops, the workers drop the queued chunks
//!   that come after it, and the error of the lowest chunk index is
//!   returned (the one a sequential open reports, whatever the timing);
//! - success here covers the chunks only: the caller still calls
//!   [`Opener::finish`] or [`Opener::finish_at_length`] before using a byte.
//!
//! [`Opener::open_parallel_into`] reads each chunk's ciphertext straight
//! into its place in the destination and decrypts it there (the agent's
//! locked memory: no other buffer, whatever the number of workers).
//! [`Opener::open_parallel_to`] and [`seal_parallel`] go through a pool of
//! at most `2 * workers + 2` chunk buffers, and workers write their chunks
//! at their offsets in the output file.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Mutex;

use zeroize::{Zeroize, Zeroizing};

use super::{read_full, Opener, SealError, SealingKey, StreamIdentity, HEADER_LEN, TAG_LEN};

/// The most workers a parallel open or seal starts.
pub const MAX_WORKERS: usize = 1024;

/// A destination that several threads write at offsets (a file).
pub trait WriteAt: Sync {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl WriteAt for std::fs::File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
}

/// The failure of the lowest chunk index so far.
///
/// The reader stops at the first failure; a worker skips a chunk only when
/// a chunk before it failed, so the failure reported is always the one of
/// the lowest index (every chunk before it was read and opened): the error
/// a sequential open reports, whatever the timing.
struct Failure {
    lowest: AtomicU64,
    error: Mutex<Option<(u64, SealError)>>,
}

impl Default for Failure {
    fn default() -> Failure {
        Failure { lowest: AtomicU64::new(u64::MAX), error: Mutex::new(None) }
    }
}

impl Failure {
    fn record(&self, index: u64, error: SealError) {
        // A poisoned lock only means another thread panicked while
        // recording; the scope re-raises that panic anyway.
        let mut first = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if first.as_ref().is_none_or(|(i, _)| index < *i) {
            *first = Some((index, error));
        }
        self.lowest.fetch_min(index, Ordering::AcqRel);
    }

    /// Whether anything failed (the reader stops).
    fn stopped(&self) -> bool {
        self.lowest.load(Ordering::Acquire) != u64::MAX
    }

    /// Whether chunk `index` need not be opened: one before it failed.
    fn skips(&self, index: u64) -> bool {
        self.lowest.load(Ordering::Acquire) < index
    }

    fn into_result(self) -> Result<(), SealError> {
        match self.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs `feed` on this thread, which sends jobs, and `work` on up to
/// `workers` threads, which take them; returns when every job is done.
fn run<J: Send>(
    workers: usize,
    feed: impl FnOnce(&SyncSender<J>),
    work: impl Fn(J) + Sync,
) -> Result<(), SealError> {
    let workers = workers.clamp(1, MAX_WORKERS);
    let (tx, rx) = sync_channel::<J>(workers * 2);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        let mut started = 0;
        for n in 0..workers {
            let spawned = std::thread::Builder::new().name(format!("sealed-{n}")).spawn_scoped(s, || loop {
                // One worker at a time waits on the channel, the others on the lock.
                let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                match job {
                    Ok(job) => work(job),
                    Err(_) => break,
                }
            });
            match spawned {
                Ok(_) => started += 1,
                Err(e) if started == 0 => return Err(SealError::Io(e)),
                // Fewer workers than asked: slower, not wrong.
                Err(_) => break,
            }
        }
        feed(&tx);
        drop(tx);
        Ok(())
    })
}

/// A chunk read in place, for a worker to open.
struct InPlace<'d> {
    index: u64,
    data: &'d mut [u8],
    tag: [u8; TAG_LEN],
}

/// A chunk in a pool buffer: `len` bytes of text, then (opening) its tag.
struct Pooled {
    index: u64,
    len: usize,
    buf: Zeroizing<Vec<u8>>,
}

/// Reads chunk `index` (`len` bytes and the tag) into `buf`, which is at
/// least that long; records a short or failed read.
fn read_chunk(input: &mut impl Read, buf: &mut [u8], index: u64, chunks: u64, failure: &Failure) -> bool {
    match read_full(input, buf) {
        Ok(n) if n == buf.len() => true,
        Ok(n) => {
            buf[..n].zeroize();
            failure.record(index, SealError::Truncated { index, chunks });
            false
        }
        Err(e) => {
            failure.record(index, SealError::Io(e));
            false
        }
    }
}

/// Counts opened bytes and reports the running total.
struct Progress<'p> {
    done: AtomicU64,
    report: &'p (dyn Fn(u64) + Sync),
}

impl Progress<'_> {
    fn add(&self, n: usize) {
        let n = n as u64;
        (self.report)(self.done.fetch_add(n, Ordering::Relaxed) + n);
    }
}

impl<R: Read> Opener<R> {
    /// Opens every remaining chunk into `dest` (the whole plaintext, exactly
    /// the header's length) on `workers` threads: this thread reads each
    /// chunk's ciphertext straight into its place in `dest`, a worker
    /// decrypts it there. `progress` gets the running total of bytes opened.
    ///
    /// On error, `dest` holds verified plaintext of some chunks and
    /// ciphertext or zeros elsewhere: wipe it. On success, call
    /// [`Opener::finish`] or [`Opener::finish_at_length`] before using it.
    pub fn open_parallel_into(
        &mut self,
        dest: &mut [u8],
        workers: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), SealError> {
        let size = self.header.identity.size;
        if dest.len() as u64 != size {
            return Err(SealError::BufferTooSmall {
                needed: usize::try_from(size).unwrap_or(usize::MAX),
                given: dest.len(),
            });
        }
        let chunks = self.header.chunks();
        let first = self.index;
        // At most the size (checked above to fit in dest).
        let start = first.saturating_mul(u64::from(self.header.chunk_size)).min(size) as usize;
        let failed = Failure::default();
        let failure = &failed;
        let progress = Progress { done: AtomicU64::new(0), report: progress };
        let (header, encoded, cipher, input) = (&self.header, &self.encoded, &self.cipher, &mut self.input);
        let remaining = &mut dest[start..];
        run(
            workers,
            |tx| {
                let mut rest = remaining;
                for index in first..chunks {
                    if failure.stopped() {
                        break;
                    }
                    let len = header.chunk_len(index);
                    let mut tag = [0u8; TAG_LEN];
                    // One read of the chunk and its tag where the tag fits
                    // in the next chunk's place (it is read over next);
                    // two reads for the last chunks.
                    let whole = rest.len() >= len + TAG_LEN;
                    let ok = if whole {
                        let ok = read_chunk(input, &mut rest[..len + TAG_LEN], index, chunks, failure);
                        if ok {
                            tag.copy_from_slice(&rest[len..len + TAG_LEN]);
                        }
                        ok
                    } else {
                        read_chunk(input, &mut rest[..len], index, chunks, failure)
                            && read_chunk(input, &mut tag, index, chunks, failure)
                    };
                    if !ok {
                        break;
                    }
                    let (data, after) = std::mem::take(&mut rest).split_at_mut(len);
                    rest = after;
                    if tx.send(InPlace { index, data, tag }).is_err() {
                        break;
                    }
                }
            },
            |job: InPlace<'_>| {
                if failure.skips(job.index) {
                    return;
                }
                match cipher.open_chunk(header, encoded, job.index, job.data, &job.tag) {
                    Ok(()) => progress.add(job.data.len()),
                    Err(e) => failure.record(job.index, e),
                }
            },
        )?;
        failed.into_result()?;
        self.index = chunks;
        Ok(())
    }

    /// Opens every remaining chunk on `workers` threads and writes each
    /// chunk's plaintext at its offset in `out` (`cvmctl unseal`), through
    /// at most `2 * workers + 2` chunk buffers. `progress` gets the running
    /// total of bytes opened.
    ///
    /// On error, `out` holds part of the plaintext: discard it. On success,
    /// call [`Opener::finish`] before using it.
    pub fn open_parallel_to(
        &mut self,
        out: &(impl WriteAt + ?Sized),
        workers: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), SealError> {
        let chunks = self.header.chunks();
        let first = self.index;
        let chunk_size = u64::from(self.header.chunk_size);
        let failure = Failure::default();
        let progress = Progress { done: AtomicU64::new(0), report: progress };
        let pool = Pool::new(workers, self.header.chunk_len(first.min(chunks - 1)) + TAG_LEN);
        let (header, encoded, cipher, input) = (&self.header, &self.encoded, &self.cipher, &mut self.input);
        run(
            workers,
            |tx| {
                for index in first..chunks {
                    let len = header.chunk_len(index);
                    let Some(mut buf) = pool.take(&failure) else { break };
                    if !read_chunk(input, &mut buf[..len + TAG_LEN], index, chunks, &failure) {
                        break;
                    }
                    if tx.send(Pooled { index, len, buf }).is_err() {
                        break;
                    }
                }
            },
            |mut job: Pooled| {
                if !failure.skips(job.index) {
                    let (data, rest) = job.buf.split_at_mut(job.len);
                    let mut tag = [0u8; TAG_LEN];
                    tag.copy_from_slice(&rest[..TAG_LEN]);
                    let written = cipher
                        .open_chunk(header, encoded, job.index, data, &tag)
                        .and_then(|()| Ok(out.write_all_at(data, job.index * chunk_size)?));
                    match written {
                        Ok(()) => progress.add(job.len),
                        Err(e) => failure.record(job.index, e),
                    }
                }
                pool.give(job.buf);
            },
        )?;
        failure.into_result()?;
        self.index = chunks;
        Ok(())
    }
}

/// Chunk buffers, made as the reader needs them, up to a bound, and
/// handed back by the workers.
struct Pool {
    free: Mutex<Vec<Zeroizing<Vec<u8>>>>,
    returned: std::sync::Condvar,
    made: AtomicU64,
    max: u64,
    len: usize,
}

impl Pool {
    fn new(workers: usize, len: usize) -> Pool {
        let workers = workers.clamp(1, MAX_WORKERS) as u64;
        Pool {
            free: Mutex::new(Vec::new()),
            returned: std::sync::Condvar::new(),
            made: AtomicU64::new(0),
            max: 2 * workers + 2,
            len,
        }
    }

    /// A free buffer, a new one while fewer than the bound exist, or the
    /// next one handed back; `None` once a failure stops the work.
    fn take(&self, failure: &Failure) -> Option<Zeroizing<Vec<u8>>> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if failure.stopped() {
                return None;
            }
            if let Some(buf) = free.pop() {
                return Some(buf);
            }
            if self.made.load(Ordering::Relaxed) < self.max {
                self.made.fetch_add(1, Ordering::Relaxed);
                return Some(Zeroizing::new(vec![0u8; self.len]));
            }
            free = self.returned.wait(free).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&self, buf: Zeroizing<Vec<u8>>) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
        self.returned.notify_one();
    }
}

/// Seals `size` bytes from `input` into `out` on `workers` threads: this
/// thread reads the plaintext a chunk at a time, workers encrypt chunks and
/// write them at their offsets (the header at 0). The stream is the one
/// [`super::seal`] makes, byte for byte but for the random values.
///
/// The input must hold exactly `size` bytes; on error `out` is incomplete
/// and must be discarded.
pub fn seal_parallel(
    key: &SealingKey,
    input: &mut impl Read,
    size: u64,
    out: &(impl WriteAt + ?Sized),
    chunk_size: u32,
    workers: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StreamIdentity, SealError> {
    let header = super::new_header(key, size, chunk_size)?;
    let encoded = header.encode();
    out.write_all_at(&encoded, 0)?;
    let cipher = key.stream_cipher(&header.identity.stream_id);
    let chunks = header.chunks();
    let stride = u64::from(chunk_size) + TAG_LEN as u64;
    let failure = Failure::default();
    let progress = Progress { done: AtomicU64::new(0), report: progress };
    let pool = Pool::new(workers, header.chunk_len(0) + TAG_LEN);
    let input_ended = |index: u64, got: u64| {
        SealError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the input ended after {} of {size} bytes", index * u64::from(chunk_size) + got),
        ))
    };
    run(
        workers,
        |tx| {
            for index in 0..chunks {
                let len = header.chunk_len(index);
                let Some(mut buf) = pool.take(&failure) else { break };
                match read_full(input, &mut buf[..len]) {
                    Ok(n) if n == len => {}
                    Ok(n) => {
                        failure.record(index, input_ended(index, n as u64));
                        break;
                    }
                    Err(e) => {
                        failure.record(index, SealError::Io(e));
                        break;
                    }
                }
                if tx.send(Pooled { index, len, buf }).is_err() {
                    break;
                }
            }
        },
        |mut job: Pooled| {
            if !failure.skips(job.index) {
                let written = cipher
                    .seal_chunk(&header, &encoded, job.index, &mut job.buf[..job.len])
                    .and_then(|tag| {
                        job.buf[job.len..job.len + TAG_LEN].copy_from_slice(&tag);
                        let at = HEADER_LEN as u64 + job.index * stride;
                        Ok(out.write_all_at(&job.buf[..job.len + TAG_LEN], at)?)
                    });
                match written {
                    Ok(()) => progress.add(job.len),
                    Err(e) => failure.record(job.index, e),
                }
            }
            pool.give(job.buf);
        },
    )?;
    failure.into_result()?;
    let mut extra = [0u8; 1];
    if read_full(input, &mut extra)? != 0 {
        return Err(SealError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the input is longer than {size} bytes"),
        )));
    }
    Ok(header.identity)
}
