//! The sandbox's file system: a fresh tmpfs as its root, holding only what
//! the algorithm may see, then `pivot_root` into it.
//!
//! Runs in the sandbox's init (PID 1 of its PID namespace, in its own mount
//! namespace, still root). The layout:
//!
//! | path | what | mount |
//! |---|---|---|
//! | `/` | a small tmpfs | read-only once built |
//! | `/dev` | `null`, `zero`, `urandom` (bound from the agent's /dev), `fd`, `stdin`, `stdout`, `stderr` links | tmpfs, read-only |
//! | `/proc` | its own, of its own PID namespace, PID directories only | `subset=pid,hidepid=invisible` |
//! | the spec's binds | datasets, artifacts (read-only), results and `/tmp` (writable, size-limited), the algorithm (read-only, executable) | bind |
//! | runtime paths | the image's paths the manifest declares, at the same place, with the links that lead there | bind, read-only |
//!
//! There is no /sys, nothing of the agent's (its work directory, its
//! devices, its /proc), and no other device.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::spec::{Bind, LaunchSpec};

/// Devices the sandbox gets, bound from the agent's /dev.
const DEVICES: [&str; 3] = ["null", "zero", "urandom"];
/// Where no runtime path may lead, on top of the spec's hidden paths.
const NEVER_SHOWN: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];
/// Most symbolic links followed while exposing one runtime path.
const MAX_LINKS: usize = 40;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

/// `inside` (an absolute path in the sandbox) below the new root.
fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

fn bind(source: &Path, target: &Path, writable: bool, exec: bool) -> io::Result<()> {
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| err(format_args!("binding {} on {}", source.display(), target.display()), e))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    if !exec {
        flags |= MsFlags::MS_NOEXEC;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(|e| err(format_args!("restricting {}", target.display()), e))
}

/// Creates an empty mount point for `source` at `target`: a directory or a file.
fn mount_point(source: &Path, target: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(source).map_err(|e| err(source.display(), e))?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(parent.display(), e))?;
    }
    if meta.is_dir() {
        std::fs::create_dir_all(target)
    } else {
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(target).map(drop)
    }
    .map_err(|e| err(target.display(), e))
}

/// Builds the new root at `spec.root` and moves into it.
pub(crate) fn build_root(spec: &LaunchSpec) -> io::Result<()> {
    // Nothing done below may reach the agent's mount namespace.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| err("making the mounts private", e))?;
    let root = spec.root.as_path();
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), root, Some("tmpfs"), nosuid_nodev, Some("size=1m,nr_inodes=4096,mode=0755"))
        .map_err(|e| err(format_args!("mounting the sandbox's root on {}", root.display()), e))?;

    let mut shown = Vec::new();
    for path in &spec.runtime {
        expose(root, path, &spec.hidden, &mut shown, 0)
            .map_err(|e| err(format_args!("algorithm.runtime {}", path.display()), e))?;
    }
    for b in &spec.binds {
        bind_into(root, b)?;
    }
    build_dev(root)?;
    let proc_dir = under(root, Path::new("/proc"));
    std::fs::create_dir_all(&proc_dir).map_err(|e| err("/proc", e))?;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nosuid_nodev | MsFlags::MS_NOEXEC,
        Some("subset=pid,hidepid=invisible"),
    )
    .map_err(|e| err("mounting the sandbox's /proc", e))?;

    enter(root)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid_nodev,
        None::<&str>,
    )
    .map_err(|e| err("making the sandbox's root read-only", e))
}

/// Makes `root` this process's root, with nothing of the old one reachable.
///
/// `pivot_root` detaches the old root entirely. The kernel refuses it when
/// the old root is the initramfs itself (rootfs, which can never be
/// unmounted): that is the VM's case. There, every other mount of this
/// namespace is detached first, and the new root is moved over `/` and
/// entered with chroot; what stays underneath is the initramfs's own files
/// (the measured image), out of reach by any path, and a way around a
/// chroot needs a capability or a descriptor from outside, none of which
/// the algorithm has (nor chroot itself: the seccomp filter refuses it).
fn enter(root: &Path) -> io::Result<()> {
    nix::unistd::chdir(root).map_err(|e| err(root.display(), e))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detaching the old root", e))?;
        }
        Err(nix::errno::Errno::EINVAL) => {
            detach_all_but(root)?;
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(|e| err("moving the sandbox's root over /", e))?;
            nix::unistd::chroot(".").map_err(|e| err("chroot", e))?;
        }
        Err(e) => return Err(err("pivot_root", e)),
    }
    nix::unistd::chdir("/").map_err(|e| err("chdir /", e))
}

