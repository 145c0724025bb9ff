//! The image's source trees: the kernel configuration fragments
//! (`kernel-config/check` against a real kernel tree), the Buildroot external
//! tree (`buildroot-external/check`), and its board scripts. Each check passes
//! on the tree as committed and fails, naming the fault, on a broken copy.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[track_caller]
fn assert_ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "exit {:?}\nstdout:\n{out}\nstderr:\n{err}", o.status.code());
    out
}

/// Asserts a failure (exit code 1) and returns its stderr.
#[track_caller]
fn assert_fails(o: &Output) -> String {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    err
}

#[track_caller]
fn assert_names(stderr: &str, what: &str) {
    assert!(stderr.contains(what), "expected {what:?} in:\n{stderr}");
}

/// Copies a directory tree as it is (symlinks, modes).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(status.success(), "cp -a {} {}", from.display(), to.display());
}

/// The 1-based number of the line of `path` that is exactly `line`.
fn line_number(path: &Path, line: &str) -> usize {
    let text = fs::read_to_string(path).unwrap();
    text.lines().position(|l| l == line).unwrap_or_else(|| panic!("{} has no line {line:?}", path.display()))
        + 1
}

/// Replaces `old` (which must be there) by `new` in a file.
fn edit(path: &Path, old: &str, new: &str) {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.contains(old), "{} has no {old:?}", path.display());
    fs::write(path, text.replacen(old, new, 1)).unwrap();
}

mod kernel_config {
    use super::*;

    fn check(fragments: &[PathBuf]) -> Output {
        Command::new(repo().join("kernel-config/check"))
            .args(fragments)
            .output()
            .expect("run kernel-config/check")
    }

    /// A copy of the fragments in a temporary directory.
    fn copies() -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for name in ["hardening.config", "snp-guest.config"] {
            let path = dir.path().join(name);
            fs::copy(repo().join("kernel-config").join(name), &path).unwrap();
            paths.push(path);
        }
        (dir, paths)
    }

    #[test]
    fn check_passes_on_the_fragments() {
        let out = assert_ok(&check(&[]));
        assert!(out.contains("survived olddefconfig on linux"), "{out}");
        assert!(out.contains("hardening.config") && out.contains("snp-guest.config"), "{out}");
    }

    #[test]
    fn check_fails_when_amd_mem_encrypt_is_removed() {
        // SEV_GUEST depends on AMD_MEM_ENCRYPT: without that line, olddefconfig
        // quietly drops the SNP guest driver and configfs-tsm with it.
        let (_dir, paths) = copies();
        edit(&paths[1], "CONFIG_AMD_MEM_ENCRYPT=y\n", "");
        let err = assert_fails(&check(&paths));
        assert_names(&err, "CONFIG_SEV_GUEST: ");
        assert_names(&err, "wants y, olddefconfig gave not set (depends on AMD_MEM_ENCRYPT)");
        assert_names(&err, "CONFIG_TSM_REPORTS: ");
        assert_names(&err, "CONFIG_AMD_MEM_ENCRYPT: required y");
    }

    #[test]
    fn check_fails_when_a_disabled_option_is_forced_on() {
        // TSM_REPORTS selects CONFIGFS_FS: a fragment that turns it off is
        // overruled, and the check says so instead of believing the fragment.
        let (_dir, paths) = copies();
        edit(&paths[1], "CONFIG_CONFIGFS_FS=y\n", "# CONFIG_CONFIGFS_FS is not set\n");
        let err = assert_fails(&check(&paths));
        assert_names(&err, "CONFIG_CONFIGFS_FS: ");
        assert_names(&err, "wants not set, olddefconfig gave y (selected by ");
    }

    #[test]
    fn check_fails_on_an_option_the_kernel_does_not_know() {
        let (_dir, paths) = copies();
        let mut text = fs::read_to_string(&paths[0]).unwrap();
        text.push_str("\n# A misspelt option.\nCONFIG_INIT_ON_FREE_DEFAULT=y\n");
        fs::write(&paths[0], text).unwrap();
        let err = assert_fails(&check(&paths));
        assert_names(&err, "CONFIG_INIT_ON_FREE_DEFAULT: ");
        assert_names(&err, "no such option in linux");
    }

    #[test]
    fn check_rejects_malformed_and_unexplained_lines_before_any_kernel_work() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.config");
        fs::write(
            &path,
            "CONFIG_VSOCKETS=y\n\n# why\nCONFIG_SWAP = n\n# CONFIG_KEXEC is not  set\n# again\nCONFIG_VSOCKETS=y\n",
        )
        .unwrap();
        let err = assert_fails(&check(&[path]));
        assert_names(&err, "bad.config:1: CONFIG_VSOCKETS=y has no comment saying why");
        assert_names(&err, "bad.config:4: malformed: 'CONFIG_SWAP = n'");
        assert_names(&err, "bad.config:5: malformed: '# CONFIG_KEXEC is not  set'");
        assert_names(&err, "bad.config:7: CONFIG_VSOCKETS again (first at ");
        assert_names(&err, "4 problem(s) in the fragments");
    }
}

