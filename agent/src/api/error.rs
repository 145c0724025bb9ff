//! Why a request was refused: [`ApiError`], every handler's error, and the
//! one place where an error becomes an HTTP status and a wire code.

use cvm_protocol::api::{ErrorBody, ErrorCode, ErrorDetail};
use hyper::{Method, Response, StatusCode};

use super::{json, Body};
use crate::admission::{self, RETRY_AFTER_S};
use crate::body::BodyError;
use crate::computation::FlowError;
use crate::sealed_inputs::SealedInputError;
use crate::tee::TeeError;

/// A refused request, as every handler returns it.
///
/// [`ApiError::status`] and [`ApiError::code`] are the only mapping from
/// errors to HTTP statuses and [`ErrorCode`]s; the message is the error's
/// `Display`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The computation refused it.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// A small request body failed to arrive.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// An upload's body broke off (other than by being too slow).
    #[error("upload of {name} broke off: {source}")]
    Incomplete {
        /// What was uploaded.
        name: String,
        /// How the body broke off.
        source: BodyError,
    },
    /// No such endpoint.
    #[error("no such endpoint: {path}")]
    NoEndpoint {
        /// The request's path.
        path: String,
    },
    /// A key path that names no input.
    #[error("no such key path: {path} (keys/algorithm, keys/datasets/NAME, keys/artifacts/NAME)")]
    NoKeyPath {
        /// The request's path.
        path: String,
    },
    /// The endpoint exists, with other methods.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
    },
    /// A malformed evidence request.
    #[error("{0}")]
    BadEvidenceRequest(String),
    /// The connection's TLS exporter failed.
    #[error("{0}")]
    Exporter(String),
    /// Taking the measurements (the log and its quote) failed.
    #[error("{0}")]
    Measurements(String),
    /// The TEE gave no report.
    #[error(transparent)]
    Tee(#[from] TeeError),
    /// Too many anonymous evidence requests at once.
    #[error(transparent)]
    EvidenceBusy(#[from] admission::Busy),
    /// No connection slot for a client of this kind.
    #[error("the agent serves as many clients of your kind as it can; retry later")]
    NoSlot,
}

impl ApiError {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self.code() {
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::UnknownDataset | ErrorCode::UnknownInput => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::NotReady | ErrorCode::NotSealed => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::DigestMismatch | ErrorCode::KeyMismatch | ErrorCode::SealedStreamInvalid => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::BadRequest | ErrorCode::Incomplete => StatusCode::BAD_REQUEST,
            ErrorCode::TooSlow => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Busy => match self {
                ApiError::NoSlot => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::TOO_MANY_REQUESTS,
            },
            ErrorCode::HostStorage => StatusCode::BAD_GATEWAY,
            ErrorCode::Tee => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Memory => StatusCode::INSUFFICIENT_STORAGE,
            // Storage, Exporter, Measurements: the agent's own failures.
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire code of the response.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Flow(e) => match e {
                FlowError::Unauthenticated => ErrorCode::Unauthenticated,
                FlowError::Forbidden { .. } => ErrorCode::Forbidden,
                FlowError::UnknownDataset(_) => ErrorCode::UnknownDataset,
                FlowError::Conflict(_) => ErrorCode::Conflict,
                FlowError::TooLarge { .. } => ErrorCode::TooLarge,
                FlowError::DigestMismatch { .. } => ErrorCode::DigestMismatch,
                FlowError::NotReady(_) => ErrorCode::NotReady,
                FlowError::Io(_) => ErrorCode::Storage,
                FlowError::BadKeyRelease(_) => ErrorCode::BadRequest,
                FlowError::Sealed(s) => match s {
                    SealedInputError::Unknown(_) => ErrorCode::UnknownInput,
                    SealedInputError::NotSealed(_) => ErrorCode::NotSealed,
                    SealedInputError::KeyMismatch { .. } => ErrorCode::KeyMismatch,
                    SealedInputError::Stream { .. } => ErrorCode::SealedStreamInvalid,
                    SealedInputError::HostStorage { .. } => ErrorCode::HostStorage,
                    SealedInputError::Memory { .. } => ErrorCode::Memory,
                },
            },
            ApiError::Body(BodyError::TooSlow { .. }) => ErrorCode::TooSlow,
            ApiError::Body(BodyError::TooLarge { .. } | BodyError::Broken(_)) => ErrorCode::BadRequest,
            ApiError::Incomplete { .. } => ErrorCode::Incomplete,
            ApiError::NoEndpoint { .. } | ApiError::NoKeyPath { .. } => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::BadEvidenceRequest(_) => ErrorCode::BadRequest,
            ApiError::Exporter(_) => ErrorCode::Exporter,
            ApiError::Measurements(_) => ErrorCode::Measurements,
            ApiError::Tee(_) => ErrorCode::Tee,
            ApiError::EvidenceBusy(_) | ApiError::NoSlot => ErrorCode::Busy,
        }
    }

    /// The response: `{"error": {"code", "message"}}` with its status, and
    /// a `Retry-After` of [`RETRY_AFTER_S`] when the client was turned away for now.
    pub fn response(&self) -> Response<Body> {
        let code = self.code();
        let mut resp =
            json(self.status(), &ErrorBody { error: ErrorDetail { code, message: self.to_string() } });
        if code == ErrorCode::Busy {
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from(RETRY_AFTER_S));
        }
        resp
    }
}
