//! `{"source": "aws_sts", "audience"?, "region"?, "duration_seconds"?, "signing_algorithm"?}`:
//! an AWS-signed JWT from STS `GetWebIdentityToken` (outbound identity
//! federation), SigV4-signed with the workload's ambient AWS credentials.
//!
//! Request (STS Query API, form-encoded POST to the regional endpoint; the
//! operation is not served by the global endpoint): `Action=GetWebIdentityToken`,
//! `Version=2011-06-15`, `Audience.member.1=<aud>`, `SigningAlgorithm=RS256`
//! (or `ES384`), `DurationSeconds=<60…3600>` (AWS default 300). Parameter
//! names from AWS's STS API reference. Answer: XML
//! `…<GetWebIdentityTokenResult><WebIdentityToken>jwt</WebIdentityToken>…`.
//!
//! Credentials, in the SDKs' order (first that is configured wins):
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`);
//! 2. the shared files (`AWS_SHARED_CREDENTIALS_FILE`, default
//!    `~/.aws/credentials`; `AWS_CONFIG_FILE`, default `~/.aws/config`), profile
//!    `AWS_PROFILE` or `default`: static keys only. A profile that uses
//!    `role_arn`, `sso_*`, `credential_process`, … is refused with an
//!    explanation (not supported; export credentials instead);
//! 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`
//!    (`AWS_ROLE_SESSION_NAME`) → unsigned `AssumeRoleWithWebIdentity` (EKS IRSA);
//! 4. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on
//!    `http://169.254.170.2` (ECS), or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` / `AWS_CONTAINER_AUTHORIZATION_TOKEN`
//!    (EKS Pod Identity);
//! 5. EC2 instance metadata, IMDSv2 only (PUT a session token, GET the role's
//!    credentials); `AWS_EC2_METADATA_DISABLED=true` skips it.
//!
//! Endpoint overrides (tests, VPC endpoints, proxies): `AWS_ENDPOINT_URL_STS`,
//! `AWS_ENDPOINT_URL` (STS), `ANTHROPIC_WIF_AWS_CONTAINER_ENDPOINT` (the base
//! used with the relative URI, default `http://169.254.170.2`),
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` (default `http://169.254.169.254`, or
//! `http://[fd00:ec2::254]` with `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
//!
//! Region: the spec's `region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the
//! profile's `region` in the config file, else (on EC2) the instance's region
//! from IMDS; none is an error.
//!
//! Secret keys and session tokens never reach a message or `Debug`.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::sigv4::{self, Credentials};
use super::url::{check_url, check_url_allowing, refusal, scrub_with, send, HttpAnswer, HttpRequest, PlainHttp};
use super::{finish, presets};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

pub(crate) const ENV_CONTAINER_ENDPOINT: &str = "ANTHROPIC_WIF_AWS_CONTAINER_ENDPOINT";
const DEFAULT_CONTAINER_ENDPOINT: &str = "http://169.254.170.2";
const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
const DEFAULT_IMDS_ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
/// Time-out for a credential endpoint (container agent, IMDS) request.
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(5);
/// AWS's default `DurationSeconds`.
pub(crate) const DEFAULT_DURATION_SECONDS: u32 = 300;
const STS_VERSION: &str = "2011-06-15";

const STS_FIX: &str = "the calling IAM principal needs `sts:GetWebIdentityToken` permission, and the account needs outbound \
identity federation enabled (`aws iam enable-outbound-web-identity-federation`); the federation rule's issuer is the account's \
issuer URL (`aws iam get-outbound-web-identity-federation-info`)";

/// What the spec asks for.
pub(crate) struct StsParams<'a> {
    pub audience: Option<&'a str>,
    pub region: Option<&'a str>,
    pub duration_seconds: Option<u32>,
    pub signing_algorithm: Option<&'a str>,
}

