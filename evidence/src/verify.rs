//! The verifier: every check of the design's Verification section, recorded.
//!
//! [`Verifier::check`] runs all checks and returns a [`VerificationReport`]
//! listing each one as passed, failed (with expected and found values) or
//! skipped (with the reason); [`Verifier::verify`] collapses that into a
//! `Result`. Checks that depend on an earlier step (a chain link whose signer
//! could not be loaded) are recorded as skipped, and the verdict fails on the
//! earlier step, so nothing is ever accepted by omission.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;
use x509_cert::Certificate;

use crate::certs::extensions::AmdExtensions;
use crate::certs::roots::{builtin_ask, builtin_asvk};
use crate::certs::{self, CertChain, TrustAnchors, VekKind};
use crate::policy::{AcceptedKey, Policy};
use crate::report::{AttestationReport, SigningKey, TcbParts, SIG_ALGO_ECDSA_P384_SHA384};
use crate::Product;

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "status")]
pub enum Outcome {
    /// The evidence meets the requirement.
    Passed,
    /// It does not.
    Failed,
    /// The check did not run; `reason` says why (nothing required, or an earlier step failed).
    Skipped {
        /// Why it did not run.
        reason: String,
    },
}

/// One recorded check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's stable name, e.g. `measurement` or `vcek_signed_by_ask`.
    pub name: &'static str,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What was required.
    pub expected: String,
    /// What the evidence has.
    pub found: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Passed => write!(f, "{}: passed ({})", self.name, self.found),
            Outcome::Failed => write!(f, "{}: expected {}, found {}", self.name, self.expected, self.found),
            Outcome::Skipped { reason } => write!(f, "{}: skipped ({reason})", self.name),
        }
    }
}

/// Every check made on one report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerificationReport {
    /// The product the evidence was attributed to, if it could be told.
    pub product: Option<Product>,
    /// All checks, in the order they ran.
    pub checks: Vec<Check>,
}

/// A report that failed verification; carries every failed check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("evidence rejected: {}", summary(.failures))]
pub struct Rejected {
    /// The failed checks, in order; never empty.
    pub failures: Vec<Check>,
}

fn summary(failures: &[Check]) -> String {
    let mut s = failures.first().map(ToString::to_string).unwrap_or_default();
    if failures.len() > 1 {
        s.push_str(&format!(" (and {} more failed checks)", failures.len() - 1));
    }
    s
}

impl VerificationReport {
    /// True when no check failed.
    pub fn accepted(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.outcome == Outcome::Failed)
    }

    /// The check named `name`, if it was recorded.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Appends a check made outside the verifier (e.g. a binding check).
    pub fn record(
        &mut self,
        name: &'static str,
        passed: bool,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        let outcome = if passed { Outcome::Passed } else { Outcome::Failed };
        self.checks.push(Check { name, outcome, expected: expected.into(), found: found.into() });
    }

    /// Appends a check that did not run, with the reason.
    pub fn record_skipped(&mut self, name: &'static str, reason: impl Into<String>) {
        self.checks.push(Check {
            name,
            outcome: Outcome::Skipped { reason: reason.into() },
            expected: String::new(),
            found: String::new(),
        });
    }

    /// A report holding one failed check, for evidence that could not even be parsed.
    pub fn failed(
        name: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> VerificationReport {
        let mut r = VerificationReport { product: None, checks: Vec::new() };
        r.record(name, false, expected, found);
        r
    }

    /// `Ok(self)` when accepted, else the failures.
    pub fn into_result(self) -> Result<VerificationReport, Rejected> {
        let failures: Vec<Check> = self.failures().cloned().collect();
        if failures.is_empty() {
            Ok(self)
        } else {
            Err(Rejected { failures })
        }
    }
}

/// Checks reports against trust anchors, a policy and a point in time.
#[derive(Clone, Debug)]
pub struct Verifier<'a> {
    anchors: &'a TrustAnchors,
    policy: &'a Policy,
    at: OffsetDateTime,
}

