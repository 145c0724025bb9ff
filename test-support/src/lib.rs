//! Helpers shared by the workspace's tests: the real binaries, cvmctl as a
//! user runs it, a software TPM of a test's own, sealed inputs made with
//! `cvmctl seal`, files' SHA-256, what `/proc` says about processes, and
//! the fuzz targets' replay ([`fuzz_replay`]).
//!
//! This crate depends on no crate of the workspace: it drives the agent and
//! cvmctl as processes. So a crate whose own tests use it (the agent's, with
//! [`Swtpm`]) does not build a second copy of itself as a dependency, and
//! every helper here is written once for all test crates (`cvm-tests`
//! re-exports them under their old paths).
//!
//! Helpers panic, with a message that says what failed, when the fixture
//! they set up cannot be had: a test with a broken fixture must fail loudly.

#![expect(clippy::expect_used, reason = "test fixtures panic, saying what failed, on setup failures")]

mod binaries;
mod digests;
pub mod fuzz_replay;
mod output;
mod processes;
mod sealing;
mod swtpm;

pub use binaries::{bin, bin_dir, cvmctl};
pub use digests::sha256_file;
pub use output::{assert_exit, json_lines, ok, run, stderr, stdout};
pub use processes::{processes_of, vm_hwm};
pub use sealing::{seal, sealing_key};
pub use swtpm::Swtpm;
