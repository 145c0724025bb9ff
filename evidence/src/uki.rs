//! Unified kernel images: what a UKI's boot puts into the vTPM, predicted
//! from the file alone, so that owners can pin it.
//!
//! A UKI is systemd's UEFI stub (`linuxx64.efi.stub`) with the kernel, the
//! initrd, the command line and an os-release added as PE sections
//! (`.linux`, `.initrd`, `.cmdline`, `.osrel`). Booting it as
//! `EFI/BOOT/BOOTX64.EFI` measures, in this order (what the project's
//! firmware event log shows; see `testdata/tcglog/`):
//!
//! - **PCR 4** (the firmware): the UKI as a boot application
//!   (`EV_EFI_BOOT_SERVICES_APPLICATION`, its PE/Authenticode SHA-256,
//!   [`crate::pe`]); then, because systemd-stub 252 starts the kernel with
//!   the firmware's `LoadImage`, the kernel's own PE image (the `.linux`
//!   section) as a second boot application.
//! - **PCR 11** (systemd-stub): for each section it knows, in its fixed order
//!   (`.linux`, `.osrel`, `.cmdline`, `.initrd`, `.splash`, `.dtb`,
//!   `.pcrsig` which is never measured, `.pcrpkey`), an `EV_IPL` event of the
//!   section's name with its NUL, then one of the section's data: the value
//!   `systemd-measure calculate --phase=` prints. Debian 12's stub is
//!   systemd 252; later stubs know more sections (`.uname`, `.sbat`, ...),
//!   which the images built here do not have.
//! - **PCR 9** (the Linux EFI stub, 6.x): the command line it was given,
//!   as UEFI LoadOptions (UTF-16 with a NUL; systemd-stub passes `.cmdline`
//!   widened byte by byte), then the initrd it loaded (`.initrd`). A command
//!   line or initrd other than the UKI's changes PCR 9.
//! - **PCR 12** (systemd-stub): a command line from the boot entry's load
//!   options that replaced `.cmdline` (the stub accepts one when Secure
//!   Boot is off), and credentials from the ESP; PCR **13**: system
//!   extensions from the ESP. The images built here need neither, so both
//!   stay zero; a policy pins them to zero to refuse an image whose command
//!   line or initrd the host added to.

use sha2::{Digest as _, Sha256};

use crate::pe::{PeError, PeImage};

/// The sections systemd-stub (252) measures into PCR 11, in its order.
pub const STUB_SECTIONS: [&str; 8] =
    [".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrsig", ".pcrpkey"];
/// The one of them the stub does not measure (it carries PCR signatures).
const UNMEASURED: &str = ".pcrsig";

/// A file that is no UKI this crate can predict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UkiError {
    /// Not a readable PE image.
    #[error("{0}")]
    Pe(#[from] PeError),
    /// No `.linux` section: a UEFI application, but no UKI.
    #[error("not a unified kernel image: no .linux section")]
    NoKernel,
    /// The same stub section twice: which one a stub measures is not defined.
    #[error("the section {0} appears more than once")]
    DuplicateSection(String),
    /// The kernel inside is not a PE image (the stub starts it as one).
    #[error("the kernel in .linux: {0}")]
    Kernel(PeError),
}

/// One section as systemd-stub measures it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasuredSection {
    /// Its name (`.linux`, ...).
    pub name: &'static str,
    /// Its size in bytes.
    pub size: usize,
    /// SHA-256 of its data.
    pub sha256: [u8; 32],
}

/// What booting a UKI measures, predicted from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UkiMeasurements {
    /// PE/Authenticode SHA-256 of the UKI: its PCR 4 boot-application event.
    pub authenticode_sha256: [u8; 32],
    /// PE/Authenticode SHA-256 of the kernel in `.linux`: the second PCR 4
    /// boot-application event.
    pub kernel_authenticode_sha256: [u8; 32],
    /// The sections the stub measures, in its order.
    pub sections: Vec<MeasuredSection>,
    /// PCR 11 (SHA-256 bank) after the stub's measurements.
    pub pcr11_sha256: [u8; 32],
    /// The `.cmdline` section (up to a NUL), if there is one.
    pub cmdline: Option<String>,
    /// PCR 9 (SHA-256 bank) after the Linux EFI stub measured the command
    /// line and the initrd.
    pub pcr9_sha256: [u8; 32],
}

