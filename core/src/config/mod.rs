//! Configuration: explicit values first, then the official SDKs' chain
//! (docs/design.md §3): `ANTHROPIC_API_KEY` → `ANTHROPIC_AUTH_TOKEN` → `ANTHROPIC_PROFILE`
//! → env federation → the active profile. Every id is validated here, before
//! any I/O on the network, and every error names the field and its origin.

pub(crate) mod ids;
pub(crate) mod profile;
pub mod rotated;

pub use crate::env::Env;
pub use crate::option_table::FieldNames;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::identity::IdentitySpec;
use crate::secret::Secret;

/// Default API base URL.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// Where a configuration value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The value.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Sourced<T> {
    /// `value` from `origin`.
    pub fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// Explicit settings: CLI flags or binding constructor arguments. These come
/// before everything in the chain. `names` tells how the face spells each
/// field in messages (`--organization-id` vs `organization_id` vs
/// `organizationId`). Faces build them through [`crate::options::Options`].
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// The profile to use (`--profile`); chosen before `ANTHROPIC_PROFILE`.
    pub profile: Option<String>,
    /// The federation rule id (`fdrl_…`).
    pub federation_rule_id: Option<String>,
    /// The organization id (a UUID).
    pub organization_id: Option<String>,
    /// The service account id (`svac_…`), when the rule targets several.
    pub service_account_id: Option<String>,
    /// The workspace id (`wrkspc_…`), sent as `anthropic-workspace-id`.
    pub workspace_id: Option<String>,
    /// The API's base URL (default `https://api.anthropic.com`).
    pub base_url: Option<String>,
    /// Where the identity token comes from.
    pub identity_token: Option<IdentitySpec>,
    /// The configuration directory (default `$ANTHROPIC_CONFIG_DIR`, else `~/.config/anthropic`).
    pub config_dir: Option<PathBuf>,
    /// Override of the on-disk cache file (like a profile's `credentials_path`).
    pub credentials_path: Option<PathBuf>,
    /// How the face spells each field, for messages.
    pub names: FieldNames,
    /// How the face named the identity source when not as `identity_token`
    /// (the CLI's `--identity-token-file` and the other shortcuts), for origins.
    pub identity_token_via: Option<String>,
}

impl Overrides {
    /// How the face named the identity token source it was given.
    fn identity_token_name(&self) -> String {
        self.identity_token_via.clone().unwrap_or_else(|| self.names.name("identity_token"))
    }
}

/// A complete, validated federation configuration.
#[derive(Clone, Debug)]
pub struct FederationConfig {
    /// The federation rule id (`fdrl_…`).
    pub federation_rule_id: Sourced<String>,
    /// The organization id (a UUID).
    pub organization_id: Sourced<String>,
    /// The service account id (`svac_…`), when set.
    pub service_account_id: Option<Sourced<String>>,
    /// The workspace id (`wrkspc_…`), when set.
    pub workspace_id: Option<Sourced<String>>,
    /// Always set; `Origin::Default` when nobody set it.
    pub base_url: Sourced<String>,
    /// The identity-token source.
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

/// What the chain decided. (Built once per provider, so the size difference
/// between variants does not matter.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum Resolution {
    /// Workload identity federation.
    Federation(FederationConfig),
    /// `ANTHROPIC_API_KEY` is set: the SDKs use the static key and no
    /// federation. We do not carry the key; faces report this clearly.
    ///
    /// `shadowed` names the federation settings that are present but ignored
    /// because the static credential comes first (e.g. `ANTHROPIC_PROFILE=ci,
    /// ANTHROPIC_FEDERATION_RULE_ID, profile default (/…/configs/default.json)`),
    /// so faces can say so instead of hiding it.
    ApiKey {
        /// Where the key was set.
        origin: Origin,
        /// The federation settings it shadows, if any.
        shadowed: Option<String>,
    },
    /// `ANTHROPIC_AUTH_TOKEN` is set: a static bearer token.
    StaticBearer {
        /// The bearer token.
        token: Secret,
        /// Where it was set.
        origin: Origin,
        /// The federation settings it shadows, if any.
        shadowed: Option<String>,
    },
    /// A `user_oauth` profile: an interactive login's access token, read
    /// from its credentials file when present (refreshing it is out of scope).
    UserOauth {
        /// The profile's name.
        profile: String,
        /// The profile file.
        profile_path: PathBuf,
        /// The credentials file holding the access token.
        credentials_path: PathBuf,
        /// The API's base URL.
        base_url: Sourced<String>,
        /// Sent as the `anthropic-workspace-id` header by the SDKs for these profiles.
        workspace_id: Option<Sourced<String>>,
        /// With a `client_id` the SDKs refresh the token (refresh_token grant).
        client_id: Option<String>,
    },
}

