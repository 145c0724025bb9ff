//! The HTTP API over attested TLS (paths in `cvm_protocol::api`).
//!
//! Every handler returns `Result<_, `[`ApiError`]`>`; an error becomes
//! `{"error": {"code", "message"}}` with its status in one place,
//! [`ApiError::response`].
//!
//! Request bodies are read at a floor rate ([`crate::body`]); the agent's
//! own work on a request (TPM quotes, reports, decryption) is marked on the
//! connection's [`Activity`] so that it does not count as the client's
//! idleness, and runs on blocking threads; anonymous clients' session
//! evidence passes the [`crate::admission::EvidenceGate`].

mod error;

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use cvm_evidence::binding::{session_report_data, EXPORTER_LABEL};
use cvm_protocol::api::{self, EvidenceRequest, InputRef, SessionEvidence, Uploaded};
use cvm_protocol::{Digest, PublicKey};
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

pub use error::ApiError;

use crate::activity::Activity;
use crate::admission::{Admission, Class};
use crate::body::{BodyError, PacedBody};
use crate::computation::{BadKeyRelease, Computation, FlowError};
use crate::download::Completed;
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
    let handled = match (&method, path.as_str()) {
        (&Method::GET, api::STATUS) => Ok(json(StatusCode::OK, &c.status(key))),
        (&Method::GET, api::MANIFEST) => {
            let mut r = Response::new(
                Full::new(Bytes::from(c.manifest().canonical_json())).map_err(|n| match n {}).boxed(),
            );
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        (&Method::POST, api::EVIDENCE) => session_evidence(&state, &peer, req).await,
        (&Method::PUT, api::ALGORITHM) => upload(&state, &peer, InputRef::Algorithm, req).await,
        (&Method::PUT, p) if p.starts_with(api::DATASETS) => {
            let name = p[api::DATASETS.len()..].to_owned();
            upload(&state, &peer, InputRef::Dataset(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::ARTIFACTS) => {
            let name = p[api::ARTIFACTS.len()..].to_owned();
            upload(&state, &peer, InputRef::Artifact(name), req).await
        }
        (&Method::PUT, p) if p.starts_with(api::KEYS) => match InputRef::parse(&p[api::KEYS.len()..]) {
            Some(input) => release_key(&state, &peer, input, req).await,
            None => Err(ApiError::NoKeyPath { path: path.clone() }),
        },
        (&Method::GET, api::RESULTS) => results(c, key).await,
        (_, api::STATUS | api::MANIFEST | api::EVIDENCE | api::ALGORITHM | api::RESULTS) => {
            Err(ApiError::MethodNotAllowed { method: method.clone(), path: path.clone() })
        }
        _ => Err(ApiError::NoEndpoint { path: path.clone() }),
    };
    let resp = handled.unwrap_or_else(|e| e.response());
    log::debug!(
        "{method} {path} -> {} (key {})",
        resp.status(),
        key.map_or_else(|| "none".into(), PublicKey::fingerprint)
    );
    Ok(resp)
}

async fn session_evidence(
    state: &Arc<AppState>,
    peer: &Peer,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body = read_small(state, req, 4096).await?;
    let request: EvidenceRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadEvidenceRequest(format!("evidence request: {e}")))?;
    let mut nonce = [0u8; 32];
    if hex::decode_to_slice(&request.nonce, &mut nonce).is_err() {
        return Err(ApiError::BadEvidenceRequest("nonce: expected 64 hex digits (32 bytes)".into()));
    }
    let ekm = peer.exporter.export(EXPORTER_LABEL, &nonce).map_err(ApiError::Exporter)?;
    // Clients without an owner key take turns, a few at a time; owners never wait for a turn.
    let turn = match peer.class {
        Class::Owner => None,
        Class::Anonymous => Some(state.admission.evidence.enter().await?),
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
    let (report, m) = produced.map_err(|e| ApiError::Measurements(e.to_string()))?;
    let ev = report?;
    Ok(json(
        StatusCode::OK,
        &SessionEvidence {
            report: base64::engine::general_purpose::STANDARD.encode(&ev.report),
            event_log_digest: Digest(m.digest),
            events: m.events,
            vtpm: m.vtpm,
            measured_boot: Some(m.measured_boot),
        },
    ))
}

async fn upload(
    state: &AppState,
    peer: &Peer,
    target: InputRef,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (c, key) = (&state.computation, peer.key.as_ref());
    let declared = declared_length(&req);
    let name = target.name().to_owned();
    let mut up = c.begin_upload(key, target, declared)?;
    // Within the limit, checked above; the body may not run past it either.
    let cap = c.manifest().limits.max_upload_bytes;
    let mut body = PacedBody::new(req.into_body(), declared, cap, state.admission.limits.body_min_rate);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    let _busy = peer.activity.busy();
                    up.write(data).await?;
                }
            }
            // The client went away, broke the stream or was too slow:
            // dropping `up` discards the partial file.
            Err(e @ BodyError::TooSlow { .. }) => {
                log::warn!("upload of {name} cut off: {e}");
                return Err(e.into());
            }
            Err(e) => return Err(ApiError::Incomplete { name, source: e }),
        }
    }
    let _busy = peer.activity.busy();
    let (digest, sealed, bytes) = up.finish().await?;
    Ok(json(StatusCode::CREATED, &Uploaded { name, digest, sealed, bytes }))
}

async fn release_key(
    state: &AppState,
    peer: &Peer,
    input: InputRef,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let (c, key) = (&state.computation, peer.key.as_ref());
    // The body is the key itself: read with a small cap, parsed, and zeroed.
    let body = zeroize::Zeroizing::new(read_small(state, req, 4096).await?);
    let sealing_key = serde_json::from_slice::<api::KeyRelease>(&body)
        .map_err(|_| BadKeyRelease::NotJson)
        .and_then(|r| cvm_protocol::sealed::SealingKey::from_text(&r.key).map_err(BadKeyRelease::Key))
        .map_err(FlowError::BadKeyRelease)?;
    drop(body);
    // A host-path artifact is read and decrypted now, which may take a while.
    let _busy = peer.activity.busy();
    let released = c.release_key(key, input, sealing_key).await?;
    Ok(json(StatusCode::CREATED, &released))
}

async fn results(c: &Arc<Computation>, key: Option<&PublicKey>) -> Result<Response<Body>, ApiError> {
    let path = c.results(key)?;
    let file = tokio::fs::File::open(&path).await.map_err(FlowError::Io)?;
    let len = file.metadata().await.map_err(FlowError::Io)?.len();
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
    Ok(resp)
}
