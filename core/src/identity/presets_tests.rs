//! Tests of the platform presets against loopback fakes of each platform's
//! endpoint: real HTTP/1.1 (hyper) servers for the metadata services, the
//! container agent and STS (which recomputes and checks the SigV4 signature),
//! and a real HTTP/2 gRPC server on a unix socket for the SPIFFE Workload API.

// Without the Workload API client, its helpers and fakes are unused.
#![cfg_attr(not(feature = "spiffe-workload-api"), allow(unused_imports, dead_code))]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::*;
use crate::error::ErrorKind;
use crate::identity::auto::{detect, detect_with_probes};
use crate::runtime::{block_on, runtime};

const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcmVzZXQifQ.c2lnbmF0dXJl";

use super::tests::{err, run};

fn assert_clean(e: &Error, secrets: &[&str]) {
    for s in secrets {
        assert!(!e.message().contains(s), "message leaks {s:?}: {}", e.message());
    }
    assert!(!e.message().contains("eyJhbGci"), "message leaks a JWT: {}", e.message());
}

fn env_of(vars: &[(&str, &str)]) -> Env {
    Env::fixed(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- HTTP fake

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: String,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn form(&self) -> Vec<(String, String)> {
        reqwest::Url::parse(&format!("http://x/?{}", self.body))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

struct Reply {
    status: u16,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, body: body.into() }
}

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Fake {
        let handler = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen2 = seen.clone();
        runtime().spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                let seen = seen2.clone();
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let handler = handler.clone();
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let query = reqwest::Url::parse(&format!("http://x/?{}", parts.uri.query().unwrap_or("")))
                            .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
                            .unwrap_or_default();
                        let r = Req {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query,
                            headers: parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        seen.lock().unwrap().push(r.clone());
                        let out = handler(&r);
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(out.status)
                                .body(Full::new(Bytes::from(out.body)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), svc));
            }
        });
        Fake { base, seen }
    }
    fn hits(&self) -> Vec<Req> {
        self.seen.lock().unwrap().clone()
    }
    fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_string()
    }
}

// ---------------------------------------------------------------- CI variables

#[test]
fn ci_variable_presets_read_their_variable() {
    let cases: [(IdentitySpec, &str); 4] = [
        (IdentitySpec::Gitlab { var: None }, "ANTHROPIC_ID_TOKEN"),
        (IdentitySpec::Circleci { var: None }, "CIRCLE_OIDC_TOKEN_V2"),
        (IdentitySpec::Bitbucket { var: None }, "BITBUCKET_STEP_OIDC_TOKEN"),
        (IdentitySpec::Terraform { var: None }, "TFC_WORKLOAD_IDENTITY_TOKEN"),
    ];
    for (spec, var) in cases {
        let env = env_of(&[(var, &format!("  {JWT}\n"))]);
        assert_eq!(run(&spec, &env).unwrap().expose(), JWT, "{var}");
        assert!(spec.describe().contains(var), "{}", spec.describe());
    }
    // A custom variable name (GitLab's id_tokens name, a tagged HCP Terraform token).
    let spec = IdentitySpec::Gitlab { var: Some("MY_ID_TOKEN".into()) };
    assert_eq!(run(&spec, &env_of(&[("MY_ID_TOKEN", JWT)])).unwrap().expose(), JWT);
    let spec = IdentitySpec::Terraform { var: Some("TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC".into()) };
    assert_eq!(run(&spec, &env_of(&[("TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC", JWT)])).unwrap().expose(), JWT);
}

#[test]
fn ci_variable_errors_name_the_variable_and_the_platform_setting() {
    let cases: [(IdentitySpec, &str, &[&str]); 4] = [
        (
            IdentitySpec::Gitlab { var: None },
            "ANTHROPIC_ID_TOKEN",
            &["id_tokens: ANTHROPIC_ID_TOKEN: aud: https://api.anthropic.com"],
        ),
        (IdentitySpec::Circleci { var: None }, "CIRCLE_OIDC_TOKEN_V2", &["context", "organization id"]),
        (IdentitySpec::Bitbucket { var: None }, "BITBUCKET_STEP_OIDC_TOKEN", &["oidc: true"]),
        (IdentitySpec::Terraform { var: None }, "TFC_WORKLOAD_IDENTITY_TOKEN", &["TFC_WORKLOAD_IDENTITY_AUDIENCE"]),
    ];
    for (spec, var, fixes) in cases {
        let e = err(&spec, &env_of(&[(var, "")]));
        assert_eq!(e.kind, ErrorKind::Identity);
        assert!(e.message().contains(&spec.describe()), "{}", e.message());
        assert!(e.message().contains(&format!("{var} is not set")), "{}", e.message());
        for f in fixes {
            assert!(e.message().contains(f), "{var}: missing {f:?} in {}", e.message());
        }
    }
    let e = err(&IdentitySpec::Gitlab { var: Some("MY_TOK".into()) }, &env_of(&[]));
    assert!(e.message().contains("id_tokens: MY_TOK: aud:"), "{}", e.message());
    // Multi-line values are refused by the shared finish step.
    let e = err(&IdentitySpec::Circleci { var: None }, &env_of(&[("CIRCLE_OIDC_TOKEN_V2", "a\nb")]));
    assert!(e.message().contains("several lines"), "{}", e.message());
}

// ---------------------------------------------------------------- Google Cloud

fn fake_gcp() -> Fake {
    Fake::start(|r| {
        if r.h("metadata-flavor") != Some("Google") {
            return reply(403, "Missing Metadata-Flavor:Google header.");
        }
        match r.path.as_str() {
            "/computeMetadata/v1/instance/service-accounts/default/identity" => {
                if r.q("format") != Some("full") {
                    return reply(400, "format");
                }
                match r.q("audience") {
                    Some("no-sa") => reply(404, "Not Found"),
                    Some(aud) => reply(200, format!("{JWT}.{}", aud.replace(['/', ':'], "_"))),
                    None => reply(400, "non-empty audience parameter required"),
                }
            }
            "/computeMetadata/v1/instance/id" => reply(200, "1234567890"),
            _ => reply(404, "Not Found"),
        }
    })
}