/// The `aws_sts` source.
pub(crate) async fn fetch(p: StsParams<'_>, env: &Env, source: &str) -> Result<Secret> {
    let aud = presets::audience(p.audience, source)?;
    let duration = p.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS);
    if !(60..=3600).contains(&duration) {
        return Err(Error::config(format!(
            "{source}: duration_seconds is {duration}; STS GetWebIdentityToken accepts 60 to 3600 (default {DEFAULT_DURATION_SECONDS})"
        )));
    }
    let alg = p.signing_algorithm.unwrap_or("RS256");
    if alg != "RS256" && alg != "ES384" {
        return Err(Error::config(format!(
            "{source}: signing_algorithm {alg:?} is not one STS offers; use \"RS256\" (the default) or \"ES384\""
        )));
    }
    let files = SharedFiles::load(env, source)?;
    let configured_region = region_from(p.region, env, &files, source)?;
    let creds = credentials(env, &files, configured_region.as_deref(), source).await?;
    let region = match configured_region {
        Some(r) => r,
        None => match creds.imds_region.clone() {
            Some(r) => r,
            None => return Err(no_region(source)),
        },
    };
    let endpoint = sts_endpoint(env, &region, source)?;
    let asked = Asked { aud, duration, alg };
    get_web_identity_token(&creds.creds, &endpoint, &region, asked, env, source).await
}

fn no_region(source: &str) -> Error {
    Error::config(format!(
        "{source}: no AWS region is configured, and GetWebIdentityToken needs a regional STS endpoint; \
         set \"region\" in the identity source, or AWS_REGION (AWS_DEFAULT_REGION), or `region` in the AWS config file's profile"
    ))
}

fn region_from(spec: Option<&str>, env: &Env, files: &SharedFiles, source: &str) -> Result<Option<String>> {
    if let Some(r) = spec {
        return valid_region(r.trim(), "the identity source's region", source).map(Some);
    }
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(r) = env.get(var) {
            return valid_region(r.trim(), &format!("environment variable {var}"), source).map(Some);
        }
    }
    if let Some(r) = files.config_value("region") {
        return valid_region(
            r.trim(),
            &format!("`region` of profile {} in {}", files.profile, files.config_path_display()),
            source,
        )
        .map(Some);
    }
    Ok(None)
}

fn valid_region(r: &str, origin: &str, source: &str) -> Result<String> {
    if r.is_empty() || r.len() > 64 || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Error::config(format!("{source}: {origin} is not an AWS region name (like us-east-1); fix it")));
    }
    Ok(r.to_string())
}

/// `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, else `https://sts.<region>.amazonaws.com`.
fn sts_endpoint(env: &Env, region: &str, source: &str) -> Result<Url> {
    for var in ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"] {
        if let Some(u) = env.get(var) {
            return check_url(u.trim(), &format!("{source} ({var})"), &[]);
        }
    }
    let suffix = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    check_url(&format!("https://sts.{region}.{suffix}/"), source, &[])
}

/// The `Host` header value reqwest will send for `url`.
fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The token asked of STS: audience, lifetime, signing algorithm.
struct Asked<'a> {
    aud: &'a str,
    duration: u32,
    alg: &'a str,
}

async fn get_web_identity_token(
    creds: &Credentials,
    endpoint: &Url,
    region: &str,
    asked: Asked<'_>,
    env: &Env,
    source: &str,
) -> Result<Secret> {
    let Asked { aud, duration, alg } = asked;
    let duration_s = duration.to_string();
    let body = sigv4::form_encode(&[
        ("Action", "GetWebIdentityToken"),
        ("Version", STS_VERSION),
        ("Audience.member.1", aud),
        ("SigningAlgorithm", alg),
        ("DurationSeconds", &duration_s),
    ]);
    let (amz_time, _) = sigv4::amz_date(crate::clock::now_unix());
    let host = host_header(endpoint);
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let mut signed: Vec<(&str, &str)> =
        vec![("content-type", content_type), ("host", &host), ("x-amz-date", &amz_time)];
    if let Some(t) = &creds.session_token {
        signed.push(("x-amz-security-token", t.expose()));
    }
    let path = if endpoint.path().is_empty() { "/" } else { endpoint.path() };
    let req = sigv4::Request { method: "POST", path, query: &[], headers: &signed, payload: body.as_bytes() };
    let authz = sigv4::authorization(&req, creds, region, "sts", &amz_time);

    let mut secrets = vec![creds.secret_access_key.clone()];
    let mut headers = HeaderMap::new();
    headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(HeaderName::from_static("x-amz-date"), header_value(&amz_time, source)?);
    if let Some(t) = &creds.session_token {
        secrets.push(t.clone());
        let mut v = header_value(t.expose(), source)?;
        v.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-amz-security-token"), v);
    }
    let mut a = header_value(&authz, source)?;
    a.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, a);

    let origin = creds.origin.clone();
    let fail = |what: String| {
        Error::identity(format!("{source}: STS GetWebIdentityToken (credentials from {origin}) {what}; {STS_FIX}"))
    };
    let answer = send(
        HttpRequest {
            method: Method::POST,
            url: endpoint.clone(),
            headers,
            body: Some(Secret::new(body)),
            secrets: secrets.clone(),
            timeout: super::url::URL_TIMEOUT,
        },
        env,
        &fail,
    )
    .await?;
    if !answer.is_success() {
        return Err(fail(aws_refusal(&answer, &secrets)));
    }
    match xml_text(answer.body.expose(), "WebIdentityToken") {
        Some(token) => finish(token, source),
        None => Err(fail("answered without a WebIdentityToken element".to_string())),
    }
}

