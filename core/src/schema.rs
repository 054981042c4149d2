//! The shapes every face declares again in its own language — the options,
//! the identity-token sources, the doctor report — described once, from the
//! Rust definitions themselves (docs/design.md §11):
//! - options: the table of [`crate::options::OPTIONS`];
//! - identity sources: every [`IdentitySpec`] variant, its `source` tag and
//!   fields as serde writes and reads them;
//! - the doctor report: every struct of [`crate::doctor::Report`], its keys as
//!   serde writes them, which are always there (`required`) and which may be
//!   `null` (`nullable`).
//!
//! The bindings hand [`schema`] out (Python `_native.schema()`, the Node
//! addon's `schema()`), and each face's tests compare it with the face's own
//! declarations (`_options.py`, `sources.py`, `_doctor.py`; `index.d.ts`): a
//! Rust field, option or source without its counterpart fails them.
//!
//! The examples below are complete by construction: a struct literal must
//! name every field, and `source_examples` matches every variant, so a new
//! field or variant does not compile until it is described here.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::doctor::{
    CacheReport, ConfigReport, ExchangeReport, FieldReport, Finding, IdCheck, IdentityReport, JwtReport, OriginReport,
    RecordReport, Report, Severity,
};
use crate::error::Error;
use crate::identity::IdentitySpec;
use crate::options::{Kind, Scope, OPTIONS};

/// Everything, as one JSON value: `{"options": […], "identity_sources": {tag:
/// {field: {"required": …}}}, "doctor_report": {TypeName: {key: {"required":
/// …, "nullable": …}}}}`.
pub fn schema() -> Value {
    json!({
        "options": options(),
        "identity_sources": identity_sources(),
        "doctor_report": doctor_report(),
    })
}

fn options() -> Value {
    OPTIONS
        .iter()
        .map(|d| {
            let (kind, max, whole) = match d.kind {
                Kind::Text => ("text", None, None),
                Kind::Path => ("path", None, None),
                Kind::Source => ("source", None, None),
                Kind::Switch => ("switch", None, None),
                Kind::Seconds { max, whole } => ("seconds", Some(max), Some(whole)),
                Kind::Vars => ("vars", None, None),
            };
            json!({
                "name": d.name,
                "camel": d.camel,
                "flag": d.flag.map(|f| format!("--{f}")),
                "kind": kind,
                "max": max,
                "whole": whole,
                "scope": match d.scope { Scope::Provider => "provider", Scope::Doctor => "doctor" },
            })
        })
        .collect()
}

/// One example of every source, with every field set.
fn source_examples() -> Vec<IdentitySpec> {
    let s = || Some("x".to_string());
    let every = [
        IdentitySpec::File { path: "/p".into() },
        IdentitySpec::Env { var: "V".into() },
        IdentitySpec::Command { command: vec!["c".into()], timeout_s: Some(1) },
        IdentitySpec::Url { url: "https://x".into(), headers: [("h".to_string(), "v".to_string())].into(), field: s() },
        IdentitySpec::GithubActions { audience: s() },
        IdentitySpec::Gitlab { var: s() },
        IdentitySpec::Circleci { var: s() },
        IdentitySpec::Bitbucket { var: s() },
        IdentitySpec::Terraform { var: s() },
        IdentitySpec::GcpMetadata { audience: s() },
        IdentitySpec::AzureImds { audience: s(), client_id: s() },
        IdentitySpec::Kubernetes { path: Some("/p".into()) },
        IdentitySpec::AwsSts { audience: s(), region: s(), duration_seconds: Some(60), signing_algorithm: s() },
        IdentitySpec::Spiffe { audience: s(), socket: s(), spiffe_id: s(), path: Some("/p".into()) },
        IdentitySpec::Auto { audience: s() },
        IdentitySpec::Literal { token: crate::secret::Secret::new("x".to_string()) },
    ];
    // Every variant is above: a new one stops this match from compiling.
    for spec in &every {
        match spec {
            IdentitySpec::File { .. }
            | IdentitySpec::Env { .. }
            | IdentitySpec::Command { .. }
            | IdentitySpec::Url { .. }
            | IdentitySpec::GithubActions { .. }
            | IdentitySpec::Gitlab { .. }
            | IdentitySpec::Circleci { .. }
            | IdentitySpec::Bitbucket { .. }
            | IdentitySpec::Terraform { .. }
            | IdentitySpec::GcpMetadata { .. }
            | IdentitySpec::AzureImds { .. }
            | IdentitySpec::Kubernetes { .. }
            | IdentitySpec::AwsSts { .. }
            | IdentitySpec::Spiffe { .. }
            | IdentitySpec::Auto { .. }
            | IdentitySpec::Literal { .. } => {}
        }
    }
    every.into()
}

