//! The vTPM: an attestation key, PCR extends of each measured event, quotes.
//!
//! Through tss-esapi (tpm2-tss). At start the agent opens the TCTI from the
//! configuration (`tpm_tcti`, default `device:/dev/tpmrm0`, the kernel's
//! resource manager), checks that its PCR (`tpm_pcr`, default 15) is still
//! zero in every bank it will use, creates the TCG default ECC P-256
//! endorsement key and under it an ECDSA/SHA-256 attestation key (a restricted
//! signing key: the TPM signs only what it generated itself with it), and
//! keeps the AK loaded. The AK's public area goes into the boot evidence,
//! where SNP's REPORT_DATA binds its SHA-256.
//!
//! Each event record ([`cvm_evidence::eventlog`]) is extended into the PCR
//! in the SHA-256 bank and, when the TPM has it allocated, the SHA-384 bank,
//! each with its own digest of the record. Quotes cover that PCR in those
//! banks, with the client's nonce as qualifying data.
//!
//! Why PCR 15 by default: PCRs 0–15 are reset only when the platform resets
//! (16 is the debug PCR and 23 the application PCR, both resettable by
//! software; 17–22 belong to dynamic launch), so nothing can rewind the
//! agent's measurements short of a reboot. Of 0–15, 0–7 belong to firmware,
//! 8–9 to boot loaders and the kernel (the EFI stub measures the initrd into
//! 9), 10 to IMA, 11–13 to systemd's UKI stub and 14 to shim; 15 is systemd's
//! system-identity PCR, which a RAM-only image without systemd never uses.
//! The agent refuses a PCR that is not zero at start rather than guess what
//! else was extended into it. On Azure the same holds: the paravisor's vTPM
//! lets a guest extend PCRs 0-15 and 23 (17-22 need locality 4, which only
//! the paravisor has), and nothing there uses 15.
//!
//! On GCP the vTPM is Google's, and Google provisions an attestation key
//! for it: a certificate from Google's EK/AK CA in NV index 0x01c10002
//! (ECC; 0x01c10000 for RSA) and the key's template beside it. When such a
//! certificate is there, the agent quotes with that key instead of making
//! its own (the primary key the template makes in the endorsement
//! hierarchy, used with its own scheme) and sends the certificate with its
//! quotes, so that a verifier learns that the quotes come from Google's
//! vTPM (`cvm_evidence::gcp`).
//!
//! On Azure (`tee = azure`) the agent creates no key: it quotes with the
//! paravisor's RSA attestation key at persistent handle 0x81000003
//! ([`AkSource::Persistent`]), whose public key the paravisor puts in the
//! SNP-signed runtime claims, and it hands the paravisor its user data and
//! reads its reports through NV indices ([`Vtpm::nv_write`], [`Vtpm::nv_read`]).
//!
//! Measured boot: next to the quote of its own PCR, the agent quotes the
//! boot PCRs ([`BOOT_PCRS`]) with its own in the SHA-256 bank, reads their
//! values, and sends the firmware's TCG event log (read once at start from
//! securityfs, `firmware_log`), so that a verifier can replay what the
//! firmware, the UKI's stub and the kernel's EFI stub measured
//! (`cvm_evidence::measured_boot`).

use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use cvm_evidence::eventlog::PcrBank;
use cvm_protocol::api::VtpmKind;
use tss_esapi::abstraction::{ak, ek, DefaultKey};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::handles::{
    KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Data, Digest, DigestValues, HashScheme, MaxNvBuffer, NvPublicBuilder, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, SignatureScheme,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

/// The TCTI used when the configuration names none.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// The PCR used when the configuration names none (see the module documentation).
pub const DEFAULT_PCR: u8 = 15;

/// The PCRs of the boot quote besides the agent's own: those the firmware
/// (0-7), boot loaders and the kernel's EFI stub (8, 9), systemd-stub
/// (11-13) and shim (14) extend before the kernel runs, all of which the
/// firmware's event log records. PCR 10 is IMA's, which the kernel extends
/// after boot (its log is another), so it is left out.
pub const BOOT_PCRS: [u8; 14] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14];

