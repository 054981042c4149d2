//! `{"source": "spiffe", "audience"?, "socket"?, "spiffe_id"?}`: a JWT-SVID from
//! the SPIFFE Workload API (SPIRE agent and friends), or
//! `{"source": "spiffe", "path": …}`: a JWT-SVID file written by spiffe-helper.
//!
//! Workload API: gRPC `SpiffeWorkloadAPI/FetchJWTSVID` over HTTP/2 on the unix
//! socket named by `socket` or `SPIFFE_ENDPOINT_SOCKET` (`unix:///path` or
//! `unix:/path`), with the metadata `workload.spiffe.io: true`. The two tiny
//! protobuf messages are encoded by hand:
//! - `JWTSVIDRequest { repeated string audience = 1; string spiffe_id = 2; }`
//! - `JWTSVIDResponse { repeated JWTSVID svids = 1; }`,
//!   `JWTSVID { string spiffe_id = 1; string svid = 2; string hint = 3; }`
//!
//! Not supported: `tcp://` Workload API addresses. The Workload API mode needs
//! the cargo feature `spiffe-workload-api` (default; it brings in hyper's
//! HTTP/2 client); without it only spiffe-helper files work.

// Without the Workload API client (the feature is off, or no Unix sockets: Windows), its helpers and
// fakes are unused.
#![cfg_attr(not(all(unix, feature = "spiffe-workload-api")), allow(unused_imports, dead_code))]

use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "spiffe-workload-api")]
use bytes::Bytes;
#[cfg(feature = "spiffe-workload-api")]
use http_body_util::{BodyExt, Full, Limited};
#[cfg(feature = "spiffe-workload-api")]
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{file, finish, presets};
use crate::env::Env;
use crate::error::{scrub, Error, Result};
use crate::secret::Secret;

pub(crate) const SOCKET_VAR: &str = "SPIFFE_ENDPOINT_SOCKET";
const PATH: &str = "/SpiffeWorkloadAPI/FetchJWTSVID";
const TIMEOUT: Duration = crate::runtime::HTTP_TIMEOUT;
const MAX_RESPONSE: usize = 1024 * 1024;

const API_FIX: &str = "run the SPIRE agent (or another Workload API server) on this host and register this workload \
(spire-server entry create -parentID … -spiffeID … -selector …); the federation rule's issuer is the SPIRE server's \
OIDC discovery provider";

const HELPER_FIX: &str =
    "configure spiffe-helper to write the JWT-SVID there: jwt_svids = [{jwt_audience = \"https://api.anthropic.com\", \
jwt_svid_file_name = \"<this path>\"}], and run it alongside the workload";

/// What the spec asks for.
pub(crate) struct Params<'a> {
    pub audience: Option<&'a str>,
    pub socket: Option<&'a str>,
    pub spiffe_id: Option<&'a str>,
    pub path: Option<&'a Path>,
}

pub(crate) async fn fetch(p: Params<'_>, env: &Env, source: &str) -> Result<Secret> {
    if let Some(path) = p.path {
        if p.socket.is_some() || p.spiffe_id.is_some() {
            return Err(Error::config(format!(
                "{source}: give either path (a spiffe-helper file) or socket/spiffe_id (the Workload API), not both"
            )));
        }
        return file::read_with_fix(path, source, HELPER_FIX).await;
    }
    let aud = presets::audience(p.audience, source)?;
    if p.spiffe_id.is_some_and(|s| !s.starts_with("spiffe://")) {
        return Err(Error::config(format!(
            "{source}: spiffe_id must be a SPIFFE ID (spiffe://trust-domain/path), or left out for the workload's default identity"
        )));
    }
    let (addr, origin) = match p.socket {
        Some(s) => (s.to_string(), "the identity source's socket".to_string()),
        None => match env.get(SOCKET_VAR) {
            Some(s) => (s, SOCKET_VAR.to_string()),
            None => {
                return Err(Error::identity(format!(
                "{source}: {SOCKET_VAR} is not set and no socket is configured, so the Workload API cannot be found; \
                     set {SOCKET_VAR}=unix:///run/spire/sockets/agent.sock (the agent's socket path), or use \
                     {{\"source\": \"spiffe\", \"path\": …}} with spiffe-helper; {API_FIX}"
            )))
            }
        },
    };
    let path = socket_path(addr.trim(), &origin, source)?;
    match tokio::time::timeout(TIMEOUT, call(&path, aud, p.spiffe_id, source)).await {
        Ok(r) => r,
        Err(_) => Err(Error::identity(format!(
            "{source}: the Workload API at {} did not answer within {}s; {API_FIX}",
            path.display(),
            TIMEOUT.as_secs()
        ))),
    }
}

