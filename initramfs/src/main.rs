//! cvm-initramfs: builds the VM's initramfs from the static agent, kernel
//! modules, an optional busybox and overlay directories.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use cvm_initramfs::modules::ModuleDb;
use cvm_initramfs::{Archive, Entry};
use sha2::{Digest as _, Sha256};

/// Build a reproducible RAM-only initramfs (gzip'd cpio newc) for cvm-agent.
///
/// The agent becomes /bin/cvm-agent and /init (it runs as PID 1). Kernel
/// modules are taken from a kernel's module directory with their
/// dependencies, and listed in load order in /lib/modules/load.list. Every
/// owner is root and every time is SOURCE_DATE_EPOCH (0 if unset): the same
/// inputs always give the same bytes.
#[derive(Debug, Parser)]
#[command(name = "cvm-initramfs", version)]
struct Args {
    /// The static cvm-agent binary.
    #[arg(long, value_name = "FILE")]
    agent: PathBuf,
    /// A kernel's module directory (with modules.dep), e.g. /lib/modules/VERSION.
    #[arg(long, value_name = "DIR", requires = "module")]
    modules_dir: Option<PathBuf>,
    /// A module to include (with its dependencies); repeat for more.
    #[arg(long, value_name = "NAME")]
    module: Vec<String>,
    /// A static busybox, added as /bin/busybox with its applets, for debugging.
    #[arg(long, value_name = "FILE")]
    busybox: Option<PathBuf>,
    /// Make busybox's init PID 1 (/init), with an /etc/inittab that runs the
    /// agent next to it (`cvm-agent init --system`) and a shell on the console:
    /// for debugging only, never for an image owners should trust.
    #[arg(long, requires = "busybox")]
    busybox_init: bool,
    /// A directory copied over the archive's root; repeat for more (later ones win).
    #[arg(long, value_name = "DIR")]
    overlay: Vec<PathBuf>,
    /// The output file (gzip'd cpio).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print every entry (mode, size, path) on standard output.
    #[arg(long)]
    list: bool,
}

/// Busybox applets linked in /bin for a debugging shell.
const APPLETS: &[&str] = &[
    "cat", "dmesg", "echo", "free", "grep", "head", "ip", "kill", "less", "ls", "mkdir", "mount", "poweroff",
    "ps", "rm", "sh", "tail", "top", "umount", "uptime", "vi", "wc",
];

/// busybox init's table for `--busybox-init`: the file systems a shell needs,
/// the agent as a supervised service, a shell on the console, and Ctrl-Alt-Del
/// (the launcher's poweroff request) as a poweroff, whose SIGTERM to every
/// process stops the agent cleanly first.
const INITTAB: &str = "\
# busybox init as PID 1, cvm-agent next to it: for debugging only.
::sysinit:/bin/mount -t proc proc /proc
::sysinit:/bin/mount -t sysfs sysfs /sys
::sysinit:/bin/mount -t devtmpfs devtmpfs /dev
::once:/bin/cvm-agent init --system
::askfirst:-/bin/sh
::ctrlaltdel:/bin/poweroff
";

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("cvm-initramfs: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => {
            v.parse::<u32>().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?
        }
        Err(_) => 0,
    };
    let mut archive = Archive::new();
    for dir in ["dev", "etc", "proc", "run", "sys", "tmp"] {
        archive.add(dir, Entry::Dir { mode: 0o755 })?;
    }
    archive.add("tmp", Entry::Dir { mode: 0o1777 })?;
    // The kernel opens /dev/console for init before anything is mounted.
    archive.add("dev/console", Entry::CharDevice { mode: 0o600, major: 5, minor: 1 })?;
    archive.add("dev/null", Entry::CharDevice { mode: 0o666, major: 1, minor: 3 })?;
    archive.add("bin/cvm-agent", Entry::File { mode: 0o755, data: read(&args.agent)? })?;

    let mut load_list = String::from("# Kernel modules in load order, written by cvm-initramfs.\n");
    if let Some(dir) = &args.modules_dir {
        let db = ModuleDb::open(dir)?;
        let version = dir.file_name().and_then(|n| n.to_str()).context("the module directory has no name")?;
        for rel in db.resolve(&args.module)? {
            let path = format!("lib/modules/{version}/{rel}");
            archive.add_file_from(&path, &db.dir().join(&rel))?;
            // The modules it needs, in a comment: init skips a module whose
            // dependency found no device (hv_netvsc where there is no VMBus).
            let needs: Vec<String> =
                db.dependencies(&rel).iter().map(|d| format!("/lib/modules/{version}/{d}")).collect();
            if needs.is_empty() {
                load_list.push_str(&format!("/{path}\n"));
            } else {
                load_list.push_str(&format!("/{path}  # needs {}\n", needs.join(" ")));
            }
        }
    }
    archive.add("lib/modules/load.list", Entry::File { mode: 0o644, data: load_list.into_bytes() })?;

    if let Some(busybox) = &args.busybox {
        archive.add("bin/busybox", Entry::File { mode: 0o755, data: read(busybox)? })?;
        for applet in APPLETS {
            archive.add(&format!("bin/{applet}"), Entry::Symlink { target: "busybox".into() })?;
        }
    }
    if args.busybox_init {
        archive.add("init", Entry::Symlink { target: "bin/busybox".into() })?;
        archive.add("etc/inittab", Entry::File { mode: 0o644, data: INITTAB.as_bytes().to_vec() })?;
    } else {
        archive.add("init", Entry::Symlink { target: "bin/cvm-agent".into() })?;
    }
    for overlay in &args.overlay {
        archive.add_tree("", overlay).with_context(|| format!("overlay {}", overlay.display()))?;
    }

    let tmp = args.out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    archive.write_gzip(std::io::BufWriter::new(file), mtime)?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("cannot write {}", args.out.display()))?;

    if args.list {
        for (path, entry) in archive.entries() {
            let (kind, size) = match entry {
                Entry::Dir { mode } => (format!("d{mode:04o}"), 0),
                Entry::File { mode, data } => (format!("f{mode:04o}"), data.len()),
                Entry::Symlink { target } => (format!("l -> {target}"), 0),
                Entry::CharDevice { mode, major, minor } => (format!("c{mode:04o} {major}:{minor}"), 0),
            };
            println!("{kind:>10} {size:>9} /{path}");
        }
    }
    let bytes = read(&args.out)?;
    eprintln!(
        "cvm-initramfs: {} ({} bytes, {} entries, sha256 {})",
        args.out.display(),
        bytes.len(),
        archive.entries().count(),
        hex::encode(Sha256::digest(&bytes))
    );
    Ok(())
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
