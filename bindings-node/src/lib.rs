//! Node-API glue for anthropic-wif (issue 4): the Node face of the engine.
//!
//! Thin on purpose. Everything here is conversion:
//! - the options object (as JSON, from `index.js`) → `ProviderOptions`;
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
use std::path::PathBuf;
use std::time::Duration;

use anthropic_wif_core::config::{Env, FieldNames, Overrides};
use anthropic_wif_core::doctor::{self, DoctorOptions};
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::{AccessToken, Error, ErrorKind, HandOutMargin, Provider, ProviderOptions};
use napi::bindgen_prelude::Object;
use napi::{Env as NapiEnv, Status};
use napi_derive::napi;
use serde_json::{Map, Value};

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

/// The options `new Provider(options)` accepts, with their JS names.
const KNOWN_OPTIONS: &[&str] = &[
    "profile",
    "federationRuleId",
    "organizationId",
    "serviceAccountId",
    "workspaceId",
    "baseURL",
    "identityToken",
    "configDir",
    "credentialsPath",
    "noCache",
    "minRemaining",
    "lockTimeout",
    "env",
];

/// The options `doctor(options, doctorOptions)` accepts as its second argument.
const KNOWN_DOCTOR_OPTIONS: &[&str] = &["exchange", "expectedAudience"];

use anthropic_wif_core::json::type_name;

fn opt_string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, Error> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::config(format!(
            "option {name} must be a string, got {}: pass e.g. new Provider({{ {name}: '…' }})",
            type_name(other)
        ))),
    }
}

/// Turn the JSON of the JS options object into engine options, resolving
/// from the `env` option when given, else from `caller` (a copy of the
/// caller's `process.env`). `ANTHROPIC_WIF_LOG` is taken from `caller` even
/// with the `env` option: the log level is the program's, not the provider's.
fn parse_options(json: &str, caller: Option<HashMap<String, String>>) -> Result<ProviderOptions, Error> {
    parse_options_for(json, "new Provider(options)", caller)
}