#[test]
fn gcp_metadata_requests_a_full_identity_token() {
    let fake = fake_gcp();
    let env = env_of(&[("GCE_METADATA_HOST", &fake.host())]);
    let spec = IdentitySpec::GcpMetadata { audience: None };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.https___api.anthropic.com"));
    let hit = &fake.hits()[0];
    assert_eq!(hit.method, "GET");
    assert_eq!(hit.q("audience"), Some("https://api.anthropic.com"));
    let spec = IdentitySpec::GcpMetadata { audience: Some("custom-aud".into()) };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.custom-aud"));

    // No service account attached: 404, explained.
    let spec = IdentitySpec::GcpMetadata { audience: Some("no-sa".into()) };
    let e = err(&spec, &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("HTTP 404") && e.message().contains("service account"), "{}", e.message());

    // GCE_METADATA_HOST may not send plain http to an arbitrary host.
    let e = err(&IdentitySpec::GcpMetadata { audience: None }, &env_of(&[("GCE_METADATA_HOST", "evil.example.com")]));
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("GCE_METADATA_HOST"), "{}", e.message());
}

// ---------------------------------------------------------------- Azure

fn fake_azure() -> Fake {
    Fake::start(|r| {
        let json =
            |tok: String| reply(200, format!(r#"{{"access_token":"{tok}","expires_on":"1","token_type":"Bearer"}}"#));
        match r.path.as_str() {
            "/metadata/identity/oauth2/token" => {
                if r.h("metadata") != Some("true") || r.q("api-version") != Some("2018-02-01") {
                    return reply(
                        400,
                        r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#,
                    );
                }
                match (r.q("resource"), r.q("client_id")) {
                    (Some("unassigned"), _) => {
                        reply(400, r#"{"error":"invalid_request","error_description":"Identity not found"}"#)
                    }
                    (Some(res), cid) => json(format!("{JWT}.imds.{}.{}", res.len(), cid.unwrap_or("system"))),
                    (None, _) => reply(400, "resource"),
                }
            }
            "/msi/token" => {
                if r.h("x-identity-header") != Some("app-service-header-SECRET")
                    || r.q("api-version") != Some("2019-08-01")
                {
                    return reply(401, "bad header app-service-header-SECRET");
                }
                json(format!("{JWT}.appservice.{}", r.q("client_id").unwrap_or("system")))
            }
            "/metadata/instance" => {
                if r.h("metadata") == Some("true") {
                    reply(200, "{}")
                } else {
                    reply(400, "")
                }
            }
            _ => reply(404, ""),
        }
    })
}

#[test]
fn azure_imds_and_app_service() {
    let fake = fake_azure();
    let env = env_of(&[("AZURE_IMDS_ENDPOINT", &fake.base)]);
    let spec = IdentitySpec::AzureImds { audience: None, client_id: None };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.imds.25.system"));
    assert_eq!(fake.hits()[0].q("resource"), Some("https://api.anthropic.com"));
    let spec = IdentitySpec::AzureImds { audience: Some("api://app".into()), client_id: Some("cid-1".into()) };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.imds.9.cid-1"));

    let spec = IdentitySpec::AzureImds { audience: Some("unassigned".into()), client_id: None };
    let e = err(&spec, &env);
    assert!(e.message().contains("Identity not found") && e.message().contains("managed identity"), "{}", e.message());

    // App Service: IDENTITY_ENDPOINT + IDENTITY_HEADER win over IMDS.
    let env = env_of(&[
        ("AZURE_IMDS_ENDPOINT", &fake.base),
        ("IDENTITY_ENDPOINT", &format!("{}/msi/token", fake.base)),
        ("IDENTITY_HEADER", "app-service-header-SECRET"),
    ]);
    let spec = IdentitySpec::AzureImds { audience: None, client_id: Some("uai".into()) };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.appservice.uai"));
    let env = env_of(&[
        ("IDENTITY_ENDPOINT", &format!("{}/msi/token", fake.base)),
        ("IDENTITY_HEADER", "wrong-header-SECRET"),
    ]);
    let e = err(&spec, &env);
    assert!(e.message().contains("HTTP 401"), "{}", e.message());
    assert_clean(&e, &["wrong-header-SECRET"]);

    // App Service on Linux uses a link-local address: allowed there, not for IMDS.
    assert!(url::check_url_allowing("http://169.254.129.2:8081/msi/token", "s", &[], url::PlainHttp::AzureAppService)
        .is_ok());
    assert!(url::check_url("http://169.254.129.2:8081/msi/token", "s", &[]).is_err());
    assert!(url::check_url_allowing("http://10.0.0.1/msi/token", "s", &[], url::PlainHttp::AzureAppService).is_err());

    let e = err(&IdentitySpec::AzureImds { audience: None, client_id: Some(" ".into()) }, &env_of(&[]));
    assert_eq!(e.kind, ErrorKind::Config);
}

// ---------------------------------------------------------------- Kubernetes

#[test]
fn kubernetes_projected_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, format!("{JWT}\n")).unwrap();
    let spec = IdentitySpec::Kubernetes { path: Some(p.clone()) };
    assert_eq!(run(&spec, &env_of(&[])).unwrap().expose(), JWT);
    // The default path, moved by the documented variable.
    let spec = IdentitySpec::Kubernetes { path: None };
    let env = env_of(&[("ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH", p.to_str().unwrap())]);
    assert_eq!(run(&spec, &env).unwrap().expose(), JWT);

    let missing = dir.path().join("absent");
    let spec = IdentitySpec::Kubernetes { path: Some(missing) };
    let e = err(&spec, &env_of(&[]));
    assert_eq!(e.kind, ErrorKind::Identity);
    for needle in [
        "does not exist",
        "projected",
        "serviceAccountToken",
        "audience: https://api.anthropic.com",
        "expirationSeconds",
        "mountPath",
    ] {
        assert!(e.message().contains(needle), "missing {needle:?}: {}", e.message());
    }
    // Without a configured path the message names the default.
    assert!(IdentitySpec::Kubernetes { path: None }.describe().contains("/var/run/secrets/anthropic.com/token"));
}

// ---------------------------------------------------------------- AWS

const AKID: &str = "AKIDTESTEXAMPLE";
const SECRET_KEY: &str = "test/secret+key-DO-NOT-LEAK";
const SESSION: &str = "session-token-DO-NOT-LEAK";
const TEMP_SECRET: &str = "temp-secret-from-sts-DO-NOT-LEAK";

/// Recompute the SigV4 signature of `r` with `secret` and compare; the
/// canonical request is rebuilt from what actually arrived on the wire.
fn verify_sigv4(r: &Req, secret: &str) -> std::result::Result<(), String> {
    let auth = r.h("authorization").ok_or("no Authorization header")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or("not AWS4-HMAC-SHA256")?;
    let mut cred = "";
    let mut signed = "";
    let mut sig = "";
    for part in rest.split(", ") {
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = v;
        }
    }
    let scope: Vec<&str> = cred.split('/').collect();
    if scope.len() != 5 || scope[3] != "sts" || scope[4] != "aws4_request" {
        return Err(format!("bad credential scope {cred}"));
    }
    let amz = r.h("x-amz-date").ok_or("no x-amz-date")?;
    if !amz.starts_with(scope[1]) {
        return Err("date mismatch".into());
    }
    let (now, _) = sigv4::amz_date(crate::clock::now_unix());
    if amz[..8] != now[..8] {
        return Err("x-amz-date is not today".into());
    }
    for required in ["host", "x-amz-date", "content-type"] {
        if !signed.split(';').any(|h| h == required) {
            return Err(format!("{required} not signed"));
        }
    }
    if r.h("x-amz-security-token").is_some() && !signed.contains("x-amz-security-token") {
        return Err("session token not signed".into());
    }
    let headers: Vec<(&str, &str)> = signed.split(';').map(|h| (h, r.h(h).unwrap_or(""))).collect();
    let creds = sigv4::Credentials {
        access_key_id: scope[0].to_string(),
        secret_access_key: Secret::new(secret),
        session_token: None,
        origin: String::new(),
    };
    let req =
        sigv4::Request { method: &r.method, path: &r.path, query: &[], headers: &headers, payload: r.body.as_bytes() };
    let expect = sigv4::authorization(&req, &creds, scope[2], "sts", amz);
    if expect != auth {
        return Err(format!("signature mismatch (got {sig})"));
    }
    Ok(())
}

fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"#
        ),
    )
}

/// One fake for STS, the container agent and IMDS (the tests point every
/// AWS endpoint variable at it).
fn fake_aws() -> Fake {
    Fake::start(|r| {
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/") => {}
            ("PUT", "/latest/api/token") => {
                return if r.h("x-aws-ec2-metadata-token-ttl-seconds").is_some() {
                    reply(200, "imds-session-SECRET")
                } else {
                    reply(400, "")
                };
            }
            ("GET", p) if p.starts_with("/latest/meta-data/") => {
                if r.h("x-aws-ec2-metadata-token") != Some("imds-session-SECRET") {
                    return reply(401, "");
                }
                return match p {
                    "/latest/meta-data/iam/security-credentials/" => reply(200, "my-instance-role\n"),
                    "/latest/meta-data/iam/security-credentials/my-instance-role" => reply(
                        200,
                        format!(
                            r#"{{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"{TEMP_SECRET}","Token":"imds-session-token","Expiration":"2099-01-01T00:00:00Z"}}"#
                        ),
                    ),
                    "/latest/meta-data/placement/region" => reply(200, "ap-southeast-2"),
                    _ => reply(404, ""),
                };
            }
            ("GET", "/v2/credentials/task" | "/pod-identity") => {
                if r.path == "/pod-identity" && r.h("authorization") != Some("pod-identity-auth-SECRET") {
                    return reply(401, "no auth");
                }
                return reply(
                    200,
                    format!(
                        r#"{{"AccessKeyId":"ASIACONTAINER","SecretAccessKey":"{TEMP_SECRET}","Token":"container-token","Expiration":"2099-01-01T00:00:00Z"}}"#
                    ),
                );
            }
            _ => return reply(404, "no such path"),
        }
        let form = r.form();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if get("Version") != Some("2011-06-15") {
            return sts_error(400, "InvalidParameterValue", "Version");
        }
        match get("Action") {
            Some("AssumeRoleWithWebIdentity") => {
                if r.h("authorization").is_some() {
                    return sts_error(400, "InvalidParameterValue", "AssumeRoleWithWebIdentity must be unsigned");
                }
                if get("WebIdentityToken") != Some("irsa-projected-jwt")
                    || get("RoleArn") != Some("arn:aws:iam::1:role/r")
                {
                    return sts_error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
                }
                reply(
                    200,
                    format!(
                        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
                         <AccessKeyId>ASIAWEBID</AccessKeyId><SecretAccessKey>{TEMP_SECRET}</SecretAccessKey>\
                         <SessionToken>webid-session</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>\
                         </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
                    ),
                )
            }
            Some("GetWebIdentityToken") => {
                let auth = r.h("authorization").unwrap_or("");
                let secret = if auth.contains(&format!("Credential={AKID}/")) { SECRET_KEY } else { TEMP_SECRET };
                if let Err(why) = verify_sigv4(r, secret) {
                    return sts_error(403, "SignatureDoesNotMatch", &why);
                }
                if get("Audience.member.1") == Some("disabled") {
                    return sts_error(
                        403,
                        "OutboundWebIdentityFederationDisabledException",
                        "The outbound web identity federation feature is not enabled for this account",
                    );
                }
                let aud = get("Audience.member.1").unwrap_or("-");
                let tok = format!(
                    "{JWT}.{}.{}.{}.{}.{}",
                    aud.len(),
                    get("SigningAlgorithm").unwrap_or("-"),
                    get("DurationSeconds").unwrap_or("-"),
                    auth.split('/').nth(2).unwrap_or("-"),
                    auth.split('=').nth(1).and_then(|c| c.split('/').next()).unwrap_or("-")
                );
                reply(
                    200,
                    format!(
                        r#"<GetWebIdentityTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetWebIdentityTokenResult><WebIdentityToken>{tok}</WebIdentityToken><Expiration>2099-01-01T00:00:00Z</Expiration></GetWebIdentityTokenResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetWebIdentityTokenResponse>"#
                    ),
                )
            }
            _ => sts_error(400, "InvalidAction", "unknown action"),
        }
    })
}

