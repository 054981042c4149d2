//! Platform presets: each turns a platform's documented way of minting an
//! OIDC token into one of the generic mechanisms (an HTTP GET through
//! `super::url::get_token`, an environment variable, a file), with the
//! platform's own fix in every error.
//!
//! Here: GitHub Actions, the CI variables (GitLab, CircleCI, Bitbucket, HCP
//! Terraform), Google Cloud metadata, Azure managed identity, Kubernetes.
//! AWS STS is in [`super::aws`], SPIFFE in [`super::spiffe`], `auto` in
//! [`super::auto`]. Every endpoint can be pointed elsewhere by an environment
//! variable (tests use loopback fakes):
//! - `GCE_METADATA_HOST` (`host[:port]`, as Google's client libraries read it);
//! - `AZURE_IMDS_ENDPOINT` (base URL, default `http://169.254.169.254`);
//!   App Service / Functions / Container Apps are used when `IDENTITY_ENDPOINT`
//!   and `IDENTITY_HEADER` are set;
//! - `ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH` (default projected-token path).

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Url;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderName;

use super::url::{check_url, check_url_allowing, get_token, PlainHttp, TokenGet, URL_TIMEOUT};
use super::{env as env_source, file, DEFAULT_AUDIENCE};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The variables the GitHub Actions runner sets when the job may mint tokens.
pub(crate) const GITHUB_REQUEST_URL_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const GITHUB_REQUEST_TOKEN_VAR: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

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
    get_token(req, env, source).await
}

// ------------------------------------------------------------ CI variables

/// A CI platform whose job gets its OIDC token in an environment variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CiVar {
    Gitlab,
    Circleci,
    Bitbucket,
    Terraform,
}

pub(crate) const GITLAB_DEFAULT_VAR: &str = "ANTHROPIC_ID_TOKEN";
pub(crate) const CIRCLECI_VAR: &str = "CIRCLE_OIDC_TOKEN_V2";
pub(crate) const BITBUCKET_VAR: &str = "BITBUCKET_STEP_OIDC_TOKEN";
pub(crate) const TERRAFORM_VAR: &str = "TFC_WORKLOAD_IDENTITY_TOKEN";

impl CiVar {
    pub(crate) fn default_var(self) -> &'static str {
        match self {
            CiVar::Gitlab => GITLAB_DEFAULT_VAR,
            CiVar::Circleci => CIRCLECI_VAR,
            CiVar::Bitbucket => BITBUCKET_VAR,
            CiVar::Terraform => TERRAFORM_VAR,
        }
    }
    /// What to configure on the platform so the variable is set.
    pub fn fix(self, var: &str) -> String {
        match self {
            CiVar::Gitlab => format!(
                "declare the token in the job: `id_tokens: {var}: aud: {DEFAULT_AUDIENCE}` (the audience must match your federation rule)"
            ),
            CiVar::Circleci => format!(
                "CircleCI cloud sets {var} in jobs (if it is missing, run the job with a context; CircleCI server has no OIDC tokens); its audience is your CircleCI organization id, so the federation rule must expect that audience (or use the command source with `circleci run oidc get --claims '{{\"aud\":\"{DEFAULT_AUDIENCE}\"}}'`)"
            ),
            CiVar::Bitbucket => format!(
                "add `oidc: true` to the step in bitbucket-pipelines.yml so Bitbucket sets {var}; its audience is ari:cloud:bitbucket::workspace/<workspace-uuid>, so the federation rule must expect that audience"
            ),
            CiVar::Terraform => format!(
                "enable workload identity: set the workspace variable TFC_WORKLOAD_IDENTITY_AUDIENCE={DEFAULT_AUDIENCE} \
                 (a tagged TFC_WORKLOAD_IDENTITY_AUDIENCE_<TAG> yields {var}_<TAG>; give that name in var)"
            ),
        }
    }
}

/// The CI-variable presets: `var` defaults to the platform's variable.
pub(crate) fn ci_var(kind: CiVar, var: Option<&str>, env: &Env, source: &str) -> Result<Secret> {
    let var = var.unwrap_or(kind.default_var());
    env_source::read_with_fix(var, env, source, Some(&kind.fix(var)))
}

// ------------------------------------------------------------ Google Cloud

pub(crate) const GCE_METADATA_HOST_VAR: &str = "GCE_METADATA_HOST";
pub(crate) const GCE_DEFAULT_HOST: &str = "metadata.google.internal";

/// `http://<GCE_METADATA_HOST or metadata.google.internal>` (a value with a
/// scheme is taken as a base URL).
pub(crate) fn gce_base(env: &Env) -> String {
    let host = env.get(GCE_METADATA_HOST_VAR).map(|h| h.trim().trim_end_matches('/').to_string());
    match host {
        Some(h) if h.contains("://") => h,
        Some(h) => format!("http://{h}"),
        None => format!("http://{GCE_DEFAULT_HOST}"),
    }
}

const GCP_FIX: &str =
    "run on Google Cloud (Compute Engine, GKE with Workload Identity, Cloud Run, Cloud Functions) with a \
service account attached to the workload; the federation rule's issuer is https://accounts.google.com";

