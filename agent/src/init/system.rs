//! What PID 1 sets up before the agent starts: file systems, the kernel's
//! file protections, kernel modules, network.
//!
//! The kernel gives an initramfs's init nothing but the archive's files: no
//! /proc, no /sys, no device nodes beyond those in the archive. The mounts
//! follow the usual layout; those the agent cannot work without are fatal,
//! the others (configfs, securityfs, devpts) are logged and skipped, so that
//! a kernel without them still boots to a clear error at the point of use.
//!
//! Right after /proc is mounted, [`apply_kernel_settings`] turns on the kernel's
//! protections against link and file races in world-writable sticky
//! directories (such as /tmp), which the kernel leaves off unless a
//! distribution's init turns them on: `fs.protected_hardlinks = 1` and
//! `fs.protected_symlinks = 1` (no hard link to a file one does not own, no
//! following of another user's symbolic link there), `fs.protected_fifos =
//! 2` and `fs.protected_regular = 2` (no O_CREAT open of another user's FIFO
//! or regular file there, group-writable directories included). They keep
//! the hostile algorithm, or anything else unprivileged, from steering a
//! privileged process's file operations. It also keeps the kernel's own
//! messages off the serial console but for critical ones (`kernel.printk`'s
//! console level 3, `debug.exception-trace = 0`): the console is the host's,
//! and the kernel's reports of an out-of-memory kill or a fault name the
//! process and its sizes or addresses, which the algorithm chooses. A kernel
//! that lacks a setting is logged as a warning, and the others are still set.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::{mount, MsFlags};

use crate::config::InitConfig;

/// `MODULE_INIT_COMPRESSED_FILE` of finit_module(2) (Linux 6.4+): the kernel
/// decompresses the module itself, in the format it was built for.
const MODULE_INIT_COMPRESSED_FILE: u32 = 4;

struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
    required: bool,
}

const fn m(
    source: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: &'static str,
    required: bool,
) -> Mount {
    Mount { source, target, fstype: source, flags, data, required }
}

/// Where [`KERNEL_SETTINGS`] are set.
pub const PROC_SYS: &str = "/proc/sys";

/// The kernel settings init mode makes, as (path under `/proc/sys`, value):
/// the file protections (see the module documentation), and a console that
/// shows only critical kernel messages and no report of a process's fault.
/// The serial console is the host's: below that level the kernel names the
/// processes an out-of-memory kill takes, and reports faults with their
/// name and addresses, both chosen by the algorithm, which would make them
/// a channel to the operator.
pub const KERNEL_SETTINGS: [(&str, &str); 6] = [
    ("fs/protected_hardlinks", "1"),
    ("fs/protected_symlinks", "1"),
    ("fs/protected_fifos", "2"),
    ("fs/protected_regular", "2"),
    // console_loglevel 3: EMERG, ALERT and CRIT only; the others as the kernel's defaults.
    ("kernel/printk", "3 4 1 3"),
    ("debug/exception-trace", "0"),
];

/// The file systems everything else needs: /proc (the kernel command line,
/// where the configuration starts), /sys, /dev, /dev/pts, /run, securityfs,
/// cgroup2; and, once /proc is there, the kernel's settings
/// ([`apply_kernel_settings`]).
pub fn mount_early() -> anyhow::Result<()> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);
    let early = [
        m("proc", "/proc", nosuid_nodev_noexec, "", true),
        m("sysfs", "/sys", nosuid_nodev_noexec, "", true),
        m("devtmpfs", "/dev", MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC), "mode=0755", true),
        m(
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
            "mode=0620,ptmxmode=0666",
            false,
        ),
        m("tmpfs", "/run", MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV), "mode=0755", true),
        m("securityfs", "/sys/kernel/security", nosuid_nodev_noexec, "", false),
        // The sandbox's memory and process limits; the agent refuses to
        // start (sandbox = strict) without it.
        m("cgroup2", "/sys/fs/cgroup", nosuid_nodev_noexec, "nsdelegate", false),
    ];
    for mnt in &early {
        mount_one(mnt)?;
        if mnt.target == "/proc" {
            apply_kernel_settings(Path::new(PROC_SYS));
        }
    }
    Ok(())
}

/// Writes each of [`KERNEL_SETTINGS`] into its file under `proc_sys`
/// (`/proc/sys`, a parameter for tests) and returns those it set.
///
/// Never fails: a setting the kernel lacks (no such file) or refuses is
/// logged as a warning and the others are still written; what was set is
/// logged once, on one line.
pub fn apply_kernel_settings(proc_sys: &Path) -> Vec<&'static str> {
    let mut set = Vec::new();
    for (name, value) in KERNEL_SETTINGS {
        let path = proc_sys.join(name);
        // Never create: a file that is not there is a setting the kernel lacks.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes()));
        match written {
            Ok(()) => set.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("init: {name} not set: this kernel lacks {}", path.display());
            }
            Err(e) => log::warn!("init: {name} not set to {value}: {e}"),
        }
    }
    let shown: Vec<String> = KERNEL_SETTINGS
        .iter()
        .filter(|(name, _)| set.contains(name))
        .map(|(name, value)| format!("{} = {value}", name.replace('/', ".")))
        .collect();
    if !shown.is_empty() {
        log::info!("init: {}", shown.join(", "));
    }
    set
}

