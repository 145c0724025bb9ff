//! The vault: the plaintext of sealed inputs, in locked memory only.
//!
//! A sealed input (algorithm, dataset or artifact) is decrypted straight
//! into a memfd: anonymous memory with no name in any file system, so no
//! plaintext ever reaches a file, tmpfs included. While it is written, the
//! agent's only mapping of it is `mlock`ed (never swapped) and `MADV_DONTDUMP`
//! (never in a core dump); the agent itself is not dumpable
//! ([`make_undumpable`]). Each chunk's ciphertext is read straight into its
//! place in that mapping and decrypted there, by several workers at once,
//! so the agent holds one copy of the plaintext and no other buffer.
//!
//! When the stream's last chunk has verified, [`Filling::seal`] makes it
//! read-only for good: the memfd's mode drops write permission, seals forbid
//! growing, shrinking and (for data) any future write, even by root in the
//! sandbox; the algorithm receives a read-only descriptor (see `sandbox`).
//! A binary algorithm must be executable, and the kernel refuses to execute a
//! file that is open for writing: its writable mapping and descriptor are
//! dropped after a read-only, locked mapping took over, and no write seal is
//! set, so that the agent (root) can still wipe it later.
//!
//! Dropping a [`Filling`] or a [`Plaintext`] zeroes the memory before it is
//! released, on success, failure or shutdown alike. Keys are zeroed by
//! their own types (the sealed stream's AES key schedule by aes-gcm's
//! `zeroize` feature).

#![expect(unsafe_code, reason = "memfd_create, mlock, mmap and munmap have no safe wrapper here")]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A memfd being filled: writable, locked, not dumpable. Zeroed on drop.
pub struct Filling {
    fd: Option<OwnedFd>,
    map: Option<Mapping>,
    executable: bool,
    name: String,
}

/// A sealed, read-only plaintext in locked memory. Zeroed on drop.
pub struct Plaintext {
    /// Data: the writable descriptor (kept to wipe through the mapping);
    /// executable: none (the kernel would refuse to execute it).
    rw_fd: Option<OwnedFd>,
    ro_fd: OwnedFd,
    map: Mapping,
    writable_mapping: bool,
    name: String,
}

/// A locked, non-dumpable shared mapping of `len` bytes (none for 0).
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by its holder; access goes
// through &self / &mut self, so the usual borrow rules serialise it.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared access is read-only.
unsafe impl Sync for Mapping {}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Makes the agent not dumpable: no core dump, and no ptrace or
/// /proc/PID/mem access by other processes of its uid.
pub fn make_undumpable() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(|_| ())
}

impl Mapping {
    /// Maps `len` bytes of `fd` shared with `prot`, excluded from dumps and locked.
    fn new(fd: RawFd, len: usize, prot: libc::c_int, name: &str) -> io::Result<Mapping> {
        if len == 0 {
            return Ok(Mapping { ptr: std::ptr::null_mut(), len: 0 });
        }
        // SAFETY: a fresh shared mapping of an fd we own; the kernel picks the address.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(context(io::Error::last_os_error(), format!("mapping {len} bytes for {name}")));
        }
        let map = Mapping { ptr: ptr.cast(), len };
        // SAFETY: ptr..ptr+len is the mapping just made.
        cvt(unsafe { libc::madvise(ptr, len, libc::MADV_DONTDUMP) })
            .map_err(|e| context(e, format!("excluding {name} from core dumps")))?;
        // SAFETY: as above; mlock also faults every page in.
        cvt(unsafe { libc::mlock(ptr, len) }).map_err(|e| {
            context(
                e,
                format!(
                    "locking {len} bytes of memory for {name} (the agent needs CAP_IPC_LOCK or RLIMIT_MEMLOCK of at least that)"
                ),
            )
        })?;
        Ok(map)
    }

    fn protect(&self, prot: libc::c_int) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: changes the protection of our own mapping.
        cvt(unsafe { libc::mprotect(self.ptr.cast(), self.len, prot) }).map(|_| ())
    }

    /// Zeroes the mapping; it must be writable.
    fn wipe(&mut self) {
        if self.len > 0 {
            // SAFETY: ptr..ptr+len is our writable mapping; explicit_bzero is
            // not optimised away.
            unsafe { libc::explicit_bzero(self.ptr.cast(), self.len) };
        }
    }

    fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr..ptr+len is mapped readable for as long as self lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: ptr..ptr+len is mapped writable while a Filling owns it,
        // and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps our own mapping once; nothing refers to it after drop.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