fn aws_spec() -> IdentitySpec {
    IdentitySpec::AwsSts { audience: None, region: None, duration_seconds: None, signing_algorithm: None }
}

/// Every AWS endpoint at the fake; IMDS off unless asked for.
fn aws_env(fake: &Fake, vars: &[(&str, &str)]) -> Env {
    let mut all: Vec<(String, String)> = vec![
        ("AWS_ENDPOINT_URL_STS".into(), format!("{}/", fake.base)),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), format!("http://127.0.0.1:{}", closed_port())),
        ("ANTHROPIC_WIF_AWS_CONTAINER_ENDPOINT".into(), fake.base.clone()),
    ];
    for (k, v) in vars {
        all.retain(|(n, _)| n != k);
        all.push((k.to_string(), v.to_string()));
    }
    Env::fixed(all)
}

#[test]
fn aws_sts_signed_with_environment_credentials() {
    let fake = fake_aws();
    let env = aws_env(
        &fake,
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    let got = run(&aws_spec(), &env).unwrap();
    assert_eq!(got.expose(), format!("{JWT}.25.RS256.300.eu-west-1.{AKID}"));
    let hit = &fake.hits()[0];
    assert_eq!(hit.h("x-amz-security-token"), Some(SESSION));
    assert!(hit.h("content-type").unwrap().starts_with("application/x-www-form-urlencoded"));
    let form = hit.form();
    assert!(form.contains(&("Action".into(), "GetWebIdentityToken".into())));
    assert!(form.contains(&("Audience.member.1".into(), "https://api.anthropic.com".into())));
    assert!(!hit.body.contains(SECRET_KEY));

    // Spec options: region wins over AWS_REGION; ES384; duration.
    let spec = IdentitySpec::AwsSts {
        audience: Some("aud-x".into()),
        region: Some("us-west-2".into()),
        duration_seconds: Some(3600),
        signing_algorithm: Some("ES384".into()),
    };
    assert_eq!(run(&spec, &env).unwrap().expose(), format!("{JWT}.5.ES384.3600.us-west-2.{AKID}"));

    // A wrong secret: the fake's signature check fails; the message explains, leaks nothing.
    let env = aws_env(
        &fake,
        &[("AWS_ACCESS_KEY_ID", AKID), ("AWS_SECRET_ACCESS_KEY", "wrong-secret-XYZ"), ("AWS_REGION", "eu-west-1")],
    );
    let e = err(&aws_spec(), &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(
        e.message().contains("SignatureDoesNotMatch") && e.message().contains("invalid or expired"),
        "{}",
        e.message()
    );
    assert_clean(&e, &["wrong-secret-XYZ"]);

    // Outbound federation disabled: the hint names the IAM call.
    let spec = IdentitySpec::AwsSts {
        audience: Some("disabled".into()),
        region: None,
        duration_seconds: None,
        signing_algorithm: None,
    };
    let env = aws_env(
        &fake,
        &[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ],
    );
    let e = err(&spec, &env);
    assert!(e.message().contains("enable-outbound-web-identity-federation"), "{}", e.message());
    assert!(e.message().contains("environment variables AWS_ACCESS_KEY_ID"), "{}", e.message());
    assert_clean(&e, &[SECRET_KEY, SESSION]);
}

#[test]
fn aws_sts_config_errors() {
    let fake = fake_aws();
    let base = [("AWS_ACCESS_KEY_ID", AKID), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)];
    // No region anywhere.
    let e = err(&aws_spec(), &aws_env(&fake, &base));
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("AWS_REGION") && e.message().contains("region"), "{}", e.message());
    // Bad values.
    for spec in [
        IdentitySpec::AwsSts {
            audience: None,
            region: Some("us-east-1".into()),
            duration_seconds: Some(59),
            signing_algorithm: None,
        },
        IdentitySpec::AwsSts {
            audience: None,
            region: Some("us-east-1".into()),
            duration_seconds: Some(3601),
            signing_algorithm: None,
        },
        IdentitySpec::AwsSts {
            audience: None,
            region: Some("us-east-1".into()),
            duration_seconds: None,
            signing_algorithm: Some("HS256".into()),
        },
        IdentitySpec::AwsSts {
            audience: None,
            region: Some("us east/1".into()),
            duration_seconds: None,
            signing_algorithm: None,
        },
    ] {
        assert_eq!(err(&spec, &aws_env(&fake, &base)).kind, ErrorKind::Config);
    }
    // Half a key pair.
    let e = err(&aws_spec(), &aws_env(&fake, &[("AWS_ACCESS_KEY_ID", AKID), ("AWS_REGION", "us-east-1")]));
    assert_eq!(e.kind, ErrorKind::Config);
    // The real STS endpoint is https and regional (checked, not contacted).
    let e = block_on(aws::fetch(
        aws::StsParams { audience: None, region: Some("us-east-1"), duration_seconds: None, signing_algorithm: None },
        &Env::fixed([
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_ENDPOINT_URL_STS", "http://sts.example.com/"),
        ]),
        "src",
    ))
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config, "{}", e.message());
    assert!(e.message().contains("AWS_ENDPOINT_URL_STS"), "{}", e.message());
}