fn identity_sources() -> Value {
    let mut out = Map::new();
    for spec in source_examples() {
        let Ok(Value::Object(mut full)) = serde_json::to_value(&spec) else { continue };
        let tag = full.remove("source").and_then(|t| t.as_str().map(str::to_string)).unwrap_or_default();
        let mut fields = Map::new();
        for key in full.keys() {
            // Required: the source does not parse without it.
            let mut without = full.clone();
            without.remove(key);
            without.insert("source".into(), Value::String(tag.clone()));
            let required = serde_json::from_value::<IdentitySpec>(Value::Object(without)).is_err();
            fields.insert(key.clone(), json!({ "required": required }));
        }
        out.insert(tag, Value::Object(fields));
    }
    Value::Object(out)
}

/// The keys of `full`, each `required` when `empty` has it too, and
/// `nullable` when `empty` has it as `null`.
fn keys<T: Serialize>(full: &T, empty: &T) -> Value {
    let (Ok(Value::Object(full)), Ok(Value::Object(empty))) = (serde_json::to_value(full), serde_json::to_value(empty))
    else {
        return Value::Null;
    };
    full.keys()
        .map(|k| {
            let required = empty.contains_key(k);
            let nullable = empty.get(k).is_some_and(Value::is_null);
            (k.clone(), json!({ "required": required, "nullable": nullable }))
        })
        .collect::<Map<_, _>>()
        .into()
}

