//! The one options type (docs/design.md §11): every setting a face takes —
//! the CLI's flags, the Python keyword arguments, the Node options object —
//! is a row of [`OPTIONS`], parsed and checked here once, with one set of
//! messages that name the option the way that face's user wrote it.
//!
//! A face translates its language's values into JSON ([`serde_json::Value`]:
//! `None`/`null`/`undefined` mean "not given") and hands them over with its
//! [`FieldNames`]; nothing else about options is written in a face:
//! - the CLI builds its flags from the table (`--kebab-case`, values as text);
//! - Python passes its keyword arguments (`snake_case`);
//! - Node passes its options object (`camelCase`, `baseURL`).
//!
//! The rules decided here, for every face alike:
//! - an unknown option is a configuration error that says "did you mean …?";
//! - a value of the wrong type is a configuration error naming the option;
//! - an explicit `""` is passed on, never dropped: an optional id given as
//!   `""` is left out of the exchange without falling back to the
//!   environment or a profile, a required id or a name is refused downstream,
//!   a path is refused here;
//! - numbers have one range (`min_remaining` 0‥86 400 whole seconds,
//!   `lock_timeout` 0‥3 600 seconds, `rotation_wait` 0‥600 seconds).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::cache::HandOutMargin;
use crate::config::{Env, Overrides};
use crate::doctor::DoctorOptions;
use crate::error::looks_secret;
use crate::error::{Error, Result};
use crate::identity::IdentitySpec;
use crate::provider::ProviderOptions;

pub(crate) use crate::option_table::def;
pub use crate::option_table::{FieldNames, Kind, OptionDef, Scope, OPTIONS};

/// Every setting of a provider (and of a diagnosis), checked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The configuration settings (they come before the SDKs' chain).
    pub overrides: Overrides,
    /// Skip the on-disk cache (`--no-cache`).
    pub no_cache: bool,
    /// Seconds, 0‥`MAX_MIN_REMAINING`.
    pub min_remaining: Option<u32>,
    /// Bound on waiting for another exchange of the same cache file.
    pub lock_timeout: Option<Duration>,
    /// How long to wait for a fresh identity token when the current one was presented already.
    pub rotation_wait: Option<Duration>,
    /// A fixed environment instead of the caller's.
    pub env: Option<Env>,
    /// The doctor's own options.
    pub doctor: DoctorOptions,
}

impl Options {
    /// No options given, for the face that spells them `names`.
    pub fn new(names: FieldNames) -> Self {
        Options { overrides: Overrides { names, ..Overrides::default() }, ..Options::default() }
    }

    /// The face these options came from.
    pub fn names(&self) -> FieldNames {
        self.overrides.names
    }

    /// Parse an object of options as the face's user wrote it (keys in that
    /// face's spelling; `null` means not given). `call` (e.g. `new
    /// Provider(options)`) starts every message; `scopes` are the options
    /// this call takes.
    pub fn from_object(names: FieldNames, call: &str, object: &Value, scopes: &[Scope]) -> Result<Options> {
        let mut options = Options::new(names);
        let map = match object {
            Value::Null => return Ok(options),
            Value::Object(m) => m,
            other => {
                return Err(Error::config(format!(
                    "{call}: the {}s must be an object, got {}",
                    names.noun(),
                    names.type_name(other)
                )))
            }
        };
        for (key, value) in map {
            let Some(d) = OPTIONS.iter().find(|d| names.key(d) == *key && scopes.contains(&d.scope)) else {
                return Err(unknown(names, call, key, scopes));
            };
            options.set(d, value).map_err(|e| e.context(call))?;
        }
        Ok(options)
    }

