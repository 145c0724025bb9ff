//! The VCEK and its chain from Azure's instance metadata service (THIM).
//!
//! `GET http://169.254.169.254/metadata/THIM/amd/certification` with the
//! header `Metadata: true` answers JSON with `vcekCert` and
//! `certificateChain` (PEM: the ASK, then the ARK). The service is reachable
//! only from inside an Azure VM, over plain HTTP on a link-local address:
//! what it returns is not trusted, only used; the verifier checks the chain
//! up to AMD's pinned root. A minimal HTTP/1.1 client over a numeric address
//! is enough (the static agent resolves no host names).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cvm_evidence::certs::parse_certificate;
use cvm_evidence::der::Encode as _;
use serde::Deserialize;

/// The service's address on every Azure VM.
pub const DEFAULT_URL: &str = "http://169.254.169.254/metadata/THIM/amd/certification";
/// The most bytes of a response the agent reads (certificates are a few KiB).
pub const MAX_RESPONSE: u64 = 256 * 1024;

/// A THIM URL: `http://` a numeric address, an optional port, a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThimUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
}

impl std::str::FromStr for ThimUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<ThimUrl, String> {
        let rest = s.strip_prefix("http://").ok_or("expected http://ADDRESS[:PORT]/PATH")?;
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr = host
            .parse::<SocketAddr>()
            .or_else(|_| host.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 80)))
            .map_err(|_| format!("{host:?} is not a numeric address[:port] (host names are not resolved)"))?;
        let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
        Ok(ThimUrl { addr, path })
    }
}

impl std::fmt::Display for ThimUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
}

/// The certificates, DER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThimCerts {
    /// The VCEK.
    pub vcek: Vec<u8>,
    /// The ASK, if the chain holds it.
    pub ask: Option<Vec<u8>>,
    /// The ARK, if the chain holds it.
    pub ark: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "vcekCert")]
    vcek_cert: String,
    #[serde(rename = "certificateChain", default)]
    certificate_chain: String,
}

/// Fetches the certificates, giving up after `timeout` per step.
pub fn fetch(url: &ThimUrl, timeout: Duration) -> Result<ThimCerts, String> {
    let mut stream = TcpStream::connect_timeout(&url.addr, timeout)
        .map_err(|e| format!("cannot reach Azure's THIM at {url}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nMetadata: true\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        url.path,
        url.addr.ip()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("THIM at {url}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut response)
        .map_err(|e| format!("THIM at {url}: reading the answer: {e}"))?;
    if response.len() as u64 > MAX_RESPONSE {
        return Err(format!("THIM at {url}: the answer is larger than {MAX_RESPONSE} bytes"));
    }
    let body = http_body(&response).map_err(|e| format!("THIM at {url}: {e}"))?;
    parse_answer(&body).map_err(|e| format!("THIM at {url}: {e}"))
}

/// The body of an HTTP/1.1 response with status 200 (plain or chunked).
fn http_body(response: &[u8]) -> Result<Vec<u8>, String> {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the answer has no end of headers")?;
    let head = std::str::from_utf8(&response[..end]).map_err(|_| "the headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("answered {status:?}"));
    }
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &response[end + 4..];
    if !chunked {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or("a chunk size line does not end")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a chunk size is not text")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("a chunk runs past the answer")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("a chunk runs past the answer")?;
    }
}

fn parse_answer(body: &[u8]) -> Result<ThimCerts, String> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("not JSON with vcekCert and certificateChain: {e}"))?;
    let der = |pem: &str, what: &str| {
        parse_certificate(pem.as_bytes(), what)
            .map_err(|e| e.to_string())
            .and_then(|c| c.to_der().map_err(|e| e.to_string()))
    };
    let vcek = der(answer.vcek_cert.trim(), "vcekCert")?;
    let mut chain = Vec::new();
    for block in answer.certificate_chain.split_inclusive("-----END CERTIFICATE-----") {
        if block.contains("-----BEGIN CERTIFICATE-----") {
            chain.push(der(block.trim(), "certificateChain")?);
        }
    }
    let mut chain = chain.into_iter();
    Ok(ThimCerts { vcek, ask: chain.next(), ark: chain.next() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const CHAIN: &str = include_str!("../../../evidence/testdata/azure/vcek-2.pem");

    fn pems() -> Vec<String> {
        CHAIN
            .split_inclusive("-----END CERTIFICATE-----\n")
            .filter(|b| b.contains("BEGIN"))
            .map(|b| b.trim_start().to_owned())
            .collect()
    }

    /// Serves one connection with `answer`, returns the URL and the request seen.
    fn serve(answer: Vec<u8>) -> (ThimUrl, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(&answer).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (format!("http://{addr}/metadata/THIM/amd/certification").parse().unwrap(), handle)
    }

    #[test]
    fn the_certificates_come_from_the_service() {
        let p = pems();
        let body = serde_json::json!({"vcekCert": p[0], "certificateChain": format!("{}{}", p[1], p[2]), "tcbm": "x"})
            .to_string();
        for chunked in [false, true] {
            let answer = if chunked {
                let (a, b) = body.split_at(100);
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                    a.len(),
                    b.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            };
            let (url, server) = serve(answer.into_bytes());
            let certs = fetch(&url, Duration::from_secs(5)).unwrap();
            let request = server.join().unwrap();
            assert!(request.starts_with("GET /metadata/THIM/amd/certification HTTP/1.1\r\n"), "{request}");
            assert!(request.contains("\r\nMetadata: true\r\n"), "{request}");
            let der = |pem: &str| parse_certificate(pem.as_bytes(), "t").unwrap().to_der().unwrap();
            assert_eq!(certs.vcek, der(&p[0]));
            assert_eq!(certs.ask, Some(der(&p[1])));
            assert_eq!(certs.ark, Some(der(&p[2])));
        }
    }

    #[test]
    fn an_unreachable_or_failing_service_is_a_clear_error() {
        // A port nothing listens on.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url: ThimUrl =
            format!("http://{}/metadata/THIM/amd/certification", listener.local_addr().unwrap())
                .parse()
                .unwrap();
        drop(listener);
        let err = fetch(&url, Duration::from_secs(2)).unwrap_err();
        assert!(err.contains("cannot reach Azure's THIM") && err.contains("127.0.0.1"), "{err}");

        let (url, _server) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec());
        let err = fetch(&url, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("404"), "{err}");

        let (url, _server) = serve(b"HTTP/1.1 200 OK\r\n\r\n{\"vcekCert\": \"junk\"}".to_vec());
        let err = fetch(&url, Duration::from_secs(5)).unwrap_err();
        assert!(err.contains("vcekCert"), "{err}");
    }

    #[test]
    fn urls_are_numeric() {
        let url: ThimUrl = DEFAULT_URL.parse().unwrap();
        assert_eq!(url.addr, "169.254.169.254:80".parse().unwrap());
        assert_eq!(url.to_string(), "http://169.254.169.254:80/metadata/THIM/amd/certification");
        assert!("http://metadata.azure/x".parse::<ThimUrl>().unwrap_err().contains("numeric"));
        assert!("https://1.2.3.4/x".parse::<ThimUrl>().is_err());
    }
}