/// `H(pcr || digest)` in the SHA-256 bank.
fn extend(pcr: [u8; 32], digest: &[u8]) -> [u8; 32] {
    Sha256::new().chain_update(pcr).chain_update(digest).finalize().into()
}

/// PCR 11 after systemd-stub measured `sections` (name, data) in its order;
/// sections it does not know, and `.pcrsig`, are left out, as the stub does.
pub fn stub_pcr11(sections: &[(&str, &[u8])]) -> [u8; 32] {
    let mut pcr = [0u8; 32];
    for name in STUB_SECTIONS {
        if name == UNMEASURED {
            continue;
        }
        if let Some((_, data)) = sections.iter().find(|(n, d)| *n == name && !d.is_empty()) {
            let mut named = name.as_bytes().to_vec();
            named.push(0);
            pcr = extend(pcr, &Sha256::digest(&named));
            pcr = extend(pcr, &Sha256::digest(data));
        }
    }
    pcr
}

/// The command line as the Linux EFI stub measures it: UEFI LoadOptions,
/// each byte widened to a UTF-16 unit, with a terminating NUL.
pub fn load_options(cmdline: &[u8]) -> Vec<u8> {
    cmdline.iter().chain(&[0]).flat_map(|b| u16::from(*b).to_le_bytes()).collect()
}

/// PCR 9 after the Linux EFI stub measured `cmdline` (when not empty) and
/// `initrd` (when not empty).
pub fn kernel_stub_pcr9(cmdline: &[u8], initrd: &[u8]) -> [u8; 32] {
    let mut pcr = [0u8; 32];
    if !cmdline.is_empty() {
        pcr = extend(pcr, &Sha256::digest(load_options(cmdline)));
    }
    if !initrd.is_empty() {
        pcr = extend(pcr, &Sha256::digest(initrd));
    }
    pcr
}