/// The largest firmware event log the agent sends (real ones are tens of KiB).
pub const MAX_FIRMWARE_LOG: u64 = 1 << 20;

/// The PCRs that only a platform reset resets, and their handles.
const PCR_HANDLES: [PcrHandle; 16] = [
    PcrHandle::Pcr0,
    PcrHandle::Pcr1,
    PcrHandle::Pcr2,
    PcrHandle::Pcr3,
    PcrHandle::Pcr4,
    PcrHandle::Pcr5,
    PcrHandle::Pcr6,
    PcrHandle::Pcr7,
    PcrHandle::Pcr8,
    PcrHandle::Pcr9,
    PcrHandle::Pcr10,
    PcrHandle::Pcr11,
    PcrHandle::Pcr12,
    PcrHandle::Pcr13,
    PcrHandle::Pcr14,
    PcrHandle::Pcr15,
];

/// A vTPM operation that failed; says which step and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("vTPM ({tcti}) {step}: {message}")]
pub struct VtpmError {
    /// The TCTI in use.
    pub tcti: String,
    /// What the agent was doing.
    pub step: &'static str,
    /// What went wrong.
    pub message: String,
}

/// A quote as the TPM made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmQuote {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The banks quoted, in the quote's order.
    pub banks: Vec<PcrBank>,
}

/// A quote of the boot PCRs as the TPM made it, with the values read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootQuote {
    /// Marshalled TPMS_ATTEST.
    pub attest: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// Each PCR quoted, ascending, with its SHA-256 value.
    pub pcrs: Vec<(u32, Vec<u8>)>,
}

/// Where the attestation key comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AkSource {
    /// The agent creates an ECC P-256 AK under the TCG default EK.
    Created,
    /// A key the platform made persistent at this handle (Azure's paravisor:
    /// 0x81000003), used with its own signing scheme.
    Persistent(u32),
}

/// An open vTPM with a loaded attestation key.
pub struct Vtpm {
    context: Mutex<Context>,
    ak: KeyHandle,
    /// The quote scheme: ECDSA/SHA-256 for the key the agent created, the
    /// key's own (TPM_ALG_NULL) for a persistent one.
    scheme: SignatureScheme,
    ak_public: Vec<u8>,
    ak_certificate: Option<Vec<u8>>,
    tcti: String,
    pcr: u8,
    banks: Vec<PcrBank>,
    kind: VtpmKind,
    detail: String,
    firmware_log: Result<Vec<u8>, String>,
}

impl Vtpm {
    /// Opens the TPM behind `tcti`, checks that `pcr` is unused, and creates the EK and AK.
    pub fn open(tcti: &str, pcr: u8) -> Result<Vtpm, VtpmError> {
        Vtpm::open_with(tcti, pcr, AkSource::Created)
    }

    /// [`Vtpm::open`] with the attestation key from `ak`.
    pub fn open_with(tcti: &str, pcr: u8, ak_source: AkSource) -> Result<Vtpm, VtpmError> {
        let err = |step: &'static str| {
            let tcti = tcti.to_owned();
            move |e: tss_esapi::Error| VtpmError { tcti: tcti.clone(), step, message: e.to_string() }
        };
        if usize::from(pcr) >= PCR_HANDLES.len() {
            return Err(VtpmError {
                tcti: tcti.to_owned(),
                step: "choosing the PCR",
                message: format!("PCR {pcr} is not one of 0-15, which only a platform reset resets"),
            });
        }
        let conf = TctiNameConf::from_str(tcti).map_err(|e| VtpmError {
            tcti: tcti.to_owned(),
            step: "reading the TCTI",
            message: format!("{e} (expected device:PATH, swtpm:host=H,port=P, mssim:... or tabrmd:...)"),
        })?;
        let mut context = Context::new(conf).map_err(err("connecting"))?;

