//! `anthropic-wif exec [config flags] [--env-token] -- CMD ARGS…`: run CMD
//! with federated credentials, for clients that read the official SDKs'
//! configuration and nothing else.
//!
//! **By default** CMD gets a private config dir: a new directory (0700, an
//! unpredictable name, under `$XDG_RUNTIME_DIR` when it is set, else the
//! temporary directory) holding an externally rotated profile
//! (`configs/anthropic-wif-exec.json`: `user_oauth` without `client_id`,
//! docs/design.md §2) and its credentials file, and
//! `ANTHROPIC_CONFIG_DIR` / `ANTHROPIC_PROFILE` pointing at it (plus
//! `ANTHROPIC_BASE_URL` when the configuration pins one: Claude Code
//! otherwise asks the public API for its policy limits, docs/sdk-profiles.md
//! §2). Every official SDK and Claude Code then read the token from that
//! file on every call and send it with the `oauth-2025-04-20` flag, which
//! they do not for `ANTHROPIC_AUTH_TOKEN`. While CMD runs, a keeper (the
//! daemon's, cli/src/keeper.rs) replaces the token ahead of every reader's
//! refresh window, so CMD outlives any one token. Signals reach CMD, CMD's
//! exit status is ours (cli/src/supervise.rs), and the directory is removed
//! when CMD ends, however it ends (SIGKILL aside).
//!
//! **`--env-token`** keeps the former mode for plain HTTP scripts: one
//! token in `ANTHROPIC_AUTH_TOKEN` (at least min(5 min, half its lifetime)
//! left, `--min-remaining`), not renewed; the process *becomes* CMD on Unix
//! (execvp). Such a script must send `anthropic-beta: oauth-2025-04-20` with
//! the token.
//!
//! In both modes CMD's environment loses every variable that holds a secret —
//! `ANTHROPIC_API_KEY` (it would also shadow the token), `ANTHROPIC_AUTH_TOKEN`,
//! `ANTHROPIC_IDENTITY_TOKEN` and whatever the identity source declares
//! (`Provider::secret_env_vars`: a preset's token variable, GitHub's request
//! token, a url source's `${VAR}`s) — and the federation settings (CMD must
//! not federate on its own: the identity token is single-use).
//!
//! When CMD cannot be started the status is 127 (not found) or 126 (not
//! runnable), as in the shells, with an `[exec]` message
//! (`supervise::cannot_run`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anthropic_wif_core::config::rotated;
use anthropic_wif_core::config::{self, Env, Origin};
use anthropic_wif_core::{diag, process, runtime, Error, Provider};
use clap::Args;

use crate::args::CommonArgs;
use crate::fail;
use crate::keeper::{self, Keeper};
use crate::supervise;

/// The profile name CMD is given (`ANTHROPIC_PROFILE`).
pub const PROFILE: &str = "anthropic-wif-exec";

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Hand CMD one token in ANTHROPIC_AUTH_TOKEN (not renewed) instead of a private profile kept fresh:
    /// for plain HTTP scripts, which must then send `anthropic-beta: oauth-2025-04-20` with it.
    #[arg(long)]
    pub env_token: bool,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(a: ExecArgs) -> ExitCode {
    a.common.diagnostics();
    process::harden();
    let Some(program) = a.command.first().filter(|p| !p.is_empty()).cloned() else {
        return fail(&Error::config(
            "exec needs the command to run after `--`, e.g. `anthropic-wif exec -- claude -p \"hello\"` \
             or `anthropic-wif exec --profile ci -- python agent.py`",
        ));
    };
    if a.env_token {
        env_token(a, &program)
    } else {
        with_profile(a, &program)
    }
}

/// CMD with the variables of this configuration removed (secrets and federation settings).
fn command_for(provider: &Provider, argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // No secret reaches CMD but the access token (core decides which variables
    // hold secrets, per identity source), and CMD does not federate on its own.
    for v in provider.secret_env_vars().iter().map(String::as_str).chain(config::FEDERATION_ENV_VARS) {
        cmd.env_remove(v);
    }
    if provider.base_url_pinned() {
        if let Some(b) = provider.base_url() {
            cmd.env("ANTHROPIC_BASE_URL", b);
        }
    }
    cmd
}

