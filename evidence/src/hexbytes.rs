//! Fixed-length byte strings written as hex in JSON.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Exactly `N` bytes, hex-encoded in JSON and text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> HexBytes<N> {
    /// Parses exactly `2 * N` hex digits (an optional `0x` prefix is allowed).
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.len() != 2 * N {
            return Err(format!(
                "expected {} hex digits ({N} bytes), found {} characters",
                2 * N,
                digits.len()
            ));
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(digits, &mut out).map_err(|e| format!("not hex: {e}"))?;
        Ok(HexBytes(out))
    }
}

impl<const N: usize> fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<const N: usize> Serialize for HexBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de, const N: usize> Deserialize<'de> for HexBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HexBytes::parse(&s).map_err(de::Error::custom)
    }
}
