//! Benchmarks of the log stream; prints figures, asserts nothing.
//!
//! 1. Records per second through the whole pipeline: `log::info!` in the
//!    agent's logger, the bounded queue, the link task, TCP on loopback, a
//!    host that parses, deduplicates and acknowledges (the bookkeeping of
//!    `cvmctl logs listen`), in rounds that the host must finish.
//! 2. What a `log` call costs the agent: per-call latency with the host
//!    present and with the host away (the queue full, dropping its oldest).
//! 3. A real agent at trace level, with the algorithm's output forwarded:
//!    time from the first upload to results_ready with the host present and
//!    with the host away.
//!
//! Run with `scripts/bench` (release build); stderr (the logger's own copy
//! of every record) is best sent to /dev/null.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark aborts on setup failures")]

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cvm_agent::logs::{self, ComputationView, Control, Target};
use cvm_tests::loghost::{Acks, TestHost};
use cvm_tests::{Options, Scenario};

struct NoControl;

impl Control for NoControl {
    fn manifest(&self, _: &str) -> Result<String, String> {
        Err("benchmark".into())
    }
    fn computation(&self) -> ComputationView {
        ComputationView::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1)]
}

fn latency(name: &str, mut calls: Vec<Duration>) {
    calls.sort();
    let ns = |d: Duration| d.as_nanos();
    println!(
        "log call, {name}: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} µs ({} calls)",
        ns(percentile(&calls, 50.0)),
        ns(percentile(&calls, 99.0)),
        ns(percentile(&calls, 99.9)),
        percentile(&calls, 100.0).as_micros(),
        calls.len()
    );
}

fn main() {
    println!("machine: {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::Tcp(listener.local_addr().unwrap());
    let mut logs = logs::init(log::LevelFilter::Info, &target, 1_000_000).unwrap();
    logs.connect(Arc::new(NoControl), rt.handle());

    // The host, in a thread: it tells which record it saw last, and goes
    // away when told.
    let expected = Arc::new(Mutex::new(String::new()));
    let reached = Arc::new(AtomicU64::new(0));
    let leave = Arc::new(AtomicBool::new(false));
    let host = {
        let (expected, reached, leave) = (Arc::clone(&expected), Arc::clone(&reached), Arc::clone(&leave));
        std::thread::spawn(move || {
            let mut host = TestHost::default();
            let _ = host.serve(&listener, Acks::All, Duration::from_secs(600), |h| {
                if h.delivered.last().is_some_and(|r| r.message == *expected.lock().unwrap()) {
                    reached.fetch_add(1, Ordering::Relaxed);
                    expected.lock().unwrap().clear();
                }
                leave.load(Ordering::Relaxed)
            });
            host
        })
    };

    // 1. Throughput, in rounds that fit the queue's byte budget.
    const ROUNDS: u64 = 20;
    const PER_ROUND: u64 = 10_000;
    let mut present = Vec::with_capacity((ROUNDS * PER_ROUND) as usize);
    let t = Instant::now();
    for round in 0..ROUNDS {
        let last = format!("bench record {} of round {round}: a line of ordinary length", PER_ROUND - 1);
        *expected.lock().unwrap() = last;
        for i in 0..PER_ROUND {
            let c = Instant::now();
            log::info!("bench record {i} of round {round}: a line of ordinary length");
            present.push(c.elapsed());
        }
        while reached.load(Ordering::Relaxed) <= round {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "pipeline (log call → queue → TCP → host parses, deduplicates, acknowledges): {:.0} records/s ({} records in {secs:.2} s)",
        (ROUNDS * PER_ROUND) as f64 / secs,
        ROUNDS * PER_ROUND
    );
    latency("host present", present);

    // 2. The host goes away; the agent keeps logging.
    leave.store(true, Ordering::Relaxed);
    let host = host.join().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut away = Vec::with_capacity(500_000);
    let t = Instant::now();
    for i in 0..500_000u64 {
        let c = Instant::now();
        log::info!("bench record {i} while the host is away: a line of ordinary length");
        away.push(c.elapsed());
    }
    println!(
        "host away: 500000 log calls in {:.2} s (the queue stays within its {} MiB, dropping its oldest)",
        t.elapsed().as_secs_f64(),
        logs::QUEUE_BYTES >> 20
    );
    latency("host away", away);
    println!(
        "(host side: {} records delivered, {} duplicates)",
        host.delivered.len(),
        host.session.duplicates
    );
    rt.block_on(logs.shutdown(Duration::from_millis(100)));

    // 3. A real agent's computation, host present and host away.
    let chatty = format!(
        "for i in range(3000):\n    print('progress line', i)\n{}",
        std::fs::read_to_string(cvm_tests::example("stats.py")).unwrap()
    );
    for away in [false, true] {
        let mut times = Vec::new();
        for _ in 0..3 {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let host = (!away).then(|| {
                std::thread::spawn(move || {
                    let mut h = TestHost::default();
                    let _ = h.serve(&listener, Acks::All, Duration::from_secs(120), |h| {
                        h.has_event("results_ready")
                    });
                })
            });
            let env = vec![
                ("CVM_LOG_TARGET".to_owned(), format!("tcp:{addr}")),
                ("CVM_LOG_LEVEL".to_owned(), "trace".to_owned()),
            ];
            let s = Scenario::start(Options {
                algorithm: chatty.clone(),
                forward_output: true,
                agent_env: env,
                ..Options::default()
            });
            let t = Instant::now();
            for (cmd, key, extra) in [
                ("upload-algorithm", &s.alg, vec![s.path("stats.py")]),
                ("upload-dataset", &s.a, vec!["hospital-a.csv".to_owned(), s.path("hospital-a.csv")]),
                ("upload-dataset", &s.b, vec!["hospital-b.csv".to_owned(), s.path("hospital-b.csv")]),
            ] {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                assert!(s.run(cmd, Some(key), &extra).status.success());
            }
            let status = s.wait_final(Duration::from_secs(120));
            assert_eq!(status["state"], "results_ready");
            times.push(t.elapsed());
            if let Some(h) = host {
                h.join().unwrap();
            }
        }
        times.sort();
        println!(
            "real agent at trace, 3000 forwarded lines, uploads to results_ready, host {}: median {:.0} ms (runs: {:?} ms)",
            if away { "away   " } else { "present" },
            times[1].as_secs_f64() * 1e3,
            times.iter().map(|t| t.as_millis()).collect::<Vec<_>>()
        );
    }
}
