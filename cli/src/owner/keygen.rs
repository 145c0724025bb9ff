//! `keygen`: an owner key pair, or a sealing key.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use cvm_protocol::PublicKey;

use crate::output::{emit, KeyLine, Message};

/// Key types for `keygen`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256.
    P256,
    /// ECDSA on P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// Arguments of `keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The key type.
    #[arg(long = "type", value_enum, default_value = "p256")]
    pub key_type: KeyType,
    /// Make a sealing key instead (AES-256, for `seal`, `unseal` and `release-key`); prints its key id.
    #[arg(long, conflicts_with = "key_type")]
    pub sealing: bool,
    /// Print `{"type":"key","data":{"public_key","fingerprint"}}`.
    #[arg(long)]
    pub json: bool,
}

/// Creates a key pair and prints its public key in the manifest's form.
pub fn keygen(a: KeygenArgs) -> crate::Result {
    if a.sealing {
        return crate::sealed::keygen(&a.out, a.json);
    }
    let alg = match a.key_type {
        KeyType::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    };
    let key = rcgen::KeyPair::generate_for(alg)?;
    crate::report::write_private(&a.out, key.serialize_pem().as_bytes())?;
    let public = PublicKey::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&key))?;
    if a.json {
        emit(&Message::Key(KeyLine { public_key: public.to_base64(), fingerprint: public.fingerprint() }))?;
    } else {
        writeln!(crate::output::stdout(), "{}", public.to_base64())?;
        eprintln!("wrote the private key to {} (fingerprint {})", a.out.display(), public.fingerprint());
    }
    Ok(())
}
