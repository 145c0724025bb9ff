//! Google's launch endorsement of its confidential-VM firmware.
//!
//! Google signs, for each firmware build, a `VMGoldenMeasurement`: the
//! firmware's SHA-384, and for SEV-SNP its security version and the launch
//! MEASUREMENT the build gives for each vCPU count (each vCPU has its own
//! VMSA, which the measurement covers). The signed bytes travel inside a
//! `VMLaunchEndorsement` with the signature: RSASSA-PSS/SHA-256 by the key
//! of the certificate the golden measurement carries, which Google's
//! published root certificate issues. The messages are defined in
//! `proto/endorsement.proto` of Google's gce-tcb-verifier project (package
//! `cloud_vmm_proto`); this parser follows that definition field by field.
//! No signed endorsement was at hand as a sample: the tests use simulated
//! ones made from the same definition.
//!
//! [`check_launch_endorsement`] records, in order:
//!
//! - `gce_endorsement_format`: both messages parse.
//! - `gce_endorsement_signer`: the certificate in the golden measurement is
//!   issued by the root the owner gave, and both are valid at the
//!   verification time.
//! - `gce_endorsement_signature`: that certificate's key signed the golden
//!   measurement's exact bytes.
//! - `gce_endorsement_measurement`: the golden measurement lists a SEV-SNP
//!   measurement for the VM's vCPU count, and it is the report's.

use std::collections::BTreeMap;

use time::OffsetDateTime;
use x509_cert::Certificate;

use super::protobuf::{Fields, Value, Writer};
use super::{describe, rfc3339};
use crate::certs::x509_signature::{verify_rsa_pss_sha256, verify_x509_issued_by};
use crate::certs::{self, parse_certificate};
use crate::VerificationReport;

/// A launch endorsement that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("launch endorsement, {path}: {message}")]
pub struct EndorsementError {
    /// Which field (`VMGoldenMeasurement.sev_snp.measurements[4]`).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

/// `VMLaunchEndorsement`: the signed golden measurement and its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchEndorsement {
    /// `serialized_uefi_golden` (field 1): the exact bytes signed.
    pub serialized_golden: Vec<u8>,
    /// `signature` (field 2).
    pub signature: Vec<u8>,
    /// Those bytes, parsed.
    pub golden: GoldenMeasurement,
}

/// `VMGoldenMeasurement`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoldenMeasurement {
    /// `timestamp` (1): seconds and nanoseconds since the Unix epoch.
    pub timestamp: Option<(i64, i32)>,
    /// `cl_spec` (2): the changelist the firmware was built from.
    pub cl_spec: u64,
    /// `commit` (3): the commit it was built from.
    pub commit: Vec<u8>,
    /// `cert` (4): DER certificate of the key that signed the endorsement.
    pub cert: Vec<u8>,
    /// `digest` (5): SHA-384 of the firmware binary.
    pub digest: Vec<u8>,
    /// `ca_bundle` (6): PEM certificates from the root to the signer's issuer.
    pub ca_bundle: Vec<u8>,
    /// `sev_snp` (7).
    pub sev_snp: Option<SevSnpGolden>,
    /// Whether `tdx` (8) is present (not read: a TDX VM is not ours).
    pub has_tdx: bool,
}

/// `VMSevSnp`: what the firmware gives on SEV-SNP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SevSnpGolden {
    /// `svn` (1): Google's security version of this firmware on SEV-SNP.
    pub svn: u32,
    /// `measurements` (2): the launch MEASUREMENT per vCPU count.
    pub measurements: BTreeMap<u32, [u8; 48]>,
    /// `family_id` (3).
    pub family_id: Vec<u8>,
    /// `image_id` (4).
    pub image_id: Vec<u8>,
    /// `policy` (5): the launch policy verifiers should expect.
    pub policy: u64,
    /// `ca_bundle` (6).
    pub ca_bundle: Vec<u8>,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> EndorsementError {
    EndorsementError { path: path.into(), message: message.into() }
}