/// [`parse_options`], with `call` (e.g. `doctor(options)`) naming the API in messages.
fn parse_options_for(
    json: &str,
    call: &str,
    caller: Option<HashMap<String, String>>,
) -> Result<ProviderOptions, Error> {
    let caller = caller.map(Env::fixed);
    if let Some(env) = &caller {
        anthropic_wif_core::diag::init_from(env);
    }
    let value: Value = serde_json::from_str(json)
        .map_err(|e| Error::config(format!("{call}: options are not serialisable as JSON ({e})")))?;
    let map = match value {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        other => return Err(Error::config(format!("{call}: options must be an object, got {}", type_name(&other)))),
    };
    for key in map.keys() {
        if !KNOWN_OPTIONS.contains(&key.as_str()) {
            let hint = if key == "baseUrl" { " (did you mean baseURL?)".to_string() } else { String::new() };
            return Err(Error::config(format!(
                "{call}: unknown option {key}{hint}; known options: {}",
                KNOWN_OPTIONS.join(", ")
            )));
        }
    }

    let identity_token = match map.get("identityToken") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(serde_json::from_value::<IdentitySpec>(v.clone()).map_err(|e| {
            Error::config(format!(
                "option identityToken is not a valid identity-token source ({e}); use the profile's identity_token shape, \
                 e.g. {{ source: 'file', path: '/var/run/secrets/anthropic.com/token' }}"
            ))
        })?),
        Some(other) => {
            return Err(Error::config(format!(
                "option identityToken must be an object like {{ source: 'file', path: '…' }}, got {}",
                type_name(other)
            )))
        }
    };

    let overrides = Overrides {
        profile: opt_string(&map, "profile")?,
        federation_rule_id: opt_string(&map, "federationRuleId")?,
        organization_id: opt_string(&map, "organizationId")?,
        service_account_id: opt_string(&map, "serviceAccountId")?,
        workspace_id: opt_string(&map, "workspaceId")?,
        base_url: opt_string(&map, "baseURL")?,
        identity_token,
        config_dir: opt_string(&map, "configDir")?.map(PathBuf::from),
        credentials_path: opt_string(&map, "credentialsPath")?.map(PathBuf::from),
        names: FieldNames::CamelCase,
    };

    let mut options = ProviderOptions::new("node", Env::default());
    options.overrides = overrides;

    match map.get("noCache") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => options.disk_cache = !*b,
        Some(other) => {
            return Err(Error::config(format!("option noCache must be true or false, got {}", type_name(other))))
        }
    }
    match map.get("minRemaining") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_i64() {
            Some(secs) if (0..=86_400).contains(&secs) => options.min_remaining = HandOutMargin::AtLeast(secs),
            _ => {
                return Err(Error::config(format!(
                    "option minRemaining must be a whole number of seconds between 0 and 86400, got {n}"
                )))
            }
        },
        Some(other) => {
            return Err(Error::config(format!(
                "option minRemaining must be a number of seconds, got {}",
                type_name(other)
            )))
        }
    }
    match map.get("lockTimeout") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if (0.0..=3600.0).contains(&secs) => options.lock_timeout = Duration::from_secs_f64(secs),
            _ => {
                return Err(Error::config(format!(
                    "option lockTimeout must be a number of seconds between 0 and 3600, got {n}"
                )))
            }
        },
        Some(other) => {
            return Err(Error::config(format!(
                "option lockTimeout must be a number of seconds, got {}",
                type_name(other)
            )))
        }
    }
    match map.get("env") {
        None | Some(Value::Null) => match caller {
            Some(env) => options.env = env,
            None => {
                return Err(Error::internal(format!(
                    "{call}: the addon was called without the environment; load it through the package \
                     (require('anthropic-wif')), not directly"
                )))
            }
        },
        Some(Value::Object(vars)) => {
            let mut fixed = HashMap::with_capacity(vars.len());
            for (k, v) in vars {
                match v {
                    Value::String(s) => {
                        fixed.insert(k.clone(), s.clone());
                    }
                    Value::Null => {}
                    other => {
                        return Err(Error::config(format!(
                            "option env: variable {k} must be a string, got {}",
                            type_name(other)
                        )))
                    }
                }
            }
            options.env = Env::fixed(fixed);
        }
        Some(other) => {
            return Err(Error::config(format!(
                "option env must be an object of strings (e.g. {{ ...process.env }}), got {}",
                type_name(other)
            )))
        }
    }
    Ok(options)
}

/// The engine's provider, one per `new Provider()`: its own in-memory cache
/// with single-flight; the disk cache is shared with the CLI, Python and the SDKs.
#[napi]
pub struct NativeProvider {
    inner: Provider,
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
    fn wrap(inner: Provider) -> Self {
        NativeProvider { inner, seen: std::sync::Mutex::new(Seen::default()) }
    }
}

#[napi]
impl NativeProvider {
    /// `optionsJson`: `JSON.stringify(options ?? {})`; `env`: a copy of the
    /// caller's `process.env` (with `options.env`, only its `ANTHROPIC_WIF_LOG`
    /// counts). Throws a marked error.
    #[napi(constructor)]
    pub fn new(options_json: String, env: Option<HashMap<String, String>>) -> napi::Result<Self> {
        let options = parse_options(&options_json, env).map_err(|e| throw(&e))?;
        let inner = Provider::new(options).map_err(|e| throw(&e))?;
        Ok(NativeProvider::wrap(inner))
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
        type Resolver = Box<dyn FnOnce(NapiEnv) -> napi::Result<NativeOutcome> + Send>;
        let (deferred, promise) = env.create_deferred::<NativeOutcome, Resolver>()?;
        let provider = self.inner.clone();
        let rt = anthropic_wif_core::runtime::runtime();
        // The work runs in its own task so that even a panic in it settles the
        // promise (as an internal error) instead of leaving it pending forever.
        let work = rt.spawn(async move {
            match vars {
                Some(vars) => provider.token_in(force_refresh, &Env::fixed(vars)).await,
                None => provider.token(force_refresh).await,
            }
        });
        rt.spawn(async move {
            let outcome = match work.await {
                Ok(Ok(t)) => NativeOutcome { token: Some(to_js_token(&t)), error: None },
                Ok(Err(e)) => NativeOutcome { token: None, error: Some(error_json(&e)) },
                Err(join) => {
                    let e = Error::internal(format!(
                        "the token task failed unexpectedly ({}); please report this",
                        if join.is_panic() { "panic" } else { "cancelled" }
                    ));
                    NativeOutcome { token: None, error: Some(error_json(&e)) }
                }
            };
            deferred.resolve(Box::new(move |_env| Ok(outcome)));
        });
        Ok(promise)
    }

