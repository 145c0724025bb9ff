//! The properties the fuzz targets check, one function per target.
//!
//! Each function takes the fuzzer's bytes, runs the parser or verifier they
//! are meant for, and panics when a property fails: a parsed value that does
//! not re-encode to its bytes, a certificate decoded from other bytes than it
//! encodes to, a report or quote accepted that no genuine key signed, a
//! verification that does not record each of its checks once. Bytes that are
//! refused are fine; a panic is a finding.
//!
//! `fuzz/` (cargo-fuzz, nightly) calls these from its targets with a global
//! allocator that refuses to go past [`allocation_bound`]; the stable tests
//! (`tests/fuzz_replay.rs`) call the same functions on the committed corpus
//! and every past finding, under the same bound. See `docs/fuzzing.md` at the
//! repository root. The genuine evidence the properties compare with is this
//! crate's test data: AMD's real vectors, a swtpm quote, and a simulated
//! chain kept in `testdata/simulated/`.
//!
//! Not part of the crate's API: hidden from the docs, no stability promise.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a property that does not hold is a panic: that is what the fuzzer reports"
)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use der::Encode;
use sha2::{Digest as _, Sha256};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::binding::{chain_from, check_boot_certificate, BootEvidence};
use crate::certs::extensions::AmdExtensions;
use crate::certs::{self, CertChain, Certificate, TrustAnchors};
use crate::eventlog::{extend_log_digest, log_digest, replay_pcr, EventRecord, PcrBank, EVENT_CONTEXT};
use crate::measured_boot::{check_measured_boot, MeasuredBootClaim};
use crate::report::{ReportBody, REPORT_LEN, SIGNED_LEN};
use crate::simulator::SimulatedChain;
use crate::tcglog::{self, EventLog, MAX_PCR};
use crate::tpm::{AkPublic, KeyParams, Quote, Signature};
use crate::verify::Outcome;
use crate::vtpm::{check_measurements, VtpmClaim};
use crate::{AttestationReport, Policy, VerificationReport, Verifier};

/// A property function: panics when the property does not hold for the input.
pub type Property = fn(&[u8]);

/// Every target of this crate: its name (the file in `fuzz/fuzz_targets/`
/// and the directory of its corpus) and its property function.
pub const TARGETS: &[(&str, Property)] = &[
    ("snp_report", snp_report),
    ("snp_verify", snp_verify),
    ("certificate", certificate),
    ("boot_evidence", boot_evidence),
    ("policy", policy),
    ("tpm_quote", tpm_quote),
    ("tpm_signature", tpm_signature),
    ("tpm_public", tpm_public),
    ("event_log", event_log),
    ("vtpm_check", vtpm_check),
    ("simulated_bundle", simulated_bundle),
    ("tcg_event_log", tcg_event_log),
    ("measured_boot", measured_boot),
    ("uki", uki),
    ("gce_endorsement", gce_endorsement),
    ("hcl_report", hcl_report),
];

/// The most bytes a property function may hold allocated at once for an
/// input of `len` bytes: 1 MiB, or 64 bytes per input byte if that is more
/// (the same rule as `cvm_protocol::fuzzing::allocation_bound`).
pub fn allocation_bound(len: usize) -> usize {
    (1usize << 20).max(len.saturating_mul(64))
}

/// Builds what the properties compare with (parsed vectors, the simulated
/// chain and its reports), so that the first input does not pay for it
/// inside its allocation bound.
pub fn warm_up() {
    let _ = genuine();
    let _ = google_ak_root();
}

// ---- the genuine evidence --------------------------------------------------

struct RealVector {
    report: &'static [u8],
    vek: &'static [u8],
    /// A time at which the vector's certificates are valid.
    at: OffsetDateTime,
}

/// AMD-signed reports with the VEK that signed them (the ARK and ASK are built in).
pub const REAL_VECTORS: usize = 4;

const VECTORS: [RealVector; REAL_VECTORS] = [
    RealVector {
        report: include_bytes!("../testdata/amd/milan-virtee/report.bin"),
        vek: include_bytes!("../testdata/amd/milan-virtee/vcek.der"),
        at: datetime!(2026-01-01 00:00 UTC),
    },
    RealVector {
        report: include_bytes!("../testdata/amd/milan-trustee/report.bin"),
        vek: include_bytes!("../testdata/amd/milan-trustee/vcek.der"),
        at: datetime!(2026-01-01 00:00 UTC),
    },
    RealVector {
        report: include_bytes!("../testdata/amd/genoa-oak-v5/report.bin"),
        vek: include_bytes!("../testdata/amd/genoa-oak-v5/vcek.der"),
        at: datetime!(2026-01-01 00:00 UTC),
    },
    RealVector {
        report: include_bytes!("../testdata/amd/milan-vlek-trustee/report.bin"),
        vek: include_bytes!("../testdata/amd/milan-vlek-trustee/vlek.der"),
        at: datetime!(2025-06-01 00:00 UTC),
    },
];

/// A simulated Milan chain (its private keys included: it is test data that
/// no verifier trusts unless told to).
pub const SIMULATED_CHAIN: &str = include_str!("../testdata/simulated/milan-chain.txt");

/// When the simulated chain's certificates are valid.
const SIMULATED_AT: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// The vTPM quote of the crate's test data (swtpm), and its key and signature.
const AK: &[u8] = include_bytes!("../testdata/tpm/ak.pub.tpmt");
const QUOTE: &[u8] = include_bytes!("../testdata/tpm/quote.msg");
const QUOTE_SIG: &[u8] = include_bytes!("../testdata/tpm/quote.sig");

