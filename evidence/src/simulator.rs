//! Software SNP: a simulated AMD chain and reports signed by it.
//!
//! The chain has AMD's shape: an RSA-4096 ARK (self-signed) and ASK (or ASVK
//! for VLEKs), both signing with RSASSA-PSS/SHA-384 (MGF1 SHA-384, salt 48),
//! and a P-384 VCEK (or VLEK) with AMD's extensions: product name, the TCB
//! levels, and hwID (VCEK) or csp_id (VLEK). Names are AMD's too
//! (`CN=ARK-Milan`, ...): nothing but the ARK's key tells a simulated chain
//! from a real one, which is why a verifier trusts it only when the caller
//! adds its ARK explicitly ([`crate::certs::TrustAnchors::trust_additional_ark`]).

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use der::asn1::{BitString, Ia5String, OctetString, UtcTime};
use der::{Decode, Encode, EncodePem};
use p384::ecdsa::signature::Signer as _;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use sha2::Sha384;
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use crate::certs::extensions as oid;
use crate::report::{
    Cpuid, FirmwareVersion, GuestPolicy, KeyInfo, PlatformInfo, ReportBody, ReportSignature, SigningKey,
    TcbParts, TcbVersion, SIGNED_LEN, SIG_ALGO_ECDSA_P384_SHA384,
};
use crate::{AttestationReport, Product};

pub mod gcp;

/// Why a simulated chain could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// The parameters ask for something the simulator cannot make.
    #[error("invalid simulator parameters: {0}")]
    Params(String),
    /// Key generation or signing failed.
    #[error("simulator crypto: {0}")]
    Crypto(String),
    /// Certificate or key encoding failed.
    #[error("simulator encoding: {0}")]
    Encoding(String),
    /// A chain bundle could not be read back.
    #[error("simulated chain bundle: {0}")]
    Bundle(String),
    /// The signed report did not parse (e.g. an unsupported version was set).
    #[error("signed report: {0}")]
    Report(#[from] crate::ParseError),
}

fn enc(e: impl std::fmt::Display) -> SimulatorError {
    SimulatorError::Encoding(e.to_string())
}

/// What a simulated chain certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// The product whose chain this imitates.
    pub product: Product,
    /// VCEK or VLEK.
    pub signing_key: SigningKey,
    /// The chip id (VCEK hwID and the report's CHIP_ID).
    pub chip_id: [u8; 64],
    /// The TCB the VEK is derived from.
    pub tcb: TcbParts,
    /// Start of the VEK certificate's validity.
    pub vek_not_before: OffsetDateTime,
    /// End of the VEK certificate's validity.
    pub vek_not_after: OffsetDateTime,
}

impl ChainParams {
    /// A VCEK for a random chip with a typical TCB, valid from a day before
    /// `now` for seven years.
    pub fn new(product: Product, now: OffsetDateTime) -> ChainParams {
        let mut chip_id = [0u8; 64];
        // Turin VCEKs carry an 8-byte hwID; the rest of CHIP_ID is zero.
        let len = if product == Product::Turin { 8 } else { 64 };
        OsRng.fill_bytes(&mut chip_id[..len]);
        let fmc = (product == Product::Turin).then_some(1);
        ChainParams {
            product,
            signing_key: SigningKey::Vcek,
            chip_id,
            tcb: TcbParts { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc },
            vek_not_before: now - time::Duration::days(1),
            vek_not_after: now + time::Duration::days(7 * 365),
        }
    }

    fn hw_id(&self) -> &[u8] {
        if self.product == Product::Turin {
            &self.chip_id[..8]
        } else {
            &self.chip_id
        }
    }
}

/// A simulated AMD chain with its private keys.
pub struct SimulatedChain {
    params: ChainParams,
    ark_key: rsa::RsaPrivateKey,
    ask_key: rsa::RsaPrivateKey,
    vek_key: p384::ecdsa::SigningKey,
    ark: Certificate,
    ask: Certificate,
    vek: Certificate,
}

impl std::fmt::Debug for SimulatedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material in debug output.
        f.debug_struct("SimulatedChain").field("params", &self.params).finish_non_exhaustive()
    }
}

