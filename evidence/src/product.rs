//! AMD EPYC product generations and how to tell which one produced a report.

use std::fmt;

use serde::Serialize;

/// The EPYC generation whose AMD root key signs a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// 3rd generation EPYC (Zen 3), family 19h model 0xh.
    Milan,
    /// 4th generation EPYC (Zen 4), family 19h model 1xh.
    Genoa,
    /// 5th generation EPYC (Zen 5), family 1Ah model 0xh-1xh.
    Turin,
}

impl Product {
    /// All products with a built-in root.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD uses in certificate subjects and KDS URLs ("Milan").
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Parses an AMD product name, ignoring a stepping suffix ("Milan-B0" is Milan).
    pub fn from_name(name: &str) -> Option<Product> {
        let base = name.split('-').next().unwrap_or(name);
        Product::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(base))
    }

    /// The product for the CPUID family and model a version 3+ report carries.
    ///
    /// Family 19h models 00h-0Fh are Milan, 10h-1Fh and A0h-AFh Genoa (and its
    /// Bergamo/Siena variants); family 1Ah models 00h-1Fh are Turin.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0f) => Some(Product::Milan),
            (0x19, 0x10..=0x1f) | (0x19, 0xa0..=0xaf) => Some(Product::Genoa),
            (0x1a, 0x00..=0x1f) => Some(Product::Turin),
            _ => None,
        }
    }

    /// (family, model) a simulated report of this product carries.
    pub fn cpuid(self) -> (u8, u8) {
        match self {
            Product::Milan => (0x19, 0x01),
            Product::Genoa => (0x19, 0x11),
            Product::Turin => (0x1a, 0x02),
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_cpuid_round_trip() {
        for p in Product::ALL {
            assert_eq!(Product::from_name(p.name()), Some(p));
            let (fam, model) = p.cpuid();
            assert_eq!(Product::from_cpuid(fam, model), Some(p));
        }
        assert_eq!(Product::from_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_name("Rome"), None);
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
    }
}