/// Reads each field of one message, refusing a known field that is
/// repeated (proto3 would keep the last; a signed document has no reason to
/// say a thing twice) or has another wire type than its definition.
fn read_message<'a>(
    bytes: &'a [u8],
    message: &str,
    mut field: impl FnMut(u32, Value<'a>) -> Result<bool, EndorsementError>,
    repeated: &[u32],
) -> Result<(), EndorsementError> {
    let mut fields = Fields::new(bytes);
    let mut seen = Vec::new();
    while let Some((number, value)) = fields.next_field().map_err(|e| error(message, e.to_string()))? {
        if field(number, value)? {
            if seen.contains(&number) && !repeated.contains(&number) {
                return Err(error(message, format!("field {number} appears twice")));
            }
            seen.push(number);
        }
    }
    Ok(())
}

fn bytes_of<'a>(path: &str, v: Value<'a>) -> Result<&'a [u8], EndorsementError> {
    match v {
        Value::Bytes(b) => Ok(b),
        other => Err(error(path, format!("expected bytes, found {other:?}"))),
    }
}

fn varint_of(path: &str, v: Value<'_>) -> Result<u64, EndorsementError> {
    match v {
        Value::Varint(n) => Ok(n),
        other => Err(error(path, format!("expected a varint, found {other:?}"))),
    }
}

fn u32_of(path: &str, v: Value<'_>) -> Result<u32, EndorsementError> {
    // proto3 uint32 travels as a varint; a value past 32 bits is malformed.
    let n = varint_of(path, v)?;
    u32::try_from(n).map_err(|_| error(path, format!("{n} does not fit uint32")))
}

impl LaunchEndorsement {
    /// Parses a serialized `VMLaunchEndorsement` and the golden measurement in it.
    pub fn parse(bytes: &[u8]) -> Result<LaunchEndorsement, EndorsementError> {
        let (mut golden, mut signature) = (None, None);
        read_message(
            bytes,
            "VMLaunchEndorsement",
            |n, v| {
                match n {
                    1 => golden = Some(bytes_of("VMLaunchEndorsement.serialized_uefi_golden", v)?),
                    2 => signature = Some(bytes_of("VMLaunchEndorsement.signature", v)?),
                    _ => return Ok(false),
                }
                Ok(true)
            },
            &[],
        )?;
        let serialized =
            golden.ok_or_else(|| error("VMLaunchEndorsement.serialized_uefi_golden", "missing"))?;
        let signature = signature.ok_or_else(|| error("VMLaunchEndorsement.signature", "missing"))?;
        Ok(LaunchEndorsement {
            golden: GoldenMeasurement::parse(serialized)?,
            serialized_golden: serialized.to_vec(),
            signature: signature.to_vec(),
        })
    }

    /// The serialized `VMLaunchEndorsement` of `serialized_golden` and `signature`.
    pub fn encode(serialized_golden: &[u8], signature: &[u8]) -> Vec<u8> {
        // Both written even when empty: a parsed endorsement's fields are present.
        let mut w = Writer::default();
        w.message(1, serialized_golden);
        w.message(2, signature);
        w.0
    }
}

impl GoldenMeasurement {
    /// Parses a serialized `VMGoldenMeasurement`.
    pub fn parse(bytes: &[u8]) -> Result<GoldenMeasurement, EndorsementError> {
        const M: &str = "VMGoldenMeasurement";
        let mut g = GoldenMeasurement::default();
        read_message(
            bytes,
            M,
            |n, v| {
                match n {
                    1 => g.timestamp = Some(parse_timestamp(bytes_of("VMGoldenMeasurement.timestamp", v)?)?),
                    2 => g.cl_spec = varint_of("VMGoldenMeasurement.cl_spec", v)?,
                    3 => g.commit = bytes_of("VMGoldenMeasurement.commit", v)?.to_vec(),
                    4 => g.cert = bytes_of("VMGoldenMeasurement.cert", v)?.to_vec(),
                    5 => g.digest = bytes_of("VMGoldenMeasurement.digest", v)?.to_vec(),
                    6 => g.ca_bundle = bytes_of("VMGoldenMeasurement.ca_bundle", v)?.to_vec(),
                    7 => g.sev_snp = Some(SevSnpGolden::parse(bytes_of("VMGoldenMeasurement.sev_snp", v)?)?),
                    8 => {
                        bytes_of("VMGoldenMeasurement.tdx", v)?;
                        g.has_tdx = true;
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            },
            &[],
        )?;
        Ok(g)
    }

    /// Its serialized form, fields in number order (what a protobuf
    /// serializer writes); the simulator signs these bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        if let Some((seconds, nanos)) = self.timestamp {
            let mut t = Writer::default();
            // int64 and int32 are varints of their two's complement.
            t.uint(1, seconds as u64);
            t.uint(2, i64::from(nanos) as u64);
            w.message(1, &t.0);
        }
        w.uint(2, self.cl_spec);
        w.bytes(3, &self.commit);
        w.bytes(4, &self.cert);
        w.bytes(5, &self.digest);
        w.bytes(6, &self.ca_bundle);
        if let Some(snp) = &self.sev_snp {
            w.message(7, &snp.encode());
        }
        if self.has_tdx {
            w.message(8, &[]);
        }
        w.0
    }
}