fn amd_name(cn: &str) -> Result<Name, SimulatorError> {
    // RFC 4514 order is reversed: this encodes OU, C, L, ST, O, CN, as AMD's do.
    Name::from_str(&format!("CN={cn},O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering"))
        .map_err(enc)
}

fn x509_time(t: OffsetDateTime) -> Result<Time, SimulatorError> {
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| SimulatorError::Params(format!("time {t} is before 1970")))?;
    let dt = der::DateTime::from_unix_duration(StdDuration::from_secs(secs)).map_err(enc)?;
    // RFC 5280: UTCTime through 2049, GeneralizedTime after.
    if dt.year() <= 2049 {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt).map_err(enc)?))
    } else {
        Ok(Time::GeneralTime(der::asn1::GeneralizedTime::from_date_time(dt)))
    }
}

fn extension(id: der::asn1::ObjectIdentifier, value: Vec<u8>) -> Result<Extension, SimulatorError> {
    Ok(Extension { extn_id: id, critical: false, extn_value: OctetString::new(value).map_err(enc)? })
}

fn int_ext(id: der::asn1::ObjectIdentifier, v: u8) -> Result<Extension, SimulatorError> {
    extension(id, v.to_der().map_err(enc)?)
}

fn text_ext(id: der::asn1::ObjectIdentifier, v: &str) -> Result<Extension, SimulatorError> {
    extension(id, Ia5String::new(v).map_err(enc)?.to_der().map_err(enc)?)
}

/// Signs `tbs` with RSASSA-PSS/SHA-384 and assembles the certificate.
fn sign_rsa_pss(mut tbs: TbsCertificate, key: &rsa::RsaPrivateKey) -> Result<Certificate, SimulatorError> {
    let alg = rsa::pss::get_default_pss_signature_algo_id::<Sha384>().map_err(enc)?;
    tbs.signature = alg.clone();
    let der = tbs.to_der().map_err(enc)?;
    let signer = rsa::pss::BlindedSigningKey::<Sha384>::new(key.clone());
    let sig =
        signer.try_sign_with_rng(&mut OsRng, &der).map_err(|e| SimulatorError::Crypto(e.to_string()))?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: alg,
        signature: BitString::from_bytes(&sig.to_vec()).map_err(enc)?,
    })
}

fn rsa_spki(key: &rsa::RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, SimulatorError> {
    let der = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key()).map_err(enc)?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(enc)
}

fn tbs(
    serial: u32,
    issuer: Name,
    subject: Name,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Option<Vec<Extension>>,
) -> Result<TbsCertificate, SimulatorError> {
    let placeholder = rsa::pss::get_default_pss_signature_algo_id::<Sha384>().map_err(enc)?;
    Ok(TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial.to_be_bytes()).map_err(enc)?,
        signature: placeholder,
        issuer,
        validity: Validity { not_before: x509_time(not_before)?, not_after: x509_time(not_after)? },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions,
    })
}

impl SimulatedChain {
    /// Generates a new chain: two RSA-4096 keys (slow: seconds) and a P-384 key.
    pub fn generate(params: ChainParams) -> Result<SimulatedChain, SimulatorError> {
        let gen =
            || rsa::RsaPrivateKey::new(&mut OsRng, 4096).map_err(|e| SimulatorError::Crypto(e.to_string()));
        let ark_key = gen()?;
        let ask_key = gen()?;
        let now = OffsetDateTime::now_utc().min(params.vek_not_before);
        let (nb, na) = (now - time::Duration::days(365), now + time::Duration::days(25 * 365));
        let p = params.product.name();
        let ark_name = amd_name(&format!("ARK-{p}"))?;
        let ark = sign_rsa_pss(
            tbs(0x10000, ark_name.clone(), ark_name.clone(), nb, na, rsa_spki(&ark_key)?, None)?,
            &ark_key,
        )?;
        let mid_cn = match params.signing_key {
            SigningKey::Vlek => format!("SEV-VLEK-{p}"),
            _ => format!("SEV-{p}"),
        };
        let ask = sign_rsa_pss(
            tbs(0x10001, ark_name, amd_name(&mid_cn)?, nb, na, rsa_spki(&ask_key)?, None)?,
            &ark_key,
        )?;
        Self::with_vek(params, ark_key, ask_key, ark, ask)
    }