        // Which of our banks the TPM has allocated, and that the PCR is fresh in each.
        let (_, selected, values) = context
            .pcr_read(selection(&[PcrBank::Sha256, PcrBank::Sha384], pcr)?)
            .map_err(err("reading the PCR"))?;
        let banks = banks_in(&selected);
        if !banks.contains(&PcrBank::Sha256) {
            return Err(VtpmError {
                tcti: tcti.to_owned(),
                step: "checking PCR banks",
                message: "the SHA-256 PCR bank is not allocated".into(),
            });
        }
        for (bank, value) in banks.iter().zip(values.value()) {
            if value.iter().any(|b| *b != 0) {
                return Err(VtpmError {
                    tcti: tcti.to_owned(),
                    step: "checking the PCR",
                    message: format!(
                        "PCR {pcr} ({bank}) is already extended ({}): something else uses it, or the agent \
                         restarted without a reboot; choose another PCR with tpm_pcr, or reboot",
                        hex::encode(value.value())
                    ),
                });
            }
        }
        if !banks.contains(&PcrBank::Sha384) {
            log::warn!("vTPM: the SHA-384 PCR bank is not allocated; extending SHA-256 only");
        }

        let mut ak_certificate = None;
        let (ak, ak_public, scheme) = match ak_source {
            AkSource::Created => match google_ak(&mut context) {
                Ok(Some(google)) => {
                    log::info!(
                        "vTPM: an attestation-key certificate is provisioned at NV 0x{:08x} (GCP): quoting \
                         with the key it certifies",
                        google.nv_index
                    );
                    ak_certificate = Some(google.certificate);
                    (google.handle, google.public, SignatureScheme::Null)
                }
                Ok(None) => {
                    let (ak, public) = own_ak(&mut context).map_err(|(step, e)| err(step)(e))?;
                    let scheme =
                        SignatureScheme::EcDsa { hash_scheme: HashScheme::new(HashingAlgorithm::Sha256) };
                    (ak, public, scheme)
                }
                Err((step, e)) => return Err(err(step)(e)),
            },
            AkSource::Persistent(handle) => {
                let tpm_handle =
                    PersistentTpmHandle::new(handle).map_err(err("naming the attestation key"))?;
                let object = context
                    .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle)))
                    .map_err(|e| VtpmError {
                        tcti: tcti.to_owned(),
                        step: "finding the attestation key",
                        message: format!("no key at persistent handle 0x{handle:08x}: {e}"),
                    })?;
                let ak = KeyHandle::from(object);
                let (public, _, _) = context
                    .execute_without_session(|ctx| ctx.read_public(ak))
                    .map_err(err("reading the attestation key"))?;
                let ak_public = public.marshall().map_err(err("encoding the attestation key"))?;
                (ak, ak_public, SignatureScheme::Null)
            }
        };
        let (kind, mut detail) = describe(tcti);
        if ak_certificate.is_some() {
            detail.push_str("; attestation key certified by the vTPM's provider (NV certificate)");
        }
        Ok(Vtpm {
            context: Mutex::new(context),
            ak,
            scheme,
            ak_public,
            ak_certificate,
            tcti: tcti.to_owned(),
            pcr,
            banks,
            kind,
            detail,
            firmware_log: Err("not read".into()),
        })
    }

    /// Reads the firmware's event log from `path` (at most
    /// [`MAX_FIRMWARE_LOG`] bytes), or notes why there is none.
    pub fn read_firmware_log(&mut self, path: Option<&std::path::Path>) {
        use std::io::Read as _;
        self.firmware_log = match path {
            None => {
                Err("no firmware event log configured (firmware_log = none, or a TPM over a socket)".into())
            }
            Some(path) => std::fs::File::open(path)
                .and_then(|f| {
                    let mut bytes = Vec::new();
                    f.take(MAX_FIRMWARE_LOG + 1).read_to_end(&mut bytes)?;
                    Ok(bytes)
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|bytes| {
                    if bytes.len() as u64 > MAX_FIRMWARE_LOG {
                        Err(format!("{} is larger than {MAX_FIRMWARE_LOG} bytes", path.display()))
                    } else {
                        Ok(bytes)
                    }
                }),
        };
    }

    /// The firmware's event log, or why there is none.
    pub fn firmware_log(&self) -> Result<&[u8], &str> {
        self.firmware_log.as_deref().map_err(String::as_str)
    }

    /// The AK's marshalled TPMT_PUBLIC.
    pub fn ak_public(&self) -> &[u8] {
        &self.ak_public
    }

    /// The attestation key's certificate (DER) as the vTPM's provider
    /// provisioned it in NV storage (GCP), if it did.
    pub fn ak_certificate(&self) -> Option<&[u8]> {
        self.ak_certificate.as_deref()
    }

    /// The PCR extended.
    pub fn pcr(&self) -> u8 {
        self.pcr
    }

    /// The banks extended and quoted, in quote order.
    pub fn banks(&self) -> &[PcrBank] {
        &self.banks
    }

    /// Where this vTPM lives, as far as the agent can tell, and how it was reached.
    pub fn kind(&self) -> (VtpmKind, &str) {
        (self.kind, &self.detail)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Context> {
        // A panic inside a TPM call leaves the context as usable as any
        // failed call does; the next call reports its own error.
        self.context.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, step: &'static str) -> impl Fn(tss_esapi::Error) -> VtpmError + '_ {
        move |e| VtpmError { tcti: self.tcti.clone(), step, message: e.to_string() }
    }

    /// Extends the PCR with each bank's digest of `record`.
    pub fn extend(&self, record: &[u8]) -> Result<(), VtpmError> {
        let mut values = DigestValues::new();
        for bank in &self.banks {
            let digest = Digest::try_from(bank.digest(record)).map_err(self.error("extending the PCR"))?;
            values.set(hashing(*bank), digest);
        }
        let handle = PCR_HANDLES[usize::from(self.pcr)];
        self.lock()
            .execute_with_session(Some(AuthSession::Password), |ctx| ctx.pcr_extend(handle, values))
            .map_err(self.error("extending the PCR"))
    }

    /// A quote of the PCR in every bank over `nonce`: the marshalled
    /// TPMS_ATTEST and TPMT_SIGNATURE, and the banks in the quote's order.
    pub fn quote(&self, nonce: &[u8; 32]) -> Result<TpmQuote, VtpmError> {
        let data = Data::try_from(nonce.to_vec()).map_err(self.error("quoting"))?;
        let pcrs = selection(&self.banks, self.pcr).map_err(|mut e| {
            e.tcti.clone_from(&self.tcti);
            e
        })?;
        // tss-esapi's selection builder orders banks by a hash map: take the order it built.
        let order = banks_in(&pcrs);
        let scheme = self.scheme;
        let (attest, signature) = self
            .lock()
            .execute_with_nullauth_session(|ctx| ctx.quote(self.ak, data, scheme, pcrs))
            .map_err(self.error("quoting"))?;
        Ok(TpmQuote {
            attest: attest.marshall().map_err(self.error("encoding the quote"))?,
            signature: signature.marshall().map_err(self.error("encoding the signature"))?,
            banks: order,
        })
    }

    /// A quote over `nonce` of the boot PCRs and the agent's own, SHA-256
    /// bank, with the values read just before (nothing extends them in
    /// between: the boot PCRs are the firmware's, and the caller holds the
    /// event log that alone extends the agent's).
    pub fn boot_quote(&self, nonce: &[u8; 32]) -> Result<BootQuote, VtpmError> {
        let mut pcrs: Vec<u8> = BOOT_PCRS.to_vec();
        pcrs.push(self.pcr);
        pcrs.sort_unstable();
        pcrs.dedup();
        let slots = pcrs
            .iter()
            .map(|p| PcrSlot::try_from(1u32 << p))
            .collect::<Result<Vec<PcrSlot>, _>>()
            .map_err(self.error("selecting the boot PCRs"))?;
        let selection = PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &slots)
            .build()
            .map_err(self.error("selecting the boot PCRs"))?;
        let data = Data::try_from(nonce.to_vec()).map_err(self.error("quoting the boot PCRs"))?;
        let scheme = self.scheme;
        let mut ctx = self.lock();
        let read = tss_esapi::abstraction::pcr::read_all(&mut ctx, selection.clone())
            .map_err(self.error("reading the boot PCRs"))?;
        let bank = read.pcr_bank(HashingAlgorithm::Sha256).ok_or_else(|| VtpmError {
            tcti: self.tcti.clone(),
            step: "reading the boot PCRs",
            message: "the TPM returned no SHA-256 values".into(),
        })?;
        let mut values = Vec::with_capacity(pcrs.len());
        for (pcr, slot) in pcrs.iter().zip(&slots) {
            let digest = bank.get_digest(*slot).ok_or_else(|| VtpmError {
                tcti: self.tcti.clone(),
                step: "reading the boot PCRs",
                message: format!("the TPM returned no value for PCR {pcr}"),
            })?;
            values.push((u32::from(*pcr), digest.value().to_vec()));
        }
        let (attest, signature) = ctx
            .execute_with_nullauth_session(|c| c.quote(self.ak, data, scheme, selection))
            .map_err(self.error("quoting the boot PCRs"))?;
        Ok(BootQuote {
            attest: attest.marshall().map_err(self.error("encoding the boot quote"))?,
            signature: signature.marshall().map_err(self.error("encoding the boot quote's signature"))?,
            pcrs: values,
        })
    }

    /// Writes `data` at offset 0 of NV index `index` (in pieces the TPM
    /// takes), with owner
    /// authorisation, defining the index (`data`'s size, owner read and
    /// write) when it does not exist yet: how a guest hands Azure's
    /// paravisor its user data.
    pub fn nv_write(&self, index: u32, data: &[u8]) -> Result<(), VtpmError> {
        let step = "writing the NV index";
        let tpm_index = NvIndexTpmHandle::new(index).map_err(self.error(step))?;
        let mut ctx = self.lock();
        let chunk =
            tss_esapi::abstraction::nv::max_nv_buffer_size(&mut ctx).map_err(self.error(step))?.max(1);
        let handle = match ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_index.into())) {
            Ok(object) => NvIndexHandle::from(object),
            Err(_) => {
                let attributes = NvIndexAttributesBuilder::new()
                    .with_owner_write(true)
                    .with_owner_read(true)
                    .build()
                    .map_err(self.error("defining the NV index"))?;
                let public = NvPublicBuilder::new()
                    .with_nv_index(tpm_index)
                    .with_index_name_algorithm(HashingAlgorithm::Sha256)
                    .with_index_attributes(attributes)
                    .with_data_area_size(data.len())
                    .build()
                    .map_err(self.error("defining the NV index"))?;
                ctx.execute_with_session(Some(AuthSession::Password), |c| {
                    c.nv_define_space(Provision::Owner, None, public)
                })
                .map_err(self.error("defining the NV index"))?
            }
        };
        let written = ctx.execute_with_session(Some(AuthSession::Password), |c| {
            for (i, part) in data.chunks(chunk).enumerate() {
                let offset = u16::try_from(i * chunk).map_err(|_| {
                    tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::WrongParamSize)
                })?;
                c.nv_write(NvAuth::Owner, handle, MaxNvBuffer::try_from(part.to_vec())?, offset)?;
            }
            Ok(())
        });
        // The index stays in the TPM; only ESYS's handle to it is released.
        let mut object = ObjectHandle::from(handle);
        let _ = ctx.tr_close(&mut object);
        written.map_err(self.error(step))
    }

    /// Reads all of NV index `index` with owner authorisation, refusing one
    /// larger than `max` bytes (the TPM bounds an index to 64 KiB anyway).
    pub fn nv_read(&self, index: u32, max: usize) -> Result<Vec<u8>, VtpmError> {
        let step = "reading the NV index";
        let tpm_index = NvIndexTpmHandle::new(index).map_err(self.error(step))?;
        let bytes = self
            .lock()
            .execute_with_session(Some(AuthSession::Password), |c| {
                tss_esapi::abstraction::nv::read_full(c, NvAuth::Owner, tpm_index)
            })
            .map_err(|e| VtpmError {
                tcti: self.tcti.clone(),
                step,
                message: format!("NV index 0x{index:08x}: {e}"),
            })?;
        if bytes.len() > max {
            return Err(VtpmError {
                tcti: self.tcti.clone(),
                step,
                message: format!("NV index 0x{index:08x} holds {} bytes, more than {max}", bytes.len()),
            });
        }
        Ok(bytes)
    }

    /// The PCR's current value in each bank (for diagnostics and tests).
    pub fn read(&self) -> Result<Vec<(PcrBank, Vec<u8>)>, VtpmError> {
        let pcrs = selection(&self.banks, self.pcr)?;
        let (_, read, values) = self.lock().pcr_read(pcrs).map_err(self.error("reading the PCR"))?;
        Ok(banks_in(&read).into_iter().zip(values.value().iter().map(|d| d.value().to_vec())).collect())
    }
}

