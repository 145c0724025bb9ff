//! The run's writable space: one tmpfs, `results/` and `tmp/`, whose size
//! is the manifest's `results_bytes`.
//!
//! It is mounted in the agent's namespace, so the results outlive the
//! sandbox (the agent packs them after the run), and bound into the
//! sandbox. Its pages are charged to the memory cgroup of whoever writes
//! them, so they count in the sandbox's memory limit too.

use std::io;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Most files and directories the algorithm may make.
const MAX_INODES: u64 = 16384;

/// A mounted scratch tmpfs; unmounted (and its contents gone) when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    bytes: u64,
}

impl Scratch {
    /// Mounts a tmpfs of `bytes` on the empty directory `dir`, with
    /// `results/` and `tmp/` owned by the sandbox's uid and gid.
    pub fn mount(dir: &Path, bytes: u64, uid: u32, gid: u32) -> io::Result<Scratch> {
        std::fs::create_dir_all(dir)?;
        let data = format!("size={bytes},nr_inodes={MAX_INODES},mode=0711");
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.as_str()),
        )
        .map_err(|e| io::Error::other(format!("mounting the results tmpfs on {}: {e}", dir.display())))?;
        let scratch = Scratch { dir: dir.to_path_buf(), bytes };
        for sub in [scratch.results(), scratch.tmp()] {
            std::fs::create_dir(&sub)?;
            chown(&sub, Some(uid), Some(gid))?;
            std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(scratch)
    }

    /// The algorithm's results directory (the agent's path).
    pub fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The algorithm's /tmp (the agent's path).
    pub fn tmp(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// The size limit.
    pub fn limit(&self) -> u64 {
        self.bytes
    }

    /// Whether the run used all of its space or all of its files: a write
    /// or a file creation was then refused, and the results may be cut short.
    pub fn is_full(&self) -> bool {
        match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(s) => s.blocks_available() == 0 || s.files_available() == 0,
            // Cannot tell: fail closed.
            Err(_) => true,
        }
    }
}

impl Scratch {
    /// Unmounts every file system mounted below `dir` (a run's scratch
    /// space left mounted when the agent stops during a run).
    pub fn unmount_all_below(dir: &Path) {
        let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
        for point in mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4)) {
            let point = super::mounts::unescape_mountinfo(point);
            if point.starts_with(dir) && point != dir {
                let _ = umount2(&point, MntFlags::MNT_DETACH);
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
            log::warn!("cannot unmount the results tmpfs {}: {e}", self.dir.display());
        }
    }
}