struct Genuine {
    amd: TrustAnchors,
    chains: Vec<CertChain>,
    simulated: SimulatedChain,
    simulated_anchors: TrustAnchors,
    simulated_chain: CertChain,
    /// Reports signed by the simulated chain (`simulated_reports`).
    simulated_reports: Vec<AttestationReport>,
    /// The TBS part of every genuine certificate this crate knows.
    genuine_tbs: BTreeSet<Vec<u8>>,
    /// Certificates that sign others: the built-in ARKs, ASKs and ASVK.
    issuers: Vec<Certificate>,
}

fn genuine() -> &'static Genuine {
    static G: OnceLock<Genuine> = OnceLock::new();
    G.get_or_init(|| {
        let amd = TrustAnchors::amd();
        let chains = VECTORS
            .iter()
            .map(|v| CertChain {
                ark: None,
                intermediate: None,
                vek: certs::parse_certificate(v.vek, "test vector VEK").unwrap(),
            })
            .collect::<Vec<_>>();
        let simulated = SimulatedChain::from_pem_bundle(SIMULATED_CHAIN).unwrap();
        let mut simulated_anchors = TrustAnchors::amd();
        simulated_anchors.trust_additional_ark(simulated.ark().clone()).unwrap();
        let simulated_chain = CertChain {
            ark: Some(simulated.ark().clone()),
            intermediate: Some(simulated.ask().clone()),
            vek: simulated.vek().clone(),
        };
        let simulated_reports =
            simulated_bodies(&simulated).iter().map(|b| simulated.sign(b).unwrap()).collect::<Vec<_>>();
        let mut issuers = Vec::new();
        for product in [crate::Product::Milan, crate::Product::Genoa, crate::Product::Turin] {
            issuers.push(amd.default_ark(product).unwrap());
            issuers.push(certs::roots::builtin_ask(product).unwrap());
            if let Ok(asvk) = certs::roots::builtin_asvk(product) {
                issuers.push(asvk);
            }
        }
        issuers.push(simulated.ark().clone());
        issuers.push(simulated.ask().clone());
        let mut genuine_tbs = BTreeSet::new();
        let all = issuers.iter().chain(chains.iter().map(|c| &c.vek)).chain([simulated.vek()]);
        for cert in all {
            genuine_tbs.insert(cert.tbs_certificate.to_der().unwrap());
        }
        Genuine {
            amd,
            chains,
            simulated,
            simulated_anchors,
            simulated_chain,
            simulated_reports,
            genuine_tbs,
            issuers,
        }
    })
}

/// The bodies the simulated chain signs for the corpus: its template in
/// each report version, with fixed ids (the template's report id is random).
pub fn simulated_bodies(chain: &SimulatedChain) -> Vec<ReportBody> {
    [2u32, 3, 5]
        .into_iter()
        .map(|version| {
            let mut b = chain.report_template();
            b.version = version;
            b.report_id = [0x11; 32];
            b.report_data = [version as u8; 64];
            if version < 3 {
                b.cpuid = None;
            }
            if version >= 5 {
                b.launch_mit_vector = Some(0);
                b.current_mit_vector = Some(0);
            }
            b
        })
        .collect()
}

/// The seeds of `snp_verify`: each real vector and each simulated report,
/// behind the byte that selects its chain.
pub fn snp_verify_seeds() -> Vec<Vec<u8>> {
    let g = genuine();
    let mut out = Vec::new();
    for (i, v) in VECTORS.iter().enumerate() {
        let mut seed = vec![i as u8];
        seed.extend_from_slice(v.report);
        out.push(seed);
    }
    for r in &g.simulated_reports {
        let mut seed = vec![REAL_VECTORS as u8];
        seed.extend_from_slice(r.raw());
        out.push(seed);
    }
    out
}

// ---- reports ----------------------------------------------------------------

/// A report that parses keeps exactly its bytes, and its body encodes to
/// those bytes at every offset the body holds (reserved bytes aside).
pub fn snp_report(data: &[u8]) {
    let Ok(report) = AttestationReport::from_bytes(data) else { return };
    assert_eq!(&report.raw()[..], data);
    assert_eq!(report.signed_bytes(), &data[..SIGNED_LEN]);
    let encoded = report.body().encode();
    let again = AttestationReport::from_bytes(&encoded).expect("an encoded body parses");
    assert_eq!(again.body(), report.body(), "the body changes when encoded and parsed again");
    // Which bytes the body holds: those that a body parsed from all-ones bytes
    // of the same version encodes as non-zero.
    let mut ones = [0xffu8; REPORT_LEN];
    ones[..4].copy_from_slice(&report.version.to_le_bytes());
    let covered = AttestationReport::from_bytes(&ones).expect("same version").body().encode();
    for (i, (&held, (&a, &b))) in covered.iter().zip(encoded.iter().zip(data)).enumerate() {
        if held != 0 {
            assert_eq!(a, b, "byte 0x{i:x} of the report is not kept by its body");
        }
    }
    // Every way of showing the report works.
    assert!(!report.fields().is_empty());
    let _ = report.to_json();
    let _ = report.tcb_layout();
    let _ = report.reported_tcb.parts(report.tcb_layout());
}

