//! Where the computation keeps its files.

use std::path::{Path, PathBuf};

/// Where the computation keeps its files.
#[derive(Clone, Debug)]
pub struct WorkDirs {
    /// Incoming partial uploads (root only).
    pub incoming: PathBuf,
    /// The algorithm file.
    pub algorithm: PathBuf,
    /// The datasets, read-only for the algorithm.
    pub datasets: PathBuf,
    /// Links to the sealed artifacts in memory (`/proc/self/fd/N`).
    pub artifacts: PathBuf,
    /// Where the run's results and /tmp tmpfs is mounted.
    pub scratch: PathBuf,
    /// Where the sandbox's root is mounted (in the sandbox's namespace only).
    pub sandbox_root: PathBuf,
    /// The packaged results.
    pub results_tar: PathBuf,
}

impl WorkDirs {
    /// Lays out and creates the directories under `root` (mode 0700 where root-only).
    ///
    /// `root` must be absent or empty: files left by an earlier computation
    /// would otherwise be taken for this one's inputs or results.
    pub fn create(root: &Path) -> std::io::Result<WorkDirs> {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(mut entries) = std::fs::read_dir(root) {
            if entries.next().is_some() {
                return Err(std::io::Error::other(format!(
                    "{} is not empty: the work directory must start empty (a fresh tmpfs in the VM)",
                    root.display()
                )));
            }
        }
        let d = WorkDirs {
            incoming: root.join("incoming"),
            algorithm: root.join("algorithm").join("algorithm"),
            datasets: root.join("datasets"),
            artifacts: root.join("artifacts"),
            scratch: root.join("scratch"),
            sandbox_root: root.join("sandbox-root"),
            results_tar: root.join("results.tar"),
        };
        for dir in [
            root,
            &d.incoming,
            d.algorithm.parent().unwrap_or(root),
            &d.datasets,
            &d.artifacts,
            &d.scratch,
            &d.sandbox_root,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
        for private in [&d.incoming, &d.scratch, &d.sandbox_root] {
            std::fs::set_permissions(private, std::fs::Permissions::from_mode(0o700))?;
        }
        if let Some(p) = d.algorithm.parent() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(d)
    }
}
