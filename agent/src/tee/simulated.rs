//! Software SNP for development and tests. Not secure.

use cvm_evidence::der::Encode;
use cvm_evidence::simulator::SimulatedChain;

use super::TeeSettings;
use super::{TeeError, TeeEvidence, TeeProvider};

/// Reports signed by a simulated AMD chain, with the measurement the
/// configuration (standing in for the platform) gives.
pub struct Simulated {
    chain: SimulatedChain,
    measurement: [u8; 48],
}

impl Simulated {
    /// Loads the chain bundle named by `simulated_chain`.
    pub fn from_settings(config: TeeSettings<'_>) -> Result<Simulated, TeeError> {
        let err = |message: String| TeeError { provider: "simulated", message };
        let path = config.simulated_chain.ok_or_else(|| err("simulated_chain is not set".into()))?;
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let chain =
            SimulatedChain::from_pem_bundle(&text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        Ok(Simulated { chain, measurement: config.simulated_measurement })
    }
}

impl TeeProvider for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn report(&self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeError> {
        let err = |message: String| TeeError { provider: "simulated", message };
        let mut body = self.chain.report_template();
        body.report_data = *report_data;
        body.measurement = self.measurement;
        let report = self.chain.sign(&body).map_err(|e| err(e.to_string()))?;
        let der = |c: &cvm_evidence::certs::Certificate| c.to_der().map_err(|e| err(e.to_string()));
        Ok(TeeEvidence {
            report: report.raw().to_vec(),
            vek: Some(der(self.chain.vek())?),
            ask: Some(der(self.chain.ask())?),
            ark: Some(der(self.chain.ark())?),
        })
    }
}
