//! TCB_VERSION: the security patch levels of the SNP firmware components.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Product;

/// A raw 64-bit TCB_VERSION as it appears in a report.
///
/// Its byte layout depends on the product: Milan and Genoa put the boot loader
/// in byte 0, TEE in byte 1, SNP in byte 6 and microcode in byte 7; Turin adds
/// an FMC level in byte 0 and packs boot loader, TEE and SNP in bytes 1-3
/// (SEV-SNP ABI, "TCB_VERSION Structure").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TcbVersion(pub u64);

/// A TCB_VERSION decoded into its components for one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TcbParts {
    /// Security patch level of the PSP boot loader.
    pub bootloader: u8,
    /// Security patch level of the PSP operating system (TEE).
    pub tee: u8,
    /// Security patch level of the SNP firmware.
    pub snp: u8,
    /// Security patch level of the CPU microcode.
    pub microcode: u8,
    /// Security patch level of the FMC firmware (Turin and later only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl TcbVersion {
    /// Decodes the components with the byte layout of `product`.
    pub fn parts(self, product: Product) -> TcbParts {
        let b = self.0.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => {
                TcbParts { bootloader: b[0], tee: b[1], snp: b[6], microcode: b[7], fmc: None }
            }
            Product::Turin => {
                TcbParts { fmc: Some(b[0]), bootloader: b[1], tee: b[2], snp: b[3], microcode: b[7] }
            }
        }
    }

    /// Encodes components with the byte layout of `product` (the inverse of [`TcbVersion::parts`]).
    pub fn from_parts(parts: TcbParts, product: Product) -> TcbVersion {
        let mut b = [0u8; 8];
        match product {
            Product::Milan | Product::Genoa => {
                b[0] = parts.bootloader;
                b[1] = parts.tee;
                b[6] = parts.snp;
                b[7] = parts.microcode;
            }
            Product::Turin => {
                b[0] = parts.fmc.unwrap_or(0);
                b[1] = parts.bootloader;
                b[2] = parts.tee;
                b[3] = parts.snp;
                b[7] = parts.microcode;
            }
        }
        TcbVersion(u64::from_le_bytes(b))
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.0)
    }
}

impl TcbParts {
    /// Components of `self` that are below `min`, as (name, found, minimum).
    pub fn below(&self, min: &TcbParts) -> Vec<(&'static str, u8, u8)> {
        let mut out = Vec::new();
        let pairs = [
            ("bootloader", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("microcode", self.microcode, min.microcode),
        ];
        for (name, found, want) in pairs {
            if found < want {
                out.push((name, found, want));
            }
        }
        if let Some(want) = min.fmc {
            let found = self.fmc.unwrap_or(0);
            if found < want {
                out.push(("fmc", found, want));
            }
        }
        out
    }
}

impl fmt::Display for TcbParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milan_layout_matches_real_report() {
        // reported_tcb of the virtee Milan vector: bl 3, tee 0, snp 8, ucode 115.
        let tcb = TcbVersion(u64::from_le_bytes([3, 0, 0, 0, 0, 0, 8, 0x73]));
        let p = tcb.parts(Product::Milan);
        assert_eq!((p.bootloader, p.tee, p.snp, p.microcode, p.fmc), (3, 0, 8, 115, None));
        assert_eq!(TcbVersion::from_parts(p, Product::Milan), tcb);
    }

    #[test]
    fn turin_layout_round_trips() {
        let parts = TcbParts { bootloader: 1, tee: 2, snp: 3, microcode: 4, fmc: Some(5) };
        let tcb = TcbVersion::from_parts(parts, Product::Turin);
        assert_eq!(tcb.0.to_le_bytes(), [5, 1, 2, 3, 0, 0, 0, 4]);
        assert_eq!(tcb.parts(Product::Turin), parts);
    }

    #[test]
    fn below_names_each_low_component() {
        let found = TcbParts { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: None };
        let min = TcbParts { bootloader: 4, tee: 0, snp: 8, microcode: 200, fmc: None };
        assert_eq!(found.below(&min), vec![("bootloader", 3, 4), ("microcode", 115, 200)]);
        assert!(found.below(&found).is_empty());
    }
}
