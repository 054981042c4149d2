//! `{"source": "url", "url": …, "headers": {…}, "field": "value"}`: an HTTP
//! GET whose answer is the token. Also the engine behind the HTTP presets
//! (GitHub Actions now; GCP and Azure metadata later).
//!
//! - `${VAR}` is expanded from [`Env`] in the URL's path, query and fragment
//!   and in header values (see `super::expand`); never in the scheme, host
//!   or port, so the environment cannot send the request and its headers
//!   elsewhere. Messages show the URL *template* (query values withheld, see
//!   `crate::url::redact_url`), never expanded values or header values,
//!   and every expanded value is scrubbed from any text that reaches a message.
//! - Schemes: `https` anywhere; plain `http` only for loopback hosts and the
//!   cloud metadata hosts (`PLAIN_HTTP_HOSTS`). URLs with credentials
//!   (`user:pass@`) are refused.
//! - The shared client never follows redirects; a 3xx is an error.
//! - The body is read incrementally and capped at `MAX_BODY_BYTES`.
//! - `field` picks a top-level JSON string; without it the trimmed body is
//!   the token.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use super::expand::{expand, expand_url};
use super::finish;
use crate::env::Env;
use crate::error::{scrub, Error, Result};
use crate::secret::Secret;

/// Largest response body accepted from an identity URL.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Time-out for the whole GET, body included.
pub(crate) const URL_TIMEOUT: Duration = crate::runtime::HTTP_TIMEOUT;
/// Hosts reachable over plain `http` besides loopback: the link-local /
/// internal metadata endpoints of AWS, Azure and Google Cloud.
pub(crate) const PLAIN_HTTP_HOSTS: &str = "169.254.169.254, 169.254.170.2, metadata.google.internal, [fd00:ec2::254]";
/// How much of an error body reaches a message.
const ERROR_BODY_CHARS: usize = 200;

/// One GET for a token, fully expanded. Built by the `url` source and by the
/// HTTP presets.
pub(crate) struct TokenGet {
    pub url: Url,
    pub headers: HeaderMap,
    pub field: Option<String>,
    /// Values to scrub from every message (expanded variables, bearer tokens).
    pub secrets: Vec<Secret>,
    pub timeout: Duration,
    /// Appended to failure messages: what the user should check.
    pub fix: String,
}

/// The `url` source: expand, check, GET.
pub(crate) async fn fetch(
    template: &str,
    headers: &BTreeMap<String, String>,
    field: Option<&str>,
    env: &Env,
    source: &str,
) -> Result<Secret> {
    let field = check_field(field, source)?;
    let expanded = expand_url(template, env, source)?;
    let mut secrets = expanded.values;
    let url = check_url(&expanded.text, source, &secrets)?;
    let mut map = HeaderMap::new();
    for (name, value_template) in headers {
        let hname = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            let shown: String = name.chars().take(60).collect();
            Error::config(format!(
                "{source}: {shown:?} is not a valid HTTP header name; use letters, digits and `-` (e.g. \"Metadata-Flavor\")"
            ))
        })?;
        let value = expand(value_template, env, source, &format!("header {hname}"))?;
        let mut hvalue = HeaderValue::from_str(&value.text).map_err(|_| {
            Error::config(format!(
                "{source}: the value of header {hname} is not a valid HTTP header value after expanding variables (it has a newline or another control character); check the template and the variables it uses"
            ))
        })?;
        hvalue.set_sensitive(true);
        // A header value is scrubbed from messages whole when it came from a
        // variable or the header carries credentials; constant values such as
        // `Metadata-Flavor: Google` are left readable.
        if !value.values.is_empty() || is_credential_header(hname.as_str()) {
            secrets.push(Secret::new(value.text.clone()));
        }
        secrets.extend(value.values);
        map.append(hname, hvalue);
    }
    let req = TokenGet {
        url,
        headers: map,
        field,
        secrets,
        timeout: URL_TIMEOUT,
        fix: "check the url, its headers and the variables they use (run the same GET with curl to compare)"
            .to_string(),
    };
    get_token(req, env, source).await
}

fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || ["token", "key", "secret", "auth", "password", "credential"].iter().any(|w| n.contains(w))
}

pub(crate) fn check_field(field: Option<&str>, source: &str) -> Result<Option<String>> {
    match field {
        None => Ok(None),
        Some(f) if f.trim().is_empty() => Err(Error::config(format!(
            "{source}: field is empty; give the name of the top-level JSON member that holds the token (e.g. \"value\"), or leave field out if the body is the token itself"
        ))),
        Some(f) => Ok(Some(f.to_string())),
    }
}

