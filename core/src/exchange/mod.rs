//! The RFC 7523 jwt-bearer exchange (docs/design.md §1): `POST {base_url}/v1/oauth/token`.
//!
//! - Where an identity token may be sent is [`crate::url`]'s rule, checked
//!   again before every exchange.
//! - [`exchange_once`]: one POST, its answer judged and mapped to an [`Error`].
//! - [`exchange_with_retry`]: transient failures retried with a fresh identity
//!   token each time (the server accepts each JWT only once), within a budget.
//! - Every attempt tells its [`Presentation`] what became of the identity
//!   token ([`Fate`]): the provider keeps the record of consumed identity
//!   tokens with it (`cache/consumed.rs`).
//!
//! Nothing secret reaches a message: server strings keep only the RFC 6749
//! §5.2 / Anthropic error fields, scrubbed of the assertion and any token.

pub(crate) mod response;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

use crate::url::{check_base_url, token_endpoint};

/// The `anthropic-beta` value of a jwt-bearer exchange: the OAuth flag
/// ([`crate::api::OAUTH_BETA`], checked by a test) and the federation flag.
pub(crate) const BETA_HEADER_VALUE: &str = "oauth-2025-04-20,oidc-federation-2026-04-01";
pub(crate) const GRANT_TYPE_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Assertions longer than this are refused before sending.
pub(crate) const MAX_ASSERTION_BYTES: usize = 16 * 1024;
/// Responses longer than this are an error, not a truncation.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Time-out of one exchange attempt (docs/design.md §1).
pub(crate) const DEFAULT_TIMEOUT: Duration = crate::runtime::HTTP_TIMEOUT;

/// Everything the exchange sends besides the assertion. Ids are validated.
#[derive(Clone, Debug)]
pub(crate) struct ExchangeParams {
    pub base_url: String,
    pub federation_rule_id: String,
    pub organization_id: String,
    pub service_account_id: Option<String>,
    pub workspace_id: Option<String>,
    /// e.g. `anthropic-wif/0.1.0 (cli)`.
    pub user_agent: String,
    /// Proxies and CA certificates, from the environment snapshot.
    pub net: crate::runtime::NetSettings,
}

/// A successful token response.
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub expires_in: i64,
    /// `now + expires_in`, unix seconds.
    pub expires_at: i64,
    pub scope: Option<String>,
    pub request_id: Option<String>,
}

/// Retry policy for connection errors, time-outs, 5xx and 429.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1). Default 3.
    pub max_attempts: u32,
    /// Upper bound on the whole sequence, sleeps included. Default 20 s, which
    /// also keeps inside docs/design.md §1's 30 s for the whole exchange.
    pub max_total: Duration,
    /// First back-off; doubles per attempt, with jitter.
    pub base_delay: Duration,
    /// Longest single back-off. Default 8 s.
    pub max_delay: Duration,
    /// Time-out of one attempt (connect, send, whole answer). Default 30 s;
    /// an attempt never outlives what is left of `max_total`.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            max_total: Duration::from_secs(20),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What became of an identity token handed to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It never left this machine: refused before sending, or no connection
    /// to the endpoint was made.
    NotSent,
    /// The server exchanged it: it is consumed.
    Exchanged,
    /// The server refused it (401, or 400 `invalid_grant`).
    Refused,
    /// Sent, but whether the server used it is unknown (5xx, 429, a time-out,
    /// a lost connection, an answer that is not a usable token).
    Unknown,
}

/// An identity token to present, and who to tell what became of it.
pub(crate) trait Presentation: Send {
    /// The identity token.
    fn assertion(&self) -> &Secret;
    /// Called once, after the attempt, with its fate. A note returned is
    /// appended to the attempt's error.
    fn settle(self, fate: Fate) -> impl std::future::Future<Output = Option<String>> + Send;
}

/// A bare token: nobody to tell.
impl Presentation for Secret {
    fn assertion(&self) -> &Secret {
        self
    }
    async fn settle(self, _fate: Fate) -> Option<String> {
        None
    }
}

impl Presentation for &Secret {
    fn assertion(&self) -> &Secret {
        self
    }
    async fn settle(self, _fate: Fate) -> Option<String> {
        None
    }
}

/// One failed attempt: the error to report, and what a retry loop needs.
struct Failure {
    error: Error,
    retryable: bool,
    retry_after: Option<Duration>,
    /// 401, or 400 `invalid_grant`: the server refused this identity token.
    refused_token: bool,
    /// The request may have reached the server (false only when it surely
    /// did not: refused before sending, no connection made).
    sent: bool,
}

