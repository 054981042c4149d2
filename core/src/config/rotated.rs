//! The externally rotated profile (docs/design.md §2): `configs/<name>.json`
//! holding `{"authentication": {"type": "user_oauth"}}` without a
//! `client_id`. Every official SDK and Claude Code then read
//! `credentials/<name>.json` (or the profile's `credentials_path`) on every
//! call and use the token in it; someone else keeps that file fresh
//! (`anthropic-wif daemon`, `exec`'s private profile).
//!
//! Here: recognising such a profile ([`inspect`]), where its credentials file
//! is ([`Target::credentials_path`]), and writing one ([`fn@write`]): top-level
//! `organization_id`, `workspace_id` and `base_url` as the federation
//! configuration has them (what the readers send their API calls with), no
//! `client_id`, 0600 in a 0700 `configs/` (created so), atomically, with the
//! writer the token cache uses. A profile of another shape (an interactive
//! login, a federation profile) is never replaced unless the caller says so:
//! writing there would throw away someone's login or configuration.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::profile::{self, Profile, ProfileAuth, AUTH_USER_OAUTH, PROFILE_STAKE};
use super::{Env, FederationConfig, Origin};
use crate::cache::disk;
use crate::error::{Error, Result};
use crate::trusted;

/// What an externally rotated profile tells its readers, besides where the
/// token is: the settings of the API calls they make with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReaderSettings {
    /// The organization id readers send.
    pub organization_id: Option<String>,
    /// The workspace id readers send, when set.
    pub workspace_id: Option<String>,
    /// Written only when set: readers default to the API's.
    pub base_url: Option<String>,
}

impl ReaderSettings {
    /// The settings of a federation configuration: its organization and
    /// workspace, and its base URL unless that is the built-in default.
    pub fn of(cfg: &FederationConfig) -> Self {
        ReaderSettings {
            organization_id: Some(cfg.organization_id.value.clone()),
            workspace_id: cfg.workspace_id.as_ref().map(|w| w.value.clone()),
            base_url: (cfg.base_url.origin != Origin::Default).then(|| cfg.base_url.value.clone()),
        }
    }
}

/// What is at `configs/<name>.json`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Existing {
    /// No file.
    Missing,
    /// An externally rotated profile: ours to keep and rewrite.
    Rotated(Box<Profile>),
    /// Anything else (another shape, or a file that does not load); the
    /// reason says what it is.
    Other(String),
}

/// A profile whose credentials file someone keeps fresh for its readers.
#[derive(Debug)]
pub struct Target {
    /// The profile's name.
    pub name: String,
    /// The configuration directory holding `configs/<name>.json`.
    pub config_dir: PathBuf,
    /// What is there now.
    pub existing: Existing,
}

/// Whether `p` is an externally rotated profile (`user_oauth` without `client_id`).
pub(crate) fn is_rotated(p: &Profile) -> bool {
    matches!(&p.auth, ProfileAuth::UserOauth { client_id: None, .. })
}

/// Look at `configs/<name>.json` under `config_dir`. The name must be a valid
/// profile name (an error names `origin`); the `configs/` directory, when it
/// exists, must be trusted (design.md §9): a file in someone else's
/// directory is never ours to write.
pub fn inspect(config_dir: &Path, name: &str, origin: &Origin, env: &Env) -> Result<Target> {
    profile::validate_name(name, origin)?;
    let path = profile::config_path(config_dir, name);
    let configs = disk::parent_dir(&path);
    if configs.exists() {
        trusted::check_dir(configs, "profile directory", PROFILE_STAKE).map_err(Error::config)?;
    }
    let existing = if std::fs::symlink_metadata(&path).is_err() {
        Existing::Missing
    } else {
        match profile::load(config_dir, name, env) {
            Ok(p) if is_rotated(&p) => Existing::Rotated(Box::new(p)),
            Ok(p) => Existing::Other(match &p.auth {
                ProfileAuth::UserOauth { .. } => {
                    format!("a {AUTH_USER_OAUTH} profile with a client_id (an interactive login, refreshed by its SDK)")
                }
                other => format!("an {} profile", other.type_name()),
            }),
            Err(e) => Existing::Other(format!("a file that does not load as a profile ({e})")),
        }
    };
    Ok(Target { name: name.to_string(), config_dir: config_dir.to_path_buf(), existing })
}

