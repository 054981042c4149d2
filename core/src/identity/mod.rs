//! Identity-token sources (SPEC §6). Every source is read afresh at each
//! exchange, trimmed, and an empty result is an error naming the source.
//! The JSON shape is the profile's `identity_token` discriminated union; flags
//! and binding constructors take the same shape.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Env;
use crate::error::Result;
use crate::secret::Secret;

/// Default audience for the presets.
pub const DEFAULT_AUDIENCE: &str = "https://api.anthropic.com";

/// Where the identity JWT comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum IdentitySpec {
    /// A file, re-read at every exchange (projected Kubernetes tokens rotate).
    File { path: PathBuf },
    /// An environment variable holding the JWT itself.
    Env { var: String },
    /// A program (no shell); its stdout is the token.
    Command {
        command: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_s: Option<u64>,
    },
    /// An HTTP GET; `${VAR}` expanded in the URL and header values.
    Url {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
    /// GitHub Actions OIDC (`permissions: id-token: write`).
    GithubActions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

impl IdentitySpec {
    /// A secret-free description for messages, e.g. `file /var/run/…/token`,
    /// `environment variable ANTHROPIC_IDENTITY_TOKEN`, `command "gcloud …"`,
    /// `url https://…/${VAR}` (the template, never expanded values).
    pub fn describe(&self) -> String {
        match self {
            IdentitySpec::File { path } => format!("identity token file {}", path.display()),
            IdentitySpec::Env { var } => format!("identity token environment variable {var}"),
            IdentitySpec::Command { command, .. } => format!("identity token command {:?}", command.first().map(String::as_str).unwrap_or("")),
            IdentitySpec::Url { url, .. } => format!("identity token url {url}"),
            IdentitySpec::GithubActions { .. } => "GitHub Actions OIDC token".to_string(),
        }
    }
}

/// Obtain a fresh identity token from the source.
pub async fn fetch(spec: &IdentitySpec, env: &Env) -> Result<Secret> {
    let _ = (spec, env);
    Err(crate::Error::internal("identity::fetch is not built yet"))
}
