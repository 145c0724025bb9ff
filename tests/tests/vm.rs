//! The VM: the reproducible initramfs, the launch measurement, and the whole
//! flow inside a QEMU guest (TCG) with the agent as PID 1. One VM boot.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cvm_tests::vm::{self, Vm};
use cvm_tests::{cvmctl, ok, owner, seal, sealing_key, sha256_file};

fn initramfs_bin() -> std::path::PathBuf {
    // Built by scripts/build-image.
    vm::image();
    vm::root().join("target/release/cvm-initramfs")
}

/// Builds the image's initramfs with the given overlay into `out`.
fn build_initramfs(out: &Path, overlay: &Path) {
    let image = vm::image();
    let kernel_dir = image.kernel.parent().unwrap().join("modules");
    let modules_dir = std::fs::read_dir(&kernel_dir).unwrap().next().unwrap().unwrap().path();
    let mut cmd = Command::new(initramfs_bin());
    cmd.arg("--agent").arg(&image.agent).arg("--modules-dir").arg(&modules_dir);
    for line in std::fs::read_to_string(vm::root().join("initramfs/modules")).unwrap().lines() {
        if let Some(name) = line.split_whitespace().next().filter(|n| !n.starts_with('#')) {
            cmd.arg("--module").arg(name);
        }
    }
    let o = cmd.arg("--overlay").arg(overlay).arg("--out").arg(out).output().unwrap();
    assert!(o.status.success(), "cvm-initramfs: {}", String::from_utf8_lossy(&o.stderr));
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn initramfs_built_twice_is_bit_for_bit_identical_and_holds_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    // The second build reads an overlay copy with other times and permissions
    // bits the builder must normalise away.
    let overlay = vm::root().join("initramfs/overlay");
    let copy = dir.path().join("overlay");
    copy_tree(&overlay, &copy);
    let conf = copy.join("etc/cvm-agent.conf");
    std::fs::File::options()
        .append(true)
        .open(&conf)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (a, b) = (dir.path().join("a.cpio.gz"), dir.path().join("b.cpio.gz"));
    build_initramfs(&a, &overlay);
    build_initramfs(&b, &copy);
    assert_eq!(sha256_file(&a), sha256_file(&b), "two builds of the same inputs differ");
    // And the image scripts/build-image made is that same archive.
    assert_eq!(sha256_file(&a), sha256_file(&vm::image().initrd));

    // An independent reader (GNU cpio) lists what the archive must hold.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | cpio -t --quiet -v", a.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "cpio: {}", String::from_utf8_lossy(&o.stderr));
    let listing = String::from_utf8(o.stdout).unwrap();
    let entry = |path: &str| {
        listing.lines().find(|l| l.ends_with(&format!(" {path}")) || l.contains(&format!(" {path} -> ")))
    };
    let init = entry("init").expect("no /init");
    assert!(init.starts_with('l') && init.ends_with("-> bin/cvm-agent"), "{init}");
    let agent = entry("bin/cvm-agent").expect("no agent");
    assert!(agent.starts_with("-rwxr-xr-x") && agent.contains(" root "), "{agent}");
    assert!(agent.contains(&std::fs::metadata(&vm::image().agent).unwrap().len().to_string()), "{agent}");
    assert!(entry("dev/console").expect("no /dev/console").starts_with("crw-------"));
    assert!(entry("etc/cvm-agent.conf").expect("no config").starts_with("-rw-r--r--"));
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&fields[2..4], ["root", "root"], "owner not fixed: {line}");
        assert!(line.contains("Jan  1  1970"), "time not fixed: {line}");
    }
    // The module list: every module the image needs, dependencies first.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -dc {} | cpio -i --quiet --to-stdout lib/modules/load.list", a.display()))
        .output()
        .unwrap();
    let list: Vec<String> = String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let pos = |name: &str| {
        list.iter()
            .position(|l| l.ends_with(&format!("/{name}.ko.xz")))
            .unwrap_or_else(|| panic!("{name} not in {list:?}"))
    };
    for name in [
        "configfs",
        "tsm",
        "sev-guest",
        "virtio_net",
        "virtio-rng",
        "vmw_vsock_virtio_transport",
        "qemu_fw_cfg",
        "hv_vmbus",
        "hv_netvsc",
        "hv_storvsc",
        "sd_mod",
        "gve",
        "nvme",
    ] {
        pos(name);
    }
    // The clouds' drivers after what they need, which the list names for init.
    assert!(pos("hv_vmbus") < pos("hv_netvsc") && pos("hv_vmbus") < pos("hv_storvsc"));
    assert!(pos("scsi_mod") < pos("sd_mod") && pos("nvme-core") < pos("nvme"));
    let listed = String::from_utf8(o.stdout).unwrap();
    let netvsc = listed.lines().find(|l| l.contains("/hv_netvsc.ko.xz")).unwrap();
    assert!(netvsc.contains("  # needs /lib/modules/") && netvsc.ends_with("/hv_vmbus.ko.xz"), "{netvsc}");
    assert!(pos("vsock") < pos("vmw_vsock_virtio_transport_common"));
    assert!(pos("vmw_vsock_virtio_transport_common") < pos("vmw_vsock_virtio_transport"));
    assert!(pos("configfs") < pos("tsm") && pos("tsm") < pos("sev-guest"));
    assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
    for l in &list {
        assert!(entry(l.trim_start_matches('/')).is_some(), "{l} is listed but not in the archive");
    }
}