/// `unix:///path` or `unix:/path` → the path.
pub(crate) fn socket_path(addr: &str, origin: &str, source: &str) -> Result<PathBuf> {
    let path = addr.strip_prefix("unix://").or_else(|| addr.strip_prefix("unix:"));
    match path {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ if addr.starts_with("tcp:") => Err(Error::config(format!(
            "{source}: {origin} is a tcp:// address; only unix domain sockets are supported (unix:///path/to/agent.sock)"
        ))),
        _ => Err(Error::config(format!(
            "{source}: {origin} must be a unix socket address with an absolute path, like unix:///run/spire/sockets/agent.sock"
        ))),
    }
}

#[cfg(not(all(unix, feature = "spiffe-workload-api")))]
async fn call(_path: &Path, _aud: &str, _spiffe_id: Option<&str>, source: &str) -> Result<Secret> {
    let why = if cfg!(unix) {
        "this build of anthropic-wif has no SPIFFE Workload API client (cargo feature spiffe-workload-api)"
    } else {
        "the SPIFFE Workload API client talks over a Unix domain socket, which this platform's build does not support"
    };
    Err(Error::config(format!(
        "{source}: {why}; run spiffe-helper and use {{\"source\": \"spiffe\", \"path\": …}} instead"
    )))
}

#[cfg(all(unix, feature = "spiffe-workload-api"))]
async fn call(path: &Path, aud: &str, spiffe_id: Option<&str>, source: &str) -> Result<Secret> {
    let at = format!("{source}: the Workload API at unix://{}", path.display());
    let fail = |what: String| Error::identity(format!("{at} {what}; {API_FIX}"));
    let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "does not exist (is the agent running, and the socket mounted into this container?)".to_string()
            }
            std::io::ErrorKind::PermissionDenied => "cannot be opened (permission denied)".to_string(),
            std::io::ErrorKind::ConnectionRefused => "refuses connections (is the agent running?)".to_string(),
            _ => format!("cannot be reached ({e})"),
        };
        fail(why)
    })?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| fail(format!("failed the HTTP/2 handshake ({e}); is it a gRPC server?")))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });

    let message = encode_request(aud, spiffe_id);
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0); // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{PATH}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("workload.spiffe.io", "true")
        .header("user-agent", format!("anthropic-wif/{}", crate::version::VERSION))
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| Error::internal(format!("{at}: cannot build the request ({e})")))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| fail(format!("failed the call ({e})")))?;
        let (parts, body) = resp.into_parts();
        if parts.status != hyper::StatusCode::OK {
            return Err(fail(format!("answered HTTP {}", parts.status.as_u16())));
        }
        // A trailers-only answer carries grpc-status in the headers.
        if let Some(e) = grpc_error(&parts.headers) {
            return Err(fail(e));
        }
        let collected = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| fail(format!("answer could not be read ({e})")))?;
        if let Some(e) = collected.trailers().and_then(grpc_error) {
            return Err(fail(e));
        }
        let data = collected.to_bytes();
        let msg = grpc_message(&data).map_err(fail)?;
        let svids = decode_response(msg).map_err(|e| fail(format!("answered a malformed JWTSVIDResponse ({e})")))?;
        let chosen = match spiffe_id {
            Some(id) => svids.into_iter().find(|s| s.spiffe_id == id),
            None => svids.into_iter().next(),
        };
        match chosen {
            Some(s) => finish(s.svid.expose().to_string(), source),
            None => Err(fail(match spiffe_id {
                Some(id) => format!("has no JWT-SVID for {id} for this workload"),
                None => "returned no JWT-SVID for this workload".to_string(),
            })),
        }
    }
    .await;
    driver.abort();
    result
}

/// `grpc-status` other than 0, described with `grpc-message` and a hint.
#[cfg(feature = "spiffe-workload-api")]
fn grpc_error(headers: &hyper::HeaderMap) -> Option<String> {
    let status = headers.get("grpc-status")?.to_str().ok()?.trim().parse::<u32>().ok()?;
    if status == 0 {
        return None;
    }
    let msg = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| scrub(&percent_decode(m), &[], 200))
        .unwrap_or_default();
    let hint = match status {
        7 => " (PermissionDenied: no registration entry matches this workload, or it has no SPIFFE ID yet)",
        3 => " (InvalidArgument: the request was refused; check audience and spiffe_id)",
        14 => " (Unavailable: the agent is not ready)",
        _ => "",
    };
    Some(format!("answered gRPC status {status}: {msg}{hint}"))
}