mod buildroot {
    use super::*;

    fn check(tree: &Path) -> Output {
        Command::new(tree.join("check"))
            .arg(tree)
            .env_remove("BUILDROOT")
            .output()
            .expect("run buildroot-external/check")
    }

    /// A copy of buildroot-external/ and the kernel-config/ it refers to.
    fn copy() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&repo().join("buildroot-external"), &dir.path().join("buildroot-external"));
        copy_tree(&repo().join("kernel-config"), &dir.path().join("kernel-config"));
        let tree = dir.path().join("buildroot-external");
        (dir, tree)
    }

    #[test]
    fn check_passes_on_the_tree() {
        let out = assert_ok(&check(&repo().join("buildroot-external")));
        assert!(out.contains("is sound (1 package(s))"), "{out}");
    }

    #[test]
    fn check_names_every_breakage_of_a_copy() {
        let (_dir, tree) = copy();
        assert_ok(&check(&tree)); // the intact copy passes: what fails below is the breakage

        edit(&tree.join("Config.in"), "source \"$BR2_EXTERNAL_CVM_PATH/package/cvm-agent/Config.in\"\n", "");
        fs::set_permissions(tree.join("board/cvm/post-build.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::rename(tree.join("board/cvm/rootfs-overlay"), tree.join("board/cvm/overlay")).unwrap();
        let fragment = tree.join("../kernel-config/hardening.config");
        let expert = line_number(&fragment, "CONFIG_EXPERT=y");
        edit(&fragment, "CONFIG_EXPERT=y\n", "CONFIG_EXPERT = y\n");
        let mk = tree.join("package/cvm-agent/cvm-agent.mk");
        let mut text = fs::read_to_string(&mk).unwrap();
        text.insert_str(text.find("$(eval").unwrap(), "CVM_AGNET_CARGO_ENV += FOO=1\n");
        fs::write(&mk, text).unwrap();
        fs::remove_file(tree.join("package/cvm-agent/cvm-agent.hash")).unwrap();
        edit(
            &tree.join("board/cvm/patches/linux/linux.hash"),
            "linux-6.12.104.tar.xz",
            "linux-6.12.103.tar.xz",
        );

        let err = assert_fails(&check(&tree));
        assert_names(&err, "package/cvm-agent/Config.in: is sourced 0 times by Config.in");
        assert_names(&err, "board/cvm/post-build.sh: is not executable");
        assert_names(
            &err,
            "BR2_ROOTFS_OVERLAY: $(BR2_EXTERNAL_CVM_PATH)/board/cvm/rootfs-overlay does not exist",
        );
        assert_names(
            &err,
            &format!("kernel-config/hardening.config: line {expert}: not a kernel config line: 'CONFIG_EXPERT = y'"),
        );
        assert_names(&err, "CVM_AGNET_CARGO_ENV is not named after the package (CVM_AGENT_...)");
        assert_names(&err, "package/cvm-agent/cvm-agent.hash: missing");
        assert_names(&err, "board/cvm/patches/linux/linux.hash: has no hash for linux-6.12.104.tar.xz");
        assert_names(&err, "FAILED: 7 problem(s)");
    }

    #[test]
    fn check_rejects_a_bad_name_and_bad_defconfig_lines() {
        let (_dir, tree) = copy();
        edit(&tree.join("external.desc"), "name: CVM", "name: CVM\nname: cvm-agent");
        let defconfig = tree.join("configs/cvm_defconfig");
        edit(&defconfig, "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n", "");
        edit(&defconfig, "BR2_INIT_NONE=y\n", "BR2_INIT_NONE=y\nBR2_INIT_NONE=y\nBR2_SYSTEM_BIN_SH_NONE\n");
        let again = line_number(&defconfig, "BR2_INIT_NONE=y") + 1;
        let err = assert_fails(&check(&tree));
        assert_names(&err, "external.desc: line 2: a second name");
        assert_names(&err, &format!("configs/cvm_defconfig: line {again}: BR2_INIT_NONE again"));
        assert_names(
            &err,
            &format!("configs/cvm_defconfig: line {}: malformed: 'BR2_SYSTEM_BIN_SH_NONE'", again + 1),
        );
        assert_names(&err, "configs/cvm_defconfig: does not set BR2_DOWNLOAD_FORCE_CHECK_HASHES=y");
    }

    /// The full check: Buildroot's check-package, the defconfig loaded by
    /// Buildroot's kconfig, and its variables. Needs a Buildroot checkout,
    /// which CI cannot download.
    #[test]
    #[ignore = "needs a Buildroot checkout: BUILDROOT=DIR cargo test -p cvm-tests --test image_trees -- --ignored"]
    fn full_check_passes_against_a_buildroot_checkout() {
        let buildroot = std::env::var("BUILDROOT").expect("BUILDROOT=DIR");
        let tree = repo().join("buildroot-external");
        let out = Command::new(tree.join("check")).env("BUILDROOT", &buildroot).output().unwrap();
        let out = assert_ok(&out);
        assert!(out.contains("check-package, defconfig loading and printvars pass with Buildroot"), "{out}");

        // And kconfig's silent drop is caught: a static-only toolchain makes
        // the agent's tpm2-tss impossible, so kconfig drops the agent.
        let (_dir, copy) = copy();
        edit(&copy.join("configs/cvm_defconfig"), "BR2_SHARED_STATIC_LIBS=y", "BR2_STATIC_LIBS=y");
        let out = Command::new(copy.join("check")).arg(&copy).env("BUILDROOT", &buildroot).output().unwrap();
        let err = assert_fails(&out);
        assert_names(&err, "kconfig dropped 'BR2_PACKAGE_CVM_AGENT=y'");

        // Without the package's own guard, its `select` of tpm2-tss overrides
        // tpm2-tss's dependency: kconfig only warns, and the check fails on it.
        edit(&copy.join("package/cvm-agent/Config.in"), "\tdepends on !BR2_STATIC_LIBS # tpm2-tss\n", "");
        let out = Command::new(copy.join("check")).arg(&copy).env("BUILDROOT", &buildroot).output().unwrap();
        let err = assert_fails(&out);
        assert_names(&err, "kconfig: WARNING: unmet direct dependencies detected for BR2_PACKAGE_TPM2_TSS");
    }
}

/// The pinned release tarball: `scripts/release-tarball` rebuilds, twice, the
/// very file whose hash `cvm-agent.hash` pins. Opt-in: it vendors every crate
/// of Cargo.lock (network on a fresh machine, about a minute), and the bytes
/// depend on `cargo vendor`'s output, so on the cargo version.
#[test]
#[ignore = "vendors every crate: cargo test -p cvm-tests --test image_trees -- --ignored release_tarball"]
fn release_tarball_is_reproducible_and_is_the_pinned_one() {
    let hash_file =
        fs::read_to_string(repo().join("buildroot-external/package/cvm-agent/cvm-agent.hash")).unwrap();
    let commit = hash_file
        .split_whitespace()
        .find(|w| w.len() == 41 && w.ends_with('`'))
        .map(|w| w.trim_end_matches('`'))
        .expect("cvm-agent.hash names the commit");
    let pinned = hash_file.lines().find(|l| l.starts_with("sha256 ")).expect("a sha256 line");
    let name = pinned.split_whitespace().last().unwrap();
    let mut digests = Vec::new();
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let o = Command::new(repo().join("scripts/release-tarball"))
            .arg(commit)
            .arg(out.path())
            .output()
            .unwrap();
        let path = assert_ok(&o);
        let bytes = fs::read(path.trim()).unwrap();
        assert!(path.trim().ends_with(&format!("/{name}")), "{path} is not {name}");
        let line = format!("sha256  {}  {name}", hex::encode(Sha256::digest(&bytes)));
        assert!(text(&o).1.contains(&line), "release-tarball printed another line than {line:?}");
        digests.push(line);
    }
    assert_eq!(digests[0], digests[1], "two builds differ");
    assert_eq!(digests[0], pinned, "the tarball is not the pinned one");
}

