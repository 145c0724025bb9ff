//! Sealing keys and sealed streams on the owner's machine: `keygen
//! --sealing`, `seal`, `unseal`.
//!
//! Both directions run on every core (`--workers`, default all the CPUs
//! cvmctl may use): one thread reads the input in order, workers encrypt or
//! decrypt chunks and write each at its offset in the output, in constant
//! memory (at most `2 * workers + 2` chunks). `unseal` never
//! leaves plaintext of a stream that fails: it writes into an unnamed file
//! (`O_TMPFILE`) in the output's directory, which the kernel discards when
//! the process ends, and links it into place only after the last chunk and
//! the end of the stream verified. On a file system without `O_TMPFILE` it
//! falls back to a hidden 0600 file next to the output, deleted on any
//! failure (but left behind if the process is killed).

use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use cvm_protocol::sealed::{
    seal_parallel, Opener, SealingKey, DEFAULT_CHUNK, MAX_CHUNK, MAX_WORKERS, MIN_CHUNK,
};

use crate::args::read_file;
use crate::output::{emit, Message, SealingKeyLine};
use crate::Error;

/// Arguments of `seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The sealing key (from `cvmctl keygen --sealing`).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Where to write the sealed stream.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Plaintext bytes per chunk (4096 ..= 16777216).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK,
          value_parser = clap::value_parser!(u32).range(i64::from(MIN_CHUNK)..=i64::from(MAX_CHUNK)))]
    pub chunk_size: u32,
    /// Print `{"type":"sealed","data":{"key_id","stream_id","size"}}` instead of the bare identity.
    #[arg(long)]
    pub json: bool,
    /// Threads that encrypt (default: every CPU cvmctl may use).
    #[arg(long, value_name = "N", value_parser = workers_arg)]
    pub workers: Option<usize>,
    /// The plaintext file.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// Arguments of `unseal`.
#[derive(Debug, Args)]
pub struct UnsealArgs {
    /// The sealing key.
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// Where to write the plaintext (only after the whole stream verified).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Threads that decrypt (default: every CPU cvmctl may use).
    #[arg(long, value_name = "N", value_parser = workers_arg)]
    pub workers: Option<usize>,
    /// The sealed stream.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// `--workers`: 1 ..= MAX_WORKERS.
fn workers_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of threads from 1 to {MAX_WORKERS}")),
    }
}

/// The CPUs this process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Reads a sealing key file.
pub fn read_key(path: &Path) -> anyhow::Result<SealingKey> {
    let bytes = zeroize::Zeroizing::new(read_file(path)?);
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("{}: not a sealing key", path.display()))?;
    SealingKey::from_text(text).with_context(|| format!("{}: not a sealing key", path.display()))
}

/// Creates a sealing key file (mode 0600) and prints its id.
pub fn keygen(out: &Path, json: bool) -> crate::Result {
    let key = SealingKey::generate()?;
    // Never over an existing key: whatever it sealed could not be opened again.
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode_0600().open(out).with_context(
            || format!("cannot create {} (an existing key is never overwritten)", out.display()),
        )?;
    f.write_all(key.to_text().as_bytes()).with_context(|| format!("cannot write {}", out.display()))?;
    f.sync_all()?;
    let id = hex::encode(key.id());
    if json {
        emit(&Message::SealingKey(SealingKeyLine { key_id: id.clone() }))?;
    } else {
        writeln!(crate::output::stdout(), "{id}")?;
        eprintln!("wrote the sealing key to {} (key id {id}); keep it secret", out.display());
    }
    Ok(())
}

/// Seals a file; prints the stream identity (the manifest's `sealed` object).
pub fn seal_file(a: SealArgs) -> crate::Result {
    let key = read_key(&a.key_file)?;
    let input =
        std::fs::File::open(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let size = input.metadata()?.len();
    let tmp = sibling(&a.out, "partial");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let workers = a.workers.unwrap_or_else(default_workers);
    let mut input = BufReader::with_capacity(1 << 20, input);
    let sealed = seal_parallel(&key, &mut input, size, &file, a.chunk_size, workers, &|_| {})
        .map_err(anyhow::Error::from)
        .and_then(|id| {
            file.sync_all()?;
            Ok(id)
        })
        .with_context(|| format!("sealing {}", a.input.display()));
    let identity = match sealed {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    std::fs::rename(&tmp, &a.out).with_context(|| format!("cannot write {}", a.out.display()))?;
    if a.json {
        emit(&Message::Sealed(identity))?;
    } else {
        writeln!(crate::output::stdout(), "{}", serde_json::to_string(&identity)?)?;
        eprintln!("sealed {} ({size} bytes) to {}", a.input.display(), a.out.display());
    }
    Ok(())
}

/// A name next to `path`: `.NAME.cvmctl-TAG-PID`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.cvmctl-{tag}-{}", std::process::id()))
}

/// Where plaintext goes until the stream verified.
enum Pending {
    /// An unnamed file: gone with the process unless linked.
    Unnamed(std::fs::File),
    /// A hidden named file (no O_TMPFILE here).
    Named(std::fs::File, PathBuf),
}

impl Pending {
    fn create(out: &Path) -> anyhow::Result<Pending> {
        use rustix::fs::{Mode, OFlags};
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match rustix::fs::open(
            &dir,
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(Pending::Unnamed(std::fs::File::from(fd))),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL) => {
                let path = sibling(out, "unseal");
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_0600()
                    .open(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(Pending::Named(file, path))
            }
            Err(e) => Err(anyhow::anyhow!("cannot write in {}: {e}", dir.display())),
        }
    }

    fn file(&mut self) -> &mut std::fs::File {
        match self {
            Pending::Unnamed(f) | Pending::Named(f, _) => f,
        }
    }

    /// Puts the verified plaintext at `out` (replacing what was there).
    fn commit(self, out: &Path) -> anyhow::Result<()> {
        match self {
            Pending::Unnamed(file) => {
                use std::os::fd::AsRawFd as _;
                file.sync_all()?;
                let tmp = sibling(out, "unsealed");
                let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    proc_path.as_str(),
                    rustix::fs::CWD,
                    &tmp,
                    rustix::fs::AtFlags::SYMLINK_FOLLOW,
                )
                .with_context(|| format!("cannot create {}", tmp.display()))?;
                std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
            }
            Pending::Named(file, path) => {
                file.sync_all()?;
                std::fs::rename(&path, out).with_context(|| format!("cannot write {}", out.display()))
            }
        }
    }

    fn discard(self) {
        if let Pending::Named(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

/// Opens a sealed file; the plaintext appears at `--out` only if all of it verified.
pub fn unseal_file(a: UnsealArgs) -> crate::Result {
    let key = read_key(&a.key_file)?;
    let input =
        std::fs::File::open(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let mut pending = Pending::create(&a.out)?;
    let workers = a.workers.unwrap_or_else(default_workers);
    let result = Opener::new(&key, BufReader::with_capacity(1 << 20, input)).and_then(|mut opener| {
        opener.open_parallel_to(&*pending.file(), workers, &|_| {})?;
        opener.finish()
    });
    match result {
        Ok(identity) => {
            pending.commit(&a.out)?;
            eprintln!("verified and opened {} ({identity}) to {}", a.input.display(), a.out.display());
            Ok(())
        }
        Err(e) => {
            pending.discard();
            Err(Error::Rejected(format!("{}: {e:#}; no plaintext was written", a.input.display())))
        }
    }
}
