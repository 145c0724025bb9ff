//! Files' digests, as the manifests and the image checks compare them.

use std::path::Path;

use sha2::{Digest as _, Sha256};

/// The SHA-256 of a file's contents, in lower-case hex.
pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
}
