//! Parsing plus full verification of one real report: time per report on one core.
//!
//! Prints figures; asserts nothing. Run with `scripts/bench` or
//! `cargo bench -p cvm-evidence --bench verify`.

use std::time::{Duration, Instant};

use cvm_evidence::certs::{parse_certificate, CertChain, TrustAnchors};
use cvm_evidence::{AttestationReport, Policy, Verifier};
use time::macros::datetime;

const REPORT: &[u8] = include_bytes!("../testdata/amd/milan-virtee/report.bin");
const VCEK: &[u8] = include_bytes!("../testdata/amd/milan-virtee/vcek.der");
const POLICY: &str = include_str!("../../examples/policy.json");

fn main() {
    let anchors = TrustAnchors::amd();
    let policy = match Policy::from_json(POLICY) {
        Ok(p) => p,
        Err(e) => panic!("example policy: {e}"),
    };
    let at = datetime!(2026-01-01 00:00 UTC);
    let once = || {
        let report = AttestationReport::from_bytes(REPORT).map_err(|e| e.to_string())?;
        let vek = parse_certificate(VCEK, "vcek.der").map_err(|e| e.to_string())?;
        let chain = CertChain { ark: None, intermediate: None, vek };
        Verifier::new(&anchors, &policy, at).verify(&report, &chain).map_err(|e| e.to_string())
    };
    if let Err(e) = once() {
        panic!("the benchmark's report does not verify: {e}");
    }
    // Warm up, then measure batches until two seconds have passed.
    for _ in 0..20 {
        let _ = once();
    }
    let mut samples: Vec<Duration> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        let _ = std::hint::black_box(once());
        samples.push(t.elapsed());
    }
    samples.sort();
    let n = samples.len();
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("parse + full verification of one report (Milan VCEK chain, example policy), one thread:");
    println!("  iterations  {n}");
    println!("  mean        {:.3} ms", ms(mean));
    println!("  median      {:.3} ms", ms(samples[n / 2]));
    println!("  p99         {:.3} ms", ms(samples[(n * 99 / 100).min(n - 1)]));
    println!("  target      < 2 ms");
}
