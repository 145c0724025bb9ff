//! Errors of this crate. A leaf: it names the other modules' values but
//! depends on none of them (but `Product`), so that no module's error type
//! makes an import cycle.

use der::asn1::ObjectIdentifier;

/// A malformed or missing AMD extension.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate extension {name} ({oid}): {problem}")]
pub struct ExtensionError {
    /// The extension's name in AMD's specification.
    pub name: &'static str,
    /// Its OID.
    pub oid: ObjectIdentifier,
    /// What is wrong with it.
    pub problem: String,
}

/// A report that cannot be parsed: hostile or corrupt input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The report is not exactly 1184 bytes long.
    #[error("report length: expected {expected} bytes, found {found}")]
    Length {
        /// 1184.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The version field names a format this crate does not know.
    #[error("report version: expected 2, 3 or 5, found {found}")]
    UnsupportedVersion {
        /// The version field.
        found: u32,
    },
}

/// A certificate that cannot be read or does not have the shape AMD's have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Not PEM or DER X.509.
    #[error("{what}: not an X.509 certificate in PEM or DER: {reason}")]
    Decode {
        /// Which certificate (e.g. "vcek.der").
        what: String,
        /// The decoder's message.
        reason: String,
    },
    /// DER that re-encodes differently: the signed bytes would be ambiguous.
    #[error("{what}: certificate is not in canonical DER")]
    NotCanonical {
        /// Which certificate.
        what: String,
    },
    /// A malformed AMD extension.
    #[error("{what}: {source}")]
    Extension {
        /// Which certificate.
        what: String,
        /// The extension problem.
        #[source]
        source: ExtensionError,
    },
    /// Chain material for a product that has none built in and none was given.
    #[error("no {what} for {product}: none is built in, pass it explicitly")]
    Missing {
        /// "ASK", "ASVK" or "ARK".
        what: &'static str,
        /// The product.
        product: crate::Product,
    },
}

/// A verification policy that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The JSON is malformed, or a field is unknown, mistyped or out of range.
    #[error("policy field `{path}`: {message}")]
    Field {
        /// Where in the document (e.g. `min_tcb.snp`; `.` for the whole).
        path: String,
        /// What is wrong there.
        message: String,
    },
}
