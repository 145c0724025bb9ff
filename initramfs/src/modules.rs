//! Kernel modules: which files a list of module names needs, in load order.
//!
//! Reads `modules.dep` (as written by depmod: `path: dependency paths`, the
//! dependencies listed so that loading them right to left works) from a
//! kernel's module directory. Module names match the file name without
//! `.ko[.xz|.zst|.gz]`, with `-` and `_` equivalent, as modprobe does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module problem, naming the module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// modules.dep cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of modules.dep is not `path: deps`.
    #[error("{path} line {line}: not `module: dependencies`")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line number.
        line: usize,
    },
    /// No module of that name.
    #[error("no kernel module named {0} in modules.dep (is it built in, or named differently?)")]
    Unknown(String),
    /// A dependency that modules.dep lists but whose file is missing.
    #[error("module file {0} is listed in modules.dep but missing")]
    Missing(PathBuf),
}

/// The module database of one kernel.
#[derive(Debug)]
pub struct ModuleDb {
    dir: PathBuf,
    /// Relative path → its dependencies (relative paths), as depmod lists them.
    deps: BTreeMap<String, Vec<String>>,
}

/// The canonical name of a module file: `kernel/net/foo-bar.ko.xz` → `foo_bar`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleDb {
    /// Reads `dir/modules.dep`.
    pub fn open(dir: &Path) -> Result<ModuleDb, ModuleError> {
        let path = dir.join("modules.dep");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ModuleError::Unreadable { path: path.clone(), source })?;
        let mut deps = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (module, rest) =
                line.split_once(':').ok_or(ModuleError::Malformed { path: path.clone(), line: n + 1 })?;
            deps.insert(module.trim().to_owned(), rest.split_whitespace().map(str::to_owned).collect());
        }
        Ok(ModuleDb { dir: dir.to_path_buf(), deps })
    }

    /// The module directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> Result<&str, ModuleError> {
        let wanted = name.replace('-', "_");
        self.deps
            .keys()
            .find(|p| module_name(p) == wanted)
            .map(String::as_str)
            .ok_or_else(|| ModuleError::Unknown(name.to_owned()))
    }

    /// The relative paths of the modules `path` (a relative path) needs,
    /// all of them, as depmod lists them.
    pub fn dependencies(&self, path: &str) -> &[String] {
        self.deps.get(path).map(Vec::as_slice).unwrap_or_default()
    }

    /// The relative paths of `names` and everything they need, dependencies
    /// first, each once; checks that every file exists.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<String>, ModuleError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let path = self.path_of(name)?;
            // depmod lists a module's dependencies so that the last one must
            // be loaded first; each of them has its own full list.
            let deps = self.deps.get(path).cloned().unwrap_or_default();
            for p in deps.iter().rev().chain(std::iter::once(&path.to_owned())) {
                if seen.insert(p.clone()) {
                    if !self.dir.join(p).is_file() {
                        return Err(ModuleError::Missing(self.dir.join(p)));
                    }
                    order.push(p.clone());
                }
            }
        }
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_come_first_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/a/vsock.ko.xz:\n\
             kernel/a/vmw_vsock_virtio_transport_common.ko.xz: kernel/a/vsock.ko.xz\n\
             kernel/a/vmw_vsock_virtio_transport.ko.xz: kernel/a/vmw_vsock_virtio_transport_common.ko.xz kernel/a/vsock.ko.xz\n\
             kernel/b/virtio-rng.ko.xz:\n",
        )
        .unwrap();
        for f in ["vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"] {
            std::fs::create_dir_all(dir.path().join("kernel/a")).unwrap();
            std::fs::write(dir.path().join(format!("kernel/a/{f}.ko.xz")), b"").unwrap();
        }
        let db = ModuleDb::open(dir.path()).unwrap();
        let order = db.resolve(&["vmw_vsock_virtio_transport".into(), "vsock".into()]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/a/vsock.ko.xz",
                "kernel/a/vmw_vsock_virtio_transport_common.ko.xz",
                "kernel/a/vmw_vsock_virtio_transport.ko.xz"
            ]
        );
        assert_eq!(
            db.dependencies("kernel/a/vmw_vsock_virtio_transport.ko.xz"),
            ["kernel/a/vmw_vsock_virtio_transport_common.ko.xz", "kernel/a/vsock.ko.xz"]
        );
        assert!(db.dependencies("kernel/a/vsock.ko.xz").is_empty());
        assert!(matches!(db.resolve(&["nope".into()]), Err(ModuleError::Unknown(n)) if n == "nope"));
        // Listed but its file is absent.
        assert!(matches!(db.resolve(&["virtio_rng".into()]), Err(ModuleError::Missing(_))));
    }
}
