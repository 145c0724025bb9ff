//! The whole computation flow with real processes and real TLS on loopback,
//! and every refusal the design promises, each leaving the state intact.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests panic on broken fixtures")]

use std::time::Duration;

use cvm_tests::{assert_exit, cvmctl, stderr, Options, Scenario};
use cvmctl::exit_codes;

#[test]
fn full_flow_with_three_owners_gives_the_right_result() {
    let s = Scenario::start(Options::default());
    let o = s.run("attest", None, &[]);
    assert_exit(&o, exit_codes::OK);
    assert!(String::from_utf8_lossy(&o.stdout).contains("bound to this TLS session"));
    let o = s.run("attest", None, &["--verbose"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASS  session_binding"));
    s.upload_inputs();
    let status = s.wait_final(Duration::from_secs(30));
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());

    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let listing =
        std::process::Command::new("tar").args(["-xOf", &out, "results/summary.json"]).output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    // ages 34 51 47 62 29 73 55
    assert_eq!(summary["count"], 7);
    assert_eq!(summary["mean"], 50.142857);
    assert_eq!(summary["rows_per_dataset"]["hospital-b.csv"], 3);
    assert_eq!(s.status()["state"], "consumed");
}

#[test]
fn a_client_expecting_another_manifest_sends_nothing() {
    let s = Scenario::start(Options::default());
    let mut args = vec!["upload-algorithm".to_owned()];
    for a in s.agent_args(Some(&s.alg)) {
        args.push(if a == s.digest { format!("sha256:{}", "00".repeat(32)) } else { a });
    }
    args.push(s.path("stats.py"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = cvmctl(&refs);
    assert_exit(&o, exit_codes::REJECTED);
    assert!(stderr(&o).contains("manifest_digest: expected sha256:0000"), "{}", stderr(&o));
    let st = s.status();
    assert_eq!(st["state"], "awaiting_algorithm");
    assert_eq!(st["algorithm_received"], false);
    assert!(!s.log().contains("PUT /v1/algorithm"), "{}", s.log());
}

#[test]
fn wrong_role_is_403_and_changes_nothing() {
    let s = Scenario::start(Options::default());
    let o = s.run("upload-algorithm", Some(&s.consumer), &[&s.path("stats.py")]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("403 Forbidden (forbidden)"), "{}", stderr(&o));
    // Anonymous clients may attest and read status, but not upload.
    let o = s.run("upload-algorithm", None, &[&s.path("stats.py")]);
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py")]), exit_codes::OK);
    let o = s.run("upload-dataset", Some(&s.a), &["hospital-b.csv", &s.path("hospital-b.csv")]);
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
    let o = s.run("results", Some(&s.a), &["--out", &s.path("r.tar")]);
    assert!(stderr(&o).contains("403"), "{}", stderr(&o));
}

#[test]
fn a_dataset_with_the_wrong_digest_is_discarded_and_a_retry_succeeds() {
    let s = Scenario::start(Options::default());
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py")]), exit_codes::OK);
    std::fs::write(s.path("tampered.csv"), "patient,age\na1,99\n").unwrap();
    let o = s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("tampered.csv")]);
    assert_exit(&o, exit_codes::AGENT_ERROR);
    assert!(stderr(&o).contains("422") && stderr(&o).contains("discarded"), "{}", stderr(&o));
    assert!(s.incoming().is_empty(), "{:?}", s.incoming());
    assert_eq!(s.status()["datasets_received"], serde_json::json!([]));
    assert_exit(
        &s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]),
        exit_codes::OK,
    );
    assert_eq!(s.status()["datasets_received"], serde_json::json!(["hospital-a.csv"]));
}

#[test]
fn uploads_out_of_order_or_twice_are_409() {
    let s = Scenario::start(Options::default());
    let o = s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]);
    assert!(stderr(&o).contains("409 Conflict"), "{}", stderr(&o));
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py")]), exit_codes::OK);
    let o = s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py")]);
    assert!(stderr(&o).contains("409 Conflict") && stderr(&o).contains("already received"), "{}", stderr(&o));
    assert_exit(
        &s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]),
        exit_codes::OK,
    );
    let o = s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]);
    assert!(stderr(&o).contains("409 Conflict"), "{}", stderr(&o));
    assert_eq!(s.status()["state"], "awaiting_data");
}

