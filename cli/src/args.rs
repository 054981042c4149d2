//! Command-line arguments and their mapping onto the engine's settings.

use std::path::PathBuf;

use anthropic_wif_core::config::{Env, FieldNames, Overrides};
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::provider::rotation_wait;
use anthropic_wif_core::{Error, HandOutMargin, ProviderOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit codes: 0 success; 1 internal error; 2 usage or configuration error; 3 identity-token source failed;
4 exchange denied by the token endpoint (4xx); 5 token endpoint unreachable (network, time-out, 5xx/429 after retries).
With no flags, the configuration is read like the official SDKs read it: ANTHROPIC_* environment variables and
profiles under ~/.config/anthropic (see README).";

#[derive(Parser, Debug)]
#[command(name = "anthropic-wif", version, about = "Workload identity federation for the Claude API: trade an OIDC identity token for a short-lived access token.", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print an access token as JSON: {"access_token": …, "expires_at": …} (a credential process).
    Token(TokenArgs),
    /// Check the configuration and the identity token; explain what would make exchanges fail.
    #[command(after_help = DOCTOR_AFTER_HELP)]
    Doctor(DoctorArgs),
    /// Run CMD with a private profile whose token is kept fresh while it runs (--env-token: ANTHROPIC_AUTH_TOKEN).
    Exec(crate::exec::ExecArgs),
    /// Keep a profile's credentials file fresh for the official SDKs and Claude Code (a sidecar or service).
    Daemon(crate::daemon::DaemonArgs),
    /// Configure a client to use federated tokens: `setup claude-code`.
    #[command(subcommand)]
    Setup(crate::setup::SetupCommand),
    /// Serve a local reverse proxy to the Claude API that injects fresh access tokens.
    Proxy(crate::proxy::ProxyArgs),
    /// Exit 0 when the local proxy's /healthz answers 200, or the daemon's ready file holds an unexpired token
    /// (for exec probes and HEALTHCHECK; no curl needed).
    Probe(crate::probe::ProbeArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    #[command(after_help = COMPLETIONS_AFTER_HELP)]
    Completions(CompletionsArgs),
    /// Print the man page (roff) of anthropic-wif, or of one of its subcommands.
    #[command(after_help = "Read it with `anthropic-wif man | man -l -`, or install it: \
                            `anthropic-wif man > ~/.local/share/man/man1/anthropic-wif.1`.")]
    Man(ManArgs),
}

const COMPLETIONS_AFTER_HELP: &str = "\
Install (per user):
  bash  anthropic-wif completions bash > ~/.local/share/bash-completion/completions/anthropic-wif
  zsh   anthropic-wif completions zsh > ~/.zfunc/_anthropic-wif   (with fpath+=(~/.zfunc) before compinit)
  fish  anthropic-wif completions fish > ~/.config/fish/completions/anthropic-wif.fish";

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// A subcommand (token, doctor, exec, daemon, setup, proxy, probe, completions, man) for its own page
    /// `anthropic-wif-<name>(1)`.
    pub subcommand: Option<String>,
}

const DOCTOR_AFTER_HELP: &str = "\
Doctor resolves the configuration (showing where every setting came from), validates every id, fetches the
identity token and decodes it WITHOUT verifying it (alg, kid, iss, sub, aud, iat, exp, lifetime, size; never the
token itself), checks the on-disk cache, and lists findings with a fix each. Fetching an identity token consumes
nothing, and without --exchange doctor writes nothing.

--exchange also sends that identity token to the token endpoint once. The server accepts each identity token only
once, so this CONSUMES it; the access token obtained is written to the on-disk cache (unless --no-cache), so the
next `anthropic-wif token` uses it instead of re-sending the consumed token. The exchange is skipped when the
checks already found an error.

Exit codes: 0 healthy (warnings allowed); otherwise the code of the first error found, as for `token`:
1 internal; 2 configuration (including a static API key shadowing federation, a Kubernetes default
service-account token); 3 identity token (source failed, malformed, expired, too large, unverifiable alg);
4 exchange denied; 5 token endpoint unreachable. --json prints the same report as one JSON object.";

