//! A software TPM (swtpm) of a test's own.

use std::process::{Command, Stdio};

/// A fresh software TPM (swtpm) of its own on two free loopback ports, with
/// all PCR banks at zero; stopped when dropped.
pub struct Swtpm {
    pid: u32,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Swtpm {
    /// Starts one; panics (failing the test loudly) when swtpm is missing or will not start.
    pub fn start() -> Swtpm {
        let dir = tempfile::tempdir().expect("a temporary directory for the swtpm's state");
        let pid_file = dir.path().join("swtpm.pid");
        let mut last = String::new();
        for _ in 0..20 {
            // Two consecutive free ports: the swtpm TCTI talks to PORT and its control channel to PORT + 1.
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
                l.local_addr().expect("the free port's address").port()
            };
            if port == u16::MAX || std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_err() {
                continue;
            }
            // --daemon returns once both sockets are bound, so the TPM is ready when it exits 0.
            let out = Command::new("swtpm")
                .args(["socket", "--tpm2", "--daemon", "--flags", "not-need-init,startup-clear"])
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.path().display()))
                .arg("--pid")
                .arg(format!("file={}", pid_file.display()))
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run swtpm ({e}): run scripts/setup to install it"));
            if out.status.success() {
                let text = std::fs::read_to_string(&pid_file)
                    .unwrap_or_else(|e| panic!("swtpm wrote no pid file {}: {e}", pid_file.display()));
                let pid = text
                    .trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("swtpm's pid file holds no pid ({e}): {text:?}"));
                return Swtpm { pid, port, _dir: dir };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("swtpm did not start: {last}");
    }

    /// The TCTI that reaches it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
    }
}