/// Which hosts a request may reach over plain `http`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Loopback and the metadata hosts in [`PLAIN_HTTP_HOSTS`].
    Standard,
    /// Also the EKS Pod Identity agent (169.254.170.23, fd00:ec2::23), as the
    /// AWS SDKs allow for `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    AwsContainer,
    /// Also any IPv4 link-local address (169.254.0.0/16): Azure App Service on
    /// Linux sets `IDENTITY_ENDPOINT=http://169.254.129.x:8081/msi/token`.
    AzureAppService,
}

/// Is plain `http` allowed to this URL's host?
fn plain_http_allowed(url: &Url, extra: PlainHttp) -> bool {
    let Some(host) = url.host_str() else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            ip.is_loopback()
                || ip == Ipv4Addr::new(169, 254, 169, 254)
                || ip == Ipv4Addr::new(169, 254, 170, 2)
                || (extra == PlainHttp::AwsContainer && ip == Ipv4Addr::new(169, 254, 170, 23))
                || (extra == PlainHttp::AzureAppService && ip.is_link_local())
        }
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback()
                || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || (extra == PlainHttp::AwsContainer && ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23))
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d == "metadata.google.internal"
        }
    }
}

/// Parse an expanded URL and enforce the scheme/host/userinfo rules. Messages
/// never show the expanded URL (the caller's `source` shows the template).
pub(crate) fn check_url(expanded: &str, source: &str, secrets: &[Secret]) -> Result<Url> {
    check_url_allowing(expanded, source, secrets, PlainHttp::Standard)
}

/// [`check_url`] with a preset-specific plain-http allowance.
pub(crate) fn check_url_allowing(expanded: &str, source: &str, secrets: &[Secret], extra: PlainHttp) -> Result<Url> {
    let url = Url::parse(expanded).map_err(|e| {
        let why = scrub_with(&e.to_string(), secrets, 200);
        Error::config(format!(
            "{source}: the url is not a valid absolute URL after expanding variables ({why}); write it as https://host/path"
        ))
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "{source}: the url contains credentials (user:password@host), which are refused; send them in a header instead, e.g. \"headers\": {{\"Authorization\": \"Bearer ${{TOKEN}}\"}}"
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(format!("{source}: the url has no host; write it as https://host/path")));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if plain_http_allowed(&url, extra) => Ok(url),
        "http" => Err(Error::config(format!(
            "{source}: plain http is allowed only to loopback (localhost, 127.0.0.1, [::1]) and the cloud metadata hosts ({PLAIN_HTTP_HOSTS}); use https:// for this host"
        ))),
        _ => Err(Error::config(format!(
            "{source}: the url must start with https:// (plain http:// only for loopback and the cloud metadata hosts {PLAIN_HTTP_HOSTS})"
        ))),
    }
}

pub(crate) fn scrub_with(text: &str, secrets: &[Secret], max: usize) -> String {
    let s: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
    scrub(text, &s, max)
}

/// Text for a transport error, without the URL (reqwest puts the expanded URL
/// in its messages) and scrubbed of the request's secrets.
fn transport_error(e: &reqwest::Error, timeout: Duration, secrets: &[Secret]) -> String {
    if e.is_timeout() {
        return format!("timed out after {}s", timeout.as_secs_f64());
    }
    let mut text = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    let mut first = true;
    while let Some(err) = cur {
        let part = if first {
            first = false;
            // `without_url` needs an owned error; render the kind ourselves.
            if e.is_connect() {
                "cannot connect".to_string()
            } else if e.is_body() || e.is_decode() {
                "the response body could not be read".to_string()
            } else if e.is_request() {
                "the request failed".to_string()
            } else {
                "the HTTP request failed".to_string()
            }
        } else {
            err.to_string()
        };
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cur = err.source();
    }
    scrub_with(&text, secrets, 400)
}

/// One HTTP request of a source (a preset's GET, PUT or POST).
pub(crate) struct HttpRequest {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: HeaderMap,
    /// The request body (it may carry a secret, e.g. a web identity token).
    pub body: Option<Secret>,
    /// Values to scrub from every message.
    pub secrets: Vec<Secret>,
    pub timeout: Duration,
}

/// An answer: 2xx bodies complete (up to [`MAX_BODY_BYTES`]), other bodies
/// cut to 16 KiB (they are only for error excerpts).
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub body: Secret,
}

