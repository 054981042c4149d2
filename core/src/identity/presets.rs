//! Platform presets: each turns a platform's documented way of minting an
//! OIDC token into one of the generic mechanisms (an HTTP GET through
//! [`super::url::get_token`], an environment variable, a file), with the
//! platform's own fix in every error.
//!
//! Built: GitHub Actions. To add one (GitLab, GCP metadata, Azure IMDS, AWS
//! STS, SPIFFE, Kubernetes, auto), add an `IdentitySpec` variant, a function
//! here that builds a [`TokenGet`] (or calls `env::read_with_fix` /
//! `file::read`), and a `describe` arm; tests point HTTP presets at loopback.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;

use super::url::{check_url, get_token, TokenGet, URL_TIMEOUT};
use super::DEFAULT_AUDIENCE;
use crate::config::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The variables the GitHub Actions runner sets when the job may mint tokens.
pub const GITHUB_REQUEST_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub const GITHUB_REQUEST_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

const GITHUB_PERMISSION_FIX: &str = "add `permissions: id-token: write` to the workflow or the job \
(pull requests from forks never get it), and run this inside a GitHub Actions job step";

/// The audience to request: the configured one, else [`DEFAULT_AUDIENCE`].
pub(crate) fn audience<'a>(configured: Option<&'a str>, source: &str) -> Result<&'a str> {
    match configured {
        None => Ok(DEFAULT_AUDIENCE),
        Some(a) if a.trim().is_empty() => Err(Error::config(format!(
            "{source}: audience is empty; leave it out for the default {DEFAULT_AUDIENCE}, or give the audience your federation rule expects"
        ))),
        Some(a) => Ok(a),
    }
}

/// Add `name=value` to the URL's query, URL-encoded, after any existing
/// parameters (`?` or `&` as needed).
/// A parameter of the same name already in the URL is replaced.
pub(crate) fn with_query_param(mut url: Url, name: &str, value: &str) -> Url {
    if url.query_pairs().any(|(k, _)| k == name) {
        let keep: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &keep {
            q.append_pair(k, v);
        }
        q.append_pair(name, value);
        drop(q);
        return url;
    }
    url.query_pairs_mut().append_pair(name, value);
    url
}

/// GitHub Actions: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=<aud>` with
/// `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`; the answer is
/// `{"count": …, "value": "<jwt>"}`.
pub(crate) async fn github_actions(configured_audience: Option<&str>, env: &Env, source: &str) -> Result<Secret> {
    let aud = audience(configured_audience, source)?;
    let missing: Vec<&str> =
        [GITHUB_REQUEST_URL_VAR, GITHUB_REQUEST_TOKEN_VAR].into_iter().filter(|v| !env.is_set(v)).collect();
    if !missing.is_empty() {
        return Err(Error::identity(format!(
            "{source}: {} not set, so this job cannot request an OIDC token; {GITHUB_PERMISSION_FIX}",
            if missing.len() == 1 { format!("{} is", missing[0]) } else { format!("{} are", missing.join(" and ")) }
        )));
    }
    let (Some(raw_url), Some(bearer)) = (env.get(GITHUB_REQUEST_URL_VAR), env.get(GITHUB_REQUEST_TOKEN_VAR)) else {
        return Err(Error::identity(format!(
            "{source}: the GitHub Actions OIDC variables vanished; {GITHUB_PERMISSION_FIX}"
        )));
    };
    let bearer = Secret::new(bearer);
    let secrets = vec![Secret::new(bearer.expose().to_string())];
    let url = check_url(raw_url.trim(), source, &secrets)?;
    let url = with_query_param(url, "audience", aud);

    let mut headers = HeaderMap::new();
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", bearer.expose().trim())).map_err(|_| {
        Error::identity(format!(
            "{source}: {GITHUB_REQUEST_TOKEN_VAR} is not a valid header value (it has a newline or a control character); it must be the runner's request token, unchanged"
        ))
    })?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static("application/json"));

    let req = TokenGet {
        url,
        headers,
        field: Some("value".to_string()),
        secrets,
        timeout: URL_TIMEOUT,
        fix: format!(
            "the request token lasts only as long as the job, and the job needs `permissions: id-token: write`; audience requested: {aud}"
        ),
    };
    get_token(req, source).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_is_encoded_appended_or_replaced() {
        let u = |s: &str| Url::parse(s).unwrap();
        let aud = "https://api.anthropic.com";
        assert_eq!(
            with_query_param(u("https://h/p"), "audience", aud).as_str(),
            "https://h/p?audience=https%3A%2F%2Fapi.anthropic.com"
        );
        assert_eq!(
            with_query_param(u("https://h/p?api-version=2.0"), "audience", aud).as_str(),
            "https://h/p?api-version=2.0&audience=https%3A%2F%2Fapi.anthropic.com"
        );
        assert_eq!(with_query_param(u("https://h/p?"), "audience", "a b&c").as_str(), "https://h/p?audience=a+b%26c");
        assert_eq!(
            with_query_param(u("https://h/p?audience=old&x=1"), "audience", "new").as_str(),
            "https://h/p?x=1&audience=new"
        );
    }

    #[test]
    fn audience_default_and_empty() {
        assert_eq!(audience(None, "s").unwrap(), DEFAULT_AUDIENCE);
        assert_eq!(audience(Some("api://x"), "s").unwrap(), "api://x");
        assert_eq!(audience(Some(" "), "s").unwrap_err().kind, crate::ErrorKind::Config);
    }
}