    /// [`Options::from_object`] of JSON text (what the Node face sends).
    pub fn from_json_text(names: FieldNames, call: &str, text: &str, scopes: &[Scope]) -> Result<Options> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("{call}: the options are not serialisable as JSON ({e})")))?;
        Options::from_object(names, call, &value, scopes)
    }

    /// Set one option from a face's value (`null`: leave it unset).
    pub fn set(&mut self, d: &OptionDef, value: &Value) -> Result<()> {
        let names = self.names();
        let label = names.name(d.name);
        if value.is_null() {
            return Ok(());
        }
        let wrong =
            || Error::config(format!("{label} must be {}, got {}", names.expected(d.kind), names.type_name(value)));
        match d.kind {
            Kind::Text => {
                let s = value.as_str().ok_or_else(wrong)?.to_string();
                let o = &mut self.overrides;
                match d.name {
                    "profile" => o.profile = Some(s),
                    "federation_rule_id" => o.federation_rule_id = Some(s),
                    "organization_id" => o.organization_id = Some(s),
                    "service_account_id" => o.service_account_id = Some(s),
                    "workspace_id" => o.workspace_id = Some(s),
                    "base_url" => o.base_url = Some(s),
                    "expected_audience" => {
                        self.doctor.expected_audience = Some(s.trim().to_string()).filter(|s| !s.is_empty())
                    }
                    other => return Err(unhandled(other)),
                }
            }
            Kind::Path => {
                let s = value.as_str().ok_or_else(wrong)?;
                if s.is_empty() {
                    return Err(Error::config(format!(
                        "{label} is empty: give a path, or leave it out for the default"
                    )));
                }
                match d.name {
                    "config_dir" => self.overrides.config_dir = Some(PathBuf::from(s)),
                    "credentials_path" => self.overrides.credentials_path = Some(PathBuf::from(s)),
                    other => return Err(unhandled(other)),
                }
            }
            Kind::Source => {
                let spec = match (value, names) {
                    (Value::String(text), FieldNames::Flags) => IdentitySpec::from_json_text(text, &label),
                    (Value::Object(_), _) => IdentitySpec::from_json(value, &label),
                    _ => return Err(wrong()),
                }
                .map_err(Error::config)?;
                self.overrides.identity_token = Some(spec);
            }
            Kind::Switch => {
                let b = value.as_bool().ok_or_else(wrong)?;
                match d.name {
                    "no_cache" => self.no_cache = b,
                    "exchange" => self.doctor.exchange = b,
                    other => return Err(unhandled(other)),
                }
            }
            Kind::Seconds { max, whole } => {
                let n = match (value, names) {
                    (Value::Number(n), _) => n.as_f64(),
                    // Command-line values are text.
                    (Value::String(s), FieldNames::Flags) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                    _ => return Err(wrong()),
                };
                let shown = match value {
                    // A number written on the command line reads as the number it is.
                    Value::String(s) if n.is_some() => s.trim().to_string(),
                    Value::String(s) if s.len() <= 24 && !looks_secret(s) => format!("{s:?}"),
                    Value::String(_) => "text that is not a number".to_string(),
                    other => other.to_string(),
                };
                let n = n
                    .filter(|n| (0.0..=f64::from(max)).contains(n) && (!whole || n.fract() == 0.0))
                    .ok_or_else(|| Error::config(format!("{label} must be {}, got {shown}", names.expected(d.kind))))?;
                match d.name {
                    "min_remaining" => self.min_remaining = Some(n as u32),
                    "lock_timeout" => self.lock_timeout = Some(Duration::from_secs_f64(n)),
                    "rotation_wait" => self.rotation_wait = Some(Duration::from_secs_f64(n)),
                    other => return Err(unhandled(other)),
                }
            }
            Kind::Vars => {
                let Value::Object(vars) = value else { return Err(wrong()) };
                let mut fixed = Vec::with_capacity(vars.len());
                for (k, v) in vars {
                    match v {
                        Value::String(s) => fixed.push((k.clone(), s.clone())),
                        Value::Null => {}
                        other => {
                            return Err(Error::config(format!(
                                "{label}: variable {k} must be a string, got {}",
                                names.type_name(other)
                            )))
                        }
                    }
                }
                self.env = Some(Env::fixed(fixed));
            }
        }
        Ok(())
    }

    /// The engine's options. `caller` is the environment the face just took
    /// a copy of; it is used unless the `env` option fixes another, and
    /// `ANTHROPIC_WIF_LOG` is taken from it either way (the log level is the
    /// program's, not the provider's).
    ///
    /// The mapping onto [`ProviderOptions`]: `client` is the User-Agent
    /// comment; `margin` is the face's default hand-out margin (the credential
    /// process's [`HandOutMargin::STREAM_SAFE`], the bindings' and the proxy's
    /// [`HandOutMargin::RefreshPolicy`]); `min_remaining` given replaces it
    /// with [`HandOutMargin::AtLeast`] that many seconds; `no_cache` is
    /// `disk_cache = false`; `lock_timeout` and `rotation_wait` replace their defaults.
    pub fn provider_options(&self, client: &str, margin: HandOutMargin, caller: Env) -> ProviderOptions {
        crate::diag::init_from(&caller);
        let env = self.env.clone().unwrap_or(caller);
        let mut o = ProviderOptions::new(client, env);
        o.overrides = self.overrides.clone();
        o.disk_cache = !self.no_cache;
        o.min_remaining = match self.min_remaining {
            Some(s) => HandOutMargin::AtLeast(i64::from(s)),
            None => margin,
        };
        if let Some(t) = self.lock_timeout {
            o.lock_timeout = t;
        }
        if let Some(t) = self.rotation_wait {
            o.rotation_wait = t;
        }
        o
    }

    /// What was given, as `(name, value)` pairs in the face's spelling and
    /// syntax, for `repr` / `util.inspect`: ids, names and paths as given
    /// (unless one looks like a token), the identity source by its kind, the
    /// environment by its size. Never a secret.
    pub fn summary(&self) -> Vec<(String, String)> {
        let names = self.names();
        let o = &self.overrides;
        let mut out = Vec::new();
        let mut push = |name: &str, v: Value| {
            if let Some(d) = def(name) {
                let shown = match &v {
                    Value::String(s) if looks_secret(s) => "<value not shown>".to_string(),
                    other => names.render(other),
                };
                out.push((names.key(d).trim_start_matches("--").to_string(), shown));
            }
        };
        let text = |s: &Option<String>| s.clone().map(Value::String);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| Value::String(p.display().to_string()));
        for (name, v) in [
            ("profile", text(&o.profile)),
            ("federation_rule_id", text(&o.federation_rule_id)),
            ("organization_id", text(&o.organization_id)),
            ("service_account_id", text(&o.service_account_id)),
            ("workspace_id", text(&o.workspace_id)),
            ("base_url", text(&o.base_url)),
            ("config_dir", path(&o.config_dir)),
            ("credentials_path", path(&o.credentials_path)),
        ] {
            if let Some(v) = v {
                push(name, v);
            }
        }
        if let Some(spec) = &o.identity_token {
            let tag = serde_json::to_value(spec).ok().and_then(|v| v["source"].as_str().map(str::to_string));
            out.push((names.key(def_of("identity_token")), format!("<{}>", tag.unwrap_or_default())));
        }
        if self.no_cache {
            out.push((names.key(def_of("no_cache")), names.render(&Value::Bool(true))));
        }
        if let Some(m) = self.min_remaining {
            out.push((names.key(def_of("min_remaining")), m.to_string()));
        }
        if let Some(t) = self.lock_timeout {
            out.push((names.key(def_of("lock_timeout")), format!("{}", t.as_secs_f64())));
        }
        if let Some(t) = self.rotation_wait {
            out.push((names.key(def_of("rotation_wait")), format!("{}", t.as_secs_f64())));
        }
        if let Some(env) = &self.env {
            let n = env.len();
            out.push((names.key(def_of("env")), format!("<{n} variable{}>", if n == 1 { "" } else { "s" })));
        }
        out
    }
}