    /// Issues a new VCEK or VLEK (with a new P-384 key) under the same ARK and
    /// ASK; cheap. The product and key kind must not change.
    pub fn reissue(&self, params: ChainParams) -> Result<SimulatedChain, SimulatorError> {
        if params.product != self.params.product || params.signing_key != self.params.signing_key {
            return Err(SimulatorError::Params(format!(
                "a reissued key keeps the chain's product and kind ({} {}), not {} {}",
                self.params.product, self.params.signing_key, params.product, params.signing_key
            )));
        }
        Self::with_vek(params, self.ark_key.clone(), self.ask_key.clone(), self.ark.clone(), self.ask.clone())
    }

    fn with_vek(
        mut params: ChainParams,
        ark_key: rsa::RsaPrivateKey,
        ask_key: rsa::RsaPrivateKey,
        ark: Certificate,
        ask: Certificate,
    ) -> Result<SimulatedChain, SimulatorError> {
        // Certificates hold whole seconds; keep params equal to what they say.
        let whole = |t: OffsetDateTime| t.replace_nanosecond(0).unwrap_or(t);
        params.vek_not_before = whole(params.vek_not_before);
        params.vek_not_after = whole(params.vek_not_after);
        let vek_key = p384::ecdsa::SigningKey::random(&mut OsRng);
        let vek = Self::issue_vek(&params, &vek_key, &ask, &ask_key)?;
        Ok(SimulatedChain { params, ark_key, ask_key, vek_key, ark, ask, vek })
    }

    fn issue_vek(
        params: &ChainParams,
        vek_key: &p384::ecdsa::SigningKey,
        ask: &Certificate,
        ask_key: &rsa::RsaPrivateKey,
    ) -> Result<Certificate, SimulatorError> {
        let (cn, product_name) = match (params.signing_key, params.product) {
            (SigningKey::Vcek, Product::Milan) => ("SEV-VCEK", "Milan-B0"),
            (SigningKey::Vcek, Product::Genoa) => ("SEV-VCEK", "Genoa-B1"),
            (SigningKey::Vcek, Product::Turin) => ("SEV-VCEK", "Turin-C0"),
            (SigningKey::Vlek, p) => ("SEV-VLEK", p.name()),
            (other, _) => {
                return Err(SimulatorError::Params(format!("a chain signs with a VCEK or VLEK, not {other}")))
            }
        };
        let t = params.tcb;
        let mut exts = vec![int_ext(oid::STRUCT_VERSION, 0)?, text_ext(oid::PRODUCT_NAME, product_name)?];
        exts.push(int_ext(oid::BL_SPL, t.bootloader)?);
        exts.push(int_ext(oid::TEE_SPL, t.tee)?);
        for id in oid::SPL_4_TO_7 {
            exts.push(int_ext(id, 0)?);
        }
        exts.push(int_ext(oid::SNP_SPL, t.snp)?);
        exts.push(int_ext(oid::UCODE_SPL, t.microcode)?);
        if params.product == Product::Turin {
            exts.push(int_ext(oid::FMC_SPL, t.fmc.unwrap_or(0))?);
        }
        match params.signing_key {
            SigningKey::Vlek => exts.push(text_ext(oid::CSP_ID, "simulated-csp")?),
            _ => exts.push(extension(oid::HW_ID, params.hw_id().to_vec())?),
        }
        let spki_der = vek_key.verifying_key().to_public_key_der().map_err(enc)?;
        let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(enc)?;
        let tbs = tbs(
            1,
            ask.tbs_certificate.subject.clone(),
            amd_name(cn)?,
            params.vek_not_before,
            params.vek_not_after,
            spki,
            Some(exts),
        )?;
        sign_rsa_pss(tbs, ask_key)
    }

    /// What this chain certifies.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The simulated ARK.
    pub fn ark(&self) -> &Certificate {
        &self.ark
    }

    /// The simulated ASK (or ASVK for a VLEK chain).
    pub fn ask(&self) -> &Certificate {
        &self.ask
    }

