//! Where the log link connects: vsock in the VM, TCP or a Unix socket elsewhere.
//!
//! The agent always connects out, to the host. vsock is opened only when the
//! configuration names it; nothing else in the agent touches AF_VSOCK.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};

/// The host's CID on vsock.
pub const HOST_CID: u32 = 2;

/// The log link's destination (`log_target`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// No link: stderr only.
    None,
    /// `tcp:ADDR:PORT` (numeric).
    Tcp(SocketAddr),
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `vsock:PORT` (to the host, CID 2) or `vsock:CID:PORT`.
    Vsock {
        /// The peer's context id.
        cid: u32,
        /// The port.
        port: u32,
    },
}

/// A connected link.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Target {
    /// Connects to the target.
    pub(crate) async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        match self {
            Target::None => Err(std::io::Error::other("no log target")),
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(addr).await?;
                // Records are small and the host's acks must not wait for
                // Nagle's algorithm.
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
            Target::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
            Target::Vsock { cid, port } => Ok(Box::new(
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?,
            )),
        }
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        let number = |what: &str, v: &str| -> Result<u32, String> {
            v.parse::<u32>().map_err(|e| format!("{s:?}: the {what} {v:?} is not a number: {e}"))
        };
        match s.split_once(':') {
            None if s == "none" => Ok(Target::None),
            Some(("tcp", addr)) => addr
                .parse()
                .map(Target::Tcp)
                .map_err(|e| format!("{s:?}: {addr:?} is not a numeric address:port: {e}")),
            Some(("unix", path)) if !path.is_empty() => Ok(Target::Unix(PathBuf::from(path))),
            Some(("vsock", rest)) => match rest.split_once(':') {
                None => Ok(Target::Vsock { cid: HOST_CID, port: number("port", rest)? }),
                Some((cid, port)) => {
                    Ok(Target::Vsock { cid: number("CID", cid)?, port: number("port", port)? })
                }
            },
            _ => Err(format!("{s:?} is not vsock:PORT, vsock:CID:PORT, tcp:ADDR:PORT, unix:PATH or none")),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::None => f.write_str("none"),
            Target::Tcp(a) => write!(f, "tcp:{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
            Target::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        for (text, target, shown) in [
            ("none", Target::None, "none"),
            ("vsock:7100", Target::Vsock { cid: 2, port: 7100 }, "vsock:2:7100"),
            ("vsock:3:9", Target::Vsock { cid: 3, port: 9 }, "vsock:3:9"),
            ("tcp:127.0.0.1:7100", Target::Tcp(([127, 0, 0, 1], 7100).into()), "tcp:127.0.0.1:7100"),
            ("unix:/run/logs.sock", Target::Unix("/run/logs.sock".into()), "unix:/run/logs.sock"),
        ] {
            assert_eq!(text.parse::<Target>().unwrap(), target);
            assert_eq!(target.to_string(), shown);
        }
        for bad in ["", "vsock", "vsock:x", "vsock:2:", "tcp:localhost:1", "unix:", "udp:1.2.3.4:5"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }
}