/// Collects checks as they run.
struct Recorder(Vec<Check>);

impl Recorder {
    fn push(
        &mut self,
        name: &'static str,
        outcome: Outcome,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.0.push(Check { name, outcome, expected: expected.into(), found: found.into() });
    }
    fn result(
        &mut self,
        name: &'static str,
        ok: bool,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> bool {
        let outcome = if ok { Outcome::Passed } else { Outcome::Failed };
        self.push(name, outcome, expected, found);
        ok
    }
    fn skip(&mut self, name: &'static str, reason: impl Into<String>) {
        self.push(name, Outcome::Skipped { reason: reason.into() }, "", "");
    }
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {unix}"))
}

fn one_of<T: fmt::Display>(items: &[T]) -> String {
    let list: Vec<String> = items.iter().map(ToString::to_string).collect();
    if list.len() == 1 {
        list.join("")
    } else {
        format!("one of [{}]", list.join(", "))
    }
}

fn describe(cert: &Certificate) -> String {
    format!("{} (CN={})", hex::encode(certs::fingerprint(cert)), certs::subject_cn(cert).unwrap_or_default())
}

impl<'a> Verifier<'a> {
    /// A verifier trusting `anchors`, enforcing `policy`, with certificates
    /// required to be valid at `at`.
    pub fn new(anchors: &'a TrustAnchors, policy: &'a Policy, at: OffsetDateTime) -> Verifier<'a> {
        Verifier { anchors, policy, at }
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &'a TrustAnchors {
        self.anchors
    }

