//! Parsers for argument values shared by commands.

use std::path::Path;

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 time such as `2026-01-01T00:00:00Z`.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time (like 2026-01-01T00:00:00Z): {e}"))
}

/// Parses hex (optional `0x`) of at most `max` bytes.
pub fn parse_hex(s: &str, max: usize) -> Result<Vec<u8>, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(digits).map_err(|e| format!("not hex: {e}"))?;
    if bytes.len() > max {
        return Err(format!("at most {max} bytes ({} hex digits), found {}", 2 * max, bytes.len()));
    }
    Ok(bytes)
}

/// Parses a number in decimal or `0x` hex.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a number: {e}"))
}

/// Reads a file, naming it in the error.
pub fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
