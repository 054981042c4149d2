//! `doctor`: a secret-free health report of a configuration, for the CLI's
//! `anthropic-wif doctor` and the bindings (as a dict / object).
//!
//! What it does, in order: resolve the configuration (which step of the
//! chain, and where every field came from); validate every id; fetch the
//! identity token and decode it **without verifying** it (header `alg`/`kid`,
//! claims `iss`/`sub`/`aud`/`iat`/`exp`, lifetime, remaining life, size);
//! look at the on-disk cache; and, only when asked, make one real exchange.
//!
//! Side effects:
//! - Fetching the identity token consumes nothing (fetching is not
//!   exchanging), so a plain diagnosis is safe to run at any time. It does run
//!   the configured source (reads the file, runs the command, calls the URL).
//! - Without `exchange` the diagnosis writes nothing: no cache, no lock file.
//! - It looks the token up in the record of presented identity tokens
//!   (cache/consumed.rs), read-only, and says when this machine already
//!   exchanged it.
//! - With `exchange` it sends the very identity token it diagnosed, which the
//!   server then accepts never again. It is the provider's own exchange
//!   (`Provider::exchange_now`): under the cross-process lock, the access
//!   token obtained written to the on-disk cache (unless the disk cache is
//!   disabled) and a recorded refresh back-off cleared, as after any
//!   exchange; otherwise the next `token` call would read the same, now
//!   consumed, JWT from a file and be refused. The exchange is skipped when
//!   the diagnosis already found an error, and, like every exchange, refused
//!   with nothing sent for a token that is expired or already exchanged.
//!
//! Never in a report: the identity JWT (or its signature), the access token
//! (only [`Secret::masked`]), an API key or bearer token, literal header values
//! of a `url` source. Claim strings and names pass through [`scrub`] (no control characters).
//!
//! Findings carry a stable `code`, a `severity` (`error` makes the report
//! unhealthy, `warning` and `info` do not), an error `kind` for errors (the
//! CLI exit code is the first error's kind, as in the README's table), a
//! message and a fix.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::cache::consumed::{self, Fingerprint, Record, State};
use crate::cache::disk::{self, DiskCache, DiskRead};
use crate::cache::policy::{HandOutMargin, Standing};
use crate::cache::CachedToken;
use crate::config::ids::{self, IdField};
use crate::config::{self, FederationConfig, Origin, Resolution, Resolved, Sourced, Step};
use crate::error::{scrub, Error, ErrorKind};
use crate::exchange::MAX_ASSERTION_BYTES;
use crate::identity::{self, IdentitySpec, DEFAULT_AUDIENCE};
use crate::jwt::{self, DecodedJwt};
use crate::provider::{Exchanged, Provider, ProviderOptions};
use crate::secret::Secret;
use crate::url::redact_url;

/// Version of the report's JSON shape.
pub const REPORT_VERSION: u32 = 1;
/// Identity tokens with less life left than this get a warning.
pub(crate) const EXPIRING_SOON_SECONDS: i64 = 60;
/// Identity tokens living longer than this get a warning.
pub const MAX_RECOMMENDED_LIFETIME_SECONDS: i64 = 3600;
/// Allowed clock skew for `nbf`.
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// The default service-account token every pod gets (a Kubernetes API credential).
pub const KUBERNETES_DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Stable finding codes.
pub mod codes {
    /// error: the configuration does not resolve (message names the field, origin and fix).
    pub const CONFIG_ERROR: &str = "config_error";
    /// error: an id is malformed.
    pub const INVALID_ID: &str = "invalid_id";
    /// error: `ANTHROPIC_API_KEY` is set: the SDKs use it, no federation.
    pub const STATIC_API_KEY: &str = "static_api_key";
    /// error: `ANTHROPIC_API_KEY` hides federation settings that are also present.
    pub const API_KEY_SHADOWS_FEDERATION: &str = "api_key_shadows_federation";
    /// warning: `ANTHROPIC_AUTH_TOKEN` is set: a static bearer is used, no federation.
    pub const STATIC_BEARER: &str = "static_bearer";
    /// warning: `ANTHROPIC_AUTH_TOKEN` hides federation settings that are also present.
    pub const AUTH_TOKEN_SHADOWS_FEDERATION: &str = "auth_token_shadows_federation";
    /// info: the profile is an interactive login (`user_oauth`), not federation.
    pub const USER_OAUTH: &str = "user_oauth";
    /// error: that profile's credentials file is missing or expired.
    pub const USER_OAUTH_TOKEN_UNUSABLE: &str = "user_oauth_token_unusable";
    /// error: the identity-token source failed.
    pub const IDENTITY_FETCH_FAILED: &str = "identity_fetch_failed";
    /// error: the source's output is not a JWT.
    pub const JWT_MALFORMED: &str = "jwt_malformed";
    /// error: over 16 KiB: the exchange refuses it.
    pub const JWT_TOO_LARGE: &str = "jwt_too_large";
    /// error: `exp` is more than 30 s in the past: the token is not sent.
    pub const JWT_EXPIRED: &str = "jwt_expired";
    /// warning: less than 60 s left, or `exp` passed within the 30 s allowance.
    pub const JWT_EXPIRING: &str = "jwt_expiring";
    /// warning: `nbf` more than 60 s in the future (clock skew).
    pub const JWT_NOT_YET_VALID: &str = "jwt_not_yet_valid";
    /// warning: lifetime (`exp - iat`) over 1 hour.
    pub const JWT_LONG_LIVED: &str = "jwt_long_lived";
    /// warning: `aud` does not contain the expected audience.
    pub const JWT_AUDIENCE_MISMATCH: &str = "jwt_audience_mismatch";
    /// error: unsigned token, or no `alg`.
    pub const JWT_ALG_NONE: &str = "jwt_alg_none";
    /// error: `HS256`/`HS384`/`HS512`: cannot be verified with the issuer's public keys.
    pub const JWT_ALG_SYMMETRIC: &str = "jwt_alg_symmetric";
    /// warning: no `kid` in the header.
    pub const JWT_MISSING_KID: &str = "jwt_missing_kid";
    /// error: no issuer.
    pub const JWT_MISSING_ISS: &str = "jwt_missing_iss";
    /// warning: no subject.
    pub const JWT_MISSING_SUB: &str = "jwt_missing_sub";
    /// warning: no issue time.
    pub const JWT_MISSING_IAT: &str = "jwt_missing_iat";
    /// error: no expiry.
    pub const JWT_MISSING_EXP: &str = "jwt_missing_exp";
    /// error: the pod's default service-account token, not a projected one for the API.
    pub const KUBERNETES_DEFAULT_TOKEN: &str = "kubernetes_default_token";
    /// error, or warning while a cached access token is usable: this machine already exchanged this identity token; it is never sent again.
    pub const JWT_CONSUMED: &str = "jwt_consumed";
    /// info: another process is presenting this identity token right now.
    pub const JWT_IN_FLIGHT: &str = "jwt_in_flight";
    /// warning: this machine sent this identity token before without a successful exchange.
    pub const JWT_PRESENTED_BEFORE: &str = "jwt_presented_before";
    /// warning: the record of presented identity tokens is refused or unreadable.
    pub const TOKEN_RECORD_UNUSABLE: &str = "token_record_unusable";
    /// warning: the cache file, its directory or lock file is refused for safety.
    pub const CACHE_INSECURE: &str = "cache_insecure";
    /// warning: the cache file is unusable; the next exchange overwrites it.
    pub const CACHE_CORRUPT: &str = "cache_corrupt";
    /// error: `--exchange` failed (status and request id in the report's `exchange`).
    pub const EXCHANGE_FAILED: &str = "exchange_failed";
    /// info: `--exchange` was not attempted because of an earlier error.
    pub const EXCHANGE_SKIPPED: &str = "exchange_skipped";
    /// warning: the exchange granted less than 5 minutes.
    pub const ACCESS_TOKEN_SHORT: &str = "access_token_short";
    /// warning: the access token from `--exchange` could not be cached.
    pub const CACHE_WRITE_FAILED: &str = "cache_write_failed";
}

