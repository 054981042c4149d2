//! `{"source": "auto", "audience"?}`: pick the platform's preset from the
//! environment. Explicit configuration always wins (this runs only when the
//! identity source is `auto`). The order, first match wins:
//!
//! 1. GitHub Actions: `ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`
//! 2. GitLab CI: `GITLAB_CI` + `ANTHROPIC_ID_TOKEN` (the default `id_tokens` name)
//! 3. CircleCI: `CIRCLE_OIDC_TOKEN_V2`
//! 4. Bitbucket Pipelines: `BITBUCKET_STEP_OIDC_TOKEN`
//! 5. HCP Terraform: `TFC_WORKLOAD_IDENTITY_TOKEN`
//! 6. SPIFFE: `SPIFFE_ENDPOINT_SOCKET`
//! 7. Kubernetes: the projected token file exists (`/var/run/secrets/anthropic.com/token`,
//!    or `$ANTHROPIC_WIF_KUBERNETES_TOKEN_PATH`)
//! 8. Azure App Service / Functions / Container Apps: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`
//! 9. AWS: credentials configured in the environment (access keys, `AWS_PROFILE`,
//!    web identity, container credentials)
//! 10. Metadata probes, concurrently, each with a 1.5 s time-out; preference
//!     Google Cloud (`/computeMetadata/v1/` with `Metadata-Flavor: Google`),
//!     Azure IMDS (`/metadata/instance`), AWS EC2 (IMDSv2 token). The probes
//!     honour `GCE_METADATA_HOST`, `AZURE_IMDS_ENDPOINT`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
//!
//! Steps 1–9 are `detect` (no network; doctor reports it); `detect_with_probes`
//! adds step 10. Nothing found is an error naming everything looked for.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;

use super::presets::{self, PROBE_TIMEOUT};
use super::url::{check_url, send, HttpRequest};
use super::{aws, spiffe, IdentitySpec};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::url::redact_url;

/// What `auto` chose and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Detection {
    pub spec: IdentitySpec,
    /// e.g. `CIRCLE_OIDC_TOKEN_V2 is set`.
    pub reason: String,
}

fn found(spec: IdentitySpec, reason: impl Into<String>) -> Option<Detection> {
    Some(Detection { spec, reason: reason.into() })
}

/// Steps 1–9: detection from the environment and the file system only.
pub(crate) fn detect(env: &Env, audience: Option<&str>) -> Option<Detection> {
    let aud = audience.map(str::to_string);
    if env.is_set(presets::GITHUB_REQUEST_URL_VAR) && env.is_set(presets::GITHUB_REQUEST_TOKEN_VAR) {
        return found(
            IdentitySpec::GithubActions { audience: aud },
            format!("{} and {} are set", presets::GITHUB_REQUEST_URL_VAR, presets::GITHUB_REQUEST_TOKEN_VAR),
        );
    }
    if env.is_set("GITLAB_CI") && env.is_set(presets::GITLAB_DEFAULT_VAR) {
        return found(
            IdentitySpec::Gitlab { var: None },
            format!("GITLAB_CI and {} are set", presets::GITLAB_DEFAULT_VAR),
        );
    }
    for (var, spec) in [
        (presets::CIRCLECI_VAR, IdentitySpec::Circleci { var: None }),
        (presets::BITBUCKET_VAR, IdentitySpec::Bitbucket { var: None }),
        (presets::TERRAFORM_VAR, IdentitySpec::Terraform { var: None }),
    ] {
        if env.is_set(var) {
            return found(spec, format!("{var} is set"));
        }
    }
    if env.is_set(spiffe::SOCKET_VAR) {
        return found(
            IdentitySpec::Spiffe { audience: aud, socket: None, spiffe_id: None, path: None },
            format!("{} is set", spiffe::SOCKET_VAR),
        );
    }
    let k8s = presets::kubernetes_path(None, env);
    if k8s.is_file() {
        let path = if env.is_set(presets::KUBERNETES_PATH_VAR) { Some(k8s.clone()) } else { None };
        return found(IdentitySpec::Kubernetes { path }, format!("the projected token file {} exists", k8s.display()));
    }
    if env.is_set("IDENTITY_ENDPOINT") && env.is_set("IDENTITY_HEADER") {
        return found(
            IdentitySpec::AzureImds { audience: aud, client_id: None },
            "IDENTITY_ENDPOINT and IDENTITY_HEADER are set (Azure App Service, Functions or Container Apps)",
        );
    }
    if let Some(what) = aws::configured_credential_source(env) {
        return found(
            IdentitySpec::AwsSts { audience: aud, region: None, duration_seconds: None, signing_algorithm: None },
            format!("AWS credentials are configured: {what}"),
        );
    }
    None
}