impl HttpAnswer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Send one request. Transport failures, redirects (never followed) and
/// over-long or non-UTF-8 success bodies become `fail(what)`; any other
/// status is returned for the caller to interpret.
pub(crate) async fn send(req: HttpRequest, env: &Env, fail: &(dyn Fn(String) -> Error + Sync)) -> Result<HttpAnswer> {
    let client = crate::runtime::http_client(&crate::runtime::NetSettings::from_env(env))?;
    let HttpRequest { method, url, headers, body, secrets, timeout } = req;
    let mut builder = client.request(method, url).headers(headers).timeout(timeout);
    if let Some(body) = body {
        builder = builder.body(crate::secret::wiped_body(body.expose().as_bytes().to_vec()));
    }
    let resp = builder.send().await.map_err(|e| fail(transport_error(&e, timeout, &secrets)))?;
    let status = resp.status();
    if status.is_redirection() {
        return Err(fail(format!(
            "answered with a redirect (HTTP {}); redirects are never followed, point the url at the final location",
            status.as_u16()
        )));
    }
    if !status.is_success() {
        let body = read_body(resp, 16 * 1024, timeout, &secrets, true).await.unwrap_or_default();
        return Ok(HttpAnswer {
            status: status.as_u16(),
            body: Secret::new(String::from_utf8_lossy(&body).into_owned()),
        });
    }
    let body = read_body(resp, MAX_BODY_BYTES, timeout, &secrets, false).await.map_err(fail)?;
    let text = String::from_utf8(body).map_err(|_| fail("answered with a body that is not UTF-8 text".to_string()))?;
    Ok(HttpAnswer { status: status.as_u16(), body: Secret::new(text) })
}

/// `answered HTTP <status>: <short scrubbed excerpt>` for a refusal: endpoints
/// explain refusals there (e.g. GitHub's "Can't issue ID_TOKEN for audience"),
/// but the body is untrusted and may echo our request.
pub(crate) fn refusal(answer: &HttpAnswer, secrets: &[Secret]) -> String {
    let excerpt = scrub_with(answer.body.expose().trim(), secrets, ERROR_BODY_CHARS);
    let excerpt = if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") };
    format!("answered HTTP {}{excerpt}", answer.status)
}

/// Perform the GET and extract the token.
pub(crate) async fn get_token(req: TokenGet, env: &Env, source: &str) -> Result<Secret> {
    let TokenGet { url, headers, field, secrets, timeout, fix } = req;
    let fail = |what: String| Error::identity(format!("{source}: {what}; {fix}"));
    let answer = send(
        HttpRequest { method: reqwest::Method::GET, url, headers, body: None, secrets: secrets.clone(), timeout },
        env,
        &fail,
    )
    .await?;
    if !answer.is_success() {
        return Err(fail(refusal(&answer, &secrets)));
    }
    extract(&answer.body, field.as_deref(), source, &fail, &secrets)
}

/// The token from a success body: the JSON string member `field`, or the
/// trimmed body itself.
pub(crate) fn extract(
    text: &Secret,
    field: Option<&str>,
    source: &str,
    fail: &dyn Fn(String) -> Error,
    secrets: &[Secret],
) -> Result<Secret> {
    match field {
        Some(field) => {
            let value: serde_json::Value = serde_json::from_str(text.expose()).map_err(|_| {
                fail(format!(
                    "answered with a body that is not JSON, so field {field:?} cannot be read; leave field out if the body is the token itself"
                ))
            })?;
            let Some(obj) = value.as_object() else {
                return Err(fail(format!(
                    "answered with JSON that is not an object, so field {field:?} cannot be read"
                )));
            };
            match obj.get(field) {
                Some(serde_json::Value::String(s)) => finish(s.clone(), source),
                Some(_) => Err(fail(format!("the JSON member {field:?} of the answer is not a string"))),
                None => Err(fail(format!(
                    "the JSON answer has no member {field:?} (members: {})",
                    member_names(obj, secrets)
                ))),
            }
        }
        None => {
            let trimmed = text.expose().trim();
            if trimmed.starts_with('{') {
                if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(trimmed) {
                    return Err(fail(format!(
                        "answered with a JSON object, not a bare token; set field to the member that holds the token (members: {})",
                        member_names(&obj, secrets)
                    )));
                }
            }
            finish(trimmed.to_string(), source)
        }
    }
}

fn member_names(obj: &serde_json::Map<String, serde_json::Value>, secrets: &[Secret]) -> String {
    let names: Vec<String> = obj.keys().take(12).map(|k| format!("{k:?}")).collect();
    let mut s = names.join(", ");
    if obj.len() > 12 {
        s.push_str(", …");
    }
    if s.is_empty() {
        s = "none".to_string();
    }
    scrub_with(&s, secrets, 300)
}

/// Read the body incrementally, refusing more than `cap` bytes (unless
/// `truncate`, used for error excerpts, where the first `cap` bytes suffice).
async fn read_body(
    mut resp: reqwest::Response,
    cap: usize,
    timeout: Duration,
    secrets: &[Secret],
    truncate: bool,
) -> std::result::Result<Vec<u8>, String> {
    let too_big = || format!("answered with more than {cap} bytes; an identity token endpoint's answer must be small");
    if !truncate && resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    if truncate {
                        let room = cap - body.len();
                        body.extend_from_slice(&chunk[..room]);
                        return Ok(body);
                    }
                    return Err(too_big());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(&e, timeout, secrets)),
        }
    }
}