/// What a diagnosis should do beyond looking.
#[derive(Clone, Debug, Default)]
pub struct DoctorOptions {
    /// Make one real exchange (consumes the identity token; writes the cache).
    pub exchange: bool,
    /// The audience the federation rule expects. Default: the preset's
    /// configured `audience`, else `https://api.anthropic.com`.
    pub expected_audience: Option<String>,
}

/// How serious a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Exchanges will fail (or must not be attempted): unhealthy.
    Error,
    /// Likely to cause trouble, or risky.
    Warning,
    /// Worth knowing.
    Info,
}

/// One thing the diagnosis found.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// Stable machine code (see [`codes`]).
    pub code: &'static str,
    /// `error`, `warning` or `info`.
    pub severity: Severity,
    /// For errors: `config`, `identity`, `denied`, `unavailable`, `internal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// What is wrong, naming the field, file or source.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Where a value came from, for machines and people.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct OriginReport {
    /// `explicit` (a flag or constructor argument), `env`, `profile`, `default`.
    pub kind: &'static str,
    /// The flag / argument or environment variable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The profile file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Human form, e.g. `environment variable ANTHROPIC_ORGANIZATION_ID`.
    pub display: String,
}

impl From<&Origin> for OriginReport {
    fn from(o: &Origin) -> Self {
        let display = o.to_string();
        match o {
            Origin::Explicit(n) => OriginReport { kind: "explicit", name: Some(n.clone()), path: None, display },
            Origin::EnvVar(n) => OriginReport { kind: "env", name: Some(n.clone()), path: None, display },
            Origin::ProfileFile(p) => {
                OriginReport { kind: "profile", name: None, path: Some(p.display().to_string()), display }
            }
            Origin::Default => OriginReport { kind: "default", name: None, path: None, display },
        }
    }
}

/// A configuration field, its (secret-free) value and its origin.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct FieldReport {
    /// The field's name as the face spells it.
    pub name: &'static str,
    /// Its value (never a secret).
    pub value: String,
    /// Where it was set.
    pub origin: OriginReport,
}

/// Which step of the configuration chain decided, and every field's origin.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ConfigReport {
    /// Whether the configuration resolved.
    pub ok: bool,
    /// `explicit_profile`, `explicit`, `api_key`, `auth_token`, `env_profile`,
    /// `env_federation`, `active_profile`; absent when resolution failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
    /// Human description of the step (names the profile file, variables…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `federation`, `api_key`, `static_bearer`, `user_oauth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<&'static str>,
    /// The configuration directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<String>,
    /// The profile's name, when one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The profile file, when one was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_path: Option<String>,
    /// Every configuration field with its origin.
    pub fields: Vec<FieldReport>,
    /// Federation settings present but ignored because a static credential wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadowed: Option<String>,
    /// Why resolution failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// One id and whether it is well-formed.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct IdCheck {
    /// The id's field (`federation_rule_id`, `organization_id`, …).
    pub field: &'static str,
    /// The id (ids are not secret), or a note when the value looks like a token.
    pub value: String,
    /// Where it was set.
    pub origin: OriginReport,
    /// Whether it is well-formed.
    pub ok: bool,
    /// What is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The decoded, unverified identity token: never the token or its signature.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct JwtReport {
    /// Header `alg`.
    pub alg: Option<String>,
    /// Header `kid`.
    pub kid: Option<String>,
    /// Header `typ`.
    pub typ: Option<String>,
    /// Claim `iss`.
    pub iss: Option<String>,
    /// Claim `sub`.
    pub sub: Option<String>,
    /// Claim `aud` (a string becomes one element).
    pub aud: Vec<String>,
    /// Claim `iat`, unix seconds.
    pub iat: Option<i64>,
    /// Claim `nbf`, unix seconds.
    pub nbf: Option<i64>,
    /// Claim `exp`, unix seconds.
    pub exp: Option<i64>,
    /// `exp - iat`.
    pub lifetime_s: Option<i64>,
    /// `exp - now` (negative when expired).
    pub remaining_s: Option<i64>,
    /// Whether a `jti` claim is present.
    pub jti_present: bool,
    /// The claim names present (values not shown beyond the ones above).
    pub claim_names: Vec<String>,
}

