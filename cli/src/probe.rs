//! `anthropic-wif probe [URL]`: exit 0 when a local endpoint (by default the
//! proxy's `http://127.0.0.1:8787/healthz`) answers 200, else 1. For
//! Kubernetes exec probes and Docker HEALTHCHECK in the distroless image,
//! which has no curl: the kubelet's httpGet probes dial the pod IP, and the
//! proxy listens only on the pod's loopback. `--ready-file PATH` checks
//! `anthropic-wif daemon --ready-file PATH` instead: exit 0 while that file
//! exists and the token it reports has not expired.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The URL to GET: http:// on a loopback address (the proxy's /healthz, /readyz or /livez).
    #[arg(default_value = "http://127.0.0.1:8787/healthz")]
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    pub timeout: u64,
    /// Instead of a URL: the daemon's ready file (`daemon --ready-file`); 0 while it exists and its token has not
    /// expired.
    #[arg(long, value_name = "PATH", conflicts_with = "url")]
    pub ready_file: Option<std::path::PathBuf>,
}

/// Whether the daemon's ready file says a token is in place: it exists, is
/// JSON, and its `expires_at` is in the future (a daemon that died leaves a
/// file whose token runs out).
fn ready_file(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| format!("{} is not a ready file", path.display()))?;
    let exp = v["expires_at"].as_i64().ok_or_else(|| format!("{} names no expiry", path.display()))?;
    let left = exp - anthropic_wif_core::now_unix();
    if left <= 0 {
        return Err(format!("the token {} reports expired {} s ago", path.display(), -left));
    }
    Ok(())
}

/// `http://127.0.0.1:8787/healthz` → (address, path). Only loopback: a probe, not a web client.
fn parse(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|_| format!("{url:?}: give a loopback IP and port, like http://127.0.0.1:8787/healthz"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{url:?} is not on a loopback address; probe checks only local endpoints"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("{url:?}: the path has spaces or control characters"));
    }
    Ok((addr, path.to_owned()))
}

fn status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: anthropic-wif-probe\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    // "HTTP/1.1 200 OK"
    std::str::from_utf8(&head[..n])
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1."))
        .and_then(|t| t.get(2..5))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))
}

pub fn run(a: ProbeArgs) -> ExitCode {
    if let Some(f) = &a.ready_file {
        return match ready_file(f) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("anthropic-wif probe: {e}");
                ExitCode::from(1)
            }
        };
    }
    let (addr, path) = match parse(&a.url) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("anthropic-wif: error [config]: probe: {e}");
            return ExitCode::from(2);
        }
    };
    match status(addr, &path, Duration::from_secs(a.timeout.max(1))) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("anthropic-wif probe: {} answered HTTP {code}", a.url);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("anthropic-wif probe: {}: {e}", a.url);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls() {
        assert_eq!(parse("http://127.0.0.1:8787/healthz").unwrap().1, "/healthz");
        assert_eq!(parse("http://[::1]:9/").unwrap().0.port(), 9);
        assert_eq!(parse("http://127.0.0.1:1").unwrap().1, "/");
        for bad in ["https://127.0.0.1:1/", "http://10.0.0.1:80/", "http://localhost:80/", "http://127.0.0.1:1/a b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