    /// The policy.
    pub fn policy(&self) -> &'a Policy {
        self.policy
    }

    /// The time at which certificates must be valid.
    pub fn at(&self) -> OffsetDateTime {
        self.at
    }

    /// Runs every check and collapses the result.
    pub fn verify(
        &self,
        report: &AttestationReport,
        chain: &CertChain,
    ) -> Result<VerificationReport, Rejected> {
        self.check(report, chain).into_result()
    }

    /// Runs every check and records each one.
    pub fn check(&self, report: &AttestationReport, chain: &CertChain) -> VerificationReport {
        let mut rec = Recorder(Vec::new());
        let product = self.check_product(&mut rec, report, chain);
        let vek_trusted = match product {
            Some(p) => self.check_chain(&mut rec, p, chain),
            None => {
                for name in [
                    "ark_pinned",
                    "ark_self_signed",
                    "intermediate_signed_by_ark",
                    "vek_signed_by_intermediate",
                ] {
                    rec.skip(name, "the product is unknown, so no root applies");
                }
                false
            }
        };
        self.check_vek_claims(&mut rec, product, report, chain);
        self.check_signature(&mut rec, report, chain, vek_trusted);
        self.check_policy(&mut rec, product, report);
        VerificationReport { product, checks: rec.0 }
    }

    /// The product, from the VEK's productName and the report's CPUID; both, where present, must agree.
    fn check_product(
        &self,
        rec: &mut Recorder,
        report: &AttestationReport,
        chain: &CertChain,
    ) -> Option<Product> {
        let from_cert = AmdExtensions::from_cert(&chain.vek).ok().and_then(|e| e.product());
        let from_cpuid = report.product_from_cpuid();
        match (from_cert, from_cpuid) {
            (Some(a), Some(b)) if a != b => {
                rec.result(
                    "product",
                    false,
                    format!("{a} (named by the VEK certificate)"),
                    format!("{b} (named by the report's CPUID)"),
                );
                None
            }
            (Some(p), _) | (None, Some(p)) => {
                rec.result("product", true, p.to_string(), p.to_string());
                Some(p)
            }
            (None, None) => {
                rec.result(
                    "product",
                    false,
                    "Milan, Genoa or Turin, named by the VEK certificate or the report's CPUID",
                    "neither names a known product",
                );
                None
            }
        }
    }

    /// ARK pinned and self-signed, intermediate signed by ARK, VEK signed by
    /// intermediate, every certificate valid at `at`. True when the VEK is trusted.
    fn check_chain(&self, rec: &mut Recorder, product: Product, chain: &CertChain) -> bool {
        let ark = match &chain.ark {
            Some(c) => Ok(c.clone()),
            None => self.anchors.default_ark(product),
        };
        let kind = certs::vek_kind(&chain.vek);
        let intermediate = match (&chain.intermediate, kind) {
            (Some(c), _) => Ok(c.clone()),
            (None, Some(VekKind::Vlek)) => builtin_asvk(product),
            (None, _) => builtin_ask(product),
        };
        let mut ok = true;

        let ark = match ark {
            Ok(ark) => ark,
            Err(e) => {
                rec.result("ark_pinned", false, "an ARK", e.to_string());
                return false;
            }
        };
        let pins = self.anchors.ark_fingerprints(product);
        let fp = certs::fingerprint(&ark);
        let pin_list: Vec<String> = pins.iter().map(hex::encode).collect();
        ok &= rec.result(
            "ark_pinned",
            pins.contains(&fp),
            format!("{product} ARK with SHA-256 {}", one_of(&pin_list)),
            describe(&ark),
        );
        let self_signed = certs::verify_issued_by(&ark, &ark);
        ok &= rec.result(
            "ark_self_signed",
            self_signed.is_ok(),
            "ARK signed by its own key",
            self_signed.err().unwrap_or_else(|| "self-signed".into()),
        );
        ok &= self.check_validity(rec, "ark_validity", &ark);

        let intermediate = match intermediate {
            Ok(c) => c,
            Err(e) => {
                rec.result("intermediate_signed_by_ark", false, "an ASK or ASVK", e.to_string());
                return false;
            }
        };
        let signed = certs::verify_issued_by(&ark, &intermediate);
        ok &= rec.result(
            "intermediate_signed_by_ark",
            signed.is_ok(),
            format!("signed by {}", describe(&ark)),
            signed
                .err()
                .map_or_else(|| describe(&intermediate), |e| format!("{}: {e}", describe(&intermediate))),
        );
        ok &= self.check_validity(rec, "intermediate_validity", &intermediate);

        let signed = certs::verify_issued_by(&intermediate, &chain.vek);
        ok &= rec.result(
            "vek_signed_by_intermediate",
            signed.is_ok(),
            format!("signed by {}", describe(&intermediate)),
            signed.err().map_or_else(|| describe(&chain.vek), |e| format!("{}: {e}", describe(&chain.vek))),
        );
        ok &= self.check_validity(rec, "vek_validity", &chain.vek);
        ok
    }

    fn check_validity(&self, rec: &mut Recorder, name: &'static str, cert: &Certificate) -> bool {
        let (nb, na) = certs::validity(cert);
        let at = self.at.unix_timestamp();
        let found = if at < nb {
            format!("not valid before {} (checked at {})", rfc3339(nb), rfc3339(at))
        } else if at > na {
            format!("expired at {} (checked at {})", rfc3339(na), rfc3339(at))
        } else {
            format!("valid at {}", rfc3339(at))
        };
        rec.result(
            name,
            nb <= at && at <= na,
            format!("valid from {} to {}", rfc3339(nb), rfc3339(na)),
            found,
        )
    }

    /// key_info vs certificate kind, hwID, TCB extensions.
    fn check_vek_claims(
        &self,
        rec: &mut Recorder,
        product: Option<Product>,
        report: &AttestationReport,
        chain: &CertChain,
    ) {
        let kind = certs::vek_kind(&chain.vek);
        let signing_key = report.key_info.signing_key();
        let expected_key = match kind {
            Some(VekKind::Vcek) => Some(SigningKey::Vcek),
            Some(VekKind::Vlek) => Some(SigningKey::Vlek),
            None => None,
        };
        rec.result(
            "signing_key",
            expected_key == Some(signing_key),
            expected_key.map_or_else(
                || "a VEK certificate with CN=SEV-VCEK or CN=SEV-VLEK".to_owned(),
                |k| format!("{k} (the certificate given)"),
            ),
            format!("{signing_key} (key_info of the report)"),
        );
        let accepted: Vec<&str> = self
            .policy
            .signing_keys
            .iter()
            .map(|k| match k {
                AcceptedKey::Vcek => "VCEK",
                AcceptedKey::Vlek => "VLEK",
            })
            .collect();
        let key_name = signing_key.to_string();
        rec.result("signing_key_allowed", accepted.contains(&key_name.as_str()), one_of(&accepted), key_name);

        let ext = match AmdExtensions::from_cert(&chain.vek) {
            Ok(ext) => ext,
            Err(e) => {
                rec.result("vek_extensions", false, "AMD's VCEK/VLEK extensions", e.to_string());
                return;
            }
        };
        match (kind, &ext.hw_id) {
            (Some(VekKind::Vcek), Some(hw_id)) => {
                let n = hw_id.len().min(report.chip_id.len());
                let ok = hw_id.len() <= report.chip_id.len()
                    && hw_id[..] == report.chip_id[..n]
                    && report.chip_id[n..].iter().all(|&b| b == 0);
                rec.result("hw_id", ok, hex::encode(hw_id), hex::encode(report.chip_id));
            }
            (Some(VekKind::Vcek), None) => {
                rec.result("hw_id", false, "a hwID extension in the VCEK", "none");
            }
            _ => rec.skip("hw_id", "a VLEK is not bound to one chip"),
        }
        match product {
            Some(p) => {
                let mut found = report.reported_tcb.parts(p);
                if p != Product::Turin {
                    found.fmc = None;
                }
                let mut expected: TcbParts = ext.tcb;
                if p != Product::Turin {
                    expected.fmc = None;
                }
                rec.result(
                    "tcb_extensions",
                    expected == found,
                    format!("reported_tcb equal to the VEK's {expected}"),
                    format!("reported_tcb {found}"),
                );
            }
            None => rec.skip("tcb_extensions", "the product is unknown, so the TCB layout is too"),
        }
    }

    /// ECDSA P-384 over the raw bytes [0, 0x2A0), and the unused signature bytes zero.
    fn check_signature(
        &self,
        rec: &mut Recorder,
        report: &AttestationReport,
        chain: &CertChain,
        vek_trusted: bool,
    ) {
        rec.result(
            "signature_algo",
            report.signature_algo == SIG_ALGO_ECDSA_P384_SHA384,
            "1 (ECDSA P-384 with SHA-384)",
            report.signature_algo.to_string(),
        );
        let key = match certs::vek_public_key(&chain.vek) {
            Ok(key) => key,
            Err(e) => {
                rec.result("report_signature", false, "a P-384 VEK key", e);
                return;
            }
        };
        let sig = &report.signature;
        let found = match ecdsa_signature(&sig.r, &sig.s) {
            None => Err("R or S has non-zero bytes beyond the 48 of a P-384 scalar".to_owned()),
            Some(rs) if certs::verify_ecdsa_p384(&key, report.signed_bytes(), &rs) => Ok(()),
            Some(_) => Err("does not verify".to_owned()),
        };
        let expected = if vek_trusted {
            "ECDSA P-384 signature over bytes [0, 0x2A0) by the VEK"
        } else {
            "ECDSA P-384 signature over bytes [0, 0x2A0) by the VEK (whose chain failed above)"
        };
        rec.result(
            "report_signature",
            found.is_ok(),
            expected,
            found.err().unwrap_or_else(|| "verifies".into()),
        );
        let nonzero = sig.reserved.iter().filter(|&&b| b != 0).count();
        rec.result(
            "signature_padding",
            nonzero == 0,
            "reserved signature bytes all zero",
            format!("{nonzero} non-zero bytes"),
        );
    }

    fn check_policy(&self, rec: &mut Recorder, product: Option<Product>, report: &AttestationReport) {
        let p = self.policy;
        let debug = report.policy.debug();
        rec.result(
            "debug",
            !debug || p.allow_debug,
            if p.allow_debug { "debug allowed or not" } else { "debug off" },
            if debug { "debug allowed by the guest policy" } else { "debug off" },
        );
        let ma = report.policy.migrate_ma();
        rec.result(
            "migration_agent",
            !ma || p.allow_migration_agent,
            if p.allow_migration_agent { "migration agent allowed or not" } else { "no migration agent" },
            if ma { "migration agent allowed by the guest policy" } else { "no migration agent" },
        );
        let smt = report.platform_info.smt_enabled();
        rec.result(
            "smt",
            !smt || p.allow_smt,
            if p.allow_smt { "SMT enabled or not" } else { "SMT disabled on the platform" },
            if smt { "SMT enabled" } else { "SMT disabled" },
        );
        match p.vmpl {
            Some(v) => {
                rec.result("vmpl", report.vmpl == v, v.to_string(), report.vmpl.to_string());
            }
            None => rec.skip("vmpl", "the policy does not pin the VMPL"),
        }
        match (&p.min_tcb, product) {
            (Some(min), Some(prod)) => {
                let found = report.reported_tcb.parts(prod);
                let low = found.below(min);
                let detail =
                    low.iter().map(|(n, f, m)| format!("{n} {f} < {m}")).collect::<Vec<_>>().join(", ");
                rec.result(
                    "min_tcb",
                    low.is_empty(),
                    format!("at least {min}"),
                    if low.is_empty() { found.to_string() } else { format!("{found} ({detail})") },
                );
            }
            (Some(_), None) => rec.skip("min_tcb", "the product is unknown, so the TCB layout is too"),
            (None, _) => rec.skip("min_tcb", "the policy sets no minimum TCB"),
        }
        match p.min_guest_svn {
            Some(min) => {
                rec.result(
                    "guest_svn",
                    report.guest_svn >= min,
                    format!("at least {min}"),
                    report.guest_svn.to_string(),
                );
            }
            None => rec.skip("guest_svn", "the policy sets no minimum guest SVN"),
        }
        in_set(rec, "measurement", &p.measurements, &report.measurement);
        exact(rec, "host_data", p.host_data.as_ref().map(|h| &h.0[..]), &report.host_data);
        exact(rec, "report_data", p.report_data.as_ref().map(|h| &h.0[..]), &report.report_data);
        in_set(rec, "id_key_digest", &p.id_key_digests, &report.id_key_digest);
        in_set(rec, "author_key_digest", &p.author_key_digests, &report.author_key_digest);
    }
}