/// The first byte picks a chain (AMD's real vectors, or the simulated one),
/// the rest is verified as a report against it. Every check is recorded
/// once; a passing signature check also passes an independent ECDSA
/// implementation; an accepted report signs the same bytes as a genuine one.
pub fn snp_verify(data: &[u8]) {
    let Some((&which, raw)) = data.split_first() else { return };
    let Ok(report) = AttestationReport::from_bytes(raw) else { return };
    let g = genuine();
    let which = usize::from(which) % (REAL_VECTORS + 1);
    let policy = Policy { allow_debug: true, allow_migration_agent: true, ..Policy::default() };
    let (anchors, chain, at, genuine_signed): (_, _, _, Vec<&[u8]>) = if which < REAL_VECTORS {
        (&g.amd, &g.chains[which], VECTORS[which].at, vec![&VECTORS[which].report[..SIGNED_LEN]])
    } else {
        (
            &g.simulated_anchors,
            &g.simulated_chain,
            SIMULATED_AT,
            g.simulated_reports.iter().map(|r| r.signed_bytes()).collect(),
        )
    };
    let result = Verifier::new(anchors, &policy, at).check(&report, chain);
    assert_each_check_once(&result);
    let signature = result.check("report_signature").expect("the signature is always checked");
    if signature.outcome == Outcome::Passed {
        assert!(
            independent_ecdsa_p384(&certs::vek_public_key(&chain.vek).unwrap(), &report),
            "ring accepted a report signature that p384 refuses"
        );
    }
    if result.accepted() {
        assert!(
            genuine_signed.contains(&report.signed_bytes()),
            "a report that no genuine key signed was accepted"
        );
    }
}

fn independent_ecdsa_p384(point: &[u8], report: &AttestationReport) -> bool {
    use p384::ecdsa::signature::Verifier as _;
    let be = |le: &[u8; 72]| -> Option<[u8; 48]> {
        if le[48..].iter().any(|&b| b != 0) {
            return None;
        }
        let mut out = [0u8; 48];
        for (i, b) in le[..48].iter().enumerate() {
            out[47 - i] = *b;
        }
        Some(out)
    };
    let (Some(r), Some(s)) = (be(&report.signature.r), be(&report.signature.s)) else { return false };
    let Ok(sig) = p384::ecdsa::Signature::from_scalars(r, s) else { return false };
    let Ok(key) = p384::ecdsa::VerifyingKey::from_sec1_bytes(point) else { return false };
    key.verify(report.signed_bytes(), &sig).is_ok()
}

fn assert_each_check_once(result: &VerificationReport) {
    let mut seen = BTreeSet::new();
    for c in &result.checks {
        assert!(seen.insert(c.name), "check {} recorded twice", c.name);
        let _ = c.to_string();
    }
}

// ---- certificates -----------------------------------------------------------

/// A certificate that parses (PEM or DER) encodes to exactly its DER; its
/// fingerprint is that DER's SHA-256; its names, validity and AMD
/// extensions can be read; and if a built-in or simulated issuer's key
/// verifies its signature, it is one of the genuine certificates.
pub fn certificate(data: &[u8]) {
    let Ok(cert) = certs::parse_certificate(data, "fuzz input") else { return };
    let der = cert.to_der().expect("a parsed certificate encodes");
    let given = if data.starts_with(b"-----BEGIN") {
        certs::pem_body(data, "CERTIFICATE").expect("it parsed, so its PEM decodes")
    } else {
        data.to_vec()
    };
    assert_eq!(der, given, "the certificate encodes to other bytes than it was parsed from");
    let fingerprint: [u8; 32] = Sha256::digest(&der).into();
    assert_eq!(certs::fingerprint(&cert), fingerprint);
    let _ =
        (certs::subject_cn(&cert), certs::issuer_cn(&cert), certs::vek_kind(&cert), certs::validity(&cert));
    if let Ok(ext) = AmdExtensions::from_cert(&cert) {
        let _ = ext.product();
    }
    let _ = certs::vek_public_key(&cert);
    let g = genuine();
    let tbs = cert.tbs_certificate.to_der().expect("encodes");
    for issuer in &g.issuers {
        if certs::verify_issued_by(issuer, &cert).is_ok() {
            assert!(g.genuine_tbs.contains(&tbs), "a certificate no genuine issuer signed verified");
        }
    }
}

/// The boot evidence of an agent's certificate (or of an id-pe-cmw value
/// given alone) survives its own encoding; checking the certificate records
/// each check once and never accepts evidence it could not read.
pub fn boot_evidence(data: &[u8]) {
    if let Ok(ev) = BootEvidence::from_extension_value(data) {
        let value = ev.to_extension_value().expect("evidence encodes");
        assert_eq!(BootEvidence::from_extension_value(&value).expect("its encoding parses"), ev);
    }
    let Ok((ev, spki)) = BootEvidence::from_certificate(data) else { return };
    let value = ev.to_extension_value().expect("evidence encodes");
    assert_eq!(BootEvidence::from_extension_value(&value).expect("its encoding parses"), ev);
    assert!(
        <spki::SubjectPublicKeyInfoRef<'_> as der::Decode>::from_der(&spki).is_ok(),
        "the key is not an SPKI"
    );
    let _ = chain_from(&ev, None);
    let g = genuine();
    let policy = Policy::default();
    for (anchors, at) in [(&g.amd, VECTORS[0].at), (&g.simulated_anchors, SIMULATED_AT)] {
        let verifier = Verifier::new(anchors, &policy, at);
        let (result, parsed) = check_boot_certificate(&verifier, data, &ev.manifest_digest, None);
        assert_each_check_once(&result);
        assert_eq!(parsed.as_ref(), Some(&ev));
        if result.accepted() {
            // Accepted: its VEK is a genuine certificate, whose key signed
            // the report as an independent ECDSA implementation sees it.
            let report = AttestationReport::from_bytes(&ev.report).expect("accepted evidence has a report");
            let vek = chain_from(&ev, None).expect("accepted evidence has a chain").vek;
            let tbs = vek.tbs_certificate.to_der().expect("encodes");
            assert!(g.genuine_tbs.contains(&tbs), "boot evidence accepted with a VEK no genuine issuer made");
            let point = certs::vek_public_key(&vek).expect("a P-384 VEK");
            assert!(independent_ecdsa_p384(&point, &report), "boot evidence accepted that p384 refuses");
        }
    }
}