/// [`detect`], then the metadata probes; an error lists everything looked for.
pub(crate) async fn detect_with_probes(env: &Env, audience: Option<&str>) -> Result<Detection> {
    if let Some(d) = detect(env, audience) {
        return Ok(d);
    }
    let aud = audience.map(str::to_string);
    let gce = presets::gce_base(env);
    let azure = presets::azure_imds_base(env);
    let imds = aws::imds_base(env);
    let (g, a, w) = tokio::join!(probe_gcp(&gce, env), probe_azure(&azure, env), probe_aws(&imds, env));
    if g {
        return Ok(Detection {
            spec: IdentitySpec::GcpMetadata { audience: aud },
            reason: format!("the Google Cloud metadata server answered at {}", redact_url(&gce)),
        });
    }
    if a {
        return Ok(Detection {
            spec: IdentitySpec::AzureImds { audience: aud, client_id: None },
            reason: format!("Azure IMDS answered at {}", redact_url(&azure)),
        });
    }
    if w {
        return Ok(Detection {
            spec: IdentitySpec::AwsSts { audience: aud, region: None, duration_seconds: None, signing_algorithm: None },
            reason: format!("EC2 instance metadata (IMDSv2) answered at {}", redact_url(&imds)),
        });
    }
    Err(nothing_found(env, &redact_url(&gce), &redact_url(&azure), &redact_url(&imds)))
}

fn nothing_found(env: &Env, gce: &str, azure: &str, imds: &str) -> Error {
    let mut hints = Vec::new();
    if env.is_set("GITHUB_ACTIONS") && !env.is_set(presets::GITHUB_REQUEST_URL_VAR) {
        hints
            .push("this is a GitHub Actions job without an OIDC token: add `permissions: id-token: write`".to_string());
    }
    if env.is_set("GITLAB_CI") {
        hints.push(format!(
            "this is a GitLab CI job without {v}: add `id_tokens: {v}: aud: {aud}` to the job",
            v = presets::GITLAB_DEFAULT_VAR,
            aud = super::DEFAULT_AUDIENCE
        ));
    }
    if env.is_set("CIRCLECI") {
        hints.push(format!("this is a CircleCI job without {}: run it in a context", presets::CIRCLECI_VAR));
    }
    if env.is_set("BITBUCKET_BUILD_NUMBER") {
        hints.push(format!(
            "this is a Bitbucket Pipelines step without {}: add `oidc: true` to the step",
            presets::BITBUCKET_VAR
        ));
    }
    if env.is_set("TFC_RUN_ID") {
        hints.push(format!(
            "this is an HCP Terraform run without {}: set the workspace variable TFC_WORKLOAD_IDENTITY_AUDIENCE",
            presets::TERRAFORM_VAR
        ));
    }
    if env.is_set("KUBERNETES_SERVICE_HOST") {
        hints.push(format!(
            "this is a Kubernetes pod without the projected token: {}",
            presets::kubernetes_fix(&presets::kubernetes_path(None, env))
        ));
    }
    let hints = if hints.is_empty() { String::new() } else { format!(" Note: {}.", hints.join("; ")) };
    Error::identity(format!(
        "automatically detected identity source: no platform identity found. Looked for, in order: GitHub Actions \
         ({gh_url} + {gh_tok}), GitLab CI (GITLAB_CI + {gl}), CircleCI ({cc}), Bitbucket Pipelines ({bb}), HCP Terraform ({tf}), \
         SPIFFE ({sp}), a Kubernetes projected token file ({k8s}), Azure App Service (IDENTITY_ENDPOINT + IDENTITY_HEADER), \
         AWS credentials (AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_*_URI), \
         and the metadata servers of Google Cloud ({gce}), Azure ({azure}) and AWS EC2 ({imds}), which did not answer within {t} s.{hints} \
         Configure the identity source explicitly (see docs/platforms.md), e.g. {{\"source\": \"file\", \"path\": …}}",
        gh_url = presets::GITHUB_REQUEST_URL_VAR,
        gh_tok = presets::GITHUB_REQUEST_TOKEN_VAR,
        gl = presets::GITLAB_DEFAULT_VAR,
        cc = presets::CIRCLECI_VAR,
        bb = presets::BITBUCKET_VAR,
        tf = presets::TERRAFORM_VAR,
        sp = spiffe::SOCKET_VAR,
        k8s = presets::kubernetes_path(None, env).display(),
        t = PROBE_TIMEOUT.as_secs_f32(),
    ))
}

async fn probe(method: Method, url: &str, header: (&'static str, &'static str), env: &Env) -> bool {
    let Ok(url) = check_url(url, "auto", &[]) else { return false };
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(header.0), HeaderValue::from_static(header.1));
    let fail = |w: String| Error::identity(w);
    let req = HttpRequest { method, url, headers, body: None, secrets: vec![], timeout: PROBE_TIMEOUT };
    send(req, env, &fail).await.is_ok_and(|a| a.is_success())
}

/// Google's metadata server answers `/computeMetadata/v1/` only with the
/// `Metadata-Flavor: Google` request header. (Response headers are not
/// surfaced by the engine; the header requirement plus the path suffice.)
async fn probe_gcp(base: &str, env: &Env) -> bool {
    probe(Method::GET, &format!("{base}/computeMetadata/v1/instance/id"), ("metadata-flavor", "Google"), env).await
}

async fn probe_azure(base: &str, env: &Env) -> bool {
    probe(Method::GET, &format!("{base}/metadata/instance?api-version=2021-02-01"), ("metadata", "true"), env).await
}

async fn probe_aws(base: &str, env: &Env) -> bool {
    probe(Method::PUT, &format!("{base}/latest/api/token"), ("x-aws-ec2-metadata-token-ttl-seconds", "60"), env).await
}
