//! The HTTP API over attested TLS (paths in `cvm_protocol::api`).
//!
//! Every error is `{"error": {"code", "message"}}`; [`FlowError`] maps to a
//! status in one place, [`error_response`].

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
}

/// Per-connection facts.
pub struct Peer {
    /// The client's owner key, if it presented a certificate.
    pub key: Option<PublicKey>,
    /// The connection's exporter.
    pub exporter: Arc<dyn Exporter>,
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
        (&Method::PUT, api::ALGORITHM) => upload(c, key, Target::Algorithm, req).await,
        (&Method::PUT, p) if p.starts_with(api::DATASETS) => {
            let name = p[api::DATASETS.len()..].to_owned();
            upload(c, key, Target::Dataset(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::ARTIFACTS) => {
            let name = p[api::ARTIFACTS.len()..].to_owned();
            upload(c, key, Target::Artifact(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::KEYS) => match InputRef::parse(&p[api::KEYS.len()..]) {
            Some(input) => release_key(c, key, input, req).await,
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

async fn session_evidence(state: &AppState, peer: &Peer, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::read(req.into_body(), 4096).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
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
    // The log and the quote of one moment; the TPM call blocks.
    let computation = Arc::clone(&state.computation);
    let m = match tokio::task::spawn_blocking(move || computation.measurements(&nonce)).await {
        Ok(m) => m,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "measurements", e.to_string()),
    };
    let report_data = session_report_data(&state.tls_spki, &nonce, &ekm, &m.digest);
    match state.tee.report(&report_data) {
        Ok(ev) => json(
            StatusCode::OK,
            &SessionEvidence {
                report: base64::engine::general_purpose::STANDARD.encode(&ev.report),
                event_log_digest: Digest(m.digest),
                events: m.events,
                vtpm: m.vtpm,
            },
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "tee", e.to_string()),
    }
}

async fn upload(
    c: &Arc<Computation>,
    key: Option<&PublicKey>,
    target: Target,
    req: Request<Incoming>,
) -> Response<Body> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = match &target {
        Target::Algorithm => "algorithm".to_owned(),
        Target::Dataset(n) | Target::Artifact(n) => n.clone(),
    };
    let mut up = match c.begin_upload(key, target, declared) {
        Ok(u) => u,
        Err(e) => return error_response(&e),
    };
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(e) = up.write(data).await {
                        return error_response(&e);
                    }
                }
            }
            // The client went away or broke the stream: dropping `up` discards the partial file.
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "incomplete",
                    format!("upload of {name} broke off: {e}"),
                )
            }
        }
    }
    match up.finish().await {
        Ok((digest, sealed, bytes)) => json(StatusCode::CREATED, &Uploaded { name, digest, sealed, bytes }),
        Err(e) => error_response(&e),
    }
}

async fn release_key(
    c: &Arc<Computation>,
    key: Option<&PublicKey>,
    input: InputRef,
    req: Request<Incoming>,
) -> Response<Body> {
    // The body is the key itself: read with a small cap, parsed, and zeroed.
    let body = match Limited::read(req.into_body(), 4096).await {
        Ok(b) => zeroize::Zeroizing::new(b),
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let sealing_key = match serde_json::from_slice::<api::KeyRelease>(&body)
        .map_err(|_| "expected {\"key\": \"cvm-sealing-key v1 ...\"}".to_owned())
        .and_then(|r| cvm_protocol::sealed::SealingKey::from_text(&r.key).map_err(|e| e.to_string()))
    {
        Ok(k) => k,
        Err(e) => return error_response(&FlowError::BadRequest(format!("key release: {e}"))),
    };
    drop(body);
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

/// Reads a small body with a hard cap.
struct Limited;

impl Limited {
    async fn read(mut body: Incoming, cap: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(d) = frame.data_ref() {
                if out.len() + d.len() > cap {
                    return Err(format!("request body over {cap} bytes"));
                }
                out.extend_from_slice(d);
            }
        }
        Ok(out)
    }
}