fn def_of(name: &str) -> &'static OptionDef {
    def(name).unwrap_or(&OPTIONS[0])
}

fn unhandled(name: &str) -> Error {
    Error::internal(format!("internal error: the option {name} has no setter; please report this"))
}

/// The message for an option this call does not take: the closest known
/// option ("did you mean …?"), then every known one.
fn unknown(names: FieldNames, call: &str, given: &str, scopes: &[Scope]) -> Error {
    let known: Vec<String> = OPTIONS
        .iter()
        .filter(|d| scopes.contains(&d.scope) && (names != FieldNames::Flags || d.flag.is_some()))
        .map(|d| names.key(d))
        .collect();
    let elsewhere = OPTIONS.iter().find(|d| !scopes.contains(&d.scope) && names.key(d) == given);
    let hint = match elsewhere {
        Some(d) if d.scope == Scope::Doctor => Some(format!("{given} is an option of doctor, not of this call")),
        Some(_) => Some(format!("{given} is a provider option, not one of doctor's own")),
        None => suggest(given, known.iter().map(String::as_str)).map(|s| format!("did you mean {s}?")),
    };
    unknown_message(names, call, given, hint.as_deref(), &format!("known: {}", known.join(", ")))
}

/// The message for a value a face cannot express in JSON (a Python `bytes`,
/// say), given for the option the face's user spelt `key`: `got` is how that
/// face names the value's type.
pub fn type_error(names: FieldNames, call: &str, key: &str, got: &str) -> Error {
    match OPTIONS.iter().find(|d| names.key(d) == key) {
        Some(d) => {
            Error::config(format!("{call}: {} must be {}, got {got}", names.name(d.name), names.expected(d.kind)))
        }
        None => unknown(names, call, key, &[Scope::Provider, Scope::Doctor]),
    }
}

