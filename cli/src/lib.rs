//! cvmctl: the command line of cvm-agent's computation owners and operators.
//!
//! The binary is flags and glue; the commands live here so that tests and
//! other tools can use the same output types and exit codes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
mod error;
pub mod exit_codes;
pub mod logs;
pub mod measure;
pub mod output;
pub mod owner;
pub mod report;
pub mod sealed;

pub use error::{Error, Refusal, Result, TransportContext};