// ---- policies -----------------------------------------------------------------

/// A policy that parses serialises to JSON that parses to the same policy.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(p) = Policy::from_json(text) else { return };
    let json = serde_json::to_string(&p).expect("a policy serialises");
    let again = Policy::from_json(&json).unwrap_or_else(|e| panic!("{json} does not parse back: {e}"));
    assert_eq!(again, p);
}

// ---- TPM ------------------------------------------------------------------------

/// A quote that parses marshals back to exactly its bytes.
pub fn tpm_quote(data: &[u8]) {
    let Ok(q) = Quote::parse(data) else { return };
    assert_eq!(marshal_quote(&q), data, "the quote marshals to other bytes");
    let _ = (q.selection.pcrs(), q.selection.to_string());
}

/// A signature that parses marshals back to exactly its bytes.
pub fn tpm_signature(data: &[u8]) {
    let Ok(s) = Signature::parse(data) else { return };
    let mut out = Vec::new();
    out.extend_from_slice(&s.scheme.to_be_bytes());
    out.extend_from_slice(&s.hash.to_be_bytes());
    if s.scheme == crate::tpm::alg::ECDSA {
        tpm2b(&mut out, &s.ecdsa_r);
        tpm2b(&mut out, &s.ecdsa_s);
    } else {
        tpm2b(&mut out, &s.rsa);
    }
    assert_eq!(out, data, "the signature marshals to other bytes");
}

/// An attestation key that parses has an SPKI form that is DER of the
/// same key; if it verifies the test quote's signature, it is the test
/// quote's key.
pub fn tpm_public(data: &[u8]) {
    let Ok(ak) = AkPublic::parse(data) else { return };
    let spki_der = ak.to_spki_der().expect("an attestation key has an SPKI");
    let spki =
        <spki::SubjectPublicKeyInfoRef<'_> as der::Decode>::from_der(&spki_der).expect("its SPKI is DER");
    if let KeyParams::Ecc { x, y, .. } = &ak.key {
        let point = spki.subject_public_key.raw_bytes();
        assert_eq!(&point[1..], [&x[..], &y[..]].concat(), "the SPKI holds another point");
    }
    let sig = Signature::parse(QUOTE_SIG).expect("test data");
    if ak.verify(QUOTE, &sig).is_ok() {
        assert_eq!(ak.key, AkPublic::parse(AK).expect("test data").key, "another key verified the quote");
    }
}

fn marshal_quote(q: &Quote) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xff54_4347u32.to_be_bytes());
    out.extend_from_slice(&0x8018u16.to_be_bytes());
    tpm2b(&mut out, &q.qualified_signer);
    tpm2b(&mut out, &q.extra_data);
    out.extend_from_slice(&q.clock.clock.to_be_bytes());
    out.extend_from_slice(&q.clock.reset_count.to_be_bytes());
    out.extend_from_slice(&q.clock.restart_count.to_be_bytes());
    out.push(u8::from(q.clock.safe));
    out.extend_from_slice(&q.firmware_version.to_be_bytes());
    out.extend_from_slice(&(q.selection.0.len() as u32).to_be_bytes());
    for (alg, bitmap) in &q.selection.0 {
        out.extend_from_slice(&alg.to_be_bytes());
        out.push(bitmap.len() as u8);
        out.extend_from_slice(bitmap);
    }
    tpm2b(&mut out, &q.pcr_digest);
    out
}

