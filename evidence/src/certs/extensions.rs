//! AMD's X.509 extensions on VCEK and VLEK certificates.
//!
//! OIDs from AMD's "Versioned Chip Endorsement Key (VCEK) Certificate and KDS
//! Interface Specification" (#57230), Table 8, under 1.3.6.1.4.1.3704.1.
//! Each extension value holds one DER value (INTEGER or IA5String), except
//! hwID, whose value is the raw chip id bytes.

use der::asn1::{Ia5StringRef, ObjectIdentifier};
use der::Decode;
use x509_cert::Certificate;

use crate::report::TcbParts;
use crate::Product;

/// structVersion: version of the extension set (INTEGER).
pub const STRUCT_VERSION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
/// productName1: "Milan-B0", "Genoa", ... (IA5String).
pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
/// blSPL: boot loader security patch level (INTEGER).
pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// teeSPL (INTEGER).
pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// snpSPL (INTEGER).
pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// spl_4 .. spl_7: reserved levels, zero today (INTEGER).
pub const SPL_4_TO_7: [ObjectIdentifier; 4] = [
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.4"),
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.5"),
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.6"),
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.7"),
];
/// ucodeSPL: microcode patch level (INTEGER).
pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// fmcSPL: FMC patch level, Turin and later (INTEGER).
pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// hwID: the chip id the VCEK belongs to (raw bytes; 64 bytes, 8 on Turin).
pub const HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
/// csp_id: the cloud provider a VLEK was issued to (IA5String).
pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");

pub use crate::error::ExtensionError;

/// The AMD extensions of a VCEK or VLEK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmdExtensions {
    /// productName1, if present.
    pub product_name: Option<String>,
    /// The TCB the key was derived from, decoded from the SPL extensions.
    pub tcb: TcbParts,
    /// hwID (VCEK only).
    pub hw_id: Option<Vec<u8>>,
    /// csp_id (VLEK only).
    pub csp_id: Option<String>,
}

impl AmdExtensions {
    /// Reads the AMD extensions of `cert`; the SPL extensions are required.
    pub fn from_cert(cert: &Certificate) -> Result<AmdExtensions, ExtensionError> {
        let exts = cert.tbs_certificate.extensions.as_deref().unwrap_or(&[]);
        let find =
            |oid: ObjectIdentifier| exts.iter().find(|e| e.extn_id == oid).map(|e| e.extn_value.as_bytes());
        let spl = |name: &'static str, oid: ObjectIdentifier| -> Result<Option<u8>, ExtensionError> {
            find(oid)
                .map(|v| {
                    u8::from_der(v).map_err(|e| ExtensionError {
                        name,
                        oid,
                        problem: format!("not an INTEGER in 0..=255: {e}"),
                    })
                })
                .transpose()
        };
        let required = |name: &'static str, oid: ObjectIdentifier| -> Result<u8, ExtensionError> {
            spl(name, oid)?.ok_or(ExtensionError { name, oid, problem: "missing".into() })
        };
        let text = |name: &'static str, oid: ObjectIdentifier| -> Result<Option<String>, ExtensionError> {
            find(oid)
                .map(|v| {
                    Ia5StringRef::from_der(v).map(|s| s.as_str().to_owned()).map_err(|e| ExtensionError {
                        name,
                        oid,
                        problem: format!("not an IA5String: {e}"),
                    })
                })
                .transpose()
        };
        let product_name = text("productName1", PRODUCT_NAME)?;
        let tcb = TcbParts {
            bootloader: required("blSPL", BL_SPL)?,
            tee: required("teeSPL", TEE_SPL)?,
            snp: required("snpSPL", SNP_SPL)?,
            microcode: required("ucodeSPL", UCODE_SPL)?,
            fmc: spl("fmcSPL", FMC_SPL)?,
        };
        Ok(AmdExtensions {
            product_name,
            tcb,
            hw_id: find(HW_ID).map(<[u8]>::to_vec),
            csp_id: text("csp_id", CSP_ID)?,
        })
    }

    /// The product named by productName1, if any.
    pub fn product(&self) -> Option<Product> {
        self.product_name.as_deref().and_then(Product::from_name)
    }
}
