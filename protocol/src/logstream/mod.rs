//! The log stream: the agent's log records and state events to the host, and
//! the operator's few requests back, on one link (vsock in the VM, TCP or a
//! Unix socket elsewhere).
//!
//! The agent connects out to the host. Each side sends frames: a 4-byte
//! big-endian length `N` (1 ..= [`MAX_FRAME`]) and `N` bytes of one UTF-8 JSON
//! object whose `type` names the message. A reader refuses a larger length
//! before it reads or allocates anything, so a hostile peer can make it
//! buffer at most one frame. The byte-level description, with examples, is
//! in `docs/log-stream.md` at the repository root.
//!
//! Each side's first frame is its `hello`, carrying [`VERSION`]; a peer
//! speaking another version is refused. Then:
//!
//! - agent → host: [`Record`]s, numbered by `seq` from 1 for each `boot` (a
//!   random id the agent draws at start), in order; and [`Reply`]s to
//!   requests.
//! - host → agent: `ack`s (cumulative: every record up to `seq` arrived) and
//!   [`Request`]s: deliver the manifest, ask for the status, set the level.
//!   Nothing else: an unknown operation parses as [`Operation::Unsupported`]
//!   so that the agent can refuse it by name.
//!
//! Delivery: the agent keeps every record until it is acknowledged and, after
//! a reconnect, sends again whatever was not; the host drops a record whose
//! `seq` it has already seen for that boot. When the agent's queue is full it
//! drops its oldest records; a `dropped` record then stands in for them: its
//! `seq` is the last one dropped and `first_seq` the first, so a host that
//! already has some of them ([`Record::lost_after`]) counts only the rest. A
//! host that sees `seq` jump without such a record knows records went missing.

mod frame;
mod messages;
mod wire;

pub use frame::Deframer;
pub use messages::{
    cut, AgentHello, AgentMessage, AgentStatus, HostHello, HostMessage, Level, Operation, Record, RecordKind,
    Reply, ReplyData, Request,
};

/// The protocol version both sides must speak.
pub const VERSION: u32 = 1;
/// Largest frame body, in bytes.
pub const MAX_FRAME: usize = 1 << 20;
/// Longest record message the agent sends, in bytes; longer ones are cut.
pub const MAX_MESSAGE: usize = 16 << 10;
/// Longest record source (the `log` target), in bytes; longer ones are cut.
pub const MAX_SOURCE: usize = 256;
/// Largest manifest a request may carry, in bytes.
pub const MAX_MANIFEST: usize = 512 << 10;
/// Largest record number: 2^53 - 1. Every JSON reader holds it exactly, and
/// every count derived from record numbers (`seq + 1`, `seq - first_seq + 1`)
/// fits in a `u64`. A record numbered above it is refused at decode; an agent
/// making a million records a second reaches it after 285 years.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// What went wrong with a frame or a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogStreamError {
    /// A frame's declared length is over [`MAX_FRAME`].
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame's declared length is zero.
    #[error("empty frame")]
    EmptyFrame,
    /// The body is not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A field has a value the protocol does not allow.
    #[error("message field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The peer speaks another version.
    #[error("peer speaks log stream version {found}, this side speaks {supported}")]
    UnsupportedVersion {
        /// The peer's version.
        found: u32,
        /// Ours.
        supported: u32,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LogStreamError {
    LogStreamError::Invalid { field, reason: reason.into() }
}

#[cfg(test)]
mod tests;
