//! Node-API glue for anthropic-wif (issue 4): the Node face of the engine.
//!
//! Thin on purpose. Everything here is conversion:
//! - the options object (as JSON, from `index.js`) → core's one options
//!   parser (`anthropic_wif_core::options`) → `ProviderOptions`;
//! - `Provider::token` → a JS promise settled from the core's one tokio
//!   runtime (`anthropic_wif_core::runtime::runtime()`), so the event loop
//!   never waits on I/O and napi's own runtime is never started;
//! - `Provider::cached` → a synchronous, I/O-free warm path (`warm`), which
//!   sends only a generation number when JS already holds the token;
//! - `anthropic_wif_core::Error` → its one serialised form (JSON: `kind`,
//!   `message`, `status`, `request_id`, `error_code`), which `index.js` turns
//!   into a `WifError` subclass. napi's errors cannot carry those fields, so
//!   async failures resolve with `{ error }` (that JSON) and sync ones throw
//!   it as a message with a fixed marker prefix;
//! - the caller's environment: `index.js` passes a copy of the calling
//!   thread's `process.env` (a worker's is its own) at construction and with
//!   each call that may exchange, unless the `env` option fixes one. The
//!   engine never calls `getenv` (core/src/env.rs).

use std::collections::HashMap;

use anthropic_wif_core::config::Env;
use anthropic_wif_core::doctor;
use anthropic_wif_core::options::{FieldNames, Options, Scope};
use anthropic_wif_core::{AccessToken, Error, ErrorKind, HandOutMargin, Provider, ProviderOptions};
use napi::bindgen_prelude::Object;
use napi::{Env as NapiEnv, Status};
use napi_derive::napi;

/// Prefix of a thrown native error whose message is an error's JSON ([`error_json`]).
/// `index.js` recognises it and rethrows the matching `WifError` subclass.
const ERROR_MARKER: &str = "anthropic-wif-error:";

/// A token as JS sees it. `expiresAt` is unix seconds, `null` for a token
/// that does not expire (a static bearer).
#[napi(object, use_nullable = true)]
pub struct NativeToken {
    pub token: String,
    pub expires_at: Option<i64>,
}

/// What the async `token()` settles with: a token, or an error record.
#[napi(object)]
pub struct NativeOutcome {
    pub token: Option<NativeToken>,
    /// The error's serialised form (JSON).
    pub error: Option<String>,
}

/// An engine error in its one serialised form (core's `Serialize for Error`).
fn error_json(e: &Error) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| format!("{{\"kind\":\"internal\",\"message\":{:?}}}", e.message()))
}

fn to_js_token(t: &AccessToken) -> NativeToken {
    NativeToken { token: t.token.expose().to_string(), expires_at: t.expires_at }
}

/// A sync failure: thrown as a JS `Error` whose message is the marker + JSON.
fn throw(e: &Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("{ERROR_MARKER}{}", error_json(e)))
}

/// The engine's options from the JSON of a JS options object, parsed by
/// core's one options parser (`anthropic_wif_core::options`, camelCase names
/// in messages). `call` names the API in messages; `caller` is a copy of the
/// caller's `process.env` (used unless the `env` option fixes one, and the
/// source of `ANTHROPIC_WIF_LOG` either way).
fn parse_options(
    json: &str,
    call: &str,
    caller: Option<HashMap<String, String>>,
) -> Result<(Options, ProviderOptions), Error> {
    let options = Options::from_json_text(FieldNames::CamelCase, call, json, &[Scope::Provider])?;
    let caller = match (caller, &options.env) {
        (Some(vars), _) => Env::fixed(vars),
        (None, Some(_)) => Env::default(),
        (None, None) => {
            return Err(Error::internal(format!(
                "{call}: the addon was called without the environment; load it through the package \
                 (require('anthropic-wif')), not directly"
            )))
        }
    };
    let engine = options.provider_options("node", HandOutMargin::RefreshPolicy, caller);
    Ok((options, engine))
}

/// The engine's provider, one per `new Provider()`: its own in-memory cache
/// with single-flight; the disk cache is shared with the CLI, Python and the SDKs.
#[napi]
pub struct NativeProvider {
    inner: Provider,
    /// The settings given, as core's secret-free `(name, shown)` pairs (for `util.inspect`).
    summary: Vec<(String, String)>,
    /// The token last handed to JS by [`NativeProvider::warm`] and its
    /// generation, so a warm call that finds the same token returns only the
    /// generation number and JS reuses the strings it already has.
    seen: std::sync::Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    token: Option<anthropic_wif_core::Secret>,
    generation: u32,
}

