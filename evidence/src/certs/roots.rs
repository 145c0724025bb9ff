//! AMD's root and intermediate certificates, built in and pinned.
//!
//! The PEM files are the ones AMD's Key Distribution Service serves
//! (`/vcek/v1/<product>/cert_chain`, and `/vlek/v1/<product>/cert_chain` for
//! the Milan ASVK). Each ARK is pinned by the SHA-256 of its DER encoding: a
//! chain is trusted only when its ARK has exactly this fingerprint (or one the
//! caller adds explicitly, see [`TrustAnchors::trust_additional_ark`]).

use x509_cert::Certificate;

use super::{fingerprint, parse_certificate, subject_cn};
use crate::{CertError, Product};

/// A built-in AMD root for one product.
struct BuiltinRoot {
    product: Product,
    ark_pem: &'static str,
    ark_sha256: &'static str,
    ask_pem: &'static str,
    asvk_pem: Option<&'static str>,
}

const BUILTIN: [BuiltinRoot; 3] = [
    BuiltinRoot {
        product: Product::Milan,
        ark_pem: include_str!("roots/milan-ark.pem"),
        ark_sha256: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        ask_pem: include_str!("roots/milan-ask.pem"),
        asvk_pem: Some(include_str!("roots/milan-asvk.pem")),
    },
    BuiltinRoot {
        product: Product::Genoa,
        ark_pem: include_str!("roots/genoa-ark.pem"),
        ark_sha256: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        ask_pem: include_str!("roots/genoa-ask.pem"),
        asvk_pem: None,
    },
    BuiltinRoot {
        product: Product::Turin,
        ark_pem: include_str!("roots/turin-ark.pem"),
        ark_sha256: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        ask_pem: include_str!("roots/turin-ask.pem"),
        asvk_pem: None,
    },
];

fn builtin(product: Product) -> &'static BuiltinRoot {
    // BUILTIN lists every Product variant; the tests check it.
    BUILTIN.iter().find(|r| r.product == product).unwrap_or(&BUILTIN[0])
}

/// The ARKs a verifier accepts: AMD's pinned roots, plus any the caller adds.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    additional: Vec<(Product, Certificate)>,
}

impl TrustAnchors {
    /// AMD's real roots for Milan, Genoa and Turin, and nothing else.
    pub fn amd() -> TrustAnchors {
        TrustAnchors::default()
    }

    /// Also trusts `ark` for the product its subject names (`CN=ARK-<product>`).
    ///
    /// This is how a simulated chain becomes acceptable; it is named so that a
    /// reviewer sees every place that widens trust beyond AMD.
    pub fn trust_additional_ark(&mut self, ark: Certificate) -> Result<(), CertError> {
        let cn = subject_cn(&ark).unwrap_or_default();
        let product =
            cn.strip_prefix("ARK-").and_then(Product::from_name).ok_or_else(|| CertError::Decode {
                what: "trusted ARK".into(),
                reason: format!("subject CN {cn:?} does not name a product as ARK-<Milan|Genoa|Turin>"),
            })?;
        self.additional.push((product, ark));
        Ok(())
    }

    /// SHA-256 fingerprints of every ARK accepted for `product`, AMD's first.
    pub fn ark_fingerprints(&self, product: Product) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let mut amd = [0u8; 32];
        // The constant is 64 valid hex digits; a test decodes every one.
        if hex::decode_to_slice(builtin(product).ark_sha256, &mut amd).is_ok() {
            out.push(amd);
        }
        out.extend(self.additional.iter().filter(|(p, _)| *p == product).map(|(_, c)| fingerprint(c)));
        out
    }

    /// The ARK to use for `product` when the evidence brings none: an added
    /// one if the caller trusted one, else AMD's.
    pub fn default_ark(&self, product: Product) -> Result<Certificate, CertError> {
        if let Some((_, c)) = self.additional.iter().find(|(p, _)| *p == product) {
            return Ok(c.clone());
        }
        parse_certificate(builtin(product).ark_pem.as_bytes(), "built-in ARK")
    }
}

/// AMD's ASK for `product` (signs VCEKs).
pub fn builtin_ask(product: Product) -> Result<Certificate, CertError> {
    parse_certificate(builtin(product).ask_pem.as_bytes(), "built-in ASK")
}

/// AMD's ASVK for `product` (signs VLEKs), where one is built in.
pub fn builtin_asvk(product: Product) -> Result<Certificate, CertError> {
    match builtin(product).asvk_pem {
        Some(pem) => parse_certificate(pem.as_bytes(), "built-in ASVK"),
        None => Err(CertError::Missing { what: "ASVK", product }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_has_a_root_whose_fingerprint_is_pinned() {
        for product in Product::ALL {
            let root = builtin(product);
            assert_eq!(root.product, product);
            let ark = parse_certificate(root.ark_pem.as_bytes(), "ark").unwrap();
            assert_eq!(hex::encode(fingerprint(&ark)), root.ark_sha256, "{product}");
            assert_eq!(subject_cn(&ark).unwrap(), format!("ARK-{product}"));
            let ask = builtin_ask(product).unwrap();
            assert_eq!(subject_cn(&ask).unwrap(), format!("SEV-{product}"));
            assert_eq!(TrustAnchors::amd().ark_fingerprints(product).len(), 1);
        }
        assert!(builtin_asvk(Product::Milan).is_ok());
        assert!(matches!(builtin_asvk(Product::Genoa), Err(CertError::Missing { .. })));
    }
}