#[test]
fn an_upload_over_the_limit_is_refused_before_its_body_is_read() {
    let s = Scenario::start(Options { max_upload_bytes: 100, ..Options::default() });
    std::fs::write(s.path("big.py"), vec![b'#'; 4 << 20]).unwrap();
    // cvmctl knows the verified manifest's limit and sends nothing.
    let o = s.run("upload-algorithm", Some(&s.alg), &[&s.path("big.py")]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(
        stderr(&o).contains("over the manifest's max_upload_bytes of 100; nothing was sent"),
        "{}",
        stderr(&o)
    );
    assert!(!s.log().contains("PUT /v1/algorithm"), "{}", s.log());

    // A client that declares too large a body gets 413 while its body has
    // not been read: this one never sends a byte of it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let args = agent_args(&s, Some(&s.alg));
    let (status, body) = rt.block_on(async {
        let mut agent = args.connect().await.map_err(|e| e.to_string()).unwrap();
        let never =
            futures_util::stream::pending::<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>();
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(never));
        let send = agent.send_body(hyper::Method::PUT, "/v1/algorithm", body, Some(4 << 20));
        tokio::time::timeout(Duration::from_secs(10), send)
            .await
            .expect("the agent answered at once")
            .unwrap()
    });
    assert_eq!(status.as_u16(), 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("declared length"));
    assert!(s.incoming().is_empty());
    assert_eq!(s.status()["state"], "awaiting_algorithm");
}

/// The library form of `Scenario::agent_args`.
fn agent_args(s: &Scenario, key: Option<&cvm_tests::Owner>) -> cvmctl::owner::AgentArgs {
    cvm_tests::parse_agent_args(s.agent_args(key))
}

#[test]
fn a_malformed_manifest_stops_the_agent_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("manifest.json");
    std::fs::write(
        &bad,
        r#"{"id": "x", "name": "x", "algorithm": {"digest": "sha256:1234", "provider_key": "AAAA", "kind": "binary"},
            "datasets": [], "result_consumers": [], "limits": {"max_upload_bytes": 1, "run_timeout_s": 1, "memory_bytes": 1}}"#,
    )
    .unwrap();
    let err = match cvm_tests::start_agent(dir.path(), &bad, &dir.path().join("work")) {
        Ok(_) => panic!("the agent started with a malformed manifest"),
        Err(e) => e,
    };
    assert!(err.contains("refusing to start") && err.contains("manifest field `algorithm.digest`"), "{err}");
}

fn run_to_the_end(s: &Scenario) -> serde_json::Value {
    s.upload_inputs();
    s.wait_final(Duration::from_secs(60))
}

#[test]
fn the_algorithm_has_no_network_and_cannot_touch_the_datasets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        r#"import json, os, socket
found = {{}}
for target in [("127.0.0.1", {port}), ("1.1.1.1", 443)]:
    try:
        socket.create_connection(target, timeout=2)
        found[str(target)] = "connected"
    except OSError as e:
        found[str(target)] = "blocked: " + e.__class__.__name__
for name in os.listdir(os.environ["CVM_DATASETS"]):
    path = os.path.join(os.environ["CVM_DATASETS"], name)
    try:
        open(path, "a").write("tampered")
        found[name] = "written"
    except OSError as e:
        found[name] = "blocked: " + e.__class__.__name__
json.dump(found, open(os.path.join(os.environ["CVM_RESULTS"], "probe.json"), "w"))
"#
    );
    let s = Scenario::start(Options { algorithm: probe, ..Options::default() });
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let o = std::process::Command::new("tar").args(["-xOf", &out, "results/probe.json"]).output().unwrap();
    let found: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (what, result) in found.as_object().unwrap() {
        assert!(result.as_str().unwrap().starts_with("blocked"), "{what}: {result}");
    }
    assert_eq!(found.as_object().unwrap().len(), 4, "{found}");
    assert!(listener.accept().is_err(), "the algorithm reached the test's listener");
    let a = std::fs::read(s.work.join("datasets/hospital-a.csv")).unwrap();
    assert_eq!(a, std::fs::read(cvm_tests::example("hospital-a.csv")).unwrap());
}

