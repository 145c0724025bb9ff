//! Landlock: the second layer under the mount namespace.
//!
//! The sandbox's root holds only what the algorithm may see; Landlock
//! restates it in the kernel's own terms, so that a mistake in the mount
//! set-up still leaves files read-only: everything below `/` may be read and
//! executed, only the writable directories (results, /tmp) and `/dev/null`
//! may be written. Where the kernel's ABI has them, it also refuses TCP
//! bind and connect (ABI 4), device ioctls (ABI 5), and abstract Unix
//! sockets and signals that lead out of the sandbox's domain (ABI 6).

use std::path::PathBuf;

use landlock::{
    make_bitflags, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

/// The newest ABI this code asks for; an older kernel gets what it has.
const WANTED: ABI = ABI::V6;

/// How far the kernel enforced the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enforced {
    /// Every requested right.
    Fully,
    /// What the kernel's ABI offers.
    Partially,
    /// Nothing: no Landlock in this kernel.
    Not,
}

/// Restricts the calling thread (and what it executes) to the sandbox's view.
pub(crate) fn restrict(writable: &[PathBuf]) -> Result<Enforced, landlock::RulesetError> {
    let read = AccessFs::from_read(WANTED);
    let write_null = make_bitflags!(AccessFs::{WriteFile | Truncate});
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(WANTED))?
        .handle_access(make_bitflags!(AccessNet::{BindTcp | ConnectTcp}))?
        .scope(make_bitflags!(Scope::{AbstractUnixSocket | Signal}))?
        .create()?
        .add_rules(landlock::path_beneath_rules(["/"], read))?
        .add_rules(landlock::path_beneath_rules(writable, AccessFs::from_all(WANTED)))?
        .add_rules(landlock::path_beneath_rules(["/dev/null"], write_null))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Enforced::Fully,
        RulesetStatus::PartiallyEnforced => Enforced::Partially,
        RulesetStatus::NotEnforced => Enforced::Not,
    })
}

/// The kernel's Landlock ABI version, 0 when it has none.
pub(super) fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) reads no memory and
    // returns the ABI version (or -1 with errno when Landlock is absent).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0).max(0)
}
