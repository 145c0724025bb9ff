//! The HTTP API over attested TLS (paths in `cvm_protocol::api`).
//!
//! Every error is `{"error": {"code", "message"}}`; [`FlowError`] maps to a
//! status in one place, [`error_response`].
//!
//! Request bodies are read at a floor rate ([`crate::body`]); the agent's
//! own work on a request (TPM quotes, reports, decryption) is marked on the
//! connection's [`Activity`] so that it does not count as the client's
//! idleness, and runs on blocking threads; anonymous clients' session
//! evidence passes the [`crate::admission::EvidenceGate`].

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cvm_evidence::binding::{session_report_data, EXPORTER_LABEL};
use cvm_protocol::api::{self, ErrorBody, ErrorDetail, EvidenceRequest, SessionEvidence, Uploaded};
use cvm_protocol::{Digest, PublicKey};
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::activity::Activity;
use crate::admission::{Admission, Class, RETRY_AFTER_S};
use crate::body::{BodyError, PacedBody};
use crate::computation::{Computation, FlowError, Target};
use crate::download::Completed;
use crate::sealed_inputs::{InputRef, SealedInputError};
use crate::tee::TeeProvider;

/// The response body type.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Computes TLS exporter values for the connection a request came on.
pub trait Exporter: Send + Sync {
    /// `export_keying_material(32, label, context)` of this connection.
    fn export(&self, label: &[u8], context: &[u8]) -> Result<[u8; 32], String>;
}

/// What every request handler can reach.
pub struct AppState {
    /// The computation.
    pub computation: Arc<Computation>,
    /// The TEE, for session evidence.
    pub tee: Box<dyn TeeProvider>,
    /// The TLS key's SubjectPublicKeyInfo.
    pub tls_spki: Vec<u8>,
    /// Connection slots, limits on clients, the anonymous evidence gate.
    pub admission: Admission,
}

/// Per-connection facts.
pub struct Peer {
    /// The client's owner key, if it presented a certificate.
    pub key: Option<PublicKey>,
    /// Whether that key has a role in the manifest.
    pub class: Class,
    /// The connection's exporter.
    pub exporter: Arc<dyn Exporter>,
    /// The connection's activity, for the idle timeout.
    pub activity: Arc<Activity>,
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    resp
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    json(status, &ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } })
}

/// `status` with a `Retry-After` of [`RETRY_AFTER_S`]: the client was turned away for now.
pub fn busy(status: StatusCode, code: &str, message: impl Into<String>) -> Response<Body> {
    let mut resp = error(status, code, message);
    resp.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(RETRY_AFTER_S));
    resp
}

/// The response to a request body that failed to arrive.
fn body_error(e: &BodyError) -> Response<Body> {
    match e {
        BodyError::TooSlow { .. } => error(StatusCode::REQUEST_TIMEOUT, "too_slow", e.to_string()),
        BodyError::TooLarge { .. } | BodyError::Broken(_) => {
            error(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
    }
}

/// The request's declared length.
fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a small body (at most `cap` bytes) at the floor rate.
async fn read_small(state: &AppState, req: Request<Incoming>, cap: usize) -> Result<Vec<u8>, BodyError> {
    let declared = declared_length(&req);
    PacedBody::new(req.into_body(), declared, cap as u64, state.admission.limits.body_min_rate)
        .read_capped(cap)
        .await
}

/// The one place where flow errors become HTTP statuses.
pub fn error_response(e: &FlowError) -> Response<Body> {
    let (status, code) = match e {
        FlowError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        FlowError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        FlowError::UnknownDataset(_) => (StatusCode::NOT_FOUND, "unknown_dataset"),
        FlowError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        FlowError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        FlowError::DigestMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "digest_mismatch"),
        FlowError::NotReady(_) => (StatusCode::CONFLICT, "not_ready"),
        FlowError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        FlowError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        FlowError::Sealed(s) => match s {
            SealedInputError::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_input"),
            SealedInputError::NotSealed(_) => (StatusCode::CONFLICT, "not_sealed"),
            SealedInputError::KeyMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "key_mismatch"),
            SealedInputError::Stream { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "sealed_stream_invalid"),
            SealedInputError::HostStorage { .. } => (StatusCode::BAD_GATEWAY, "host_storage"),
            SealedInputError::Memory { .. } => (StatusCode::INSUFFICIENT_STORAGE, "memory"),
        },
    };
    error(status, code, e.to_string())
}