/// The identity source and the token it gave.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct IdentityReport {
    /// The source's `source` tag (`file`, `env`, `command`, `url`, `github_actions`, …).
    pub source: String,
    /// Secret-free description, e.g. `identity token file /var/run/…`.
    pub description: String,
    /// The source's settings, with literal header values withheld.
    pub settings: Value,
    /// Where the source was set.
    pub origin: OriginReport,
    /// The audience the checks expect.
    pub expected_audience: String,
    /// Whether a token was fetched.
    pub fetched: bool,
    /// Why fetching failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
    /// The token's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<usize>,
    /// The decoded token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<JwtReport>,
    /// Why the token did not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_error: Option<String>,
    /// What the record of presented identity tokens says of this token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordReport>,
}

/// The record of presented identity tokens (cache/consumed.rs) on the
/// fetched token.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RecordReport {
    /// The record file.
    pub path: String,
    /// `new` (never presented from this machine), `consumed`, `in_flight`,
    /// `presented` (sent before, refused or without a verdict), or
    /// `unusable` (the record is refused or unreadable: see `detail`).
    pub state: &'static str,
    /// Unix seconds of the last presentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// The token cache of the configuration that presented it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Why the record is unusable (state `unusable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The on-disk cache file (or a `user_oauth` profile's credentials file).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CacheReport {
    /// The file (absent when the disk cache is disabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `disabled`, `missing`, `valid` (usable: more than the mandatory
    /// refresh window left, 30 s for a token of 2 min or more; see
    /// cache/policy.rs), `expired` (less), `insecure`, `corrupt`.
    pub state: &'static str,
    /// The cached token's expiry, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Seconds left (negative when expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining_s: Option<i64>,
    /// Why it is insecure or corrupt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The optional real exchange.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ExchangeReport {
    /// Whether an exchange was asked for.
    pub requested: bool,
    /// Whether it was made.
    pub performed: bool,
    /// Why it was not made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_reason: Option<String>,
    /// Whether it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// HTTP status of the token endpoint's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's `request-id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The granted `expires_in`, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_lifetime_s: Option<i64>,
    /// The access token's expiry, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The granted `scope`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// [`Secret::masked`], e.g. `sk-ant-oat01-…abcd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_masked: Option<String>,
    /// The cache file the new token was written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_in: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

/// The whole report. Serialize it (`serde_json::to_value`) for machines.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// Version of the report's shape ([`REPORT_VERSION`]).
    pub version: u32,
    /// No finding of severity `error`.
    pub healthy: bool,
    /// 0 when healthy, else the exit code of the first error's kind (README table).
    pub exit_code: i32,
    /// Number of findings of severity `error`.
    pub errors: usize,
    /// Number of findings of severity `warning`.
    pub warnings: usize,
    /// Unix seconds when the diagnosis ran.
    pub checked_at: i64,
    /// The configuration chain's decision.
    pub config: ConfigReport,
    /// The ids and their checks.
    pub ids: Vec<IdCheck>,
    /// The identity source and its token (absent when the configuration did not resolve to federation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityReport>,
    /// The cache file (absent when there is none to check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheReport>,
    /// The optional real exchange.
    pub exchange: ExchangeReport,
    /// Everything found, in order.
    pub findings: Vec<Finding>,
}

impl Report {
    fn new(exchange_requested: bool) -> Self {
        Report {
            version: REPORT_VERSION,
            healthy: true,
            exit_code: 0,
            errors: 0,
            warnings: 0,
            checked_at: crate::clock::now_unix(),
            config: ConfigReport::default(),
            ids: Vec::new(),
            identity: None,
            cache: None,
            exchange: ExchangeReport { requested: exchange_requested, ..Default::default() },
            findings: Vec::new(),
        }
    }

    /// A report for options that could not even be built (e.g. a malformed
    /// identity-source flag): one configuration error.
    pub fn from_options_error(err: &Error, exchange_requested: bool) -> Report {
        let mut r = Report::new(exchange_requested);
        r.config.error = Some(err.clone());
        r.error(codes::CONFIG_ERROR, err.kind, err.message().to_string(), "fix the setting the message names");
        r.skip_exchange("the configuration is not usable");
        r.finish()
    }

    /// The report as a JSON value (what the bindings hand out).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Findings of the given severity.
    pub(crate) fn findings_of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }

    /// Whether a finding with this code is present.
    pub fn has(&self, code: &str) -> bool {
        self.findings.iter().any(|f| f.code == code)
    }

    fn push(
        &mut self,
        code: &'static str,
        severity: Severity,
        kind: Option<ErrorKind>,
        message: String,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding { code, severity, kind: kind.map(ErrorKind::as_str), message, fix: fix.into() });
    }
    fn error(&mut self, code: &'static str, kind: ErrorKind, message: String, fix: impl Into<String>) {
        self.push(code, Severity::Error, Some(kind), message, fix);
    }
    fn warn(&mut self, code: &'static str, message: String, fix: impl Into<String>) {
        self.push(code, Severity::Warning, None, message, fix);
    }
    fn info(&mut self, code: &'static str, message: String, fix: impl Into<String>) {
        self.push(code, Severity::Info, None, message, fix);
    }
    fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
    fn skip_exchange(&mut self, reason: &str) {
        if self.exchange.requested && !self.exchange.performed {
            self.exchange.skipped_reason = Some(reason.to_string());
            self.info(
                codes::EXCHANGE_SKIPPED,
                format!("the exchange was not attempted: {reason}"),
                "fix the errors above, then run the exchange again",
            );
        }
    }

    fn finish(mut self) -> Report {
        self.errors = self.findings_of(Severity::Error).count();
        self.warnings = self.findings_of(Severity::Warning).count();
        self.healthy = self.errors == 0;
        self.exit_code = self
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map(|f| kind_from_str(f.kind.unwrap_or("internal")).exit_code())
            .unwrap_or(0);
        self
    }
}

