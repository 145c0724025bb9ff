//! cvm-agent: the daemon inside an AMD SEV-SNP confidential VM.
//!
//! It generates a TLS key in the guest, binds it to a fresh SNP report
//! ([`atls`]), serves the computation's HTTP API over that attested TLS
//! ([`api`], [`server`]), enforces the manifest's roles and state machine
//! ([`computation`]), runs the algorithm in a sandbox ([`sandbox`]), and
//! measures every artifact into an event log ([`measurements`]) that is
//! extended into the vTPM ([`vtpm`]) and covered by fresh evidence. Sealed
//! inputs are opened with keys their owners release over attested TLS
//! ([`sealed_inputs`]) into locked memory only ([`vault`]). Its logs and
//! state events go to stderr and to the host ([`logs`]), whose operator may
//! deliver the manifest, ask for the status and set the level on the same
//! link ([`operator`]).

pub mod activity;
pub mod admission;
pub mod api;
pub mod atls;
pub mod body;
pub mod computation;
pub mod config;
pub mod download;
pub mod init;
pub mod loading;
pub mod logs;

pub mod measurements;
pub mod memory;
pub mod operator;
pub mod sandbox;
pub mod sealed_inputs;
pub mod server;
pub mod tee;
pub mod vault;
pub mod vtpm;