    /// The simulated VCEK or VLEK.
    pub fn vek(&self) -> &Certificate {
        &self.vek
    }

    /// A report a fresh guest on this chip would get: version 3, policy
    /// 0x30000 (SMT allowed), VMPL 0, every TCB equal to the chain's, the
    /// chip's id and CPUID, a random REPORT_ID, everything else zero.
    pub fn report_template(&self) -> ReportBody {
        let p = &self.params;
        let tcb = TcbVersion::from_parts(p.tcb, p.product);
        let (family, model) = p.product.cpuid();
        let mut report_id = [0u8; 32];
        OsRng.fill_bytes(&mut report_id);
        let fw = FirmwareVersion { major: 1, minor: 55, build: 21 };
        ReportBody {
            version: 3,
            guest_svn: 0,
            policy: GuestPolicy(GuestPolicy::SMT | GuestPolicy::RESERVED_ONE),
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: tcb,
            platform_info: PlatformInfo(1),
            key_info: KeyInfo::new(false, false, p.signing_key),
            report_data: [0; 64],
            measurement: [0; 48],
            host_data: [0; 32],
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            report_id,
            report_id_ma: [0xff; 32],
            reported_tcb: tcb,
            cpuid: Some(Cpuid { family, model, stepping: 1 }),
            chip_id: p.chip_id,
            committed_tcb: tcb,
            current_version: fw,
            committed_version: fw,
            launch_tcb: tcb,
            launch_mit_vector: None,
            current_mit_vector: None,
            signature: ReportSignature::default(),
        }
    }

    /// Signs `body` as the VEK would: ECDSA P-384/SHA-384 over bytes
    /// [0, 0x2A0), R and S little-endian in 72-byte fields.
    pub fn sign(&self, body: &ReportBody) -> Result<AttestationReport, SimulatorError> {
        let mut raw = body.encode();
        let sig: p384::ecdsa::Signature = self.vek_key.sign(&raw[..SIGNED_LEN]);
        let (r, s) = sig.split_bytes();
        let mut field = ReportSignature::default();
        for i in 0..48 {
            field.r[i] = r[47 - i];
            field.s[i] = s[47 - i];
        }
        raw[SIGNED_LEN..SIGNED_LEN + 72].copy_from_slice(&field.r);
        raw[SIGNED_LEN + 72..SIGNED_LEN + 144].copy_from_slice(&field.s);
        raw[SIGNED_LEN + 144..].fill(0);
        Ok(AttestationReport::from_bytes(&raw)?)
    }

    /// The chain with its private keys as text, to keep it and reuse it.
    ///
    /// Format: the line `cvm-evidence simulated chain v1`, then `key: value`
    /// lines (`product`, `signing-key`, `chip-id` in hex, `tcb` as
    /// `bootloader=..,tee=..,snp=..,microcode=..[,fmc=..]`, `vek-not-before`
    /// and `vek-not-after` in Unix seconds), a blank line, then six PEM
    /// blocks: the ARK, ASK and VEK private keys (PKCS#8) and the ARK, ASK and
    /// VEK certificates, in that order.
    pub fn to_pem_bundle(&self) -> Result<String, SimulatorError> {
        let p = &self.params;
        let t = p.tcb;
        let mut s = String::from("cvm-evidence simulated chain v1\n");
        let _ = writeln!(s, "product: {}", p.product);
        let _ = writeln!(s, "signing-key: {}", p.signing_key);
        let _ = writeln!(s, "chip-id: {}", hex::encode(p.chip_id));
        let _ = write!(
            s,
            "tcb: bootloader={},tee={},snp={},microcode={}",
            t.bootloader, t.tee, t.snp, t.microcode
        );
        if let Some(fmc) = t.fmc {
            let _ = write!(s, ",fmc={fmc}");
        }
        let _ = writeln!(s, "\nvek-not-before: {}", p.vek_not_before.unix_timestamp());
        let _ = writeln!(s, "vek-not-after: {}\n", p.vek_not_after.unix_timestamp());
        let lf = der::pem::LineEnding::LF;
        for key in [&self.ark_key, &self.ask_key] {
            s.push_str(&rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(key, lf).map_err(enc)?);
        }
        s.push_str(&self.vek_key.to_pkcs8_pem(lf).map_err(enc)?);
        for cert in [&self.ark, &self.ask, &self.vek] {
            s.push_str(&cert.to_pem(lf).map_err(enc)?);
        }
        Ok(s)
    }