/// Predicts what booting the UKI `bytes` measures (see the module documentation).
pub fn measure_uki(bytes: &[u8]) -> Result<UkiMeasurements, UkiError> {
    let pe = PeImage::parse(bytes)?;
    let mut found: Vec<(&'static str, &[u8])> = Vec::new();
    for name in STUB_SECTIONS {
        let mut matching = pe.sections.iter().filter(|s| s.name == name);
        let Some(section) = matching.next() else { continue };
        if matching.next().is_some() {
            return Err(UkiError::DuplicateSection(name.to_owned()));
        }
        found.push((name, pe.section_data(section)?));
    }
    let data = |name: &str| found.iter().find(|(n, _)| *n == name).map(|(_, d)| *d);
    let linux = data(".linux").filter(|d| !d.is_empty()).ok_or(UkiError::NoKernel)?;
    let kernel = PeImage::parse(linux).map_err(UkiError::Kernel)?;
    let cmdline_bytes = data(".cmdline").map(|c| &c[..c.iter().position(|b| *b == 0).unwrap_or(c.len())]);
    let sections = found
        .iter()
        .filter(|(n, d)| *n != UNMEASURED && !d.is_empty())
        .map(|(name, d)| MeasuredSection { name, size: d.len(), sha256: Sha256::digest(d).into() })
        .collect();
    Ok(UkiMeasurements {
        authenticode_sha256: pe.authenticode_sha256()?,
        kernel_authenticode_sha256: kernel.authenticode_sha256().map_err(UkiError::Kernel)?,
        sections,
        pcr11_sha256: stub_pcr11(&found),
        cmdline: cmdline_bytes.map(|c| String::from_utf8_lossy(c).into_owned()),
        pcr9_sha256: kernel_stub_pcr9(cmdline_bytes.unwrap_or_default(), data(".initrd").unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::PcrBank;
    use crate::tcglog;

    #[test]
    fn the_stub_order_is_fixed_whatever_the_file_order() {
        let a = stub_pcr11(&[(".linux", b"k"), (".cmdline", b"c"), (".initrd", b"i")]);
        let b = stub_pcr11(&[(".initrd", b"i"), (".cmdline", b"c"), (".linux", b"k"), (".other", b"x")]);
        assert_eq!(a, b);
        assert_ne!(a, stub_pcr11(&[(".linux", b"k"), (".cmdline", b"C"), (".initrd", b"i")]));
        // .pcrsig is not measured; an empty section is not either.
        assert_eq!(
            a,
            stub_pcr11(&[(".linux", b"k"), (".cmdline", b"c"), (".initrd", b"i"), (".pcrsig", b"s")])
        );
        assert_eq!(a, stub_pcr11(&[(".linux", b"k"), (".cmdline", b"c"), (".initrd", b"i"), (".dtb", b"")]));
    }

    #[test]
    fn pcr_9_and_11_of_the_real_log_are_reproduced_from_the_measured_data() {
        // The fixture's UKI had this command line; its PCR 9 events are the
        // load options and the initrd, whose digest PCR 11's .initrd event
        // repeats.
        let log = tcglog::parse(include_bytes!("../testdata/tcglog/ovmf-swtpm-uki.bin")).unwrap();
        let cmdline = b"console=ttyS0 loglevel=4 cvm.vtpm=off cvm.tee=simulated";
        let pcr9: Vec<&[u8]> = log.events_in(9).map(|e| e.digest(PcrBank::Sha256).unwrap()).collect();
        assert_eq!(pcr9[0], &Sha256::digest(load_options(cmdline))[..]);
        let initrd_digest = log.events_in(11).nth(7).unwrap().digest(PcrBank::Sha256).unwrap();
        assert_eq!(pcr9[1], initrd_digest);
        let replayed = log.replay(PcrBank::Sha256).unwrap();
        let mut pcr = [0u8; 32];
        for d in pcr9 {
            pcr = extend(pcr, d);
        }
        assert_eq!(replayed[9], pcr);
    }

    #[test]
    fn a_uki_is_measured_from_its_sections() {
        let kernel = crate::pe::tests_support::image(&[(".text", b"kernel code")], b"", 0);
        let uki = crate::pe::tests_support::image(
            &[
                (".text", b"stub"),
                (".osrel", b"ID=x\n"),
                (".cmdline", b"console=ttyS0"),
                (".linux", &kernel),
                (".initrd", b"cpio"),
            ],
            b"",
            0,
        );
        let m = measure_uki(&uki).unwrap();
        let names: Vec<&str> = m.sections.iter().map(|s| s.name).collect();
        assert_eq!(names, [".linux", ".osrel", ".cmdline", ".initrd"]);
        assert_eq!(m.cmdline.as_deref(), Some("console=ttyS0"));
        assert_eq!(
            m.pcr11_sha256,
            stub_pcr11(&[
                (".linux", &kernel),
                (".osrel", b"ID=x\n"),
                (".cmdline", b"console=ttyS0"),
                (".initrd", b"cpio")
            ])
        );
        assert_eq!(m.pcr9_sha256, kernel_stub_pcr9(b"console=ttyS0", b"cpio"));
        assert_eq!(
            m.kernel_authenticode_sha256,
            PeImage::parse(&kernel).unwrap().authenticode_sha256().unwrap()
        );
        assert_eq!(m.authenticode_sha256, PeImage::parse(&uki).unwrap().authenticode_sha256().unwrap());

        let no_kernel = crate::pe::tests_support::image(&[(".text", b"stub"), (".cmdline", b"x")], b"", 0);
        assert_eq!(measure_uki(&no_kernel), Err(UkiError::NoKernel));
        let twice = crate::pe::tests_support::image(
            &[(".linux", &kernel), (".cmdline", b"a"), (".cmdline", b"b")],
            b"",
            0,
        );
        assert_eq!(measure_uki(&twice), Err(UkiError::DuplicateSection(".cmdline".into())));
        let not_pe = crate::pe::tests_support::image(&[(".linux", b"not a PE")], b"", 0);
        assert!(matches!(measure_uki(&not_pe), Err(UkiError::Kernel(_))));
    }
}