fn kind_from_str(s: &str) -> ErrorKind {
    match s {
        "config" => ErrorKind::Config,
        "identity" => ErrorKind::Identity,
        "denied" => ErrorKind::Denied,
        "unavailable" => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// Diagnose from synchronous code (on the shared runtime; do not call from
/// inside it). `exchange`: also make one real exchange, which consumes the
/// identity token and writes the cache.
#[cfg(test)]
pub(crate) fn diagnose(options: &ProviderOptions, exchange: bool) -> Report {
    diagnose_with(options, &DoctorOptions { exchange, ..Default::default() })
}

/// `diagnose` with all options.
pub fn diagnose_with(options: &ProviderOptions, doctor: &DoctorOptions) -> Report {
    crate::runtime::block_on(diagnose_async(options, doctor))
}

/// The diagnosis. Never fails: every problem is a finding.
pub async fn diagnose_async(options: &ProviderOptions, doctor: &DoctorOptions) -> Report {
    crate::diag::init_from(&options.env);
    let mut report = Report::new(doctor.exchange);
    let resolved = match config::resolve(&options.overrides, &options.env) {
        Ok(r) => r,
        Err(e) => {
            report.config.error = Some(e.clone());
            report.error(codes::CONFIG_ERROR, e.kind, e.message().to_string(), "fix the setting the message names");
            report.ids =
                config::partial_ids(&options.overrides, &options.env).iter().map(|(f, s)| id_check(*f, s)).collect();
            report.skip_exchange("the configuration does not resolve");
            return report.finish();
        }
    };
    describe_config(&mut report, &resolved);

    match &resolved.resolution {
        Resolution::Federation(cfg) => federation(&mut report, options, doctor, cfg).await,
        Resolution::ApiKey { origin, shadowed } => {
            match shadowed {
                Some(s) => report.error(
                    codes::API_KEY_SHADOWS_FEDERATION,
                    ErrorKind::Config,
                    format!(
                        "{origin} is set, so the official SDKs use that static API key and ignore the federation settings that are also present ({s})"
                    ),
                    "unset ANTHROPIC_API_KEY to use workload identity federation (or pass the federation settings explicitly)",
                ),
                None => report.error(
                    codes::STATIC_API_KEY,
                    ErrorKind::Config,
                    format!("{origin} is set: a static API key, no workload identity federation; anthropic-wif hands out federated access tokens only"),
                    "unset ANTHROPIC_API_KEY and configure federation (ANTHROPIC_FEDERATION_RULE_ID, ANTHROPIC_ORGANIZATION_ID, ANTHROPIC_IDENTITY_TOKEN_FILE, or a profile)",
                ),
            }
            report.skip_exchange("a static API key is configured");
        }
        Resolution::StaticBearer { origin, shadowed, .. } => {
            match shadowed {
                Some(s) => report.warn(
                    codes::AUTH_TOKEN_SHADOWS_FEDERATION,
                    format!(
                        "{origin} is set, so the static bearer token is used and the federation settings that are also present are ignored ({s})"
                    ),
                    "unset ANTHROPIC_AUTH_TOKEN to use workload identity federation (or pass the federation settings explicitly)",
                ),
                None => report.warn(
                    codes::STATIC_BEARER,
                    format!("{origin} is set: a static bearer token is used, not workload identity federation"),
                    "unset ANTHROPIC_AUTH_TOKEN and configure federation to use short-lived federated tokens",
                ),
            }
            report.skip_exchange("a static bearer token is configured");
        }
        Resolution::UserOauth { profile, credentials_path, .. } => {
            report.info(
                codes::USER_OAUTH,
                format!("profile {profile} is a user_oauth profile (an interactive login), not workload identity federation"),
                "nothing to do if that is intended; anthropic-wif reads its access token but does not refresh it",
            );
            user_oauth_cache(&mut report, profile, credentials_path);
            report.skip_exchange("a user_oauth profile does not exchange identity tokens");
        }
    }
    report.finish()
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::ExplicitProfile => "explicit_profile",
        Step::Explicit => "explicit",
        Step::ApiKey => "api_key",
        Step::AuthToken => "auth_token",
        Step::EnvProfile => "env_profile",
        Step::EnvFederation => "env_federation",
        Step::ActiveProfile => "active_profile",
    }
}

fn field(name: &'static str, s: &Sourced<String>) -> FieldReport {
    FieldReport { name, value: shown_value(&s.value), origin: (&s.origin).into() }
}

/// A value for display: withheld when it looks like a token.
fn shown_value(v: &str) -> String {
    if ids::looks_secret(v) {
        "(not shown: it looks like a token or key)".to_string()
    } else {
        v.to_string()
    }
}

fn describe_config(report: &mut Report, resolved: &Resolved) {
    let c = &mut report.config;
    c.ok = true;
    c.step = Some(step_name(resolved.step_kind));
    c.description = Some(scrub(&resolved.step, &[], 1000));
    c.config_dir = Some(resolved.config_dir.display().to_string());
    match &resolved.resolution {
        Resolution::Federation(cfg) => {
            c.resolution = Some("federation");
            c.profile = cfg.profile.clone();
            c.profile_path = cfg.profile_path.as_ref().map(|p| p.display().to_string());
            c.fields.push(field("federation_rule_id", &cfg.federation_rule_id));
            c.fields.push(field("organization_id", &cfg.organization_id));
            if let Some(s) = &cfg.service_account_id {
                c.fields.push(field("service_account_id", s));
            }
            if let Some(s) = &cfg.workspace_id {
                c.fields.push(field("workspace_id", s));
            }
            c.fields.push(field("base_url", &cfg.base_url));
            c.fields.push(FieldReport {
                name: "identity_token",
                value: cfg.identity.value.describe(),
                origin: (&cfg.identity.origin).into(),
            });
            let mut ids_list = vec![
                id_check(IdField::FederationRuleId, &cfg.federation_rule_id),
                id_check(IdField::OrganizationId, &cfg.organization_id),
            ];
            ids_list.extend(cfg.service_account_id.as_ref().map(|s| id_check(IdField::ServiceAccountId, s)));
            ids_list.extend(cfg.workspace_id.as_ref().map(|s| id_check(IdField::WorkspaceId, s)));
            report.ids = ids_list;
        }
        Resolution::ApiKey { origin, shadowed } => {
            c.resolution = Some("api_key");
            c.shadowed = shadowed.clone();
            c.fields.push(FieldReport { name: "api_key", value: "(set; not shown)".into(), origin: origin.into() });
        }
        Resolution::StaticBearer { origin, shadowed, .. } => {
            c.resolution = Some("static_bearer");
            c.shadowed = shadowed.clone();
            c.fields.push(FieldReport { name: "auth_token", value: "(set; not shown)".into(), origin: origin.into() });
        }
        Resolution::UserOauth { profile, profile_path, base_url, workspace_id, .. } => {
            c.resolution = Some("user_oauth");
            c.profile = Some(profile.clone());
            c.profile_path = Some(profile_path.display().to_string());
            c.fields.push(field("base_url", base_url));
            if let Some(w) = workspace_id {
                c.fields.push(field("workspace_id", w));
                report.ids = vec![id_check(IdField::WorkspaceId, w)];
            }
        }
    }
}

fn id_check(f: IdField, s: &Sourced<String>) -> IdCheck {
    let res = ids::validate(f, &s.value, &s.origin);
    IdCheck {
        field: f.name(),
        value: shown_value(&s.value),
        origin: (&s.origin).into(),
        ok: res.is_ok(),
        error: res.err().map(Error::into_message),
    }
}

async fn federation(report: &mut Report, options: &ProviderOptions, doctor: &DoctorOptions, cfg: &FederationConfig) {
    for bad in report.ids.iter().filter(|i| !i.ok).cloned().collect::<Vec<_>>() {
        report.error(
            codes::INVALID_ID,
            ErrorKind::Config,
            bad.error.clone().unwrap_or_default(),
            "use the id as shown in the Claude Console",
        );
    }
    // The provider decides the cache file and makes the exchange; the
    // User-Agent says the diagnosis made it.
    let mut provider_options = options.clone();
    provider_options.client = format!("{}; doctor", options.client);
    let provider = match Provider::new(provider_options) {
        Ok(p) => Some(p),
        Err(e) => {
            report.config.ok = false;
            report.config.error = Some(e.clone());
            report.error(codes::CONFIG_ERROR, e.kind, e.message().to_string(), "fix the setting the message names");
            None
        }
    };

    // The identity token: fetched (consumes nothing), decoded, judged.
    let spec = &cfg.identity.value;
    let expected = doctor
        .expected_audience
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| spec_audience(spec))
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_string());
    let settings = spec_settings(spec);
    let mut idr = IdentityReport {
        source: settings.get("source").and_then(Value::as_str).unwrap_or("unknown").to_string(),
        description: spec.describe(),
        settings,
        origin: (&cfg.identity.origin).into(),
        expected_audience: expected.clone(),
        fetched: false,
        error: None,
        size_bytes: None,
        token: None,
        decode_error: None,
        record: None,
    };
    if uses_k8s_default_path(spec) {
        k8s_finding(report, &format!("the source reads {KUBERNETES_DEFAULT_TOKEN_PATH}"));
    }
    let jwt = match identity::fetch(spec, &options.env).await {
        Ok(t) => Some(t),
        Err(e) => {
            idr.error = Some(e.clone());
            report.error(
                codes::IDENTITY_FETCH_FAILED,
                e.kind,
                e.message().to_string(),
                "fix the identity token source the message names",
            );
            None
        }
    };
    let mut seen = None;
    if let Some(jwt) = &jwt {
        idr.fetched = true;
        check_token(report, &mut idr, jwt, spec, &expected, crate::clock::now_unix());
        seen = Record::for_env(&options.env).ok().map(|r| {
            let found = r.lookup(&Fingerprint::of(jwt.expose()));
            (r, found)
        });
    }
    report.identity = Some(idr);

    // The cache.
    let cache_path = provider.as_ref().and_then(|p| p.cache_path().map(Path::to_path_buf));
    report.cache = Some(match (&cache_path, options.disk_cache) {
        (_, false) => CacheReport { path: None, state: "disabled", expires_at: None, remaining_s: None, detail: None },
        (Some(path), true) => cache_state(report, path),
        (None, true) => {
            CacheReport { path: None, state: "disabled", expires_at: None, remaining_s: None, detail: None }
        }
    });
    if let Some((record, found)) = seen {
        record_findings(report, spec, &record, found);
    }

    // The optional exchange.
    if !doctor.exchange {
        return;
    }
    let (Some(jwt), Some(provider)) = (jwt, provider.as_ref()) else {
        report.skip_exchange("no usable identity token or configuration");
        return;
    };
    if report.has_errors() {
        report.skip_exchange("the diagnosis found errors (the identity token was not sent)");
        return;
    }
    run_exchange(report, provider, jwt).await;
}