impl Failure {
    fn fatal(error: Error) -> Self {
        Failure { error, retryable: false, retry_after: None, refused_token: false, sent: true }
    }
    fn transient(error: Error) -> Self {
        Failure { error, retryable: true, retry_after: None, refused_token: false, sent: true }
    }
    /// Before anything was sent.
    fn unsent(error: Error) -> Self {
        Failure { sent: false, ..Failure::fatal(error) }
    }
    fn fate(&self) -> Fate {
        if self.refused_token {
            Fate::Refused
        } else if self.sent {
            Fate::Unknown
        } else {
            Fate::NotSent
        }
    }
}

/// One exchange: POST the assertion, judge the answer, tell the
/// presentation its fate. No retries; 30 s time-out. Callers that retry
/// should use [`exchange_with_retry`].
pub(crate) async fn exchange_once<P: Presentation>(params: &ExchangeParams, presented: P) -> Result<TokenResponse> {
    match attempt(params, presented.assertion(), DEFAULT_TIMEOUT).await {
        Ok(token) => {
            presented.settle(Fate::Exchanged).await;
            Ok(token)
        }
        Err(failure) => {
            let note = presented.settle(failure.fate()).await;
            let mut error = failure.error;
            if let Some(note) = note {
                error.append(format!(" {note}"));
            }
            Err(error)
        }
    }
}

/// Exchange, retrying transient failures; `get_assertion` is called before
/// every attempt, because the server accepts each JWT only once. An error
/// from `get_assertion` is returned as is, at once. Each presentation is told
/// its fate after its attempt ([`Presentation::settle`]).
pub(crate) async fn exchange_with_retry<F, Fut, P>(
    params: &ExchangeParams,
    policy: &RetryPolicy,
    mut get_assertion: F,
) -> Result<TokenResponse>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<P>>,
    P: Presentation,
{
    // A bad base URL is a configuration error: say so before touching the
    // identity source (which may mint a single-use token).
    check_base_url(&params.base_url, "the base URL")?;
    let started = Instant::now();
    let deadline = started + policy.max_total;
    let max_attempts = policy.max_attempts.max(1);
    let mut sent: Vec<[u8; 32]> = Vec::new();
    let mut attempt_no: u32 = 0;
    let mut last: Option<Error> = None;
    // The budget is checked before the identity source is asked (it may
    // mint a single-use token that would then be wasted); a back-off that
    // overslept ends with the last attempt's error.
    let out_of_budget = |last: Option<Error>, attempts: u32| match last {
        Some(mut error) => {
            error.append(format!(" Not retrying: the {} budget for this exchange ran out.", secs(policy.max_total)));
            after_attempts(error, attempts, started)
        }
        None => Error::unavailable(format!(
            "the token exchange ran out of its {} time budget before sending anything",
            secs(policy.max_total)
        )),
    };
    loop {
        if Instant::now() >= deadline {
            return Err(out_of_budget(last, attempt_no));
        }
        attempt_no += 1;
        let presented = get_assertion().await?;
        let fingerprint: [u8; 32] = Sha256::digest(presented.assertion().expose().trim().as_bytes()).into();
        let resent = sent.contains(&fingerprint);
        sent.push(fingerprint);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            presented.settle(Fate::NotSent).await;
            // The source took the rest of the budget: nothing is sent.
            return Err(out_of_budget(last, attempt_no - 1));
        }
        let failure = match attempt(params, presented.assertion(), policy.timeout.min(left)).await {
            Ok(token) => {
                presented.settle(Fate::Exchanged).await;
                return Ok(token);
            }
            Err(f) => f,
        };
        let note = presented.settle(failure.fate()).await;
        let Failure { mut error, retryable, retry_after, refused_token, .. } = failure;
        // The note of an earlier presentation would repeat the one below.
        if let Some(note) = note.filter(|_| !resent) {
            error.append(format!(" {note}"));
        }
        if refused_token && resent {
            error.append(
                " Note: this attempt re-sent the same identity token as an earlier attempt: the identity-token \
                 source returned the same single-use token again, and the server accepts each token only once. \
                 Make the source return a fresh token for each exchange (or let the first exchange's result be \
                 cached and shared).",
            );
        }
        if !retryable {
            return Err(after_attempts(error, attempt_no, started));
        }
        if attempt_no >= max_attempts {
            return Err(after_attempts(error, attempt_no, started));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let delay = match retry_after {
            Some(wait) => {
                if wait >= left {
                    error.append(format!(
                        " Not retrying: the server asked to wait {} (Retry-After), more than the {} left of the \
                         {} budget for this exchange.",
                        secs(wait),
                        secs(left),
                        secs(policy.max_total)
                    ));
                    return Err(after_attempts(error, attempt_no, started));
                }
                wait
            }
            None => backoff(policy, attempt_no),
        };
        if delay >= left {
            error.append(format!(
                " Not retrying: the next attempt would exceed the {} budget for this exchange.",
                secs(policy.max_total)
            ));
            return Err(after_attempts(error, attempt_no, started));
        }
        last = Some(error);
        tokio::time::sleep(delay).await;
    }
}