fn sev_snp_measure(args: &[&str]) -> String {
    let tool = vm::cache_dir().join("venv/bin/sev-snp-measure");
    let o = Command::new(&tool).arg("--mode").arg("snp").args(args).output().unwrap_or_else(|e| {
        panic!("{}: {e} (scripts/setup-vm installs it)", tool.display());
    });
    assert!(o.status.success(), "sev-snp-measure: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

#[test]
fn cvmctl_measure_equals_sev_snp_measure_on_the_project_image() {
    let image = vm::image();
    let ovmf = vm::ovmf();
    let (kernel, initrd) = (image.kernel.to_str().unwrap(), image.initrd.to_str().unwrap());
    let cases = [
        ("1", "EPYC-v4", "console=ttyS0 cvm.tee=simulated"),
        ("4", "EPYC-Milan", "console=ttyS0 init_on_free=1 cvm.net=eth0=10.0.2.15/24"),
        ("2", "EPYC-Genoa", ""),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (vcpus, vcpu_type, append) in cases {
        // Both tools take the same options.
        let args = [
            "--ovmf",
            ovmf.to_str().unwrap(),
            "--kernel",
            kernel,
            "--initrd",
            initrd,
            "--append",
            append,
            "--vcpus",
            vcpus,
            "--vcpu-type",
            vcpu_type,
        ];
        let ours = cvmctl(&[&["measure"][..], &args].concat());
        assert!(ours.status.success(), "cvmctl measure: {}", String::from_utf8_lossy(&ours.stderr));
        let ours = String::from_utf8(ours.stdout).unwrap().trim().to_owned();
        let reference = sev_snp_measure(&args);
        assert_eq!(ours.len(), 96);
        assert_eq!(ours, reference, "{vcpus} x {vcpu_type}, append {append:?}");
        seen.insert(ours);
    }
    assert_eq!(seen.len(), cases.len(), "different inputs gave the same measurement");

    // One changed byte of the initrd changes the measurement.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&image.initrd).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let other = dir.path().join("other.cpio.gz");
    std::fs::write(&other, bytes).unwrap();
    let args = |initrd: &str| {
        cvmctl(&[
            "measure",
            "--ovmf",
            ovmf.to_str().unwrap(),
            "--kernel",
            kernel,
            "--initrd",
            initrd,
            "--vcpu-type",
            "EPYC-v4",
        ])
    };
    assert_ne!(args(initrd).stdout, args(other.to_str().unwrap()).stdout);
    // Bad input is named.
    let o = args("/nonexistent/initrd");
    assert_eq!(o.status.code(), Some(cvmctl::exit_codes::USAGE));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read the initrd /nonexistent/initrd"));
    let o =
        cvmctl(&["measure", "--ovmf", ovmf.to_str().unwrap(), "--kernel", kernel, "--vcpu-type", "EPYC-v9"]);
    assert_eq!(o.status.code(), Some(cvmctl::exit_codes::USAGE));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown vCPU type \"EPYC-v9\""));
}

/// The lab's sealed model, and a string only its plaintext holds.
const MODEL: &str = "{\"intercept\": -2.0, \"per_year\": 0.05, \"threshold\": 0.5}\n";
const MODEL_MARKER: &str = "\"per_year\": 0.05";

/// Asserts that `text` holds every one of `lines`; `lacks` says whose text it is.
#[track_caller]
fn assert_has(text: &str, lacks: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{lacks} {line:?}:\n{text}");
    }
}

/// Every regular file below a directory.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