    /// Reads a bundle written by [`SimulatedChain::to_pem_bundle`].
    pub fn from_pem_bundle(text: &str) -> Result<SimulatedChain, SimulatorError> {
        let bad = |m: String| SimulatorError::Bundle(m);
        let (header, pems) =
            text.split_once("\n\n").ok_or_else(|| bad("no blank line after the header".into()))?;
        let mut lines = header.lines();
        if lines.next() != Some("cvm-evidence simulated chain v1") {
            return Err(bad("first line is not `cvm-evidence simulated chain v1`".into()));
        }
        let mut field = |name: &str| -> Result<String, SimulatorError> {
            let line = lines.next().ok_or_else(|| bad(format!("missing `{name}`")))?;
            line.strip_prefix(&format!("{name}: "))
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("expected `{name}: ...`, found {line:?}")))
        };
        let product = field("product")?;
        let product =
            Product::from_name(&product).ok_or_else(|| bad(format!("unknown product {product:?}")))?;
        let signing_key = match field("signing-key")?.as_str() {
            "VCEK" => SigningKey::Vcek,
            "VLEK" => SigningKey::Vlek,
            other => return Err(bad(format!("unknown signing key {other:?}"))),
        };
        let mut chip_id = [0u8; 64];
        hex::decode_to_slice(field("chip-id")?, &mut chip_id).map_err(|e| bad(format!("chip-id: {e}")))?;
        let tcb = parse_tcb(&field("tcb")?).map_err(bad)?;
        let mut time_field = |name: &str| -> Result<OffsetDateTime, SimulatorError> {
            let v: i64 = field(name)?.parse().map_err(|e| bad(format!("{name}: {e}")))?;
            OffsetDateTime::from_unix_timestamp(v).map_err(|e| bad(format!("{name}: {e}")))
        };
        let vek_not_before = time_field("vek-not-before")?;
        let vek_not_after = time_field("vek-not-after")?;

        let blocks = pem_blocks(pems);
        if blocks.len() != 6 {
            return Err(bad(format!("expected 6 PEM blocks, found {}", blocks.len())));
        }
        // Every block's DER has its lengths checked before it is decoded
        // (`certs::check_lengths`), as every DER from outside is.
        let key_der = |i: usize| {
            crate::certs::pem_body(blocks[i].as_bytes(), "PRIVATE KEY")
                .and_then(|der| crate::certs::check_lengths(&der).map(|()| der))
                .map_err(|e| bad(format!("key {i}: {e}")))
        };
        let rsa_key = |i: usize| {
            rsa::pkcs8::DecodePrivateKey::from_pkcs8_der(&key_der(i)?)
                .map_err(|e| bad(format!("key {i}: {e}")))
        };
        let ark_key: rsa::RsaPrivateKey = rsa_key(0)?;
        let ask_key: rsa::RsaPrivateKey = rsa_key(1)?;
        let vek_key = p384::ecdsa::SigningKey::from_pkcs8_der(&key_der(2)?)
            .map_err(|e| bad(format!("VEK key: {e}")))?;
        let cert = |i: usize| {
            crate::certs::parse_certificate(blocks[i].as_bytes(), &format!("certificate {i}"))
                .map_err(|e| bad(e.to_string()))
        };
        let params = ChainParams { product, signing_key, chip_id, tcb, vek_not_before, vek_not_after };
        Ok(SimulatedChain { params, ark_key, ask_key, vek_key, ark: cert(3)?, ask: cert(4)?, vek: cert(5)? })
    }
}

/// Splits concatenated PEM text into its blocks.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let Some(end_marker) = rest[start..].find("-----END ") else { break };
        let after = start + end_marker;
        let Some(close) = rest[after + 9..].find("-----") else { break };
        let end = after + 9 + close + 5;
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

