//! A local stand-in for Anthropic's workload-identity token endpoint
//! (`POST /v1/oauth/token`, RFC 7523 jwt-bearer) and a minimal Messages API
//! (`POST /v1/messages`, JSON and SSE), with control endpoints for tests:
//! counters, recorded token and API requests, test JWTs, fault injection,
//! revocation, reset.
//!
//! In-process (Rust tests): [`Emulator::start`] runs the server on its own
//! thread with its own tokio runtime, so it works from sync tests and next to
//! any other runtime; dropping the [`Emulator`] stops it.
//! As a process: the `wif-emulator` binary calls [`main_with_args`] (then
//! [`run_cli`]), which prints one line `{"base_url":"http://127.0.0.1:PORT"}`
//! (or, with `--print-env`, ready-to-paste `export` lines) and serves until
//! SIGTERM/SIGINT. It is test tooling: the `anthropic-wif` release binary does
//! not contain it.
//!
//! The emulator never checks JWT signatures (it has no issuer keys); it checks
//! the request shape (docs/design.md §1), `exp`/`nbf`, single use of each `jti` (a JWT
//! without `jti` is single-use as a whole), and the rule id when rules are
//! configured.

mod faults;
mod ids;
mod jwt;
mod local;
mod server;
mod state;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

pub use faults::{Endpoint, Fault, FaultKind};
pub use ids::{is_tagged, is_uuid};
pub use jwt::{test_jwt, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_JWT_TTL, DEFAULT_SUBJECT};
pub use local::{LOCAL_ORGANIZATION, LOCAL_RULE, LOCAL_SERVICE_ACCOUNT};
pub use state::{ApiRequest, RecordedRequest, Stats};

use state::State;

/// The beta flag every OAuth request carries.
pub const BETA_OAUTH: &str = server::BETA_OAUTH;
/// The beta flag that jwt-bearer exchanges add.
pub const BETA_FEDERATION: &str = server::BETA_FEDERATION;
/// The only accepted `grant_type`.
pub const GRANT_TYPE: &str = server::GRANT_TYPE;
/// The largest accepted assertion, in bytes.
pub const MAX_ASSERTION_BYTES: usize = server::MAX_ASSERTION;

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen (default `127.0.0.1:0`: any free port on loopback).
    pub listen: SocketAddr,
    /// The rule's `token_lifetime_seconds` (default 600); minted tokens live
    /// `min(token_lifetime, 2 × remaining JWT life)`, at least 1 s.
    pub token_lifetime: u64,
    /// Known federation rule ids; empty (default) accepts any well-formed id.
    pub rules: Vec<String>,
    /// Pause between SSE events of a streamed message (default 20 ms).
    pub stream_delay_ms: u64,
    /// Number of `content_block_delta` events in a streamed message (default 5).
    pub stream_deltas: usize,
    /// `iss` of the test JWTs it mints (default [`DEFAULT_ISSUER`]).
    pub issuer: String,
    /// Largest accepted request body (default 2 MiB; larger → 413).
    pub max_body_bytes: usize,
    /// A file kept holding an unused test JWT: (re)written with a fresh one
    /// after every successful exchange, like a platform rotating a projected
    /// token (default none). `--print-env` sets it to a private temporary file.
    pub identity_token_file: Option<PathBuf>,
    /// [`run_cli`] only: print ready-to-paste `export` lines (and keep
    /// `identity_token_file` in a private temporary directory) instead of the
    /// JSON ready line.
    pub print_env: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_lifetime: 600,
            rules: Vec::new(),
            stream_delay_ms: 20,
            stream_deltas: 5,
            issuer: DEFAULT_ISSUER.to_owned(),
            max_body_bytes: 2 * 1024 * 1024,
            identity_token_file: None,
            print_env: false,
        }
    }
}

/// `wif-emulator --help`.
pub const USAGE: &str = "\
Usage: wif-emulator [OPTIONS]

