//! What every fuzz target shares: the call into a crate's property function
//! (`cvm_evidence::fuzzing`, `cvm_protocol::fuzzing`) under that crate's
//! allocation bound.
//!
//! The bound is enforced by this crate's global allocator: it counts the
//! bytes live, and while an input runs, refuses any allocation that would
//! take them more than `allocation_bound(input length)` above where they
//! were when the input started. A refused allocation aborts the process with
//! `memory allocation of N bytes failed`, which libFuzzer reports as a crash
//! and saves as an artifact: a parser that allocates what its input claims
//! rather than what it holds is a finding like any panic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` may reach: `usize::MAX` outside an input.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The system allocator, counted and bounded.
pub struct Bounded;

fn reserve(n: usize) -> bool {
    let before = LIVE.fetch_add(n, Ordering::Relaxed);
    if before.saturating_add(n) > LIMIT.load(Ordering::Relaxed) {
        LIVE.fetch_sub(n, Ordering::Relaxed);
        return false;
    }
    true
}

fn release(n: usize) {
    LIVE.fetch_sub(n, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator with the layout
// it was given; the counting around it only decides whether to forward.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !reserve(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in alloc.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            release(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout (alloc above).
        unsafe { System.dealloc(ptr, layout) };
        release(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !reserve(new_size - old) {
            return std::ptr::null_mut();
        }
        // SAFETY: ptr and layout come from alloc above; new_size as the caller gave it.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > old {
                release(new_size - old);
            }
        } else if new_size < old {
            release(old - new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

fn bounded(property: fn(&[u8]), bound: fn(usize) -> usize, data: &[u8]) {
    LIMIT.store(LIVE.load(Ordering::Relaxed).saturating_add(bound(data.len())), Ordering::Relaxed);
    property(data);
    LIMIT.store(usize::MAX, Ordering::Relaxed);
}

/// Runs a `cvm_evidence::fuzzing` property on `data` under its allocation bound.
pub fn evidence(property: fn(&[u8]), data: &[u8]) {
    // Outside the bound: the genuine evidence the properties compare with.
    cvm_evidence::fuzzing::warm_up();
    bounded(property, cvm_evidence::fuzzing::allocation_bound, data);
}

/// Runs a `cvm_protocol::fuzzing` property on `data` under its allocation bound.
pub fn protocol(property: fn(&[u8]), data: &[u8]) {
    bounded(property, cvm_protocol::fuzzing::allocation_bound, data);
}
