//! Benchmarks of sealed streams; prints figures, asserts nothing.
//!
//! 1. `openssl speed -evp aes-256-gcm` (encrypt and decrypt, 16 KiB
//!    blocks, one core), measured in the same run as the reference.
//! 2. Encrypt and decrypt throughput of a 2 GiB artifact in memory with
//!    cvm-protocol's sealed streams (1 MiB chunks, ring's AES-256-GCM), and
//!    for comparison the `aes-gcm` crate on the same chunks.
//! 3. `cvmctl seal` and `cvmctl unseal` of a 2 GiB file on tmpfs.
//! 4. The agent reading a 2 GiB host-path artifact (a file on tmpfs standing
//!    in for a disk) into locked memory during `cvmctl release-key`: time,
//!    throughput and the agent's peak RSS.
//!
//! Run with `scripts/bench` (release build).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark aborts on setup failures")]

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use cvm_protocol::sealed::{seal, Opener, SealingKey};
use cvm_tests::vm_hwm;

const SIZE: u64 = 2 << 30;
const CHUNK: u32 = 1 << 20;

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// A reader of `left` bytes of a repeated pseudo-random MiB.
struct Pattern {
    left: u64,
    block: Vec<u8>,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left).min(self.block.len() as u64) as usize;
        buf[..n].copy_from_slice(&self.block[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

fn pattern(left: u64) -> Pattern {
    Pattern { left, block: (0..1usize << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect() }
}

fn main() {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { tempfile::tempdir_in(shm).unwrap() } else { tempfile::tempdir().unwrap() };
    let d = base.path();
    println!("machine: {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    // 1 and 2, interleaved three times, best of each: the machine is shared,
    // and a busy moment should not count against one side only. `openssl
    // speed` divides by CPU time unless told `-elapsed`; both clocks are
    // compared, each with its like: CPU time (this thread's time on a CPU,
    // from schedstat) is what the code costs, wall time what a user waits.
    let key = SealingKey::generate().unwrap();
    let mut sealed = Vec::with_capacity((SIZE + (SIZE >> 16) + 64) as usize);
    seal(&key, &mut pattern(SIZE), SIZE, &mut sealed, CHUNK).unwrap();
    // [cpu, wall] x [openssl enc, openssl dec, ours enc, ours dec], best of 3.
    let mut best = [[0f64; 4]; 2];
    for _ in 0..3 {
        for (i, decrypt) in [(0, false), (1, true)] {
            best[0][i] = best[0][i].max(openssl_speed(decrypt, false));
            best[1][i] = best[1][i].max(openssl_speed(decrypt, true));
        }
        // Encrypt into a sink that discards: the cipher and the chunking,
        // not the page faults of a 2 GiB buffer.
        let (t, c) = (Instant::now(), cpu_secs());
        seal(&key, &mut pattern(SIZE), SIZE, &mut std::io::sink(), CHUNK).unwrap();
        best[0][2] = best[0][2].max(mbps(SIZE, cpu_secs() - c));
        best[1][2] = best[1][2].max(mbps(SIZE, t.elapsed().as_secs_f64()));
        let (t, c) = (Instant::now(), cpu_secs());
        let mut opener = Opener::new(&key, &sealed[..]).unwrap();
        let mut n = 0u64;
        while let Some(chunk) = opener.next_chunk().unwrap() {
            n += chunk.len() as u64;
        }
        opener.finish().unwrap();
        best[0][3] = best[0][3].max(mbps(n, cpu_secs() - c));
        best[1][3] = best[1][3].max(mbps(n, t.elapsed().as_secs_f64()));
    }
    drop(sealed);
    for (clock, b) in ["CPU time", "wall time"].iter().zip(best) {
        println!("openssl speed -evp aes-256-gcm (16 KiB blocks, one core, {clock}, best of 3): encrypt {:.0} MB/s, decrypt {:.0} MB/s", b[0], b[1]);
        println!(
            "sealed stream, 2 GiB in memory, 1 MiB chunks ({clock}, best of 3): encrypt {:.0} MB/s ({:.2} of openssl), decrypt {:.0} MB/s ({:.2} of openssl) (target >= 0.85)",
            b[2],
            b[2] / b[0],
            b[3],
            b[3] / b[1]
        );
    }
    println!("aes-gcm crate (RustCrypto), same chunks, for comparison: encrypt {:.0} MB/s", aes_gcm_crate());

    // 3. cvmctl on tmpfs files.
    let key_file = cvm_tests::sealing_key(d, "k.key");
    let plain = d.join("weights.bin");
    std::io::copy(&mut pattern(SIZE), &mut std::io::BufWriter::new(std::fs::File::create(&plain).unwrap()))
        .unwrap();
    let ct = d.join("weights.sealed");
    let t = Instant::now();
    let identity = cvm_tests::seal(&key_file, &plain, &ct);
    let seal_secs = t.elapsed().as_secs_f64();
    // What the filesystem alone costs: writing the same amount anew (page
    // allocation dominates on tmpfs, and varies from run to run).
    let copy = d.join("weights.copy");
    let t = Instant::now();
    std::fs::copy(&plain, &copy).unwrap();
    let copy_secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy).unwrap();
    std::fs::remove_file(&plain).unwrap();
    let out = d.join("weights.out");
    let t = Instant::now();
    let o = cvm_tests::cvmctl(&[
        "unseal",
        "--key-file",
        key_file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        ct.to_str().unwrap(),
    ]);
    let unseal_secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_file(&out).unwrap();
    println!(
        "cvmctl seal / unseal of a 2 GiB file on tmpfs: {seal_secs:.2} s ({:.0} MB/s) / {unseal_secs:.2} s ({:.0} MB/s)",
        mbps(SIZE, seal_secs),
        mbps(SIZE, unseal_secs)
    );
    println!(
        "  for reference, a plain copy of the file on the same tmpfs: {copy_secs:.2} s ({:.0} MB/s)",
        mbps(SIZE, copy_secs)
    );

    // 4. The agent: host-path artifact into locked memory.
    let alg = cvm_tests::owner(d, "alg", "p256");
    std::fs::write(d.join("algo.sh"), "true\n").unwrap();
    let alg_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(d.join("algo.sh")).unwrap()))
    );
    let manifest = serde_json::json!({
        "id": "bench-sealed", "name": "bench",
        "algorithm": {"digest": alg_digest, "provider_key": alg.public, "kind": "script", "interpreter": "/bin/sh", "runtime": cvm_tests::HOST_RUNTIME},
        "datasets": [],
        "artifacts": [{"name": "weights.bin", "sealed": identity, "source": "host-path", "provider_key": alg.public}],
        "result_consumers": [{"key": alg.public}],
        "limits": {"max_upload_bytes": 1 << 20, "run_timeout_s": 60, "memory_bytes": 256u64 << 20}
    });
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
    let o = cvm_tests::cvmctl(&["manifest", "digest", d.join("manifest.json").to_str().unwrap()]);
    let digest = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let artifacts = format!("weights.bin={}", ct.display());
    let (mut agent, log, addr) = cvm_tests::start_agent_env(
        d,
        &d.join("manifest.json"),
        &d.join("work"),
        &[("CVM_HOST_ARTIFACTS", &artifacts)],
    )
    .unwrap();
    let pid = agent.id();
    let ark = cvm_tests::platform().2.display().to_string();
    let policy = cvm_tests::write_pinned_policy(&d.join("policy.json"), serde_json::Value::Null);
    let rss_before = vm_hwm(pid);
    let args = [
        "release-key",
        "--policy",
        &policy,
        "--agent",
        &addr.to_string(),
        "--manifest-digest",
        &digest,
        "--trust-ark",
        &ark,
        "--key",
        alg.key.to_str().unwrap(),
        "--artifact",
        "weights.bin",
        "--key-file",
        key_file.to_str().unwrap(),
    ];
    let t = Instant::now();
    let o = cvm_tests::cvmctl(&args);
    let release_secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stderr), log.lock().unwrap());
    let rss = vm_hwm(pid);
    let decrypted = log
        .lock()
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once("weights.bin: ")
                .filter(|(_, r)| r.contains("verified and decrypted"))
                .map(|(_, r)| r.to_owned())
        })
        .unwrap_or_default();
    let _ = agent.kill();
    let _ = agent.wait();
    println!(
        "agent: release-key with a 2 GiB host-path artifact (attest + read + decrypt into locked memory): {release_secs:.2} s, {:.0} MB/s",
        mbps(SIZE, release_secs)
    );
    println!("agent, inside that: {decrypted}");
    println!(
        "agent peak RSS: {} MiB before, {} MiB after (artifact 2048 MiB; target <= 2048 + 32 MiB)",
        rss_before / 1024,
        rss / 1024
    );
    let _ = std::io::stdout().flush();
}

fn aes_gcm_crate() -> f64 {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let cipher = aes_gcm::Aes256Gcm::new((&[7u8; 32]).into());
    let mut buf = vec![1u8; CHUNK as usize];
    let total = 512u64 << 20;
    let t = Instant::now();
    for i in 0..total / u64::from(CHUNK) {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        cipher.encrypt_in_place_detached((&nonce).into(), b"aad", &mut buf).unwrap();
    }
    mbps(total, t.elapsed().as_secs_f64())
}

/// This thread's time on a CPU so far, in seconds (schedstat, nanoseconds).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// `openssl speed -evp aes-256-gcm` in MB/s (16 KiB blocks, 1 s), by CPU
/// time (openssl's default) or wall time (`-elapsed`).
fn openssl_speed(decrypt: bool, elapsed: bool) -> f64 {
    let mut args = vec!["-seconds", "1", "-bytes", "16384"];
    if decrypt {
        args.push("-decrypt");
    }
    if elapsed {
        args.push("-elapsed");
    }
    args.extend(["-evp", "aes-256-gcm"]);
    cvm_tests::openssl_speed_mbps(&args).unwrap_or_else(|e| {
        println!("{e}");
        0.0
    })
}