fn tpm2b(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

// ---- event logs -----------------------------------------------------------------

/// Events (the JSON an agent sends): each record's encoding reads back to
/// the same three fields, so no two events share one; the log digest is the
/// step-by-step one and equals a fresh SHA-256 PCR's replay.
pub fn event_log(data: &[u8]) {
    let Ok(events) = serde_json::from_slice::<Vec<EventRecord>>(data) else { return };
    for e in &events {
        assert_eq!(&decode_record(&e.encode()), e, "the record's encoding is ambiguous");
    }
    let digest = log_digest(&events);
    assert_eq!(events.iter().fold([0u8; 32], |d, e| extend_log_digest(&d, e)), digest);
    assert_eq!(replay_pcr(PcrBank::Sha256, &events), digest.to_vec());
    assert_eq!(replay_pcr(PcrBank::Sha384, &events).len(), 48);
    let json = serde_json::to_vec(&events).expect("events serialise");
    assert_eq!(serde_json::from_slice::<Vec<EventRecord>>(&json).expect("parse back"), events);
}

/// Reads a record back by its length prefixes (the module docs of `eventlog`).
fn decode_record(bytes: &[u8]) -> EventRecord {
    let rest = bytes.strip_prefix(EVENT_CONTEXT).and_then(|r| r.strip_prefix(&[0])).expect("context");
    let mut fields = Vec::new();
    let mut rest = rest;
    for _ in 0..3 {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (field, tail) = tail.split_at(len);
        fields.push(String::from_utf8(field.to_vec()).expect("UTF-8"));
        rest = tail;
    }
    assert!(rest.is_empty(), "bytes after the record's three fields");
    EventRecord::new(fields[0].clone(), fields[1].clone(), fields[2].clone())
}

/// The vTPM checks of session evidence on fuzzed pieces (see
/// [`vtpm_check_input`] for the layout): every check is recorded exactly
/// once; a verified quote passed them all; a passing signature is the
/// test quote's, by its own key.
pub fn vtpm_check(data: &[u8]) {
    let Some(input) = VtpmInput::parse(data) else { return };
    let Ok(events) = serde_json::from_slice::<Vec<EventRecord>>(input.events) else { return };
    let claimed = if input.flags & 0x20 != 0 { log_digest(&events) } else { [0u8; 32] };
    let mut banks = Vec::new();
    if input.flags & 0x04 != 0 {
        banks.push(PcrBank::Sha256);
    }
    if input.flags & 0x08 != 0 {
        banks.push(PcrBank::Sha384);
    }
    let claim = if input.flags & 0x02 != 0 {
        VtpmClaim::Quoted {
            quote: input.quote,
            signature: input.signature,
            pcr: u32::from(input.pcr),
            banks: &banks,
            kind: "fuzz",
        }
    } else {
        VtpmClaim::Absent { reason: "fuzz" }
    };
    let ak = (input.flags & 0x10 != 0).then_some(input.ak);
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let (digest, verified) =
        check_measurements(&mut result, input.flags & 0x01 != 0, ak, &claim, &input.nonce, &claimed, &events);
    assert_eq!(digest, log_digest(&events));
    assert_each_check_once(&result);
    let names: Vec<&str> = result.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "event_log",
            "vtpm",
            "vtpm_ak_binding",
            "vtpm_ak",
            "vtpm_quote_format",
            "vtpm_quote_signature",
            "vtpm_quote_nonce",
            "vtpm_pcr_selection",
            "vtpm_event_replay"
        ],
        "the vTPM checks are not all recorded in order"
    );
    if verified.is_some() {
        let vtpm_checks = &result.checks[1..];
        assert!(
            vtpm_checks.iter().all(|c| c.outcome == Outcome::Passed),
            "a quote verified with a failed check"
        );
    }
    if result.check("vtpm_quote_signature").is_some_and(|c| c.outcome == Outcome::Passed) {
        assert_eq!(input.quote, QUOTE, "a quote that the test AK never signed verified");
        let key = AkPublic::parse(input.ak).expect("it verified").key;
        assert_eq!(key, AkPublic::parse(AK).expect("test data").key, "another key verified the quote");
    }
}

struct VtpmInput<'a> {
    flags: u8,
    pcr: u8,
    ak: &'a [u8],
    quote: &'a [u8],
    signature: &'a [u8],
    nonce: [u8; 32],
    events: &'a [u8],
}

