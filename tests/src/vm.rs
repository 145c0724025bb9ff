//! Fixtures for the VM tests: the image (`scripts/build-image`), the static
//! demo algorithm, the launcher (`scripts/launch-vm`) as a child process.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The VM image, built once per test process.
#[derive(Debug, Clone)]
pub struct Image {
    /// The kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The static agent.
    pub agent: PathBuf,
    /// Every `key=value` that build-image printed.
    pub values: BTreeMap<String, String>,
}

/// The tests' image: QEMU has no SEV-SNP, so its agent is built with the
/// simulated TEE (`scripts/build-image --simulated-tee`), built once.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| build_image(&["--simulated-tee"]))
}

/// The debugging image (`scripts/build-image --busybox`): busybox init as
/// PID 1, the agent next to it (built once, after [`image`]).
pub fn busybox_image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        image();
        build_image(&["--simulated-tee", "--busybox"])
    })
}

fn build_image(args: &[&str]) -> Image {
    let o = Command::new(root().join("scripts/build-image"))
        .args(args)
        .output()
        .expect("run scripts/build-image");
    assert!(o.status.success(), "build-image failed: {}", String::from_utf8_lossy(&o.stderr));
    let values: BTreeMap<String, String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    let get = |k: &str| PathBuf::from(values.get(k).unwrap_or_else(|| panic!("build-image printed no {k}")));
    Image { kernel: get("kernel"), initrd: get("initrd"), agent: get("agent"), values }
}

/// The VM as a UEFI disk image (`scripts/build-disk-image`).
#[derive(Debug, Clone)]
pub struct DiskImage {
    /// The output directory (uki.efi, disk.raw, disk.vhd, disk.tar.gz, SHA256SUMS).
    pub dir: PathBuf,
    /// Every `key=value` that build-disk-image printed.
    pub values: BTreeMap<String, String>,
}

impl DiskImage {
    /// An output file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The command line the VM tests' disk image adds to the default one: the
/// demo's sealed model on the operator's first disk.
pub const DISK_IMAGE_EXTRA_APPEND: &str = "cvm.host_artifacts=model.json=/dev/vda";

/// Builds the disk image of [`image`]'s kernel and initramfs (the agent with
/// the simulated TEE, for QEMU) into `out` with [`DISK_IMAGE_EXTRA_APPEND`].
pub fn build_disk_image(out: &Path) -> DiskImage {
    let image = image();
    let o = Command::new(root().join("scripts/build-disk-image"))
        .arg("--simulated-tee")
        .arg("--out")
        .arg(out)
        .arg("--kernel")
        .arg(&image.kernel)
        .arg("--initrd")
        .arg(&image.initrd)
        .arg("--extra-append")
        .arg(DISK_IMAGE_EXTRA_APPEND)
        .output()
        .expect("run scripts/build-disk-image");
    assert!(o.status.success(), "build-disk-image failed: {}", String::from_utf8_lossy(&o.stderr));
    let values = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    DiskImage { dir: out.to_path_buf(), values }
}

/// The VM tests' disk image, built once per test process into target/vm/disk.
pub fn disk_image() -> &'static DiskImage {
    static DISK: OnceLock<DiskImage> = OnceLock::new();
    DISK.get_or_init(|| build_disk_image(&root().join("target/vm/disk")))
}

/// The demo's algorithm as a static binary (built once).
pub fn static_stats() -> &'static PathBuf {
    static STATS: OnceLock<PathBuf> = OnceLock::new();
    STATS.get_or_init(|| static_example("cvm-example-stats", "stats"))
}

/// The hostile algorithm of the sandbox's tests as a static binary (built once).
pub fn static_hostile() -> &'static PathBuf {
    static HOSTILE: OnceLock<PathBuf> = OnceLock::new();
    HOSTILE.get_or_init(|| static_example("cvm-example-hostile", "hostile"))
}

