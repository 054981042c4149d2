//! PyO3 glue (issue 3): the Python face of the anthropic-wif engine.
//!
//! Everything here is translation. The engine (`anthropic_wif_core`) resolves
//! configuration, fetches identity tokens, exchanges them, caches the result in
//! memory and on disk and serialises exchanges across threads and processes.
//! This module only:
//! - hands the keyword arguments, as JSON values, to core's one options
//!   parser (`anthropic_wif_core::options`, snake_case names in messages)
//!   and builds a core `Provider` from the result (client `python`);
//! - hands tokens out as the `AccessToken` class the Python layer chose (the
//!   SDK's own class when `anthropic` is importable), reusing the Python
//!   object while the token is unchanged so the warm path allocates nothing;
//! - releases the GIL around every blocking call;
//! - completes an asyncio future from the shared tokio runtime for the async
//!   provider (`loop.call_soon_threadsafe`), so no thread is spawned per call;
//! - maps `anthropic_wif_core::Error` to the exception classes defined in
//!   `anthropic_wif._errors`;
//! - runs the core diagnosis (`doctor`) and hands its report out as the JSON
//!   text of `anthropic-wif doctor --json` (the Python layer parses it);
//! - rebuilds the core provider in a forked child (its locks and runtime
//!   belong to the parent's threads, which the child does not have);
//! - hands the engine a copy of `os.environ` taken under the GIL (at
//!   construction, and at each call the warm path cannot answer): the engine
//!   never calls `getenv` on its own threads, where it would race the
//!   program's `os.environ[…] = …` (core/src/env.rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, RwLock};

use anthropic_wif_core::config::Env;
use anthropic_wif_core::doctor::DoctorOptions;
use anthropic_wif_core::options::{self, FieldNames, Options, Scope};
use anthropic_wif_core::{AccessToken, Error, ErrorKind, HandOutMargin, Provider, ProviderOptions, Secret};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use serde_json::Value;

// ---------------------------------------------------------------------------
// fork awareness

/// Incremented in every forked child (pthread_atfork), so a provider notices
/// with one atomic load that the process it was built in is gone.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    // Only async-signal-safe work here: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

#[cfg(unix)]
fn install_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only does an atomic increment.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// No fork() on Windows: a child process starts afresh, so there is nothing to watch.
#[cfg(not(unix))]
fn install_atfork() {
    ATFORK.call_once(|| {
        let _ = after_fork_in_child;
    });
}

// ---------------------------------------------------------------------------
// running the engine

/// Start obtaining a token on the shared runtime's worker threads; the
/// result arrives on the returned channel.
///
/// Cheaper in CPU than `Runtime::block_on` on the caller's thread: the whole
/// request (identity source, HTTP connection task, response) runs on the
/// runtime's workers, so the only hand-offs to the caller are the start and
/// the result, instead of a wake-up for every step between a caller-driven
/// future and the connection task.
fn start_on_runtime(
    provider: Provider,
    force_refresh: bool,
    env: Env,
) -> std::sync::mpsc::Receiver<Result<AccessToken, Error>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    anthropic_wif_core::runtime::runtime().spawn(async move {
        let _ = tx.send(provider.token_in(force_refresh, &env).await);
    });
    rx
}

// ---------------------------------------------------------------------------
// the environment

/// `os.environ`, looked up once.
static ENVIRON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A copy of `os.environ` as it is now, taken under the GIL, so no Python
/// thread writes it meanwhile: the environment the official SDK would read.
/// Variables that are not valid Unicode are left out.
///
/// On POSIX CPython (and PyPy) `os.environ` keeps the variables as bytes in
/// its `_data` dict; reading that directly costs a few microseconds where
/// `os.environ.copy()` decodes every name and value in Python (tens of
/// microseconds). Anything else falls back to the public `copy()`.
fn environ_snapshot(py: Python<'_>) -> PyResult<Env> {
    let environ = ENVIRON.get_or_try_init(py, || Ok::<_, PyErr>(py.import("os")?.getattr("environ")?.unbind()))?;
    let environ = environ.bind(py);
    if let Some(vars) = environ.getattr("_data").ok().and_then(|d| bytes_dict(&d)) {
        return Ok(Env::fixed(vars));
    }
    let copy = environ.call_method0("copy")?;
    let dict = copy.cast::<PyDict>()?;
    let mut vars = Vec::with_capacity(dict.len());
    for (name, value) in dict.iter() {
        if let (Ok(name), Ok(value)) = (name.extract::<String>(), value.extract::<String>()) {
            vars.push((name, value));
        }
    }
    Ok(Env::fixed(vars))
}

