//! `anthropic-wif setup claude-code [config flags]`: configure Claude Code to
//! use federated tokens the way the tests show working
//! (tests/e2e/claude_code.test.mjs): an externally rotated profile
//! (docs/design.md §2) that `anthropic-wif daemon` keeps fresh, named in
//! Claude Code's settings.
//!
//! It writes the profile (`configs/<name>.json`, `user_oauth` without
//! `client_id`, refusing to replace another shape unless
//! `--overwrite-profile`) and merges into Claude Code's user settings
//! (`$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`, or
//! `--settings PATH`) the `env` entries `ANTHROPIC_PROFILE`,
//! `ANTHROPIC_CONFIG_DIR` and, when the configuration has its own base URL,
//! `ANTHROPIC_BASE_URL` (with only the profile's `base_url`, Claude Code
//! also asks the public API for its policy limits). Every other key is kept;
//! the ones that would take precedence over the profile (`apiKeyHelper`,
//! `env.ANTHROPIC_API_KEY`, `env.ANTHROPIC_AUTH_TOKEN`) are removed and
//! named. The settings file is rewritten atomically, 0600 in a 0700
//! directory. Nothing is exchanged: it prints what it did and the daemon
//! command that keeps the token fresh.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anthropic_wif_core::cache::disk::write_private_file;
use anthropic_wif_core::config::rotated;
use anthropic_wif_core::config::{Env, Origin};
use anthropic_wif_core::{diag, Error};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::args::CommonArgs;
use crate::fail;
use crate::keeper;

#[derive(Subcommand, Debug)]
pub enum SetupCommand {
    /// Configure Claude Code to read federated tokens from a profile that `anthropic-wif daemon` keeps fresh.
    ClaudeCode(ClaudeCodeArgs),
}

#[derive(Args, Debug)]
pub struct ClaudeCodeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The profile Claude Code reads (written to <config_dir>/configs/NAME.json).
    #[arg(long, value_name = "NAME", default_value = "claude-code", help_heading = "Setup")]
    pub target_profile: String,
    /// Claude Code's settings file to merge into (default $CLAUDE_CONFIG_DIR/settings.json, else
    /// ~/.claude/settings.json; a project's .claude/settings.local.json works too).
    #[arg(long, value_name = "PATH", help_heading = "Setup")]
    pub settings: Option<PathBuf>,
    /// Replace profile NAME when it has another shape (an interactive login, a federation profile).
    #[arg(long, help_heading = "Setup")]
    pub overwrite_profile: bool,
}

/// Largest settings file read.
const MAX_SETTINGS_BYTES: u64 = 1 << 20;
/// Settings that would take precedence over the profile.
const SHADOWING_ENV: [&str; 2] = ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"];

pub fn run(c: SetupCommand) -> ExitCode {
    match c {
        SetupCommand::ClaudeCode(a) => claude_code(a),
    }
}