#[test]
fn a_fork_bomb_fails_the_computation_and_the_agent_keeps_serving() {
    let bomb =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n".to_owned();
    let mut s = Scenario::start(Options { algorithm: bomb, run_timeout_s: 3, ..Options::default() });
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["reason"].as_str().unwrap().contains("timed out after 3s"), "{status}");
    assert!(s.agent_alive());
    assert_exit(&s.run("attest", None, &[]), exit_codes::OK);
    let o = s.run("results", Some(&s.consumer), &["--out", &s.path("r.tar")]);
    assert!(stderr(&o).contains("409") && stderr(&o).contains("failed"), "{}", stderr(&o));
}

#[test]
fn a_memory_hog_fails_the_computation_and_the_agent_keeps_serving() {
    let hog = "b = []\nwhile True:\n    b.append(bytearray(32 << 20))\n".to_owned();
    let mut s = Scenario::start(Options { algorithm: hog, memory_bytes: 128 << 20, ..Options::default() });
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["reason"].as_str().unwrap().contains("exited with code 1"), "{status}");
    assert!(s.agent_alive());
    assert_exit(&s.run("attest", None, &[]), exit_codes::OK);
}

#[test]
fn session_evidence_from_one_connection_does_not_verify_on_another() {
    let s = Scenario::start(Options::default());
    let args = agent_args(&s, None);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let a = args.handshake().await.map_err(|e| e.to_string()).unwrap();
        let b = args.handshake().await.map_err(|e| e.to_string()).unwrap();
        let nonce = a.nonce().unwrap();
        let (ekm_a, ekm_b) = (a.exporter(&nonce).unwrap(), b.exporter(&nonce).unwrap());
        assert_ne!(ekm_a, ekm_b);
        let mut on_a = a.into_agent().await.unwrap();
        let evidence = on_a.session_evidence(&nonce).await.unwrap();
        assert!(on_a.verify_session(&evidence, &nonce, &ekm_a).unwrap().accepted());
        let relayed = on_a.verify_session(&evidence, &nonce, &ekm_b).unwrap();
        let failed: Vec<&str> = relayed.failures().map(|c| c.name).collect();
        assert_eq!(failed, ["session_binding"]);
        let other_nonce = b.nonce().unwrap();
        let stale = on_a.verify_session(&evidence, &other_nonce, &ekm_a).unwrap();
        assert_eq!(stale.failures().map(|c| c.name).collect::<Vec<_>>(), ["session_binding"]);
    });
}

#[test]
fn a_server_with_another_key_cannot_present_the_agents_certificate() {
    use std::sync::Arc;
    let s = Scenario::start(Options::default());
    let args = agent_args(&s, None);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        // Take the agent's real certificate off a handshake.
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(cvm_tests::AcceptAnyServer))
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("cvm-agent").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();

        // An impostor serves it with its own key.
        let impostor_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(impostor_key.serialize_der().into());
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key).unwrap();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signing));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(certified)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let impostor_addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        let mut to_impostor = args.clone();
        to_impostor.agent = impostor_addr;
        let err = match to_impostor.connect().await {
            Ok(_) => panic!("connected to an impostor"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("TLS handshake") && err.contains("failed"), "{err}");
    });
}

#[derive(Debug)]
struct Fixed(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[test]
fn a_client_that_disconnects_mid_upload_leaves_nothing_and_can_retry() {
    let s = Scenario::start(Options::default());
    assert_exit(&s.run("upload-algorithm", Some(&s.alg), &[&s.path("stats.py")]), exit_codes::OK);
    let args = agent_args(&s, Some(&s.a));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut agent = args.connect().await.map_err(|e| e.to_string()).unwrap();
        let first = futures_util::stream::iter([Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
            b"patient,age\na1,3",
        )))]);
        let then_break = futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Err(std::io::Error::other("the client went away"))
        });
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(
            futures_util::StreamExt::chain(first, then_break),
        ));
        let sent = agent.send_body(hyper::Method::PUT, "/v1/datasets/hospital-a.csv", body, Some(36)).await;
        assert!(sent.is_err(), "{sent:?}");
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !s.log().contains("abandoned") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.log().contains("upload of hospital-a.csv abandoned after 16 bytes"), "{}", s.log());
    assert!(s.incoming().is_empty(), "{:?}", s.incoming());
    assert_eq!(s.status()["datasets_received"], serde_json::json!([]));
    assert_exit(
        &s.run("upload-dataset", Some(&s.a), &["hospital-a.csv", &s.path("hospital-a.csv")]),
        exit_codes::OK,
    );
    assert_eq!(s.status()["datasets_received"], serde_json::json!(["hospital-a.csv"]));
}

