//! Bounds that keep the proxy serving while some clients hold connections
//! open: a cap on concurrent connections sized to the file descriptors the
//! process may open, the soft descriptor limit raised to the hard one at
//! start, and a short answer for connections over the cap.
//!
//! Each client connection can use two descriptors (itself and its upstream
//! connection), so the cap is at most `(soft limit - RESERVED_FDS) / 2`.
//! Time-outs for slow request headers and bodies are in `connection()` and
//! [`crate::body::ReqBody`].

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default `--client-timeout`, in seconds.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 30;
/// Default `--upstream-timeout`, in seconds: the official SDKs' default
/// request time-out (10 minutes), so the proxy never gives up before them.
pub const DEFAULT_UPSTREAM_TIMEOUT_SECS: u64 = 600;

/// Descriptors kept for everything else: listener, log, token exchanges,
/// identity sources, over-cap answers.
const RESERVED_FDS: u64 = 128;
/// Connections over the cap that are being answered at once; more are closed
/// without an answer.
pub(crate) const MAX_OVERLOAD_ANSWERS: usize = 64;

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; returns `(before, after)`.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u32 on some 32-bit targets
pub(crate) fn raise_fd_limit() -> Option<(u64, u64)> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return None;
    }
    let before = rl.rlim_cur as u64;
    if rl.rlim_cur < rl.rlim_max {
        let mut want = rl.rlim_max;
        // macOS refuses more than OPEN_MAX for an "unlimited" hard limit.
        if want == libc::RLIM_INFINITY {
            want = 1 << 20;
        }
        let raised = libc::rlimit { rlim_cur: want, rlim_max: rl.rlim_max };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Some((before, want as u64));
        }
    }
    Some((before, before))
}

#[cfg(not(unix))]
pub(crate) fn raise_fd_limit() -> Option<(u64, u64)> {
    None
}

/// The connection cap: `wanted`, lowered to what the descriptor limit allows.
pub(crate) fn effective_cap(wanted: usize, fd_limit: Option<u64>) -> usize {
    match fd_limit {
        Some(l) => wanted.min((l.saturating_sub(RESERVED_FDS) / 2).max(1).min(usize::MAX as u64) as usize),
        None => wanted,
    }
}

/// Answer a connection over the cap with a 503 (which the SDKs retry) and
/// close it: read what the client sent for a moment so the answer is not
/// lost to a reset, never longer than a second.
pub(crate) async fn answer_over_cap<S>(mut stream: S, cap: usize)
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    let body = serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message":
        format!("anthropic-wif proxy: {cap} connections are open, the most it serves at once (--max-connections); retry shortly")}})
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nx-should-retry: true\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 4096];
        // The request head (or its start) first, so the client sees an answer to it.
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        assert_eq!(effective_cap(4096, Some(1_048_576)), 4096);
        assert_eq!(effective_cap(4096, Some(1024)), 448);
        assert_eq!(effective_cap(4096, Some(10)), 1);
        assert_eq!(effective_cap(100, None), 100);
    }
}