/// The UTF-8 items of a dict of bytes to bytes; `None` if it is not one.
fn bytes_dict(data: &Bound<'_, PyAny>) -> Option<Vec<(String, String)>> {
    let data = data.cast::<PyDict>().ok()?;
    let mut vars = Vec::with_capacity(data.len());
    for (name, value) in data.iter() {
        let (name, value) = (name.cast::<PyBytes>().ok()?, value.cast::<PyBytes>().ok()?);
        if let (Ok(n), Ok(v)) = (std::str::from_utf8(name.as_bytes()), std::str::from_utf8(value.as_bytes())) {
            vars.push((n.to_owned(), v.to_owned()));
        }
    }
    Some(vars)
}

/// Wait for [`start_on_runtime`]'s result without the GIL, waking every
/// 200 ms to let Python deliver signals (Ctrl-C interrupts the wait; the
/// exchange itself finishes in the background and its token is cached).
fn wait_for_token(
    py: Python<'_>,
    rx: std::sync::mpsc::Receiver<Result<AccessToken, Error>>,
) -> PyResult<Result<AccessToken, Error>> {
    Ok(wait_for(py, rx)?.unwrap_or_else(|| {
        Err(Error::internal(
            "internal error: the token task ended without an answer (it panicked or the runtime shut down)",
        ))
    }))
}

/// Receive from `rx` with the GIL released, checking for signals every
/// 200 ms. `None` when the sender is gone without an answer.
fn wait_for<T: Send>(py: Python<'_>, rx: std::sync::mpsc::Receiver<T>) -> PyResult<Option<T>> {
    use std::sync::mpsc::RecvTimeoutError;
    let mut rx = rx;
    loop {
        let (back, received) = py.detach(move || {
            let received = rx.recv_timeout(std::time::Duration::from_millis(200));
            (rx, received)
        });
        rx = back;
        match received {
            Ok(value) => return Ok(Some(value)),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// Await `work` on the shared runtime, then complete the asyncio `future`
/// through `event_loop.call_soon_threadsafe(resolve, future, ok, value)`,
/// `value` being `convert(result)` or the exception for the error.
fn complete_future<T, F>(
    work: tokio::task::JoinHandle<Result<T, Error>>,
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    resolve: Py<PyAny>,
    convert: F,
) where
    T: Send + 'static,
    F: for<'py> FnOnce(Python<'py>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    anthropic_wif_core::runtime::runtime().spawn(async move {
        let result = match work.await {
            Ok(r) => r,
            Err(e) => Err(Error::internal(if e.is_panic() {
                "internal error: the task panicked".to_string()
            } else {
                "internal error: the task was cancelled (runtime shutting down)".to_string()
            })),
        };
        // Completing the Python future needs the GIL: take it on a
        // blocking-pool thread, so a busy interpreter (the GIL is held up
        // to a switch interval at a time) never stalls a runtime worker
        // that other exchanges need.
        let completion = tokio::task::spawn_blocking(move || {
            Python::attach(move |py| {
                let (ok, value): (bool, PyResult<Py<PyAny>>) = match result {
                    Ok(v) => (true, convert(py, v)),
                    Err(e) => (false, error_value(py, &e).map(Bound::unbind)),
                };
                let (ok, value) = match value {
                    Ok(v) => (ok, v),
                    Err(pyerr) => (false, pyerr.into_value(py).into_any()),
                };
                // A closed loop raises RuntimeError: nobody is waiting any more.
                if let Err(e) = event_loop.call_method1(py, "call_soon_threadsafe", (resolve, future, ok, value)) {
                    drop(e);
                }
            })
        });
        drop(completion);
    });
}

// ---------------------------------------------------------------------------
// errors

struct ErrorClasses {
    base: Py<PyType>,
    config: Py<PyType>,
    identity: Py<PyType>,
    denied: Py<PyType>,
    unavailable: Py<PyType>,
}

static ERROR_CLASSES: PyOnceLock<ErrorClasses> = PyOnceLock::new();

fn error_classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    ERROR_CLASSES.get_or_try_init(py, || {
        let m = py.import("anthropic_wif._errors")?;
        let get = |name: &str| -> PyResult<Py<PyType>> { Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind()) };
        Ok(ErrorClasses {
            base: get("WifError")?,
            config: get("ConfigurationError")?,
            identity: get("IdentitySourceError")?,
            denied: get("ExchangeDeniedError")?,
            unavailable: get("EndpointUnavailableError")?,
        })
    })
}