A local stand-in for Anthropic's token endpoint (POST /v1/oauth/token) and a
minimal Messages API (POST /v1/messages), for tests and demos. Prints one line
{\"base_url\":\"http://127.0.0.1:PORT\"} when ready, then serves until SIGTERM/SIGINT.

Options:
  --print-env             print ready-to-paste `export` lines instead (base URL,
                          ids, and an identity token file the emulator keeps
                          filled with an unused test JWT)
  --listen ADDR           address to listen on [default: 127.0.0.1:0]
  --token-lifetime SECS   lifetime of minted tokens, capped at twice the
                          identity token's remaining life [default: 600]
  --rule fdrl_ID          accept only this federation rule (repeatable;
                          default: any well-formed fdrl_ id)
  --identity-token-file PATH
                          keep PATH holding an unused test JWT: written at
                          start and replaced after every successful exchange,
                          atomically, the way a platform rotates a projected
                          token (--print-env picks a private file itself)
  --stream-delay-ms N     pause between streamed SSE events [default: 20]
  --stream-deltas N       text deltas per streamed message [default: 5]
  -h, --help              print this help

Control endpoints (for tests): GET /_emulator/stats, GET /_emulator/requests,
GET /_emulator/api-requests, POST /_emulator/jwt {\"sub\",\"aud\",\"ttl\"}, POST /_emulator/faults {\"faults\":[…]},
POST /_emulator/revoke, POST /_emulator/reset, GET|POST /_emulator/config.
";

impl EmulatorConfig {
    /// Parse the emulator's command-line options (without the program
    /// name). `--help` / `-h`
    /// yields `Err(USAGE)`; use [`wants_help`] to tell it from an error.
    pub fn from_args(args: &[String]) -> Result<EmulatorConfig, String> {
        let mut c = EmulatorConfig::default();
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg, None),
            };
            if name == "--help" || name == "-h" {
                return Err(USAGE.to_owned());
            }
            if arg == "--print-env" {
                c.print_env = true;
                i += 1;
                continue;
            }
            let known = [
                "--listen",
                "--token-lifetime",
                "--rule",
                "--stream-delay-ms",
                "--stream-deltas",
                "--identity-token-file",
            ];
            if !known.contains(&name) {
                return Err(format!("unknown option {arg:?} for `wif-emulator`; see --help"));
            }
            let value = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => return Err(format!("{name} needs a value; see --help")),
                    }
                }
            };
            match name {
                "--listen" => c.listen = parse_listen(&value)?,
                "--token-lifetime" => {
                    c.token_lifetime = value.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("--token-lifetime must be a positive number of seconds, got {value:?}")
                    })?
                }
                "--rule" => {
                    if !ids::is_tagged(&value, "fdrl_") {
                        return Err(format!(
                            "--rule {value:?} is not a well-formed fdrl_ tagged ID (like fdrl_01SDCCSbTxrXDpWc1phhtcfK)"
                        ));
                    }
                    c.rules.push(value);
                }
                "--identity-token-file" if value.is_empty() => {
                    return Err("--identity-token-file needs a path".to_owned())
                }
                "--identity-token-file" => c.identity_token_file = Some(PathBuf::from(value)),
                "--stream-delay-ms" => {
                    c.stream_delay_ms = value
                        .parse()
                        .map_err(|_| format!("--stream-delay-ms must be a non-negative integer, got {value:?}"))?
                }
                "--stream-deltas" => {
                    c.stream_deltas =
                        value.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
                            format!("--stream-deltas must be an integer from 1 to 10000, got {value:?}")
                        })?
                }
                _ => unreachable!("checked against `known` above"),
            }
            i += 1;
        }
        Ok(c)
    }
}

/// Whether the arguments ask for `--help`/`-h`.
pub fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

fn parse_listen(v: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Ok(a);
    }
    v.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("--listen {v:?} is not an address like 127.0.0.1:0 or [::1]:8080"))
}

fn base_url_for(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("http://127.0.0.1:{}", a.port()),
        SocketAddr::V4(a) => format!("http://{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("http://[::1]:{}", a.port()),
        SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
    }
}

fn bind(listen: SocketAddr) -> io::Result<StdListener> {
    let l = StdListener::bind(listen)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn build_runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("wif-emulator").enable_all().build()
}

/// A running in-process emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    base_url: String,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

