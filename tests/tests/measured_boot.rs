//! Measured boot without a VM: a real agent on a real swtpm whose boot PCRs
//! a simulated firmware extended as a UEFI boot of a UKI would, and cvmctl
//! judging them with the policy rules `cvmctl measure --uki` printed for the
//! owners' own UKI.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cvm_evidence::uki::{measure_uki, UkiMeasurements};
use cvm_tests::{assert_exit, cvmctl, firmware, Options, Scenario};
use cvmctl::exit_codes;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
const INITRD: &[u8] = b"an initramfs stands here";

/// A UKI made with systemd's objcopy recipe from Debian's stub, with the
/// stub itself standing in for the kernel (a PE image, as a kernel is).
fn make_uki(dir: &Path, name: &str, cmdline: &str) -> PathBuf {
    let sections = dir.join(format!("{name}.sections"));
    std::fs::create_dir_all(&sections).unwrap();
    std::fs::write(sections.join("cmdline"), cmdline).unwrap();
    std::fs::write(sections.join("osrel"), "ID=cvm-agent\n").unwrap();
    std::fs::write(sections.join("initrd"), INITRD).unwrap();
    let out = dir.join(format!("{name}.efi"));
    let add = |section: &str, file: PathBuf, vma: &str| {
        [
            format!("--add-section=.{section}={}", file.display()),
            format!("--change-section-vma=.{section}={vma}"),
        ]
    };
    let o = Command::new("objcopy")
        .args(add("osrel", sections.join("osrel"), "0x20000"))
        .args(add("cmdline", sections.join("cmdline"), "0x30000"))
        .args(add("linux", PathBuf::from(STUB), "0x2000000"))
        .args(add("initrd", sections.join("initrd"), "0x3000000"))
        .arg(STUB)
        .arg(&out)
        .output()
        .expect("objcopy (binutils)");
    assert!(
        o.status.success(),
        "objcopy: {} (is systemd-boot-efi installed? scripts/setup-vm)",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn measured(uki: &Path) -> UkiMeasurements {
    measure_uki(&std::fs::read(uki).unwrap()).unwrap()
}

/// The policy rules `cvmctl measure --uki` prints for `uki`, with the vTPM required.
fn rules_of(uki: &Path) -> serde_json::Value {
    let o = cvmctl(&["measure", "--uki", uki.to_str().unwrap(), "--json"]);
    assert_exit(&o, exit_codes::OK);
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut policy = line["data"]["policy"].clone();
    policy["require_vtpm"] = serde_json::json!(true);
    policy
}

fn write_policy(s: &Scenario, name: &str, fields: serde_json::Value) -> PathBuf {
    let path = s.dir.path().join(name);
    cvm_tests::write_pinned_policy(&path, fields);
    path
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A scenario whose swtpm was extended by a boot of `booted`, and whose
/// firmware log claims a boot of `claimed`.
fn booted(booted: UkiMeasurements, claimed: UkiMeasurements) -> Scenario {
    Scenario::start(Options {
        vtpm: true,
        firmware: Some(Box::new(move |dir, tcti| {
            firmware::play(
                dir,
                tcti,
                &firmware::uki_boot(&booted, INITRD),
                &firmware::uki_boot(&claimed, INITRD),
            )
        })),
        ..Options::default()
    })
}

#[test]
fn a_boot_of_a_uki_with_one_changed_byte_of_its_command_line_is_rejected_by_the_pinned_policy() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_uki(dir.path(), "good", "console=ttyS0 cvm.tee=auto");
    let bad = make_uki(dir.path(), "bad", "console=ttyS1 cvm.tee=auto");
    let s = booted(measured(&bad), measured(&bad));

    // The owners pinned the good UKI: rejected, naming the rules that fail,
    // and nothing else (the evidence itself is sound).
    let pinned = write_policy(&s, "good-policy.json", rules_of(&good));
    let o = s.run_with_policy("attest", None, &pinned, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    let out = text(&o);
    for check in ["tpm_pcr_9", "tpm_pcr_11", "tpm_event_pcr_4"] {
        assert!(out.contains(&format!("cvmctl: rejected: {check}: expected")), "{check}: {out}");
    }
    let rejected: Vec<&str> = out.lines().filter(|l| l.starts_with("cvmctl: rejected: ")).collect();
    assert_eq!(rejected.len(), 3, "{out}");
    assert!(out.contains("PASS  firmware_log_replay"), "{out}");
    assert!(out.contains("PASS  tpm_pcr_12") && out.contains("PASS  tpm_pcr_13"), "{out}");
    // Nothing was sent: no upload is possible with that policy either.
    let o = s.run_with_policy("upload-algorithm", Some(&s.alg), &pinned, &[&s.path("stats.py")]);
    assert_exit(&o, exit_codes::REJECTED);

    // The rules of the UKI that did boot accept it: the same machinery,
    // another pin.
    let own = write_policy(&s, "bad-policy.json", rules_of(&bad));
    let o = s.run_with_policy("attest", None, &own, &["--events"]);
    assert_exit(&o, exit_codes::OK);
    let out = text(&o);
    assert!(
        out.contains("the policy's tpm_pcr_9, tpm_pcr_11, tpm_pcr_12, tpm_pcr_13, tpm_event_pcr_4 passed"),
        "{out}"
    );
    let pcr11 = hex::encode(measured(&bad).pcr11_sha256);
    assert!(out.contains(&format!("11  {pcr11}  reproduced by the firmware's log")), "{out}");
    assert!(out.contains("EV_EFI_BOOT_SERVICES_APPLICATION"), "{out}");
}

#[test]
fn a_firmware_log_that_claims_the_pinned_uki_over_another_boot_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_uki(dir.path(), "good", "console=ttyS0 cvm.tee=auto");
    let bad = make_uki(dir.path(), "bad", "console=ttyS1 cvm.tee=auto");
    // The TPM measured the bad UKI; the log the agent sends says the good one.
    let s = booted(measured(&bad), measured(&good));
    let pinned = write_policy(&s, "good-policy.json", rules_of(&good));
    let o = s.run_with_policy("attest", None, &pinned, &[]);
    assert_exit(&o, exit_codes::REJECTED);
    let out = text(&o);
    let replay = out
        .lines()
        .find(|l| l.starts_with("cvmctl: rejected: firmware_log_replay"))
        .unwrap_or_else(|| panic!("{out}"));
    for pcr in [4, 9, 11] {
        assert!(replay.contains(&format!("PCR {pcr}: the log gives")), "{replay}");
    }
    assert!(out.contains("cvmctl: rejected: tpm_event_pcr_4: expected"), "{out}");
    assert!(out.contains("found the event log does not reproduce PCR 4"), "{out}");

    // A policy without PCR or event rules pins the image by SNP alone: the
    // mismatch is shown, and the agent accepted.
    let plain = write_policy(&s, "plain.json", serde_json::json!({"require_vtpm": true}));
    let o = s.run_with_policy("attest", None, &plain, &["--verbose"]);
    assert_exit(&o, exit_codes::OK);
    let out = text(&o);
    assert!(out.contains("SKIP  firmware_log_replay") && out.contains("PCR 4: the log gives"), "{out}");
    assert!(
        out.contains("the policy pins no PCR or event, so the image is pinned by the SNP measurement alone"),
        "{out}"
    );
}

#[test]
fn without_a_firmware_log_the_boot_pcrs_are_still_quoted_and_event_rules_fail() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_uki(dir.path(), "good", "console=ttyS0 cvm.tee=auto");
    let m = measured(&good);
    // The firmware measured the good UKI but the agent has no log to send.
    let s = Scenario::start(Options {
        vtpm: true,
        firmware: Some(Box::new(move |_, tcti| {
            firmware::extend(tcti, &firmware::uki_boot(&m, INITRD));
            vec![("CVM_FIRMWARE_LOG".into(), "none".into())]
        })),
        ..Options::default()
    });
    let pinned = write_policy(&s, "good-policy.json", rules_of(&good));
    let o = s.run_with_policy("attest", None, &pinned, &["--verbose"]);
    assert_exit(&o, exit_codes::REJECTED);
    let out = text(&o);
    // The PCR values are the TPM's, so their rules pass; the event rule needs the log.
    assert!(out.contains("PASS  tpm_pcr_11") && out.contains("PASS  tpm_pcr_9"), "{out}");
    assert!(
        out.contains("cvmctl: rejected: firmware_log_format: expected the firmware's event log"),
        "{out}"
    );
    assert!(out.contains("no firmware event log configured"), "{out}");
    assert!(out.contains("cvmctl: rejected: tpm_event_pcr_4"), "{out}");
    assert!(s.log().contains("vTPM: no firmware event log"), "{}", s.log());
}
