//! `anthropic-wif proxy [config flags] --listen ADDR`: the local reverse
//! proxy (crate `anthropic-wif-proxy`). Prints one line of JSON when ready
//! (`{"listen":"127.0.0.1:PORT","base_url":"http://127.0.0.1:PORT"}`), logs to
//! stderr (text or JSON lines), and drains in-flight streams on SIGTERM/SIGINT.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anthropic_wif_core::{runtime, Error, HandOutMargin, Provider};
use anthropic_wif_proxy::{Listen, Proxy, ProxyConfig};
use clap::Args;

use crate::args::CommonArgs;

#[derive(Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where to listen: 127.0.0.1:PORT or [::1]:PORT (0 = any free port), or a Unix socket unix:/PATH.
    #[arg(long, value_name = "ADDR", help_heading = "Proxy")]
    pub listen: String,
    /// Allow a non-loopback TCP address: anyone who reaches it uses your Claude API access.
    #[arg(long, help_heading = "Proxy")]
    pub allow_remote: bool,
    /// Never forward with a token that expires within this many seconds (capped at half the token's lifetime).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, help_heading = "Proxy")]
    pub stream_allowance: u64,
    /// Keep request bodies up to this size to replay a request once after a 401.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, help_heading = "Proxy")]
    pub replay_max_bytes: usize,
    /// On SIGTERM/SIGINT, wait this long for in-flight requests and streams.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, help_heading = "Proxy")]
    pub drain_timeout: u64,
    /// Permission bits of a Unix socket, in octal.
    #[arg(long, value_name = "MODE", default_value = "600", value_parser = parse_mode, help_heading = "Proxy")]
    pub socket_mode: u32,
    /// Also accept requests whose Host is NAME (a name or address clients use in their base URL). Besides it,
    /// only localhost, loopback addresses and the address a connection arrived on are accepted, which keeps
    /// web pages out (DNS rebinding). Repeatable.
    #[arg(long = "allow-host", value_name = "NAME", help_heading = "Proxy")]
    pub allow_hosts: Vec<String>,
    /// Serve at most this many connections at once (lowered to fit the open-file limit); more get a 503.
    #[arg(long, value_name = "N", default_value_t = anthropic_wif_proxy::DEFAULT_MAX_CONNECTIONS, help_heading = "Proxy")]
    pub max_connections: usize,
    /// Disconnect a client that takes longer than this to send its request headers (or to start its next request
    /// on a kept-alive connection), and answer 408 when the next piece of its request body takes longer.
    #[arg(long, value_name = "SECONDS", default_value_t = anthropic_wif_proxy::DEFAULT_CLIENT_TIMEOUT_SECS, help_heading = "Proxy")]
    pub client_timeout: u64,
    /// Give up on upstream after this long without a byte from it: until its response headers (504), or
    /// between two pieces of a response body (the stream is cut), like nginx's proxy_read_timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = anthropic_wif_proxy::DEFAULT_UPSTREAM_TIMEOUT_SECS, help_heading = "Proxy")]
    pub upstream_timeout: u64,
    /// Refuse request bodies larger than this with 413, before or while forwarding them (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = 0, help_heading = "Proxy")]
    pub max_request_bytes: u64,
    /// Log lines (requests and token events) on stderr as `text` or `json` (one object per line).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = parse_log_format, help_heading = "Proxy")]
    pub log_format: anthropic_wif_proxy::LogFormat,
    /// No per-request log lines on stderr.
    #[arg(long, help_heading = "Proxy")]
    pub quiet: bool,
}

fn parse_log_format(s: &str) -> Result<anthropic_wif_proxy::LogFormat, String> {
    anthropic_wif_proxy::LogFormat::parse(s).map_err(|e| e.to_string())
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal permission mode such as 600 or 660"))
}

fn fail(err: &Error) -> ExitCode {
    eprintln!("anthropic-wif: error [{}]: {err}", err.kind.as_str());
    ExitCode::from(err.kind.exit_code() as u8)
}

pub fn run(a: ProxyArgs) -> ExitCode {
    a.common.diagnostics();
    // The proxy holds the access token for hours: keep it out of core dumps.
    anthropic_wif_core::process::harden();
    // A server: one runtime worker per core (the engine's default is one).
    runtime::set_worker_threads(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    if a.common.has("min_remaining") {
        return fail(&Error::config(
            "--min-remaining does not apply to the proxy; use --stream-allowance SECONDS \
             (the proxy never forwards with a token that expires within it)",
        ));
    }
    let listen = match Listen::parse(&a.listen) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    // The proxy keeps its own stream allowance (proxy/src/tokens.rs).
    let provider = match a.common.provider_options_as("proxy", HandOutMargin::RefreshPolicy).and_then(Provider::new) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let mut config = ProxyConfig::new(listen);
    config.allow_remote = a.allow_remote;
    config.stream_allowance = a.stream_allowance;
    config.replay_max_bytes = a.replay_max_bytes;
    config.drain_timeout = Duration::from_secs(a.drain_timeout);
    config.socket_mode = a.socket_mode;
    config.allow_hosts = a.allow_hosts;
    config.max_connections = a.max_connections;
    config.client_timeout = Duration::from_secs(a.client_timeout);
    config.upstream_timeout = Duration::from_secs(a.upstream_timeout);
    config.max_request_bytes = a.max_request_bytes;
    config.log_format = a.log_format;
    config.log = !a.quiet;
    let result = runtime::block_on(async move {
        let shutdown = shutdown_signal()?;
        let proxy = Proxy::bind(provider, config).await?;
        let bound = proxy.bound().clone();
        let mut ready = serde_json::json!({ "listen": bound.to_string(), "upstream": proxy.upstream() });
        if let Some(u) = bound.base_url() {
            ready["base_url"] = u.into();
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}").and_then(|_| out.flush());
        drop(out);
        proxy.run(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// SIGTERM or SIGINT (Ctrl-C elsewhere): also the daemon's.
#[cfg(unix)]
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::internal(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::internal(format!("cannot watch SIGINT: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
pub(crate) fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Error> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
