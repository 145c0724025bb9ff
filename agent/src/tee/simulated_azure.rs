//! A simulated Azure paravisor on a software TPM, for development and tests.
//! Not secure: the "paravisor" is the agent itself.
//!
//! [`provision`] makes the TPM look like an Azure vTPM: an RSA-2048
//! attestation key (restricted, RSASSA with SHA-256) persistent at
//! 0x81000003. When the agent writes user data to NV index 0x01400002,
//! [`SimulatedParavisor`] does what Microsoft's paravisor does: it puts the
//! key and the user data into runtime claims, has the simulated AMD chain
//! sign an SNP report (VMPL 0) whose REPORT_DATA is the claims' SHA-256, and
//! writes the HCL report to NV index 0x01400001. The agent's own Azure code
//! path (NV write, the deadline-bound read, quotes with the persistent key)
//! runs unchanged.

use std::str::FromStr as _;

use cvm_evidence::azure::{ClaimsHash, HclReport, RsaJwk, RuntimeClaims, AK_HANDLE, NV_HCL_REPORT};
use cvm_evidence::tpm::{AkPublic, KeyParams};
use tss_esapi::abstraction::{ak, ek, DefaultKey};
use tss_esapi::handles::{PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::Provision;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::Context;

use super::azure::Paravisor;
use super::simulated::Simulated;
use super::{TeeError, TeeProvider as _};
use crate::vtpm::Vtpm;

fn err(message: String) -> TeeError {
    TeeError { provider: "simulated-azure", message }
}

/// Makes the TPM behind `tcti` hold an RSA attestation key at 0x81000003,
/// unless it holds one already.
pub fn provision(tcti: &str) -> Result<(), TeeError> {
    let conf = TctiNameConf::from_str(tcti).map_err(|e| err(format!("TCTI {tcti}: {e}")))?;
    let mut ctx = Context::new(conf).map_err(|e| err(format!("TPM {tcti}: {e}")))?;
    let handle = PersistentTpmHandle::new(AK_HANDLE).map_err(|e| err(e.to_string()))?;
    if ctx.execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(handle))).is_ok() {
        return Ok(());
    }
    let step = |what: &'static str| move |e: tss_esapi::Error| err(format!("{what}: {e}"));
    let ek = ek::create_ek_object(&mut ctx, AsymmetricAlgorithm::Ecc, DefaultKey)
        .map_err(step("creating the endorsement key"))?;
    let created = ak::create_ak(
        &mut ctx,
        ek,
        HashingAlgorithm::Sha256,
        SignatureSchemeAlgorithm::RsaSsa,
        None,
        DefaultKey,
    )
    .map_err(step("creating the RSA attestation key"))?;
    let key = ak::load_ak(&mut ctx, ek, None, created.out_private, created.out_public)
        .map_err(step("loading the attestation key"))?;
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.evict_control(Provision::Owner, key.into(), Persistent::Persistent(handle))
    })
    .map_err(step("making the attestation key persistent at 0x81000003"))?;
    ctx.flush_context(key.into()).map_err(step("flushing the transient key"))?;
    ctx.flush_context(ek.into()).map_err(step("flushing the endorsement key"))?;
    log::warn!("simulated Azure: an RSA attestation key made persistent at 0x{AK_HANDLE:08x} of {tcti}");
    Ok(())
}

/// Plays Microsoft's paravisor; see the module documentation.
pub struct SimulatedParavisor {
    snp: Simulated,
}

impl SimulatedParavisor {
    /// A paravisor whose SNP reports `snp` signs.
    pub fn new(snp: Simulated) -> SimulatedParavisor {
        SimulatedParavisor { snp }
    }
}

impl Paravisor for SimulatedParavisor {
    fn user_data_written(&self, vtpm: &Vtpm, user_data: &[u8; 64]) -> Result<(), TeeError> {
        let ak = match AkPublic::parse(vtpm.ak_public()) {
            Ok(AkPublic { key: KeyParams::Rsa { modulus, exponent }, .. }) => {
                RsaJwk { modulus: modulus.iter().copied().skip_while(|&b| b == 0).collect(), exponent }
            }
            Ok(_) => return Err(err("the attestation key at 0x81000003 is not RSA".into())),
            Err(e) => return Err(err(format!("the attestation key at 0x81000003: {e}"))),
        };
        let claims = RuntimeClaims::encode(&ak, user_data, "simulated");
        let report_data = HclReport::report_data_for(&claims, ClaimsHash::Sha256);
        let snp = self.snp.report(&report_data)?;
        let snp: &[u8; cvm_evidence::report::REPORT_LEN] = snp
            .report
            .as_slice()
            .try_into()
            .map_err(|_| err("the simulated SNP report has the wrong length".into()))?;
        let hcl = HclReport::encode(snp, &claims, ClaimsHash::Sha256);
        vtpm.nv_write(NV_HCL_REPORT, &hcl).map_err(|e| err(format!("writing the HCL report: {e}")))
    }
}