#[test]
fn the_demo_flow_runs_in_the_vm_and_it_powers_off_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).display().to_string();
    let stats = vm::static_stats();
    std::fs::copy(stats, d.join("stats")).unwrap();
    for f in ["hospital-a.csv", "hospital-b.csv"] {
        std::fs::copy(cvm_tests::example(f), d.join(f)).unwrap();
    }
    let alg = owner(d, "alg", "p256");
    let a = owner(d, "a", "ed25519");
    let b = owner(d, "b", "p384");
    // The lab's model, sealed; its ciphertext is on a disk the operator
    // attaches (whole sectors, the stream first).
    std::fs::write(d.join("model.json"), MODEL).unwrap();
    let model_key = sealing_key(d, "model.key");
    let sealed = seal(&model_key, &d.join("model.json"), &d.join("model-disk.img"));
    let disk = std::fs::OpenOptions::new().write(true).open(d.join("model-disk.img")).unwrap();
    let len = disk.metadata().unwrap().len();
    disk.set_len(len.div_ceil(512) * 512).unwrap();
    let manifest = serde_json::json!({
        "id": "mean-age-vm", "name": "Mean age in the VM",
        "algorithm": {"digest": format!("sha256:{}", sha256_file(&d.join("stats"))), "provider_key": alg.public,
                      "kind": "binary", "args": ["--column", "age"]},
        "datasets": [
            {"name": "hospital-a.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-a.csv"))), "provider_key": a.public},
            {"name": "hospital-b.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-b.csv"))), "provider_key": b.public}
        ],
        "artifacts": [{"name": "model.json", "sealed": sealed, "source": "host-path", "provider_key": alg.public}],
        "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 16 << 20, "run_timeout_s": 60, "memory_bytes": 256 << 20}
    });
    std::fs::write(d.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let digest =
        ok(&cvmctl(&["manifest", "digest", &p("manifest.json")]), "manifest digest").trim().to_owned();

    let vm =
        Vm::launch(&d.join("manifest.json"), &d.join("vm"), &[("model.json", &d.join("model-disk.img"))]);
    let addr = vm.value("agent").unwrap();
    let append = vm.value("append").unwrap();
    let platform_measurement = vm.value("measurement").unwrap();

    // The owners compute the measurement from the image; it is the one the
    // simulated platform reported, and the reference tool's.
    let image = vm::image();
    let (kernel, initrd, ovmf) =
        (image.kernel.to_str().unwrap(), image.initrd.to_str().unwrap(), vm::ovmf().display().to_string());
    let args = [
        "--ovmf",
        &ovmf,
        "--kernel",
        kernel,
        "--initrd",
        initrd,
        "--append",
        &append,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
    ];
    let expected = ok(&cvmctl(&[&["measure"][..], &args].concat()), "cvmctl measure").trim().to_owned();
    assert_eq!(expected, platform_measurement, "the launcher measured something else");
    assert_eq!(expected, sev_snp_measure(&args));
    // The operator's disk is named in the measured command line.
    assert!(append.contains("cvm.host_artifacts=model.json=/dev/vda"), "{append}");
    std::fs::write(
        d.join("policy.json"),
        // swtpm is the guest's TPM: its quote must be there and verify.
        serde_json::json!({"measurements": [expected], "vmpl": 0, "signing_keys": ["vcek"], "require_vtpm": true})
            .to_string(),
    )
    .unwrap();
    let ark = d.join("vm/platform/ark.pem").display().to_string();
    let common = |key: Option<&cvm_tests::Owner>| -> Vec<String> {
        let mut v: Vec<String> = [
            "--agent",
            &addr,
            "--manifest-digest",
            &digest,
            "--policy",
            &p("policy.json"),
            "--trust-ark",
            &ark,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(k) = key {
            v.extend(["--key".to_owned(), k.key.display().to_string()]);
        }
        v
    };
    let run = |cmd: &str, key: Option<&cvm_tests::Owner>, extra: &[&str]| {
        let mut args = vec![cmd.to_owned()];
        args.extend(common(key));
        args.extend(extra.iter().map(|s| s.to_string()));
        cvmctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Attestation: the evidence's measurement is the pinned one.
    let out = ok(&run("attest", None, &["--json"]), "attest");
    let measurement_check = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "check" && v["data"]["name"] == "measurement")
        .expect("no measurement check");
    assert_eq!(measurement_check["data"]["status"], "passed", "{measurement_check}");
    assert!(measurement_check["data"]["found"].to_string().contains(&expected), "{measurement_check}");
    // Another image's measurement: refused before anything is sent.
    std::fs::write(d.join("other.json"), serde_json::json!({"measurements": ["00".repeat(48)]}).to_string())
        .unwrap();
    let o = cvmctl(&[
        "upload-algorithm",
        "--agent",
        &addr,
        "--manifest-digest",
        &digest,
        "--policy",
        &p("other.json"),
        "--trust-ark",
        &ark,
        "--key",
        alg.key.to_str().unwrap(),
        &p("stats"),
    ]);
    assert_eq!(o.status.code(), Some(cvmctl::exit_codes::REJECTED));

    ok(&run("upload-algorithm", Some(&alg), &[&p("stats")]), "upload-algorithm");
    ok(&run("upload-dataset", Some(&a), &["hospital-a.csv", &p("hospital-a.csv")]), "upload-dataset a");
    ok(&run("upload-dataset", Some(&b), &["hospital-b.csv", &p("hospital-b.csv")]), "upload-dataset b");
    // The model's key: a hospital does not own it; the lab's release has
    // the agent read the model from /dev/vda and decrypt it in memory.
    let release = ["--artifact", "model.json", "--key-file", &p("model.key")];
    let o = run("release-key", Some(&a), &release);
    assert_eq!(
        o.status.code(),
        Some(cvmctl::exit_codes::AGENT_ERROR),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not artifact_provider:model.json"));
    ok(&run("release-key", Some(&alg), &release), "release-key");
    let status = ok(&run("status", Some(&alg), &["--wait", "120", "--json"]), "status");
    assert!(status.contains("\"results_ready\""), "{status}\n{}", vm.console());
    // Every input was measured into the guest's vTPM: the event log replays
    // to the quoted PCR, and tpm2-tools checks the exported quote on its own.
    let events = ok(&run("attest", None, &["--events", "--export-quote", &p("quote")]), "attest --events");
    assert!(events.contains("event log (6 events, oldest first)"), "{events}");
    for kind in ["manifest", "algorithm", "dataset", "sealed_artifact", "results"] {
        assert!(events.contains(&format!("  {kind} ")), "{kind}: {events}");
    }
    assert!(events.contains("vTPM quote: verified"), "{events}");
    let nonce = std::fs::read_to_string(d.join("quote/nonce")).unwrap();
    let check = Command::new("tpm2_checkquote")
        .args(["-u", &p("quote/ak.pem"), "-m", &p("quote/quote.msg"), "-s", &p("quote/quote.sig")])
        .args(["-f", &p("quote/quote.pcrs"), "-g", "sha256", "-q", nonce.trim()])
        .output()
        .expect("tpm2_checkquote (tpm2-tools; run scripts/setup)");
    ok(&check, "tpm2_checkquote on the guest's quote");
    ok(&run("results", Some(&alg), &["--out", &p("results.tar")]), "results");
    let o = Command::new("tar").args(["-xOf", &p("results.tar"), "results/summary.json"]).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["count"], 7);
    assert_eq!(summary["mean"], 50.142857);
    assert_eq!(summary["rows_per_dataset"]["hospital-b.csv"], 3);
    // The model was used: -2 + 0.05 * age, over 0.5 for the ages over 50.
    assert_eq!(summary["model"]["mean_risk"], 0.507143, "{summary}");
    assert_eq!(summary["model"]["over_threshold"], 4, "{summary}");

    // The logs: the whole story, and no dataset content.
    let console = vm.console();
    assert_has(&console, "the guest's log lacks", &[
        "init: started as PID 1",
        "init: fs.protected_hardlinks = 1, fs.protected_symlinks = 1, fs.protected_fifos = 2, \
         fs.protected_regular = 2, kernel.printk = 3 4 1 3, debug.exception-trace = 0",
        "modules loaded",
        // swtpm is the guest's TPM, vsock goes through the userspace backend, fw_cfg carries the inputs.
        "init: devices: TPM /dev/tpmrm0 yes, /dev/sev-guest no, configfs-tsm yes, vsock /dev/vsock yes, fw_cfg yes",
        "init: eth0 is 10.0.2.15/24",
        "the SIMULATED SNP provider is in use",
        &format!("manifest {digest}; serving attested TLS on 0.0.0.0:7002"),
        "received hospital-a.csv",
        "released by its owner; reading /dev/vda",
        "verified and decrypted into locked memory",
        "algorithm succeeded",
        "every result consumer fetched the results",
    ]);
    assert!(!console.contains("a1,34"), "dataset content in the log");
    assert!(!console.contains("per_year"), "the model's plaintext in the log");
    let ready: f64 = console
        .lines()
        .find_map(|l| l.split("ready to serve ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the agent logged no boot-to-ready time");

    let launch_ready = vm.value("ready").unwrap();
    let (clean, last) = vm.power_off(Duration::from_secs(90));
    let console = std::fs::read_to_string(d.join("vm/console.log")).unwrap();
    assert!(clean && last == "launch-vm: poweroff clean", "{last}\n{console}");
    assert_has(
        &console,
        "the guest's log lacks",
        &[
            "init: stop requested",
            "work directory /run/cvm-agent wiped",
            "init: the agent stopped",
            "init: powering off",
            "reboot: Power down",
        ],
    );

    // The operator's view: the log stream over real vsock (the userspace
    // backend's Unix socket on the host), and the manifest handed over on it.
    let stream = std::fs::read_to_string(d.join("vm/agent-logs.txt")).unwrap();
    let listener = std::fs::read_to_string(d.join("vm/logs-listen.err")).unwrap();
    assert!(listener.contains(&format!("manifest accepted by the agent: {digest}")), "{listener}");
    assert_has(
        &stream,
        "the log stream over vsock lacks",
        &[
            "log link vsock:2:7100: connected",
            &format!("manifest mean-age-vm ({digest}) received from the operator"),
            "ready to serve",
            "received hospital-a.csv",
            "algorithm succeeded",
            "EVENT cvm_agent::computation: state results_ready",
            "work directory /run/cvm-agent wiped",
        ],
    );
    assert!(!stream.contains("a1,34"), "dataset content in the log stream");
    assert!(!stream.contains("per_year"), "the model's plaintext in the log stream");
    // The host holds the model's ciphertext only: the disk, and nothing in
    // the VM's directory (console, logs, TPM state) has its plaintext.
    for entry in walk(d) {
        if entry.file_name() == Some(std::ffi::OsStr::new("model.json")) && entry.parent() == Some(d) {
            continue; // the lab's own copy, on the lab's machine
        }
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(MODEL_MARKER.len()).any(|w| w == MODEL_MARKER.as_bytes()),
            "{} holds the model's plaintext",
            entry.display()
        );
    }

    let figures = format!(
        "vm: kernel start to agent ready {ready:.3} s (agent log, CLOCK_BOOTTIME, QEMU TCG); launch to ready {} s; \
         initramfs {} bytes; static agent {} bytes\n",
        launch_ready,
        image.values["initrd_bytes"],
        image.values["agent_bytes"]
    );
    print!("{figures}");
    let _ = std::fs::create_dir_all(vm::root().join("target/vm"));
    let _ = std::fs::write(vm::root().join("target/vm/figures.txt"), figures);
}

#[test]
fn cvmctl_links_neither_the_sev_guest_ioctls_nor_tss() {
    // `measure` brings in the sev crate; only its measurement code may end up
    // in the owners' binary (the linker drops what is never called).
    let o = Command::new("nm").arg("-C").arg(cvm_tests::bin("cvmctl")).output().expect("nm (binutils)");
    assert!(o.status.success());
    let symbols = String::from_utf8_lossy(&o.stdout);
    assert!(symbols.contains("sev::measurement"), "the measurement code is not linked: is this cvmctl?");
    for forbidden in ["sev::firmware", "Esys_", "Tss2_"] {
        let found: Vec<&str> = symbols.lines().filter(|l| l.contains(forbidden)).take(3).collect();
        assert!(found.is_empty(), "cvmctl links {forbidden}: {found:?}");
    }
}

#[test]
fn the_debugging_image_runs_the_agent_next_to_busybox_init() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alg = owner(d, "alg", "p256");
    let manifest = serde_json::json!({
        "id": "busybox", "name": "busybox",
        "algorithm": {"digest": format!("sha256:{}", "ab".repeat(32)), "provider_key": alg.public, "kind": "binary"},
        "datasets": [], "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 4096, "run_timeout_s": 30, "memory_bytes": 268435456}
    });
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let digest = ok(&cvmctl(&["manifest", "digest", d.join("manifest.json").to_str().unwrap()]), "digest")
        .trim()
        .to_owned();
    let image = vm::busybox_image();
    let vm = Vm::launch_image(image, &d.join("manifest.json"), &d.join("vm"), &[]);
    let measurement = vm.value("measurement").unwrap();
    assert_ne!(measurement.len(), 0);
    std::fs::write(d.join("policy.json"), serde_json::json!({"measurements": [measurement]}).to_string())
        .unwrap();
    let ark = d.join("vm/platform/ark.pem");
    ok(
        &cvmctl(&[
            "attest",
            "--agent",
            &vm.value("agent").unwrap(),
            "--manifest-digest",
            &digest,
            "--policy",
            d.join("policy.json").to_str().unwrap(),
            "--trust-ark",
            ark.to_str().unwrap(),
        ]),
        "attest",
    );
    let console = vm.console();
    // busybox is PID 1; the agent's supervisor did the set-up and started the agent.
    assert!(!console.contains("init: started as PID 1"), "{console}");
    assert_has(
        &console,
        "the guest's log lacks",
        &[
            "init: devices: TPM /dev/tpmrm0 yes",
            "init: eth0 is 10.0.2.15/24",
            "init: agent started",
            "serving attested TLS",
        ],
    );
    let (clean, last) = vm.power_off(Duration::from_secs(90));
    let console = std::fs::read_to_string(d.join("vm/console.log")).unwrap();
    assert!(clean, "{last}\n{console}");
    // busybox's poweroff sends SIGTERM to everyone: the agent still stops cleanly and wipes.
    assert_has(
        &console,
        "the guest's log lacks",
        &[
            "Sent SIGTERM to all processes",
            "work directory /run/cvm-agent wiped",
            "init: the agent stopped",
            "reboot: Power down",
        ],
    );
}

