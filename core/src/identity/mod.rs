//! Identity-token sources (SPEC §6). Every source is read afresh at each
//! exchange, trimmed, and an empty result is an error naming the source.
//! The JSON shape is the profile's `identity_token` discriminated union; flags
//! and binding constructors take the same shape.

//!
//! Layout: [`file`], [`env`], [`command`], [`url`] (with [`expand`] for
//! `${VAR}`), and [`presets`] for platform shortcuts built on those.
//!
//! Error kinds: a source that fails at run time is `ErrorKind::Identity`;
//! a malformed spec (empty argv, bad header name, `timeout_s` 0, disallowed
//! URL scheme…) is `ErrorKind::Config`. Every message starts with
//! [`IdentitySpec::describe`], says what to do, and is scrubbed of
//! token-shaped text as a last line of defence.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Env;
use crate::error::{scrub, Error, Result};
use crate::secret::Secret;

pub mod command;
pub mod env;
pub(crate) mod expand;
pub mod file;
pub mod presets;
pub mod url;

/// Largest identity token accepted from a file, a variable or a command's
/// stdout. (The exchange itself refuses assertions over 16 KiB; this bound
/// only stops us reading something that is clearly not a token.)
pub const MAX_LOCAL_TOKEN_BYTES: usize = 64 * 1024;

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
            IdentitySpec::Command { command, .. } => {
                format!("identity token command {:?}", command.first().map(String::as_str).unwrap_or(""))
            }
            IdentitySpec::Url { url, .. } => format!("identity token url {}", url::redact_userinfo(url)),
            IdentitySpec::GithubActions { .. } => {
                format!("GitHub Actions OIDC token (${})", presets::GITHUB_REQUEST_URL_VAR)
            }
        }
    }
}

/// Obtain a fresh identity token from the source.
pub async fn fetch(spec: &IdentitySpec, env: &Env) -> Result<Secret> {
    let source = spec.describe();
    let result = match spec {
        IdentitySpec::File { path } => file::read(path, &source).await,
        IdentitySpec::Env { var } => env::read(var, env, &source),
        IdentitySpec::Command { command, timeout_s } => command::run(command, *timeout_s, &source).await,
        IdentitySpec::Url { url, headers, field } => url::fetch(url, headers, field.as_deref(), env, &source).await,
        IdentitySpec::GithubActions { audience } => presets::github_actions(audience.as_deref(), env, &source).await,
    };
    // Last line of defence: no token-shaped text in any message.
    result.map_err(|e| Error { message: scrub(&e.message, &[], 4000), ..e })
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
mod tests;
