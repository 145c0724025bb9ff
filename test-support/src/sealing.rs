//! Sealed inputs as their owners make them: a sealing key and a sealed
//! stream, both with the workspace's `cvmctl` ([`crate::cvmctl`]).

use std::path::{Path, PathBuf};

use crate::{assert_exit, cvmctl};

/// cvmctl's exit code for success (`cvmctl::exit_codes::OK`; this crate
/// links no workspace crate, so it names the value itself).
const OK: i32 = 0;

/// Makes a sealing key `dir/name` with `cvmctl keygen --sealing`; returns its path.
pub fn sealing_key(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert_exit(&cvmctl(&["keygen", "--sealing", "--out", &path.display().to_string()]), OK);
    path
}

/// Seals `input` to `out` with `cvmctl seal` under `key`; returns the
/// stream's identity, the manifest's `sealed` object
/// (`{"key_id", "stream_id", "size"}`).
pub fn seal(key: &Path, input: &Path, out: &Path) -> serde_json::Value {
    let o = cvmctl(&[
        "seal",
        "--key-file",
        &key.display().to_string(),
        "--out",
        &out.display().to_string(),
        &input.display().to_string(),
    ]);
    assert_exit(&o, OK);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("cvmctl seal printed no identity ({e}): {}", String::from_utf8_lossy(&o.stdout))
    })
}
