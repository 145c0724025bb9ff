//! The supply-chain check of `make lint` (`cargo deny check licenses bans
//! sources` with the workspace's deny.toml): the workspace passes it, each
//! of its exceptions is needed, and what it is there to stop is stopped: a
//! crate under a licence not allowed, a banned crate, a git source.
//!
//! Needs cargo-deny (scripts/setup installs it; scripts/install-cargo-deny
//! alone does too). Everything runs offline: the workspace's crates are in
//! cargo's cache, the other crates are made here.

#![expect(clippy::expect_used, reason = "the fixtures outside the tests panic on broken setups")]

use std::path::{Path, PathBuf};
use std::process::Output;

use cvm_test_support::{ok, run, stderr, stdout};

/// The workspace's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo deny --offline [--locked] --manifest-path MANIFEST --config CONFIG check CHECKS...`.
fn deny(manifest: &Path, config: &Path, locked: bool, checks: &[&str]) -> Output {
    let (manifest, config) = (manifest.display().to_string(), config.display().to_string());
    let mut args = vec!["deny", "--offline", "--manifest-path", &manifest, "--config", &config];
    if locked {
        args.push("--locked");
    }
    args.push("check");
    args.extend_from_slice(checks);
    let o = run(env!("CARGO"), &args);
    assert!(
        !stderr(&o).contains("no such command: `deny`"),
        "cargo-deny is not installed: run scripts/install-cargo-deny"
    );
    o
}

/// The workspace's deny.toml.
fn config() -> String {
    std::fs::read_to_string(root().join("deny.toml")).expect("deny.toml at the workspace's root")
}

/// A workspace of its own in `dir`: one crate `name` under `license`, with
/// `deps` as its `[dependencies]` lines; returns its manifest.
fn workspace(dir: &Path, name: &str, license: &str, deps: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).expect("a crate directory");
    std::fs::write(dir.join("src/lib.rs"), "").expect("lib.rs");
    let manifest = dir.join("Cargo.toml");
    std::fs::write(
        &manifest,
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"{license}\"\n\
             publish = false\n\n[dependencies]\n{deps}\n[workspace]\n"
        ),
    )
    .expect("Cargo.toml");
    manifest
}

#[test]
fn the_workspace_passes_the_checks_of_make_lint() {
    let o =
        deny(&root().join("Cargo.toml"), &root().join("deny.toml"), true, &["licenses", "bans", "sources"]);
    assert_eq!(ok(&o, "cargo deny").trim(), "bans ok, licenses ok, sources ok");
    // Nor a warning: no exception that matches nothing, no licence allowed for nothing.
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn each_duplicate_version_the_config_allows_is_one_the_workspace_has() {
    let config = config();
    let dir = tempfile::tempdir().expect("a temporary directory");
    for krate in ["base64", "getrandom", "syn"] {
        // The config without this crate's `skip` entry.
        let without: String = config
            .lines()
            .filter(|l| !l.trim_start().starts_with(&format!("{{ crate = \"{krate}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without.len(), config.len(), "deny.toml has no skip entry for {krate}");
        let path = dir.path().join(format!("deny-{krate}.toml"));
        std::fs::write(&path, without).expect("a config");
        let o = deny(&root().join("Cargo.toml"), &path, true, &["bans"]);
        assert!(
            !o.status.success()
                && stderr(&o)
                    .contains(&format!("error[duplicate]: found 2 duplicate entries for crate '{krate}'")),
            "{krate}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_crate_under_a_copyleft_licence_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = workspace(dir.path(), "copyleft", "GPL-3.0-only", "");
    let o = deny(&manifest, &root().join("deny.toml"), false, &["licenses"]);
    assert!(!o.status.success() && stderr(&o).contains("GPL-3.0-only"), "{}", stderr(&o));
    assert!(stdout(&o).contains("licenses FAILED"), "{}", stdout(&o));
    // The same crate under MIT passes: the refusal is the licence's.
    let manifest = workspace(dir.path(), "copyleft", "MIT", "");
    ok(&deny(&manifest, &root().join("deny.toml"), false, &["licenses"]), "cargo deny on an MIT crate");
}

#[test]
fn a_banned_crate_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let banned = workspace(&dir.path().join("openssl-sys"), "openssl-sys", "MIT", "");
    let user = workspace(
        &dir.path().join("user"),
        "user",
        "MIT",
        &format!("openssl-sys = {{ path = \"{}\" }}\n", banned.parent().expect("its directory").display()),
    );
    let o = deny(&user, &root().join("deny.toml"), false, &["bans"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("error[banned]: crate 'openssl-sys = 0.1.0' is explicitly banned"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_git_dependency_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A git repository on this machine, so that cargo fetches nothing from the network.
    let repo = dir.path().join("repo");
    workspace(&repo, "from-git", "MIT", "");
    for args in [
        &["init", "-q"][..],
        &["add", "."],
        &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a crate"],
    ] {
        let mut all = vec!["-C", repo.to_str().expect("a UTF-8 path")];
        all.extend_from_slice(args);
        ok(&run("git", &all), "git");
    }
    let user = workspace(
        &dir.path().join("user"),
        "user",
        "MIT",
        &format!("from-git = {{ git = \"file://{}\" }}\n", repo.display()),
    );
    // The lock file first (git fetches from the file:// URL; --offline would refuse).
    ok(
        &run(env!("CARGO"), &["generate-lockfile", "--manifest-path", user.to_str().expect("a UTF-8 path")]),
        "cargo generate-lockfile",
    );
    let o = deny(&user, &root().join("deny.toml"), true, &["sources"]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("error[source-not-allowed]")
            && stdout(&o).contains("sources FAILED"),
        "{}",
        stderr(&o)
    );
}
