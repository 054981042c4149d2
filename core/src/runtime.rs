//! The process's one tokio runtime and one HTTP client, created lazily.
//!
//! After `fork()` (gunicorn `--preload`, Python multiprocessing) the child has
//! the parent's memory but none of its threads, so a runtime created in the
//! parent is dead in the child. [`runtime`] and `http_client` therefore key
//! their singletons on the process id and build fresh ones in a forked child
//! (the parent's copies are leaked in the child, never dropped, because
//! dropping them would try to join threads that do not exist there).
//!
//! The HTTP client's network settings (proxies, CA certificates) come from
//! the caller's environment snapshot (`NetSettings::from_env`), never from
//! the process environment: reqwest would otherwise read `HTTPS_PROXY` and
//! friends, and the certificate loader `SSL_CERT_FILE`, with `getenv` on a
//! runtime thread (env.rs says why that must not happen).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::env::Env;
use crate::error::{Error, Result};

struct PerProcess {
    pid: u32,
    runtime: &'static tokio::runtime::Runtime,
    /// One client per distinct network settings (in practice one).
    clients: Mutex<Vec<(NetSettings, reqwest::Client)>>,
}

static CURRENT: Mutex<Option<&'static PerProcess>> = Mutex::new(None);

/// Worker threads of the runtime. One by default: the engine's work is a few
/// I/O-bound exchanges, and with a second worker tokio wakes both threads for
/// every task, which costs more CPU than the exchange itself (bench/PYTHON.md).
/// The proxy, which serves many connections, asks for more.
static WORKERS: AtomicUsize = AtomicUsize::new(1);

/// Set the runtime's worker threads (at least 1). Takes effect when the
/// runtime is created: call it before anything uses the runtime.
pub fn set_worker_threads(n: usize) {
    WORKERS.store(n.max(1), Ordering::Relaxed);
}

fn current() -> &'static PerProcess {
    let pid = std::process::id();
    let mut guard = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = *guard {
        if p.pid == pid {
            return p;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS.load(Ordering::Relaxed))
        .thread_name("anthropic-wif")
        .enable_all()
        .build()
        .expect("anthropic-wif: cannot start the tokio runtime (out of threads or memory)");
    let p: &'static PerProcess =
        Box::leak(Box::new(PerProcess { pid, runtime: Box::leak(Box::new(rt)), clients: Mutex::new(Vec::new()) }));
    *guard = Some(p);
    p
}

/// The process's tokio runtime (multi-thread; 1 worker unless [`set_worker_threads`] said otherwise).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    current().runtime
}

/// Run a future to completion on the shared runtime from synchronous code.
/// Must not be called from inside the runtime's own threads.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// Whole-request time-out for the token exchange and identity URLs (docs/design.md §1).
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the HTTP client takes from the environment, as `curl` and reqwest
/// read it: `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy` (each
/// falling back to `ALL_PROXY`/`all_proxy`), `NO_PROXY`/`no_proxy`, none of
/// them when `REQUEST_METHOD` is set (a CGI request could set `Proxy:`), and
/// on Linux and other non-Apple Unix `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// (colon-separated) for the CA certificates. Not `Debug`: a proxy URL may
/// carry a password.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct NetSettings {
    http_proxy: Option<String>,
    https_proxy: Option<String>,
    no_proxy: Option<String>,
    cert_file: Option<String>,
    cert_dir: Option<String>,
}

impl std::fmt::Debug for NetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSettings")
            .field("http_proxy", &self.http_proxy.is_some())
            .field("https_proxy", &self.https_proxy.is_some())
            .field("no_proxy", &self.no_proxy)
            .field("cert_file", &self.cert_file)
            .field("cert_dir", &self.cert_dir)
            .finish()
    }
}

impl NetSettings {
    pub(crate) fn from_env(env: &Env) -> Self {
        let first = |names: &[&str]| names.iter().find_map(|n| env.get(n));
        let cgi = env.is_set("REQUEST_METHOD");
        let all = first(&["ALL_PROXY", "all_proxy"]);
        NetSettings {
            http_proxy: if cgi { None } else { first(&["HTTP_PROXY", "http_proxy"]).or_else(|| all.clone()) },
            https_proxy: if cgi { None } else { first(&["HTTPS_PROXY", "https_proxy"]).or(all) },
            no_proxy: first(&["NO_PROXY", "no_proxy"]),
            cert_file: env.get("SSL_CERT_FILE"),
            cert_dir: env.get("SSL_CERT_DIR"),
        }
    }
}

/// The HTTP client for these network settings: rustls (ring), no redirects
/// ever, 30 s time-out. Built on first use so a cache hit never pays for TLS
/// set-up, then shared by every caller with the same settings.
pub(crate) fn http_client(net: &NetSettings) -> Result<reqwest::Client> {
    let p = current();
    let mut clients = p.clients.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = clients.iter().find(|(n, _)| n == net) {
        return Ok(c.clone());
    }
    let client = build_client(net)?;
    clients.push((net.clone(), client.clone()));
    Ok(client)
}