#[cfg_attr(not(feature = "spiffe-workload-api"), allow(dead_code))]
fn percent_decode(s: &str) -> String {
    let hexval = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one length-prefixed message of a unary gRPC answer.
#[cfg_attr(not(feature = "spiffe-workload-api"), allow(dead_code))]
fn grpc_message(data: &[u8]) -> std::result::Result<&[u8], String> {
    if data.len() < 5 {
        return Err("answered without a gRPC message (and without an error status)".into());
    }
    if data[0] != 0 {
        return Err("answered a compressed gRPC message, which was not asked for".into());
    }
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() - 5 < len {
        return Err("answered a truncated gRPC message".into());
    }
    Ok(&data[5..5 + len])
}

// ------------------------------------------------------------ protobuf

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// `JWTSVIDRequest { audience: [aud], spiffe_id }`.
#[cfg_attr(not(feature = "spiffe-workload-api"), allow(dead_code))]
pub(crate) fn encode_request(aud: &str, spiffe_id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    put_string(&mut out, 1, aud);
    if let Some(id) = spiffe_id {
        put_string(&mut out, 2, id);
    }
    out
}

fn get_varint(buf: &[u8], pos: &mut usize) -> std::result::Result<u64, String> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// Iterate `(field, wire_type, bytes-for-length-delimited)`, skipping others.
fn fields(buf: &[u8]) -> std::result::Result<Vec<(u32, &[u8])>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = get_varint(buf, &mut pos)?;
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => {
                get_varint(buf, &mut pos)?;
            }
            1 => pos = pos.checked_add(8).filter(|&p| p <= buf.len()).ok_or("truncated fixed64")?,
            5 => pos = pos.checked_add(4).filter(|&p| p <= buf.len()).ok_or("truncated fixed32")?,
            2 => {
                let len = usize::try_from(get_varint(buf, &mut pos)?).map_err(|_| "length too large")?;
                let end = pos.checked_add(len).filter(|&e| e <= buf.len()).ok_or("truncated field")?;
                out.push((field, &buf[pos..end]));
                pos = end;
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

pub(crate) struct JwtSvid {
    pub spiffe_id: String,
    pub svid: Secret,
}

/// `JWTSVIDResponse` → its SVIDs.
#[cfg_attr(not(feature = "spiffe-workload-api"), allow(dead_code))]
pub(crate) fn decode_response(buf: &[u8]) -> std::result::Result<Vec<JwtSvid>, String> {
    let mut svids = Vec::new();
    for (field, bytes) in fields(buf)? {
        if field != 1 {
            continue;
        }
        let mut spiffe_id = String::new();
        let mut svid = Secret::new(String::new());
        for (f, b) in fields(bytes)? {
            match f {
                1 => spiffe_id = String::from_utf8(b.to_vec()).map_err(|_| "spiffe_id is not UTF-8")?,
                2 => svid = Secret::new(String::from_utf8(b.to_vec()).map_err(|_| "svid is not UTF-8")?),
                _ => {}
            }
        }
        svids.push(JwtSvid { spiffe_id, svid });
    }
    Ok(svids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        // field 1 (audience), len 3, "aud"; field 2 (spiffe_id), len 13.
        assert_eq!(encode_request("aud", None), b"\x0a\x03aud");
        assert_eq!(encode_request("a", Some("spiffe://td/x")), b"\x0a\x01a\x12\x0dspiffe://td/x");
        let long = "x".repeat(200);
        let enc = encode_request(&long, None);
        assert_eq!(&enc[..3], &[0x0a, 0xc8, 0x01]); // 200 as a varint
    }

    #[test]
    fn response_decoding_skips_unknown_fields_and_refuses_truncation() {
        let mut svid = Vec::new();
        put_string(&mut svid, 1, "spiffe://td/w");
        put_string(&mut svid, 2, "eyJ.a.b");
        put_string(&mut svid, 3, "hint");
        svid.extend_from_slice(&[0x20, 0x05]); // field 4, varint 5 (unknown)
        let mut resp = Vec::new();
        put_varint(&mut resp, 1 << 3 | 2);
        put_varint(&mut resp, svid.len() as u64);
        resp.extend_from_slice(&svid);
        let out = decode_response(&resp).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].spiffe_id, "spiffe://td/w");
        assert_eq!(out[0].svid.expose(), "eyJ.a.b");
        assert!(decode_response(&resp[..resp.len() - 2]).is_err());
        assert!(decode_response(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert!(decode_response(&[]).unwrap().is_empty());
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(socket_path("unix:///run/a.sock", "o", "s").unwrap(), PathBuf::from("/run/a.sock"));
        assert_eq!(socket_path("unix:/run/a.sock", "o", "s").unwrap(), PathBuf::from("/run/a.sock"));
        assert!(socket_path("tcp://127.0.0.1:1", "o", "s").unwrap_err().message().contains("tcp"));
        assert!(socket_path("/run/a.sock", "o", "s").is_err());
        assert!(socket_path("unix://relative", "o", "s").is_err());
    }

    #[test]
    fn grpc_framing_and_messages() {
        assert!(grpc_message(&[0, 0, 0]).is_err());
        assert!(grpc_message(&[1, 0, 0, 0, 0]).is_err());
        assert!(grpc_message(&[0, 0, 0, 0, 5, 1]).is_err());
        assert_eq!(grpc_message(&[0, 0, 0, 0, 1, 9]).unwrap(), &[9]);
        assert_eq!(percent_decode("no%20entry%zz%"), "no entry%zz%");
    }
}