/// `cvmctl COMMAND` against the VM, as the lab (`true`) or a hospital, with extra arguments.
type OwnerCommand = Box<dyn Fn(&str, bool, &[&str]) -> std::process::Output>;

/// One computation of the hostile algorithm in its own VM (strict sandbox:
/// namespaces, seccomp, Landlock, cgroup v2), run to its end.
struct HostileRun {
    _dir: tempfile::TempDir,
    d: PathBuf,
    vm: Vm,
    status: serde_json::Value,
    run: OwnerCommand,
}

/// Boots a VM whose algorithm is `hostile ARGS` with the extra `limits`,
/// uploads it and both datasets, and waits for the end. `before_run` is
/// called once the VM serves (the test's listeners go there).
fn hostile_in_the_vm(args: &[&str], limits: serde_json::Value, before_run: impl FnOnce(&Path)) -> HostileRun {
    hostile_in_the_vm_watched(args, limits, before_run, |_, _| {})
}

/// [`hostile_in_the_vm`], with `watch` called as an owner could act: once
/// before the last dataset is uploaded (`false`: nothing runs yet) and once
/// right after (`true`: the algorithm has started).
fn hostile_in_the_vm_watched(
    args: &[&str],
    limits: serde_json::Value,
    before_run: impl FnOnce(&Path),
    mut watch: impl FnMut(&OwnerCommand, bool),
) -> HostileRun {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let p = |name: &str| d.join(name).display().to_string();
    std::fs::copy(vm::static_hostile(), d.join("hostile")).unwrap();
    for f in ["hospital-a.csv", "hospital-b.csv"] {
        std::fs::copy(cvm_tests::example(f), d.join(f)).unwrap();
    }
    let alg = owner(&d, "alg", "p256");
    let hospital = owner(&d, "a", "ed25519");
    let mut manifest = serde_json::json!({
        "id": "hostile", "name": "A hostile algorithm",
        "algorithm": {"digest": format!("sha256:{}", sha256_file(&d.join("hostile"))), "provider_key": alg.public,
                      "kind": "binary", "args": args},
        "datasets": [
            {"name": "hospital-a.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-a.csv"))), "provider_key": hospital.public},
            {"name": "hospital-b.csv", "digest": format!("sha256:{}", sha256_file(&d.join("hospital-b.csv"))), "provider_key": hospital.public}
        ],
        "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 16 << 20, "run_timeout_s": 60, "memory_bytes": 128 << 20}
    });
    if let (Some(l), Some(extra)) = (manifest["limits"].as_object_mut(), limits.as_object()) {
        l.extend(extra.clone());
    }
    std::fs::write(d.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let digest =
        ok(&cvmctl(&["manifest", "digest", &p("manifest.json")]), "manifest digest").trim().to_owned();
    let vm = Vm::launch(&d.join("manifest.json"), &d.join("vm"), &[]);
    let addr = vm.value("agent").unwrap();
    let measurement = vm.value("measurement").unwrap();
    std::fs::write(
        d.join("policy.json"),
        serde_json::json!({"measurements": [measurement], "require_vtpm": true}).to_string(),
    )
    .unwrap();
    let ark = d.join("vm/platform/ark.pem").display().to_string();
    let (policy, alg_key, a_key) =
        (p("policy.json"), alg.key.display().to_string(), hospital.key.display().to_string());
    let run = move |cmd: &str, as_alg: bool, extra: &[&str]| {
        let mut v: Vec<&str> = vec![
            cmd,
            "--agent",
            &addr,
            "--manifest-digest",
            &digest,
            "--policy",
            &policy,
            "--trust-ark",
            &ark,
        ];
        v.extend(["--key", if as_alg { &alg_key } else { &a_key }]);
        v.extend(extra);
        cvmctl(&v)
    };
    before_run(&d.join("vm"));
    ok(&run("upload-algorithm", true, &[&p("hostile")]), "upload-algorithm");
    ok(&run("upload-dataset", false, &["hospital-a.csv", &p("hospital-a.csv")]), "upload-dataset");
    let run: OwnerCommand = Box::new(run);
    watch(&run, false);
    ok(&run("upload-dataset", false, &["hospital-b.csv", &p("hospital-b.csv")]), "upload-dataset");
    watch(&run, true);
    let o = run("status", true, &["--wait", "120", "--json"]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    let status: serde_json::Value =
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}\n{}", vm.console()));
    HostileRun { _dir: dir, d, vm, status: status["data"].clone(), run }
}