/// Which step of the chain decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// An explicitly named profile (`--profile`), explicit fields on top.
    ExplicitProfile,
    /// Explicit federation settings, completed from environment variables.
    Explicit,
    /// Step 1: `ANTHROPIC_API_KEY`.
    ApiKey,
    /// Step 2: `ANTHROPIC_AUTH_TOKEN`.
    AuthToken,
    /// Step 3: `ANTHROPIC_PROFILE`.
    EnvProfile,
    /// Step 4: the federation environment variables.
    EnvFederation,
    /// Step 5: the active profile (`active_config` or `default`).
    ActiveProfile,
}

/// The chain's decision and which step made it.
#[derive(Debug)]
pub struct Resolved {
    /// What was decided.
    pub resolution: Resolution,
    /// Human description of the step, e.g. `explicit settings`,
    /// `ANTHROPIC_PROFILE=ci (/home/u/.config/anthropic/configs/ci.json)`,
    /// `environment variables`, `active profile default (…)`.
    pub step: String,
    /// The same, as a value.
    pub step_kind: Step,
    /// The config dir in effect.
    pub config_dir: PathBuf,
}

// Environment variable names (docs/design.md §3).
pub(crate) const ENV_API_KEY: &str = "ANTHROPIC_API_KEY";
pub(crate) const ENV_AUTH_TOKEN: &str = "ANTHROPIC_AUTH_TOKEN";
pub(crate) const ENV_PROFILE: &str = "ANTHROPIC_PROFILE";
pub(crate) const ENV_CONFIG_DIR: &str = "ANTHROPIC_CONFIG_DIR";
pub(crate) const ENV_FEDERATION_RULE_ID: &str = "ANTHROPIC_FEDERATION_RULE_ID";
pub(crate) const ENV_ORGANIZATION_ID: &str = "ANTHROPIC_ORGANIZATION_ID";
pub(crate) const ENV_SERVICE_ACCOUNT_ID: &str = "ANTHROPIC_SERVICE_ACCOUNT_ID";
pub(crate) const ENV_WORKSPACE_ID: &str = "ANTHROPIC_WORKSPACE_ID";
pub(crate) const ENV_IDENTITY_TOKEN_FILE: &str = "ANTHROPIC_IDENTITY_TOKEN_FILE";
pub(crate) const ENV_IDENTITY_TOKEN: &str = "ANTHROPIC_IDENTITY_TOKEN";
pub(crate) const ENV_BASE_URL: &str = "ANTHROPIC_BASE_URL";
pub(crate) const ENV_SCOPE: &str = "ANTHROPIC_SCOPE";

/// The SDKs' variables that hold secrets (a key, a bearer, an identity JWT).
/// With [`crate::identity::IdentitySpec::secret_env_vars`], what `exec` keeps
/// from its command.
pub(crate) const SECRET_ENV_VARS: [&str; 3] = [ENV_API_KEY, ENV_AUTH_TOKEN, ENV_IDENTITY_TOKEN];
/// The SDKs' federation settings: a process given a token by `exec` must not
/// federate on its own, so `exec` removes these too.
pub const FEDERATION_ENV_VARS: [&str; 8] = [
    ENV_PROFILE,
    ENV_FEDERATION_RULE_ID,
    ENV_ORGANIZATION_ID,
    ENV_SERVICE_ACCOUNT_ID,
    ENV_WORKSPACE_ID,
    ENV_IDENTITY_TOKEN_FILE,
    ENV_IDENTITY_TOKEN,
    ENV_SCOPE,
];

/// Name of the pointer file that selects the active profile.
pub(crate) const ACTIVE_CONFIG_FILE: &str = "active_config";
/// The profile used when nothing names one.
pub(crate) const DEFAULT_PROFILE: &str = "default";