fn with_profile(a: ExecArgs, program: &str) -> ExitCode {
    if a.common.has("min_remaining") {
        return fail(&Error::config(
            "--min-remaining applies to --env-token (one token handed out once); without it, exec keeps CMD's \
             credentials file fresh and replaces the token ahead of every SDK's refresh window",
        ));
    }
    let env = Env::capture();
    let (provider, settings) = match keeper::provider(
        &a.common,
        "exec",
        "exec gives CMD a profile whose token it renews",
        "pass --env-token to hand CMD that token in ANTHROPIC_AUTH_TOKEN instead",
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    // The first token before anything is created: without one CMD does not run.
    if let Err(e) = runtime::block_on(provider.token(false)) {
        return fail(&e);
    }
    // From here on a SIGTERM (or Ctrl-C) does not kill us before CMD's directory is removed.
    let signals = match supervise::Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(&Error::internal(format!("exec: cannot watch signals: {e}"))),
    };
    let dir = match PrivateDir::create(&env) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let target = match rotated::inspect(dir.path(), PROFILE, &Origin::Default, &env)
        .and_then(|t| rotated::write(&t, &settings, false, "").map(|_| t))
    {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let mut keeper = Keeper::new(provider.clone(), target.credentials_path(), "exec", diag::enabled(diag::INFO));
    let first = runtime::block_on(keeper.pass());
    if !first.usable {
        let e = first.error.unwrap_or_else(|| Error::internal("no access token could be obtained"));
        return fail(&e);
    }
    if let Some(sig) = signals.stop_requested() {
        drop(dir);
        return supervise::die_by(sig);
    }

    let mut cmd = command_for(&provider, &a.command);
    cmd.env("ANTHROPIC_CONFIG_DIR", dir.path());
    cmd.env("ANTHROPIC_PROFILE", PROFILE);
    // CMD gets the user's core limit back (the kernel resets dumpability at exec).
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: `before_exec` only reads a value set before the fork and calls
        // getrlimit/setrlimit: async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                process::before_exec();
                Ok(())
            });
        }
    }
    diag::emit(diag::INFO, || {
        format!("running {program:?} with ANTHROPIC_PROFILE={PROFILE} in {} (kept fresh)", dir.path().display())
    });
    let first_sleep = first.next;
    let task = runtime::runtime().spawn(async move {
        let mut next = first_sleep;
        loop {
            tokio::time::sleep(next).await;
            next = keeper.pass().await.next;
        }
    });
    supervise::run(cmd, program, signals, move || {
        task.abort();
        let _ = runtime::block_on(task);
        drop(dir);
    })
}

fn env_token(a: ExecArgs, program: &str) -> ExitCode {
    let provider = match a.common.provider_options().and_then(Provider::new) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Some(n) = provider.notice() {
        eprintln!("anthropic-wif: note: {n}");
    }
    let token = match provider.token_blocking(false) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let mut cmd = command_for(&provider, &a.command);
    cmd.env("ANTHROPIC_AUTH_TOKEN", token.token.expose());
    diag::emit(diag::INFO, || {
        format!(
            "running {program:?} with ANTHROPIC_AUTH_TOKEN set{}",
            token
                .expires_at
                .map(|e| format!(" (expires in {} s)", e - anthropic_wif_core::now_unix()))
                .unwrap_or_default()
        )
    });
    drop(token);
    // CMD gets the user's core limit back (the kernel resets dumpability at exec).
    process::before_exec();
    become_cmd(cmd, program)
}

/// On Unix the process becomes CMD (execvp): every signal (terminal Ctrl-C,
/// SIGTERM from a supervisor, SIGWINCH, job control) reaches CMD directly and
/// exactly once, and CMD's exit status is the caller's. Elsewhere CMD runs as
/// a child (cli/src/supervise.rs).
#[cfg(unix)]
fn become_cmd(mut cmd: Command, program: &str) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // Returns only if the program could not be started.
    let e = cmd.exec();
    supervise::cannot_run(program, &e)
}

#[cfg(not(unix))]
fn become_cmd(cmd: Command, program: &str) -> ExitCode {
    match supervise::Signals::install() {
        Ok(signals) => supervise::run(cmd, program, signals, || {}),
        Err(e) => fail(&Error::internal(format!("exec: cannot watch signals: {e}"))),
    }
}

/// CMD's private config dir: created exclusively (never an existing path,
/// so nothing planted in a shared temporary directory is used), 0700, named
/// `anthropic-wif-exec-<128 random bits>`, removed with everything in it
/// when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn create(env: &Env) -> Result<PrivateDir, Error> {
        let base = Self::base(env);
        let mut last = None;
        for _ in 0..16 {
            let path = base.join(format!("anthropic-wif-exec-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)));
            #[cfg_attr(not(unix), allow(unused_mut))] // only Unix sets a mode
            let mut b = std::fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            match b.create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => last = Some(e),
            }
        }
        Err(Error::internal(format!(
            "cannot create a private directory for CMD's profile under {}: {}; set TMPDIR to a directory of yours",
            base.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// `$XDG_RUNTIME_DIR` (per user, 0700, in memory) when it is set, absolute
    /// and trusted; else `$TMPDIR`, else the platform's temporary directory.
    fn base(env: &Env) -> PathBuf {
        let trusted = |p: &Path| {
            p.is_absolute()
                && p.is_dir()
                && anthropic_wif_core::trusted::check_dir(p, "runtime directory", "see CMD's token").is_ok()
        };
        if let Some(d) = env.get("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|p| trusted(p)) {
            return d;
        }
        let tmp = if cfg!(windows) { env.get("TEMP").or_else(|| env.get("TMP")) } else { env.get("TMPDIR") };
        tmp.map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(std::env::temp_dir)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                keeper::log("exec", &format!("could not remove {}: {e}", self.path.display()));
            }
        }
    }
}