/// The Python exception instance for a core error, from its one serialised
/// form: the message (the CLI's), plus `kind`, `status_code` (the form's
/// `status`), `request_id`, `error_code` attributes.
fn error_value<'py>(py: Python<'py>, err: &Error) -> PyResult<Bound<'py, PyAny>> {
    let classes = error_classes(py)?;
    let cls = match err.kind {
        ErrorKind::Config => &classes.config,
        ErrorKind::Identity => &classes.identity,
        ErrorKind::Denied => &classes.denied,
        ErrorKind::Unavailable => &classes.unavailable,
        // ErrorKind::Internal, and any kind core adds later (it is non_exhaustive).
        _ => &classes.base,
    };
    let Ok(serde_json::Value::Object(form)) = serde_json::to_value(err) else {
        return cls.bind(py).call1((err.to_string(),));
    };
    let kwargs = PyDict::new(py);
    let mut message = String::new();
    for (key, value) in form {
        let key = match key.as_str() {
            "message" => {
                message = value.as_str().unwrap_or_default().to_string();
                continue;
            }
            "status" => "status_code",
            other => other,
        };
        match value {
            serde_json::Value::String(s) => kwargs.set_item(key, s)?,
            serde_json::Value::Number(n) => kwargs.set_item(key, n.as_u64())?,
            _ => {}
        }
    }
    cls.bind(py).call((message,), Some(&kwargs))
}

fn to_pyerr(py: Python<'_>, err: &Error) -> PyErr {
    match error_value(py, err) {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// options (shared by the providers and doctor)

/// A Python value as JSON, for core's one options parser
/// (`anthropic_wif_core::options`): `None`, `bool`, `int`, `float`, `str`,
/// mappings, lists and tuples as themselves, an `os.PathLike` as its path, an
/// identity-source object (`anthropic_wif.sources`) as its `to_dict()`.
/// Anything else: `Err` with its type's name.
fn to_json(value: &Bound<'_, PyAny>) -> Result<Value, String> {
    let py = value.py();
    let type_name = || value.get_type().name().map(|n| format!("a {n}")).unwrap_or_else(|_| "an object".into());
    if value.is_none() {
        Ok(Value::Null)
    } else if let Ok(b) = value.cast::<PyBool>() {
        Ok(Value::Bool(b.is_true()))
    } else if value.is_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            Ok(i) => Ok(Value::from(i)),
            Err(_) => value.extract::<f64>().map(Value::from).map_err(|_| type_name()),
        }
    } else if let Ok(f) = value.cast::<PyFloat>() {
        serde_json::Number::from_f64(f.value()).map(Value::Number).ok_or_else(|| "a float that is not finite".into())
    } else if let Ok(s) = value.cast::<PyString>() {
        s.to_cow().map(|s| Value::String(s.into_owned())).map_err(|_| "a str that is not valid Unicode".into())
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let mut items = Vec::new();
        for item in value.try_iter().map_err(|_| type_name())? {
            items.push(to_json(&item.map_err(|_| type_name())?)?);
        }
        Ok(Value::Array(items))
    } else if let Some(items) = mapping_items(value) {
        let mut map = serde_json::Map::new();
        for (k, v) in items {
            let key = k.extract::<String>().map_err(|_| "a mapping whose keys are not all str".to_string())?;
            map.insert(key, to_json(&v)?);
        }
        Ok(Value::Object(map))
    } else if value.hasattr("__fspath__").unwrap_or(false) {
        let path = py.import("os").and_then(|os| os.call_method1("fspath", (value,))).map_err(|_| type_name())?;
        path.extract::<String>().map(Value::String).map_err(|_| "a bytes path".to_string())
    } else if value.hasattr("to_dict").unwrap_or(false) {
        to_json(&value.call_method0("to_dict").map_err(|_| type_name())?)
    } else {
        Err(type_name())
    }
}