/// Resolve the configuration: explicit settings first, then the chain.
pub(crate) fn resolve(overrides: &Overrides, env: &Env) -> Result<Resolved> {
    let config_dir = config_dir(overrides, env)?;
    let (resolution, step, step_kind) = match choose(overrides, env, &config_dir)? {
        Choice::Profile { name, path, step, step_kind, active } => {
            let attempt = profile::load(&config_dir, &name, env)
                .and_then(|p| from_profile(&p, overrides, env, &config_dir, &step));
            match (attempt, active) {
                (Ok(resolution), _) => (resolution, step, step_kind),
                // An active profile nobody chose on purpose is skipped, and said so.
                (Err(e), Some(active)) if !active.user_configured() => {
                    return Err(nothing_configured(overrides, env, &config_dir, &path, &active, Some(e.into_message())))
                }
                (Err(e), _) => return Err(e),
            }
        }
        Choice::Explicit => {
            let mut step = String::from("explicit settings");
            let fed = build_federation(overrides, None, env, &config_dir, &step)?;
            let from_env: Vec<String> = fed_origins(&fed)
                .into_iter()
                .filter_map(|o| match o {
                    Origin::EnvVar(v) => Some(v.clone()),
                    _ => None,
                })
                .collect();
            if !from_env.is_empty() {
                step = format!("explicit settings completed from environment variables ({})", from_env.join(", "));
            }
            (Resolution::Federation(fed), step, Step::Explicit)
        }
        Choice::ApiKey => {
            let shadowed = shadowed_settings(env, &config_dir);
            let resolution = Resolution::ApiKey { origin: Origin::EnvVar(ENV_API_KEY.into()), shadowed };
            (resolution, ENV_API_KEY.to_string(), Step::ApiKey)
        }
        Choice::AuthToken(token) => {
            if let Some(why) = crate::api::access_token_problem(&token) {
                return Err(Error::config(format!(
                    "{ENV_AUTH_TOKEN} {why}; set it to the bearer token alone (no quotes, spaces or newline), or unset it"
                )));
            }
            let shadowed = shadowed_settings(env, &config_dir);
            let resolution = Resolution::StaticBearer {
                token: Secret::new(token),
                origin: Origin::EnvVar(ENV_AUTH_TOKEN.into()),
                shadowed,
            };
            (resolution, ENV_AUTH_TOKEN.to_string(), Step::AuthToken)
        }
        Choice::EnvFederation { identity_var } => {
            let step =
                format!("environment variables ({ENV_FEDERATION_RULE_ID}, {ENV_ORGANIZATION_ID}, {identity_var})");
            let fed = build_federation(overrides, None, env, &config_dir, &step)?;
            (Resolution::Federation(fed), step, Step::EnvFederation)
        }
        Choice::Nothing { path, active } => {
            return Err(nothing_configured(overrides, env, &config_dir, &path, &active, None));
        }
    };
    Ok(Resolved { resolution, step, step_kind, config_dir })
}

/// The ids the chain would use, for a configuration that does not resolve
/// (doctor shows each with its own verdict, so one bad id does not hide the
/// state of the others): the same choice of step and profile as [`resolve`]
/// and the same picking (explicit > profile > environment), nothing
/// validated; empty optional ids are left out, as [`resolve`] leaves them.
pub(crate) fn partial_ids(overrides: &Overrides, env: &Env) -> Vec<(ids::IdField, Sourced<String>)> {
    let prof = config_dir(overrides, env).ok().and_then(|dir| match choose(overrides, env, &dir).ok()? {
        Choice::Profile { name, .. } => profile::load(&dir, &name, env).ok(),
        _ => None,
    });
    let PickedIds { rule, org, svac, ws } = pick_ids(overrides, prof.as_ref(), env);
    [
        (ids::IdField::FederationRuleId, rule),
        (ids::IdField::OrganizationId, org),
        (ids::IdField::ServiceAccountId, svac),
        (ids::IdField::WorkspaceId, ws),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field, value?)))
    .collect()
}

/// The step of the chain that applies, decided before any profile is read.
enum Choice {
    /// A profile: named explicitly, by `ANTHROPIC_PROFILE`, or the active one
    /// (`active` is set for the last, whose errors surface only when the user
    /// chose the directory or wrote `active_config`).
    Profile {
        name: String,
        path: PathBuf,
        step: String,
        step_kind: Step,
        active: Option<Active>,
    },
    Explicit,
    ApiKey,
    AuthToken(String),
    EnvFederation {
        identity_var: &'static str,
    },
    /// Step 5 found no profile file at `path`.
    Nothing {
        path: PathBuf,
        active: Active,
    },
}

/// How step 5 chose its profile.
struct Active {
    /// `<config_dir>/active_config`, when it names the profile.
    pointer: Option<PathBuf>,
    /// The config dir was set (explicitly or by `ANTHROPIC_CONFIG_DIR`).
    dir_chosen: bool,
}

impl Active {
    fn user_configured(&self) -> bool {
        self.dir_chosen || self.pointer.is_some()
    }
}