mod board_scripts {
    use super::*;

    fn board() -> PathBuf {
        repo().join("buildroot-external/board/cvm")
    }

    /// A target directory as Buildroot leaves it: the agent in /usr/bin and
    /// the overlay's /init.
    fn target_with_agent(agent: &Path) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/bin")).unwrap();
        fs::copy(agent, dir.path().join("usr/bin/cvm-agent")).unwrap();
        std::os::unix::fs::symlink("usr/bin/cvm-agent", dir.path().join("init")).unwrap();
        dir
    }

    fn post_build(target: &Path) -> Output {
        Command::new(board().join("post-build.sh")).arg(target).output().unwrap()
    }

    #[test]
    fn post_build_accepts_a_static_agent_and_refuses_a_dynamic_one() {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("main.c");
        fs::write(&source, "int main(void) { return 0; }\n").unwrap();
        let static_bin = work.path().join("static");
        let status =
            Command::new("cc").arg("-static").arg("-o").arg(&static_bin).arg(&source).status().unwrap();
        assert!(status.success(), "cc -static");

        let good = target_with_agent(&static_bin);
        assert_ok(&post_build(good.path()));
        for dir in ["dev", "proc", "sys", "run", "tmp"] {
            assert!(good.path().join(dir).is_dir(), "post-build made no /{dir}");
        }

        let dynamic_bin = work.path().join("dynamic");
        let status = Command::new("cc").arg("-o").arg(&dynamic_bin).arg(&source).status().unwrap();
        assert!(status.success(), "cc");
        let dynamic = target_with_agent(&dynamic_bin);
        assert_names(&assert_fails(&post_build(dynamic.path())), "is dynamically linked");

        fs::remove_file(good.path().join("init")).unwrap();
        assert_names(
            &assert_fails(&post_build(good.path())),
            "/init is not the symlink to usr/bin/cvm-agent",
        );
    }

    /// Runs post-image.sh on fake images, then the start script it wrote with
    /// a `qemu-system-x86_64` on PATH that prints its arguments.
    #[test]
    fn post_image_writes_a_start_script_that_boots_the_images_with_loopback_only_forwarding() {
        let images = tempfile::tempdir().unwrap();
        fs::write(images.path().join("bzImage"), b"kernel").unwrap();
        fs::write(images.path().join("rootfs.cpio.gz"), b"initramfs").unwrap();
        let target = tempfile::tempdir().unwrap();
        fs::create_dir_all(target.path().join("etc/cvm-agent")).unwrap();
        fs::write(target.path().join("etc/cvm-agent/manifest.json"), b"{}").unwrap();

        let out = Command::new(board().join("post-image.sh"))
            .arg(images.path())
            .env("TARGET_DIR", target.path())
            .output()
            .unwrap();
        let out = assert_ok(&out);
        // The digests owners pin, as sha256sum prints them.
        for (name, content) in [("bzImage", &b"kernel"[..]), ("rootfs.cpio.gz", b"initramfs")] {
            let line = format!("{}  {name}", hex::encode(Sha256::digest(content)));
            assert!(out.contains(&line), "{line:?} not in:\n{out}");
        }
        let script = images.path().join("start-qemu.sh");
        assert!(
            fs::metadata(&script).unwrap().permissions().mode() & 0o111 != 0,
            "start-qemu.sh is not executable"
        );

        let bin = tempfile::tempdir().unwrap();
        let qemu = bin.path().join("qemu-system-x86_64");
        fs::write(&qemu, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n").unwrap();
        fs::set_permissions(&qemu, fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap());
        let run = |envs: &[(&str, &str)]| {
            let mut cmd = Command::new(&script);
            cmd.arg("-extra").env("PATH", &path).env_remove("CVM_OVMF");
            for (k, v) in envs {
                cmd.env(k, v);
            }
            assert_ok(&cmd.output().unwrap())
        };

        let args = run(&[("CVM_PORT", "7444")]);
        let dir = images.path().canonicalize().unwrap();
        for want in [
            format!("-kernel\n{}/bzImage\n", dir.display()),
            format!("-initrd\n{}/rootfs.cpio.gz\n", dir.display()),
            "console=ttyS0 panic=-1 cvm.net=eth0=10.0.2.15/24 cvm.manifest=/etc/cvm-agent/manifest.json"
                .to_string(),
            "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:7444-:7002\n".to_string(),
            "-device\nvirtio-rng-pci\n".to_string(),
            "-accel\ntcg\n".to_string(),
            "-extra\n".to_string(),
        ] {
            assert!(args.contains(&want), "{want:?} not in:\n{args}");
        }
        assert!(!args.contains("sev-snp-guest"), "{args}");

        let args = run(&[("CVM_OVMF", "/ovmf.fd")]);
        for want in ["-bios\n/ovmf.fd\n", "sev-snp-guest,id=sev0", "kernel-hashes=on", "-accel\nkvm\n"] {
            assert!(args.contains(want), "{want:?} not in:\n{args}");
        }
    }

    #[test]
    fn post_image_refuses_missing_images() {
        let images = tempfile::tempdir().unwrap();
        fs::write(images.path().join("bzImage"), b"kernel").unwrap();
        let out = Command::new(board().join("post-image.sh")).arg(images.path()).output().unwrap();
        assert_names(&assert_fails(&out), "rootfs.cpio.gz is missing");
    }
}