impl HostileRun {
    /// After any attack: the agent still serves and attests with its
    /// event log replaying, the sandbox was strict, and the VM powers off cleanly.
    #[track_caller]
    fn agent_and_vm_still_healthy(self) {
        assert_eq!(self.status["sandbox"]["mode"], "strict", "{}", self.status);
        assert_eq!(self.status["sandbox"]["missing"], serde_json::json!([]), "{}", self.status);
        let events = ok(&(self.run)("attest", false, &["--events"]), "attest --events after the attack");
        assert!(events.contains("vTPM quote: verified"), "{events}");
        let (clean, last) = self.vm.power_off(Duration::from_secs(90));
        let console = std::fs::read_to_string(self.d.join("vm/console.log")).unwrap_or_default();
        assert!(clean, "{last}\n{console}");
        // No crash of the agent, no kernel trouble. (The kernel's own
        // out-of-memory reports no longer reach the console: init keeps them
        // off it. The agent, at -1000, is never their victim, and its end
        // would show here.)
        for bad in ["init: the agent exited", "init: the agent was killed", "Kernel panic", "BUG:"] {
            assert!(!console.contains(bad), "{bad}:\n{console}");
        }
    }
}

#[test]
fn a_hostile_algorithm_in_the_vm_escapes_nowhere_not_even_over_vsock() {
    // A listener on the host's side of vsock for the port the algorithm
    // dials (the userspace backend hands a guest's connection to CID 2
    // port P to the Unix socket vm.vsock_P), and the operator's log port.
    const PORT: u32 = 7733;
    let listener = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = std::sync::Arc::clone(&listener);
    let run = hostile_in_the_vm(
        &["probe", "--vsock-ports", &format!("{PORT},7100")],
        serde_json::json!({}),
        move |vm_dir| {
            let l = std::os::unix::net::UnixListener::bind(vm_dir.join(format!("vm.vsock_{PORT}"))).unwrap();
            l.set_nonblocking(true).unwrap();
            *slot.lock().unwrap() = Some(l);
        },
    );
    assert_eq!(run.status["state"], "results_ready", "{}\n{}", run.status, run.vm.console());
    let out = run.d.join("results.tar").display().to_string();
    ok(&(run.run)("results", true, &["--out", &out]), "results");
    let o = Command::new("tar").args(["-xOf", &out, "results/report.json"]).output().unwrap();
    let report: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let escaped: Vec<String> = report
        .iter()
        .filter(|(_, v)| v.as_str().is_some_and(|v| v.starts_with("ESCAPED")))
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    assert!(escaped.is_empty(), "the algorithm escaped:\n{}\n{report:#?}", escaped.join("\n"));
    for probe in [
        "vsock.cid2.port7733",
        "vsock.cid1.port7733",
        "vsock.cid2.port7100",
        "fds.inherited",
        "tpm.extend_through_inherited",
        "open/dev/tpmrm0",
        "see/dev/vda",
        "see/sys/firmware/qemu_fw_cfg/by_name",
        "see/dev/sev-guest",
        "see/dev/vsock",
        "read/proc/1/mem",
        "proc.other_processes",
        "io_uring_setup",
        "ptrace.attach_init",
        "ptrace.any_pid",
        "socket.netlink",
        "socket.packet",
        "socket.int80",
        "socket.number_high_bits",
        "caps.CapBnd",
        "oom_score_adj",
        // Above the root the init entered with chroot lie the initramfs and
        // the agent's work directory.
        "root.above/..",
        "root.above/proc/self/root/..",
        "root.above/proc/self/cwd/../../..",
        "root.above_by_descriptor",
        "mountinfo.foreign_mounts",
        "ipc.others_segments",
        "pidfd.signal_init",
        "sched.realtime",
        "exec.memfd",
        "memfd.exec_flag",
        "write/dev/urandom",
        "env.extra",
    ] {
        let v =
            report.get(probe).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("no {probe}: {report:#?}"));
        assert!(v.starts_with("blocked"), "{probe}: {v}");
    }
    // The host's side of vsock received nothing, not even a connection.
    std::thread::sleep(Duration::from_secs(4)); // the daemon's late attempt, had it survived
    let l = listener.lock().unwrap().take().unwrap();
    assert!(l.accept().is_err(), "the algorithm reached the host over vsock");
    let ops = std::fs::read_to_string(run.d.join("vm/logs-listen.err")).unwrap_or_default();
    assert!(
        !ops.contains("a1,34") && !ops.contains("malformed"),
        "the operator's log port saw the algorithm:\n{ops}"
    );
    run.agent_and_vm_still_healthy();
}

