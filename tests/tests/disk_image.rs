//! The VM as a UEFI disk image: reproducible in every format the clouds
//! import, its UKI's measurements predicted by `cvmctl measure --uki` (and
//! by systemd-measure), and the whole flow booted from it under OVMF with
//! swtpm, where the owners pin the image through the vTPM. One VM boot.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cvm_tests::vm::{self, Vm};
use cvm_tests::{cvmctl, ok, owner, seal, sealing_key, sha256_file};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e} (scripts/setup-vm)"))
}

fn json_line(text: &str, kind: &str) -> serde_json::Value {
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} line in {text}"))["data"]
        .clone()
}

/// Writes the UKI's `section` into `out` (objcopy needs an output image too:
/// it goes next to `out`, and is removed).
fn dump_section(uki: &Path, section: &str, out: &Path) {
    let scratch = out.with_extension("objcopy-out");
    ok(
        &run(
            "objcopy",
            &[
                "--dump-section",
                &format!("{section}={}", out.display()),
                uki.to_str().unwrap(),
                scratch.to_str().unwrap(),
            ],
        ),
        "objcopy --dump-section",
    );
    let _ = std::fs::remove_file(scratch);
}

/// `cvmctl measure --uki FILE --json`'s data.
fn measure_uki(uki: &Path) -> serde_json::Value {
    json_line(&ok(&cvmctl(&["measure", "--uki", uki.to_str().unwrap(), "--json"]), "measure --uki"), "uki")
}