fn header_value(v: &str, source: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(v).map_err(|_| {
        Error::identity(format!(
            "{source}: an AWS credential or header contains a control character or newline, so it cannot be sent; check the credentials' source"
        ))
    })
}

/// An AWS error answer: the XML `<Code>`/`<Message>` (or JSON `code`/`message`)
/// with a hint for the common codes, else the generic excerpt.
fn aws_refusal(answer: &HttpAnswer, secrets: &[Secret]) -> String {
    let body = answer.body.expose();
    let code = xml_text(body, "Code");
    let message = xml_text(body, "Message");
    let Some(code) = code else { return refusal(answer, secrets) };
    let code = scrub_with(&code, secrets, 100);
    let message = message.map(|m| scrub_with(&m, secrets, 300)).unwrap_or_default();
    let hint = match code.as_str() {
        "OutboundWebIdentityFederationDisabledException" | "OutboundWebIdentityFederationDisabled" => {
            " (enable it once per account: `aws iam enable-outbound-web-identity-federation`)"
        }
        "AccessDenied" | "AccessDeniedException" => {
            " (allow `sts:GetWebIdentityToken` in the principal's IAM policy; also check SCPs)"
        }
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "UnrecognizedClientException" => {
            " (the AWS credentials are invalid or expired; refresh them)"
        }
        _ => "",
    };
    format!("answered HTTP {}: {code}: {message}{hint}", answer.status)
}