#[test]
fn the_agent_refuses_a_work_directory_that_is_not_empty() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::copy(Scenario::start(Options::default()).dir.path().join("manifest.json"), &manifest).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("datasets")).unwrap();
    std::fs::write(work.join("datasets/left-over.csv"), "x").unwrap();
    let err = match cvm_tests::start_agent(dir.path(), &manifest, &work) {
        Ok(_) => panic!("the agent started on a used work directory"),
        Err(e) => e,
    };
    assert!(err.contains("is not empty"), "{err}");
}

#[test]
fn a_binary_algorithm_runs_with_its_arguments() {
    // An executable file (here with a #! line) is a binary to the agent: it is
    // made executable and run directly, with the manifest's arguments.
    let program = "#!/bin/sh\necho \"$# args: $*\" > \"$CVM_RESULTS/args.txt\"\ncat \"$CVM_DATASETS\"/*.csv | wc -l >> \"$CVM_RESULTS/args.txt\"\n";
    let s =
        Scenario::start(Options { algorithm: program.to_owned(), interpreter: None, ..Options::default() });
    let status = run_to_the_end(&s);
    assert_eq!(status["state"], "results_ready", "{status}\n{}", s.log());
    let out = s.path("results.tar");
    assert_exit(&s.run("results", Some(&s.consumer), &["--out", &out]), exit_codes::OK);
    let o = std::process::Command::new("tar").args(["-xOf", &out, "results/args.txt"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "2 args: --column age\n9\n");
}

/// Session evidence requests the agent has served: one per connection of cvmctl.
fn evidence_requests(s: &Scenario) -> usize {
    s.log().matches("POST /v1/evidence -> ").count()
}

#[test]
fn an_owner_whose_policy_pins_no_measurement_sends_nothing_unless_it_says_insecure() {
    let s = Scenario::start(Options::default());
    // Issue 12, item 5: a policy without `measurements` would accept any image.
    let unpinned = s.dir.path().join("unpinned.json");
    std::fs::write(&unpinned, r#"{"vmpl": 0}"#).unwrap();
    let before = evidence_requests(&s);
    let o = s.run_with_policy("upload-algorithm", Some(&s.alg), &unpinned, &[&s.path("stats.py")]);
    assert_exit(&o, exit_codes::USAGE);
    assert!(stderr(&o).contains("pins no launch measurement"), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(evidence_requests(&s), before, "cvmctl connected:\n{}", s.log());
    assert!(!s.log().contains("PUT /v1/algorithm"), "{}", s.log());

    // Said explicitly: it connects, warns, and records the measurement check as skipped.
    let o = s.run_with_policy("attest", None, &unpinned, &["--insecure-any-measurement", "--json"]);
    assert_exit(&o, exit_codes::OK);
    assert!(stderr(&o).contains("warning: --insecure-any-measurement"), "{}", stderr(&o));
    let measurement = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["type"] == "check" && v["data"]["name"] == "measurement")
        .expect("a measurement check");
    assert_eq!(measurement["data"]["status"], "skipped", "{measurement}");
    let o = s.run_with_policy(
        "upload-algorithm",
        Some(&s.alg),
        &unpinned,
        &["--insecure-any-measurement", &s.path("stats.py")],
    );
    assert_exit(&o, exit_codes::OK);
    assert!(stderr(&o).contains("warning: --insecure-any-measurement"), "{}", stderr(&o));
    assert_eq!(s.status()["algorithm_received"], true);

    // A pinned measurement the agent does not report: rejected as before, nothing sent.
    let other = s.dir.path().join("other.json");
    std::fs::write(&other, serde_json::json!({"measurements": ["00".repeat(48)]}).to_string()).unwrap();
    let o = s.run_with_policy(
        "upload-dataset",
        Some(&s.a),
        &other,
        &["hospital-a.csv", &s.path("hospital-a.csv")],
    );
    assert_exit(&o, exit_codes::REJECTED);
    assert!(stderr(&o).contains("measurement"), "{}", stderr(&o));
    assert_eq!(s.status()["datasets_received"], serde_json::json!([]));
    assert!(!s.log().contains("PUT /v1/datasets/"), "{}", s.log());
}