/// What the record of presented identity tokens says of the fetched token.
/// A consumed token is an error unless a cached access token is still usable
/// (then only the next refresh needs a rotated one).
fn record_findings(
    report: &mut Report,
    spec: &IdentitySpec,
    record: &Record,
    found: std::result::Result<Option<consumed::Entry>, String>,
) {
    let path = record.path().display().to_string();
    let now = crate::clock::now_unix();
    let mut rr = RecordReport { path: path.clone(), state: "new", at: None, by: None, detail: None };
    match found {
        Ok(None) => {}
        Err(why) => {
            let why = scrub(&why, &[], 1000);
            report.warn(
                codes::TOKEN_RECORD_UNUSABLE,
                format!("the record of presented identity tokens is not used, so nothing stops an identity token this machine already exchanged from being sent again: {why}"),
                "do what the message says (the record is rewritten with mode 0600 by the next exchange)",
            );
            rr.state = "unusable";
            rr.detail = Some(why);
        }
        Ok(Some(entry)) => {
            rr.at = Some(entry.at);
            rr.by = entry.by.clone();
            let message = scrub(consumed::refusal_error(spec, &entry, record.path(), now).message(), &[], 2000);
            let cached = report.cache.as_ref().is_some_and(|c| c.state == "valid");
            match entry.state {
                State::Consumed => {
                    rr.state = "consumed";
                    let fix = "make the source hand out a new identity token (see the message); until then no exchange is possible";
                    if cached {
                        report.warn(
                            codes::JWT_CONSUMED,
                            format!("{message} The cached access token is still usable, so only the next refresh needs a new identity token."),
                            fix,
                        );
                    } else {
                        report.error(codes::JWT_CONSUMED, ErrorKind::Identity, message, fix);
                    }
                }
                State::InFlight if entry.until.is_some_and(|u| u > now) => {
                    rr.state = "in_flight";
                    report.info(
                        codes::JWT_IN_FLIGHT,
                        message,
                        "nothing to do: another process is exchanging it right now",
                    );
                }
                State::InFlight | State::Presented => {
                    rr.state = "presented";
                    report.warn(
                        codes::JWT_PRESENTED_BEFORE,
                        format!(
                            "this machine presented this identity token to the token endpoint before ({} s ago), without a successful exchange (refused, or no verdict); the server may refuse it as already used",
                            now.saturating_sub(entry.at)
                        ),
                        "if exchanges keep failing, make the source hand out a new identity token",
                    );
                }
            }
        }
    }
    if let Some(idr) = report.identity.as_mut() {
        idr.record = Some(rr);
    }
}