fn in_set<const N: usize>(
    rec: &mut Recorder,
    name: &'static str,
    allowed: &[crate::hexbytes::HexBytes<N>],
    found: &[u8; N],
) {
    if allowed.is_empty() {
        rec.skip(name, format!("the policy lists no accepted {name} (found {})", hex::encode(found)));
    } else {
        rec.result(name, allowed.iter().any(|a| &a.0 == found), one_of(allowed), hex::encode(found));
    }
}

fn exact(rec: &mut Recorder, name: &'static str, expected: Option<&[u8]>, found: &[u8]) {
    match expected {
        Some(e) => {
            rec.result(name, e == found, hex::encode(e), hex::encode(found));
        }
        None => rec.skip(name, format!("the policy does not pin {name} (found {})", hex::encode(found))),
    }
}

/// Converts AMD's little-endian, 72-byte R and S into big-endian r || s.
///
/// Bytes 48..72 must be zero: a P-384 scalar has 48 bytes.
fn ecdsa_signature(r: &[u8; 72], s: &[u8; 72]) -> Option<[u8; 96]> {
    if r[48..].iter().chain(&s[48..]).any(|&b| b != 0) {
        return None;
    }
    let mut rs = [0u8; 96];
    for i in 0..48 {
        rs[i] = r[47 - i];
        rs[48 + i] = s[47 - i];
    }
    Some(rs)
}