fn doctor_report() -> Value {
    let s = || Some("x".to_string());
    let origin = OriginReport { kind: "env", name: s(), path: s(), display: "x".into() };
    let origin_empty = OriginReport { kind: "default", name: None, path: None, display: "x".into() };
    let error = Error::denied("x").with_status(400).with_request_id(s()).with_error_code(s());
    let error_empty = Error::config("x");
    let field = FieldReport { name: "x", value: "x".into(), origin: origin.clone() };
    let config = ConfigReport {
        ok: true,
        step: Some("explicit"),
        description: s(),
        resolution: Some("federation"),
        config_dir: s(),
        profile: s(),
        profile_path: s(),
        fields: vec![field.clone()],
        shadowed: s(),
        error: Some(error.clone()),
    };
    let config_empty = ConfigReport { fields: vec![], ..ConfigReport::default() };
    let id = IdCheck { field: "x", value: "x".into(), origin: origin.clone(), ok: false, error: s() };
    let id_empty = IdCheck { error: None, ..id.clone() };
    let jwt = JwtReport {
        alg: s(),
        kid: s(),
        typ: s(),
        iss: s(),
        sub: s(),
        aud: vec!["x".into()],
        iat: Some(1),
        nbf: Some(1),
        exp: Some(1),
        lifetime_s: Some(1),
        remaining_s: Some(1),
        jti_present: true,
        claim_names: vec!["x".into()],
    };
    let record = RecordReport { path: "x".into(), state: "consumed", at: Some(1), by: s(), detail: s() };
    let record_empty = RecordReport { path: "x".into(), state: "new", at: None, by: None, detail: None };
    let identity = IdentityReport {
        source: "file".into(),
        description: "x".into(),
        settings: json!({}),
        origin: origin.clone(),
        expected_audience: "x".into(),
        fetched: true,
        error: Some(error.clone()),
        size_bytes: Some(1),
        token: Some(jwt.clone()),
        decode_error: s(),
        record: Some(record.clone()),
    };
    let identity_empty = IdentityReport {
        error: None,
        size_bytes: None,
        token: None,
        decode_error: None,
        record: None,
        ..identity.clone()
    };
    let cache = CacheReport { path: s(), state: "valid", expires_at: Some(1), remaining_s: Some(1), detail: s() };
    let cache_empty = CacheReport { path: None, state: "missing", expires_at: None, remaining_s: None, detail: None };
    let exchange = ExchangeReport {
        requested: true,
        performed: true,
        skipped_reason: s(),
        ok: Some(true),
        status: Some(200),
        request_id: s(),
        granted_lifetime_s: Some(1),
        expires_at: Some(1),
        scope: s(),
        token_masked: s(),
        cached_in: s(),
        error: Some(error.clone()),
    };
    let finding =
        Finding { code: "x", severity: Severity::Error, kind: Some("config"), message: "x".into(), fix: "x".into() };
    let finding_empty = Finding { kind: None, ..finding.clone() };
    let report = Report {
        version: 1,
        healthy: true,
        exit_code: 0,
        errors: 0,
        warnings: 0,
        checked_at: 1,
        config: config.clone(),
        ids: vec![id.clone()],
        identity: Some(identity.clone()),
        cache: Some(cache.clone()),
        exchange: exchange.clone(),
        findings: vec![finding.clone()],
    };
    let report_empty = Report {
        identity: None,
        cache: None,
        ids: vec![],
        findings: vec![],
        config: config_empty.clone(),
        exchange: ExchangeReport::default(),
        ..report.clone()
    };
    json!({
        "DoctorReport": keys(&report, &report_empty),
        "DoctorConfig": keys(&config, &config_empty),
        "DoctorField": keys(&field, &field),
        "DoctorOrigin": keys(&origin, &origin_empty),
        "DoctorError": keys(&error, &error_empty),
        "DoctorIdCheck": keys(&id, &id_empty),
        "DoctorJwt": keys(&jwt, &JwtReport::default()),
        "DoctorIdentity": keys(&identity, &identity_empty),
        "DoctorRecord": keys(&record, &record_empty),
        "DoctorCache": keys(&cache, &cache_empty),
        "DoctorExchange": keys(&exchange, &ExchangeReport::default()),
        "DoctorFinding": keys(&finding, &finding_empty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_is_described() {
        let s = schema();
        let tags: Vec<String> = s["identity_sources"].as_object().unwrap().keys().cloned().collect();
        let mut supported = crate::identity::parse::supported_sources();
        // Java's `value` is an alias of `literal` (the same source, accepted in profiles).
        supported.retain(|s| s != "value");
        let mut sorted = tags.clone();
        sorted.sort();
        supported.sort();
        assert_eq!(sorted, supported);
        assert_eq!(s["identity_sources"]["file"]["path"]["required"], true);
        assert_eq!(s["identity_sources"]["command"]["timeout_s"]["required"], false);
    }

    #[test]
    fn the_report_keys_are_what_doctor_writes() {
        let s = schema();
        let r = &s["doctor_report"];
        assert_eq!(r["DoctorReport"]["identity"], json!({"required": false, "nullable": false}));
        assert_eq!(r["DoctorReport"]["exit_code"], json!({"required": true, "nullable": false}));
        assert_eq!(r["DoctorJwt"]["alg"], json!({"required": true, "nullable": true}));
        // A real report's keys are among them.
        let real = crate::doctor::Report::from_options_error(&crate::Error::config("x"), false).to_json();
        for k in real.as_object().unwrap().keys() {
            assert!(r["DoctorReport"].get(k).is_some(), "{k}");
        }
        assert_eq!(s["options"].as_array().unwrap().len(), OPTIONS.len());
    }
}
