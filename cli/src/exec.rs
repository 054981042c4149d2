//! `anthropic-wif exec [config flags] -- CMD ARGS…`: run CMD with a fresh
//! access token in `ANTHROPIC_AUTH_TOKEN`, for clients that read the
//! official SDKs' environment variables and nothing else.
//!
//! The child's environment loses every variable that holds a secret —
//! `ANTHROPIC_API_KEY` (it would also shadow the token), `ANTHROPIC_AUTH_TOKEN`,
//! `ANTHROPIC_IDENTITY_TOKEN` and whatever the identity source declares
//! (`Provider::secret_env_vars`: a preset's token variable, GitHub's request
//! token, a url source's `${VAR}`s) — and the federation settings (CMD must
//! not federate on its own); it gains
//! `ANTHROPIC_AUTH_TOKEN` and, when the configuration pins a base URL,
//! `ANTHROPIC_BASE_URL`. The token has at least min(5 min, half its lifetime)
//! left (`--min-remaining`), like `anthropic-wif token`.
//!
//! When CMD cannot be started the status is 127 (not found) or 126 (not
//! runnable), as in the shells, with an `[exec]` message.
//!
//! On Unix the process then *becomes* CMD (execvp): every signal (terminal
//! Ctrl-C, SIGTERM from a supervisor, SIGWINCH, job control) reaches CMD
//! directly and exactly once, and CMD's exit status — a code, or death by a
//! signal — is the status the caller sees. Elsewhere (Windows has no exec)
//! CMD runs as a child: Ctrl-C reaches it through the shared console while
//! this process waits it out, and its exit code is passed on whole.

use std::process::{Command, ExitCode};

use anthropic_wif_core::config;
use anthropic_wif_core::{diag, process, Error, Provider};
use clap::Args;

use crate::args::CommonArgs;

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The command to run and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn fail(err: &Error) -> ExitCode {
    eprintln!("anthropic-wif: error [{}]: {err}", err.kind.as_str());
    ExitCode::from(err.kind.exit_code() as u8)
}

pub fn run(a: ExecArgs) -> ExitCode {
    a.common.diagnostics();
    process::harden();
    let Some(program) = a.command.first().filter(|p| !p.is_empty()) else {
        return fail(&Error::config(
            "exec needs the command to run after `--`, e.g. `anthropic-wif exec -- claude -p \"hello\"` \
             or `anthropic-wif exec --profile ci -- python agent.py`",
        ));
    };
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

    let mut cmd = Command::new(program);
    cmd.args(&a.command[1..]);
    // No secret reaches CMD but the access token (core decides which variables
    // hold secrets, per identity source), and CMD does not federate on its own.
    for v in provider.secret_env_vars().iter().map(String::as_str).chain(config::FEDERATION_ENV_VARS) {
        cmd.env_remove(v);
    }
    cmd.env("ANTHROPIC_AUTH_TOKEN", token.token.expose());
    if provider.base_url_pinned() {
        if let Some(b) = provider.base_url() {
            cmd.env("ANTHROPIC_BASE_URL", b);
        }
    }
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
    spawn_or_exec(cmd, program)
}

/// CMD could not be started. That is not one of the engine's error kinds
/// (the token was obtained; nothing about anthropic-wif's configuration is
/// wrong), so the message is tagged `[exec]` and the status follows the
/// shells and env(1): 127 not found, 126 found but not runnable
/// (docs/design.md §8).
fn cannot_run(program: &str, e: &std::io::Error) -> ExitCode {
    let (code, what) = match e.kind() {
        std::io::ErrorKind::NotFound => (127, "not found (check the name and PATH)"),
        std::io::ErrorKind::PermissionDenied => (126, "not executable (permission denied)"),
        _ => (126, "could not be started"),
    };
    eprintln!("anthropic-wif: error [exec]: {program:?} {what}: {e}");
    ExitCode::from(code)
}

#[cfg(unix)]
fn spawn_or_exec(mut cmd: Command, program: &str) -> ExitCode {
    use std::os::unix::process::CommandExt;
    // Returns only if the program could not be started.
    let e = cmd.exec();
    cannot_run(program, &e)
}

#[cfg(not(unix))]
fn spawn_or_exec(mut cmd: Command, program: &str) -> ExitCode {
    // No exec() here: CMD runs as a child. A console's Ctrl-C / Ctrl-Break reaches every process
    // attached to it, CMD included; this process swallows it and keeps waiting, so it neither dies
    // before CMD nor loses CMD's exit status.
    #[cfg(windows)]
    let _interrupts = swallow_console_interrupts();
    match cmd.status() {
        // Windows exit codes are 32-bit (0xC000013A after Ctrl-C, for one): passed on whole.
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => cannot_run(program, &e),
    }
}

/// While the returned listeners live, a console Ctrl-C or Ctrl-Break is delivered to them (tokio's
/// console control handler reports it handled) instead of terminating this process.
#[cfg(windows)]
fn swallow_console_interrupts() -> (Option<tokio::signal::windows::CtrlC>, Option<tokio::signal::windows::CtrlBreak>) {
    let _rt = anthropic_wif_core::runtime::runtime().enter();
    (tokio::signal::windows::ctrl_c().ok(), tokio::signal::windows::ctrl_break().ok())
}