/// The text of the first `<tag>…</tag>` element (entities decoded), if any.
/// Deliberately minimal: STS answers are flat and small, and the body is
/// already capped at 1 MiB. Attributes on the start tag are tolerated.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open_plain = format!("<{tag}>");
    let open_attr = format!("<{tag} ");
    let after_open = match (xml.find(&open_plain), xml.find(&open_attr)) {
        (Some(a), Some(b)) if b < a => xml[b..].find('>')? + b + 1,
        (Some(a), _) => a + open_plain.len(),
        (None, Some(b)) => xml[b..].find('>')? + b + 1,
        (None, None) => return None,
    };
    let close = format!("</{tag}>");
    let end = xml[after_open..].find(&close)? + after_open;
    let raw = &xml[after_open..end];
    if raw.contains('<') {
        // Nested elements or CDATA: not a text element we understand.
        return None;
    }
    Some(xml_unescape(raw.trim()))
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let Some(semi) = tail.find(';').filter(|&i| i <= 10) else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32)
            }
            e if e.starts_with('#') => e[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ------------------------------------------------------------ shared files

/// The shared credentials and config files, parsed for one profile.
struct SharedFiles {
    profile: String,
    profile_explicit: bool,
    credentials_path: Option<PathBuf>,
    config_path: Option<PathBuf>,
    /// `key = value` of the profile's section in the credentials file.
    credentials: Option<Vec<(String, String)>>,
    /// … and in the config file (`[profile name]`, or `[default]`).
    config: Option<Vec<(String, String)>>,
}

impl SharedFiles {
    fn load(env: &Env, source: &str) -> Result<SharedFiles> {
        let explicit = env.get("AWS_PROFILE").or_else(|| env.get("AWS_DEFAULT_PROFILE"));
        let profile = explicit.clone().unwrap_or_else(|| "default".to_string());
        let home = env.home();
        let credentials_path = env
            .get("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join("credentials")));
        let config_path = env
            .get("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join("config")));
        let read = |p: &Option<PathBuf>| -> Result<Option<String>> {
            let Some(p) = p else { return Ok(None) };
            match std::fs::read(p) {
                Ok(bytes) if bytes.len() > 1024 * 1024 => Err(Error::config(format!(
                    "{source}: the AWS file {} is larger than 1 MiB; is it the right file?",
                    p.display()
                ))),
                Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::config(format!("{source}: cannot read the AWS file {} ({e})", p.display()))),
            }
        };
        let credentials = read(&credentials_path)?.and_then(|t| ini_section(&t, &profile));
        let config_section = if profile == "default" { "default".to_string() } else { format!("profile {profile}") };
        let config = read(&config_path)?.and_then(|t| {
            ini_section(&t, &config_section).or_else(|| {
                if profile == "default" {
                    ini_section(&t, "profile default")
                } else {
                    None
                }
            })
        });
        Ok(SharedFiles {
            profile,
            profile_explicit: explicit.is_some(),
            credentials_path,
            config_path,
            credentials,
            config,
        })
    }

    fn config_value(&self, key: &str) -> Option<String> {
        self.config.as_ref()?.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    }

    fn config_path_display(&self) -> String {
        self.config_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.aws/config".into())
    }

    /// Static keys from the profile (credentials file first, then config).
    fn static_credentials(&self, source: &str) -> Result<Option<Credentials>> {
        for (section, path) in [(&self.credentials, &self.credentials_path), (&self.config, &self.config_path)] {
            let Some(section) = section else { continue };
            let get =
                |k: &str| section.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
            let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            match (get("aws_access_key_id"), get("aws_secret_access_key")) {
                (Some(id), Some(secret)) => {
                    return Ok(Some(Credentials {
                        access_key_id: id,
                        secret_access_key: Secret::new(secret),
                        session_token: get("aws_session_token").map(Secret::new),
                        origin: format!("profile {} in {shown}", self.profile),
                    }))
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(Error::config(format!(
                        "{source}: profile {} in {shown} has only one of aws_access_key_id and aws_secret_access_key; set both",
                        self.profile
                    )))
                }
                (None, None) => {}
            }
        }
        // A profile that gets credentials some other way.
        const OTHER: [&str; 7] = [
            "role_arn",
            "source_profile",
            "credential_source",
            "credential_process",
            "sso_session",
            "sso_start_url",
            "login_session",
        ];
        for section in [&self.credentials, &self.config].into_iter().flatten() {
            if let Some((k, _)) = section.iter().find(|(k, _)| OTHER.contains(&k.as_str())) {
                return Err(Error::config(format!(
                    "{source}: AWS profile {} gets its credentials through `{k}`, which anthropic-wif does not support \
                     (only static keys in the shared files); export the credentials instead, e.g. \
                     `eval \"$(aws configure export-credentials --profile {} --format env)\"`, or use the url/command source",
                    self.profile, self.profile
                )));
            }
        }
        Ok(None)
    }
}

/// The `key = value` pairs of `[name]` in an INI text (keys lower-cased;
/// `#`/`;` comments; nested sub-sections flattened away).
fn ini_section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut in_section = false;
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let inner = inner.split_whitespace().collect::<Vec<_>>().join(" ");
            in_section = inner == name;
            found |= in_section;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    found.then_some(out)
}

// ------------------------------------------------------------ credential chain

struct Resolved {
    creds: Credentials,
    /// The instance's region, when the credentials came from IMDS.
    imds_region: Option<String>,
}

/// Which ambient credential source the environment points at (no I/O on the
/// network); `None` means "try IMDS". For `auto` and doctor.
pub(crate) fn configured_credential_source(env: &Env) -> Option<&'static str> {
    if env.is_set("AWS_ACCESS_KEY_ID") && env.is_set("AWS_SECRET_ACCESS_KEY") {
        Some("environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    } else if env.is_set("AWS_PROFILE") {
        Some("AWS_PROFILE")
    } else if env.is_set("AWS_WEB_IDENTITY_TOKEN_FILE") && env.is_set("AWS_ROLE_ARN") {
        Some("web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)")
    } else if env.is_set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") || env.is_set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        Some("container credentials (AWS_CONTAINER_CREDENTIALS_*_URI)")
    } else {
        None
    }
}

