//! Identity-token sources (docs/design.md §7). Every source is read afresh at each
//! exchange, trimmed, and an empty result is an error naming the source.
//! The JSON shape is the profile's `identity_token` discriminated union; flags
//! and binding constructors take the same shape.

//!
//! Layout: `file`, `env`, `command`, `url` (with `expand` for
//! `${VAR}`), and the platform presets: `presets` (GitHub Actions, the CI
//! variables, Google Cloud, Azure, Kubernetes), `aws` (STS
//! `GetWebIdentityToken`, SigV4 in `sigv4`), `spiffe` (Workload API), and
//! `auto` (detection). See docs/platforms.md for the platform side.
//!
//! Error kinds: a source that fails at run time is `ErrorKind::Identity`;
//! a malformed spec (empty argv, bad header name, `timeout_s` 0, disallowed
//! URL scheme…) is `ErrorKind::Config`. Every message starts with
//! `IdentitySpec::describe`, says what to do, and is scrubbed of
//! token-shaped text as a last line of defence.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;

pub(crate) mod auto;
pub(crate) mod aws;
pub(crate) mod command;
pub(crate) mod env;
pub(crate) mod expand;
pub(crate) mod file;
pub(crate) mod parse;
pub(crate) mod presets;
mod sigv4;
pub(crate) mod spiffe;
pub(crate) mod url;

/// Largest identity token accepted from a file, a variable or a command's
/// stdout. (The exchange itself refuses assertions over 16 KiB; this bound
/// only stops us reading something that is clearly not a token.)
pub(crate) const MAX_LOCAL_TOKEN_BYTES: usize = 64 * 1024;

/// Default audience for the presets.
pub const DEFAULT_AUDIENCE: &str = "https://api.anthropic.com";

