//! cvm-initramfs: the VM's RAM-only initramfs, bit for bit reproducible.
//!
//! An [`Archive`] is a sorted map from paths to entries (directories, files,
//! symbolic links, device nodes). Its bytes depend on nothing but that map:
//! entries are written in path order, every owner is root (0:0), every
//! modification time is the one given (`SOURCE_DATE_EPOCH`), inode numbers
//! count from 1 in that order, and the gzip header carries neither a file
//! name nor a time. The same inputs give the same SHA-256 on any machine,
//! which is what lets owners recompute the launch measurement of an image
//! they built themselves.
//!
//! The format is the kernel's "new ASCII" cpio (newc, magic `070701`, see
//! the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`):
//! a 110-byte header of hexadecimal fields, the NUL-terminated name padded to
//! four bytes, the data padded to four bytes, and a `TRAILER!!!` entry.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod modules;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// What an archive entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Content.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
    /// A character device node.
    CharDevice {
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// An input that cannot go into the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A path that is not a clean relative path (empty, `..`, `.`, `//`, NUL).
    #[error("invalid archive path {0:?}")]
    InvalidPath(String),
    /// Two inputs give different entries for one path.
    #[error("{path}: given twice, as {first} and as {second}")]
    Conflict {
        /// The path.
        path: String,
        /// The first kind.
        first: &'static str,
        /// The second kind.
        second: &'static str,
    },
    /// A path's parent is not a directory.
    #[error("{path}: its parent {parent} is not a directory")]
    ParentNotDir {
        /// The path.
        path: String,
        /// The parent.
        parent: String,
    },
    /// An entry larger than the format's 32-bit size field.
    #[error("{0}: larger than 4 GiB, which cpio newc cannot hold")]
    TooLarge(String),
    /// Reading an input or writing the output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Dir { .. } => "a directory",
            Entry::File { .. } => "a file",
            Entry::Symlink { .. } => "a symbolic link",
            Entry::CharDevice { .. } => "a device",
        }
    }

    /// The st_mode: type bits and permissions.
    fn mode(&self) -> u32 {
        match self {
            Entry::Dir { mode } => 0o040000 | (mode & 0o7777),
            Entry::File { mode, .. } => 0o100000 | (mode & 0o7777),
            Entry::Symlink { .. } => 0o120777,
            Entry::CharDevice { mode, .. } => 0o020000 | (mode & 0o7777),
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Entry::File { data, .. } => data,
            Entry::Symlink { target } => target.as_bytes(),
            Entry::Dir { .. } | Entry::CharDevice { .. } => &[],
        }
    }
}

/// The archive's content: paths (relative, without a leading `/`) to entries.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn check_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_start_matches('/');
    let ok = !trimmed.is_empty()
        && !trimmed.contains('\0')
        && trimmed.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(Error::InvalidPath(path.to_owned()))
    }
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry, and its missing parent directories (mode 0755).
    ///
    /// Adding the same entry twice is fine; a different entry for the same
    /// path is an error, except that a directory may be given again with
    /// other permissions (the last one wins), as overlays do.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<(), Error> {
        let path = check_path(path)?;
        let mut parent = String::new();
        for component in path.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(parent.clone(), Entry::Dir { mode: 0o755 });
                }
                Some(Entry::Dir { .. }) => {}
                Some(_) => return Err(Error::ParentNotDir { path, parent }),
            }
        }
        match (self.entries.get(&path), &entry) {
            (Some(Entry::Dir { .. }), Entry::Dir { .. }) | (None, _) => {}
            (Some(old), new) if old == new => {}
            (Some(old), new) => {
                return Err(Error::Conflict { path, first: old.kind(), second: new.kind() });
            }
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    /// Adds a file from the host, keeping only whether it is executable.
    pub fn add_file_from(&mut self, path: &str, source: &Path) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(source).map_err(io(source.display().to_string()))?;
        let data = std::fs::read(source).map_err(io(source.display().to_string()))?;
        let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
        self.add(path, Entry::File { mode, data })
    }

    /// Adds a host directory tree under `prefix` (`""` for the root):
    /// directories, regular files and symbolic links, with normalised
    /// permissions (0755 for directories and executables, 0644 otherwise).
    pub fn add_tree(&mut self, prefix: &str, dir: &Path) -> Result<(), Error> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(dir.display().to_string()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(dir.display().to_string()))?;
        names.sort();
        for source in names {
            let name = source
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::InvalidPath(source.display().to_string()))?;
            let path = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
            let meta = std::fs::symlink_metadata(&source).map_err(io(source.display().to_string()))?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&source).map_err(io(source.display().to_string()))?;
                let target =
                    target.to_str().ok_or_else(|| Error::InvalidPath(source.display().to_string()))?;
                self.add(&path, Entry::Symlink { target: target.to_owned() })?;
            } else if meta.is_dir() {
                self.add(&path, Entry::Dir { mode: 0o755 })?;
                self.add_tree(&path, &source)?;
            } else if meta.is_file() {
                self.add_file_from(&path, &source)?;
            } else {
                return Err(Error::InvalidPath(format!(
                    "{} (not a file, directory or link)",
                    source.display()
                )));
            }
        }
        Ok(())
    }

    /// The entries, in archive order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Writes the uncompressed cpio (newc) archive.
    pub fn write_cpio(&self, out: &mut impl Write, mtime: u32) -> Result<(), Error> {
        let mut ino = 0u32;
        for (path, entry) in &self.entries {
            ino += 1;
            let (rmajor, rminor) = match entry {
                Entry::CharDevice { major, minor, .. } => (*major, *minor),
                _ => (0, 0),
            };
            let nlink = if matches!(entry, Entry::Dir { .. }) { 2 } else { 1 };
            let size = u32::try_from(entry.data().len()).map_err(|_| Error::TooLarge(path.clone()))?;
            write_entry(out, path, ino, entry.mode(), nlink, mtime, size, rmajor, rminor, entry.data())?;
        }
        write_entry(out, "TRAILER!!!", 0, 0, 1, 0, 0, 0, 0, &[])
    }

    /// Writes the gzip'd archive: maximum compression, no name, no time in the header.
    pub fn write_gzip(&self, out: impl Write, mtime: u32) -> Result<(), Error> {
        let mut gz =
            flate2::GzBuilder::new().mtime(0).operating_system(3).write(out, flate2::Compression::best());
        self.write_cpio(&mut gz, mtime)?;
        gz.finish().map_err(io("compressing"))?;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments, reason = "one argument per header field")]