/// The one "unknown option" message. `hint` is "did you mean X?" or the like;
/// `known` lists (`known: a, b`) or points to (`see … --help`) the options there are.
pub fn unknown_message(names: FieldNames, call: &str, given: &str, hint: Option<&str>, known: &str) -> Error {
    let shown: String = if looks_secret(given) { "(name not shown)".into() } else { format!("{given:?}") };
    let call = if call.is_empty() { String::new() } else { format!("{call}: ") };
    let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
    Error::config(format!("{call}unknown {} {shown}{hint} ({known})", names.noun()))
}

/// The known name closest to `given`, compared without case, `_` and `-` (so
/// another face's spelling finds this face's), when it is close enough.
pub(crate) fn suggest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect::<String>();
    let g = norm(given);
    known
        .map(|k| (k, strsim::normalized_damerau_levenshtein(&g, &norm(k))))
        .filter(|(_, score)| *score >= 0.6)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &[Scope] = &[Scope::Provider];
    const ALL: &[Scope] = &[Scope::Provider, Scope::Doctor];

    fn parse(names: FieldNames, v: Value) -> Result<Options> {
        Options::from_object(names, "call()", &v, P)
    }

    #[test]
    fn names_per_face_come_from_the_table() {
        assert_eq!(FieldNames::Flags.name("federation_rule_id"), "--federation-rule-id");
        assert_eq!(FieldNames::SnakeCase.name("federation_rule_id"), "argument federation_rule_id");
        assert_eq!(FieldNames::CamelCase.name("federation_rule_id"), "option federationRuleId");
        assert_eq!(FieldNames::CamelCase.name("base_url"), "option baseURL");
        assert_eq!(FieldNames::CamelCase.name("not_in_table"), "option notInTable");
        for d in OPTIONS {
            assert_eq!(FieldNames::CamelCase.key(d).to_lowercase(), d.name.replace('_', ""), "{d:?}");
            if let Some(f) = d.flag {
                assert_eq!(f, d.name.replace('_', "-"), "{d:?}");
            }
        }
    }

    #[test]
    fn every_face_parses_the_same_values() {
        let o = parse(
            FieldNames::CamelCase,
            json!({"federationRuleId": "fdrl_x", "serviceAccountId": "", "baseURL": "http://127.0.0.1:1",
                   "identityToken": {"source": "file", "path": "/t"}, "noCache": true, "minRemaining": 60,
                   "lockTimeout": 0.5, "env": {"A": "b", "B": null}, "profile": null}),
        )
        .unwrap();
        assert_eq!(o.overrides.federation_rule_id.as_deref(), Some("fdrl_x"));
        assert_eq!(o.overrides.service_account_id.as_deref(), Some(""), "an explicit \"\" is passed on");
        assert_eq!(o.overrides.identity_token, Some(IdentitySpec::File { path: "/t".into() }));
        assert!(o.no_cache && o.min_remaining == Some(60) && o.lock_timeout == Some(Duration::from_millis(500)));
        assert_eq!(o.env.as_ref().map(Env::len), Some(1));
        assert!(o.overrides.profile.is_none());

        let mut cli = Options::new(FieldNames::Flags);
        cli.set(def_of("min_remaining"), &json!("60")).unwrap();
        cli.set(def_of("identity_token"), &json!(r#"{"source":"env","var":"T"}"#)).unwrap();
        assert_eq!(cli.min_remaining, Some(60));
        assert_eq!(cli.overrides.identity_token, Some(IdentitySpec::Env { var: "T".into() }));
    }

    #[test]
    fn one_rule_for_the_bounds() {
        for (names, key) in [(FieldNames::SnakeCase, "min_remaining"), (FieldNames::CamelCase, "minRemaining")] {
            for bad in [json!(-1), json!(86_401), json!(1.5)] {
                let e = parse(names, json!({ key: bad })).unwrap_err();
                assert!(e.message().contains("must be a whole number of seconds from 0 to 86400"), "{}", e.message());
                assert!(e.message().contains(key), "{}", e.message());
            }
            assert_eq!(parse(names, json!({ key: 86_400 })).unwrap().min_remaining, Some(86_400));
        }
        let mut cli = Options::new(FieldNames::Flags);
        let e = cli.set(def_of("min_remaining"), &json!("-5")).unwrap_err();
        assert_eq!(e.message(), "--min-remaining must be a whole number of seconds from 0 to 86400, got -5");
        let e = cli.set(def_of("min_remaining"), &json!("soon")).unwrap_err();
        assert!(e.message().ends_with("got \"soon\""), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!({"lockTimeout": 3601})).unwrap_err();
        assert!(
            e.message().contains("option lockTimeout must be a number of seconds from 0 to 3600"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn types_and_empty_paths_are_checked() {
        let e = parse(FieldNames::SnakeCase, json!({"organization_id": 5})).unwrap_err();
        assert_eq!(e.message(), "call(): argument organization_id must be a string, got an int");
        let e = parse(FieldNames::CamelCase, json!({"noCache": "yes"})).unwrap_err();
        assert_eq!(e.message(), "call(): option noCache must be true or false, got a string");
        let e = parse(FieldNames::SnakeCase, json!({"config_dir": ""})).unwrap_err();
        assert!(e.message().contains("argument config_dir is empty"), "{}", e.message());
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let e = parse(FieldNames::SnakeCase, json!({"identity_token": jwt})).unwrap_err();
        assert!(e.message().contains("sources.File") && !e.message().contains(jwt), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!({"env": {"A": 1}})).unwrap_err();
        assert!(e.message().contains("option env: variable A must be a string"), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!([1])).unwrap_err();
        assert!(e.message().contains("must be an object"), "{}", e.message());
    }

    #[test]
    fn unknown_options_say_did_you_mean() {
        let e = parse(FieldNames::SnakeCase, json!({"baseurl": "x"})).unwrap_err();
        assert!(
            e.message().starts_with("call(): unknown argument \"baseurl\"; did you mean base_url? (known: profile, "),
            "{}",
            e.message()
        );
        let e = parse(FieldNames::CamelCase, json!({"baseUrl": "x"})).unwrap_err();
        assert!(e.message().contains("did you mean baseURL?"), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!({"federation_rule_id": "x"})).unwrap_err();
        assert!(e.message().contains("did you mean federationRuleId?"), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!({"exchange": true})).unwrap_err();
        assert!(e.message().contains("exchange is an option of doctor, not of this call"), "{}", e.message());
        let e = parse(FieldNames::CamelCase, json!({"bogus": 1})).unwrap_err();
        assert!(!e.message().contains("did you mean") && e.message().contains("known: "), "{}", e.message());
        let o = Options::from_object(
            FieldNames::SnakeCase,
            "doctor()",
            &json!({"exchange": true, "expected_audience": " a "}),
            ALL,
        )
        .unwrap();
        assert!(o.doctor.exchange);
        assert_eq!(o.doctor.expected_audience.as_deref(), Some("a"));
    }

    #[test]
    fn summaries_show_settings_never_secrets() {
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let o = parse(
            FieldNames::SnakeCase,
            json!({"federation_rule_id": "fdrl_x", "organization_id": jwt, "identity_token": {"source": "file", "path": "/t"},
                   "no_cache": true, "env": {"SECRET": jwt}}),
        )
        .unwrap();
        let s: Vec<String> = o.summary().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            s,
            [
                "federation_rule_id='fdrl_x'",
                "organization_id=<value not shown>",
                "identity_token=<file>",
                "no_cache=True",
                "env=<1 variable>"
            ]
        );
    }
}