/// Parses `bootloader=3,tee=0,snp=8,microcode=115[,fmc=1]`.
pub fn parse_tcb(s: &str) -> Result<TcbParts, String> {
    let mut t = TcbParts::default();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("{part:?} is not name=value"))?;
        let v: u8 = v.trim().parse().map_err(|e| format!("TCB component {k}: {e}"))?;
        match k.trim() {
            "bootloader" | "bl" => t.bootloader = v,
            "tee" => t.tee = v,
            "snp" => t.snp = v,
            "microcode" | "ucode" => t.microcode = v,
            "fmc" => t.fmc = Some(v),
            other => {
                return Err(format!("unknown TCB component {other:?} (bootloader, tee, snp, microcode, fmc)"))
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;
    use crate::certs::extensions::AmdExtensions;

    fn chain() -> &'static SimulatedChain {
        static CHAIN: OnceLock<SimulatedChain> = OnceLock::new();
        CHAIN.get_or_init(|| {
            SimulatedChain::generate(ChainParams::new(Product::Milan, OffsetDateTime::now_utc())).unwrap()
        })
    }

    #[test]
    fn extensions_read_back_as_written() {
        let c = chain();
        let ext = AmdExtensions::from_cert(c.vek()).unwrap();
        assert_eq!(ext.product(), Some(Product::Milan));
        assert_eq!(ext.tcb, c.params().tcb);
        assert_eq!(ext.hw_id.as_deref(), Some(&c.params().chip_id[..]));
        assert_eq!(ext.csp_id, None);
    }

    #[test]
    fn openssl_reads_the_chain_as_amd_shaped() {
        let dir = std::env::temp_dir().join(format!("cvm-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ark = dir.join("ark.pem");
        std::fs::write(&ark, chain().ark().to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
        let out =
            std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&ark).output();
        std::fs::remove_dir_all(&dir).unwrap();
        let Ok(out) = out else { panic!("openssl is needed for this test (scripts/setup installs it)") };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Salt Length: 0x30"), "{text}");
        assert!(text.contains("Mask Algorithm: mgf1 with sha384"), "{text}");
        assert!(text.contains("Public-Key: (4096 bit)"), "{text}");
        assert!(text.contains("CN = ARK-Milan"), "{text}");
    }

    #[test]
    fn bundle_round_trips() {
        let c = chain();
        let text = c.to_pem_bundle().unwrap();
        let back = SimulatedChain::from_pem_bundle(&text).unwrap();
        assert_eq!(back.params(), c.params());
        assert_eq!(back.ark(), c.ark());
        assert_eq!(back.vek(), c.vek());
        assert_eq!(back.to_pem_bundle().unwrap(), text);
        let err =
            SimulatedChain::from_pem_bundle(&text.replace("product: Milan", "product: Rome")).unwrap_err();
        assert!(err.to_string().contains("unknown product"), "{err}");
    }

    #[test]
    fn reissue_keeps_the_roots_and_changes_the_vek() {
        let c = chain();
        let again = c.reissue(c.params().clone()).unwrap();
        assert_eq!(again.ark(), c.ark());
        assert_eq!(again.ask(), c.ask());
        assert_ne!(again.vek(), c.vek());
        let mut other = c.params().clone();
        other.product = Product::Genoa;
        assert!(matches!(c.reissue(other), Err(SimulatorError::Params(_))));
    }

    #[test]
    fn sign_keeps_the_body() {
        let c = chain();
        let mut body = c.report_template();
        body.report_data = [7; 64];
        let report = c.sign(&body).unwrap();
        let mut signed = report.body().clone();
        signed.signature = ReportSignature::default();
        assert_eq!(signed, body);
        body.version = 4;
        assert!(matches!(c.sign(&body), Err(SimulatorError::Report(_))));
    }

    #[test]
    fn tcb_lists_parse() {
        let t = parse_tcb("bootloader=3,tee=0,snp=8,microcode=115,fmc=2").unwrap();
        assert_eq!(t, TcbParts { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: Some(2) });
        assert!(parse_tcb("bl=3,foo=1").unwrap_err().contains("unknown TCB component"));
        assert!(parse_tcb("snp=300").is_err());
    }
}