/// A token together with the generation [`NativeProvider::warm`] gave it.
#[napi(object, use_nullable = true)]
pub struct WarmToken {
    pub token: String,
    pub expires_at: Option<i64>,
    pub generation: u32,
}

impl NativeProvider {
    fn wrap(inner: Provider, summary: Vec<(String, String)>) -> Self {
        NativeProvider { inner, summary, seen: std::sync::Mutex::new(Seen::default()) }
    }
}

#[napi]
impl NativeProvider {
    /// `optionsJson`: `JSON.stringify(options ?? {})`; `env`: a copy of the
    /// caller's `process.env` (with `options.env`, only its `ANTHROPIC_WIF_LOG`
    /// counts). Throws a marked error.
    #[napi(constructor)]
    pub fn new(options_json: String, env: Option<HashMap<String, String>>) -> napi::Result<Self> {
        let (options, engine) = parse_options(&options_json, "new Provider(options)", env).map_err(|e| throw(&e))?;
        let inner = Provider::new(engine).map_err(|e| throw(&e))?;
        Ok(NativeProvider::wrap(inner, options.summary()))
    }

    /// The settings given, as `[name, shown]` pairs (never a secret), for `util.inspect`.
    #[napi]
    pub fn summary(&self) -> Vec<Vec<String>> {
        self.summary.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect()
    }

    /// The warm path, synchronous and I/O-free. `null` when memory holds no
    /// fresh token; the number `known` when the fresh token is the one JS
    /// already holds under that generation; else the token with a new generation.
    #[napi(ts_return_type = "null | number | WarmToken")]
    pub fn warm(&self, known: u32) -> Option<napi::Either<u32, WarmToken>> {
        let t = self.inner.cached()?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.generation != 0 && seen.token.as_ref() == Some(&t.token) {
            if seen.generation == known {
                return Some(napi::Either::A(known));
            }
        } else {
            seen.generation = seen.generation.wrapping_add(1).max(1);
            seen.token = Some(t.token.clone());
        }
        Some(napi::Either::B(WarmToken {
            token: t.token.expose().to_string(),
            expires_at: t.expires_at,
            generation: seen.generation,
        }))
    }

    /// A promise of `{ token }` or `{ error }`, computed on the core runtime.
    /// `vars`: a copy of the caller's `process.env` taken just now, read by
    /// identity sources if this call exchanges; `null` when `options.env`
    /// fixed the environment at construction.
    #[napi(ts_return_type = "Promise<NativeOutcome>")]
    pub fn token<'env>(
        &self,
        env: &'env napi::Env,
        force_refresh: bool,
        vars: Option<HashMap<String, String>>,
    ) -> napi::Result<Object<'env>> {
        let provider = self.inner.clone();
        let work = async move {
            match vars {
                Some(vars) => provider.token_in(force_refresh, &Env::fixed(vars)).await,
                None => provider.token(force_refresh).await,
            }
        };
        settle(env, "token", work, |r| match r {
            Ok(t) => NativeOutcome { token: Some(to_js_token(&t)), error: None },
            Err(e) => NativeOutcome { token: None, error: Some(e) },
        })
    }

    /// A provider for another deployment (the SDK's `for_base_url`).
    #[napi]
    pub fn for_base_url(&self, base_url: String) -> napi::Result<NativeProvider> {
        let inner = self.inner.for_base_url(&base_url).map_err(|e| throw(&e))?;
        let mut summary = self.summary.clone();
        summary.push(("forBaseURL".into(), FieldNames::CamelCase.render(&serde_json::Value::String(base_url))));
        Ok(NativeProvider::wrap(inner, summary))
    }

    /// Drop the in-memory token; the next call re-checks disk.
    #[napi]
    pub fn invalidate(&self) {
        self.inner.invalidate();
    }
}

/// What the async `doctor()` settles with: the report as JSON text, or an error's JSON.
#[napi(object)]
pub struct NativeReport {
    pub json: Option<String>,
    /// The error's serialised form (JSON).
    pub error: Option<String>,
}