/// The `audience` a preset spec carries, read through serde so that new
/// presets are covered without changes here.
fn spec_audience(spec: &IdentitySpec) -> Option<String> {
    let v = serde_json::to_value(spec).ok()?;
    v.get("audience").and_then(Value::as_str).filter(|a| !a.trim().is_empty()).map(str::to_string)
}

/// The spec as JSON for display: strings scrubbed, URLs shown as
/// [`redact_url`] shows them (no user:password@, no query values), literal
/// header values withheld (templates such as `Bearer ${VAR}`
/// are shown, since they hold no secret).
fn spec_settings(spec: &IdentitySpec) -> Value {
    fn clean(key: Option<&str>, v: Value) -> Value {
        match v {
            Value::String(s) if key.is_some_and(|k| k.contains("url")) => Value::String(redact_url(&s)),
            Value::String(s) => Value::String(scrub(&s, &[], 2000)),
            Value::Array(a) => Value::Array(a.into_iter().map(|x| clean(key, x)).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, x)| {
                        let c = if k == "headers" { clean_headers(x) } else { clean(Some(&k), x) };
                        (k, c)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
    fn clean_headers(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, x)| {
                        let shown = match x {
                            Value::String(s) if s.contains("${") => Value::String(scrub(&s, &[], 2000)),
                            _ => Value::String("(literal value not shown)".into()),
                        };
                        (k, shown)
                    })
                    .collect(),
            ),
            _ => Value::String("(not shown)".into()),
        }
    }
    match serde_json::to_value(spec) {
        Ok(v) => clean(None, v),
        Err(_) => Value::Null,
    }
}

fn claim_str(d: &DecodedJwt, name: &str) -> Option<String> {
    d.claims.get(name).and_then(Value::as_str).map(|s| scrub(s, &[], 500))
}

fn header_str(d: &DecodedJwt, name: &str) -> Option<String> {
    d.header.get(name).and_then(Value::as_str).map(|s| scrub(s, &[], 200))
}