impl Emulator {
    /// Bind `config.listen` and serve on a new thread with its own runtime.
    pub fn start(config: EmulatorConfig) -> io::Result<Emulator> {
        let listener = bind(config.listen)?;
        let addr = listener.local_addr()?;
        let base_url = base_url_for(addr);
        let state = Arc::new(State::new(config, base_url.clone()));
        let rt = build_runtime()?;
        let (tx, rx) = watch::channel(false);
        let st = state.clone();
        let thread = std::thread::Builder::new().name("wif-emulator".into()).spawn(move || {
            rt.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => server::serve(l, st, rx).await,
                    Err(e) => eprintln!("wif-emulator: cannot use the listening socket: {e}"),
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(Emulator { addr, base_url, state, shutdown: tx, thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// The token requests received so far, oldest first (the last 10 000).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// The API requests (Messages API and unknown routes) received so far, with the status each
    /// was answered, oldest first (the last 10 000).
    pub fn api_requests(&self) -> Vec<ApiRequest> {
        self.state.api_requests()
    }

    /// Queue faults for the next requests (each applies `count` times).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.push_faults(faults.into_iter().collect());
    }

    /// Queue faults given in the JSON form of `POST /_emulator/faults`
    /// (`{"faults":[…]}`, an array, or one fault object). Returns how many.
    pub fn push_faults_json(&self, v: &serde_json::Value) -> Result<usize, String> {
        let list = Fault::list_from_json(v)?;
        Ok(self.state.push_faults(list))
    }

    /// A fresh test JWT (unique `jti`, `exp = now + ttl`; negative `ttl` → already expired).
    pub fn mint_jwt(&self, sub: &str, aud: &str, ttl: i64) -> String {
        jwt::encode_claims(&jwt::default_claims(&self.state.initial.issuer, sub, aud, ttl))
    }

    /// A test JWT from the JSON form of `POST /_emulator/jwt`:
    /// `{"sub","aud","ttl","iss","claims":{…}}` (all optional; a `null` in
    /// `claims` removes that default claim, e.g. `{"claims":{"jti":null}}`).
    pub fn mint_jwt_with(&self, spec: &serde_json::Value) -> Result<String, String> {
        server::jwt_from_request(&self.state.initial.issuer, spec).map(|(t, _)| t)
    }

    /// Whether `token` is a live access token this emulator minted.
    pub fn is_token_valid(&self, token: &str) -> bool {
        self.state.check_token(token).is_ok()
    }

    /// Invalidate every minted token; returns how many there were.
    pub fn revoke_all(&self) -> usize {
        self.state.revoke()
    }

    /// Forget everything (tokens, seen jtis, faults, requests, counters) and
    /// restore the start-up settings.
    pub fn reset(&self) {
        self.state.reset()
    }

    /// Change the rule's token lifetime (seconds, at least 1).
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state.lock().settings.token_lifetime = secs.max(1);
    }

    /// Replace the known rules (empty: accept any well-formed id).
    pub fn set_rules(&self, rules: Vec<String>) {
        self.state.lock().settings.rules = rules;
    }

    /// Change the pause between streamed events.
    pub fn set_stream_delay_ms(&self, ms: u64) {
        self.state.lock().settings.stream_delay_ms = ms;
    }

    /// Change the number of text deltas per streamed message (at least 1).
    pub fn set_stream_deltas(&self, n: usize) {
        self.state.lock().settings.stream_deltas = n.clamp(1, 10_000);
    }

    /// Stop serving and wait for the server thread (same as dropping).
    pub fn stop(self) {}
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Run the emulator in the foreground: bind, print exactly one line
/// `{"base_url":"http://127.0.0.1:PORT"}` to stdout (flushed; with
/// `print_env`, the `export` lines instead), serve until SIGTERM or SIGINT,
/// then shut down gracefully.
pub fn run_cli(mut config: EmulatorConfig) -> Result<(), String> {
    let listen = config.listen;
    // Removed when this function returns, however it returns.
    let private = if config.print_env {
        let dir = local::PrivateDir::create()
            .map_err(|e| format!("cannot create a private directory for the identity token: {e}"))?;
        config.identity_token_file = Some(dir.token_file());
        Some(dir)
    } else {
        None
    };
    if let Some(file) = &config.identity_token_file {
        server::refill_identity_token(file, &config.issuer)
            .map_err(|e| format!("cannot write the identity token file {}: {e}", file.display()))?;
    }
    let listener = bind(listen).map_err(|e| {
        format!("cannot listen on {listen}: {e} (choose another --listen address; 127.0.0.1:0 picks a free port)")
    })?;
    let addr = listener.local_addr().map_err(|e| format!("cannot read the listening address: {e}"))?;
    let base_url = base_url_for(addr);
    let rt = build_runtime().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let ready = match (&private, &config.identity_token_file) {
        (Some(_), Some(file)) => {
            let rule = config.rules.first().map(String::as_str).unwrap_or(LOCAL_RULE);
            local::export_lines(&base_url, rule, file)
        }
        _ => serde_json::json!({ "base_url": base_url }).to_string() + "\n",
    };
    let state = Arc::new(State::new(config, base_url.clone()));
    let result = rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|e| format!("cannot use the listening socket: {e}"))?;
        let (tx, rx) = watch::channel(false);
        // Install the signal handlers before announcing readiness, so a
        // signal sent right after the ready line is not lost.
        let signals = shutdown_signal()?;
        tokio::spawn(async move {
            signals.await;
            let _ = tx.send(true);
        });
        let mut out = io::stdout().lock();
        out.write_all(ready.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write the ready line to stdout: {e}"))?;
        drop(out);
        server::serve(listener, state, rx).await;
        Ok(())
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(private);
    result
}

#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send, String> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The whole `wif-emulator` program: parse `args` (without the program name), print help to stdout (exit 0), errors to stderr (exit 2 for
/// usage, 1 for run-time failures), else serve. Returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    if wants_help(args) {
        print!("{USAGE}");
        let _ = io::stdout().flush();
        return 0;
    }
    let config = match EmulatorConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wif-emulator: {e}");
            return 2;
        }
    };
    match run_cli(config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wif-emulator: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_args() {
        let c = EmulatorConfig::from_args(&args(&[
            "--listen",
            "127.0.0.1:8123",
            "--token-lifetime=60",
            "--rule",
            "fdrl_abc",
            "--rule",
            "fdrl_def",
            "--stream-delay-ms",
            "0",
            "--stream-deltas",
            "9",
            "--identity-token-file",
            "/run/wif/token",
        ]))
        .expect("parses");
        assert_eq!(c.identity_token_file, Some(PathBuf::from("/run/wif/token")));
        assert_eq!(c.listen, "127.0.0.1:8123".parse().expect("addr"));
        assert_eq!(c.token_lifetime, 60);
        assert_eq!(c.rules, vec!["fdrl_abc".to_string(), "fdrl_def".to_string()]);
        assert_eq!(c.stream_delay_ms, 0);
        assert_eq!(c.stream_deltas, 9);
        let d = EmulatorConfig::from_args(&[]).expect("defaults");
        assert_eq!((d.token_lifetime, d.stream_delay_ms, d.stream_deltas), (600, 20, 5));
    }

    #[test]
    fn arg_errors_name_the_option() {
        for (a, want) in [
            (vec!["--token-lifetime", "0"], "--token-lifetime"),
            (vec!["--token-lifetime"], "--token-lifetime needs a value"),
            (vec!["--rule", "rule1"], "fdrl_"),
            (vec!["--listen", "nowhere"], "--listen"),
            (vec!["--bogus"], "unknown option"),
            (vec!["--stream-delay-ms", "-1"], "--stream-delay-ms"),
            (vec!["--identity-token-file", ""], "--identity-token-file needs a path"),
        ] {
            let e = EmulatorConfig::from_args(&args(&a)).unwrap_err();
            assert!(e.contains(want), "{a:?}: {e}");
        }
        assert!(wants_help(&args(&["--help"])));
        assert_eq!(EmulatorConfig::from_args(&args(&["-h"])).unwrap_err(), USAGE);
    }

    #[test]
    fn base_urls() {
        assert_eq!(base_url_for("0.0.0.0:5".parse().expect("a")), "http://127.0.0.1:5");
        assert_eq!(base_url_for("[::1]:5".parse().expect("a")), "http://[::1]:5");
        assert_eq!(base_url_for("127.0.0.1:7".parse().expect("a")), "http://127.0.0.1:7");
    }
}