    /// A provider for another deployment (the SDK's `for_base_url`).
    #[napi]
    pub fn for_base_url(&self, base_url: String) -> napi::Result<NativeProvider> {
        let inner = self.inner.for_base_url(&base_url).map_err(|e| throw(&e))?;
        Ok(NativeProvider::wrap(inner))
    }

    /// Drop the in-memory token; the next call re-checks disk.
    #[napi]
    pub fn invalidate(&self) {
        self.inner.invalidate();
    }
}

/// Parse `doctor()`'s second argument: `{ exchange?: boolean, expectedAudience?: string }`.
fn parse_doctor_options(json: &str) -> Result<DoctorOptions, Error> {
    let value: Value = serde_json::from_str(json).map_err(|e| {
        Error::config(format!("doctor(options, doctorOptions): doctorOptions are not serialisable as JSON ({e})"))
    })?;
    let map = match value {
        Value::Null => Map::new(),
        Value::Object(m) => m,
        other => {
            return Err(Error::config(format!(
                "doctor(options, doctorOptions): doctorOptions must be an object like {{ exchange: true }}, got {}",
                type_name(&other)
            )))
        }
    };
    for key in map.keys() {
        if !KNOWN_DOCTOR_OPTIONS.contains(&key.as_str()) {
            return Err(Error::config(format!(
                "doctor(options, doctorOptions): unknown doctor option {key}; known: {} (provider settings go in the first argument)",
                KNOWN_DOCTOR_OPTIONS.join(", ")
            )));
        }
    }
    let mut out = DoctorOptions::default();
    match map.get("exchange") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => out.exchange = *b,
        Some(other) => {
            return Err(Error::config(format!(
                "doctor option exchange must be true or false, got {}",
                type_name(other)
            )))
        }
    }
    match map.get("expectedAudience") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => out.expected_audience = Some(s.trim().to_string()),
        Some(other) => {
            return Err(Error::config(format!(
                "doctor option expectedAudience must be a string (the audience the federation rule expects), got {}",
                type_name(other)
            )))
        }
    }
    Ok(out)
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
    let options = parse_options_for(&options_json, "doctor(options)", vars).map_err(|e| throw(&e))?;
    let doctor_options = parse_doctor_options(&doctor_json).map_err(|e| throw(&e))?;
    type Resolver = Box<dyn FnOnce(NapiEnv) -> napi::Result<NativeReport> + Send>;
    let (deferred, promise) = env.create_deferred::<NativeReport, Resolver>()?;
    let rt = anthropic_wif_core::runtime::runtime();
    let work = rt.spawn(async move {
        let report = doctor::diagnose_async(&options, &doctor_options).await;
        // The struct itself, not `to_json()`: keeps the CLI's `--json` key order.
        serde_json::to_string(&report).map_err(|e| Error::internal(format!("cannot encode the doctor report: {e}")))
    });
    rt.spawn(async move {
        let outcome = match work.await {
            Ok(Ok(json)) => NativeReport { json: Some(json), error: None },
            Ok(Err(e)) => NativeReport { json: None, error: Some(error_json(&e)) },
            Err(join) => {
                let e = Error::internal(format!(
                    "the doctor task failed unexpectedly ({}); please report this",
                    if join.is_panic() { "panic" } else { "cancelled" }
                ));
                NativeReport { json: None, error: Some(error_json(&e)) }
            }
        };
        deferred.resolve(Box::new(move |_env| Ok(outcome)));
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

/// `debug` or `release`: how this addon was compiled (benchmarks report it).
#[napi]
pub fn build_profile() -> String {
    if cfg!(debug_assertions) { "debug" } else { "release" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_options_none(json: &str) -> Result<ProviderOptions, Error> {
        parse_options(json, Some(HashMap::new()))
    }

    #[test]
    fn the_environment_is_the_callers_unless_the_env_option_fixes_it() {
        let caller = || Some(HashMap::from([("FROM".to_string(), "caller".to_string())]));
        let o = parse_options("{}", caller()).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("caller"));
        let o = parse_options(r#"{"env":{"FROM":"option"}}"#, caller()).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("option"));
        let o = parse_options(r#"{"env":{"FROM":"option"}}"#, None).unwrap();
        assert_eq!(o.env.get("FROM").as_deref(), Some("option"));
        let e = parse_options("{}", None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message().contains("without the environment"), "{}", e.message());
    }

    #[test]
    fn options_are_parsed_and_checked() {
        let o = parse_options_none(
            r#"{"federationRuleId":"fdrl_x","organizationId":"u","baseURL":"http://127.0.0.1:1",
                "identityToken":{"source":"file","path":"/t"},"noCache":true,"minRemaining":60,
                "env":{"A":"b"}}"#,
        )
        .unwrap();
        assert_eq!(o.overrides.federation_rule_id.as_deref(), Some("fdrl_x"));
        assert_eq!(o.overrides.base_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(o.overrides.identity_token, Some(IdentitySpec::File { path: "/t".into() }));
        assert!(!o.disk_cache);
        assert_eq!(o.min_remaining, HandOutMargin::AtLeast(60));
        assert_eq!(o.env.get("A").as_deref(), Some("b"));
        assert_eq!(o.overrides.names, FieldNames::CamelCase);

        let e = parse_options_none(r#"{"baseUrl":"x"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message().contains("baseURL"), "{}", e.message());
        let e = parse_options_none(r#"{"organizationId":5}"#).unwrap_err();
        assert!(e.message().contains("organizationId must be a string"), "{}", e.message());
        let e = parse_options_none(r#"{"identityToken":{"source":"nope"}}"#).unwrap_err();
        assert!(e.message().contains("identityToken"), "{}", e.message());
        assert!(parse_options_none("null").is_ok());
        assert!(parse_options_none("{}").is_ok());

        let o = parse_options_none(r#"{"lockTimeout":0.5}"#).unwrap();
        assert_eq!(o.lock_timeout, Duration::from_millis(500));
        let e = parse_options_none(r#"{"lockTimeout":-1}"#).unwrap_err();
        assert!(e.message().contains("lockTimeout"), "{}", e.message());
        let e = parse_options_for(r#"{"bogus":1}"#, "doctor(options)", Some(HashMap::new())).unwrap_err();
        assert!(e.message().starts_with("doctor(options): unknown option bogus"), "{}", e.message());
    }

    #[test]
    fn doctor_options_are_parsed_and_checked() {
        let d = parse_doctor_options(r#"{"exchange":true,"expectedAudience":" https://aud.example "}"#).unwrap();
        assert!(d.exchange);
        assert_eq!(d.expected_audience.as_deref(), Some("https://aud.example"));
        let d = parse_doctor_options("null").unwrap();
        assert!(!d.exchange && d.expected_audience.is_none());
        let e = parse_doctor_options(r#"{"exchange":"yes"}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Config);
        assert!(e.message().contains("exchange must be true or false"), "{}", e.message());
        let e = parse_doctor_options(r#"{"baseURL":"x"}"#).unwrap_err();
        assert!(e.message().contains("unknown doctor option baseURL"), "{}", e.message());
        let e = parse_doctor_options(r#"{"expectedAudience":3}"#).unwrap_err();
        assert!(e.message().contains("expectedAudience"), "{}", e.message());
        assert!(parse_doctor_options("[]").is_err());
    }
}