async fn credentials(env: &Env, files: &SharedFiles, region: Option<&str>, source: &str) -> Result<Resolved> {
    let plain = |creds| Ok(Resolved { creds, imds_region: None });
    // 1. Environment.
    match (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => {
            return plain(Credentials {
                access_key_id: id.trim().to_string(),
                secret_access_key: Secret::new(secret.trim().to_string()),
                session_token: env.get("AWS_SESSION_TOKEN").map(|t| Secret::new(t.trim().to_string())),
                origin: "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into(),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::config(format!(
                "{source}: only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set; set both, or neither to use another credential source"
            )))
        }
        (None, None) => {}
    }
    // 2. Shared files.
    if let Some(c) = files.static_credentials(source)? {
        return plain(c);
    }
    if files.profile_explicit {
        return Err(Error::config(format!(
            "{source}: AWS_PROFILE is {}, but neither {} nor {} has that profile with aws_access_key_id and aws_secret_access_key",
            files.profile,
            files.credentials_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "~/.aws/credentials".into()),
            files.config_path_display()
        )));
    }
    // 3. Web identity (EKS IRSA).
    if let (Some(token_file), Some(role)) = (env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), env.get("AWS_ROLE_ARN")) {
        return plain(assume_role_with_web_identity(env, &token_file, &role, region, source).await?);
    }
    // 4. Container credentials (ECS, EKS Pod Identity).
    if let Some(c) = container_credentials(env, source).await? {
        return plain(c);
    }
    // 5. EC2 IMDSv2.
    if env.get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Err(no_credentials(source, "AWS_EC2_METADATA_DISABLED=true, so instance metadata was not tried"));
    }
    imds_credentials(env, source).await
}

fn no_credentials(source: &str, imds: &str) -> Error {
    Error::identity(format!(
        "{source}: no AWS credentials found. Looked for: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY; static keys in ~/.aws/credentials \
         or ~/.aws/config (AWS_PROFILE, default `default`); AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IRSA); \
         AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / AWS_CONTAINER_CREDENTIALS_FULL_URI (ECS, EKS Pod Identity); EC2 instance metadata \
         ({imds}). Attach an IAM role to the workload (instance profile, task role, IRSA or Pod Identity) or export credentials"
    ))
}

async fn assume_role_with_web_identity(
    env: &Env,
    token_file: &str,
    role: &str,
    region: Option<&str>,
    source: &str,
) -> Result<Credentials> {
    let what =
        format!("{source}: web identity credentials (AWS_WEB_IDENTITY_TOKEN_FILE {token_file}, AWS_ROLE_ARN {role})");
    let token = super::file::read_with_fix(
        std::path::Path::new(token_file.trim()),
        &what,
        "on EKS, the pod's service account needs the eks.amazonaws.com/role-arn annotation (IRSA) so the token is mounted",
    )
    .await?;
    let session =
        env.get("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| format!("anthropic-wif-{}", crate::clock::now_unix()));
    let body = sigv4::form_encode(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", STS_VERSION),
        ("RoleArn", role.trim()),
        ("RoleSessionName", session.trim()),
        ("WebIdentityToken", token.expose()),
    ]);
    let endpoint = match region {
        Some(r) => sts_endpoint(env, r, source)?,
        None => match env.get("AWS_ENDPOINT_URL_STS").or_else(|| env.get("AWS_ENDPOINT_URL")) {
            Some(u) => check_url(u.trim(), source, &[])?,
            None => check_url("https://sts.amazonaws.com/", source, &[])?,
        },
    };
    let secrets = vec![token.clone()];
    let fail = |w: String| {
        Error::identity(format!(
            "{what}: AssumeRoleWithWebIdentity {w}; the role's trust policy must trust the cluster's OIDC provider for this service account"
        ))
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
    );
    let answer = send(
        HttpRequest {
            method: Method::POST,
            url: endpoint,
            headers,
            body: Some(Secret::new(body)),
            secrets: secrets.clone(),
            timeout: super::url::URL_TIMEOUT,
        },
        env,
        &fail,
    )
    .await?;
    if !answer.is_success() {
        return Err(fail(aws_refusal(&answer, &secrets)));
    }
    let b = answer.body.expose();
    match (xml_text(b, "AccessKeyId"), xml_text(b, "SecretAccessKey"), xml_text(b, "SessionToken")) {
        (Some(id), Some(secret), Some(token)) => Ok(Credentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: Some(Secret::new(token)),
            origin: format!("web identity role {}", role.trim()),
        }),
        _ => Err(fail("answered without Credentials (AccessKeyId, SecretAccessKey, SessionToken)".into())),
    }
}