/// Walk the chain (docs/design.md §3) up to the step that applies.
fn choose(overrides: &Overrides, env: &Env, config_dir: &Path) -> Result<Choice> {
    // Explicit settings come before everything.
    if let Some(name) = &overrides.profile {
        let flag = overrides.names.name("profile");
        profile::validate_name(name, &Origin::Explicit(flag.clone()))?;
        let path = profile::config_path(config_dir, name);
        if !exists(&path) {
            return Err(Error::config(format!(
                "{flag} names the profile {name:?}, but {} does not exist: create it, pick a profile that exists, or point {ENV_CONFIG_DIR} (or the config dir setting) at the directory that holds configs/{name}.json",
                path.display()
            )));
        }
        let step = format!("profile {name} ({}) from {flag}", path.display());
        return Ok(Choice::Profile { name: name.clone(), path, step, step_kind: Step::ExplicitProfile, active: None });
    }
    if has_explicit_federation(overrides) {
        return Ok(Choice::Explicit);
    }
    // Step 1: a static API key.
    if env.is_set(ENV_API_KEY) {
        return Ok(Choice::ApiKey);
    }
    // Step 2: a static bearer token.
    if let Some(token) = env.get(ENV_AUTH_TOKEN) {
        return Ok(Choice::AuthToken(token));
    }
    // Step 3: the profile ANTHROPIC_PROFILE names; any failure is an error.
    if let Some(name) = env.get(ENV_PROFILE) {
        profile::validate_name(&name, &Origin::EnvVar(ENV_PROFILE.into()))?;
        let path = profile::config_path(config_dir, &name);
        if !exists(&path) {
            return Err(Error::config(format!(
                "{ENV_PROFILE} names the profile {name:?}, but {} does not exist: set {ENV_PROFILE} to a profile that exists, unset it, or set {ENV_CONFIG_DIR} to the directory that holds configs/{name}.json",
                path.display()
            )));
        }
        let step = format!("{ENV_PROFILE}={name} ({})", path.display());
        return Ok(Choice::Profile { name, path, step, step_kind: Step::EnvProfile, active: None });
    }
    // Step 4: federation from environment variables.
    let identity_var = if env.is_set(ENV_IDENTITY_TOKEN_FILE) {
        Some(ENV_IDENTITY_TOKEN_FILE)
    } else if env.is_set(ENV_IDENTITY_TOKEN) {
        Some(ENV_IDENTITY_TOKEN)
    } else {
        None
    };
    if let (true, true, Some(identity_var)) =
        (env.is_set(ENV_FEDERATION_RULE_ID), env.is_set(ENV_ORGANIZATION_ID), identity_var)
    {
        return Ok(Choice::EnvFederation { identity_var });
    }
    // Step 5: the active profile.
    let (name, pointer) = active_profile(config_dir)?;
    let dir_chosen =
        overrides.config_dir.as_ref().is_some_and(|d| !d.as_os_str().is_empty()) || env.is_set(ENV_CONFIG_DIR);
    let active = Active { pointer, dir_chosen };
    let path = profile::config_path(config_dir, &name);
    if !exists(&path) {
        return Ok(Choice::Nothing { path, active });
    }
    let step = match &active.pointer {
        Some(pointer) => format!("active profile {name} ({}, named by {})", path.display(), pointer.display()),
        None => format!("active profile {name} ({})", path.display()),
    };
    Ok(Choice::Profile { name, path, step, step_kind: Step::ActiveProfile, active: Some(active) })
}

/// The active profile's name and, when `<config_dir>/active_config` names
/// it, that file; else [`DEFAULT_PROFILE`]. The one reader of `active_config`.
fn active_profile(config_dir: &Path) -> Result<(String, Option<PathBuf>)> {
    let pointer_path = config_dir.join(ACTIVE_CONFIG_FILE);
    match read_active_pointer(&pointer_path)? {
        Some(name) => {
            profile::validate_name(
                &name,
                &Origin::Explicit(format!("the active profile file {}", pointer_path.display())),
            )?;
            Ok((name, Some(pointer_path)))
        }
        None => Ok((DEFAULT_PROFILE.to_string(), None)),
    }
}