/// Google Cloud: `GET …/service-accounts/default/identity?audience=<aud>&format=full`
/// with `Metadata-Flavor: Google`; the body is the JWT.
pub(crate) async fn gcp_metadata(configured_audience: Option<&str>, env: &Env, source: &str) -> Result<Secret> {
    let aud = audience(configured_audience, source)?;
    let base = gce_base(env);
    let url = check_url(
        &format!("{base}/computeMetadata/v1/instance/service-accounts/default/identity"),
        &format!("{source} ({GCE_METADATA_HOST_VAR})"),
        &[],
    )?;
    let url = with_query_param(with_query_param(url, "audience", aud), "format", "full");
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static("metadata-flavor"), HeaderValue::from_static("Google"));
    let req = TokenGet {
        url,
        headers,
        field: None,
        secrets: vec![],
        timeout: URL_TIMEOUT,
        fix: format!("{GCP_FIX} (a 404 means no service account is attached); audience requested: {aud}"),
    };
    get_token(req, env, source).await
}

// ------------------------------------------------------------ Azure

pub(crate) const AZURE_IMDS_ENDPOINT_VAR: &str = "AZURE_IMDS_ENDPOINT";
pub(crate) const AZURE_DEFAULT_IMDS: &str = "http://169.254.169.254";

pub(crate) fn azure_imds_base(env: &Env) -> String {
    env.get(AZURE_IMDS_ENDPOINT_VAR)
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| AZURE_DEFAULT_IMDS.to_string())
}

/// Azure managed identity. With `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App
/// Service, Functions, Container Apps): `GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<aud>`
/// with `X-IDENTITY-HEADER`; else IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=<aud>`
/// with `Metadata: true`. `client_id` selects a user-assigned identity. The
/// answer's `access_token` is the JWT.
pub(crate) async fn azure_imds(
    configured_audience: Option<&str>,
    client_id: Option<&str>,
    env: &Env,
    source: &str,
) -> Result<Secret> {
    let aud = audience(configured_audience, source)?;
    if client_id.is_some_and(|c| c.trim().is_empty()) {
        return Err(Error::config(format!(
            "{source}: client_id is empty; leave it out for the system-assigned identity, or give the user-assigned identity's client id"
        )));
    }
    let mut headers = HeaderMap::new();
    let mut secrets = Vec::new();
    let app_service = (env.get("IDENTITY_ENDPOINT"), env.get("IDENTITY_HEADER"));
    let (url, fix) = if let (Some(endpoint), Some(header)) = app_service {
        let what = format!("{source} (IDENTITY_ENDPOINT)");
        let url = check_url_allowing(endpoint.trim(), &what, &[], PlainHttp::AzureAppService)?;
        let url = with_query_param(with_query_param(url, "api-version", "2019-08-01"), "resource", aud);
        let mut v = HeaderValue::from_str(header.trim()).map_err(|_| {
            Error::identity(format!(
                "{source}: IDENTITY_HEADER is not a valid header value; it must be the platform's value, unchanged"
            ))
        })?;
        v.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-identity-header"), v);
        secrets.push(Secret::new(header.trim().to_string()));
        (url, "turn on a managed identity for the app (Identity blade: System assigned, or add a user-assigned one and give its client_id)")
    } else {
        let base = azure_imds_base(env);
        let url = check_url(
            &format!("{base}/metadata/identity/oauth2/token"),
            &format!("{source} ({AZURE_IMDS_ENDPOINT_VAR})"),
            &[],
        )?;
        let url = with_query_param(with_query_param(url, "api-version", "2018-02-01"), "resource", aud);
        headers.insert(HeaderName::from_static("metadata"), HeaderValue::from_static("true"));
        (url, "assign a managed identity to the VM or scale set (system-assigned, or user-assigned with its client_id); the federation rule's issuer is https://sts.windows.net/<tenant-id>/ and the audience is the resource requested")
    };
    let url = match client_id {
        Some(c) => with_query_param(url, "client_id", c.trim()),
        None => url,
    };
    let req = TokenGet {
        url,
        headers,
        field: Some("access_token".to_string()),
        secrets,
        timeout: URL_TIMEOUT,
        fix: format!("{fix}; resource requested: {aud}"),
    };
    get_token(req, env, source).await
}

// ------------------------------------------------------------ Kubernetes

pub(crate) const KUBERNETES_DEFAULT_PATH: &str = "/var/run/secrets/anthropic.com/token";
pub(crate) const KUBERNETES_PATH_VAR: &str = "ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH";

/// The projected-token path: the spec's, else `$ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH`,
/// else [`KUBERNETES_DEFAULT_PATH`].
pub(crate) fn kubernetes_path(configured: Option<&std::path::Path>, env: &Env) -> PathBuf {
    configured
        .map(PathBuf::from)
        .or_else(|| env.get(KUBERNETES_PATH_VAR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(KUBERNETES_DEFAULT_PATH))
}

pub(crate) fn kubernetes_fix(path: &std::path::Path) -> String {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d.display().to_string(), n.to_string_lossy().into_owned()),
        _ => ("/var/run/secrets/anthropic.com".to_string(), "token".to_string()),
    };
    format!(
        "mount a projected service-account token in the pod: volumes: [{{name: anthropic-token, projected: {{sources: \
         [{{serviceAccountToken: {{audience: {DEFAULT_AUDIENCE}, expirationSeconds: 3600, path: {name}}}}}]}}}}] and in the container \
         volumeMounts: [{{name: anthropic-token, mountPath: {dir}, readOnly: true}}]; the federation rule's issuer is the cluster's \
         service-account issuer (kubectl get --raw /.well-known/openid-configuration)"
    )
}

/// Kubernetes (also EKS, AKS, GKE): the projected token file, re-read each time.
pub(crate) async fn kubernetes(configured: Option<&std::path::Path>, env: &Env, source: &str) -> Result<Secret> {
    let path = kubernetes_path(configured, env);
    file::read_with_fix(&path, source, &kubernetes_fix(&path)).await
}

/// Short time-out for `auto`'s metadata probes.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

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