impl Target {
    /// The profile file, `configs/<name>.json`.
    pub fn config_path(&self) -> PathBuf {
        profile::config_path(&self.config_dir, &self.name)
    }

    /// The credentials file its readers read: the profile's `credentials_path`
    /// when it sets one, else `credentials/<name>.json`.
    pub fn credentials_path(&self) -> PathBuf {
        match &self.existing {
            Existing::Rotated(p) => p.auth.credentials_path().map(Path::to_path_buf),
            _ => None,
        }
        .unwrap_or_else(|| profile::credentials_path(&self.config_dir, &self.name))
    }

    /// An error unless the profile is missing or externally rotated, or
    /// `overwrite` allows replacing it. `flag` names the setting that allows it.
    pub fn check_ours(&self, overwrite: bool, flag: &str) -> Result<()> {
        match &self.existing {
            Existing::Other(what) if !overwrite => Err(Error::config(format!(
                "{} is {what}, not an externally rotated profile ({{\"authentication\": {{\"type\": \
                 \"{AUTH_USER_OAUTH}\"}}}} without client_id); anthropic-wif will not write its token into it. \
                 Choose another profile name, or pass {flag} to replace it",
                self.config_path().display()
            ))),
            _ => Ok(()),
        }
    }
}

/// Write (or update) the externally rotated profile `target` with
/// `settings`: refused when another shape is there unless `overwrite`
/// (`flag` names the setting that allows it). Unknown keys of an existing
/// rotated profile are kept (its `credentials_path` too); returns whether the
/// file changed.
pub fn write(target: &Target, settings: &ReaderSettings, overwrite: bool, flag: &str) -> Result<bool> {
    target.check_ours(overwrite, flag)?;
    let path = target.config_path();
    let mut root = match &target.existing {
        Existing::Rotated(p) => existing_object(&p.path, &target.name)?,
        _ => Map::new(),
    };
    let before = Value::Object(root.clone());
    root.insert("version".into(), Value::from("1.0"));
    for (key, value) in [
        ("organization_id", &settings.organization_id),
        ("workspace_id", &settings.workspace_id),
        ("base_url", &settings.base_url),
    ] {
        match value {
            Some(v) => root.insert(key.into(), Value::from(v.as_str())),
            None => root.remove(key),
        };
    }
    let mut auth = match root.remove("authentication") {
        Some(Value::Object(a)) => a,
        _ => Map::new(),
    };
    auth.insert("type".into(), Value::from(AUTH_USER_OAUTH));
    auth.remove("client_id");
    root.insert("authentication".into(), Value::Object(auth));
    let after = Value::Object(root);
    if matches!(target.existing, Existing::Rotated(_)) && before == after {
        return Ok(false);
    }
    let mut text = serde_json::to_string_pretty(&after).map_err(|e| Error::internal(e.to_string()))?;
    text.push('\n');
    let dir = disk::parent_dir(&path);
    disk::ensure_dir(dir)
        .map_err(|e| Error::config(format!("could not create the profile directory {}: {e}", dir.display())))?;
    trusted::check_dir(dir, "profile directory", PROFILE_STAKE).map_err(Error::config)?;
    disk::write_private_file(&path, "profile", text.as_bytes())?;
    Ok(true)
}