fn write_entry(
    out: &mut impl Write,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rmajor: u32,
    rminor: u32,
    data: &[u8],
) -> Result<(), Error> {
    let namesize = u32::try_from(name.len() + 1).map_err(|_| Error::TooLarge(name.to_owned()))?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
    // rdevmajor, rdevminor, namesize, check
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{size:08x}{:08x}{:08x}{rmajor:08x}{rminor:08x}{namesize:08x}{:08x}",
        0, 0, 0, 0, 0
    );
    let w = |out: &mut dyn Write, bytes: &[u8]| out.write_all(bytes).map_err(io("writing the archive"));
    w(out, header.as_bytes())?;
    w(out, name.as_bytes())?;
    w(out, &[0])?;
    w(out, &[0; 3][..pad4(header.len() + name.len() + 1)])?;
    w(out, data)?;
    w(out, &[0; 3][..pad4(data.len())])?;
    Ok(())
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpio(a: &Archive) -> Vec<u8> {
        let mut v = Vec::new();
        a.write_cpio(&mut v, 7).unwrap();
        v
    }

    #[test]
    fn entries_are_sorted_with_parents_and_fixed_metadata() {
        let mut a = Archive::new();
        a.add("/sbin/tool", Entry::File { mode: 0o755, data: b"x".to_vec() }).unwrap();
        a.add("init", Entry::Symlink { target: "sbin/tool".into() }).unwrap();
        a.add("dev/console", Entry::CharDevice { mode: 0o600, major: 5, minor: 1 }).unwrap();
        let paths: Vec<_> = a.entries().map(|(p, _)| p.to_owned()).collect();
        assert_eq!(paths, ["dev", "dev/console", "init", "sbin", "sbin/tool"]);
        let bytes = cpio(&a);
        // First header: inode 1, a directory 0755, root, 2 links, mtime 7.
        assert_eq!(&bytes[..54], b"07070100000001000041ed00000000000000000000000200000007");
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn insertion_order_does_not_change_the_bytes() {
        let mut a = Archive::new();
        a.add("b/y", Entry::File { mode: 0o644, data: b"1".to_vec() }).unwrap();
        a.add("a", Entry::File { mode: 0o644, data: b"22".to_vec() }).unwrap();
        let mut b = Archive::new();
        b.add("a", Entry::File { mode: 0o644, data: b"22".to_vec() }).unwrap();
        b.add("b/y", Entry::File { mode: 0o644, data: b"1".to_vec() }).unwrap();
        assert_eq!(cpio(&a), cpio(&b));
        let (mut ga, mut gb) = (Vec::new(), Vec::new());
        a.write_gzip(&mut ga, 0).unwrap();
        b.write_gzip(&mut gb, 0).unwrap();
        assert_eq!(ga, gb);
        // gzip header: no name flag, mtime 0, OS Unix.
        assert_eq!(&ga[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]);
    }

    #[test]
    fn bad_paths_and_conflicts_are_refused() {
        let mut a = Archive::new();
        for bad in ["", "/", "a/../b", "a//b", "./a", "a\0b"] {
            assert!(matches!(a.add(bad, Entry::Dir { mode: 0o755 }), Err(Error::InvalidPath(_))), "{bad:?}");
        }
        a.add("f", Entry::File { mode: 0o644, data: vec![] }).unwrap();
        assert!(matches!(a.add("f", Entry::Dir { mode: 0o755 }), Err(Error::Conflict { .. })));
        assert!(matches!(a.add("f/g", Entry::Dir { mode: 0o755 }), Err(Error::ParentNotDir { .. })));
        a.add("d", Entry::Dir { mode: 0o700 }).unwrap();
        a.add("d", Entry::Dir { mode: 0o755 }).unwrap();
    }
}