/// The TCG default EK (ECC P-256) and under it an ECDSA/SHA-256
/// attestation key of the agent's own: its handle and marshalled public area.
fn own_ak(context: &mut Context) -> Result<(KeyHandle, Vec<u8>), (&'static str, tss_esapi::Error)> {
    let ek = ek::create_ek_object(context, AsymmetricAlgorithm::Ecc, DefaultKey)
        .map_err(|e| ("creating the endorsement key", e))?;
    let created = ak::create_ak(
        context,
        ek,
        HashingAlgorithm::Sha256,
        SignatureSchemeAlgorithm::EcDsa,
        None,
        DefaultKey,
    )
    .map_err(|e| ("creating the attestation key", e))?;
    let public = created.out_public.marshall().map_err(|e| ("encoding the attestation key", e))?;
    let ak = ak::load_ak(context, ek, None, created.out_private, created.out_public)
        .map_err(|e| ("loading the attestation key", e))?;
    // Without a resource manager (swtpm, mssim) transient objects stay
    // in the TPM's few slots; the EK is not needed any more.
    context.flush_context(ek.into()).map_err(|e| ("flushing the endorsement key", e))?;
    Ok((ak, public))
}

/// An attestation key that the vTPM's provider certified (GCP).
struct GoogleAk {
    handle: KeyHandle,
    public: Vec<u8>,
    certificate: Vec<u8>,
    nv_index: u32,
}