/// The config dir: explicit, `$ANTHROPIC_CONFIG_DIR`, `%APPDATA%\Anthropic`
/// (Windows), `$XDG_CONFIG_HOME/anthropic`, `~/.config/anthropic`.
pub fn config_dir(overrides: &Overrides, env: &Env) -> Result<PathBuf> {
    if let Some(dir) = &overrides.config_dir {
        if !dir.as_os_str().is_empty() {
            return Ok(dir.clone());
        }
    }
    if let Some(dir) = env.get(ENV_CONFIG_DIR) {
        return Ok(PathBuf::from(dir));
    }
    if cfg!(windows) {
        if let Some(appdata) = env.get("APPDATA") {
            return Ok(PathBuf::from(appdata).join("Anthropic"));
        }
        if let Some(profile) = env.get("USERPROFILE") {
            return Ok(PathBuf::from(profile).join("AppData").join("Roaming").join("Anthropic"));
        }
        return Err(Error::config(format!(
            "cannot find the config directory: neither APPDATA nor USERPROFILE is set; set {ENV_CONFIG_DIR} to the directory that holds configs/ and credentials/"
        )));
    }
    // XDG says a relative value is invalid and must be ignored.
    if let Some(xdg) = env.get("XDG_CONFIG_HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Ok(xdg.join("anthropic"));
    }
    if let Some(home) = env.home() {
        return Ok(home.join(".config").join("anthropic"));
    }
    Err(Error::config(format!(
        "cannot find the config directory: HOME is not set; set {ENV_CONFIG_DIR} (or HOME) so that profiles can be found"
    )))
}

fn exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        // Unreadable for another reason: let the loader report it.
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// The trimmed content of `<config_dir>/active_config`; `None` when it is
/// missing or empty. The file and the config dir must pass the same
/// ownership rule as profiles ([`crate::trusted`]): the pointer chooses the profile.
fn read_active_pointer(path: &Path) -> Result<Option<String>> {
    use crate::trusted::{self, OpenError, Policy};
    use std::io::Read;
    if let Some(dir) = path.parent() {
        trusted::check_dir(dir, "config directory", profile::PROFILE_STAKE).map_err(Error::config)?;
    }
    let file = match trusted::open(path, "active profile file", profile::PROFILE_STAKE, Policy::Settings) {
        Ok((f, _)) => f,
        Err(OpenError::Missing) => return Ok(None),
        Err(OpenError::Refused(why)) => return Err(Error::config(why)),
        Err(OpenError::Io(e)) => {
            return Err(Error::config(format!(
                "the active profile file {} could not be read: {e}; fix its permissions or remove it",
                path.display()
            )))
        }
    };
    let mut buf = Vec::new();
    file.take(4097).read_to_end(&mut buf).map_err(|e| {
        Error::config(format!(
            "the active profile file {} could not be read: {e}; it should hold just a profile name",
            path.display()
        ))
    })?;
    if buf.len() > 4096 {
        return Err(Error::config(format!(
            "the active profile file {} is larger than 4 KiB; it should hold just a profile name such as `default`",
            path.display()
        )));
    }
    let text = String::from_utf8(buf).map_err(|_| {
        Error::config(format!(
            "the active profile file {} is not UTF-8 text; it should hold just a profile name",
            path.display()
        ))
    })?;
    let name = text.trim();
    Ok((!name.is_empty()).then(|| name.to_string()))
}

fn has_explicit_federation(o: &Overrides) -> bool {
    o.federation_rule_id.is_some()
        || o.organization_id.is_some()
        || o.service_account_id.is_some()
        || o.workspace_id.is_some()
        || o.identity_token.is_some()
}

fn fed_origins(f: &FederationConfig) -> Vec<&Origin> {
    let mut v = vec![&f.federation_rule_id.origin, &f.organization_id.origin];
    v.extend(f.service_account_id.iter().map(|s| &s.origin));
    v.extend(f.workspace_id.iter().map(|s| &s.origin));
    v.push(&f.identity.origin);
    v.push(&f.base_url.origin);
    let mut seen: Vec<&Origin> = Vec::new();
    for o in v {
        if !seen.contains(&o) {
            seen.push(o);
        }
    }
    seen
}

/// The federation settings a static credential shadows, if any.
fn shadowed_settings(env: &Env, config_dir: &Path) -> Option<String> {
    let mut items: Vec<String> = Vec::new();
    if let Some(p) = env.get(ENV_PROFILE) {
        items.push(format!("{ENV_PROFILE}={}", if ids::looks_secret(&p) { "…" } else { p.as_str() }));
    }
    for var in [ENV_FEDERATION_RULE_ID, ENV_ORGANIZATION_ID, ENV_IDENTITY_TOKEN_FILE, ENV_IDENTITY_TOKEN] {
        if env.is_set(var) {
            items.push(var.to_string());
        }
    }
    if env.get(ENV_PROFILE).is_none() {
        if let Ok((name, _)) = active_profile(config_dir) {
            let path = profile::config_path(config_dir, &name);
            if path.is_file() {
                items.push(format!("profile {name} ({})", path.display()));
            }
        }
    }
    (!items.is_empty()).then(|| items.join(", "))
}