/// Judge a fetched identity token. `now` is a parameter for tests.
fn check_token(
    report: &mut Report,
    idr: &mut IdentityReport,
    jwt: &Secret,
    spec: &IdentitySpec,
    expected_aud: &str,
    now: i64,
) {
    let token = jwt.expose().trim();
    let size = token.len();
    idr.size_bytes = Some(size);
    if size > MAX_ASSERTION_BYTES {
        report.error(
            codes::JWT_TOO_LARGE,
            ErrorKind::Identity,
            format!("the identity token is {size} bytes, over the {MAX_ASSERTION_BYTES}-byte (16 KiB) limit for an assertion; the exchange refuses it before sending"),
            "request a smaller token from your identity provider (fewer or shorter custom claims)",
        );
    }

    let decoded = match jwt::decode_unverified_lenient(token) {
        Ok(d) => d,
        Err(e) => {
            idr.decode_error = Some(e.clone());
            report.error(
                codes::JWT_MALFORMED,
                ErrorKind::Identity,
                format!("{} did not give a decodable JWT: {e}", spec.describe()),
                "the source must yield the identity token (a signed JWT, header.claims.signature) and nothing else",
            );
            return;
        }
    };

    let mut claim_names: Vec<String> = decoded.claims.keys().map(|k| scrub(k, &[], 200)).collect();
    claim_names.sort();
    let j = JwtReport {
        alg: header_str(&decoded, "alg"),
        kid: header_str(&decoded, "kid"),
        typ: header_str(&decoded, "typ"),
        iss: claim_str(&decoded, "iss"),
        sub: claim_str(&decoded, "sub"),
        aud: decoded.aud().into_iter().map(|a| scrub(a, &[], 500)).collect(),
        iat: decoded.iat(),
        nbf: decoded.nbf(),
        exp: decoded.exp(),
        lifetime_s: match (decoded.iat(), decoded.exp()) {
            (Some(i), Some(e)) => Some(e.saturating_sub(i)),
            _ => None,
        },
        remaining_s: decoded.remaining(now),
        jti_present: decoded.claims.contains_key("jti"),
        claim_names,
    };

    // Kubernetes default service-account token (a Kubernetes API credential).
    let legacy = j.iss.as_deref() == Some("kubernetes/serviceaccount")
        || decoded.claims.keys().any(|k| k.starts_with("kubernetes.io/serviceaccount/"));
    let api_server_aud = j.aud.iter().any(|a| a.starts_with("https://kubernetes.default.svc"));
    if uses_k8s_default_path(spec) {
        // Already reported from the source's settings.
    } else if legacy {
        k8s_finding(
            report,
            "it is a legacy secret-based service-account token (iss kubernetes/serviceaccount, no expiry)",
        );
    } else if api_server_aud {
        k8s_finding(report, "its audience is the Kubernetes API server");
    }

    // Algorithm.
    match j.alg.as_deref() {
        None => report.error(
            codes::JWT_ALG_NONE,
            ErrorKind::Identity,
            "the identity token's header has no alg".into(),
            "use a token signed by your identity provider with an asymmetric key (RS256, ES256, …)",
        ),
        Some(a) if a.eq_ignore_ascii_case("none") || token.ends_with('.') => report.error(
            codes::JWT_ALG_NONE,
            ErrorKind::Identity,
            format!("the identity token is unsecured (alg {a}, no signature); the server cannot verify it"),
            "use a token signed by your identity provider with an asymmetric key (RS256, ES256, …) published in its JWKS",
        ),
        Some(a) if a.to_ascii_uppercase().starts_with("HS") => report.error(
            codes::JWT_ALG_SYMMETRIC,
            ErrorKind::Identity,
            format!("the identity token is signed with {a}, a shared-secret (symmetric) algorithm; the server verifies tokens with the issuer's public keys (JWKS), so it cannot verify this one"),
            "have the issuer sign with an asymmetric algorithm (RS256, ES256, …) and publish its keys at its JWKS URL",
        ),
        _ => {}
    }
    if j.kid.is_none() {
        report.warn(
            codes::JWT_MISSING_KID,
            "the identity token's header has no kid; the server picks the verification key from the issuer's JWKS by kid".into(),
            "use tokens from an issuer that sets kid (standard OIDC providers do)",
        );
    }

    // Claims.
    if j.iss.is_none() {
        report.error(
            codes::JWT_MISSING_ISS,
            ErrorKind::Identity,
            "the identity token has no iss claim; the server finds the issuer (and its keys) by it".into(),
            "use an OIDC identity token from your identity provider",
        );
    }
    if j.sub.is_none() {
        report.warn(
            codes::JWT_MISSING_SUB,
            "the identity token has no sub claim; federation rules usually match on the subject".into(),
            "use an OIDC identity token that names the workload in sub",
        );
    }
    if j.iat.is_none() {
        report.warn(
            codes::JWT_MISSING_IAT,
            "the identity token has no (numeric) iat claim, so its age and lifetime are unknown".into(),
            "use an OIDC identity token with iat",
        );
    }
    match j.exp {
        None => report.error(
            codes::JWT_MISSING_EXP,
            ErrorKind::Identity,
            "the identity token has no (numeric) exp claim; the exchange accepts only tokens that expire".into(),
            "use a short-lived OIDC identity token (with exp)",
        ),
        Some(exp) => {
            let left = exp - now;
            if let Some(ago) = jwt::expired_seconds_ago(exp, now) {
                report.error(
                    codes::JWT_EXPIRED,
                    ErrorKind::Identity,
                    format!("the identity token expired {ago} s ago (exp {exp}); it is not sent (the allowance for clock skew is {} s)", jwt::EXPIRY_SKEW_ALLOWANCE_SECONDS),
                    "make the source yield a fresh token: check what writes or rotates the token file (kubelet, CI step, sidecar), or set a fresh token",
                );
            } else if left <= 0 {
                report.warn(
                    codes::JWT_EXPIRING,
                    format!("the identity token's exp passed {} s ago by this machine's clock; within the {} s allowance for clock skew it is still sent, but the server is likely to refuse it", -left, jwt::EXPIRY_SKEW_ALLOWANCE_SECONDS),
                    "make the source yield a fresh token, and check this machine's clock",
                );
            } else if left < EXPIRING_SOON_SECONDS {
                report.warn(
                    codes::JWT_EXPIRING,
                    format!("the identity token expires in {left} s; an exchange grants at most twice the token's remaining life, so the access token would last under {} s", 2 * left),
                    "rotate the identity token earlier (e.g. refresh it when 20% of its life is left)",
                );
            }
        }
    }
    if let Some(nbf) = j.nbf {
        if nbf > now + CLOCK_SKEW_SECONDS {
            report.warn(
                codes::JWT_NOT_YET_VALID,
                format!(
                    "the identity token is not valid for another {} s (nbf {nbf}); check this machine's clock",
                    nbf - now
                ),
                "synchronise the clock (NTP), or wait until the token becomes valid",
            );
        }
    }
    if let Some(l) = j.lifetime_s {
        if l > MAX_RECOMMENDED_LIFETIME_SECONDS {
            report.warn(
                codes::JWT_LONG_LIVED,
                format!("the identity token lives {l} s (iat to exp), over 1 h; a long-lived identity token is a bigger risk if it leaks"),
                "request tokens that live at most 1 h (e.g. expirationSeconds: 3600 on a Kubernetes projected token)",
            );
        }
    }
    if !j.aud.iter().any(|a| a == expected_aud) {
        let got = if j.aud.is_empty() { "no aud claim".to_string() } else { format!("aud {}", j.aud.join(", ")) };
        report.warn(
            codes::JWT_AUDIENCE_MISMATCH,
            format!("the identity token has {got}, not the expected audience {expected_aud}; the federation rule matches the audience"),
            format!("request the token with audience {expected_aud}; if your federation rule is set up for another audience, give that one as the expected audience (CLI: --expected-audience)"),
        );
    }
    idr.token = Some(j);
}