/// Where the identity JWT comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentitySpec {
    /// A file, re-read at every exchange (projected Kubernetes tokens rotate).
    File {
        /// The token file.
        path: PathBuf,
    },
    /// An environment variable holding the JWT itself. The other SDKs'
    /// spellings of the variable's name are accepted too (docs/sdk-profiles.md
    /// §1): Ruby's `value`, PHP's `env_var` (exactly one of the three), and
    /// none at all means PHP's default, `ANTHROPIC_IDENTITY_TOKEN`.
    Env {
        /// The variable's name.
        #[serde(alias = "value", alias = "env_var", default = "default_env_var")]
        var: String,
    },
    /// A program (no shell); its stdout is the token.
    Command {
        /// The program and its arguments (`${VAR}` expanded).
        command: Vec<String>,
        /// Seconds before the program is killed (default 30, at most 3600).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    /// An HTTP GET; `${VAR}` expanded in the URL and header values.
    Url {
        /// The URL (`https`, or `http` to a metadata address).
        url: String,
        /// Request headers.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        /// A top-level JSON string field of the answer holding the token (default: the trimmed body).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// GitHub Actions OIDC (`permissions: id-token: write`).
    GithubActions {
        /// The token's `aud` (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// GitLab CI `id_tokens:` variable (default `ANTHROPIC_ID_TOKEN`).
    Gitlab {
        /// The variable (default `ANTHROPIC_ID_TOKEN`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        var: Option<String>,
    },
    /// CircleCI `CIRCLE_OIDC_TOKEN_V2`.
    Circleci {
        /// The variable (default `CIRCLE_OIDC_TOKEN_V2`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        var: Option<String>,
    },
    /// Bitbucket Pipelines `BITBUCKET_STEP_OIDC_TOKEN` (`oidc: true`).
    Bitbucket {
        /// The variable (default `BITBUCKET_STEP_OIDC_TOKEN`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        var: Option<String>,
    },
    /// HCP Terraform `TFC_WORKLOAD_IDENTITY_TOKEN`.
    Terraform {
        /// The variable (default `TFC_WORKLOAD_IDENTITY_TOKEN`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        var: Option<String>,
    },
    /// Google Cloud metadata server identity token.
    GcpMetadata {
        /// The token's `aud` (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// Azure managed identity (IMDS, or App Service's `IDENTITY_ENDPOINT`).
    AzureImds {
        /// The token's `aud` (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// A user-assigned identity's client id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// A projected service-account token (default
    /// `/var/run/secrets/anthropic.com/token`).
    Kubernetes {
        /// The token file (default `/var/run/secrets/anthropic.com/token`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// AWS STS `GetWebIdentityToken`, signed with the ambient AWS credentials.
    AwsSts {
        /// The token's `aud` (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// The STS region (default `AWS_REGION`, `AWS_DEFAULT_REGION`, the AWS profile's, else the EC2 instance's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// 60…3600, default 300.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_seconds: Option<u32>,
        /// `RS256` (default) or `ES384`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signing_algorithm: Option<String>,
    },
    /// SPIFFE JWT-SVID: the Workload API (`socket`, default
    /// `$SPIFFE_ENDPOINT_SOCKET`), or a spiffe-helper file (`path`).
    Spiffe {
        /// The token's `aud` (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        /// The Workload API socket (default `$SPIFFE_ENDPOINT_SOCKET`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        socket: Option<String>,
        /// The SPIFFE id to ask for, when the workload has several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spiffe_id: Option<String>,
        /// A spiffe-helper JWT-SVID file, instead of the Workload API.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
    },
    /// Detect the platform from the environment (see `auto`).
    Auto {
        /// The token's `aud` for sources that mint on request (default `https://api.anthropic.com`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    /// The JWT written into the configuration itself: PHP's
    /// `{"source": "literal", "token": …}`, and Java's `{"source": "value",
    /// "path": …}` (the JWT in a field named `path`). Never shown: `Debug`
    /// redacts it and it serialises as `(not shown)`. Like any identity
    /// token it serves one exchange.
    #[serde(alias = "value")]
    Literal {
        /// The JWT.
        #[serde(alias = "path", serialize_with = "withheld", deserialize_with = "secret")]
        token: Secret,
    },
}

/// PHP's default variable for `{"source": "env"}` without a name.
fn default_env_var() -> String {
    "ANTHROPIC_IDENTITY_TOKEN".to_string()
}

fn withheld<S: serde::Serializer>(_: &Secret, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str("(not shown)")
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// What a source can do when the token it handed back must not be sent
/// (this machine already exchanged it, or it expired): the rule of the
/// consumed-token guard (docs/design.md §1, `cache/consumed.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// A file that something else rewrites (the kubelet, spiffe-helper, a CI
    /// step): wait, bounded, for it to change.
    Rotates,
    /// Asking again mints a new token (a command, a URL, a metadata or token
    /// service, the Workload API): fetch again.
    Mints,
    /// The same token until the configuration changes (a variable): fail.
    Fixed,
}

/// The preset names accepted by [`IdentitySpec::preset`] (the CLI's
/// `--identity-source`), dashed as on the command line.
pub(crate) const PRESET_NAMES: &[&str] = &[
    "auto",
    "github-actions",
    "gitlab",
    "circleci",
    "bitbucket",
    "terraform",
    "gcp-metadata",
    "azure-imds",
    "kubernetes",
    "aws-sts",
    "spiffe",
];

impl IdentitySpec {
    /// A preset by name (`gcp-metadata` or `gcp_metadata`) with an optional
    /// audience, for `--identity-source NAME --audience AUD` and the bindings.
    /// The CI-variable presets take no audience (the platform sets it).
    pub fn preset(name: &str, audience: Option<String>) -> Result<IdentitySpec> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        let no_audience = |spec: IdentitySpec| -> Result<IdentitySpec> {
            match &audience {
                Some(_) => Err(Error::config(format!(
                    "identity source {n}: an audience cannot be requested here, the platform sets it ({}); leave --audience out and make the federation rule expect the platform's audience",
                    match n.as_str() {
                        "gitlab" => "in the job's `id_tokens: <VAR>: aud:`",
                        "terraform" => "with the workspace variable TFC_WORKLOAD_IDENTITY_AUDIENCE",
                        "kubernetes" => "in the projected volume's serviceAccountToken.audience",
                        _ => "fixed by the platform",
                    }
                ))),
                None => Ok(spec),
            }
        };
        match n.as_str() {
            "auto" => Ok(IdentitySpec::Auto { audience }),
            "github-actions" | "github" => Ok(IdentitySpec::GithubActions { audience }),
            "gitlab" => no_audience(IdentitySpec::Gitlab { var: None }),
            "circleci" => no_audience(IdentitySpec::Circleci { var: None }),
            "bitbucket" => no_audience(IdentitySpec::Bitbucket { var: None }),
            "terraform" => no_audience(IdentitySpec::Terraform { var: None }),
            "gcp-metadata" | "gcp" => Ok(IdentitySpec::GcpMetadata { audience }),
            "azure-imds" | "azure" => Ok(IdentitySpec::AzureImds { audience, client_id: None }),
            "kubernetes" => no_audience(IdentitySpec::Kubernetes { path: None }),
            "aws-sts" | "aws" => {
                Ok(IdentitySpec::AwsSts { audience, region: None, duration_seconds: None, signing_algorithm: None })
            }
            "spiffe" => Ok(IdentitySpec::Spiffe { audience, socket: None, spiffe_id: None, path: None }),
            _ => Err(Error::config(format!(
                "unknown identity source {:?}; choose one of: {}",
                name.chars().take(40).collect::<String>(),
                PRESET_NAMES.join(", ")
            ))),
        }
    }

    /// A secret-free description for messages, e.g. `file /var/run/…/token`,
    /// `environment variable ANTHROPIC_IDENTITY_TOKEN`, `command "gcloud …"`,
    /// `url https://…/${VAR}?key=…` (the template, never expanded values,
    /// query values withheld: [`crate::url::redact_url`]).
    pub(crate) fn describe(&self) -> String {
        match self {
            IdentitySpec::File { path } => format!("identity token file {}", path.display()),
            IdentitySpec::Env { var } => format!("identity token environment variable {var}"),
            IdentitySpec::Command { command, .. } => {
                format!("identity token command {:?}", command.first().map(String::as_str).unwrap_or(""))
            }
            IdentitySpec::Url { url, .. } => format!("identity token url {}", crate::url::redact_url(url)),
            IdentitySpec::GithubActions { .. } => {
                format!("GitHub Actions OIDC token (${})", presets::GITHUB_REQUEST_URL_VAR)
            }
            IdentitySpec::Gitlab { var } => {
                format!("GitLab CI id_tokens variable {}", var.as_deref().unwrap_or(presets::GITLAB_DEFAULT_VAR))
            }
            IdentitySpec::Circleci { var } => {
                format!("CircleCI OIDC token variable {}", var.as_deref().unwrap_or(presets::CIRCLECI_VAR))
            }
            IdentitySpec::Bitbucket { var } => {
                format!("Bitbucket Pipelines OIDC token variable {}", var.as_deref().unwrap_or(presets::BITBUCKET_VAR))
            }
            IdentitySpec::Terraform { var } => {
                format!(
                    "HCP Terraform workload identity token variable {}",
                    var.as_deref().unwrap_or(presets::TERRAFORM_VAR)
                )
            }
            IdentitySpec::GcpMetadata { .. } => "Google Cloud metadata server identity token".to_string(),
            IdentitySpec::AzureImds { client_id: Some(c), .. } => {
                format!("Azure managed identity token (client_id {c})")
            }
            IdentitySpec::AzureImds { .. } => "Azure managed identity token".to_string(),
            IdentitySpec::Kubernetes { path } => format!(
                "Kubernetes projected service-account token file {}",
                path.as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| presets::KUBERNETES_DEFAULT_PATH.to_string())
            ),
            IdentitySpec::AwsSts { .. } => "AWS STS GetWebIdentityToken".to_string(),
            IdentitySpec::Spiffe { path: Some(p), .. } => format!("SPIFFE JWT-SVID file {}", p.display()),
            IdentitySpec::Spiffe { .. } => "SPIFFE JWT-SVID from the Workload API".to_string(),
            IdentitySpec::Auto { .. } => "automatically detected identity source".to_string(),
            IdentitySpec::Literal { .. } => "identity token written in the configuration (literal)".to_string(),
        }
    }
}

impl IdentitySpec {
    /// How this source renews its token ([`Renewal`]). `auto` counts as
    /// minting: fetching again covers whatever it detects.
    pub(crate) fn renewal(&self) -> Renewal {
        match self {
            IdentitySpec::File { .. }
            | IdentitySpec::Kubernetes { .. }
            | IdentitySpec::Spiffe { path: Some(_), .. } => Renewal::Rotates,
            IdentitySpec::Command { .. }
            | IdentitySpec::Url { .. }
            | IdentitySpec::GithubActions { .. }
            | IdentitySpec::GcpMetadata { .. }
            | IdentitySpec::AzureImds { .. }
            | IdentitySpec::AwsSts { .. }
            | IdentitySpec::Spiffe { path: None, .. }
            | IdentitySpec::Auto { .. } => Renewal::Mints,
            IdentitySpec::Env { .. }
            | IdentitySpec::Literal { .. }
            | IdentitySpec::Gitlab { .. }
            | IdentitySpec::Circleci { .. }
            | IdentitySpec::Bitbucket { .. }
            | IdentitySpec::Terraform { .. } => Renewal::Fixed,
        }
    }

    /// The environment variables that hold this source's secrets: the
    /// identity token itself, or a credential whose only use is to mint one.
    /// `exec` removes them from its command's environment (with the SDKs'
    /// own secret variables, `crate::config::SECRET_ENV_VARS`). This is
    /// the one declaration per source; a new source must say here what it
    /// reads.
    ///
    /// Deliberately not listed: ambient cloud credentials that the workload
    /// holds for other purposes too and whose service the command can reach
    /// anyway (AWS keys and profiles for `aws_sts`, Azure's
    /// `IDENTITY_HEADER` for `azure_imds`, the metadata servers), and paths
    /// (`ANTHROPIC_IDENTITY_TOKEN_FILE`, `SPIFFE_ENDPOINT_SOCKET`). A `url`
    /// source lists every variable its URL and header templates expand: their
    /// values are treated as secrets everywhere (scrubbed from messages too).
    pub fn secret_env_vars(&self) -> Vec<String> {
        let ci =
            |kind: presets::CiVar, var: &Option<String>| vec![var.clone().unwrap_or_else(|| kind.default_var().into())];
        match self {
            IdentitySpec::Env { var } => vec![var.clone()],
            IdentitySpec::Url { url, headers, .. } => {
                let mut vars = expand::variables(url);
                vars.extend(headers.values().flat_map(|h| expand::variables(h)));
                vars.sort();
                vars.dedup();
                vars
            }
            IdentitySpec::GithubActions { .. } => vec![presets::GITHUB_REQUEST_TOKEN_VAR.into()],
            IdentitySpec::Gitlab { var } => ci(presets::CiVar::Gitlab, var),
            IdentitySpec::Circleci { var } => ci(presets::CiVar::Circleci, var),
            IdentitySpec::Bitbucket { var } => ci(presets::CiVar::Bitbucket, var),
            IdentitySpec::Terraform { var } => ci(presets::CiVar::Terraform, var),
            // Whatever `auto` may pick from the environment.
            IdentitySpec::Auto { audience } => [
                IdentitySpec::GithubActions { audience: audience.clone() },
                IdentitySpec::Gitlab { var: None },
                IdentitySpec::Circleci { var: None },
                IdentitySpec::Bitbucket { var: None },
                IdentitySpec::Terraform { var: None },
            ]
            .iter()
            .flat_map(IdentitySpec::secret_env_vars)
            .collect(),
            // In the configuration itself, not in a variable.
            IdentitySpec::Literal { .. } => vec![],
            IdentitySpec::File { .. }
            | IdentitySpec::Command { .. }
            | IdentitySpec::GcpMetadata { .. }
            | IdentitySpec::AzureImds { .. }
            | IdentitySpec::Kubernetes { .. }
            | IdentitySpec::AwsSts { .. }
            | IdentitySpec::Spiffe { .. } => vec![],
        }
    }
}

/// Obtain a fresh identity token from the source.
pub async fn fetch(spec: &IdentitySpec, env: &Env) -> Result<Secret> {
    // No token-shaped text reaches a message: the error type scrubs its text.
    match spec {
        IdentitySpec::Auto { audience } => match auto::detect_with_probes(env, audience.as_deref()).await {
            Ok(found) => {
                crate::diag::emit(crate::diag::INFO, || {
                    format!("identity source auto: using {} ({})", found.spec.describe(), found.reason)
                });
                fetch_concrete(&found.spec, env).await.map_err(|e| e.context(spec.describe()))
            }
            Err(e) => Err(e),
        },
        _ => fetch_concrete(spec, env).await,
    }
}

async fn fetch_concrete(spec: &IdentitySpec, env: &Env) -> Result<Secret> {
    let source = spec.describe();
    match spec {
        IdentitySpec::File { path } => file::read(path, &source).await,
        IdentitySpec::Env { var } => env::read(var, env, &source),
        IdentitySpec::Command { command, timeout_s } => command::run(command, *timeout_s, env, &source).await,
        IdentitySpec::Url { url, headers, field } => url::fetch(url, headers, field.as_deref(), env, &source).await,
        IdentitySpec::GithubActions { audience } => presets::github_actions(audience.as_deref(), env, &source).await,
        IdentitySpec::Gitlab { var } => presets::ci_var(presets::CiVar::Gitlab, var.as_deref(), env, &source),
        IdentitySpec::Circleci { var } => presets::ci_var(presets::CiVar::Circleci, var.as_deref(), env, &source),
        IdentitySpec::Bitbucket { var } => presets::ci_var(presets::CiVar::Bitbucket, var.as_deref(), env, &source),
        IdentitySpec::Terraform { var } => presets::ci_var(presets::CiVar::Terraform, var.as_deref(), env, &source),
        IdentitySpec::GcpMetadata { audience } => presets::gcp_metadata(audience.as_deref(), env, &source).await,
        IdentitySpec::AzureImds { audience, client_id } => {
            presets::azure_imds(audience.as_deref(), client_id.as_deref(), env, &source).await
        }
        IdentitySpec::Kubernetes { path } => presets::kubernetes(path.as_deref(), env, &source).await,
        IdentitySpec::AwsSts { audience, region, duration_seconds, signing_algorithm } => {
            let p = aws::StsParams {
                audience: audience.as_deref(),
                region: region.as_deref(),
                duration_seconds: *duration_seconds,
                signing_algorithm: signing_algorithm.as_deref(),
            };
            aws::fetch(p, env, &source).await
        }
        IdentitySpec::Spiffe { audience, socket, spiffe_id, path } => {
            let p = spiffe::Params {
                audience: audience.as_deref(),
                socket: socket.as_deref(),
                spiffe_id: spiffe_id.as_deref(),
                path: path.as_deref(),
            };
            spiffe::fetch(p, env, &source).await
        }
        IdentitySpec::Literal { token } => finish(token.expose().to_string(), &source),
        IdentitySpec::Auto { .. } => Err(Error::internal("identity source auto: detection chose auto again")),
    }
}

/// Common ending of every source: trim, refuse empty and multi-line results.
pub(crate) fn finish(raw: String, source: &str) -> Result<Secret> {
    let raw = Secret::new(raw);
    let trimmed = raw.expose().trim();
    if trimmed.is_empty() {
        return Err(Error::identity(format!(
            "{source} gave an empty identity token; it must yield the identity JWT from your identity provider"
        )));
    }
    if trimmed.contains(['\n', '\r']) {
        return Err(Error::identity(format!(
            "{source} gave several lines, not one identity token; it must yield only the token (send diagnostics to stderr)"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::identity(format!(
            "{source} gave text with control characters, not an identity token; it must yield only the token"
        )));
    }
    Ok(Secret::new(trimmed.to_string()))
}

#[cfg(test)]
mod presets_tests;
#[cfg(test)]
mod tests;