async fn container_credentials(env: &Env, source: &str) -> Result<Option<Credentials>> {
    let (url, what, extra) = if let Some(rel) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        let base = env.get(ENV_CONTAINER_ENDPOINT).unwrap_or_else(|| DEFAULT_CONTAINER_ENDPOINT.to_string());
        let rel = rel.trim();
        let sep = if rel.starts_with('/') { "" } else { "/" };
        (
            format!("{}{sep}{rel}", base.trim().trim_end_matches('/')),
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            PlainHttp::Standard,
        )
    } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        (full.trim().to_string(), "AWS_CONTAINER_CREDENTIALS_FULL_URI", PlainHttp::AwsContainer)
    } else {
        return Ok(None);
    };
    let what = format!("{source}: container credentials ({what})");
    let url = check_url_allowing(&url, &what, &[], extra)?;
    let mut headers = HeaderMap::new();
    let mut secrets = Vec::new();
    let auth = if let Some(path) = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        let p = std::path::Path::new(path.trim());
        Some(
            super::file::read_with_fix(
                p,
                &format!("{what}: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {}", p.display()),
                "on EKS, install the Pod Identity agent add-on and associate the service account with a role",
            )
            .await?,
        )
    } else {
        env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(|t| Secret::new(t.trim().to_string()))
    };
    if let Some(auth) = auth {
        let mut v = header_value(auth.expose(), source)?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
        secrets.push(auth);
    }
    let fail = |w: String| {
        Error::identity(format!("{what} {w}; check the task role (ECS) or the Pod Identity association (EKS)"))
    };
    let answer = send(
        HttpRequest {
            method: Method::GET,
            url,
            headers,
            body: None,
            secrets: secrets.clone(),
            timeout: CREDENTIALS_TIMEOUT,
        },
        env,
        &fail,
    )
    .await?;
    if !answer.is_success() {
        return Err(fail(refusal(&answer, &secrets)));
    }
    json_credentials(&answer.body, "container credentials").map(Some).map_err(fail)
}

/// `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}` (container and IMDS).
fn json_credentials(body: &Secret, origin: &str) -> std::result::Result<Credentials, String> {
    let v: serde_json::Value =
        serde_json::from_str(body.expose()).map_err(|_| "answered with a body that is not JSON".to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string).filter(|x| !x.is_empty());
    if let Some(code) = s("Code").filter(|c| c != "Success") {
        let code: String = code.chars().take(60).collect();
        return Err(format!("answered Code {code:?} instead of credentials"));
    }
    match (s("AccessKeyId"), s("SecretAccessKey")) {
        (Some(id), Some(secret)) => Ok(Credentials {
            access_key_id: id,
            secret_access_key: Secret::new(secret),
            session_token: s("Token").map(Secret::new),
            origin: origin.to_string(),
        }),
        _ => Err("answered JSON without AccessKeyId and SecretAccessKey".to_string()),
    }
}

