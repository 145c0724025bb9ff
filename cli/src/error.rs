//! cvmctl's one top-level error: every command returns it, and it knows
//! its exit code ([`crate::exit_codes`]; the table is in the README).

use std::fmt;

use cvm_protocol::api::{ErrorBody, ErrorCode};
use hyper::StatusCode;

use crate::exit_codes;

/// Why a command did not succeed, by exit code.
///
/// Any other error (`?` on an I/O error, a parse error, an `anyhow` error)
/// converts to [`Error::Usage`]: the user's own input could not be used. The
/// code that talks to an agent says so where the agent or the connection is
/// at fault ([`Error::Transport`], [`Error::Refused`]).
///
/// Like `anyhow::Error`, this is no `std::error::Error` itself, so that `?`
/// converts every error into it.
#[derive(Debug)]
pub enum Error {
    /// Bad usage or unreadable input of the user's own (exit 2).
    Usage(anyhow::Error),
    /// Evidence was rejected, or an identity refused: the agent is not the
    /// one the owner pinned, or a sealed stream did not verify (exit 1).
    /// What failed was already printed; this is the summary.
    Rejected(String),
    /// The agent answered the request with an error (exit 3).
    Refused(Refusal),
    /// The connection to the agent or the listener failed after it was
    /// made, or the agent answered something malformed (exit 3).
    Transport(anyhow::Error),
    /// The computation failed (`status`; exit 3).
    Failed(String),
}

/// An agent's error response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (none for a refusal over the log link).
    pub status: Option<StatusCode>,
    /// The error code from the body, if it had one.
    pub code: Option<ErrorCode>,
    /// The message from the body (or the body itself, when it is no error body).
    pub message: String,
}

impl Refusal {
    /// Reads an error response.
    pub fn from_response(status: StatusCode, body: &[u8]) -> Refusal {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => Refusal { status: Some(status), code: Some(e.error.code), message: e.error.message },
            Err(_) => Refusal {
                status: Some(status),
                code: None,
                message: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }
}

impl Refusal {
    /// A refusal that came without an HTTP status (the log link's operator requests).
    pub fn other(message: String) -> Refusal {
        Refusal { status: None, code: None, message }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, self.code) {
            (Some(status), Some(code)) => write!(f, "{status} ({code}): {}", self.message),
            (Some(status), None) => write!(f, "{status}: {}", self.message),
            (None, _) => f.write_str(&self.message),
        }
    }
}

impl Error {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            _ if self.is_broken_pipe() => exit_codes::OK,
            Error::Usage(_) => exit_codes::USAGE,
            Error::Rejected(_) => exit_codes::REJECTED,
            Error::Refused(_) | Error::Transport(_) | Error::Failed(_) => exit_codes::AGENT_ERROR,
        }
    }

    /// A transport failure: `e` happened on a connection that was made.
    pub fn transport(e: impl Into<anyhow::Error>) -> Error {
        Error::Transport(e.into())
    }

    /// Whether this is standard output's reader going away (exit 0, nothing printed).
    pub fn is_broken_pipe(&self) -> bool {
        let (Error::Usage(e) | Error::Transport(e)) = self else { return false };
        e.chain().any(|e| {
            e.is::<crate::output::StdoutClosed>()
                || e.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .is_some_and(|inner| inner.is::<crate::output::StdoutClosed>())
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) | Error::Transport(e) => write!(f, "error: {e:#}"),
            // What failed was printed already, each on a `cvmctl: rejected:` line.
            Error::Rejected(what) => f.write_str(what),
            Error::Refused(r) => write!(f, "the agent refused: {r}"),
            Error::Failed(reason) => write!(f, "the computation failed: {reason}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Error {
    fn from(e: E) -> Error {
        Error::Usage(e.into())
    }
}

/// A command's result.
pub type Result<T = ()> = std::result::Result<T, Error>;

/// Marks errors of talking to a connected agent as [`Error::Transport`].
pub trait TransportContext<T> {
    /// `Err(e)` becomes [`Error::Transport`].
    fn transport(self) -> Result<T>;
}

impl<T, E: Into<anyhow::Error>> TransportContext<T> for std::result::Result<T, E> {
    fn transport(self) -> Result<T> {
        self.map_err(Error::transport)
    }
}