fn claude_code(a: ClaudeCodeArgs) -> ExitCode {
    diag::set_verbosity(a.common.verbose);
    let env = Env::capture();
    let (provider, reader) = match keeper::provider(
        &a.common,
        "cli",
        "setup claude-code configures Claude Code",
        "give the federation settings (flags, ANTHROPIC_* variables or an oidc_federation profile with --profile), \
         as you would to `anthropic-wif token`",
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let config_dir = absolute(&provider.resolved().config_dir);
    let target =
        match rotated::inspect(&config_dir, &a.target_profile, &Origin::Explicit("--target-profile".into()), &env) {
            Ok(t) => t,
            Err(e) => return fail(&e),
        };
    let settings_path =
        match a.settings.clone().map(|p| absolute(&p)).or_else(|| default_settings(&env)) {
            Some(p) => p,
            None => return fail(&Error::config(
                "cannot find Claude Code's settings: neither CLAUDE_CONFIG_DIR nor HOME is set; pass --settings PATH",
            )),
        };
    // Read (and check) the settings before writing anything.
    let mut settings = match read_settings(&settings_path) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let wrote_profile = match rotated::write(&target, &reader, a.overwrite_profile, "--overwrite-profile") {
        Ok(w) => w,
        Err(e) => return fail(&e),
    };

    let mut env_map = match settings.remove("env") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut changes = Vec::new();
    let mut set = |m: &mut Map<String, Value>, k: &str, v: String| {
        if m.get(k).and_then(Value::as_str) != Some(v.as_str()) {
            changes.push(format!("set env.{k}={v}"));
            m.insert(k.into(), Value::from(v));
        }
    };
    set(&mut env_map, "ANTHROPIC_PROFILE", a.target_profile.clone());
    set(&mut env_map, "ANTHROPIC_CONFIG_DIR", config_dir.display().to_string());
    match &reader.base_url {
        Some(b) => set(&mut env_map, "ANTHROPIC_BASE_URL", b.clone()),
        None => {
            if env_map.remove("ANTHROPIC_BASE_URL").is_some() {
                changes.push("removed env.ANTHROPIC_BASE_URL (the configuration uses the API's own)".into());
            }
        }
    }
    for k in SHADOWING_ENV {
        if env_map.remove(k).is_some() {
            changes.push(format!("removed env.{k} (Claude Code would use it instead of the profile)"));
        }
    }
    if settings.remove("apiKeyHelper").is_some() {
        changes.push("removed apiKeyHelper (Claude Code would use it instead of the profile)".into());
    }
    settings.insert("env".into(), Value::Object(env_map));
    if !changes.is_empty() {
        let mut text = serde_json::to_string_pretty(&Value::Object(settings)).unwrap_or_default();
        text.push('\n');
        if let Err(e) = write_private_file(&settings_path, "Claude Code settings file", text.as_bytes()) {
            return fail(&e);
        }
    }

    let mut out = String::new();
    let profile = target.config_path();
    if wrote_profile {
        out.push_str(&format!("wrote the profile {} (user_oauth without client_id)\n", profile.display()));
    } else {
        out.push_str(&format!("the profile {} is already in place\n", profile.display()));
    }
    if changes.is_empty() {
        out.push_str(&format!("{} already has these settings\n", settings_path.display()));
    } else {
        out.push_str(&format!("updated {}: {}\n", settings_path.display(), changes.join("; ")));
    }
    let flags = daemon_flags(&a.target_profile);
    out.push_str(&format!(
        "\nClaude Code now reads its access token from {}. Keep that file fresh while you use it:\n\n  \
         anthropic-wif daemon {flags}\n\n(as a service or a background job; or `anthropic-wif daemon --once {flags}` \
         before a session shorter than one token's lifetime). docs/daemon.md has the recipes.\n",
        target.credentials_path().display()
    ));
    print!("{out}");
    ExitCode::SUCCESS
}

/// `$CLAUDE_CONFIG_DIR/settings.json`, else `~/.claude/settings.json`.
fn default_settings(env: &Env) -> Option<PathBuf> {
    let dir = env.get("CLAUDE_CONFIG_DIR").map(PathBuf::from).or_else(|| env.home().map(|h| h.join(".claude")))?;
    Some(absolute(&dir).join("settings.json"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The settings as a JSON object: empty when the file does not exist; an
/// error naming the file when it is not one (it is never overwritten then).
fn read_settings(path: &Path) -> Result<Map<String, Value>, Error> {
    use std::io::Read;
    let shown = path.display();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(Error::config(format!("cannot read Claude Code's settings {shown}: {e}"))),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SETTINGS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::config(format!("cannot read Claude Code's settings {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(Error::config(format!("{shown} is larger than 1 MiB: not a settings file; check --settings")));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::config(format!(
            "{shown} does not hold a JSON object, so it is not Claude Code's settings; fix or move it (nothing was changed)"
        ))),
        Err(e) => Err(Error::config(format!(
            "{shown} is not valid JSON (line {} column {}); fix it first (nothing was changed)",
            e.line(),
            e.column()
        ))),
    }
}

/// The configuration flags this command was given, for the daemon command
/// it prints (setup's own flags left out), shell-quoted.
fn daemon_flags(target: &str) -> String {
    const OWN_WITH_VALUE: [&str; 2] = ["--settings", "--target-profile"];
    let args: Vec<String> = std::env::args().collect();
    let start = args.iter().position(|a| a == "claude-code").map_or(args.len(), |i| i + 1);
    let mut out = vec!["--target-profile".to_string(), quote(target)];
    let mut rest = args[start..].iter();
    while let Some(arg) = rest.next() {
        let name = arg.split('=').next().unwrap_or(arg);
        if OWN_WITH_VALUE.contains(&name) {
            if !arg.contains('=') {
                rest.next();
            }
            continue;
        }
        if arg == "--overwrite-profile" {
            continue;
        }
        out.push(quote(arg));
    }
    out.join(" ")
}

/// A word for a POSIX shell: as is when it is plainly safe, else in single quotes.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