/// Modules, configfs (which may itself be a module), the network.
pub fn set_up(config: &InitConfig) -> anyhow::Result<()> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);
    if let Some(list) = &config.modules {
        load_modules(list)?;
    }
    mount_one(&m("configfs", "/sys/kernel/config", nosuid_nodev_noexec, "", false))?;
    // What the platform gave this guest, for the operator's log.
    let present = |path: &str| if Path::new(path).exists() { "yes" } else { "no" };
    log::info!(
        "init: devices: TPM /dev/tpmrm0 {}, /dev/sev-guest {}, configfs-tsm {}, vsock /dev/vsock {}, fw_cfg {}",
        present("/dev/tpmrm0"),
        present("/dev/sev-guest"),
        present("/sys/kernel/config/tsm/report"),
        present("/dev/vsock"),
        present("/sys/firmware/qemu_fw_cfg/by_name"),
    );
    super::net::bring_up("lo", None).context("cannot bring up lo")?;
    if let Some(net) = &config.net {
        super::net::bring_up(&net.interface, Some((net.address, net.prefix)))
            .with_context(|| format!("cannot configure {}", net.interface))?;
        log::info!("init: {} is {}/{}", net.interface, net.address, net.prefix);
    }
    Ok(())
}

fn mount_one(mnt: &Mount) -> anyhow::Result<()> {
    // Already there (another init mounted it first): leave it.
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(mnt.target)));
    if mounted {
        return Ok(());
    }
    let _ = std::fs::create_dir_all(mnt.target);
    let data = if mnt.data.is_empty() { None } else { Some(mnt.data) };
    match mount(Some(mnt.source), mnt.target, Some(mnt.fstype), mnt.flags, data) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) if mnt.required => Err(anyhow::anyhow!("cannot mount {} on {}: {e}", mnt.fstype, mnt.target)),
        Err(e) => {
            log::warn!("init: {} not mounted on {}: {e}", mnt.fstype, mnt.target);
            Ok(())
        }
    }
}

/// Loads the modules of a list file, in its order (dependencies first).
///
/// Each line is a module file (`.ko`, or compressed `.ko.xz`/`.ko.zst`/
/// `.ko.gz` for a kernel that decompresses modules itself), optionally
/// followed by its parameters; `#` starts a comment, and a comment
/// `# needs FILE...` (cvm-initramfs writes it) names the modules it needs. A
/// module that is already there is fine; one that finds no device (ENODEV,
/// such as `sev-guest` on a machine without SNP, or Hyper-V's `hv_vmbus`
/// outside Azure) is logged and skipped, and so is every module that needs
/// one that was not loaded (`hv_netvsc` without VMBus); any other failure is
/// logged as a warning: the feature that needs it fails later with its own error.
pub fn load_modules(list: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read the module list {}", list.display()))?;
    let start = Instant::now();
    let lines =
        parse_load_list(&text).map_err(|(n, e)| anyhow::anyhow!("{} line {n}: {e}", list.display()))?;
    let (loaded, skipped) = load_in_order(&lines, |line| {
        let compressed = [".xz", ".zst", ".gz"].iter().any(|ext| line.file.ends_with(ext));
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
        } else {
            ModuleInitFlags::empty()
        };
        let file =
            std::fs::File::open(&line.file).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        finit_module(&file, &line.params, flags)
    });
    log::info!("init: {loaded} modules loaded, {skipped} skipped, in {} ms", start.elapsed().as_millis());
    Ok(())
}

/// One line of a module list.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ModuleLine {
    file: String,
    params: CString,
    needs: Vec<String>,
}

/// The lines of a module list; an error names the line number.
fn parse_load_list(text: &str) -> Result<Vec<ModuleLine>, (usize, String)> {
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let (line, comment) = raw.split_once('#').unwrap_or((raw, ""));
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (file, params) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let params =
            CString::new(params.trim()).map_err(|_| (n + 1, "a NUL in the parameters".to_owned()))?;
        let needs = comment
            .trim()
            .strip_prefix("needs ")
            .map(|list| list.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        lines.push(ModuleLine { file: file.to_owned(), params, needs });
    }
    Ok(lines)
}

