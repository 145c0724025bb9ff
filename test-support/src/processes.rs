//! What `/proc` says about this machine's processes.

/// Live (not zombie) processes of `uid` on this machine: killed orphans
/// stay zombies until their reaper collects them, and hold nothing.
pub fn processes_of(uid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string()))
                    && !s.lines().any(|l| l.starts_with("State:") && l.contains("Z (zombie)"))
            })
        })
        .count()
}

/// A process's peak resident set (VmHWM) in KiB; 0 once it is gone.
pub fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