/// Google's attestation key, when the vTPM has its certificate in NV
/// storage: the key is the primary key of the endorsement hierarchy made
/// from the template beside the certificate, ECC preferred (what Google's
/// go-tpm-tools does). `None` when no certificate is provisioned.
fn google_ak(context: &mut Context) -> Result<Option<GoogleAk>, (&'static str, tss_esapi::Error)> {
    use cvm_evidence::gcp::{AK_CERT_NV_ECC, AK_CERT_NV_RSA, AK_TEMPLATE_NV_ECC, AK_TEMPLATE_NV_RSA};
    use tss_esapi::abstraction::nv;
    use tss_esapi::interface_types::resource_handles::Hierarchy;
    use tss_esapi::structures::Public;
    use tss_esapi::traits::UnMarshall;

    let read = |context: &mut Context, index: u32| -> Result<Vec<u8>, tss_esapi::Error> {
        let handle = NvIndexTpmHandle::new(index)?;
        context.execute_with_nullauth_session(|ctx| nv::read_full(ctx, NvAuth::Owner, handle))
    };
    for (cert_index, template_index) in
        [(AK_CERT_NV_ECC, AK_TEMPLATE_NV_ECC), (AK_CERT_NV_RSA, AK_TEMPLATE_NV_RSA)]
    {
        let certificate = match read(context, cert_index) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("vTPM: no attestation-key certificate at NV 0x{cert_index:08x}: {e}");
                continue;
            }
        };
        let template =
            read(context, template_index).map_err(|e| ("reading the provider's AK template", e))?;
        let template =
            Public::unmarshall(&template).map_err(|e| ("reading the provider's AK template", e))?;
        let created = context
            .execute_with_nullauth_session(|ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(|e| ("creating the provider's attestation key", e))?;
        let public = created.out_public.marshall().map_err(|e| ("encoding the attestation key", e))?;
        return Ok(Some(GoogleAk { handle: created.key_handle, public, certificate, nv_index: cert_index }));
    }
    Ok(None)
}

