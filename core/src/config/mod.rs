//! Configuration: explicit values first, then the official SDKs' chain
//! (SPEC §3): `ANTHROPIC_API_KEY` → `ANTHROPIC_AUTH_TOKEN` → `ANTHROPIC_PROFILE`
//! → env federation → the active profile. Every id is validated here, before
//! any I/O on the network, and every error names the field and its origin.

pub mod env;
pub mod ids;
pub mod profile;

pub use env::Env;

use std::fmt;
use std::path::PathBuf;

use crate::error::Result;
use crate::identity::IdentitySpec;
use crate::secret::Secret;

/// Default API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A CLI flag or a binding constructor argument (named, e.g. `--organization-id`).
    Explicit(String),
    /// An environment variable (its name).
    EnvVar(String),
    /// A profile file (its path).
    ProfileFile(PathBuf),
    /// Built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Explicit(name) => write!(f, "{name}"),
            Origin::EnvVar(name) => write!(f, "environment variable {name}"),
            Origin::ProfileFile(p) => write!(f, "profile file {}", p.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// A value with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// Explicit settings: CLI flags or binding constructor arguments. These come
/// before everything in the chain. `names` tells how the face spells each
/// field in messages (`--organization-id` vs `organization_id` vs `organizationId`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub profile: Option<String>,
    pub federation_rule_id: Option<String>,
    pub organization_id: Option<String>,
    pub service_account_id: Option<String>,
    pub workspace_id: Option<String>,
    pub base_url: Option<String>,
    pub identity_token: Option<IdentitySpec>,
    pub config_dir: Option<PathBuf>,
    /// Override of the on-disk cache file (like a profile's `credentials_path`).
    pub credentials_path: Option<PathBuf>,
    pub names: FieldNames,
}

/// How a face names its explicit settings in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldNames {
    /// `--federation-rule-id`
    #[default]
    Flags,
    /// `federation_rule_id=`
    SnakeCase,
    /// `federationRuleId`
    CamelCase,
}

impl FieldNames {
    /// The face's spelling of a field given in snake_case.
    pub fn name(self, snake: &str) -> String {
        match self {
            FieldNames::Flags => format!("--{}", snake.replace('_', "-")),
            FieldNames::SnakeCase => format!("argument {snake}"),
            FieldNames::CamelCase => {
                let mut out = String::from("option ");
                let mut up = false;
                for c in snake.chars() {
                    if c == '_' {
                        up = true;
                    } else if up {
                        out.extend(c.to_uppercase());
                        up = false;
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        }
    }
}

/// A complete, validated federation configuration.
#[derive(Clone, Debug)]
pub struct FederationConfig {
    pub federation_rule_id: Sourced<String>,
    pub organization_id: Sourced<String>,
    pub service_account_id: Option<Sourced<String>>,
    pub workspace_id: Option<Sourced<String>>,
    /// Always set; `Origin::Default` when nobody set it.
    pub base_url: Sourced<String>,
    pub identity: Sourced<IdentitySpec>,
    /// The profile name, when the configuration came from a profile.
    pub profile: Option<String>,
    /// The profile file, when the configuration came from a profile.
    pub profile_path: Option<PathBuf>,
    /// The SDK-shared cache file for a profile (`credentials/<profile>.json`
    /// or `credentials_path`), or the explicit override. `None` means the
    /// provider picks a key-derived file under `$XDG_CACHE_HOME/anthropic-wif/`.
    pub credentials_path: Option<PathBuf>,
    /// `authentication.scope` / `ANTHROPIC_SCOPE`: display only.
    pub scope: Option<String>,
}

/// What the chain decided.
#[derive(Debug)]
pub enum Resolution {
    /// Workload identity federation.
    Federation(FederationConfig),
    /// `ANTHROPIC_API_KEY` is set: the SDKs use the static key and no
    /// federation. We do not carry the key; faces report this clearly.
    ApiKey { origin: Origin },
    /// `ANTHROPIC_AUTH_TOKEN` is set: a static bearer token.
    StaticBearer { token: Secret, origin: Origin },
    /// A `user_oauth` profile: an interactive login's access token, read
    /// from its credentials file when present (refreshing it is out of scope).
    UserOauth { profile: String, profile_path: PathBuf, credentials_path: PathBuf, base_url: Sourced<String> },
}

/// The chain's decision and which step made it.
#[derive(Debug)]
pub struct Resolved {
    pub resolution: Resolution,
    /// Human description of the step, e.g. `explicit settings`,
    /// `ANTHROPIC_PROFILE=ci (/home/u/.config/anthropic/configs/ci.json)`,
    /// `environment variables`, `active profile default (…)`.
    pub step: String,
    /// The config dir in effect.
    pub config_dir: PathBuf,
}

/// Resolve the configuration: explicit settings first, then the chain.
pub fn resolve(overrides: &Overrides, env: &Env) -> Result<Resolved> {
    let _ = (overrides, env);
    Err(crate::Error::internal("config::resolve is not built yet"))
}

/// The config dir: explicit, `$ANTHROPIC_CONFIG_DIR`, `%APPDATA%\Anthropic`
/// (Windows), `$XDG_CONFIG_HOME/anthropic`, `~/.config/anthropic`.
pub fn config_dir(overrides: &Overrides, env: &Env) -> Result<PathBuf> {
    let _ = (overrides, env);
    Err(crate::Error::internal("config::config_dir is not built yet"))
}
