//! The helpers against real processes: a program's exit code and output,
//! a swtpm that answers and is gone once dropped, and /proc's view.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use cvm_test_support::{assert_exit, ok, processes_of, run, stderr, stdout, vm_hwm, Swtpm};

#[test]
fn run_gives_the_exit_code_and_both_streams() {
    let o = run("sh", &["-c", "echo out; echo err >&2; exit 3"]);
    assert_exit(&o, 3);
    assert_eq!((stdout(&o), stderr(&o)), ("out\n".to_owned(), "err\n".to_owned()));
    // stdin is closed: a program that reads it sees its end at once.
    assert_eq!(ok(&run("sh", &["-c", "cat; echo done"]), "cat"), "done\n");
}

#[test]
fn a_wrong_exit_code_fails_showing_the_output() {
    let o = run("sh", &["-c", "echo the-output; echo the-error >&2; exit 1"]);
    let panic = std::panic::catch_unwind(|| assert_exit(&o, 0)).expect_err("exit 1 is not 0");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.contains("the-output") && message.contains("the-error"), "{message}");
    let panic = std::panic::catch_unwind(|| ok(&o, "the step")).expect_err("exit 1 is no success");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    assert!(message.starts_with("the step: exit Some(1)") && message.contains("the-error"), "{message}");
}

#[test]
fn a_swtpm_answers_on_its_port_and_is_gone_once_dropped() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let port: u16 = tcti.rsplit("port=").next().and_then(|p| p.parse().ok()).expect("a port in the TCTI");
    assert_eq!(tcti, format!("swtpm:host=127.0.0.1,port={port}"));
    TcpStream::connect(("127.0.0.1", port)).expect("the swtpm's TPM port");
    TcpStream::connect(("127.0.0.1", port + 1)).expect("the swtpm's control port");
    drop(tpm);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < end, "the swtpm on port {port} still answers after the drop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn proc_counts_live_processes_and_their_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:")?.split_whitespace().next()?.parse().ok())
        .expect("a Uid line");
    assert!(processes_of(uid) >= 1, "this test process is one of uid {uid}'s");
    assert_eq!(processes_of(3_999_999_999), 0, "a uid nobody has");
    assert!(vm_hwm(std::process::id()) > 0);
    let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
    let pid = child.id();
    child.kill().expect("kill sleep");
    child.wait().expect("reap sleep");
    assert_eq!(vm_hwm(pid), 0, "a reaped process has no memory");
}