/// The items of a dict or another `collections.abc.Mapping` (`os.environ`).
fn mapping_items<'py>(value: &Bound<'py, PyAny>) -> Option<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let py = value.py();
    let dict = match value.cast::<PyDict>() {
        Ok(d) => d.clone(),
        Err(_) => {
            let abc = py.import("collections.abc").ok()?.getattr("Mapping").ok()?;
            if !value.is_instance(&abc).ok()? {
                return None;
            }
            py.import("builtins").ok()?.getattr("dict").ok()?.call1((value,)).ok()?.cast_into::<PyDict>().ok()?
        }
    };
    Some(dict.iter().collect())
}

/// Checked options, built from keyword arguments by core's one parser
/// (`anthropic_wif_core::options`): no I/O, nothing resolved yet.
#[pyclass(frozen, module = "anthropic_wif._native", name = "NativeOptions")]
struct NativeOptions {
    options: Options,
}

#[pymethods]
impl NativeOptions {
    /// `call` names the API in messages (`Provider()`, `doctor()`);
    /// `options` are its keyword arguments; `doctor`: whether doctor's own
    /// options (`exchange`, `expected_audience`) are taken too.
    #[new]
    #[pyo3(signature = (call, options, *, doctor = false))]
    fn new(py: Python<'_>, call: &str, options: &Bound<'_, PyDict>, doctor: bool) -> PyResult<Self> {
        let mut object = serde_json::Map::new();
        for (key, value) in options.iter() {
            let key: String = key.extract()?;
            match to_json(&value) {
                Ok(v) => {
                    object.insert(key, v);
                }
                Err(got) => return Err(to_pyerr(py, &options::type_error(FieldNames::SnakeCase, call, &key, &got))),
            }
        }
        let scopes: &[Scope] = if doctor { &[Scope::Provider, Scope::Doctor] } else { &[Scope::Provider] };
        Options::from_object(FieldNames::SnakeCase, call, &Value::Object(object), scopes)
            .map(|options| NativeOptions { options })
            .map_err(|e| to_pyerr(py, &e))
    }

    /// The settings given, as `(name, shown)` pairs (core's secret-free summary), for `repr`.
    fn summary(&self) -> Vec<(String, String)> {
        self.options.summary()
    }
}

impl NativeOptions {
    /// The engine's options, resolving from a copy of `os.environ` taken now
    /// (unless the `env` argument fixed the environment).
    fn provider_options(&self, py: Python<'_>) -> PyResult<ProviderOptions> {
        Ok(self.options.provider_options("python", HandOutMargin::RefreshPolicy, environ_snapshot(py)?))
    }
}

// ---------------------------------------------------------------------------
// doctor

/// The diagnosis as JSON text, in the key order of `anthropic-wif doctor
/// --json` (the struct itself, not `Report::to_json`, whose map is sorted).
async fn doctor_json(options: ProviderOptions, doctor: DoctorOptions) -> Result<String, Error> {
    let report = anthropic_wif_core::doctor::diagnose_async(&options, &doctor).await;
    serde_json::to_string(&report).map_err(|e| Error::internal(format!("cannot encode the doctor report: {e}")))
}

/// `anthropic-wif doctor --json` for these options, as JSON text; the GIL is
/// released while the diagnosis runs on the shared runtime.
#[pyfunction]
fn doctor(py: Python<'_>, options: PyRef<'_, NativeOptions>) -> PyResult<String> {
    let doctor = options.options.doctor.clone();
    let options = options.provider_options(py)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    anthropic_wif_core::runtime::runtime().spawn(async move {
        let _ = tx.send(doctor_json(options, doctor).await);
    });
    let result = wait_for(py, rx)?.unwrap_or_else(|| {
        Err(Error::internal(
            "internal error: the doctor task ended without an answer (it panicked or the runtime shut down)",
        ))
    });
    result.map_err(|e| to_pyerr(py, &e))
}