fn json_strings(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Whether any setting of the source (a file path, a command argument…)
/// names the default service-account token.
fn uses_k8s_default_path(spec: &IdentitySpec) -> bool {
    let v = serde_json::to_value(spec).unwrap_or(Value::Null);
    json_strings(&v).iter().any(|s| is_k8s_default_path(s))
}

fn is_k8s_default_path(s: &str) -> bool {
    let s = s.trim_end_matches('/');
    s == KUBERNETES_DEFAULT_TOKEN_PATH || s.ends_with("/run/secrets/kubernetes.io/serviceaccount/token")
}

fn k8s_finding(report: &mut Report, why: &str) {
    report.error(
        codes::KUBERNETES_DEFAULT_TOKEN,
        ErrorKind::Config,
        format!("the identity token is the pod's default Kubernetes service-account token ({why}): it is a credential for the Kubernetes API server and must not be sent elsewhere"),
        format!("mount a projected service-account token with audience {DEFAULT_AUDIENCE} (volumes: projected: sources: serviceAccountToken: {{audience: {DEFAULT_AUDIENCE}, expirationSeconds: 3600, path: token}}) and point the identity token file at it"),
    );
}

fn cache_state(report: &mut Report, path: &Path) -> CacheReport {
    let shown = path.display().to_string();
    let cache = DiskCache::new(path);
    // The lock file as `lock()` would judge it (doctor creates nothing).
    let lock = cache.lock_path();
    let lock_refused = match crate::trusted::open(
        lock,
        "token cache lock file",
        disk::CACHE_STAKE,
        crate::trusted::Policy::Settings,
    ) {
        Err(crate::trusted::OpenError::Refused(why)) => Some(why),
        _ => None,
    };
    let read = match lock_refused {
        Some(why) => DiskRead::Insecure(format!("{why} Until then exchanges are not serialised with other processes.")),
        None => cache.read(),
    };
    match read {
        DiskRead::Missing => {
            CacheReport { path: Some(shown), state: "missing", expires_at: None, remaining_s: None, detail: None }
        }
        DiskRead::Valid(t) => valid_cache(shown, &t),
        DiskRead::Corrupt(reason) => {
            let reason = scrub(&reason, &[], 1000);
            report.warn(
                codes::CACHE_CORRUPT,
                format!("the token cache file is not usable: {reason}"),
                "nothing to do: the next exchange overwrites it (or delete it)",
            );
            CacheReport {
                path: Some(shown),
                state: "corrupt",
                expires_at: None,
                remaining_s: None,
                detail: Some(reason),
            }
        }
        DiskRead::Insecure(reason) => {
            let reason = scrub(&reason, &[], 1000);
            report.warn(
                codes::CACHE_INSECURE,
                format!("the token cache is refused for safety, so every process exchanges anew: {reason}"),
                format!(
                    "do what the message says (a cache file such as {shown} is recreated with mode 0600 in a 0700 directory by the next exchange)"
                ),
            );
            CacheReport {
                path: Some(shown),
                state: "insecure",
                expires_at: None,
                remaining_s: None,
                detail: Some(reason),
            }
        }
    }
}

fn valid_cache(path: String, t: &CachedToken) -> CacheReport {
    match t.expires_at {
        None => CacheReport {
            path: Some(path),
            state: "valid",
            expires_at: None,
            remaining_s: None,
            detail: Some("no expiry".into()),
        },
        Some(e) => {
            let now = crate::clock::now_unix();
            let left = e - now;
            let usable = t.standing(now, HandOutMargin::RefreshPolicy) != Standing::Unusable;
            let state = if usable { "valid" } else { "expired" };
            CacheReport { path: Some(path), state, expires_at: Some(e), remaining_s: Some(left), detail: None }
        }
    }
}

fn user_oauth_cache(report: &mut Report, profile: &str, path: &Path) {
    let shown = path.display().to_string();
    match disk::read_user_oauth(path) {
        Ok(t) => {
            let c = valid_cache(shown.clone(), &t);
            if c.state == "expired" {
                report.error(
                    codes::USER_OAUTH_TOKEN_UNUSABLE,
                    ErrorKind::Config,
                    format!("profile {profile} uses user_oauth, but the access token in {shown} has expired"),
                    "log in again with your Anthropic tooling (anthropic-wif does not refresh user_oauth tokens)",
                );
            }
            report.cache = Some(c);
        }
        Err(e) => {
            report.error(
                codes::USER_OAUTH_TOKEN_UNUSABLE,
                e.kind,
                e.message().to_string(),
                "log in again with your Anthropic tooling",
            );
            report.cache = Some(CacheReport {
                path: Some(shown),
                state: "missing",
                expires_at: None,
                remaining_s: None,
                detail: Some(e.message().to_string()),
            });
        }
    }
}

/// The exchange of the diagnosed identity token: the provider's own locked
/// exchange, which writes the cache (and clears a recorded refresh back-off)
/// as any exchange does.
async fn run_exchange(report: &mut Report, provider: &Provider, jwt: Secret) {
    let result = provider.exchange_now(jwt).await;
    // Waiting for the cache lock timed out, or the token must not be sent: nothing was sent.
    report.exchange.performed = !matches!(&result, Err(e) if matches!(
        e.error_code(),
        Some(disk::LOCK_TIMEOUT_CODE | consumed::CONSUMED_CODE | consumed::IN_FLIGHT_CODE | consumed::EXPIRED_CODE)
    ));
    let Exchanged { response: resp, cached } = match result {
        Ok(done) => done,
        Err(e) => {
            if report.exchange.performed {
                report.exchange.ok = Some(false);
            }
            exchange_error(report, &e);
            return;
        }
    };
    let ex = &mut report.exchange;
    ex.ok = Some(true);
    ex.status = Some(200);
    ex.request_id = resp.request_id.clone();
    ex.granted_lifetime_s = Some(resp.expires_in);
    ex.expires_at = Some(resp.expires_at);
    ex.scope = resp.scope.as_deref().map(|s| scrub(s, &[], 200));
    ex.token_masked = Some(resp.access_token.masked());
    match cached {
        Some(Ok(path)) => {
            let t = CachedToken { access_token: resp.access_token, expires_at: Some(resp.expires_at), lifetime: Some(resp.expires_in) };
            report.exchange.cached_in = Some(path.display().to_string());
            report.cache = Some(valid_cache(path.display().to_string(), &t));
        }
        Some(Err(e)) => report.warn(
            codes::CACHE_WRITE_FAILED,
            format!("the new access token could not be cached: {}", e.message()),
            "fix the cache directory's permissions; until then the identity token just used is consumed and the next exchange needs a fresh one",
        ),
        None => {}
    }
    if resp.expires_in < 300 {
        report.warn(
            codes::ACCESS_TOKEN_SHORT,
            format!("the exchange granted an access token for only {} s", resp.expires_in),
            "raise the federation rule's token lifetime, or use identity tokens with more life left (the grant is capped at twice the identity token's remaining life)",
        );
    }
}

fn exchange_error(report: &mut Report, e: &Error) {
    report.exchange.status = e.status;
    report.exchange.request_id = e.request_id().map(str::to_string);
    report.exchange.error = Some(e.clone());
    let fix = match e.kind {
        ErrorKind::Denied => "check the federation rule against the identity token's claims (issuer, audience, subject) shown above; the Console's Workload identity page shows the reason",
        ErrorKind::Unavailable => "check the base URL and the network, then retry",
        _ => "see the message",
    };
    report.error(codes::EXCHANGE_FAILED, e.kind, e.message().to_string(), fix);
}

#[cfg(test)]
mod tests;