/// Handles one request.
pub async fn handle(
    state: Arc<AppState>,
    peer: Arc<Peer>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let key = peer.key.as_ref();
    let c = &state.computation;
    let resp = match (&method, path.as_str()) {
        (&Method::GET, api::STATUS) => json(StatusCode::OK, &c.status(key)),
        (&Method::GET, api::MANIFEST) => {
            let mut r = Response::new(
                Full::new(Bytes::from(c.manifest().canonical_json())).map_err(|n| match n {}).boxed(),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::POST, api::EVIDENCE) => session_evidence(&state, &peer, req).await,
        (&Method::PUT, api::ALGORITHM) => upload(&state, &peer, Target::Algorithm, req).await,
        (&Method::PUT, p) if p.starts_with(api::DATASETS) => {
            let name = p[api::DATASETS.len()..].to_owned();
            upload(&state, &peer, Target::Dataset(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::ARTIFACTS) => {
            let name = p[api::ARTIFACTS.len()..].to_owned();
            upload(&state, &peer, Target::Artifact(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::KEYS) => match InputRef::parse(&p[api::KEYS.len()..]) {
            Some(input) => release_key(&state, &peer, input, req).await,
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such key path: {path} (keys/algorithm, keys/datasets/NAME, keys/artifacts/NAME)"),
            ),
        },
        (&Method::GET, api::RESULTS) => results(c, key).await,
        (_, api::STATUS | api::MANIFEST | api::EVIDENCE | api::ALGORITHM | api::RESULTS) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no such endpoint: {path}")),
    };
    log::debug!(
        "{method} {path} -> {} (key {})",
        resp.status(),
        key.map_or_else(|| "none".into(), PublicKey::fingerprint)
    );
    Ok(resp)
}

async fn session_evidence(state: &Arc<AppState>, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    let body = match read_small(state, req, 4096).await {
        Ok(b) => b,
        Err(e) => return body_error(&e),
    };
    let request: EvidenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", format!("evidence request: {e}")),
    };
    let mut nonce = [0u8; 32];
    if hex::decode_to_slice(&request.nonce, &mut nonce).is_err() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "nonce: expected 64 hex digits (32 bytes)");
    }
    let ekm = match peer.exporter.export(EXPORTER_LABEL, &nonce) {
        Ok(ekm) => ekm,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "exporter", e),
    };
    // Clients without an owner key take turns, a few at a time; owners never wait for a turn.
    let turn = match peer.class {
        Class::Owner => None,
        Class::Anonymous => match state.admission.evidence.enter().await {
            Ok(turn) => Some(turn),
            Err(e) => return busy(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()),
        },
    };
    let _busy = peer.activity.busy();
    // The log and the quote of one moment, then the report over the log's
    // digest: a TPM command and a call to the secure processor, both
    // blocking, on a blocking thread. The computation's state is not locked meanwhile.
    let work = Arc::clone(state);
    // The turn goes with the work: a client that hangs up does not free it
    // before the TPM and the secure processor are done.
    let produced = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let m = work.computation.measurements(&nonce);
        let report_data = session_report_data(&work.tls_spki, &nonce, &ekm, &m.digest);
        (work.tee.report(&report_data), m)
    })
    .await;
    let (report, m) = match produced {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "measurements", e.to_string()),
    };
    match report {
        Ok(ev) => json(
            StatusCode::OK,
            &SessionEvidence {
                report: base64::engine::general_purpose::STANDARD.encode(&ev.report),
                event_log_digest: Digest(m.digest),
                events: m.events,
                vtpm: m.vtpm,
                measured_boot: Some(m.measured_boot),
            },
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "tee", e.to_string()),
    }
}

async fn upload(state: &AppState, peer: &Peer, target: Target, req: Request<Incoming>) -> Response<Body> {
    let (c, key) = (&state.computation, peer.key.as_ref());
    let declared = declared_length(&req);
    let name = match &target {
        Target::Algorithm => "algorithm".to_owned(),
        Target::Dataset(n) | Target::Artifact(n) => n.clone(),
    };
    let mut up = match c.begin_upload(key, target, declared) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    // Within the limit, checked above; the body may not run past it either.
    let cap = c.manifest().limits.max_upload_bytes;
    let mut body = PacedBody::new(req.into_body(), declared, cap, state.admission.limits.body_min_rate);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    let _busy = peer.activity.busy();
                    if let Err(e) = up.write(data).await {
                        return error_response(&e);
                    }
                }
            }
            // The client went away, broke the stream or was too slow:
            // dropping `up` discards the partial file.
            Err(e @ BodyError::TooSlow { .. }) => {
                log::warn!("upload of {name} cut off: {e}");
                return body_error(&e);
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "incomplete",
                    format!("upload of {name} broke off: {e}"),
                )
            }
        }
    }
    let _busy = peer.activity.busy();
    match up.finish().await {
        Ok((digest, sealed, bytes)) => json(StatusCode::CREATED, &Uploaded { name, digest, sealed, bytes }),
        Err(e) => error_response(&e),
    }
}

async fn release_key(
    state: &AppState,
    peer: &Peer,
    input: InputRef,
    req: Request<Incoming>,
) -> Response<Body> {
    let (c, key) = (&state.computation, peer.key.as_ref());
    // The body is the key itself: read with a small cap, parsed, and zeroed.
    let body = match read_small(state, req, 4096).await {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) => return body_error(&e),
    };
    let sealing_key = match serde_json::from_slice::<api::KeyRelease>(&body)
        .map_err(|_| "expected {\"key\": \"cvm-sealing-key v1 ...\"}".to_owned())
        .and_then(|r| cvm_protocol::sealed::SealingKey::from_text(&r.key).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => return error_response(&FlowError::BadRequest(format!("key release: {e}"))),
    };
    drop(body);
    // A host-path artifact is read and decrypted now, which may take a while.
    let _busy = peer.activity.busy();
    match c.release_key(key, input, sealing_key).await {
        Ok(released) => json(StatusCode::CREATED, &released),
        Err(e) => error_response(&e),
    }
}

async fn results(c: &Arc<Computation>, key: Option<&PublicKey>) -> Response<Body> {
    let path = match c.results(key) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error_response(&FlowError::Io(e.to_string())),
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return error_response(&FlowError::Io(e.to_string())),
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map_ok(Frame::data);
    let body: Body = BodyExt::boxed(StreamBody::new(stream));
    // Fetched only once every byte was handed over: a broken download leaves
    // the state as it was, and can be retried.
    let (c, key) = (Arc::clone(c), key.cloned());
    let body = Completed::new(body, len, move || {
        if let Some(k) = key {
            c.results_fetched(&k);
        }
    });
    let mut resp = Response::new(BodyExt::boxed(body));
    let headers = resp.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/x-tar"));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&len.to_string()) {
        headers.insert(hyper::header::CONTENT_LENGTH, v);
    }
    resp
}