#[test]
fn aws_shared_files() {
    let fake = fake_aws();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET_KEY}\n\n[sso]\nsso_session = corp\n"),
    )
    .unwrap();
    std::fs::write(&config, "[default]\nregion = ca-central-1\n[profile assumed]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n").unwrap();
    let files =
        [("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()), ("AWS_CONFIG_FILE", config.to_str().unwrap())];
    // Default profile: keys from credentials, region from config.
    let got = run(&aws_spec(), &aws_env(&fake, &files)).unwrap();
    assert_eq!(got.expose(), format!("{JWT}.25.RS256.300.ca-central-1.{AKID}"));

    // Unsupported profiles are refused with the export recipe.
    for profile in ["assumed", "sso"] {
        let mut vars = files.to_vec();
        vars.push(("AWS_PROFILE", profile));
        vars.push(("AWS_REGION", "us-east-1"));
        let e = err(&aws_spec(), &aws_env(&fake, &vars));
        assert_eq!(e.kind, ErrorKind::Config, "{}", e.message());
        assert!(
            e.message().contains("does not support") && e.message().contains("export-credentials"),
            "{}",
            e.message()
        );
    }
    // A profile that does not exist.
    let mut vars = files.to_vec();
    vars.push(("AWS_PROFILE", "nope"));
    let e = err(&aws_spec(), &aws_env(&fake, &vars));
    assert!(e.message().contains("AWS_PROFILE is nope"), "{}", e.message());
    assert_clean(&e, &[SECRET_KEY]);
    // HOME-based default paths.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".aws")).unwrap();
    std::fs::copy(&creds, home.path().join(".aws/credentials")).unwrap();
    let env = aws_env(&fake, &[("HOME", home.path().to_str().unwrap()), ("AWS_REGION", "eu-north-1")]);
    assert_eq!(run(&aws_spec(), &env).unwrap().expose(), format!("{JWT}.25.RS256.300.eu-north-1.{AKID}"));
}

#[test]
fn aws_web_identity_container_and_imds_credentials() {
    let fake = fake_aws();
    let dir = tempfile::tempdir().unwrap();
    // EKS IRSA: AssumeRoleWithWebIdentity (unsigned), then a signed GetWebIdentityToken.
    let tok = dir.path().join("irsa");
    std::fs::write(&tok, "irsa-projected-jwt\n").unwrap();
    let env = aws_env(
        &fake,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", tok.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_REGION", "us-east-2"),
        ],
    );
    assert_eq!(run(&aws_spec(), &env).unwrap().expose(), format!("{JWT}.25.RS256.300.us-east-2.ASIAWEBID"));
    let hits = fake.hits();
    assert_eq!(hits[0].form().iter().find(|(k, _)| k == "Action").unwrap().1, "AssumeRoleWithWebIdentity");
    assert_eq!(hits[1].h("x-amz-security-token"), Some("webid-session"));
    // A role that does not trust the token.
    let env = aws_env(
        &fake,
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", tok.to_str().unwrap()),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/other"),
            ("AWS_REGION", "us-east-2"),
        ],
    );
    let e = err(&aws_spec(), &env);
    assert!(e.message().contains("AccessDenied") && e.message().contains("trust policy"), "{}", e.message());

    // ECS: the relative URI on the container endpoint.
    let env = aws_env(
        &fake,
        &[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task"), ("AWS_REGION", "sa-east-1")],
    );
    assert_eq!(run(&aws_spec(), &env).unwrap().expose(), format!("{JWT}.25.RS256.300.sa-east-1.ASIACONTAINER"));
    // EKS Pod Identity: full URI plus the authorization token file.
    let auth = dir.path().join("eks-pod-identity-token");
    std::fs::write(&auth, "pod-identity-auth-SECRET").unwrap();
    let env = aws_env(
        &fake,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("{}/pod-identity", fake.base)),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", auth.to_str().unwrap()),
            ("AWS_REGION", "sa-east-1"),
        ],
    );
    assert_eq!(run(&aws_spec(), &env).unwrap().expose(), format!("{JWT}.25.RS256.300.sa-east-1.ASIACONTAINER"));
    let env = aws_env(
        &fake,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &format!("{}/pod-identity", fake.base)),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-auth-SECRET"),
            ("AWS_REGION", "sa-east-1"),
        ],
    );
    let e = err(&aws_spec(), &env);
    assert!(e.message().contains("HTTP 401") && e.message().contains("Pod Identity"), "{}", e.message());
    assert_clean(&e, &["wrong-auth-SECRET"]);
    // The full URI may not be plain http to an arbitrary host.
    let env =
        aws_env(&fake, &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://10.1.2.3/creds"), ("AWS_REGION", "sa-east-1")]);
    assert_eq!(err(&aws_spec(), &env).kind, ErrorKind::Config);
    assert!(
        url::check_url_allowing("http://169.254.170.23/v1/credentials", "s", &[], url::PlainHttp::AwsContainer).is_ok()
    );
    assert!(
        url::check_url_allowing("http://[fd00:ec2::23]/v1/credentials", "s", &[], url::PlainHttp::AwsContainer).is_ok()
    );
    assert!(url::check_url("http://169.254.170.2/v2/credentials/x", "s", &[]).is_ok());

    // EC2 IMDSv2: token, role, credentials, and the region from placement.
    let env = aws_env(&fake, &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &fake.base)]);
    assert_eq!(run(&aws_spec(), &env).unwrap().expose(), format!("{JWT}.25.RS256.300.ap-southeast-2.ASIAIMDS"));
    let imds: Vec<Req> = fake.hits().into_iter().filter(|h| h.path.starts_with("/latest")).collect();
    assert_eq!(imds[0].method, "PUT");
    assert!(imds[1..].iter().all(|h| h.h("x-aws-ec2-metadata-token") == Some("imds-session-SECRET")));

    // Nothing anywhere: the error lists every place looked at.
    let env = aws_env(&fake, &[("AWS_REGION", "us-east-1")]);
    let e = err(&aws_spec(), &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    for needle in [
        "AWS_ACCESS_KEY_ID",
        "~/.aws/credentials",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "instance metadata",
    ] {
        assert!(e.message().contains(needle), "missing {needle}: {}", e.message());
    }
    let env = aws_env(&fake, &[("AWS_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")]);
    assert!(err(&aws_spec(), &env).message().contains("AWS_EC2_METADATA_DISABLED"));
}

