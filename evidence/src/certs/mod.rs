//! AMD certificate chains: ARK → ASK (or ASVK) → VCEK (or VLEK).

pub mod extensions;