/// A resolution from a loaded profile, explicit fields on top, env vars below.
fn from_profile(
    p: &profile::Profile,
    overrides: &Overrides,
    env: &Env,
    config_dir: &Path,
    step: &str,
) -> Result<Resolution> {
    match &p.auth {
        profile::ProfileAuth::OidcFederation { .. } => {
            Ok(Resolution::Federation(build_federation(overrides, Some(p), env, config_dir, step)?))
        }
        profile::ProfileAuth::UserOauth { client_id, credentials_path, .. } => {
            let names = overrides.names;
            let conflicting: Vec<String> = [
                ("federation_rule_id", overrides.federation_rule_id.is_some()),
                ("service_account_id", overrides.service_account_id.is_some()),
                ("identity_token", overrides.identity_token.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(f, _)| names.name(f))
            .collect();
            if !conflicting.is_empty() {
                return Err(Error::config(format!(
                    "{} given, but profile {:?} ({}) is a {} profile (an interactive login), which does not use workload identity federation: drop {} or use an {} profile",
                    conflicting.join(", "),
                    p.name,
                    p.path.display(),
                    profile::AUTH_USER_OAUTH,
                    if conflicting.len() == 1 { "it" } else { "them" },
                    profile::AUTH_OIDC_FEDERATION
                )));
            }
            let file_origin = Origin::ProfileFile(p.path.clone());
            let workspace_id = pick(
                overrides.workspace_id.as_ref(),
                names.name("workspace_id"),
                p.workspace_id.as_ref(),
                &file_origin,
                env,
                ENV_WORKSPACE_ID,
            )
            .filter(|w| !w.value.is_empty());
            if let Some(ws) = &workspace_id {
                ids::workspace_id(&ws.value, &ws.origin)?;
            }
            let base_url = pick_base_url(overrides, p.base_url.as_ref(), &file_origin, env)?;
            let credentials_path = overrides
                .credentials_path
                .clone()
                .or_else(|| credentials_path.clone())
                .unwrap_or_else(|| profile::credentials_path(config_dir, &p.name));
            let _ = step;
            Ok(Resolution::UserOauth {
                profile: p.name.clone(),
                profile_path: p.path.clone(),
                credentials_path,
                base_url,
                workspace_id,
                client_id: client_id.clone(),
            })
        }
    }
}

/// explicit > profile > env var; explicit values are kept even when empty
/// (so an empty flag is reported, not silently replaced).
fn pick(
    explicit: Option<&String>,
    explicit_name: String,
    from_profile: Option<&String>,
    profile_origin: &Origin,
    env: &Env,
    var: &str,
) -> Option<Sourced<String>> {
    if let Some(v) = explicit {
        return Some(Sourced::new(v.clone(), Origin::Explicit(explicit_name)));
    }
    if let Some(v) = from_profile {
        return Some(Sourced::new(v.clone(), profile_origin.clone()));
    }
    env.get(var).map(|v| Sourced::new(v, Origin::EnvVar(var.to_string())))
}

fn pick_base_url(
    overrides: &Overrides,
    from_profile: Option<&String>,
    profile_origin: &Origin,
    env: &Env,
) -> Result<Sourced<String>> {
    let picked = pick(
        overrides.base_url.as_ref(),
        overrides.names.name("base_url"),
        from_profile,
        profile_origin,
        env,
        ENV_BASE_URL,
    )
    .unwrap_or_else(|| Sourced::new(DEFAULT_BASE_URL.to_string(), Origin::Default));
    let value = picked.value.trim_end_matches('/').to_string();
    crate::url::check_base_url(&value, &base_url_field(&picked.origin))?;
    Ok(Sourced::new(value, picked.origin))
}

/// How a base URL's messages name it: `base_url from <origin>`.
fn base_url_field(origin: &Origin) -> String {
    match origin {
        Origin::ProfileFile(_) => format!("base_url from {origin} (base_url)"),
        _ => format!("base_url from {origin}"),
    }
}

/// The four ids as the layers give them: explicit settings > the profile
/// (when given) > environment variables. An empty optional id means "omit
/// it" (as in the SDKs' constructors), even an explicit one: it does not fall
/// back to the profile or environment.
struct PickedIds {
    rule: Option<Sourced<String>>,
    org: Option<Sourced<String>>,
    svac: Option<Sourced<String>>,
    ws: Option<Sourced<String>>,
}

fn pick_ids(overrides: &Overrides, prof: Option<&profile::Profile>, env: &Env) -> PickedIds {
    let names = overrides.names;
    let file_origin = prof.map(|p| Origin::ProfileFile(p.path.clone())).unwrap_or(Origin::Default);
    let (p_rule, p_svac) = match prof.map(|p| &p.auth) {
        Some(profile::ProfileAuth::OidcFederation { federation_rule_id, service_account_id, .. }) => {
            (federation_rule_id.as_ref(), service_account_id.as_ref())
        }
        _ => (None, None),
    };
    let layer = |field: ids::IdField, explicit: Option<&String>, from_profile: Option<&String>| {
        pick(explicit, names.name(field.name()), from_profile, &file_origin, env, field.env_var())
    };
    PickedIds {
        rule: layer(ids::IdField::FederationRuleId, overrides.federation_rule_id.as_ref(), p_rule),
        org: layer(
            ids::IdField::OrganizationId,
            overrides.organization_id.as_ref(),
            prof.and_then(|p| p.organization_id.as_ref()),
        ),
        svac: layer(ids::IdField::ServiceAccountId, overrides.service_account_id.as_ref(), p_svac)
            .filter(|s| !s.value.is_empty()),
        ws: layer(
            ids::IdField::WorkspaceId,
            overrides.workspace_id.as_ref(),
            prof.and_then(|p| p.workspace_id.as_ref()),
        )
        .filter(|w| !w.value.is_empty()),
    }
}

/// Assemble and validate a federation configuration from the layers:
/// explicit settings > profile (when given) > environment variables.
fn build_federation(
    overrides: &Overrides,
    prof: Option<&profile::Profile>,
    env: &Env,
    config_dir: &Path,
    step: &str,
) -> Result<FederationConfig> {
    let names = overrides.names;
    let file_origin = prof.map(|p| Origin::ProfileFile(p.path.clone())).unwrap_or(Origin::Default);
    let (p_identity, p_creds, p_scope) = match prof.map(|p| &p.auth) {
        Some(profile::ProfileAuth::OidcFederation { identity_token, credentials_path, scope, .. }) => {
            (identity_token.as_ref(), credentials_path.as_ref(), scope.as_ref())
        }
        _ => (None, None, None),
    };
    let PickedIds { rule, org, svac, ws } = pick_ids(overrides, prof, env);
    let identity = if let Some(spec) = &overrides.identity_token {
        Some(Sourced::new(spec.clone(), Origin::Explicit(overrides.identity_token_name())))
    } else if let Some(spec) = p_identity {
        Some(Sourced::new(spec.clone(), file_origin.clone()))
    } else if let Some(path) = env.get(ENV_IDENTITY_TOKEN_FILE) {
        Some(Sourced::new(
            IdentitySpec::File { path: PathBuf::from(path) },
            Origin::EnvVar(ENV_IDENTITY_TOKEN_FILE.into()),
        ))
    } else if env.is_set(ENV_IDENTITY_TOKEN) {
        Some(Sourced::new(
            IdentitySpec::Env { var: ENV_IDENTITY_TOKEN.into() },
            Origin::EnvVar(ENV_IDENTITY_TOKEN.into()),
        ))
    } else {
        None
    };

    // Every missing required field, with every way to set it.
    let in_profile = |key: &str| match prof {
        Some(p) => format!("{key} in {}", p.path.display()),
        None => format!("{key} in a profile file (with {} or {ENV_PROFILE})", names.name("profile")),
    };
    let mut missing: Vec<String> = Vec::new();
    if rule.is_none() {
        missing.push(format!(
            "federation_rule_id (set {}, {ENV_FEDERATION_RULE_ID}, or {})",
            names.name("federation_rule_id"),
            in_profile("authentication.federation_rule_id")
        ));
    }
    if org.is_none() {
        missing.push(format!(
            "organization_id (set {}, {ENV_ORGANIZATION_ID}, or {})",
            names.name("organization_id"),
            in_profile("organization_id")
        ));
    }
    if identity.is_none() {
        missing.push(format!(
            "the identity token source (set {}, {ENV_IDENTITY_TOKEN_FILE} or {ENV_IDENTITY_TOKEN}, or {})",
            names.name("identity_token"),
            in_profile("authentication.identity_token")
        ));
    }
    let (Some(rule), Some(org), Some(identity)) = (rule, org, identity) else {
        let note = if prof.is_none() && step.starts_with("explicit") {
            format!("; explicit settings are completed from ANTHROPIC_* environment variables only, pass {} to start from a profile", names.name("profile"))
        } else {
            String::new()
        };
        return Err(Error::config(format!(
            "workload identity federation configuration from {step} is incomplete: missing {}{note}",
            missing.join("; missing ")
        )));
    };

    ids::federation_rule_id(&rule.value, &rule.origin)?;
    ids::organization_id(&org.value, &org.origin)?;
    if let Some(s) = &svac {
        ids::service_account_id(&s.value, &s.origin)?;
    }
    if let Some(w) = &ws {
        ids::workspace_id(&w.value, &w.origin)?;
    }
    check_identity(&identity)?;
    let base_url = pick_base_url(overrides, prof.and_then(|p| p.base_url.as_ref()), &file_origin, env)?;

    let credentials_path = match (&overrides.credentials_path, p_creds, prof) {
        (Some(explicit), _, _) => Some(explicit.clone()),
        (None, Some(from_file), _) => Some(from_file.clone()),
        (None, None, Some(p)) => Some(profile::credentials_path(config_dir, &p.name)),
        (None, None, None) => None,
    };
    let scope = p_scope.cloned().or_else(|| env.get(ENV_SCOPE));

    Ok(FederationConfig {
        federation_rule_id: rule,
        organization_id: org,
        service_account_id: svac,
        workspace_id: ws,
        base_url,
        identity,
        profile: prof.map(|p| p.name.clone()),
        profile_path: prof.map(|p| p.path.clone()),
        credentials_path,
        scope,
    })
}

/// What can be checked about an identity source without fetching it
/// ([`IdentitySpec::validate`], the one static check).
fn check_identity(identity: &Sourced<IdentitySpec>) -> Result<()> {
    identity.value.validate(&format!("identity token source from {}", identity.origin)).map_err(Error::config)
}

/// Nothing matched: say what was looked for and how to fix it.
fn nothing_configured(
    overrides: &Overrides,
    env: &Env,
    config_dir: &Path,
    profile_path: &Path,
    active: &Active,
    ignored: Option<String>,
) -> Error {
    let (pointer, dir_chosen) = (active.pointer.as_deref(), active.dir_chosen);
    let names = overrides.names;
    let set: Vec<&str> = [ENV_FEDERATION_RULE_ID, ENV_ORGANIZATION_ID, ENV_IDENTITY_TOKEN_FILE, ENV_IDENTITY_TOKEN]
        .into_iter()
        .filter(|v| env.is_set(v))
        .collect();
    let mut msg = String::from("no Claude API credentials are configured. ");
    if !set.is_empty() {
        let mut missing = Vec::new();
        if !env.is_set(ENV_FEDERATION_RULE_ID) {
            missing.push(format!("{ENV_FEDERATION_RULE_ID} (or {})", names.name("federation_rule_id")));
        }
        if !env.is_set(ENV_ORGANIZATION_ID) {
            missing.push(format!("{ENV_ORGANIZATION_ID} (or {})", names.name("organization_id")));
        }
        if !env.is_set(ENV_IDENTITY_TOKEN_FILE) && !env.is_set(ENV_IDENTITY_TOKEN) {
            missing.push(format!(
                "{ENV_IDENTITY_TOKEN_FILE} or {ENV_IDENTITY_TOKEN} (or {})",
                names.name("identity_token")
            ));
        }
        msg.push_str(&format!(
            "Workload identity federation from environment variables is incomplete: {} set, but missing {}. ",
            set.join(", "),
            missing.join(", ")
        ));
    }
    msg.push_str(&format!(
        "Looked for {ENV_API_KEY}, {ENV_AUTH_TOKEN}, {ENV_PROFILE}, the federation variables {ENV_FEDERATION_RULE_ID} + {ENV_ORGANIZATION_ID} + {ENV_IDENTITY_TOKEN_FILE} or {ENV_IDENTITY_TOKEN}, and the active profile {}",
        profile_path.display()
    ));
    if let Some(p) = pointer {
        msg.push_str(&format!(" (named by {})", p.display()));
    }
    match &ignored {
        Some(reason) => msg.push_str(&format!(", which exists but was skipped: {reason}")),
        None => msg.push_str(", which does not exist"),
    }
    let dir_from = if overrides.config_dir.as_ref().is_some_and(|d| !d.as_os_str().is_empty()) {
        format!("from {}", names.name("config_dir"))
    } else if dir_chosen {
        format!("from {ENV_CONFIG_DIR}")
    } else {
        format!("default; set {ENV_CONFIG_DIR} to change it")
    };
    msg.push_str(&format!(
        ". Config dir: {} ({dir_from}). To fix: set {ENV_FEDERATION_RULE_ID}, {ENV_ORGANIZATION_ID} and {ENV_IDENTITY_TOKEN_FILE} (or pass {}, {} and {}), or create the profile file {}, or set {ENV_PROFILE} to an existing profile.",
        config_dir.display(),
        names.name("federation_rule_id"),
        names.name("organization_id"),
        names.name("identity_token"),
        profile_path.display()
    ));
    Error::config(msg)
}

#[cfg(test)]
mod tests;