async fn imds_credentials(env: &Env, source: &str) -> Result<Resolved> {
    let base = imds_base(env);
    let what = format!("{source}: EC2 instance metadata ({base})");
    let token = imds_session_token(&base, &what, CREDENTIALS_TIMEOUT, env).await.map_err(|e| {
        if e.message().contains("cannot connect") || e.message().contains("timed out") {
            no_credentials(
                source,
                &format!("{base} is not reachable: not on EC2, or the hop limit is too low for containers"),
            )
        } else {
            e
        }
    })?;
    let secrets = vec![token.clone()];
    let mut headers = HeaderMap::new();
    let mut v = header_value(token.expose(), source)?;
    v.set_sensitive(true);
    headers.insert(HeaderName::from_static("x-aws-ec2-metadata-token"), v);
    let fail =
        |w: String| Error::identity(format!("{what} {w}; attach an instance profile (IAM role) to the instance"));
    let get = |path: &str| -> Result<HttpRequest> {
        Ok(HttpRequest {
            method: Method::GET,
            url: check_url(&format!("{base}{path}"), &what, &[])?,
            headers: headers.clone(),
            body: None,
            secrets: secrets.clone(),
            timeout: CREDENTIALS_TIMEOUT,
        })
    };
    let answer = send(get("/latest/meta-data/iam/security-credentials/")?, env, &fail).await?;
    if answer.status == 404 {
        return Err(fail("has no IAM role (security-credentials answered 404)".into()));
    }
    if !answer.is_success() {
        return Err(fail(refusal(&answer, &secrets)));
    }
    let role = answer.body.expose().lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
    if role.is_empty() || role.contains(['/', '?', '#', '%']) {
        return Err(fail("listed no usable IAM role name".into()));
    }
    let answer = send(get(&format!("/latest/meta-data/iam/security-credentials/{role}"))?, env, &fail).await?;
    if !answer.is_success() {
        return Err(fail(refusal(&answer, &secrets)));
    }
    let creds = json_credentials(&answer.body, &format!("EC2 instance role {role}")).map_err(fail)?;
    let region = match send(get("/latest/meta-data/placement/region")?, env, &fail).await {
        Ok(a) if a.is_success() => Some(a.body.expose().trim().to_string()).filter(|r| valid_region(r, "", "").is_ok()),
        _ => None,
    };
    Ok(Resolved { creds, imds_region: region })
}

/// IMDSv2: `PUT /latest/api/token` with a TTL header.
pub(crate) async fn imds_session_token(base: &str, what: &str, timeout: Duration, env: &Env) -> Result<Secret> {
    let url = check_url(&format!("{base}/latest/api/token"), what, &[])?;
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("x-aws-ec2-metadata-token-ttl-seconds"), HeaderValue::from_static("300"));
    let fail = |w: String| Error::identity(format!("{what} {w}"));
    let answer =
        send(HttpRequest { method: Method::PUT, url, headers, body: None, secrets: vec![], timeout }, env, &fail)
            .await?;
    if !answer.is_success() {
        return Err(fail(format!("{} (IMDSv2 session token; IMDSv1 is not supported)", refusal(&answer, &[]))));
    }
    let t = answer.body.expose().trim().to_string();
    if t.is_empty() {
        return Err(fail("gave an empty IMDSv2 session token".into()));
    }
    Ok(Secret::new(t))
}

/// The default IMDS base for probes.
pub(crate) fn imds_base(env: &Env) -> String {
    match env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        Some(e) => e.trim().trim_end_matches('/').to_string(),
        None if env
            .get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE")
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("ipv6")) =>
        {
            DEFAULT_IMDS_ENDPOINT_V6.to_string()
        }
        None => DEFAULT_IMDS_ENDPOINT.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_is_minimal_and_safe() {
        let x = r#"<GetWebIdentityTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetWebIdentityTokenResult>
    <WebIdentityToken>eyJ.a.b</WebIdentityToken>
    <Expiration>2026-01-01T00:00:00Z</Expiration>
  </GetWebIdentityTokenResult></GetWebIdentityTokenResponse>"#;
        assert_eq!(xml_text(x, "WebIdentityToken").as_deref(), Some("eyJ.a.b"));
        assert_eq!(xml_text(x, "Expiration").as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(xml_text(x, "Missing"), None);
        assert_eq!(xml_text(x, "GetWebIdentityTokenResult"), None, "nested elements are not text");
        assert_eq!(
            xml_text("<Message a=\"1\">x &amp; y &lt;z&gt; &#65;&#x42; &bogus; &</Message>", "Message").as_deref(),
            Some("x & y <z> AB &bogus; &")
        );
        assert_eq!(xml_text("<Code>unterminated", "Code"), None);
        assert_eq!(xml_text("", "Code"), None);
    }

    #[test]
    fn ini_sections() {
        let t = "# c\n[default]\naws_access_key_id = A\n[profile dev]\nRegion= eu-west-1 \n; x\n[ other ]\nk=v\n";
        assert_eq!(ini_section(t, "default"), Some(vec![("aws_access_key_id".into(), "A".into())]));
        assert_eq!(ini_section(t, "profile dev"), Some(vec![("region".into(), "eu-west-1".into())]));
        assert_eq!(ini_section(t, "other"), Some(vec![("k".into(), "v".into())]));
        assert_eq!(ini_section(t, "nope"), None);
    }
}
