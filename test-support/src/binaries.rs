//! The workspace's binaries (the agent with the simulated TEE, cvmctl),
//! built once per test process by a nested `cargo build`.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::output::run;

/// The target directory of this build's profile (`target/debug`, ...).
pub fn bin_dir() -> PathBuf {
    // Test binaries live in target/<profile>/deps, other binaries in target/<profile>.
    let exe = std::env::current_exe().expect("the test binary's own path");
    let dir = exe.parent().expect("the test binary's directory");
    if dir.ends_with("deps") {
        dir.parent().expect("the target directory").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Path of a workspace binary (`cvm-agent` or `cvmctl`); the first call in
/// a process builds both.
///
/// The agent is built with the simulated TEE (`cvm-agent/simulated-tee`):
/// the tests' platform is simulated. A crate's own binary is at hand in its
/// integration tests as `env!("CARGO_BIN_EXE_<name>")`, without a build:
/// cvmctl's and the agent's own tests use that.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut args = vec![
            "build",
            "--quiet",
            "-p",
            "cvm-agent",
            "-p",
            "cvmctl",
            "--bins",
            "--features",
            "cvm-agent/simulated-tee",
        ];
        if bin_dir().ends_with("release") {
            args.push("--release");
        }
        // Without the variables `cargo test` gives this process: build
        // scripts that track them (ring's) would otherwise rebuild half the
        // tree here, and again in the next plain `cargo build`.
        let mut cargo = Command::new(env!("CARGO"));
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_", "CARGO_TARGET_TMPDIR", "LD_LIBRARY_PATH"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                cargo.env_remove(k.as_ref());
            }
        }
        let status = cargo.args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    bin_dir().join(name)
}

/// Runs the workspace's cvmctl ([`bin`]) with `args`, stdin closed.
pub fn cvmctl(args: &[&str]) -> Output {
    run(bin("cvmctl"), args)
}
