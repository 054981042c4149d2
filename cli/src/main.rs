//! `anthropic-wif`: the credential-process face of the engine. Argument
//! parsing and output formats only; everything else lives in the core crate.

mod args;
mod daemon;
mod docs;
mod doctor;
mod exec;
mod keeper;
mod probe;
mod proxy;
mod setup;
mod supervise;

use std::io::Write;
use std::process::ExitCode;

use anthropic_wif_core::options::{self, FieldNames};
use anthropic_wif_core::{process, Error, Provider};
use clap::Parser;
use zeroize::Zeroizing;

use args::{Cli, Command, Format, TokenArgs};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e)
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand
                && std::env::args_os().nth(1).is_some_and(|a| a == "emulator") =>
        {
            eprintln!(
                "anthropic-wif: error [config]: the emulator is test tooling and not part of this binary; run the \
                 `wif-emulator` binary instead (`cargo build -p anthropic-wif-emulator` in a checkout builds it)"
            );
            return ExitCode::from(2);
        }
        Err(e) if e.kind() == clap::error::ErrorKind::UnknownArgument => return unknown_flag(&e),
        Err(e) => {
            // --help/--version go to stdout with status 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Token(t) => run_token(t),
        Command::Doctor(d) => doctor::run(d),
        Command::Exec(a) => exec::run(a),
        Command::Daemon(a) => daemon::run(a),
        Command::Setup(a) => setup::run(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}

/// An unknown flag: core's one "unknown option" message (the bindings give
/// it for unknown arguments and options), with clap's suggestion.
fn unknown_flag(e: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue};
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let given = text(ContextKind::InvalidArg).unwrap_or_default();
    let given = given.split_once('=').map(|(flag, _)| flag.to_string()).unwrap_or(given);
    let hint = text(ContextKind::SuggestedArg).map(|s| format!("did you mean {s}?"));
    let command = std::env::args().nth(1).filter(|c| !c.starts_with('-')).unwrap_or_default();
    let known = format!("`anthropic-wif {command} --help` lists them").replace("  ", " ");
    fail(&options::unknown_message(FieldNames::Flags, "", &given, hint.as_deref(), &known))
}

/// The one way a command reports an error: one line on stderr, the kind's exit code.
pub(crate) fn fail(err: &Error) -> ExitCode {
    eprintln!("anthropic-wif: error [{}]: {err}", err.kind.as_str());
    ExitCode::from(err.kind.exit_code() as u8)
}

fn run_token(t: TokenArgs) -> ExitCode {
    t.common.diagnostics();
    process::harden();
    let options = match t.common.provider_options() {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let provider = match Provider::new(options) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    if let Some(n) = provider.notice() {
        eprintln!("anthropic-wif: note: {n}");
    }
    let token = match provider.token_blocking(t.force_refresh) {
        Ok(tok) => tok,
        Err(e) => return fail(&e),
    };
    let secret = token.token.expose();
    // Every copy of the token made here is wiped when dropped.
    let out: Zeroizing<String> = Zeroizing::new(match t.format {
        Format::Json => {
            let quoted = Zeroizing::new(serde_json::to_string(secret).unwrap_or_default());
            let exp = token.expires_at.map(|e| e.to_string()).unwrap_or_else(|| "null".into());
            format!("{{\"access_token\":{},\"expires_at\":{exp}}}\n", quoted.as_str())
        }
        Format::Token => format!("{secret}\n"),
        Format::Env => format!("ANTHROPIC_AUTH_TOKEN={secret}\n"),
        Format::Header => format!("Authorization: Bearer {secret}\n"),
    });
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()).is_err() {
        eprintln!("anthropic-wif: error [internal]: cannot write to stdout");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