fn parse_timestamp(bytes: &[u8]) -> Result<(i64, i32), EndorsementError> {
    const P: &str = "VMGoldenMeasurement.timestamp";
    let (mut seconds, mut nanos) = (0i64, 0i32);
    read_message(
        bytes,
        P,
        |n, v| {
            match n {
                // Two's complement, as int64 and int32 are encoded.
                1 => seconds = varint_of("VMGoldenMeasurement.timestamp.seconds", v)? as i64,
                2 => {
                    let raw = varint_of("VMGoldenMeasurement.timestamp.nanos", v)? as i64;
                    nanos = i32::try_from(raw).ok().filter(|n| (0..1_000_000_000).contains(n)).ok_or_else(
                        || error("VMGoldenMeasurement.timestamp.nanos", format!("{raw} is out of range")),
                    )?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        },
        &[],
    )?;
    Ok((seconds, nanos))
}

impl SevSnpGolden {
    /// Parses a serialized `VMSevSnp`.
    pub fn parse(bytes: &[u8]) -> Result<SevSnpGolden, EndorsementError> {
        const P: &str = "VMGoldenMeasurement.sev_snp";
        let mut s = SevSnpGolden::default();
        read_message(
            bytes,
            P,
            |n, v| {
                match n {
                    1 => s.svn = u32_of("VMGoldenMeasurement.sev_snp.svn", v)?,
                    2 => {
                        let (vcpus, m) =
                            parse_map_entry(bytes_of("VMGoldenMeasurement.sev_snp.measurements", v)?)?;
                        if s.measurements.insert(vcpus, m).is_some() {
                            return Err(error(
                                format!("{P}.measurements[{vcpus}]"),
                                "listed twice for the same vCPU count",
                            ));
                        }
                    }
                    3 => s.family_id = bytes_of("VMGoldenMeasurement.sev_snp.family_id", v)?.to_vec(),
                    4 => s.image_id = bytes_of("VMGoldenMeasurement.sev_snp.image_id", v)?.to_vec(),
                    5 => s.policy = varint_of("VMGoldenMeasurement.sev_snp.policy", v)?,
                    6 => s.ca_bundle = bytes_of("VMGoldenMeasurement.sev_snp.ca_bundle", v)?.to_vec(),
                    _ => return Ok(false),
                }
                Ok(true)
            },
            &[2],
        )?;
        Ok(s)
    }

    /// Its serialized form, fields in number order, map entries by key.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.uint(1, u64::from(self.svn));
        for (vcpus, m) in &self.measurements {
            let mut e = Writer::default();
            e.uint(1, u64::from(*vcpus));
            e.bytes(2, m);
            w.message(2, &e.0);
        }
        w.bytes(3, &self.family_id);
        w.bytes(4, &self.image_id);
        w.uint(5, self.policy);
        w.bytes(6, &self.ca_bundle);
        w.0
    }
}

/// One entry of `map<uint32, bytes> measurements`: key 1, value 2 (each
/// may be left out when zero or empty, as proto3 does).
fn parse_map_entry(bytes: &[u8]) -> Result<(u32, [u8; 48]), EndorsementError> {
    const P: &str = "VMGoldenMeasurement.sev_snp.measurements";
    let (mut key, mut value): (u32, &[u8]) = (0, &[]);
    read_message(
        bytes,
        P,
        |n, v| {
            match n {
                1 => key = u32_of("VMGoldenMeasurement.sev_snp.measurements.key", v)?,
                2 => value = bytes_of("VMGoldenMeasurement.sev_snp.measurements.value", v)?,
                _ => return Ok(false),
            }
            Ok(true)
        },
        &[],
    )?;
    let m = <[u8; 48]>::try_from(value).map_err(|_| {
        error(format!("{P}[{key}]"), format!("{} bytes, expected a 48-byte measurement", value.len()))
    })?;
    Ok((key, m))
}

/// Checks a serialized launch endorsement: signed through `root` (valid at
/// `at`), and endorsing `measurement` for `vcpus` vCPUs. Returns it when it
/// parsed (whether it passed is in `result`).
pub fn check_launch_endorsement(
    result: &mut VerificationReport,
    bytes: &[u8],
    root: &Certificate,
    at: OffsetDateTime,
    measurement: &[u8; 48],
    vcpus: u32,
) -> Option<LaunchEndorsement> {
    let e = match LaunchEndorsement::parse(bytes) {
        Ok(e) => {
            let g = &e.golden;
            result.record(
                "gce_endorsement_format",
                true,
                "a VMLaunchEndorsement (gce-tcb-verifier's endorsement.proto)",
                format!(
                    "firmware sha384:{}, built at {}, changelist {}",
                    hex::encode(&g.digest),
                    g.timestamp.map_or_else(|| "an unstated time".to_owned(), |(s, _)| rfc3339(s)),
                    g.cl_spec
                ),
            );
            e
        }
        Err(err) => {
            result.record("gce_endorsement_format", false, "a VMLaunchEndorsement", err.to_string());
            for name in ["gce_endorsement_signer", "gce_endorsement_signature", "gce_endorsement_measurement"]
            {
                result.record_skipped(name, "the endorsement cannot be read");
            }
            return None;
        }
    };

    let root_text = describe(root);
    let signer = match parse_certificate(&e.golden.cert, "the endorsement's signing certificate") {
        Ok(cert) => {
            let mut problems = Vec::new();
            if let Err(err) = verify_x509_issued_by(root, &cert) {
                problems.push(format!("{}: {err}", describe(&cert)));
            }
            for c in [&cert, root] {
                let (nb, na) = certs::validity(c);
                let t = at.unix_timestamp();
                if t < nb || t > na {
                    problems.push(format!(
                        "{} is valid from {} to {}",
                        describe(c),
                        rfc3339(nb),
                        rfc3339(na)
                    ));
                }
            }
            result.record(
                "gce_endorsement_signer",
                problems.is_empty(),
                format!(
                    "a certificate issued by the root given, {root_text}, valid at {}",
                    rfc3339(at.unix_timestamp())
                ),
                if problems.is_empty() { describe(&cert) } else { problems.join("; ") },
            );
            Some(cert)
        }
        Err(err) => {
            result.record(
                "gce_endorsement_signer",
                false,
                format!("a certificate issued by {root_text}"),
                err.to_string(),
            );
            None
        }
    };

    match &signer {
        Some(cert) => {
            let verified = verify_rsa_pss_sha256(
                &cert.tbs_certificate.subject_public_key_info,
                &e.serialized_golden,
                &e.signature,
            );
            result.record(
                "gce_endorsement_signature",
                verified.is_ok(),
                format!("RSASSA-PSS/SHA-256 over the golden measurement by {}", describe(cert)),
                verified.err().unwrap_or_else(|| "verifies".into()),
            );
        }
        None => result.record_skipped("gce_endorsement_signature", "no signing certificate"),
    }

    let expected = format!("the report's measurement {} for {vcpus} vCPUs", hex::encode(measurement));
    match &e.golden.sev_snp {
        None => result.record(
            "gce_endorsement_measurement",
            false,
            expected,
            "the endorsement has no SEV-SNP part",
        ),
        Some(snp) => {
            let counts: Vec<String> = snp.measurements.keys().map(ToString::to_string).collect();
            let found = match snp.measurements.get(&vcpus) {
                Some(m) if m == measurement => {
                    Ok(format!("endorsed for {vcpus} vCPUs (Google's SVN {}): {}", snp.svn, hex::encode(m)))
                }
                Some(m) => Err(format!("the endorsement gives {} for {vcpus} vCPUs", hex::encode(m))),
                None => Err(format!(
                    "no measurement for {vcpus} vCPUs in the endorsement (it lists {} vCPUs)",
                    if counts.is_empty() { "no".to_owned() } else { counts.join(", ") }
                )),
            };
            let ok = found.is_ok();
            result.record("gce_endorsement_measurement", ok, expected, found.unwrap_or_else(|e| e));
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests;