fn existing_object(path: &Path, name: &str) -> Result<Map<String, Value>> {
    let bytes = profile::read_config_file(path, name)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::config(format!("config file {} changed while it was being read; try again", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::default()
    }

    fn origin() -> Origin {
        Origin::Explicit("--target-profile".into())
    }

    fn settings() -> ReaderSettings {
        ReaderSettings {
            organization_id: Some("00000000-0000-4000-8000-000000000001".into()),
            workspace_id: Some("wrkspc_01x".into()),
            base_url: Some("http://127.0.0.1:9".into()),
        }
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_a_profile_every_reader_takes_and_keeps_it() {
        let d = tempfile::tempdir().unwrap();
        let t = inspect(d.path(), "app", &origin(), &env()).unwrap();
        assert!(matches!(t.existing, Existing::Missing));
        assert_eq!(t.credentials_path(), d.path().join("credentials/app.json"));
        assert!(write(&t, &settings(), false, "--overwrite-profile").unwrap());
        let written: Value = serde_json::from_slice(&std::fs::read(t.config_path()).unwrap()).unwrap();
        assert_eq!(
            written,
            serde_json::json!({"version": "1.0", "organization_id": "00000000-0000-4000-8000-000000000001",
                "workspace_id": "wrkspc_01x", "base_url": "http://127.0.0.1:9",
                "authentication": {"type": "user_oauth"}})
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&t.config_path()), 0o600);
            assert_eq!(mode(&d.path().join("configs")), 0o700);
        }
        // Ours now: loads as a rotated profile; the same settings change nothing, new ones update it,
        // keeping what someone added (a credentials_path, an unknown key).
        let t = inspect(d.path(), "app", &origin(), &env()).unwrap();
        assert!(matches!(t.existing, Existing::Rotated(_)));
        assert!(!write(&t, &settings(), false, "--overwrite-profile").unwrap());
        let mut v: Value = serde_json::from_slice(&std::fs::read(t.config_path()).unwrap()).unwrap();
        v["authentication"]["credentials_path"] = Value::from(d.path().join("elsewhere.json").display().to_string());
        v["note"] = Value::from("kept");
        std::fs::write(t.config_path(), v.to_string()).unwrap();
        let t = inspect(d.path(), "app", &origin(), &env()).unwrap();
        assert_eq!(t.credentials_path(), d.path().join("elsewhere.json"));
        let fewer = ReaderSettings { workspace_id: None, base_url: None, ..settings() };
        assert!(write(&t, &fewer, false, "--overwrite-profile").unwrap());
        let v: Value = serde_json::from_slice(&std::fs::read(t.config_path()).unwrap()).unwrap();
        assert_eq!(v["note"], "kept");
        assert!(v.get("workspace_id").is_none() && v.get("base_url").is_none());
        assert_eq!(v["authentication"]["type"], "user_oauth");
        assert!(v["authentication"]["credentials_path"].is_string());
    }

    #[test]
    fn another_shape_is_never_replaced_without_the_flag() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("configs")).unwrap();
        let login = r#"{"version":"1.0","authentication":{"type":"user_oauth","client_id":"abc"}}"#;
        let fed = r#"{"organization_id":"00000000-0000-4000-8000-000000000001","authentication":{"type":"oidc_federation","federation_rule_id":"fdrl_01x"}}"#;
        for (name, text, what) in [
            ("login", login, "with a client_id"),
            ("fed", fed, "an oidc_federation profile"),
            ("junk", "not json", "does not load"),
        ] {
            let path = d.path().join("configs").join(format!("{name}.json"));
            std::fs::write(&path, text).unwrap();
            let t = inspect(d.path(), name, &origin(), &env()).unwrap();
            let e = write(&t, &settings(), false, "--overwrite-profile").unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("--overwrite-profile"), "{name}: {e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{name}: untouched");
            assert!(t.check_ours(false, "--x").is_err());
            // With the flag it is replaced by the rotated shape (no client_id).
            assert!(write(&t, &settings(), true, "--overwrite-profile").unwrap());
            let t = inspect(d.path(), name, &origin(), &env()).unwrap();
            assert!(matches!(t.existing, Existing::Rotated(_)), "{name}");
        }
        assert!(inspect(d.path(), "../x", &origin(), &env()).unwrap_err().to_string().contains("--target-profile"));
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let configs = d.path().join("configs");
        std::fs::create_dir(&configs).unwrap();
        std::fs::set_permissions(&configs, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = inspect(d.path(), "app", &origin(), &env()).unwrap_err().to_string();
        assert!(e.contains("writable"), "{e}");
    }
}