// ---------------------------------------------------------------- SPIFFE

#[derive(Clone, Copy)]
enum SpiffeMode {
    Ok,
    PermissionDenied,
}

/// A real gRPC server (HTTP/2 over a unix socket) implementing FetchJWTSVID.
fn fake_workload_api(path: &Path, mode: SpiffeMode) -> Arc<Mutex<Vec<Vec<String>>>> {
    let listener = {
        let _guard = runtime().enter();
        tokio::net::UnixListener::bind(path).unwrap()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    runtime().spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { return };
            let seen = seen2.clone();
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let trailers_only = |status: &str, msg: &str| {
                        hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", status)
                            .header("grpc-message", msg)
                            .body(GrpcBody::new(Bytes::new(), None))
                            .unwrap()
                    };
                    if req.uri().path() != "/SpiffeWorkloadAPI/FetchJWTSVID" {
                        return Ok::<_, Infallible>(trailers_only("12", "unimplemented"));
                    }
                    if req.headers().get("workload.spiffe.io").and_then(|v| v.to_str().ok()) != Some("true")
                        || req.headers().get("content-type").and_then(|v| v.to_str().ok()) != Some("application/grpc")
                    {
                        return Ok(trailers_only("3", "security header missing from request"));
                    }
                    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    let msg = if body.len() >= 5 { &body[5..] } else { &body[..] };
                    // Decode JWTSVIDRequest: field 1 audiences, field 2 spiffe_id.
                    let mut fields = Vec::new();
                    let mut i = 0;
                    while i + 1 < msg.len() {
                        let tag = msg[i];
                        let len = msg[i + 1] as usize; // test audiences are short
                        let val = String::from_utf8_lossy(&msg[i + 2..i + 2 + len]).into_owned();
                        fields.push(format!("{}={val}", tag >> 3));
                        i += 2 + len;
                    }
                    seen.lock().unwrap().push(fields.clone());
                    if let SpiffeMode::PermissionDenied = mode {
                        return Ok(trailers_only("7", "no identity issued"));
                    }
                    let aud = fields.iter().find_map(|f| f.strip_prefix("1=")).unwrap_or("").to_string();
                    let mut resp = Vec::new();
                    for id in ["spiffe://example.org/web", "spiffe://example.org/batch"] {
                        let mut svid = Vec::new();
                        for (f, v) in [(1u8, id.to_string()), (2u8, format!("{JWT}.{}.{}", aud.len(), id.len()))] {
                            svid.push(f << 3 | 2);
                            svid.push(v.len() as u8);
                            svid.extend_from_slice(v.as_bytes());
                        }
                        resp.push(1 << 3 | 2);
                        resp.push(svid.len() as u8);
                        resp.extend_from_slice(&svid);
                    }
                    let mut framed = vec![0u8];
                    framed.extend_from_slice(&(resp.len() as u32).to_be_bytes());
                    framed.extend_from_slice(&resp);
                    let mut trailers = hyper::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    Ok(hyper::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(GrpcBody::new(Bytes::from(framed), Some(trailers)))
                        .unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc),
            );
        }
    });
    seen
}

/// A body of one data frame followed by trailers.
struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<hyper::HeaderMap>,
}

impl GrpcBody {
    fn new(data: Bytes, trailers: Option<hyper::HeaderMap>) -> Self {
        GrpcBody { data: (!data.is_empty()).then_some(data), trailers }
    }
}

impl hyper::body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(d))));
        }
        if let Some(t) = self.trailers.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::trailers(t))));
        }
        std::task::Poll::Ready(None)
    }
    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

fn spiffe_spec(id: Option<&str>) -> IdentitySpec {
    IdentitySpec::Spiffe { audience: None, socket: None, spiffe_id: id.map(str::to_string), path: None }
}

#[cfg(feature = "spiffe-workload-api")]
#[test]
fn spiffe_workload_api_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let seen = fake_workload_api(&sock, SpiffeMode::Ok);
    let env = env_of(&[("SPIFFE_ENDPOINT_SOCKET", &format!("unix://{}", sock.display()))]);
    // Default identity: the first SVID; the audience went out in the request.
    assert_eq!(run(&spiffe_spec(None), &env).unwrap().expose(), format!("{JWT}.25.24"));
    assert_eq!(seen.lock().unwrap()[0], vec!["1=https://api.anthropic.com".to_string()]);
    // A chosen SPIFFE ID, sent and selected.
    let id = "spiffe://example.org/batch";
    assert_eq!(run(&spiffe_spec(Some(id)), &env).unwrap().expose(), format!("{JWT}.25.26"));
    assert_eq!(seen.lock().unwrap()[1], vec!["1=https://api.anthropic.com".to_string(), format!("2={id}")]);
    // The socket from the spec, unix: form, custom audience.
    let spec = IdentitySpec::Spiffe {
        audience: Some("aud".into()),
        socket: Some(format!("unix:{}", sock.display())),
        spiffe_id: None,
        path: None,
    };
    assert_eq!(run(&spec, &env_of(&[])).unwrap().expose(), format!("{JWT}.3.24"));
    // An ID the agent does not have.
    let e = err(&spiffe_spec(Some("spiffe://example.org/other")), &env);
    assert!(e.message().contains("no JWT-SVID for spiffe://example.org/other"), "{}", e.message());
}