#[test]
fn a_memory_bomb_over_many_processes_is_killed_as_one_and_the_agent_stays() {
    // Eight processes of 48 MiB each: every one is under the 128 MiB limit,
    // together three times over it.
    let run = hostile_in_the_vm(&["membomb", "8", "48"], serde_json::json!({}), |_| {});
    assert_eq!(run.status["state"], "failed", "{}", run.status);
    let reason = run.status["reason"].as_str().unwrap();
    assert!(
        reason.contains("ran out of memory (limit 134217728 bytes over all its processes)"),
        "{reason}\n{}",
        run.vm.console()
    );
    run.agent_and_vm_still_healthy();
}

#[test]
fn a_fork_bomb_fails_at_the_process_limit_and_the_agent_stays() {
    let run = hostile_in_the_vm(&["forkbomb"], serde_json::json!({"max_processes": 32}), |_| {});
    assert_eq!(run.status["state"], "failed", "{}", run.status);
    let reason = run.status["reason"].as_str().unwrap();
    assert!(reason.contains("hit the process limit (32 processes and threads)"), "{reason}");
    run.agent_and_vm_still_healthy();
}

#[test]
fn results_over_their_limit_fail_the_run_in_the_vm() {
    let run = hostile_in_the_vm(&["fill-results"], serde_json::json!({"results_bytes": 1 << 20}), |_| {});
    assert_eq!(run.status["state"], "failed", "{}", run.status);
    let reason = run.status["reason"].as_str().unwrap();
    assert!(reason.contains("filled its results limit (1048576 bytes"), "{reason}");
    run.agent_and_vm_still_healthy();
}