/// Our banks in a selection, in its order.
fn banks_in(list: &PcrSelectionList) -> Vec<PcrBank> {
    list.get_selections()
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| match s.hashing_algorithm() {
            HashingAlgorithm::Sha256 => Some(PcrBank::Sha256),
            HashingAlgorithm::Sha384 => Some(PcrBank::Sha384),
            _ => None,
        })
        .collect()
}

fn hashing(bank: PcrBank) -> HashingAlgorithm {
    match bank {
        PcrBank::Sha256 => HashingAlgorithm::Sha256,
        PcrBank::Sha384 => HashingAlgorithm::Sha384,
    }
}

fn selection(banks: &[PcrBank], pcr: u8) -> Result<PcrSelectionList, VtpmError> {
    let bad = |e: tss_esapi::Error| VtpmError {
        tcti: String::new(),
        step: "selecting the PCR",
        message: e.to_string(),
    };
    let slot = PcrSlot::try_from(1u32 << pcr).map_err(bad)?;
    banks
        .iter()
        .fold(PcrSelectionListBuilder::new(), |b, bank| b.with_selection(hashing(*bank), &[slot]))
        .build()
        .map_err(bad)
}

/// What kind of vTPM a TCTI reaches. Only the kernel's `tpm-svsm` driver
/// means a vTPM inside the TEE (the SVSM at VMPL0); every other device is one
/// the host provides as far as the guest can tell, and a socket TCTI
/// (swtpm, mssim) reaches a TPM outside the guest.
fn describe(tcti: &str) -> (VtpmKind, String) {
    let Some(rest) = tcti.strip_prefix("device") else {
        return (VtpmKind::Unverified, format!("{tcti}: a TPM reached over a socket, outside the TEE"));
    };
    let path = rest.strip_prefix(':').filter(|p| !p.is_empty()).unwrap_or("/dev/tpm0");
    let name = std::path::Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or("");
    let tpm = name.strip_prefix("tpmrm").map(|n| format!("tpm{n}")).unwrap_or_else(|| name.to_owned());
    let driver = std::fs::read_link(format!("/sys/class/tpm/{tpm}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver.as_deref() {
        Some("tpm-svsm") => (VtpmKind::Svsm, format!("{tcti}, kernel driver tpm-svsm")),
        Some(d) => (VtpmKind::Unverified, format!("{tcti}, kernel driver {d}")),
        None => (VtpmKind::Unverified, format!("{tcti}, kernel driver unknown")),
    }
}

/// Where the firmware's event log of the TPM behind `tcti` is: securityfs's
/// `tpmN/binary_bios_measurements` for the kernel's `/dev/tpmN` or
/// `/dev/tpmrmN`; none for a TPM reached over a socket, whose log (if any)
/// is not this machine's.
pub fn default_firmware_log(tcti: &str) -> Option<std::path::PathBuf> {
    let path =
        tcti.strip_prefix("device")?.strip_prefix(':').filter(|p| !p.is_empty()).unwrap_or("/dev/tpm0");
    let name = std::path::Path::new(path).file_name()?.to_str()?;
    let n = name.strip_prefix("tpmrm").or_else(|| name.strip_prefix("tpm"))?;
    n.parse::<u32>().ok()?;
    Some(format!("/sys/kernel/security/tpm{n}/binary_bios_measurements").into())
}

/// Whether NV index `index` is defined in the TPM behind `tcti` (how
/// `tee = auto` recognises Azure's paravisor). Any failure is a no.
pub fn nv_index_exists(tcti: &str, index: u32) -> bool {
    let Ok(conf) = TctiNameConf::from_str(tcti) else { return false };
    let Ok(mut context) = Context::new(conf) else { return false };
    let Ok(handle) = NvIndexTpmHandle::new(index) else { return false };
    context.execute_without_session(|c| c.tr_from_tpm_public(handle.into())).is_ok()
}

/// The vTPM as the log sees it.
#[derive(Clone, Default)]
pub enum VtpmState {
    /// `vtpm = off`.
    #[default]
    Off,
    /// `vtpm = optional` and none could be used; why.
    Unavailable(String),
    /// In use: every event is extended into it.
    Active(Arc<Vtpm>),
    /// An extend failed: the PCR no longer matches the log; why.
    Failed(String),
}

impl VtpmState {
    /// The attestation key's certificate from the vTPM's provider (GCP), when there is one.
    pub fn ak_certificate(&self) -> Option<&[u8]> {
        match self {
            VtpmState::Active(v) => v.ak_certificate(),
            _ => None,
        }
    }

    /// The attestation key's public area, when a vTPM is in use.
    pub fn ak_public(&self) -> Option<Vec<u8>> {
        match self {
            VtpmState::Active(v) => Some(v.ak_public().to_vec()),
            _ => None,
        }
    }
}

/// Whether the agent needs a vTPM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VtpmMode {
    /// Refuse to start without a usable vTPM.
    Required,
    /// Use one if it works; otherwise the evidence says why there is none.
    Optional,
    /// Never use one.
    Off,
}