/// Loads `lines` in order with `load`; returns how many were loaded and
/// how many skipped (see [`load_modules`]).
fn load_in_order(
    lines: &[ModuleLine],
    mut load: impl FnMut(&ModuleLine) -> Result<(), Errno>,
) -> (usize, usize) {
    let (mut loaded, mut skipped) = (0, 0);
    // The modules not loaded, and why, by file.
    let mut missing: BTreeMap<&str, String> = BTreeMap::new();
    let name_of =
        |file: &str| Path::new(file).file_name().and_then(|n| n.to_str()).unwrap_or(file).to_owned();
    for line in lines {
        let name = name_of(&line.file);
        if let Some((dep, why)) = line.needs.iter().find_map(|d| missing.get(d.as_str()).map(|w| (d, w))) {
            skipped += 1;
            log::info!("init: module {name}: skipped, it needs {} ({why})", name_of(dep));
            missing.insert(&line.file, format!("needs {}", name_of(dep)));
            continue;
        }
        match load(line) {
            Ok(()) | Err(Errno::EEXIST) => loaded += 1,
            Err(Errno::ENODEV) => {
                skipped += 1;
                log::info!("init: module {name}: no such device here");
                missing.insert(&line.file, "no such device here".to_owned());
            }
            Err(e) => {
                skipped += 1;
                log::warn!("init: module {name} not loaded: {e}");
                missing.insert(&line.file, format!("not loaded: {e}"));
            }
        }
    }
    (loaded, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn a_module_whose_dependency_found_no_device_is_skipped() {
        let list = "# Kernel modules in load order\n\
                    /m/hv_vmbus.ko.xz\n\
                    /m/scsi_mod.ko.xz\n\
                    /m/hv_storvsc.ko.xz  # needs /m/scsi_mod.ko.xz /m/hv_vmbus.ko.xz\n\
                    /m/hv_netvsc.ko.xz debug=1  # needs /m/hv_vmbus.ko.xz\n\
                    /m/gve.ko.xz\n";
        let lines = parse_load_list(list).unwrap();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[3].params.as_bytes(), b"debug=1");
        assert_eq!(lines[2].needs, ["/m/scsi_mod.ko.xz", "/m/hv_vmbus.ko.xz"]);
        let mut tried = Vec::new();
        let (loaded, skipped) = load_in_order(&lines, |l| {
            tried.push(l.file.clone());
            if l.file.ends_with("hv_vmbus.ko.xz") {
                Err(Errno::ENODEV)
            } else {
                Ok(())
            }
        });
        // Neither VMBus driver is even tried without VMBus.
        assert_eq!(tried, ["/m/hv_vmbus.ko.xz", "/m/scsi_mod.ko.xz", "/m/gve.ko.xz"]);
        assert_eq!((loaded, skipped), (2, 3));
        assert!(parse_load_list("/m/x.ko a\0b").is_err());
    }

    /// A stand-in for /proc/sys with every setting at `value`.
    fn proc_sys(value: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, _) in KERNEL_SETTINGS {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, value).unwrap();
        }
        dir
    }

    #[test]
    fn every_setting_is_made() {
        let dir = proc_sys("0\n");
        let set = apply_kernel_settings(dir.path());
        assert_eq!(set, KERNEL_SETTINGS.map(|(n, _)| n));
        assert_eq!(read(dir.path(), "fs/protected_hardlinks"), "1\n");
        assert_eq!(read(dir.path(), "fs/protected_symlinks"), "1\n");
        assert_eq!(read(dir.path(), "fs/protected_fifos"), "2\n");
        assert_eq!(read(dir.path(), "fs/protected_regular"), "2\n");
        assert_eq!(read(dir.path(), "kernel/printk"), "3 4 1 3\n");
        assert_eq!(read(dir.path(), "debug/exception-trace"), "0\n");
    }

    #[test]
    fn a_setting_the_kernel_lacks_is_skipped_and_the_others_are_still_made() {
        let dir = proc_sys("0\n");
        std::fs::remove_file(dir.path().join("fs/protected_fifos")).unwrap();
        // One the kernel refuses to write (here: not a file at all).
        std::fs::remove_file(dir.path().join("fs/protected_symlinks")).unwrap();
        std::fs::create_dir(dir.path().join("fs/protected_symlinks")).unwrap();
        let set = apply_kernel_settings(dir.path());
        assert!(!set.contains(&"fs/protected_fifos") && !set.contains(&"fs/protected_symlinks"), "{set:?}");
        assert_eq!(set.len(), KERNEL_SETTINGS.len() - 2);
        assert_eq!(read(dir.path(), "fs/protected_regular"), "2\n");
        // A missing setting is not created.
        assert!(!dir.path().join("fs/protected_fifos").exists());
    }

    #[test]
    fn every_setting_is_one_of_this_kernel() {
        // The development machines' and the guest's kernels have them all
        // (protected_fifos and protected_regular since Linux 4.19): read only.
        for (name, _) in KERNEL_SETTINGS {
            let path = Path::new(PROC_SYS).join(name);
            let value = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!value.trim().is_empty(), "{}: {value:?}", path.display());
        }
    }
}
