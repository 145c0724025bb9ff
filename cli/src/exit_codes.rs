//! Exit codes of cvmctl, the same for every command: the table in
//! docs/cvmctl.md ("Exit codes"). Each is a kind of [`crate::Error`]
//! ([`crate::Error::exit_code`]).

/// The command succeeded; for a verification, the evidence was accepted.
pub const OK: i32 = 0;
/// The evidence was rejected: a check failed, or the report or a certificate
/// that came with it could not be parsed, or the agent serves another
/// manifest than its evidence names. For `unseal`: the sealed stream did
/// not verify, and no plaintext was written.
pub const REJECTED: i32 = 1;
/// Bad usage or unreadable input of the user's own: a missing file, a
/// malformed policy, an invalid time or hex value. Also, for every command
/// that talks to an agent: a policy that pins no launch measurement (without
/// `--insecure-any-measurement`); no connection is made then.
pub const USAGE: i32 = 2;
/// The agent refused the request (an HTTP error such as 403, 409 or 422),
/// the agent or the log listener could not be reached, the connection
/// failed after it was made, or (`status`) the computation failed.
pub const AGENT_ERROR: i32 = 3;