#[cfg(feature = "spiffe-workload-api")]
#[test]
fn spiffe_workload_api_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("denied.sock");
    fake_workload_api(&sock, SpiffeMode::PermissionDenied);
    let env = env_of(&[("SPIFFE_ENDPOINT_SOCKET", &format!("unix://{}", sock.display()))]);
    let e = err(&spiffe_spec(None), &env);
    assert_eq!(e.kind, ErrorKind::Identity);
    assert!(e.message().contains("gRPC status 7") && e.message().contains("no identity issued"), "{}", e.message());
    assert!(e.message().contains("PermissionDenied") && e.message().contains("registration"), "{}", e.message());

    // No agent at the socket path.
    let env = env_of(&[("SPIFFE_ENDPOINT_SOCKET", &format!("unix://{}/absent.sock", dir.path().display()))]);
    let e = err(&spiffe_spec(None), &env);
    assert!(e.message().contains("does not exist") && e.message().contains("SPIRE agent"), "{}", e.message());
}

#[test]
fn spiffe_config_errors_and_helper_file() {
    let dir = tempfile::tempdir().unwrap();
    // Not configured at all.
    let e = err(&spiffe_spec(None), &env_of(&[]));
    assert!(e.message().contains("SPIFFE_ENDPOINT_SOCKET is not set"), "{}", e.message());
    // tcp:// is not supported; a bad SPIFFE ID is a config error.
    let e = err(&spiffe_spec(None), &env_of(&[("SPIFFE_ENDPOINT_SOCKET", "tcp://127.0.0.1:8081")]));
    assert_eq!(e.kind, ErrorKind::Config);
    assert_eq!(err(&spiffe_spec(Some("example.org/x")), &env_of(&[])).kind, ErrorKind::Config);

    // spiffe-helper file mode.
    let f = dir.path().join("jwt_svid.token");
    std::fs::write(&f, JWT).unwrap();
    let spec = IdentitySpec::Spiffe { audience: None, socket: None, spiffe_id: None, path: Some(f.clone()) };
    assert_eq!(run(&spec, &env_of(&[])).unwrap().expose(), JWT);
    let spec =
        IdentitySpec::Spiffe { audience: None, socket: None, spiffe_id: None, path: Some(dir.path().join("nope")) };
    assert!(err(&spec, &env_of(&[])).message().contains("jwt_svid_file_name"));
    let spec =
        IdentitySpec::Spiffe { audience: None, socket: Some("unix:///x".into()), spiffe_id: None, path: Some(f) };
    assert_eq!(err(&spec, &env_of(&[])).kind, ErrorKind::Config);
}

// ---------------------------------------------------------------- auto

fn no_probes() -> Vec<(String, String)> {
    let closed = |_| format!("127.0.0.1:{}", closed_port());
    vec![
        ("GCE_METADATA_HOST".into(), closed(())),
        ("AZURE_IMDS_ENDPOINT".into(), format!("http://{}", closed(()))),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT".into(), format!("http://{}", closed(()))),
        ("ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH".into(), "/nonexistent/anthropic-wif-test/token".into()),
    ]
}

fn detected(vars: &[(&str, &str)]) -> Option<IdentitySpec> {
    let mut all = no_probes();
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    detect(&Env::fixed(all), None).map(|d| d.spec)
}