/// [`doctor`] for asyncio: runs on the shared runtime and completes `future`
/// with the JSON text through `event_loop.call_soon_threadsafe(resolve, …)`,
/// like `NativeProvider.get_async`.
#[pyfunction]
#[pyo3(signature = (options, event_loop, future, resolve))]
fn doctor_async(
    py: Python<'_>,
    options: PyRef<'_, NativeOptions>,
    event_loop: Py<PyAny>,
    future: Py<PyAny>,
    resolve: Py<PyAny>,
) -> PyResult<()> {
    let doctor = options.options.doctor.clone();
    let options = options.provider_options(py)?;
    let work = anthropic_wif_core::runtime::runtime().spawn(doctor_json(options, doctor));
    complete_future(work, event_loop, future, resolve, |py, json: String| {
        Ok(pyo3::types::PyString::new(py, &json).into_any().unbind())
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// the provider

/// What it takes to build the core provider again (after a fork).
#[derive(Clone)]
struct Recipe {
    options: ProviderOptions,
    /// `for_base_url` applied on top of `options`, when this provider came from it.
    bound_base_url: Option<String>,
    /// The `env` argument fixed the environment: identity sources read it,
    /// not fresh copies of `os.environ`.
    fixed_env: bool,
}

impl Recipe {
    fn build(&self) -> Result<Provider, Error> {
        let provider = Provider::new(self.options.clone())?;
        match &self.bound_base_url {
            Some(url) => provider.for_base_url(url),
            None => Ok(provider),
        }
    }
}

struct Live {
    generation: u64,
    provider: Provider,
}

/// The last token handed out and the Python object built for it, so a warm
/// call returns the same object instead of building a new one.
struct LastToken {
    token: Secret,
    expires_at: Option<i64>,
    object: Py<PyAny>,
}

#[pyclass(frozen, module = "anthropic_wif._native", name = "NativeProvider")]
struct NativeProvider {
    recipe: Recipe,
    live: RwLock<Live>,
    token_class: Py<PyAny>,
    last: Mutex<Option<LastToken>>,
}

impl NativeProvider {
    fn from_recipe(py: Python<'_>, recipe: Recipe, token_class: Py<PyAny>) -> PyResult<Self> {
        install_atfork();
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        let built = {
            let recipe = recipe.clone();
            py.detach(move || recipe.build())
        };
        let provider = built.map_err(|e| to_pyerr(py, &e))?;
        Ok(NativeProvider {
            recipe,
            live: RwLock::new(Live { generation, provider }),
            token_class,
            last: Mutex::new(None),
        })
    }

    /// The core provider for this process: rebuilt once in a forked child.
    /// The parent's copy is leaked there, never dropped: its runtime threads
    /// and any lock a parent thread held at the fork do not exist in the child.
    fn provider(&self, py: Python<'_>) -> PyResult<Provider> {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        {
            let live =
                self.live.read().map_err(|_| PyRuntimeError::new_err("anthropic-wif: provider state poisoned"))?;
            if live.generation == generation {
                return Ok(live.provider.clone());
            }
        }
        self.rebuild(py, generation)
    }

    fn rebuild(&self, py: Python<'_>, generation: u64) -> PyResult<Provider> {
        let fresh = self.recipe.build().map_err(|e| to_pyerr(py, &e))?;
        let mut live =
            self.live.write().map_err(|_| PyRuntimeError::new_err("anthropic-wif: provider state poisoned"))?;
        if live.generation != generation {
            let old = std::mem::replace(&mut live.provider, fresh);
            // The parent's provider may hold locks or tasks of a runtime that does not
            // exist in this child: leak it rather than run its destructors.
            #[allow(clippy::mem_forget)]
            std::mem::forget(old);
            live.generation = generation;
        }
        Ok(live.provider.clone())
    }

    /// The environment identity sources read in a call that may exchange: a
    /// copy of `os.environ` taken now, or the one the `env` argument fixed.
    fn call_env(&self, py: Python<'_>) -> PyResult<Env> {
        match self.recipe.fixed_env {
            true => Ok(self.recipe.options.env.clone()),
            false => environ_snapshot(py),
        }
    }

    /// The in-memory token without I/O, if the engine considers it fresh.
    fn warm(&self) -> Option<AccessToken> {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let live = self.live.read().ok()?;
        if live.generation != generation {
            return None;
        }
        live.provider.cached()
    }

    /// The Python `AccessToken` for `token`, reusing the last one when equal.
    fn wrap(&self, py: Python<'_>, token: AccessToken) -> PyResult<Py<PyAny>> {
        if let Ok(last) = self.last.lock() {
            if let Some(l) = last.as_ref() {
                if l.expires_at == token.expires_at && l.token == token.token {
                    return Ok(l.object.clone_ref(py));
                }
            }
        }
        let object = self.token_class.bind(py).call1((token.token.expose(), token.expires_at))?.unbind();
        if let Ok(mut last) = self.last.lock() {
            *last = Some(LastToken { token: token.token, expires_at: token.expires_at, object: object.clone_ref(py) });
        }
        Ok(object)
    }
}

#[pymethods]
impl NativeProvider {
    #[new]
    #[pyo3(signature = (*, token_class, options))]
    fn new(py: Python<'_>, token_class: Py<PyAny>, options: PyRef<'_, NativeOptions>) -> PyResult<Self> {
        let fixed_env = options.options.env.is_some();
        let recipe = Recipe { options: options.provider_options(py)?, bound_base_url: None, fixed_env };
        NativeProvider::from_recipe(py, recipe, token_class)
    }

    /// A token with enough life left: the warm in-memory one when fresh,
    /// else (GIL released) the disk cache or a new exchange.
    #[pyo3(signature = (force_refresh = false))]
    fn get(&self, py: Python<'_>, force_refresh: bool) -> PyResult<Py<PyAny>> {
        if !force_refresh {
            if let Some(token) = self.warm() {
                return self.wrap(py, token);
            }
        }
        let provider = self.provider(py)?;
        let rx = start_on_runtime(provider, force_refresh, self.call_env(py)?);
        match wait_for_token(py, rx)? {
            Ok(token) => self.wrap(py, token),
            Err(e) => Err(to_pyerr(py, &e)),
        }
    }

    /// The warm token, or None: no I/O, never blocks.
    fn cached(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.warm() {
            Some(token) => Ok(Some(self.wrap(py, token)?)),
            None => Ok(None),
        }
    }

    /// Start obtaining a token on the shared runtime and complete `future`
    /// (an asyncio future of `event_loop`) through
    /// `event_loop.call_soon_threadsafe(resolve, future, ok, value)`.
    fn get_async(
        slf: Bound<'_, Self>,
        force_refresh: bool,
        event_loop: Py<PyAny>,
        future: Py<PyAny>,
        resolve: Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let provider = slf.get().provider(py)?;
        let env = slf.get().call_env(py)?;
        let this: Py<NativeProvider> = slf.unbind();
        let work =
            anthropic_wif_core::runtime::runtime().spawn(async move { provider.token_in(force_refresh, &env).await });
        complete_future(work, event_loop, future, resolve, move |py, token| this.get().wrap(py, token));
        Ok(())
    }

    /// A provider bound to another deployment (the SDK's `for_base_url`).
    /// A profile or explicit `base_url` that pins the deployment keeps it.
    fn for_base_url(&self, py: Python<'_>, base_url: String) -> PyResult<NativeProvider> {
        let provider = self.provider(py)?;
        let bound = {
            let url = base_url.clone();
            py.detach(move || provider.for_base_url(&url))
        };
        let bound = bound.map_err(|e| to_pyerr(py, &e))?;
        let recipe = Recipe { bound_base_url: Some(base_url), ..self.recipe.clone() };
        Ok(NativeProvider {
            recipe,
            live: RwLock::new(Live { generation: FORK_GENERATION.load(Ordering::SeqCst), provider: bound }),
            token_class: self.token_class.clone_ref(py),
            last: Mutex::new(None),
        })
    }

    /// A message the user should see (e.g. a static credential from the
    /// environment is used instead of federation), or None.
    fn notice(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.provider(py)?.notice().map(str::to_owned))
    }

    /// Drop the in-memory token (the next call re-checks disk).
    fn invalidate(&self, py: Python<'_>) -> PyResult<()> {
        let provider = self.provider(py)?;
        provider.invalidate();
        if let Ok(mut last) = self.last.lock() {
            *last = None;
        }
        Ok(())
    }
}

/// The engine version (the crate version).
#[pyfunction]
fn version() -> &'static str {
    anthropic_wif_core::VERSION
}

/// The shapes the Python types declare (options, identity sources, the
/// doctor report), from core (`anthropic_wif_core::schema`), as JSON text:
/// tests/python/test_schema.py compares them with this package's declarations.
#[pyfunction]
fn schema() -> String {
    anthropic_wif_core::schema::schema().to_string()
}

/// How many forks this process descends from since the module was loaded
/// (tests use it to see that the child noticed its fork).
#[pyfunction]
fn _fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::SeqCst)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    install_atfork();
    m.add_class::<NativeOptions>()?;
    m.add_class::<NativeProvider>()?;
    m.add_function(wrap_pyfunction!(doctor, m)?)?;
    m.add_function(wrap_pyfunction!(doctor_async, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(schema, m)?)?;
    m.add_function(wrap_pyfunction!(_fork_generation, m)?)?;
    Ok(())
}