impl<'a> VtpmInput<'a> {
    fn parse(data: &'a [u8]) -> Option<VtpmInput<'a>> {
        let (&flags, rest) = data.split_first()?;
        let (&pcr, mut rest) = rest.split_first()?;
        let mut piece = || {
            let (len, tail) = rest.split_at_checked(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let (piece, tail) = tail.split_at_checked(len)?;
            rest = tail;
            Some(piece)
        };
        let ak = piece()?;
        let quote = piece()?;
        let signature = piece()?;
        let (nonce, events) = rest.split_at_checked(32)?;
        Some(VtpmInput { flags, pcr, ak, quote, signature, nonce: nonce.try_into().ok()?, events })
    }
}

/// The bytes of a `vtpm_check` input: a flags byte (1 the policy requires a
/// vTPM, 2 a quote is claimed, 4 the sha256 bank, 8 the sha384 bank, 16 the
/// boot evidence carries `ak`, 32 the claimed log digest is the events'
/// own), the PCR, then `ak`, `quote` and `signature` each behind a u16
/// big-endian length, the 32-byte nonce, and the events as JSON.
pub fn vtpm_check_input(
    flags: u8,
    pcr: u8,
    ak: &[u8],
    quote: &[u8],
    signature: &[u8],
    nonce: &[u8; 32],
    events: &[u8],
) -> Vec<u8> {
    let mut out = vec![flags, pcr];
    for piece in [ak, quote, signature] {
        tpm2b(&mut out, piece);
    }
    out.extend_from_slice(nonce);
    out.extend_from_slice(events);
    out
}

/// The seeds of `vtpm_check`: the test quote with its key, as it verifies,
/// and the same with no quote.
pub fn vtpm_check_seeds() -> Vec<Vec<u8>> {
    let quote = Quote::parse(QUOTE).expect("test data");
    let nonce: [u8; 32] = quote.extra_data.as_slice().try_into().expect("a 32-byte nonce");
    let events = br#"[{"kind":"manifest","name":"stats-1","identity":"sha256:00"}]"#;
    vec![
        vtpm_check_input(0x3f, 15, AK, QUOTE, QUOTE_SIG, &nonce, events),
        vtpm_check_input(0x3e, 15, AK, QUOTE, QUOTE_SIG, &nonce, b"[]"),
        vtpm_check_input(0x21, 0, b"", b"", b"", &[0; 32], b"[]"),
    ]
}

// ---- the simulated chain's bundle ---------------------------------------------

/// A bundle that loads writes itself out as a bundle that loads to the
/// same chain, and that text is stable.
pub fn simulated_bundle(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(chain) = SimulatedChain::from_pem_bundle(text) else { return };
    let written = chain.to_pem_bundle().expect("a loaded chain writes out");
    let again = SimulatedChain::from_pem_bundle(&written).expect("its own bundle loads");
    assert_eq!(again.params(), chain.params());
    assert_eq!((again.ark(), again.ask(), again.vek()), (chain.ark(), chain.ask(), chain.vek()));
    assert_eq!(again.to_pem_bundle().expect("writes out"), written, "the bundle's text is not stable");
}

/// The simulated chain of the test data, for seeds.
pub fn simulated_chain() -> &'static SimulatedChain {
    &genuine().simulated
}

// ---- measured boot: the firmware's event log, the boot quote, UKIs -----------

/// A firmware event log (TCG crypto-agile) that parses marshals back to
/// exactly its bytes; every event can be described; a bank the header names
/// replays to 24 PCR values of its size, any other bank is refused.
pub fn tcg_event_log(data: &[u8]) {
    let Ok(log) = tcglog::parse(data) else { return };
    assert_eq!(marshal_tcg_log(&log), data, "the log marshals to other bytes");
    for e in &log.events {
        let _ = e.describe();
    }
    for bank in [PcrBank::Sha256, PcrBank::Sha384] {
        let named = log.spec_id.algorithms.iter().any(|(a, _)| *a == bank.alg_id());
        match log.replay(bank) {
            Ok(pcrs) => {
                assert!(named, "a bank the log does not name replayed");
                assert_eq!(pcrs.len(), MAX_PCR as usize + 1);
                assert!(pcrs.iter().all(|p| p.len() == bank.digest_len()));
            }
            Err(_) => assert!(!named, "a bank the log names did not replay"),
        }
    }
    let extended: usize = (0..=MAX_PCR).map(|p| log.events_in(p).count()).sum();
    assert_eq!(extended, log.events.iter().filter(|e| e.is_extended()).count());
    let _ = log.algorithm_names();
}

fn marshal_tcg_log(log: &EventLog) -> Vec<u8> {
    let s = &log.spec_id;
    let mut spec = b"Spec ID Event03\0".to_vec();
    spec.extend_from_slice(&s.platform_class.to_le_bytes());
    spec.extend_from_slice(&[s.version.1, s.version.0, s.version.2, s.uintn_size]);
    spec.extend_from_slice(&(s.algorithms.len() as u32).to_le_bytes());
    for (id, size) in &s.algorithms {
        spec.extend_from_slice(&id.to_le_bytes());
        spec.extend_from_slice(&size.to_le_bytes());
    }
    spec.push(s.vendor_info.len() as u8);
    spec.extend_from_slice(&s.vendor_info);
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&tcglog::EventType::NO_ACTION.0.to_le_bytes());
    out.extend_from_slice(&[0; 20]);
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(&spec);
    for e in &log.events {
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.event_type.0.to_le_bytes());
        out.extend_from_slice(&(e.digests.len() as u32).to_le_bytes());
        for (id, digest) in &e.digests {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(digest);
        }
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    out
}

/// The measured-boot checks of session evidence on fuzzed pieces (see
/// [`measured_boot_input`] for the layout): each check is recorded once,
/// the quote's checks in their documented order; a boot that verified
/// passed its signature, nonce and PCR checks, and proves exactly the PCR
/// values the claim carried.
pub fn measured_boot(data: &[u8]) {
    let Some(input) = MeasuredBootInput::parse(data) else { return };
    let policy = if input.policy.is_empty() {
        Policy::default()
    } else {
        let Ok(p) = std::str::from_utf8(input.policy)
            .map_err(|_| ())
            .and_then(|t| Policy::from_json(t).map_err(|_| ()))
        else {
            return;
        };
        p
    };
    let own_events = [EventRecord::new("manifest", "m", "sha256:00")];
    let claim = if input.flags & 0x01 != 0 {
        MeasuredBootClaim::Quoted {
            quote: input.quote,
            signature: input.signature,
            pcrs: &input.pcrs,
            event_log: if input.flags & 0x02 != 0 { Ok(input.log) } else { Err("no log (fuzz)") },
        }
    } else {
        MeasuredBootClaim::Absent { reason: "fuzz" }
    };
    let ak = (input.flags & 0x04 != 0).then_some(input.ak);
    let own = (input.flags & 0x08 != 0).then_some((u32::from(input.own_pcr), &own_events[..]));
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let verified = check_measured_boot(&mut result, &policy, ak, &claim, &input.nonce, own);
    assert_each_check_once(&result);
    let names: Vec<&str> = result.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        &names[..7.min(names.len())],
        [
            "measured_boot",
            "boot_quote_signature",
            "boot_quote_nonce",
            "boot_quote_pcrs",
            "firmware_log_format",
            "firmware_log_replay",
            "boot_quote_event_replay"
        ],
        "the boot quote's checks are not all recorded in order"
    );
    if let Some(boot) = verified {
        for name in ["boot_quote_signature", "boot_quote_nonce", "boot_quote_pcrs"] {
            let passed = result.check(name).is_some_and(|c| c.outcome == Outcome::Passed);
            assert!(passed, "a boot verified whose {name} check did not pass");
        }
        let claimed: std::collections::BTreeMap<u32, Vec<u8>> = input.pcrs.iter().cloned().collect();
        assert_eq!(boot.pcrs, claimed, "the verified boot proves other PCR values than the claim carried");
        assert!(
            boot.replayed.iter().all(|p| boot.pcrs.contains_key(p)),
            "a PCR replayed that was not quoted"
        );
    }
}