#[test]
fn an_algorithm_hogging_the_cpu_does_not_starve_the_agent() {
    // 60 processes spin for 40 s, each in a session of its own: with the
    // kernel's autogroups, each session is a scheduling entity as heavy as
    // the agent's busiest thread. Meanwhile an owner asks for the status.
    let took = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let times = std::sync::Arc::clone(&took);
    let run = hostile_in_the_vm_watched(
        &["cpuhog", "60", "40"],
        serde_json::json!({}),
        |_| {},
        move |run, running| {
            if running {
                std::thread::sleep(Duration::from_secs(5)); // every hog spins by now
            }
            // Three in a row: each is a new attested TLS connection.
            let start = std::time::Instant::now();
            let ok = (0..3).all(|_| run("status", true, &[]).status.success());
            times.lock().unwrap().push((start.elapsed(), ok));
        },
    );
    let took = took.lock().unwrap().clone();
    assert_eq!(run.status["state"], "results_ready", "{}\n{}", run.status, run.vm.console());
    let (idle, busy) = (took[0].0, took[1].0);
    eprintln!("3 status: {idle:?} idle, {busy:?} while the algorithm hogs the CPU");
    assert!(took.iter().all(|t| t.1), "a status failed: {took:?}");
    // Measured before the run's cgroup had the cpu controller: one status
    // took 44 ms idle and 3.5 s during the run (the agent got a 61st of the CPU).
    assert!(
        busy < idle * 5 + Duration::from_secs(2),
        "3 status took {busy:?} during the run, {idle:?} before it"
    );
    run.agent_and_vm_still_healthy();
}

