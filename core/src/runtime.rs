//! The process's one tokio runtime and one HTTP client, created lazily.
//!
//! After `fork()` (gunicorn `--preload`, Python multiprocessing) the child has
//! the parent's memory but none of its threads, so a runtime created in the
//! parent is dead in the child. [`runtime`] and [`http_client`] therefore key
//! their singletons on the process id and build fresh ones in a forked child
//! (the parent's copies are leaked in the child, never dropped, because
//! dropping them would try to join threads that do not exist there).

use once_cell::sync::OnceCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};

struct PerProcess {
    pid: u32,
    runtime: &'static tokio::runtime::Runtime,
    client: OnceCell<reqwest::Client>,
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
        Box::leak(Box::new(PerProcess { pid, runtime: Box::leak(Box::new(rt)), client: OnceCell::new() }));
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

/// Whole-request time-out for the token exchange and identity URLs (SPEC §1).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared HTTP client: rustls (ring), no redirects ever, 30 s time-out,
/// our User-Agent. Built on first use so a cache hit never pays for TLS set-up.
pub fn http_client() -> Result<&'static reqwest::Client> {
    let p = current();
    p.client.get_or_try_init(build_client)
}

fn build_client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
}
