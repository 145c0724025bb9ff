//! The fuzz targets' replay on stable Rust (`tests/fuzz_replay.rs` of
//! cvm-evidence and cvm-protocol): the committed corpus and past findings of
//! a target, and a property call under an allocation bound. See
//! `docs/fuzzing.md`.

use std::alloc::System;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

use cap::Cap;

/// A fuzz target's property: panics when the input breaks it.
pub type Property = fn(&[u8]);

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed corpus (`fuzz/corpus-replay/<target>/`) and the findings
/// (`fuzz/findings/<target>/`) of `target`, sorted.
pub fn inputs(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["fuzz/corpus-replay", "fuzz/findings"] {
        let dir = repo().join(dir).join(target);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            out.extend(
                entries
                    .map(|e| e.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path())
                    .filter(|p| p.is_file()),
            );
        }
    }
    out.sort();
    out
}

/// Runs `f` on `input` with at most `bound` more bytes allocated at once,
/// as `allocator` (the test binary's global allocator) counts them; past
/// the bound an allocation fails and the process aborts, naming its size.
/// `warm_up` runs first, outside the bound (what the property compares
/// with, built once). One call at a time in the process: the limit is
/// process-wide.
pub fn bounded(allocator: &'static Cap<System>, bound: usize, warm_up: fn(), f: Property, input: &[u8]) {
    /// Lifts the limit when the call ends, however it ends.
    struct Unlimit(&'static Cap<System>);
    impl Drop for Unlimit {
        fn drop(&mut self) {
            let _ = self.0.set_limit(usize::MAX);
        }
    }
    static SERIAL: Mutex<()> = Mutex::new(());
    // A failed property panics; reporting it (message, backtrace) is not
    // the parser's allocation, so the hook lifts the limit first.
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = allocator.set_limit(usize::MAX);
            report(info);
        }));
    });
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warm_up();
    let _unlimit = Unlimit(allocator);
    if let Err(e) = allocator.set_limit(allocator.allocated() + bound) {
        panic!("cannot set the allocation limit: {e:?}");
    }
    f(input);
}

/// Holds every other test of the binary off while it is held.
///
/// The allocation limit of [`bounded`] is process-wide, and libtest runs
/// tests on several threads: a test allocating beside a bounded call (a
/// 16 MiB seed being sealed, say) would hit the other call's limit and abort
/// the binary. Every test of a binary that calls [`bounded`] takes this
/// first ([`replay`] does).
pub fn exclusive() -> MutexGuard<'static, ()> {
    static EXCLUSIVE: Mutex<()> = Mutex::new(());
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Replays every input of `target` (one of `targets`) through `bounded`;
/// fails when the target has no committed input.
pub fn replay(target: &str, targets: &[(&str, Property)], bounded: fn(Property, &[u8])) {
    let _exclusive = exclusive();
    let Some((_, f)) = targets.iter().find(|(name, _)| *name == target) else {
        panic!("{target} is not a fuzz target of this crate")
    };
    let files = inputs(target);
    assert!(!files.is_empty(), "no committed inputs for {target} under fuzz/corpus-replay or fuzz/findings");
    // Straight to stderr (not captured): if an input allocates past the
    // bound the process aborts, and this line says where it was.
    let _ = writeln!(std::io::stderr(), "fuzz replay: {target}: {} inputs", files.len());
    for path in files {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        bounded(*f, &data);
    }
}