fn memfd(name: &str, executable: bool) -> io::Result<OwnedFd> {
    let cname = CString::new(format!("cvm-sealed:{name}"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the input's name"))?;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC / MFD_NOEXEC_SEAL say what the memfd is for (Linux 6.3+);
    // older kernels reject them with EINVAL, and then default to executable.
    let wanted = base | if executable { libc::MFD_EXEC } else { libc::MFD_NOEXEC_SEAL };
    for flags in [wanted, base] {
        // SAFETY: a valid C string and flags; returns a new descriptor or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: fd is a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(context(e, format!("memfd_create for {name}")));
        }
    }
    Err(io::Error::other(format!("memfd_create for {name}: refused by the kernel")))
}

/// Opens `fd`'s file again, read-only (or read-write as root), as a new description.
fn reopen(fd: RawFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{fd}"))
        .map_err(|_| io::Error::other("unreachable: a number has no NUL"))?;
    // SAFETY: a valid C string; returns a new descriptor or -1.
    let new = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: new is a descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl Filling {
    /// A new locked memfd of `len` bytes for the input `name`; `executable`
    /// for a binary algorithm.
    pub fn new(name: &str, len: u64, executable: bool) -> io::Result<Filling> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: {len} bytes")))?;
        let fd = memfd(name, executable)?;
        let off = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: {len} bytes")))?;
        // SAFETY: fd is our memfd.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), off) })
            .map_err(|e| context(e, format!("sizing the memory for {name}")))?;
        let map = Mapping::new(fd.as_raw_fd(), len, libc::PROT_READ | libc::PROT_WRITE, name)?;
        Ok(Filling { fd: Some(fd), map: Some(map), executable, name: name.to_owned() })
    }

    /// The whole plaintext buffer, to decrypt into.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self.map.as_mut() {
            Some(m) => m.as_mut_slice(),
            None => &mut [],
        }
    }

    /// Makes the plaintext read-only for good (see the module docs). On
    /// error the plaintext is wiped.
    pub fn seal(mut self) -> io::Result<Plaintext> {
        let name = self.name.clone();
        let sealed = self.seal_parts().map_err(|e| context(e, format!("making {name} read-only")))?;
        Ok(sealed)
    }

    fn seal_parts(&mut self) -> io::Result<Plaintext> {
        let (Some(fd), Some(map)) = (self.fd.as_ref(), self.map.as_ref()) else {
            return Err(io::Error::other("already sealed"));
        };
        let raw = fd.as_raw_fd();
        let ro_fd = reopen(raw, libc::O_RDONLY)?;
        let (mode, seals) = if self.executable {
            (0o555, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
        } else {
            (0o444, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE)
        };
        // SAFETY: fchmod and fcntl on our own memfd.
        cvt(unsafe { libc::fchmod(raw, mode) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals | libc::F_SEAL_SEAL) })?;
        let name = self.name.clone();
        if self.executable {
            // A locked read-only mapping takes over before the writable
            // mapping and descriptor go, so the pages stay locked.
            let ro_map = Mapping::new(ro_fd.as_raw_fd(), map.len, libc::PROT_READ, &name)?;
            self.map = None;
            self.fd = None;
            Ok(Plaintext { rw_fd: None, ro_fd, map: ro_map, writable_mapping: false, name })
        } else {
            map.protect(libc::PROT_READ)?;
            let (Some(fd), Some(map)) = (self.fd.take(), self.map.take()) else {
                return Err(io::Error::other("already sealed"));
            };
            Ok(Plaintext { rw_fd: Some(fd), ro_fd, map, writable_mapping: true, name })
        }
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        // Every failure leaves the mapping writable (it is made read-only
        // only as the last step), so it can be wiped here.
        if let Some(map) = self.map.as_mut() {
            map.wipe();
            log::debug!("wiped the partial plaintext of {}", self.name);
        }
    }
}