/// Detaches every mount of this namespace that is neither `root`, below
/// it, nor one of its ancestors, deepest first.
fn detach_all_but(root: &Path) -> io::Result<()> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| err("/proc/self/mountinfo", e))?;
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mountinfo)
        // The new root's ancestors stay: detaching one would take the new
        // root with it. They end up under it, out of reach, like the rootfs.
        .filter(|p| !p.starts_with(root) && !root.starts_with(p))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(err(format_args!("detaching {}", p.display()), e)),
        }
    }
    Ok(())
}

/// A mount point of /proc/self/mountinfo, whose spaces, tabs, newlines and
/// backslashes are octal escapes.
pub(crate) fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

fn bind_into(root: &Path, b: &Bind) -> io::Result<()> {
    let target = under(root, &b.target);
    mount_point(&b.source, &target)?;
    bind(&b.source, &target, b.writable, b.exec)
}

/// /dev: a read-only tmpfs with three devices and the usual links.
fn build_dev(root: &Path) -> io::Result<()> {
    let dev = under(root, Path::new("/dev"));
    std::fs::create_dir_all(&dev).map_err(|e| err("/dev", e))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), &dev, Some("tmpfs"), flags, Some("size=16k,nr_inodes=32,mode=0755"))
        .map_err(|e| err("mounting the sandbox's /dev", e))?;
    for name in DEVICES {
        let source = Path::new("/dev").join(name);
        let target = dev.join(name);
        mount_point(&source, &target)?;
        mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| err(format_args!("binding {}", source.display()), e))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(|e| err(format_args!("/dev/{link}"), e))?;
    }
    mount(None::<&str>, &dev, None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags, None::<&str>)
        .map_err(|e| err("making the sandbox's /dev read-only", e))
}

/// Whether `path` is, contains or lies below one of `roots`.
fn overlaps(path: &Path, roots: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    roots.into_iter().find(|r| path.starts_with(r) || r.starts_with(path))
}

/// `path` with `.` and `..` resolved lexically (it holds no links: the
/// caller resolves those one component at a time).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Makes the image's `path` resolve inside the sandbox as it does outside:
/// each directory on the way is created, each symbolic link on the way is
/// recreated (and followed), and the last component is bound read-only.
fn expose(
    root: &Path,
    path: &Path,
    hidden: &[PathBuf],
    shown: &mut Vec<PathBuf>,
    links: usize,
) -> io::Result<()> {
    if links > MAX_LINKS {
        return Err(io::Error::other("too many levels of symbolic links"));
    }
    let path = normalise(path);
    let forbidden = NEVER_SHOWN.iter().map(PathBuf::from).chain(hidden.iter().cloned());
    if path == Path::new("/") {
        return Err(io::Error::other("resolves to / (the whole image)"));
    }
    if let Some(f) = overlaps(&path, forbidden) {
        return Err(io::Error::other(format!(
            "{} leads to {}, which the sandbox never shows",
            path.display(),
            f.display()
        )));
    }
    let parts: Vec<OsString> = path.iter().skip(1).map(|c| c.to_os_string()).collect();
    let mut here = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        here.push(part);
        if shown.iter().any(|s| here.starts_with(s)) {
            return Ok(()); // inside a tree already bound: it resolves there as here
        }
        let meta = std::fs::symlink_metadata(&here).map_err(|e| err(here.display(), e))?;
        let inside = under(root, &here);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&here).map_err(|e| err(here.display(), e))?;
            match std::fs::symlink_metadata(&inside) {
                Ok(_) => {} // made by an earlier runtime path
                Err(_) => {
                    std::os::unix::fs::symlink(&target, &inside).map_err(|e| err(inside.display(), e))?
                }
            }
            let base = here.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
            let mut next =
                if target.as_os_str().as_bytes().first() == Some(&b'/') { target } else { base.join(target) };
            for rest in &parts[i + 1..] {
                next.push(rest);
            }
            return expose(root, &next, hidden, shown, links + 1);
        }
        if i + 1 == parts.len() {
            mount_point(&here, &inside)?;
            bind(&here, &inside, false, true)?;
            shown.push(here);
            return Ok(());
        }
        if !meta.is_dir() {
            return Err(io::Error::other(format!("{} is not a directory", here.display())));
        }
        std::fs::create_dir_all(&inside).map_err(|e| err(inside.display(), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/run/a\\040b\\011c\\134d"), PathBuf::from("/run/a b\tc\\d"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
        // A backslash that starts no escape stays.
        assert_eq!(unescape_mountinfo("/x\\9"), PathBuf::from("/x\\9"));
    }

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(normalise(Path::new("/usr/lib/../bin/./python3")), PathBuf::from("/usr/bin/python3"));
        assert_eq!(normalise(Path::new("/../../etc")), PathBuf::from("/etc"));
    }
}