struct MeasuredBootInput<'a> {
    flags: u8,
    own_pcr: u8,
    ak: &'a [u8],
    quote: &'a [u8],
    signature: &'a [u8],
    log: &'a [u8],
    pcrs: Vec<(u32, Vec<u8>)>,
    nonce: [u8; 32],
    policy: &'a [u8],
}

impl<'a> MeasuredBootInput<'a> {
    fn parse(data: &'a [u8]) -> Option<MeasuredBootInput<'a>> {
        fn take<'b>(rest: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            let (piece, tail) = rest.split_at_checked(n)?;
            *rest = tail;
            Some(piece)
        }
        fn sized<'b>(rest: &mut &'b [u8]) -> Option<&'b [u8]> {
            let len = take(rest, 2)?;
            take(rest, usize::from(u16::from_be_bytes([len[0], len[1]])))
        }
        let mut rest = data;
        let flags = take(&mut rest, 1)?[0];
        let own_pcr = take(&mut rest, 1)?[0];
        let ak = sized(&mut rest)?;
        let quote = sized(&mut rest)?;
        let signature = sized(&mut rest)?;
        let log = sized(&mut rest)?;
        let count = usize::from(take(&mut rest, 1)?[0]).min(24);
        let mut pcrs = Vec::with_capacity(count);
        for _ in 0..count {
            let pcr = u32::from(take(&mut rest, 1)?[0]);
            pcrs.push((pcr, take(&mut rest, 32)?.to_vec()));
        }
        let nonce = take(&mut rest, 32)?.try_into().ok()?;
        Some(MeasuredBootInput { flags, own_pcr, ak, quote, signature, log, pcrs, nonce, policy: rest })
    }
}

