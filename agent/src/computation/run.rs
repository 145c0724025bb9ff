//! The run: the algorithm in the sandbox, with its inputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cvm_protocol::api::State;
use cvm_protocol::manifest::AlgorithmKind;

use super::Computation;
use crate::sandbox::{Program, RunOutcome, RunSpec, Scratch};
use crate::sealed_inputs::InputRef;

impl Computation {
    pub(super) async fn run(self: Arc<Self>) {
        log::info!("all inputs received: running the algorithm");
        let limits = &self.manifest.limits;
        let next =
            match Scratch::mount(&self.dirs.scratch, limits.results_bytes(), self.runs.uid, self.runs.gid) {
                Ok(scratch) => {
                    let outcome = self.run_sandboxed(&scratch).await;
                    // The run is over, for better or worse: no plaintext of a sealed input outlives it.
                    self.sealed.wipe();
                    match outcome {
                        Ok(()) => self.package(scratch).await,
                        Err(reason) => State::Failed(reason),
                    }
                }
                Err(e) => {
                    self.sealed.wipe();
                    State::Failed(format!("the algorithm could not be started: {e}"))
                }
            };
        match &next {
            State::Failed(reason) => log::warn!("computation failed: {reason}"),
            _ => log::info!("results ready"),
        }
        self.lock().enter(next);
    }
    async fn run_sandboxed(&self, scratch: &Scratch) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let a = &self.manifest.algorithm;
        // Sealed inputs reach the sandbox as inherited read-only descriptors
        // of their memfds, named by links to /proc/self/fd/N (see docs/sealed-inputs.md).
        let (fds, sealed_algorithm) = self.link_sealed_inputs().map_err(|e| format!("sealed inputs: {e}"))?;
        let program = match sealed_algorithm {
            Some(fd) => Program::Fd(fd),
            None => {
                let path = self.dirs.algorithm.clone();
                let executable = a.kind == AlgorithmKind::Binary;
                let mode = if executable { 0o555 } else { 0o444 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| e.to_string())?;
                Program::File { path, executable }
            }
        };
        let interpreter = match a.kind {
            AlgorithmKind::Script => a.interpreter.as_ref().map(PathBuf::from),
            AlgorithmKind::Binary => None,
        };
        let limits = &self.manifest.limits;
        let spec = RunSpec {
            program,
            interpreter,
            args: a.args.clone(),
            runtime: a.runtime.iter().map(PathBuf::from).collect(),
            datasets: self.dirs.datasets.clone(),
            artifacts: self.dirs.artifacts.clone(),
            root: self.dirs.sandbox_root.clone(),
            hidden: vec![self.dirs.results_tar.parent().map(Path::to_path_buf).unwrap_or_default()],
            env: Vec::new(),
            uid: self.runs.uid,
            gid: self.runs.gid,
            memory_bytes: limits.memory_bytes,
            max_processes: limits.max_processes(),
            timeout: Duration::from_secs(limits.run_timeout_s),
            output_limit: 64 << 10,
            inherit_fds: fds,
        };
        let forward =
            self.manifest.logging.algorithm_output == cvm_protocol::manifest::AlgorithmOutput::Forward;
        match self.runs.sandbox.run(&spec, scratch).await {
            RunOutcome::Succeeded { stdout, stderr, elapsed } => {
                if forward {
                    forward_output(&stdout, &stderr);
                }
                log::info!("algorithm succeeded in {:.1}s", elapsed.as_secs_f64());
                Ok(())
            }
            RunOutcome::Failed { reason, stdout, stderr, .. } => {
                if forward {
                    forward_output(&stdout, &stderr);
                }
                Err(format!("the algorithm {reason}"))
            }
        }
    }

    /// Links each sealed dataset and artifact to `/proc/self/fd/N` in the
    /// datasets or artifacts directory; returns the descriptors the sandbox
    /// inherits and, for a sealed algorithm, its descriptor.
    fn link_sealed_inputs(&self) -> std::io::Result<(Vec<i32>, Option<i32>)> {
        self.sealed.with_plaintexts(|plaintexts| {
            let mut fds = Vec::new();
            let mut algorithm = None;
            for (input, plaintext) in plaintexts {
                let fd = plaintext.fd();
                let target = PathBuf::from(format!("/proc/self/fd/{fd}"));
                match input {
                    InputRef::Algorithm => algorithm = Some(fd),
                    InputRef::Dataset(n) => std::os::unix::fs::symlink(&target, self.dirs.datasets.join(n))?,
                    InputRef::Artifact(n) => {
                        std::os::unix::fs::symlink(&target, self.dirs.artifacts.join(n))?
                    }
                }
                fds.push(fd);
            }
            Ok((fds, algorithm))
        })
    }
}

fn forward_output(stdout: &[u8], stderr: &[u8]) {
    for line in String::from_utf8_lossy(stdout).lines() {
        log::info!(target: "algorithm", "stdout: {line}");
    }
    for line in String::from_utf8_lossy(stderr).lines() {
        log::info!(target: "algorithm", "stderr: {line}");
    }
}