#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also make one real exchange (consumes the identity token; caches the access token).
    #[arg(long)]
    pub exchange: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The audience your federation rule expects (default: the preset's --audience, else https://api.anthropic.com).
    #[arg(long, value_name = "AUD")]
    pub expected_audience: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// {"access_token": …, "expires_at": …}
    Json,
    /// The bare token.
    Token,
    /// ANTHROPIC_AUTH_TOKEN=…
    Env,
    /// Authorization: Bearer …
    Header,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Skip the caches and exchange anew (e.g. after a 401 from the API).
    #[arg(long)]
    pub force_refresh: bool,
}

/// Configuration flags shared by every command that obtains a token.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Profile name (<config_dir>/configs/<name>.json); flags below override its fields.
    #[arg(long)]
    pub profile: Option<String>,
    /// Federation rule id (fdrl_…).
    #[arg(long)]
    pub federation_rule_id: Option<String>,
    /// Organization id (a UUID).
    #[arg(long)]
    pub organization_id: Option<String>,
    /// Service account id (svac_…); sent only when set.
    #[arg(long)]
    pub service_account_id: Option<String>,
    /// Workspace id (wrkspc_… or `default`); required when the rule spans several workspaces.
    #[arg(long)]
    pub workspace_id: Option<String>,
    /// API base URL (https://, or http:// on localhost for testing).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Config dir (default $ANTHROPIC_CONFIG_DIR, $XDG_CONFIG_HOME/anthropic, ~/.config/anthropic).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// On-disk token cache file to use instead of the default.
    #[arg(long)]
    pub credentials_path: Option<PathBuf>,

    /// Identity token source as JSON, in the profile's `identity_token` shape,
    /// e.g. '{"source":"command","command":["gcloud","auth","print-identity-token"]}'.
    #[arg(long, value_name = "JSON", help_heading = "Identity token source (one of)")]
    pub identity_token: Option<String>,
    /// Read the identity token from this file (re-read at every exchange).
    #[arg(long, value_name = "PATH", help_heading = "Identity token source (one of)")]
    pub identity_token_file: Option<PathBuf>,
    /// Read the identity token from this environment variable.
    #[arg(long, value_name = "VAR", help_heading = "Identity token source (one of)")]
    pub identity_token_env: Option<String>,
    /// Run this program (no shell) and read the token from its stdout: a JSON array of argv, or words separated by spaces.
    #[arg(long, value_name = "ARGV", help_heading = "Identity token source (one of)")]
    pub identity_token_command: Option<String>,
    /// GET this URL (${VAR} expanded from the environment) and read the token from the body.
    #[arg(long, value_name = "URL", help_heading = "Identity token source (one of)")]
    pub identity_token_url: Option<String>,
    /// Header for --identity-token-url, `Name: value` (${VAR} expanded); repeatable.
    #[arg(long = "identity-token-header", value_name = "HEADER", help_heading = "Identity token source (one of)")]
    pub identity_token_headers: Vec<String>,
    /// Top-level JSON string field holding the token in the --identity-token-url response.
    #[arg(long, value_name = "FIELD", help_heading = "Identity token source (one of)")]
    pub identity_token_field: Option<String>,
    /// A platform preset: auto, github-actions, gitlab, circleci, bitbucket, terraform,
    /// gcp-metadata, azure-imds, kubernetes, aws-sts, spiffe (see docs/platforms.md).
    #[arg(long, value_name = "PRESET", help_heading = "Identity token source (one of)")]
    pub identity_source: Option<String>,
    /// Audience to request from a preset (default https://api.anthropic.com).
    #[arg(long, help_heading = "Identity token source (one of)")]
    pub audience: Option<String>,

    /// Do not read or write the on-disk token cache.
    #[arg(long, help_heading = "Caching")]
    pub no_cache: bool,
    /// Hand out only tokens with at least this many seconds left (default: min(300, half the lifetime)).
    #[arg(long, value_name = "SECONDS", help_heading = "Caching")]
    pub min_remaining: Option<u64>,
    /// When the identity token was already exchanged on this machine and no cached access token is usable: how
    /// long to wait for the token file to be rotated (or ask a minting source again) before failing (default 60, at most 600).
    #[arg(long, value_name = "SECONDS", help_heading = "Caching")]
    pub rotation_wait: Option<f64>,
    /// Diagnostics on stderr (-vv for more); never prints secrets.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl CommonArgs {
    /// The engine's options. The environment is snapshot here, on the main
    /// thread, before any engine thread exists; the CLI never writes its
    /// environment, so one snapshot serves the whole run.
    pub fn provider_options(&self) -> Result<ProviderOptions, Error> {
        let mut o = ProviderOptions::new("cli", Env::capture());
        o.overrides = Overrides {
            profile: self.profile.clone(),
            federation_rule_id: self.federation_rule_id.clone(),
            organization_id: self.organization_id.clone(),
            service_account_id: self.service_account_id.clone(),
            workspace_id: self.workspace_id.clone(),
            base_url: self.base_url.clone(),
            identity_token: self.identity_spec()?,
            config_dir: self.config_dir.clone(),
            credentials_path: self.credentials_path.clone(),
            names: FieldNames::Flags,
        };
        o.disk_cache = !self.no_cache;
        // The credential process hands out tokens a stream can start with (docs/design.md §8).
        o.min_remaining = match self.min_remaining {
            Some(s) => HandOutMargin::AtLeast(s.min(i64::MAX as u64) as i64),
            None => HandOutMargin::STREAM_SAFE,
        };
        if let Some(s) = self.rotation_wait {
            o.rotation_wait = rotation_wait(s, "--rotation-wait")?;
        }
        Ok(o)
    }

    fn identity_spec(&self) -> Result<Option<IdentitySpec>, Error> {
        let mut given: Vec<(&str, IdentitySpec)> = Vec::new();
        if let Some(json) = &self.identity_token {
            let spec = serde_json::from_str::<IdentitySpec>(json).map_err(|e| {
                Error::config(format!(
                    "--identity-token is not a valid identity token source ({e}); expected JSON such as \
                     {{\"source\":\"file\",\"path\":\"/var/run/secrets/token\"}}"
                ))
            })?;
            given.push(("--identity-token", spec));
        }
        if let Some(path) = &self.identity_token_file {
            given.push(("--identity-token-file", IdentitySpec::File { path: path.clone() }));
        }
        if let Some(var) = &self.identity_token_env {
            given.push(("--identity-token-env", IdentitySpec::Env { var: var.clone() }));
        }
        if let Some(cmd) = &self.identity_token_command {
            given.push((
                "--identity-token-command",
                IdentitySpec::Command { command: parse_argv(cmd)?, timeout_s: None },
            ));
        }
        if let Some(url) = &self.identity_token_url {
            let mut headers = std::collections::BTreeMap::new();
            for h in &self.identity_token_headers {
                let (name, value) = h
                    .split_once(':')
                    .ok_or_else(|| Error::config(format!("--identity-token-header {h:?} is not `Name: value`")))?;
                headers.insert(name.trim().to_string(), value.trim().to_string());
            }
            given.push((
                "--identity-token-url",
                IdentitySpec::Url { url: url.clone(), headers, field: self.identity_token_field.clone() },
            ));
        } else if !self.identity_token_headers.is_empty() || self.identity_token_field.is_some() {
            return Err(Error::config("--identity-token-header and --identity-token-field need --identity-token-url"));
        }
        if let Some(preset) = &self.identity_source {
            given.push(("--identity-source", IdentitySpec::preset(preset, self.audience.clone())?));
        } else if self.audience.is_some() {
            return Err(Error::config("--audience applies to a preset: add --identity-source"));
        }
        if given.len() > 1 {
            let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
            return Err(Error::config(format!("choose one identity token source; got {}", names.join(", "))));
        }
        Ok(given.pop().map(|(_, s)| s))
    }
}

/// A JSON array of strings, or words separated by white space.
fn parse_argv(s: &str) -> Result<Vec<String>, Error> {
    let t = s.trim();
    let argv: Vec<String> = if t.starts_with('[') {
        serde_json::from_str(t)
            .map_err(|e| Error::config(format!("--identity-token-command: not a JSON array of strings ({e})")))?
    } else {
        t.split_whitespace().map(str::to_string).collect()
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(Error::config("--identity-token-command is empty: give the program to run and its arguments"));
    }
    Ok(argv)
}
