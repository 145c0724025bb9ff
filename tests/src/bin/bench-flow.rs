//! Benchmarks of the computation flow; prints figures, asserts nothing.
//!
//! 1. Attested connection latency: TLS handshake with boot-evidence
//!    verification, then fresh session evidence and its verification, over
//!    200 connections (p50, p99).
//! 2. Upload throughput of a 1 GiB dataset through the agent (attested TLS,
//!    HTTP, SHA-256 on the fly, written to a tmpfs), against a baseline in the
//!    same run that does only the necessary work: a rustls loopback receiver
//!    that hashes what it receives and keeps it in memory.
//! 3. The agent's peak RSS during that upload.
//!
//! Run with `scripts/bench` (release build).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark aborts on setup failures")]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cvm_tests::vm_hwm;
use sha2::{Digest as _, Sha256};

const SIZE: usize = 1 << 30;

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let d = base.path();
    println!("machine: {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    openssl_speed();

    // A 1 GiB dataset (incompressible-looking: a repeated random MiB).
    let mut block = vec![0u8; 1 << 20];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2654435761) >> 13) as u8;
    }
    let data_path = d.join("big.bin");
    {
        let mut f = std::fs::File::create(&data_path).unwrap();
        for i in 0..(SIZE >> 20) {
            block[0] = i as u8;
            f.write_all(&block).unwrap();
        }
    }
    let t = Instant::now();
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(&data_path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let data_digest = format!("sha256:{}", hex::encode(h.finalize()));
    println!("sha256 of 1 GiB in this process: {:.2} s", t.elapsed().as_secs_f64());

    let alg = cvm_tests::owner(d, "alg", "p256");
    let prov = cvm_tests::owner(d, "prov", "p256");
    std::fs::write(d.join("algo.sh"), "true\n").unwrap();
    let alg_digest =
        format!("sha256:{}", hex::encode(Sha256::digest(std::fs::read(d.join("algo.sh")).unwrap())));
    let manifest = serde_json::json!({
        "id": "bench", "name": "bench",
        "algorithm": {"digest": alg_digest, "provider_key": alg.public, "kind": "script", "interpreter": "/bin/sh", "runtime": cvm_tests::HOST_RUNTIME},
        "datasets": [{"name": "big.bin", "digest": data_digest, "provider_key": prov.public}],
        "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 2u64 << 30, "run_timeout_s": 60, "memory_bytes": 256u64 << 20}
    });
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let o = cvm_tests::cvmctl(&["manifest", "digest", d.join("manifest.json").to_str().unwrap()]);
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let (mut agent, _log, addr) =
        cvm_tests::start_agent(d, &d.join("manifest.json"), &d.join("work")).unwrap();
    let pid = agent.id();
    let ark = cvm_tests::platform().2.display().to_string();
    let policy = cvm_tests::write_pinned_policy(&d.join("policy.json"), serde_json::Value::Null);
    let common = |key: &cvm_tests::Owner| {
        vec![
            "--policy".to_owned(),
            policy.clone(),
            "--agent".to_owned(),
            addr.to_string(),
            "--manifest-digest".into(),
            digest.clone(),
            "--trust-ark".into(),
            ark.clone(),
            "--key".into(),
            key.key.display().to_string(),
        ]
    };

    // 1. Attested connections.
    let args = cvm_tests::parse_agent_args(common(&alg));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut handshakes, mut full) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..200 {
            let t = Instant::now();
            let hs = args.handshake().await.map_err(|e| e.to_string()).unwrap();
            handshakes.push(t.elapsed());
            drop(hs);
            let t = Instant::now();
            let agent = args.connect().await.map_err(|e| e.to_string()).unwrap();
            full.push(t.elapsed());
            drop(agent);
        }
    });
    handshakes.sort();
    full.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "attested handshake + boot evidence verification, 200 connections: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&handshakes, 50)),
        ms(percentile(&handshakes, 99))
    );
    println!(
        "... plus fresh session evidence and its verification:             p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&full, 50)),
        ms(percentile(&full, 99))
    );

    // 2. Upload through the agent.
    let mut up_args = vec!["upload-algorithm".to_owned()];
    up_args.extend(common(&alg));
    up_args.push(d.join("algo.sh").display().to_string());
    let o = cvm_tests::cvmctl(&up_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rss_before = vm_hwm(pid);
    let mut up = vec!["upload-dataset".to_owned()];
    up.extend(common(&prov));
    up.push("big.bin".into());
    up.push(data_path.display().to_string());
    let t = Instant::now();
    let o = cvm_tests::cvmctl(&up.iter().map(String::as_str).collect::<Vec<_>>());
    let agent_secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rss = vm_hwm(pid);
    let _ = agent.kill();

    // Baseline: rustls on loopback, hashing and keeping what it receives.
    let baseline_secs = baseline(&data_path);
    let gib = |s: f64| (SIZE as f64 / s) / (1u64 << 30) as f64 * 8.0;
    println!("upload of 1 GiB through the agent (attest + TLS + HTTP + SHA-256 + tmpfs): {agent_secs:.2} s, {:.2} Gbit/s", gib(agent_secs));
    println!("baseline (rustls loopback receiver, SHA-256, kept in memory):            {baseline_secs:.2} s, {:.2} Gbit/s", gib(baseline_secs));
    println!("ratio agent/baseline throughput: {:.2} (target >= 0.90)", baseline_secs / agent_secs);
    println!("agent peak RSS: {} MiB before the upload, {} MiB after (dataset 1024 MiB; target <= dataset + 64 MiB)",
        rss_before / 1024, rss / 1024);
    let _ = std::fs::remove_file(&data_path);
}

fn openssl_speed() {
    for name in ["aes-256-gcm", "sha256"] {
        match cvm_tests::openssl_speed_mbps(&["-seconds", "2", "-bytes", "16384", "-evp", name]) {
            Ok(mbps) => println!("openssl speed {name} (16 KiB blocks, one core): {mbps:.0} MB/s"),
            Err(e) => println!("{e}"),
        }
    }
}

fn baseline(path: &Path) -> f64 {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["baseline".to_owned()]).unwrap().self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut kept: Vec<bytes::Bytes> = Vec::new();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    kept.push(bytes::Bytes::copy_from_slice(&buf[..n]));
                }
            }
        }
        (h.finalize(), kept.iter().map(|b| b.len()).sum::<usize>())
    });
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(cvm_tests::AcceptAnyServer))
        .with_no_client_auth();
    let t = Instant::now();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(client), "baseline".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).unwrap();
    }
    tls.flush().unwrap();
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock).unwrap();
    }
    let _ = tls.sock.shutdown(std::net::Shutdown::Write);
    let (_, n) = receiver.join().unwrap();
    assert_eq!(n, SIZE);
    t.elapsed().as_secs_f64()
}