/// `doctor(optionsJson, doctorJson, env)`: the core diagnosis (`anthropic-wif
/// doctor --json`), computed on the core runtime; `vars` as for
/// `new NativeProvider`. Bad options throw a marked config error
/// synchronously; a configuration that does not resolve is a finding in the
/// report, not an error.
#[napi(ts_return_type = "Promise<NativeReport>")]
pub fn doctor<'env>(
    env: &'env napi::Env,
    options_json: String,
    doctor_json: String,
    vars: Option<HashMap<String, String>>,
) -> napi::Result<Object<'env>> {
    let (_, options) = parse_options(&options_json, "doctor(options)", vars).map_err(|e| throw(&e))?;
    let doctor_options = Options::from_json_text(
        FieldNames::CamelCase,
        "doctor(options, doctorOptions)",
        &doctor_json,
        &[Scope::Doctor],
    )
    .map_err(|e| throw(&e))?
    .doctor;
    let work = async move {
        let report = doctor::diagnose_async(&options, &doctor_options).await;
        // The struct itself, not `to_json()`: keeps the CLI's `--json` key order.
        serde_json::to_string(&report).map_err(|e| Error::internal(format!("cannot encode the doctor report: {e}")))
    };
    settle(env, "doctor", work, |r| match r {
        Ok(json) => NativeReport { json: Some(json), error: None },
        Err(e) => NativeReport { json: None, error: Some(e) },
    })
}

/// A promise settled with `outcome` of `work`'s result, `work` running on
/// the core runtime in a task of its own, so that even a panic in it settles
/// the promise (as an internal error) instead of leaving it pending forever.
fn settle<'env, T, O>(
    env: &'env napi::Env,
    what: &'static str,
    work: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
    outcome: impl FnOnce(Result<T, String>) -> O + Send + 'static,
) -> napi::Result<Object<'env>>
where
    T: Send + 'static,
    O: napi::bindgen_prelude::ToNapiValue + Send + 'static,
{
    type Resolver<O> = Box<dyn FnOnce(NapiEnv) -> napi::Result<O> + Send>;
    let (deferred, promise) = env.create_deferred::<O, Resolver<O>>()?;
    let rt = anthropic_wif_core::runtime::runtime();
    let work = rt.spawn(work);
    rt.spawn(async move {
        let result = match work.await {
            Ok(r) => r.map_err(|e| error_json(&e)),
            Err(join) => Err(error_json(&Error::internal(format!(
                "the {what} task failed unexpectedly ({}); please report this",
                if join.is_panic() { "panic" } else { "cancelled" }
            )))),
        };
        let settled = outcome(result);
        deferred.resolve(Box::new(move |_env| Ok(settled)));
    });
    Ok(promise)
}

/// Error kinds, in the order the engine documents them (for tests and docs).
#[napi]
pub fn error_kinds() -> Vec<String> {
    [ErrorKind::Config, ErrorKind::Identity, ErrorKind::Denied, ErrorKind::Unavailable, ErrorKind::Internal]
        .iter()
        .map(|k| k.as_str().to_string())
        .collect()
}

/// The engine version (the crate version).
#[napi]
pub fn engine_version() -> String {
    anthropic_wif_core::VERSION.to_string()
}

/// The shapes index.d.ts declares (options, identity sources, the doctor
/// report), from core (`anthropic_wif_core::schema`), as JSON text:
/// tests/node/types.test.js compares them with the declarations.
#[napi]
pub fn schema() -> String {
    anthropic_wif_core::schema::schema().to_string()
}

/// `debug` or `release`: how this addon was compiled (benchmarks report it).
#[napi]
pub fn build_profile() -> String {
    if cfg!(debug_assertions) { "debug" } else { "release" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_is_the_callers_unless_the_env_option_fixes_it() {
        let caller = || Some(HashMap::from([("FROM".to_string(), "caller".to_string())]));
        let call = "new Provider(options)";
        let (_, o) = parse_options("{}", call, caller()).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("caller"));
        let (_, o) = parse_options(r#"{"env":{"FROM":"option"}}"#, call, caller()).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("option"));
        let (_, o) = parse_options(r#"{"env":{"FROM":"option"}}"#, call, None).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("option"));
        let e = parse_options("{}", call, None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message().contains("without the environment"), "{}", e.message());
    }
}