/// A copy of `uki` with one byte of its `.cmdline` changed (the same length).
fn with_changed_cmdline(uki: &Path, dir: &Path) -> std::path::PathBuf {
    let cmdline = dir.join("cmdline");
    dump_section(uki, ".cmdline", &cmdline);
    let mut bytes = std::fs::read(&cmdline).unwrap();
    let at = bytes.windows(7).position(|w| w == b"ttyS0 l").unwrap() + 4;
    bytes[at] = b'1'; // console=ttyS1
    std::fs::write(&cmdline, &bytes).unwrap();
    let other = dir.join("other.efi");
    ok(
        &run(
            "objcopy",
            &[
                "--update-section",
                &format!(".cmdline={}", cmdline.display()),
                uki.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        ),
        "objcopy --update-section",
    );
    other
}

#[test]
fn disk_image_built_twice_is_bit_for_bit_identical_and_each_format_is_accepted() {
    let a = vm::disk_image();
    let dir = tempfile::tempdir().unwrap();
    let b = vm::build_disk_image(dir.path());
    let sums = std::fs::read_to_string(a.file("SHA256SUMS")).unwrap();
    assert_eq!(sums, std::fs::read_to_string(b.file("SHA256SUMS")).unwrap(), "two builds differ");
    for line in sums.lines() {
        let (sum, name) = line.split_once("  ").unwrap();
        assert_eq!(sha256_file(&a.file(name)), sum, "{name}: SHA256SUMS is not its digest");
    }
    for name in ["uki.efi", "disk.raw", "disk.vhd", "disk.tar.gz"] {
        assert!(sums.contains(&format!("  {name}\n")), "{name} missing from {sums}");
    }
    assert_eq!(a.values["raw_sha256"], sha256_file(&a.file("disk.raw")));

    // qemu-img reads the raw disk and the fixed VHD (a footer only: the
    // format must be named), and they hold the same sectors.
    let info = |format: &str, file: &str| -> serde_json::Value {
        let path = a.file(file);
        serde_json::from_str(&ok(
            &run("qemu-img", &["info", "--output=json", "-f", format, path.to_str().unwrap()]),
            "qemu-img info",
        ))
        .unwrap()
    };
    let raw = info("raw", "disk.raw");
    assert_eq!((raw["format"].as_str(), raw["virtual-size"].as_u64()), (Some("raw"), Some(1 << 30)));
    let vhd = info("vpc", "disk.vhd");
    assert_eq!((vhd["format"].as_str(), vhd["virtual-size"].as_u64()), (Some("vpc"), Some(1 << 30)));
    let raw_path = a.file("disk.raw");
    let vhd_path = a.file("disk.vhd");
    let same = run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "vpc", raw_path.to_str().unwrap(), vhd_path.to_str().unwrap()],
    );
    assert!(ok(&same, "qemu-img compare").contains("Images are identical"));
    let footer = std::fs::read(&vhd_path).unwrap();
    assert_eq!(&footer[footer.len() - 512..footer.len() - 504], b"conectix");

    // GCP's archive: one member, disk.raw, in GNU's oldgnu format, which
    // unpacks to the raw disk.
    let tar = a.file("disk.tar.gz");
    let listing = ok(&run("tar", &["-tvzf", tar.to_str().unwrap()]), "tar -t");
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.contains(" 1073741824 ") && listing.trim_end().ends_with(" disk.raw"), "{listing}");
    let header = ok(
        &run("sh", &["-c", &format!("gzip -dc {} | head -c 512 | tail -c 255 | head -c 8", tar.display())]),
        "tar header",
    );
    assert_eq!(header, "ustar  \0", "not an oldgnu header");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    ok(&run("tar", &["-xSzf", tar.to_str().unwrap(), "-C", unpacked.to_str().unwrap()]), "tar -x");
    assert_eq!(sha256_file(&unpacked.join("disk.raw")), a.values["raw_sha256"]);

    // The disk: GPT, one EFI system partition at 1 MiB holding only the UKI.
    let table: serde_json::Value =
        serde_json::from_str(&ok(&run("sfdisk", &["--json", raw_path.to_str().unwrap()]), "sfdisk")).unwrap();
    let table = &table["partitiontable"];
    assert_eq!(table["label"], "gpt");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table}");
    assert_eq!(parts[0]["type"].as_str().unwrap().to_uppercase(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!((parts[0]["start"].as_u64(), parts[0]["size"].as_u64()), (Some(2048), Some(131072)));
    let esp = format!("{}@@1M", raw_path.display());
    let files = ok(&run("mdir", &["-/", "-b", "-i", &esp, "::"]), "mdir");
    let files: Vec<&str> = files.lines().filter(|l| !l.ends_with('/')).collect();
    assert_eq!(files, ["::/EFI/BOOT/BOOTX64.EFI"]);
    let boot = dir.path().join("BOOTX64.EFI");
    ok(&run("mcopy", &["-n", "-i", &esp, "::EFI/BOOT/BOOTX64.EFI", boot.to_str().unwrap()]), "mcopy");
    assert_eq!(sha256_file(&boot), a.values["uki_sha256"]);
    let fat = dir.path().join("esp.img");
    ok(
        &run(
            "dd",
            &[
                &format!("if={}", raw_path.display()),
                &format!("of={}", fat.display()),
                "bs=1M",
                "skip=1",
                "count=64",
                "status=none",
            ],
        ),
        "dd",
    );
    ok(&run("fsck.fat", &["-n", fat.to_str().unwrap()]), "fsck.fat");

    // The UKI: Debian's stub with the image's kernel, initramfs and command line.
    let image = vm::image();
    let uki = a.file("uki.efi");
    for (section, file) in [(".linux", &image.kernel), (".initrd", &image.initrd)] {
        let out = dir.path().join(section.trim_start_matches('.'));
        dump_section(&uki, section, &out);
        assert_eq!(sha256_file(&out), sha256_file(file), "{section}");
    }
    let m = measure_uki(&uki);
    let cmdline = m["cmdline"].as_str().unwrap();
    assert!(cmdline.ends_with(&format!(" {}", vm::DISK_IMAGE_EXTRA_APPEND)), "{cmdline}");
    assert!(cmdline.starts_with("console=ttyS0 ") && cmdline.contains(" cvm.tee=simulated "), "{cmdline}");
    let stub = run("objdump", &["-h", uki.to_str().unwrap()]);
    assert!(ok(&stub, "objdump").contains(".sdmagic"), "not systemd's stub");
}

/// systemd-measure (Debian's systemd 252) on a UKI's sections, as files.
fn systemd_measure(uki: &Path, dir: &Path) -> String {
    let mut args = vec!["calculate".to_owned(), "--bank=sha256".to_owned(), "--phase=".to_owned()];
    for section in ["linux", "initrd", "cmdline", "osrel"] {
        let file = dir.join(section);
        dump_section(uki, &format!(".{section}"), &file);
        args.push(format!("--{section}={}", file.display()));
    }
    let o = Command::new("/usr/lib/systemd/systemd-measure")
        .args(&args)
        .output()
        .expect("systemd-measure (Debian's systemd)");
    let out = ok(&o, "systemd-measure");
    // "11:sha256=HEX"
    out.trim()
        .strip_prefix("11:sha256=")
        .unwrap_or_else(|| panic!("systemd-measure printed {out:?}"))
        .to_owned()
}

#[test]
fn cvmctl_measure_uki_agrees_with_systemd_measure_on_pcr_11() {
    let uki = vm::disk_image().file("uki.efi");
    let dir = tempfile::tempdir().unwrap();
    let ours = measure_uki(&uki);
    let pcr11 = ours["pcr11_sha256"].as_str().unwrap().to_owned();
    assert_eq!(pcr11, systemd_measure(&uki, dir.path()));

    // One changed byte of the command line: both tools move, and agree again;
    // the UKI's PCR 4 digest and PCR 9 move too, the kernel's does not.
    let other = with_changed_cmdline(&uki, dir.path());
    let theirs = measure_uki(&other);
    let sections = dir.path().join("other");
    std::fs::create_dir(&sections).unwrap();
    assert_eq!(theirs["pcr11_sha256"].as_str().unwrap(), systemd_measure(&other, &sections));
    assert_ne!(theirs["pcr11_sha256"], ours["pcr11_sha256"]);
    assert_ne!(theirs["pcr9_sha256"], ours["pcr9_sha256"]);
    assert_ne!(theirs["authenticode_sha256"], ours["authenticode_sha256"]);
    assert_eq!(theirs["kernel_authenticode_sha256"], ours["kernel_authenticode_sha256"]);
    assert!(theirs["cmdline"].as_str().unwrap().starts_with("console=ttyS1 "));

    // The policy rules it prints parse as a policy.
    let policy = ours["policy"].to_string();
    let parsed = cvm_evidence::Policy::from_json(&policy).unwrap();
    assert_eq!(parsed.tpm_pcrs[&11][0].to_string(), pcr11);
    assert_eq!(parsed.tpm_events[0].pcr, 4);

    // What is not a UKI is named.
    let o = cvmctl(&["measure", "--uki", vm::image().initrd.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(cvmctl::exit_codes::USAGE));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("DOS signature"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const MODEL: &str = "{\"intercept\": -2.0, \"per_year\": 0.05, \"threshold\": 0.5}\n";

#[test]
fn the_flow_runs_from_the_disk_image_and_the_owners_pin_it_through_the_vtpm() {
    let disk = vm::disk_image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    std::fs::copy(vm::static_stats(), d.join("stats")).unwrap();
    for f in ["hospital-a.csv", "hospital-b.csv"] {
        std::fs::copy(cvm_tests::example(f), d.join(f)).unwrap();
    }
    let alg = owner(d, "alg", "p256");
    let a = owner(d, "a", "ed25519");
    std::fs::write(d.join("model.json"), MODEL).unwrap();
    let model_key = sealing_key(d, "model.key");
    let sealed = seal(&model_key, &d.join("model.json"), &d.join("model-disk.img"));
    let model_disk = std::fs::OpenOptions::new().write(true).open(d.join("model-disk.img")).unwrap();
    let len = model_disk.metadata().unwrap().len();
    model_disk.set_len(len.div_ceil(512) * 512).unwrap();
    let manifest = serde_json::json!({
        "id": "mean-age-disk", "name": "Mean age, booted from the disk image",
        "algorithm": {"digest": format!("sha256:{}", sha256_file(&d.join("stats"))), "provider_key": alg.public,
                      "kind": "binary", "args": ["--column", "age"]},
        "datasets": [
            {"name": "hospital-a.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-a.csv"))), "provider_key": a.public},
            {"name": "hospital-b.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-b.csv"))), "provider_key": a.public}
        ],
        "artifacts": [{"name": "model.json", "sealed": sealed, "source": "host-path", "provider_key": alg.public}],
        "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 16 << 20, "run_timeout_s": 60, "memory_bytes": 256 << 20}
    });
    std::fs::write(d.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let digest =
        ok(&cvmctl(&["manifest", "digest", &p("manifest.json")]), "manifest digest").trim().to_owned();

    let vm = Vm::launch_disk(
        disk,
        &d.join("manifest.json"),
        &d.join("vm"),
        &[("model.json", &d.join("model-disk.img"))],
    );
    let addr = vm.value("agent").unwrap();
    // The launcher booted the disk's own UKI, with its command line.
    let booted = std::path::PathBuf::from(vm.value("uki").unwrap());
    assert_eq!(sha256_file(&booted), disk.values["uki_sha256"]);
    let uki = measure_uki(&disk.file("uki.efi"));
    assert_eq!(vm.value("append").unwrap(), uki["cmdline"].as_str().unwrap());

    // The owners: the SNP measurement of the firmware alone (as on a cloud),
    // and the UKI's measurements, both from the files they built.
    let ovmf = vm::ovmf().display().to_string();
    let firmware = ok(
        &cvmctl(&["measure", "--ovmf", &ovmf, "--firmware-only", "--vcpus", "1", "--vcpu-type", "EPYC-v4"]),
        "measure --firmware-only",
    )
    .trim()
    .to_owned();
    assert_eq!(firmware, vm.value("measurement").unwrap(), "the simulated platform measured something else");
    let mut policy = uki["policy"].clone();
    policy["measurements"] = serde_json::json!([firmware]);
    policy["vmpl"] = serde_json::json!(0);
    policy["signing_keys"] = serde_json::json!(["vcek"]);
    policy["require_vtpm"] = serde_json::json!(true);
    std::fs::write(d.join("policy.json"), policy.to_string()).unwrap();
    let ark = d.join("vm/platform/ark.pem").display().to_string();
    let agent_args = |policy: &str| -> Vec<String> {
        ["--agent", &addr, "--manifest-digest", &digest, "--policy", policy, "--trust-ark", &ark]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let cmd = |name: &str, policy: &str, extra: &[&str]| {
        let mut args = vec![name.to_owned()];
        args.extend(agent_args(policy));
        args.extend(extra.iter().map(|s| s.to_string()));
        cvmctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // The guest's quote and firmware log show what `measure --uki` predicted.
    let out = ok(&cmd("attest", &p("policy.json"), &["--json"]), "attest");
    let check = |name: &str| -> serde_json::Value {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["type"] == "check" && v["data"]["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}:\n{out}"))["data"]
            .clone()
    };
    for name in [
        "measured_boot",
        "boot_quote_signature",
        "boot_quote_nonce",
        "boot_quote_pcrs",
        "firmware_log_format",
        "firmware_log_replay",
        "boot_quote_event_replay",
        "tpm_pcr_9",
        "tpm_pcr_11",
        "tpm_pcr_12",
        "tpm_pcr_13",
        "tpm_event_pcr_4",
        "measurement",
        "vtpm_event_replay",
    ] {
        assert_eq!(check(name)["status"], "passed", "{name}: {}", check(name));
    }
    assert_eq!(check("tpm_pcr_11")["found"], uki["pcr11_sha256"]);
    assert_eq!(check("tpm_pcr_9")["found"], uki["pcr9_sha256"]);
    let apps = format!(
        "[{}, {}]",
        uki["authenticode_sha256"].as_str().unwrap(),
        uki["kernel_authenticode_sha256"].as_str().unwrap()
    );
    assert_eq!(check("tpm_event_pcr_4")["found"], apps);
    let events = ok(&cmd("attest", &p("policy.json"), &["--events"]), "attest --events");
    let app_line = events
        .lines()
        .find(|l| {
            l.contains("EV_EFI_BOOT_SERVICES_APPLICATION")
                && l.contains(uki["authenticode_sha256"].as_str().unwrap())
        })
        .unwrap_or_else(|| panic!("the UKI's PCR 4 event is not in the log:\n{events}"));
    assert!(app_line.contains("PCR  4"), "{app_line}");
    assert!(
        events.contains(&format!(
            "11  {}  reproduced by the firmware's log",
            uki["pcr11_sha256"].as_str().unwrap()
        )),
        "{events}"
    );
    assert!(
        events.contains("measured boot   PCRs 0,1,2,3,4,5,6,7,8,9,11,12,13,14,15 quoted over your nonce"),
        "{events}"
    );

    // The same policy, made from a UKI with one changed byte of its command
    // line, does not accept this VM, and names the checks.
    let other = with_changed_cmdline(&disk.file("uki.efi"), d);
    let mut other_policy = measure_uki(&other)["policy"].clone();
    for key in ["measurements", "vmpl", "signing_keys", "require_vtpm"] {
        other_policy[key] = policy[key].clone();
    }
    std::fs::write(d.join("other-policy.json"), other_policy.to_string()).unwrap();
    let o =
        cmd("upload-algorithm", &p("other-policy.json"), &["--key", alg.key.to_str().unwrap(), &p("stats")]);
    assert_eq!(o.status.code(), Some(cvmctl::exit_codes::REJECTED), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    for name in ["tpm_pcr_9", "tpm_pcr_11", "tpm_event_pcr_4"] {
        assert!(stderr.contains(&format!("rejected: {name}: expected")), "{name}: {stderr}");
    }
    assert!(!stderr.contains("rejected: measurement"), "{stderr}");

    // The flow: uploads, the sealed model from the operator's disk, the run, the results.
    let with_key = |name: &str, key: &cvm_tests::Owner, extra: &[&str]| {
        let mut args = vec!["--key", key.key.to_str().unwrap()];
        args.extend_from_slice(extra);
        cmd(name, &p("policy.json"), &args)
    };
    ok(&with_key("upload-algorithm", &alg, &[&p("stats")]), "upload-algorithm");
    ok(&with_key("upload-dataset", &a, &["hospital-a.csv", &p("hospital-a.csv")]), "upload-dataset a");
    ok(&with_key("upload-dataset", &a, &["hospital-b.csv", &p("hospital-b.csv")]), "upload-dataset b");
    ok(
        &with_key("release-key", &alg, &["--artifact", "model.json", "--key-file", &p("model.key")]),
        "release-key",
    );
    let status = ok(&with_key("status", &alg, &["--wait", "120", "--json"]), "status");
    assert!(status.contains("\"results_ready\""), "{status}\n{}", vm.console());
    ok(&with_key("results", &alg, &["--out", &p("results.tar")]), "results");
    let o = Command::new("tar").args(["-xOf", &p("results.tar"), "results/summary.json"]).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["count"], 7);
    assert_eq!(summary["model"]["over_threshold"], 4, "{summary}");

    let console = vm.console();
    for line in [
        "init: started as PID 1",
        // The clouds' drivers: no VMBus under QEMU, and nothing that needs it is tried.
        "init: module hv_vmbus.ko.xz: no such device here",
        "init: module hv_netvsc.ko.xz: skipped, it needs hv_vmbus.ko.xz (no such device here)",
        "init: module hv_storvsc.ko.xz: skipped, it needs hv_vmbus.ko.xz (no such device here)",
        "vTPM: the firmware's event log is",
        "the SIMULATED SNP provider is in use",
        "released by its owner; reading /dev/vda",
        "every result consumer fetched the results",
    ] {
        assert!(console.contains(line), "the console lacks {line:?}:\n{console}");
    }
    let launch_ready = vm.value("ready").unwrap();
    let (clean, last) = vm.power_off(Duration::from_secs(90));
    assert!(
        clean && last == "launch-vm: poweroff clean",
        "{last}\n{}",
        std::fs::read_to_string(d.join("vm/console.log")).unwrap()
    );
    let figures = format!(
        "disk image: launch to ready {launch_ready} s (OVMF + UKI, QEMU TCG); uki.efi {} bytes\n",
        std::fs::metadata(disk.file("uki.efi")).unwrap().len()
    );
    print!("{figures}");
}

#[test]
fn launch_vm_refuses_a_disk_the_ukis_command_line_does_not_name() {
    // The command line is inside the UKI (measured): the launcher cannot add
    // a disk to it, and says so before it boots anything.
    let disk = vm::disk_image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let manifest = d.join("manifest.json");
    std::fs::write(&manifest, "{}").unwrap();
    let weights = d.join("weights.img");
    std::fs::write(&weights, [0u8; 512]).unwrap();
    let o = Command::new(vm::root().join("scripts/launch-vm"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--dir")
        .arg(d.join("vm"))
        .arg("--disk-image")
        .arg(disk.file("disk.raw"))
        .arg("--disk")
        .arg(format!("weights={}", weights.display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("the UKI's command line does not name weights=/dev/vda"), "{stderr}");
    assert!(!d.join("vm/console.log").exists(), "a VM was started");
}

#[test]
fn the_release_image_refuses_a_command_line_that_asks_for_the_simulated_tee() {
    // Without --simulated-tee the image's agent is the release agent, which
    // has no simulated provider: such an image would never start.
    let image = vm::image();
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(vm::root().join("scripts/build-disk-image"))
        .arg("--out")
        .arg(dir.path())
        .arg("--kernel")
        .arg(&image.kernel)
        .arg("--initrd")
        .arg(&image.initrd)
        .args(["--append", "console=ttyS0 cvm.tee=simulated cvm.manifest=operator"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("add --simulated-tee"));
    assert!(!dir.path().join("disk.raw").exists());
}