/// Exponential back-off with jitter: a random delay in [d/2, d] where
/// d = min(max_delay, base_delay × 2^(attempt-1)).
fn backoff(policy: &RetryPolicy, attempt_no: u32) -> Duration {
    let exp = attempt_no.saturating_sub(1).min(20);
    let full = policy.base_delay.saturating_mul(1u32 << exp).min(policy.max_delay);
    let half = full / 2;
    let jitter_ms = fastrand::u64(0..=(full - half).as_millis().min(u64::MAX as u128) as u64);
    half + Duration::from_millis(jitter_ms)
}

fn after_attempts(mut error: Error, attempts: u32, started: Instant) -> Error {
    if attempts > 1 {
        error.append(format!(" (gave up after {attempts} attempts in {:.1} s)", started.elapsed().as_secs_f64()));
    }
    error
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", s as u64)
    } else {
        format!("{s:.1} s")
    }
}

/// The JSON body. Optional ids go only when set and non-empty; `scope` never.
/// It carries the assertion, so no copy is left behind: the buffer is sized
/// up front (no reallocation leaves a partial copy in freed memory) and the
/// map's copy of the assertion is zeroed once encoded; the caller sends the
/// buffer with [`crate::secret::wiped_body`].
fn request_body(params: &ExchangeParams, assertion: &str) -> Result<Vec<u8>> {
    let mut body = Map::new();
    body.insert("grant_type".into(), Value::from(GRANT_TYPE_JWT_BEARER));
    body.insert("assertion".into(), Value::from(assertion));
    body.insert("federation_rule_id".into(), Value::from(params.federation_rule_id.trim()));
    body.insert("organization_id".into(), Value::from(params.organization_id.trim()));
    for (name, value) in [("service_account_id", &params.service_account_id), ("workspace_id", &params.workspace_id)] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            body.insert(name.into(), Value::from(v));
        }
    }
    let room = 512 + body.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len) * 6).sum::<usize>();
    let mut out = Vec::with_capacity(room);
    let mut body = Value::Object(body);
    let encoded = serde_json::to_writer(&mut out, &body);
    if let Some(Value::String(s)) = body.get_mut("assertion") {
        zeroize::Zeroize::zeroize(s);
    }
    match encoded {
        Ok(()) => Ok(out),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(Error::internal(format!("cannot encode the token request: {e}")))
        }
    }
}

/// Check the inputs that need no network; an error here sends nothing.
fn check_inputs<'a>(params: &ExchangeParams, assertion: &'a Secret) -> Result<(String, &'a str)> {
    let endpoint = token_endpoint(&params.base_url)?;
    for (name, value) in
        [("federation_rule_id", &params.federation_rule_id), ("organization_id", &params.organization_id)]
    {
        if value.trim().is_empty() {
            return Err(Error::config(format!(
                "{name} is empty; it is required for the token exchange (set ANTHROPIC_{} or the profile's {name})",
                name.to_ascii_uppercase()
            )));
        }
    }
    let jwt = assertion.expose().trim();
    if jwt.is_empty() {
        return Err(Error::identity(
            "the identity token is empty; nothing was sent. Check that the identity-token source produces a token",
        ));
    }
    if jwt.len() > MAX_ASSERTION_BYTES {
        return Err(Error::identity(format!(
            "the identity token is {} bytes, over the {MAX_ASSERTION_BYTES}-byte (16 KiB) limit for an assertion; \
             nothing was sent. This is almost certainly not a JWT: check that the identity-token source points at \
             the token, not at a key or certificate",
            jwt.len()
        )));
    }
    Ok((endpoint, jwt))
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|_| {
        Error::config(format!(
            "the {name} \"{}\" contains characters not allowed in an HTTP header",
            response::clean(value, &[], 100)
        ))
    })
}