fn build_client(net: &NetSettings) -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        // Proxies only as the snapshot says (reqwest would read the process environment).
        .no_proxy();
    let no_proxy = net.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
    let proxies = [(&net.http_proxy, false), (&net.https_proxy, true)];
    for (url, https) in proxies {
        let Some(url) = url else { continue };
        let proxy = if https { reqwest::Proxy::https(url.as_str()) } else { reqwest::Proxy::http(url.as_str()) };
        match proxy {
            Ok(proxy) => builder = builder.proxy(proxy.no_proxy(no_proxy.clone())),
            // Like curl and reqwest: an unusable proxy variable is ignored (the text may hold a password).
            Err(_) => crate::diag::emit(crate::diag::INFO, || "ignoring a proxy variable that is not a URL".into()),
        }
    }
    #[cfg(all(unix, not(target_vendor = "apple")))]
    {
        builder = builder.tls_certs_only(ca_certificates(net)?);
    }
    builder.build().map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
}

/// The CA certificates on Linux and other non-Apple Unix: `SSL_CERT_FILE`
/// and `SSL_CERT_DIR` from the snapshot when either is set (only those, as
/// OpenSSL does), else the system's certificate directories. (On macOS and
/// Windows the platform verifier asks the OS, which reads no variable.)
#[cfg(all(unix, not(target_vendor = "apple")))]
fn ca_certificates(net: &NetSettings) -> Result<Vec<reqwest::Certificate>> {
    use std::path::{Path, PathBuf};
    let from_env = net.cert_file.is_some() || net.cert_dir.is_some();
    let dirs: Vec<PathBuf> = match &net.cert_dir {
        Some(d) => std::env::split_paths(d).filter(|p| !p.as_os_str().is_empty()).collect(),
        None if from_env => Vec::new(),
        None => openssl_probe::candidate_cert_dirs().map(Path::to_path_buf).collect(),
    };
    let file = net.cert_file.as_deref().map(Path::new);
    let mut found = rustls_native_certs::load_certs_from_paths(file, None);
    for dir in &dirs {
        let more = rustls_native_certs::load_certs_from_paths(None, Some(dir));
        found.certs.extend(more.certs);
        found.errors.extend(more.errors);
    }
    for e in &found.errors {
        crate::diag::emit(crate::diag::INFO, || format!("CA certificates: {e}"));
    }
    let certs: Vec<reqwest::Certificate> =
        found.certs.iter().filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok()).collect();
    if certs.is_empty() {
        let place = if from_env {
            "SSL_CERT_FILE / SSL_CERT_DIR".to_string()
        } else {
            format!(
                "the system certificate directories ({})",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        };
        return Err(Error::internal(format!(
            "no CA certificates could be loaded from {place}, so no HTTPS server can be verified; install the \
             ca-certificates package, or point SSL_CERT_FILE at a PEM bundle"
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn network_settings_come_from_the_snapshot() {
        let env = Env::fixed([
            ("https_proxy", "http://proxy.example:3128"),
            ("ALL_PROXY", "http://all.example:1"),
            ("NO_PROXY", "localhost,.internal"),
            ("SSL_CERT_FILE", "/etc/custom.pem"),
        ]);
        let n = NetSettings::from_env(&env);
        assert_eq!(n.https_proxy.as_deref(), Some("http://proxy.example:3128"));
        assert_eq!(n.http_proxy.as_deref(), Some("http://all.example:1"), "ALL_PROXY is the fallback");
        assert_eq!(n.no_proxy.as_deref(), Some("localhost,.internal"));
        assert_eq!(n.cert_file.as_deref(), Some("/etc/custom.pem"));
        // A CGI request could set HTTP_PROXY through a `Proxy:` header: no proxies then.
        let cgi = Env::fixed([("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil.example:1")]);
        let n = NetSettings::from_env(&cgi);
        assert!(n.http_proxy.is_none() && n.https_proxy.is_none());
        // The Debug form never shows a proxy URL (it may carry a password).
        let env = Env::fixed([("HTTPS_PROXY", "http://user:hunter2@proxy.example:3128")]);
        assert!(!format!("{:?}", NetSettings::from_env(&env)).contains("hunter2"));
        assert!(NetSettings::from_env(&Env::default()) == NetSettings::default());
    }

    #[test]
    fn a_proxy_from_the_snapshot_is_used() {
        // A one-shot HTTP proxy on loopback that records the request line.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").unwrap();
            String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
        });
        let env = Env::fixed([("HTTP_PROXY", format!("http://127.0.0.1:{port}"))]);
        let client = http_client(&NetSettings::from_env(&env)).unwrap();
        let body =
            block_on(async { client.get("http://wif-proxy-test.invalid/x").send().await?.text().await }).unwrap();
        assert_eq!(body, "ok");
        assert_eq!(server.join().unwrap(), "GET http://wif-proxy-test.invalid/x HTTP/1.1");
    }

    #[cfg(all(unix, not(target_vendor = "apple")))]
    #[test]
    fn ca_certificates_come_from_the_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let env = Env::fixed([("SSL_CERT_FILE", empty.display().to_string())]);
        let err = http_client(&NetSettings::from_env(&env)).unwrap_err();
        assert!(err.message().contains("SSL_CERT_FILE"), "{}", err.message());
        // The system's certificates otherwise.
        assert!(http_client(&NetSettings::default()).is_ok());
    }
}