/// Builds an example's binary statically: it runs in a sandbox that shows
/// no library of the image.
fn static_example(package: &str, bin: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-q", "--release", "--target", "x86_64-unknown-linux-gnu"])
        .args(["-p", package])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(root())
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the static {bin} failed");
    root().join("target/x86_64-unknown-linux-gnu/release").join(bin)
}

/// The cache of scripts/setup-vm (vhost-device-vsock, the sev-snp-measure virtualenv, kernels).
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CVM_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
    });
    base.join("cvm-agent")
}

/// The OVMF file the launcher measures with.
pub fn ovmf() -> PathBuf {
    root().join("tests/fixtures/measure/ovmf_AmdSev_suffix.bin")
}

/// A running `scripts/launch-vm`.
pub struct Vm {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The launcher's directory (console.log, measurement, platform/).
    pub dir: PathBuf,
}

impl Vm {
    /// Starts the launcher with `manifest` and the operator's `disks` (artifact name, file),
    /// and waits until the agent serves (or fails).
    pub fn launch(manifest: &Path, dir: &Path, disks: &[(&str, &Path)]) -> Vm {
        Vm::launch_image(image(), manifest, dir, disks)
    }

    /// [`Vm::launch`] with another image.
    pub fn launch_image(image: &Image, manifest: &Path, dir: &Path, disks: &[(&str, &Path)]) -> Vm {
        let boot = [
            OsStr::new("--kernel"),
            image.kernel.as_os_str(),
            OsStr::new("--initrd"),
            image.initrd.as_os_str(),
        ];
        Vm::start(&boot, manifest, dir, disks)
    }

    /// Boots the disk image's `disk.raw` under UEFI firmware (`launch-vm --disk-image`).
    pub fn launch_disk(disk: &DiskImage, manifest: &Path, dir: &Path, disks: &[(&str, &Path)]) -> Vm {
        let raw = disk.file("disk.raw");
        Vm::start(&[OsStr::new("--disk-image"), raw.as_os_str()], manifest, dir, disks)
    }

    fn start(boot: &[&OsStr], manifest: &Path, dir: &Path, disks: &[(&str, &Path)]) -> Vm {
        let mut launcher = Command::new(root().join("scripts/launch-vm"));
        for (name, file) in disks {
            launcher.arg("--disk").arg(format!("{name}={}", file.display()));
        }
        let mut child = launcher
            .arg("--manifest")
            .arg(manifest)
            .arg("--dir")
            .arg(dir)
            .args(boot)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run scripts/launch-vm");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let vm = Vm { child, lines, dir: dir.to_path_buf() };
        Vm::wait_ready(vm, Instant::now() + Duration::from_secs(300))
    }

    fn wait_ready(mut vm: Vm, end: Instant) -> Vm {
        loop {
            if vm.value("ready").is_some() {
                return vm;
            }
            if let Ok(Some(status)) = vm.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("the launcher exited ({status}) before the agent was ready:\n{}", vm.console());
            }
            assert!(Instant::now() < end, "the agent was not ready within 300 s:\n{}", vm.console());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of a `launch-vm: KEY VALUE` line, if printed yet.
    pub fn value(&self, key: &str) -> Option<String> {
        let prefix = format!("launch-vm: {key} ");
        self.lines.lock().expect("lock").iter().find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }

    /// The guest's console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Asks for a clean poweroff and waits for the launcher; returns whether it
    /// exited 0 (a clean poweroff) and its last line.
    pub fn power_off(mut self, within: Duration) -> (bool, String) {
        let status = Command::new(root().join("scripts/launch-vm"))
            .arg("--poweroff")
            .arg(&self.dir)
            .status()
            .expect("launch-vm --poweroff");
        assert!(status.success(), "launch-vm --poweroff failed");
        let end = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                let last = self.lines.lock().expect("lock").last().cloned().unwrap_or_default();
                return (status.success(), last);
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                return (false, format!("no poweroff within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // The launcher stops QEMU, swtpm and the vsock backend on SIGTERM.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
    }
}