#[test]
fn auto_detection_order() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("token");
    std::fs::write(&k8s, JWT).unwrap();
    let k8s = k8s.to_str().unwrap().to_string();
    // Everything at once, removed one by one from the top: each step shows
    // the next platform in the documented order.
    type Layer<'a> = (Vec<(&'a str, &'a str)>, Option<IdentitySpec>);
    let mut layers: Vec<Layer> = vec![
        (
            vec![("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x"), ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t")],
            Some(IdentitySpec::GithubActions { audience: None }),
        ),
        (vec![("GITLAB_CI", "true"), ("ANTHROPIC_ID_TOKEN", JWT)], Some(IdentitySpec::Gitlab { var: None })),
        (vec![("CIRCLE_OIDC_TOKEN_V2", JWT)], Some(IdentitySpec::Circleci { var: None })),
        (vec![("BITBUCKET_STEP_OIDC_TOKEN", JWT)], Some(IdentitySpec::Bitbucket { var: None })),
        (vec![("TFC_WORKLOAD_IDENTITY_TOKEN", JWT)], Some(IdentitySpec::Terraform { var: None })),
        (vec![("SPIFFE_ENDPOINT_SOCKET", "unix:///run/spire.sock")], Some(spiffe_spec(None))),
        (
            vec![("ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH", &k8s)],
            Some(IdentitySpec::Kubernetes { path: Some(k8s.clone().into()) }),
        ),
        (
            vec![("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"), ("IDENTITY_HEADER", "h")],
            Some(IdentitySpec::AzureImds { audience: None, client_id: None }),
        ),
        (vec![("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x")], Some(aws_spec())),
    ];
    while !layers.is_empty() {
        let vars: Vec<(&str, &str)> = layers.iter().flat_map(|(v, _)| v.iter().copied()).collect();
        assert_eq!(detected(&vars), layers[0].1, "with {vars:?}");
        layers.remove(0);
    }
    assert_eq!(detected(&[]), None);
    // GitLab without its variable is not GitLab; the other AWS signals.
    assert_eq!(detected(&[("GITLAB_CI", "true")]), None);
    assert_eq!(detected(&[("ANTHROPIC_ID_TOKEN", JWT)]), None);
    assert_eq!(detected(&[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")]), Some(aws_spec()));
    assert_eq!(detected(&[("AWS_PROFILE", "dev")]), Some(aws_spec()));
    assert_eq!(detected(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"), ("AWS_ROLE_ARN", "arn")]), Some(aws_spec()));
    // The audience is passed to presets that take one.
    let env = Env::fixed(vec![("SPIFFE_ENDPOINT_SOCKET".to_string(), "unix:///s".to_string())]);
    let d = detect(&env, Some("aud-1")).unwrap();
    assert_eq!(
        d.spec,
        IdentitySpec::Spiffe { audience: Some("aud-1".into()), socket: None, spiffe_id: None, path: None }
    );
    assert!(d.reason.contains("SPIFFE_ENDPOINT_SOCKET"), "{}", d.reason);
}

#[test]
fn auto_fetches_through_the_detected_preset() {
    let env = env_of(&[("CIRCLE_OIDC_TOKEN_V2", JWT)]);
    assert_eq!(run(&IdentitySpec::Auto { audience: None }, &env).unwrap().expose(), JWT);
}

#[test]
fn auto_probes_metadata_servers_last() {
    let gcp = fake_gcp();
    let azure = fake_azure();
    let aws = fake_aws();
    let mut vars = no_probes();
    let set = |vars: &mut Vec<(String, String)>, k: &str, v: String| {
        vars.retain(|(n, _)| n != k);
        vars.push((k.to_string(), v));
    };
    // Only EC2 answers.
    set(&mut vars, "AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.base.clone());
    let d = block_on(detect_with_probes(&Env::fixed(vars.clone()), None)).unwrap();
    assert_eq!(d.spec, aws_spec());
    // Azure answers too: Azure is preferred over EC2.
    set(&mut vars, "AZURE_IMDS_ENDPOINT", azure.base.clone());
    let d = block_on(detect_with_probes(&Env::fixed(vars.clone()), None)).unwrap();
    assert_eq!(d.spec, IdentitySpec::AzureImds { audience: None, client_id: None });
    // Google answers: Google first. End to end through fetch.
    set(&mut vars, "GCE_METADATA_HOST", gcp.host());
    let env = Env::fixed(vars.clone());
    let d = block_on(detect_with_probes(&env, Some("a-b"))).unwrap();
    assert_eq!(d.spec, IdentitySpec::GcpMetadata { audience: Some("a-b".into()) });
    assert_eq!(run(&IdentitySpec::Auto { audience: Some("a-b".into()) }, &env).unwrap().expose(), format!("{JWT}.a-b"));
    // The probe sent the metadata header.
    assert!(gcp
        .hits()
        .iter()
        .any(|h| h.path == "/computeMetadata/v1/instance/id" && h.h("metadata-flavor") == Some("Google")));
}

#[test]
fn auto_with_nothing_names_everything_looked_for() {
    let mut vars = no_probes();
    vars.push(("GITLAB_CI".into(), "true".into()));
    vars.push(("BITBUCKET_BUILD_NUMBER".into(), "7".into()));
    let spec = IdentitySpec::Auto { audience: None };
    let e = err(&spec, &Env::fixed(vars));
    assert_eq!(e.kind, ErrorKind::Identity);
    for needle in [
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ANTHROPIC_ID_TOKEN",
        "CIRCLE_OIDC_TOKEN_V2",
        "BITBUCKET_STEP_OIDC_TOKEN",
        "TFC_WORKLOAD_IDENTITY_TOKEN",
        "SPIFFE_ENDPOINT_SOCKET",
        "/nonexistent/anthropic-wif-test/token",
        "IDENTITY_ENDPOINT",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "Google Cloud",
        "Azure",
        "EC2",
        // Near misses, with the platform-side fix.
        "id_tokens: ANTHROPIC_ID_TOKEN: aud: https://api.anthropic.com",
        "oidc: true",
    ] {
        assert!(e.message().contains(needle), "missing {needle:?}: {}", e.message());
    }
}

// ---------------------------------------------------------------- shapes

#[test]
fn preset_json_shapes_round_trip() {
    let cases = [
        r#"{"source":"gitlab"}"#,
        r#"{"source":"gitlab","var":"ANTHROPIC_ID_TOKEN"}"#,
        r#"{"source":"circleci"}"#,
        r#"{"source":"bitbucket"}"#,
        r#"{"source":"terraform","var":"TFC_WORKLOAD_IDENTITY_TOKEN_ANTHROPIC"}"#,
        r#"{"source":"gcp_metadata"}"#,
        r#"{"source":"gcp_metadata","audience":"https://api.anthropic.com"}"#,
        r#"{"source":"azure_imds","audience":"api://anthropic","client_id":"00000000-0000-0000-0000-000000000000"}"#,
        r#"{"source":"kubernetes"}"#,
        r#"{"source":"kubernetes","path":"/var/run/secrets/anthropic.com/token"}"#,
        r#"{"source":"aws_sts","audience":"https://api.anthropic.com","region":"us-east-1","duration_seconds":900,"signing_algorithm":"ES384"}"#,
        r#"{"source":"aws_sts"}"#,
        r#"{"source":"spiffe","socket":"unix:///run/spire/sockets/agent.sock","spiffe_id":"spiffe://example.org/w"}"#,
        r#"{"source":"spiffe","path":"/run/spiffe/jwt.token"}"#,
        r#"{"source":"auto"}"#,
        r#"{"source":"auto","audience":"x"}"#,
    ];
    for c in cases {
        let spec: IdentitySpec = serde_json::from_str(c).unwrap();
        assert_eq!(serde_json::to_string(&spec).unwrap(), c);
        assert!(!spec.describe().is_empty());
    }
}

#[test]
fn preset_names_for_the_cli() {
    for name in PRESET_NAMES {
        let spec = IdentitySpec::preset(name, None).unwrap();
        // The dashed CLI name is the snake_case JSON tag.
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["source"], name.replace('-', "_"));
    }
    assert_eq!(
        IdentitySpec::preset("gcp_metadata", Some("a".into())).unwrap(),
        IdentitySpec::GcpMetadata { audience: Some("a".into()) }
    );
    let e = IdentitySpec::preset("gitlab", Some("a".into())).unwrap_err();
    assert!(e.message().contains("id_tokens"), "{}", e.message());
    let e = IdentitySpec::preset("heroku", None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Config);
    assert!(e.message().contains("gcp-metadata"), "{}", e.message());
}