/// One attempt within `timeout` (connect, send and the whole answer).
async fn attempt(params: &ExchangeParams, assertion: &Secret, timeout: Duration) -> Result<TokenResponse, Failure> {
    let (endpoint, jwt) = check_inputs(params, assertion).map_err(Failure::unsent)?;
    let body = request_body(params, jwt).map_err(Failure::unsent)?;
    let client = crate::runtime::http_client(&params.net).map_err(Failure::unsent)?;

    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert("anthropic-beta", HeaderValue::from_static(BETA_HEADER_VALUE));
    headers.insert(USER_AGENT, header_value("User-Agent", params.user_agent.trim()).map_err(Failure::unsent)?);

    let request = client.post(&endpoint).headers(headers).body(crate::secret::wiped_body(body)).timeout(timeout);
    let work = async {
        let resp = request.send().await.map_err(|e| transport_failure(&e, &endpoint, timeout, jwt))?;
        judge(resp, params, &endpoint, jwt, timeout).await
    };
    // reqwest's own time-out (above) covers connect, send and the whole body
    // and says which part was slow; this one is only a backstop.
    match tokio::time::timeout(timeout + Duration::from_millis(200), work).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(&endpoint, timeout)),
    }
}

fn timed_out(endpoint: &str, timeout: Duration) -> Failure {
    Failure::transient(Error::unavailable(format!(
        "the token endpoint {endpoint} did not answer within {} (time-out); check the network path to it",
        secs(timeout)
    )))
}

fn transport_failure(e: &reqwest::Error, endpoint: &str, timeout: Duration, jwt: &str) -> Failure {
    if e.is_timeout() {
        return timed_out(endpoint, timeout);
    }
    let cause = causes(e, jwt);
    if e.is_builder() {
        return Failure::unsent(Error::internal(format!("cannot build the request to {endpoint}: {cause}")));
    }
    let what = if e.is_connect() { "cannot connect to" } else { "lost the connection to" };
    let failure = Failure::transient(Error::unavailable(format!("{what} the token endpoint {endpoint}: {cause}")));
    Failure { sent: !e.is_connect(), ..failure }
}

/// The causes beneath a reqwest error (its own text repeats the URL), scrubbed.
fn causes(e: &reqwest::Error, jwt: &str) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = response::clean(&s.to_string(), &[jwt], 200);
        if !text.is_empty() && !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        src = s.source();
    }
    if causes.is_empty() {
        response::clean(&e.to_string(), &[jwt], 200)
    } else {
        causes.join(": ")
    }
}

/// The `request-id` header, if it looks like one (printable, bounded).
fn request_id(headers: &HeaderMap, jwt: &str) -> Option<String> {
    let raw = headers.get("request-id")?.to_str().ok()?.trim();
    if raw.is_empty() {
        return None;
    }
    let id = response::clean(raw, &[jwt], 128);
    (!id.is_empty()).then_some(id)
}

/// Read the body, at most [`MAX_RESPONSE_BYTES`], chunk by chunk.
async fn read_limited(resp: &mut reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(8192).min(MAX_RESPONSE_BYTES as u64) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(BodyError::Read(e)),
        }
    }
}

enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// Map the answer to a token or a Failure.
async fn judge(
    mut resp: reqwest::Response,
    params: &ExchangeParams,
    endpoint: &str,
    jwt: &str,
    timeout: Duration,
) -> Result<TokenResponse, Failure> {
    let status = resp.status();
    let code = status.as_u16();
    let rid = request_id(resp.headers(), jwt);
    let rid_text = rid.as_deref().map(|r| format!(" (request-id: {r})")).unwrap_or_default();
    let content_type =
        resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| response::clean(v, &[jwt], 60));
    let ct_text = content_type.clone().unwrap_or_else(|| "none".into());
    let decorate = |e: Error| e.with_status(code).with_request_id(rid.clone());

    if status.is_redirection() {
        let target = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|loc| reqwest::Url::parse(endpoint).ok()?.join(loc.trim()).ok())
            .and_then(|u| u.host_str().map(|h| response::clean(h, &[jwt], 100)));
        let to = match target {
            Some(h) => format!("redirecting to host {h}"),
            None => "a redirect without a usable Location".into(),
        };
        return Err(Failure::fatal(decorate(Error::unavailable(format!(
            "the token endpoint {endpoint} answered HTTP {code} ({to}){rid_text}; redirects are never followed, \
             because they could carry the identity token elsewhere. Set the base URL to the deployment's own \
             https:// address"
        )))));
    }

    let body = match read_limited(&mut resp).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            let kind = if status.is_client_error() && code != 429 { ErrorKind::Denied } else { ErrorKind::Unavailable };
            return Err(Failure::fatal(decorate(Error::new(
                kind,
                format!(
                    "the token endpoint {endpoint} answered HTTP {code}{rid_text} with a body over the \
                     {MAX_RESPONSE_BYTES}-byte (1 MiB) limit; refusing it. Check that the base URL points at the \
                     Claude API"
                ),
            ))));
        }
        Err(BodyError::Read(e)) => {
            // The server may have minted a token already; a retry sends a
            // fresh identity token, so retrying is safe.
            let why = if e.is_timeout() {
                format!("did not finish sending its body within {} (time-out)", secs(timeout))
            } else {
                format!("the connection failed while its body was read: {}", causes(&e, jwt))
            };
            let error = decorate(Error::unavailable(format!(
                "the token endpoint {endpoint} answered HTTP {code}{rid_text} but {why}"
            )));
            return Err(Failure::transient(error));
        }
    };

    if status.is_success() {
        let parsed_body = serde_json::from_slice::<Value>(&body);
        // The raw body holds the token: wipe it now that it is parsed.
        let body_len = body.len();
        let mut body = body;
        zeroize::Zeroize::zeroize(&mut body);
        let not_token_endpoint = |why: String| {
            Failure::fatal(decorate(Error::unavailable(format!(
                "the endpoint {endpoint} did not answer like a token endpoint: HTTP {code}, content-type {ct_text}, \
                 {body_len} bytes{rid_text}: {why}. Check that the base URL points at the Claude API"
            ))))
        };
        let mut obj = match parsed_body {
            Ok(Value::Object(obj)) => obj,
            Ok(other) => {
                return Err(not_token_endpoint(format!(
                    "the body is {}, not a JSON object",
                    crate::json::type_name(&other)
                )))
            }
            Err(_) => return Err(not_token_endpoint("the body is not JSON".into())),
        };
        let parsed = response::parse_success(&mut obj, jwt);
        drop(obj);
        let parsed = match parsed {
            Ok(p) => p,
            Err(why) => {
                return Err(Failure::fatal(decorate(Error::unavailable(format!(
                    "the token endpoint {endpoint} answered HTTP {code}{rid_text}, but not with a usable token: {why}"
                )))))
            }
        };
        let now = crate::clock::now_unix();
        return Ok(TokenResponse {
            access_token: parsed.access_token,
            expires_in: parsed.expires_in,
            expires_at: now.saturating_add(parsed.expires_in),
            scope: parsed.scope,
            request_id: rid,
        });
    }

    let details = response::error_details(&body, content_type.as_deref(), &[jwt]);
    let mut body = body;
    zeroize::Zeroize::zeroize(&mut body);
    let detail = details.render();
    let detail = detail.trim_end_matches('.');
    let error_code = details.code.clone();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| response::parse_retry_after(v, SystemTime::now()));
    let reason = status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default();

    let (kind, retryable, what, hint) = if code == 429 {
        (ErrorKind::Unavailable, true, "is rate-limiting token exchanges", String::new())
    } else if status.is_client_error() {
        let refused = code == 401 || (code == 400 && error_code.as_deref() == Some("invalid_grant"));
        let hint = if refused {
            format!(
                " {}",
                response::denied_hint(
                    &params.federation_rule_id,
                    params.workspace_id.as_deref().is_some_and(|w| !w.trim().is_empty())
                )
            )
        } else if code == 404 || code == 405 {
            " There is no token endpoint at this address: check the base URL (e.g. https://api.anthropic.com)."
                .to_string()
        } else if code == 400 {
            " Check the federation_rule_id (fdrl_…), organization_id (a UUID), service_account_id (svac_…) and \
             workspace_id (wrkspc_… or default) settings."
                .to_string()
        } else {
            String::new()
        };
        (ErrorKind::Denied, false, "refused the token exchange", hint)
    } else if status.is_server_error() {
        (ErrorKind::Unavailable, true, "failed", " This is a server-side problem; try again later.".to_string())
    } else {
        (ErrorKind::Unavailable, false, "answered unexpectedly", String::new())
    };
    let refused_token = code == 401 || (code == 400 && error_code.as_deref() == Some("invalid_grant"));
    let message = format!("the token endpoint {endpoint} {what}: HTTP {code}{reason}{rid_text}: {detail}.{hint}");
    let error = decorate(Error::new(kind, message)).with_error_code(error_code);
    Err(Failure {
        error,
        retryable,
        retry_after: if retryable { retry_after } else { None },
        refused_token,
        sent: true,
    })
}