/// The vTPM's settings: config keys `vtpm`, `tpm_tcti`, `tpm_pcr` and `firmware_log`.
#[derive(Clone, Copy, Debug)]
pub struct VtpmSettings<'a> {
    /// Whether a vTPM is needed.
    pub mode: VtpmMode,
    /// How to reach it.
    pub tcti: &'a str,
    /// The PCR the event log is extended into.
    pub pcr: u8,
    /// The firmware's TCG event log, if any.
    pub firmware_log: Option<&'a std::path::Path>,
    /// Where the attestation key comes from (the TEE decides: Azure's paravisor has its own).
    pub ak: AkSource,
}

/// Opens the vTPM the settings ask for, with the attestation key they name.
///
/// `required` and no usable vTPM is an error (the agent refuses to start);
/// `optional` goes on without one, and the evidence carries the reason.
pub fn start(config: VtpmSettings<'_>) -> Result<VtpmState, VtpmError> {
    if config.mode == VtpmMode::Off {
        log::info!("vTPM: off by configuration");
        return Ok(VtpmState::Off);
    }
    match Vtpm::open_with(config.tcti, config.pcr, config.ak) {
        Ok(mut v) => {
            v.read_firmware_log(config.firmware_log);
            match v.firmware_log() {
                Ok(log) => log::info!("vTPM: the firmware's event log is {} bytes", log.len()),
                Err(why) => log::info!("vTPM: no firmware event log: {why}"),
            }
            let (kind, detail) = v.kind();
            log::info!(
                "vTPM: {detail}; PCR {} in {}; attestation key bound to the boot evidence",
                v.pcr(),
                v.banks().iter().map(ToString::to_string).collect::<Vec<_>>().join("+")
            );
            if let AkSource::Persistent(handle) = config.ak {
                log::info!(
                    "vTPM: quoting with the platform's attestation key at 0x{handle:08x} (Azure: the paravisor's, \
                     bound by its runtime claims)"
                );
            } else if kind == VtpmKind::Unverified {
                log::warn!("vTPM: not known to be inside the TEE; the threat model trusts only an SVSM or paravisor vTPM");
            }
            Ok(VtpmState::Active(Arc::new(v)))
        }
        Err(e) if config.mode == VtpmMode::Optional => {
            log::warn!("{e}; going on without a vTPM (vtpm = optional)");
            Ok(VtpmState::Unavailable(e.to_string()))
        }
        Err(e) => {
            Err(VtpmError { message: format!("{} (vtpm = required: refusing to start)", e.message), ..e })
        }
    }
}