impl Plaintext {
    /// A read-only descriptor of the plaintext, for the sandboxed algorithm.
    pub fn fd(&self) -> RawFd {
        self.ro_fd.as_raw_fd()
    }

    /// The plaintext's length.
    pub fn len(&self) -> u64 {
        self.map.len as u64
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    /// The plaintext (read-only mapping).
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_slice()
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        if self.writable_mapping {
            match self.map.protect(libc::PROT_READ | libc::PROT_WRITE) {
                Ok(()) => self.map.wipe(),
                Err(e) => log::error!("cannot wipe the plaintext of {}: {e}", self.name),
            }
        } else if !self.map.as_slice().is_empty() {
            // No write seal on an executable: root opens it for writing again.
            let wiped = reopen(self.ro_fd.as_raw_fd(), libc::O_RDWR).and_then(|rw| {
                let mut m = Mapping::new(
                    rw.as_raw_fd(),
                    self.map.len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    &self.name,
                )?;
                m.wipe();
                Ok(())
            });
            if let Err(e) = wiped {
                log::error!("cannot wipe the plaintext of {}: {e}", self.name);
            }
        }
        let _ = self.rw_fd.take();
        log::debug!("wiped the plaintext of {}", self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().display().to_string()
    }

    #[test]
    fn a_sealed_plaintext_is_read_only_and_in_no_file() {
        let mut f = Filling::new("weights", 3 << 20, false).unwrap();
        f.as_mut_slice()[..5].copy_from_slice(b"hello");
        let p = f.seal().unwrap();
        assert_eq!(&p.as_slice()[..5], b"hello");
        assert!(fd_target(p.fd()).starts_with("/memfd:cvm-sealed:weights"), "{}", fd_target(p.fd()));
        // Writes through the read-only descriptor and through a new
        // read-write open of the same memory both fail.
        let path = format!("/proc/self/fd/{}", p.fd());
        assert!(std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(b"x")
            })
            .is_err());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let locked: u64 = status
            .lines()
            .find(|l| l.starts_with("VmLck:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap();
        assert!(locked >= 3 << 10, "VmLck {locked} kB");
    }

    /// Another descriptor of the same memfd, to look at it after the vault let go.
    fn spy(fd: RawFd) -> std::fs::File {
        std::fs::File::open(format!("/proc/self/fd/{fd}")).unwrap()
    }

    fn read_all(mut f: std::fs::File) -> Vec<u8> {
        use std::io::{Read, Seek};
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn plaintext_is_zeroed_when_dropped_whether_sealed_or_not() {
        // A partial plaintext (a stream that failed half-way).
        let mut f = Filling::new("partial", 8192, false).unwrap();
        f.as_mut_slice().fill(0x5a);
        let fd = f.fd.as_ref().unwrap().as_raw_fd();
        let seen = spy(fd);
        drop(f);
        assert!(read_all(seen).iter().all(|b| *b == 0));
        // A sealed data plaintext and a sealed executable.
        for executable in [false, true] {
            let mut f = Filling::new("sealed", 8192, executable).unwrap();
            f.as_mut_slice().fill(0x5a);
            let p = f.seal().unwrap();
            let seen = spy(p.fd());
            assert!(p.as_slice().iter().all(|b| *b == 0x5a));
            drop(p);
            assert!(read_all(seen).iter().all(|b| *b == 0), "executable {executable}");
        }
    }

    #[test]
    fn a_sealed_executable_can_be_run_from_its_descriptor() {
        let program = std::fs::read("/bin/true").unwrap();
        let mut f = Filling::new("true", program.len() as u64, true).unwrap();
        f.as_mut_slice().copy_from_slice(&program);
        let p = f.seal().unwrap();
        let status = std::process::Command::new(format!("/proc/self/fd/{}", p.fd())).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn an_empty_input_works() {
        let p = Filling::new("empty", 0, false).unwrap().seal().unwrap();
        assert!(p.is_empty());
        assert_eq!(std::fs::read(format!("/proc/self/fd/{}", p.fd())).unwrap(), b"");
    }
}
