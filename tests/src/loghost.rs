//! Hosts for the agent's log link: the real `cvmctl logs listen` as a
//! process, and an in-process host built on the same bookkeeping
//! ([`cvmctl::logs::host::HostSession`]) that a test can make go away,
//! come back, or hold back its acknowledgements.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cvm_protocol::logstream::{AgentMessage, Deframer, HostHello, HostMessage, Record, VERSION};
use cvmctl::logs::host::{HostSession, Seen};

use crate::bin;

/// `cvmctl logs listen --tcp 127.0.0.1:0 --json ...` (or `--uds PATH`, or
/// without `--json`) in the background.
pub struct Listener {
    child: Child,
    /// The agent's `log_target` for this listener.
    target: String,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
}

impl Listener {
    /// Starts it on a free loopback port with `extra` arguments and waits until it listens.
    pub fn start(extra: &[&str]) -> Listener {
        Listener::spawn(&["--tcp", "127.0.0.1:0", "--json"], extra)
    }

    /// [`Listener::start`] without `--json`: lines for people, read with [`Listener::stdout`].
    pub fn start_human(extra: &[&str]) -> Listener {
        Listener::spawn(&["--tcp", "127.0.0.1:0"], extra)
    }

    /// Starts it on the Unix socket `path` (`--uds`), as for a userspace vsock backend.
    pub fn start_uds(path: &std::path::Path, extra: &[&str]) -> Listener {
        Listener::spawn(&["--uds", path.to_str().unwrap(), "--json"], extra)
    }

    fn spawn(transport: &[&str], extra: &[&str]) -> Listener {
        let json = transport.contains(&"--json");
        let mut child = Command::new(bin("cvmctl"))
            .args(["logs", "listen"])
            .args(transport)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cvmctl logs listen");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (sink, raw_sink) = (Arc::clone(&lines), Arc::clone(&raw));
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                raw_sink.lock().unwrap().extend_from_slice(&line);
                if json {
                    let v = serde_json::from_slice(&line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line)));
                    sink.lock().unwrap().push(v);
                }
                line.clear();
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let end = Instant::now() + Duration::from_secs(20);
        let at: String = loop {
            if let Some(a) = stderr.lock().unwrap().lines().find_map(|l| l.strip_prefix("listening on ")) {
                break a.trim().to_owned();
            }
            assert!(Instant::now() < end, "cvmctl logs listen did not start: {}", stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        };
        let target = match at.parse::<SocketAddr>() {
            Ok(addr) => format!("tcp:{addr}"),
            Err(_) => format!("unix:{at}"),
        };
        Listener { child, target, lines, stdout: raw, stderr }
    }

    /// The agent's `log_target` for this listener.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// Every JSON line so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    /// The `data` of every `record` line so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.lines().into_iter().filter(|l| l["type"] == "record").map(|l| l["data"].clone()).collect()
    }

    /// Every byte it printed on stdout so far, exactly.
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// What it printed on stderr.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the records, or panics after `within`.
    pub fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&[serde_json::Value]) -> bool) {
        let end = Instant::now() + within;
        while !pred(&self.records()) {
            assert!(
                Instant::now() < end,
                "{what}: not seen within {within:?}; records: {:#?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which acknowledgements a [`TestHost`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// None at all: the agent must send everything again later.
    None,
    /// Each record received, but not, after the hellos, what it already had
    /// (so the agent sends again what was not acknowledged before).
    Records,
    /// Both, as `cvmctl logs listen` does.
    All,
}

/// A host in the test's own process: it serves one connection at a time,
/// for as long as the test says, and keeps its bookkeeping across them.
#[derive(Default)]
pub struct TestHost {
    /// Duplicates, losses and gaps, as cvmctl counts them.
    pub session: HostSession,
    /// Every new record, in arrival order.
    pub delivered: Vec<Record>,
    /// Every record frame received, duplicates included.
    pub received: u64,
    /// Records the agent reported dropped that never arrived.
    pub lost: u64,
}

impl TestHost {
    /// Accepts one connection on `listener` and serves it until `done` holds
    /// (then closes it) or `within` passes (an error), acknowledging as `acks` says.
    pub fn serve(
        &mut self,
        listener: &TcpListener,
        acks: Acks,
        within: Duration,
        done: impl Fn(&TestHost) -> bool,
    ) -> Result<(), String> {
        let end = Instant::now() + within;
        listener.set_nonblocking(true).unwrap();
        let mut stream: TcpStream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("no connection from the agent: {e}")),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut out = Vec::new();
        HostMessage::Hello(HostHello { version: VERSION }).encode(&mut out).unwrap();
        stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut deframer = Deframer::new();
        let mut buf = vec![0u8; 64 << 10];
        let mut acked = 0;
        loop {
            if done(self) {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(format!(
                    "not done within {within:?}; {} records delivered",
                    self.delivered.len()
                ));
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => return Err("the agent closed the link".into()),
                Ok(n) => n,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => return Err(e.to_string()),
            };
            deframer.push(&buf[..n]);
            let mut to_ack = Vec::new();
            let mut fresh = false;
            while let Some(frame) = deframer.next_frame().map_err(|e| e.to_string())? {
                match AgentMessage::decode(frame).map_err(|e| e.to_string())? {
                    AgentMessage::Hello(h) => {
                        let g = self.session.hello(&h);
                        if let (Acks::All, Some(seq)) = (acks, g.ack) {
                            to_ack.push(seq);
                        }
                    }
                    AgentMessage::Record(r) => {
                        self.received += 1;
                        if let Seen::New { lost, .. } = self.session.record(&r) {
                            self.lost += lost.unwrap_or(0);
                            fresh = true;
                            self.delivered.push(r);
                        }
                    }
                    AgentMessage::Reply(_) => {}
                }
            }
            let last = self.session.last_seen();
            // With `Records`, duplicates alone are not acknowledged: the agent
            // keeps sending again until new records follow them.
            if last > acked && (acks == Acks::All || (acks == Acks::Records && fresh)) {
                to_ack.push(last);
                acked = last;
            }
            out.clear();
            for seq in to_ack {
                HostMessage::Ack { seq }.encode(&mut out).unwrap();
            }
            stream.write_all(&out).map_err(|e| e.to_string())?;
        }
    }

    /// Whether an event for `state` was delivered.
    pub fn has_event(&self, state: &str) -> bool {
        self.delivered
            .iter()
            .any(|r| matches!(&r.kind, cvm_protocol::logstream::RecordKind::Event { state: s } if s == state))
    }
}