/// The bytes of a `measured_boot` input: a flags byte (1 a boot quote is
/// claimed, 2 with the firmware's log, 4 the boot evidence carries `ak`, 8
/// the agent names its own PCR), that PCR, then `ak`, `quote`, `signature`
/// and `log` each behind a u16 big-endian length, a count of PCRs and that
/// many (PCR byte, 32-byte SHA-256 value), the 32-byte nonce, and the
/// policy's JSON (empty: the default policy).
#[allow(clippy::too_many_arguments, reason = "one argument per piece of the layout")]
pub fn measured_boot_input(
    flags: u8,
    own_pcr: u8,
    ak: &[u8],
    quote: &[u8],
    signature: &[u8],
    log: &[u8],
    pcrs: &[(u32, Vec<u8>)],
    nonce: &[u8; 32],
    policy: &[u8],
) -> Vec<u8> {
    let mut out = vec![flags, own_pcr];
    for piece in [ak, quote, signature, log] {
        tpm2b(&mut out, piece);
    }
    out.push(pcrs.len() as u8);
    for (pcr, value) in pcrs {
        out.push(*pcr as u8);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(nonce);
    out.extend_from_slice(policy);
    out
}

/// A UKI (a PE image with the stub's sections) that measures has one
/// measured section per stub section it holds, each the SHA-256 of that
/// section's data; every section of a PE image that parses lies in the file.
pub fn uki(data: &[u8]) {
    if let Ok(pe) = crate::pe::PeImage::parse(data) {
        for section in &pe.sections {
            if let Ok(bytes) = pe.section_data(section) {
                let start = bytes.as_ptr() as usize - data.as_ptr() as usize;
                assert!(start + bytes.len() <= data.len(), "a section's data lies outside the file");
            }
        }
        let _ = pe.authenticode_sha256();
    }
    let Ok(m) = crate::uki::measure_uki(data) else { return };
    let pe = crate::pe::PeImage::parse(data).expect("a measured UKI parses");
    for measured in &m.sections {
        let section =
            pe.sections.iter().find(|s| s.name == measured.name).expect("a measured section exists");
        let bytes = pe.section_data(section).expect("its data was read");
        assert_eq!(measured.size, bytes.len());
        assert_eq!(measured.sha256, <[u8; 32]>::from(Sha256::digest(bytes)));
    }
}

/// A small UKI (stub, `.osrel`, `.cmdline`, a PE `.linux`, `.initrd`), for seeds.
pub fn uki_seed() -> Vec<u8> {
    let kernel = crate::pe::tests_support::image(&[(".text", b"kernel code")], b"", 0);
    crate::pe::tests_support::image(
        &[
            (".text", b"stub"),
            (".osrel", b"ID=cvm\n"),
            (".cmdline", b"console=ttyS0"),
            (".linux", &kernel),
            (".initrd", b"cpio"),
        ],
        b"tail",
        16,
    )
}

/// The seeds of `measured_boot`: a boot quoted by a software AK over a
/// firmware log of the crate's test data, as it verifies (with and without
/// a policy that pins PCR 4 and its events), and the test swtpm quote.
pub fn measured_boot_seeds() -> Vec<Vec<u8>> {
    let log = include_bytes!("../testdata/tcglog/ovmf-swtpm-uki.bin");
    let replay = tcglog::parse(log).expect("test data").replay(PcrBank::Sha256).expect("sha256");
    let own_events = [EventRecord::new("manifest", "m", "sha256:00")];
    let nonce = [0x4e; 32];
    let quoted: Vec<(u32, Vec<u8>)> = [4u32, 7, 9, 11, 15]
        .iter()
        .map(|p| {
            (
                *p,
                if *p == 15 { replay_pcr(PcrBank::Sha256, &own_events) } else { replay[*p as usize].clone() },
            )
        })
        .collect();
    let ak = crate::tpm::SimulatedAk::generate().expect("a software AK");
    let banked: Vec<(PcrBank, u32, Vec<u8>)> =
        quoted.iter().map(|(p, v)| (PcrBank::Sha256, *p, v.clone())).collect();
    let (quote, signature) = ak.quote(&nonce, &banked).expect("quotes");
    let policy = format!(r#"{{"tpm_pcrs": {{"4": ["{}"]}}}}"#, hex::encode(&replay[4]));
    let swtpm = Quote::parse(QUOTE).expect("test data");
    let swtpm_nonce: [u8; 32] = swtpm.extra_data.as_slice().try_into().expect("32 bytes");
    vec![
        measured_boot_input(0x0f, 15, &ak.public(), &quote, &signature, log, &quoted, &nonce, b""),
        measured_boot_input(
            0x0f,
            15,
            &ak.public(),
            &quote,
            &signature,
            log,
            &quoted,
            &nonce,
            policy.as_bytes(),
        ),
        measured_boot_input(0x05, 0, AK, QUOTE, QUOTE_SIG, b"", &[(15, vec![0; 32])], &swtpm_nonce, b""),
        measured_boot_input(0x00, 0, b"", b"", b"", b"", &[], &[0; 32], policy.as_bytes()),
    ]
}

// ---- Google's launch endorsement -------------------------------------------

fn google_ak_root() -> &'static Certificate {
    static ROOT: OnceLock<Certificate> = OnceLock::new();
    ROOT.get_or_init(|| crate::gcp::AkAnchors::google().unwrap().roots()[0].clone())
}

/// A launch endorsement that parses re-encodes to an endorsement that
/// parses to the same value, and its golden measurement's encoding parses
/// back to itself; checked under a root whose key the fuzzer does not have,
/// it records each of its four checks once and is never accepted.
pub fn gce_endorsement(data: &[u8]) {
    use crate::gcp::{check_launch_endorsement, GoldenMeasurement, LaunchEndorsement};
    if let Ok(e) = LaunchEndorsement::parse(data) {
        let again = LaunchEndorsement::parse(&LaunchEndorsement::encode(&e.serialized_golden, &e.signature))
            .expect("a re-encoded endorsement parses");
        assert_eq!(again, e);
        let golden =
            GoldenMeasurement::parse(&e.golden.encode()).expect("a re-encoded golden measurement parses");
        assert_eq!(golden, e.golden);
    }
    let mut result = VerificationReport { product: None, checks: Vec::new() };
    let measurement = [0x44; 48];
    check_launch_endorsement(&mut result, data, google_ak_root(), SIMULATED_AT, &measurement, 4);
    assert_each_check_once(&result);
    assert_eq!(result.checks.len(), 4);
    assert!(!result.accepted(), "accepted an endorsement that no key of the root's signed");
}

// ---- Azure ------------------------------------------------------------------

/// The real Azure vector: an HCL report and the VCEK that signed its SNP report.
const AZURE_HCL: &[u8] = include_bytes!("../testdata/azure/hcl-report.bin");
const AZURE_VCEK: &[u8] = include_bytes!("../testdata/azure/vcek.der");

/// An HCL report that parses lays out, by [`crate::azure::HclReport::encode`],
/// to the same SNP report, claims header and claims; its verification
/// against the real vector's VCEK records every check once; and only the
/// genuine report's signed bytes and claims are accepted.
pub fn hcl_report(data: &[u8]) {
    use crate::azure::{check_hcl_report, hcl, HclReport};
    if let Ok(r) = HclReport::parse(data) {
        let raw: &[u8; crate::report::REPORT_LEN] = r.snp.raw();
        let encoded = HclReport::encode(raw, &r.claims, r.hash);
        let end = hcl::CLAIMS_OFFSET + r.claims.len();
        assert_eq!(&encoded[..4], &data[..4], "the signature");
        assert_eq!(&encoded[8..12], &data[8..12], "the report size");
        assert_eq!(
            &encoded[hcl::SNP_OFFSET..hcl::CLAIMS_HEADER_OFFSET + 4],
            &data[hcl::SNP_OFFSET..hcl::CLAIMS_HEADER_OFFSET + 4]
        );
        assert_eq!(&encoded[hcl::CLAIMS_HEADER_OFFSET + 8..end], &data[hcl::CLAIMS_HEADER_OFFSET + 8..end]);
        assert_eq!(r.expected_report_data().len(), 64);
    }
    let vek = certs::parse_certificate(AZURE_VCEK, "azure vcek").expect("the vector's VCEK");
    let chain = CertChain { ark: None, intermediate: None, vek };
    let anchors = TrustAnchors::amd();
    let policy = Policy::default();
    let verifier = Verifier::new(&anchors, &policy, datetime!(2026-11-30 00:00 UTC));
    let (result, parsed) = check_hcl_report(&verifier, data, &chain, None);
    let mut seen = BTreeSet::new();
    for c in &result.checks {
        assert!(seen.insert(c.name), "check {} recorded twice", c.name);
    }
    if result.accepted() {
        let r = parsed.expect("an accepted report parsed").report;
        let genuine = HclReport::parse(AZURE_HCL).expect("the vector");
        assert_eq!(r.snp.signed_bytes(), genuine.snp.signed_bytes(), "accepted other signed bytes");
        assert_eq!(r.claims, genuine.claims, "accepted other claims");
    }
}
