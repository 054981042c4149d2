//! Command-line arguments and their mapping onto the engine's settings.

use std::path::PathBuf;

use anthropic_wif_core::config::Env;
use anthropic_wif_core::identity::IdentitySpec;
use anthropic_wif_core::options::{FieldNames, Kind, OptionDef, Options, Scope, OPTIONS};
use anthropic_wif_core::{diag, Error, HandOutMargin, ProviderOptions};
use clap::{Arg, ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

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
    #[command(
        after_help = "Exit status: CMD's own once it runs; before that, the codes of `token` (1-5), or 127 when \
                            CMD is not found and 126 when it cannot be run (an `error [exec]` message), as in the shells."
    )]
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
    #[command(flatten)]
    pub doctor: DoctorFlags,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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

/// The flags of one scope of core's options table (core/src/options.rs):
/// their names, help and value names come from there, their values are
/// checked there (`Options::set`), so the CLI cannot drift from the bindings.
#[derive(Debug, Clone, Default)]
pub struct TableFlags<const DOCTOR: bool> {
    given: Vec<(&'static OptionDef, Value)>,
}

/// The provider's options as flags.
pub type ProviderFlags = TableFlags<false>;
/// doctor's own options as flags.
pub type DoctorFlags = TableFlags<true>;

impl<const DOCTOR: bool> TableFlags<DOCTOR> {
    fn rows() -> impl Iterator<Item = (&'static OptionDef, &'static str)> {
        let scope = if DOCTOR { Scope::Doctor } else { Scope::Provider };
        OPTIONS.iter().filter(move |d| d.scope == scope).filter_map(|d| d.flag.map(|f| (d, f)))
    }

    /// Whether the flag of option `name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.given.iter().any(|(d, _)| d.name == name)
    }
}

impl<const DOCTOR: bool> clap::FromArgMatches for TableFlags<DOCTOR> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut given = Vec::new();
        for (d, _) in Self::rows() {
            if d.kind == Kind::Switch {
                if m.get_flag(d.name) {
                    given.push((d, Value::Bool(true)));
                }
            } else if let Some(v) = m.get_one::<String>(d.name) {
                given.push((d, Value::String(v.clone())));
            }
        }
        Ok(TableFlags { given })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl<const DOCTOR: bool> clap::Args for TableFlags<DOCTOR> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Self::rows().fold(cmd, |cmd, (d, flag)| {
            // clap's own convention: one-line help without the final period.
            let arg = Arg::new(d.name).long(flag).help(d.help.trim_end_matches('.')).help_heading(d.heading);
            cmd.arg(match d.kind {
                Kind::Switch => arg.action(ArgAction::SetTrue),
                // Out-of-range values get the one message of core, not clap's.
                Kind::Seconds { .. } => arg.value_name(d.value_name).allow_negative_numbers(true),
                _ => arg.value_name(d.value_name),
            })
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Configuration flags shared by every command that obtains a token: the
/// options table's, and the CLI's shortcuts for an identity token source.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub table: ProviderFlags,

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

    /// Diagnostics on stderr (-vv for more; without -v, ANTHROPIC_WIF_LOG=info|debug); never prints secrets.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl CommonArgs {
    /// Whether the flag of option `name` (core's table) was given.
    pub fn has(&self, name: &str) -> bool {
        self.table.has(name)
    }

    /// The options these flags (and `doctor`'s) give, checked by core.
    pub fn options(&self, doctor: Option<&DoctorFlags>) -> Result<Options, Error> {
        let mut o = Options::new(FieldNames::Flags);
        let doctor_given = doctor.map(|d| d.given.as_slice()).unwrap_or_default();
        for (d, v) in self.table.given.iter().chain(doctor_given) {
            o.set(d, v)?;
        }
        if let Some((flag, spec)) = self.identity_shortcut()? {
            if o.overrides.identity_token.is_some() {
                return Err(Error::config(format!("choose one identity token source; got --identity-token, {flag}")));
            }
            spec.validate(flag).map_err(Error::config)?;
            o.overrides.identity_token = Some(spec);
            o.overrides.identity_token_via = Some(flag.to_string());
        }
        Ok(o)
    }

    /// Turn diagnostics on: `-v` when given, else `ANTHROPIC_WIF_LOG` (as in
    /// the bindings). Every command calls it first.
    pub fn diagnostics(&self) {
        if self.verbose > 0 {
            diag::set_verbosity(self.verbose);
        }
        diag::init_from(environment());
    }

    /// The engine's options for the credential process (and `exec`, `doctor`):
    /// User-Agent comment `cli`, tokens a stream can start with (docs/design.md §8).
    pub fn provider_options_for(&self, options: &Options) -> ProviderOptions {
        options.provider_options("cli", HandOutMargin::STREAM_SAFE, environment().clone())
    }

    /// [`CommonArgs::options`] and [`CommonArgs::provider_options_for`] for the credential process.
    pub fn provider_options(&self) -> Result<ProviderOptions, Error> {
        Ok(self.provider_options_for(&self.options(None)?))
    }

    /// The engine's options for a command with its own User-Agent comment
    /// (`client`) and hand-out margin (the proxy, the daemon, exec's keeper).
    pub fn provider_options_as(&self, client: &str, margin: HandOutMargin) -> Result<ProviderOptions, Error> {
        Ok(self.options(None)?.provider_options(client, margin, environment().clone()))
    }

    /// The identity source a shortcut flag gives, with the flag's name.
    fn identity_shortcut(&self) -> Result<Option<(&'static str, IdentitySpec)>, Error> {
        let mut given: Vec<(&str, IdentitySpec)> = Vec::new();
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
        Ok(given.pop())
    }
}

/// The environment, snapshot once, on the main thread, before any engine
/// thread exists; the CLI never writes its environment, so one snapshot
/// serves the whole run.
fn environment() -> &'static Env {
    static SNAPSHOT: std::sync::OnceLock<Env> = std::sync::OnceLock::new();
    SNAPSHOT.get_or_init(Env::capture)
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
