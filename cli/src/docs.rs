//! `anthropic-wif completions <shell>` and `anthropic-wif man [subcommand]`:
//! shell completion scripts (clap_complete) and roff man pages (clap_mangen),
//! generated from the same clap definition that parses the arguments, so they
//! cannot drift from the real flags. The release archive ships their output
//! (scripts/dist.sh runs these commands).

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs, ManArgs};

const BIN: &str = "anthropic-wif";

pub fn completions(a: CompletionsArgs) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), BIN, &mut out);
    if a.shell == clap_complete::Shell::Bash {
        out = fix_bash_case_labels(&out);
    }
    emit(&out)
}

/// clap_complete 4.6's bash script sets `cmd=anthropic__wif__subcmd__token`
/// but labels that case `anthropic__subcmd__wif__subcmd__token` (it turns the
/// `-` of a hyphenated binary name into the subcommand separator), so no
/// subcommand's flags would complete. Relabel; tests/docs.rs completes in a
/// real bash, so a fixed (or differently broken) generator shows up there.
fn fix_bash_case_labels(script: &[u8]) -> Vec<u8> {
    let wrong = format!("{}__subcmd__", BIN.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", BIN.replace('-', "__"));
    String::from_utf8_lossy(script).replace(&wrong, &right).into_bytes()
}

pub fn man(a: ManArgs) -> ExitCode {
    let mut cmd = Cli::command();
    // Propagate version and global settings into the subcommands before rendering them.
    cmd.build();
    let page = match a.subcommand.as_deref() {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            // `anthropic-wif-token(1)`, the git convention for subcommand pages.
            Some(sub) => {
                let version = cmd.get_version().unwrap_or_default().to_owned();
                sub.clone().name(format!("{BIN}-{name}")).bin_name(format!("{BIN} {name}")).version(version)
            }
            None => {
                let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                eprintln!(
                    "anthropic-wif: error [config]: man: no subcommand {name:?}; choose one of {}",
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        eprintln!("anthropic-wif: error [internal]: man: cannot render the page: {e}");
        return ExitCode::from(1);
    }
    emit(&out)
}

fn emit(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|_| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `anthropic-wif man | head`: the reader left; nothing went wrong here.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anthropic-wif: error [internal]: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}