#[test]
fn the_operator_log_carries_nothing_the_algorithm_encodes_in_its_counters() {
    // The algorithm makes the process limit refuse exactly 1 + N forks,
    // where N is the first two bytes of hospital A's dataset. The agent's
    // log goes to the host's operator, who must not learn N from it.
    let run = hostile_in_the_vm(&["covert"], serde_json::json!({"max_processes": 16}), |_| {});
    assert_eq!(run.status["state"], "failed", "{}", run.status);
    let data = std::fs::read(cvm_tests::example("hospital-a.csv")).unwrap();
    let refused = 1 + (u32::from(data[0]) << 8 | u32::from(data[1]));
    let operator = std::fs::read_to_string(run.d.join("vm/agent-logs.txt")).unwrap();
    assert!(operator.contains("state failed"), "the operator's log is not the agent's:\n{operator}");
    assert!(
        !operator.contains(&refused.to_string()),
        "the operator's log holds {refused}, the dataset's first two bytes plus one:\n{operator}"
    );
    run.agent_and_vm_still_healthy();
}

#[test]
fn the_console_carries_nothing_the_algorithm_encodes_in_its_process_names() {
    // Four processes named after hospital A's first 28 bytes (hex), each
    // 48 MiB: together over the limit, killed as one group.
    let run = hostile_in_the_vm(&["oom-names"], serde_json::json!({}), |_| {});
    assert_eq!(run.status["state"], "failed", "{}", run.status);
    let reason = run.status["reason"].as_str().unwrap();
    assert!(reason.contains("ran out of memory"), "{reason}");
    // Seen on the console: "Memory cgroup out of memory: Killed process 134
    // (12c6167650a6131) total-vm:33580kB, anon-rss:31616kB, ...".
    let data = std::fs::read(cvm_tests::example("hospital-a.csv")).unwrap();
    let hex: String = data[..28].iter().map(|b| format!("{b:02x}")).collect();
    std::thread::sleep(Duration::from_secs(2));
    let console = run.vm.console();
    let leaked: Vec<&str> = console
        .lines()
        .filter(|l| hex.as_bytes().chunks(14).any(|c| l.contains(std::str::from_utf8(c).unwrap())))
        .collect();
    assert!(
        leaked.is_empty(),
        "the host's console holds hospital A's first bytes ({hex}):\n{}",
        leaked.join("\n")
    );
    run.agent_and_vm_still_healthy();
}
