//! `anthropic-wif completions <shell>` and `anthropic-wif man [subcommand]`:
//! the bash script really completes in bash, every man page renders in groff
//! without a warning, and both know every subcommand and flag.

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod common;
use common::bin;

const SUBCOMMANDS: [&str; 9] = ["token", "doctor", "exec", "daemon", "setup", "proxy", "probe", "completions", "man"];

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).stdin(Stdio::null()).output().expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stderr.is_empty(), "{args:?} wrote to stderr: {}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

/// Runs `cmd` with `input` on its stdin; returns its output.
fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `script` in a fresh non-interactive bash; returns stdout.
fn bash(script: &str) -> String {
    let o = with_stdin(Command::new("bash").args(["--norc", "--noprofile", "-s"]), script);
    assert!(o.status.success(), "bash failed: {}", String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let script = ok(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("anthropic-wif.bash");
    std::fs::write(&file, &script).unwrap();
    // What bash does on TAB: call the registered function with COMP_WORDS set.
    let complete = |words: &str| {
        bash(&format!(
            "source '{}'\nf=$(complete -p anthropic-wif | sed -n 's/.*-F \\([^ ]*\\).*/\\1/p')\n\
             COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
             $f anthropic-wif \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        ))
    };
    let top = complete("anthropic-wif ''");
    for sub in SUBCOMMANDS {
        assert!(top.lines().any(|l| l == sub), "{sub} is offered: {top}");
    }
    assert!(!top.lines().any(|l| l == "emulator"), "the emulator is not a subcommand any more: {top}");
    let flags = complete("anthropic-wif token --identity-token-fi");
    assert_eq!(flags.lines().collect::<Vec<_>>(), ["--identity-token-file", "--identity-token-field"], "{flags}");
    let formats = complete("anthropic-wif token --format ''");
    for f in ["json", "token", "env", "header"] {
        assert!(formats.lines().any(|l| l == f), "--format {f} is offered: {formats}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_the_binary_and_its_flags() {
    let zsh = ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef anthropic-wif"), "{}", &zsh[..80.min(zsh.len())]);
    let fish = ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c anthropic-wif"), "fish script");
    for script in [&zsh, &fish] {
        assert!(script.contains("identity-token-file") && script.contains("min-remaining"));
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("possible values"), "names the shells");
}

/// Renders a man page as `man` does (groff with preconv for UTF-8 input), treating every warning as a failure.
fn groff_clean(page: &str, what: &str) -> String {
    // groff-base, which man-db needs.
    let o = with_stdin(Command::new("groff").args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"]), page);
    assert!(o.status.success() && o.stderr.is_empty(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
    // groff typesets `-` as a hyphen or minus sign; compare flags as typed.
    stdout(&o).replace(['\u{2010}', '\u{2212}'], "-")
}

#[test]
fn man_pages_render_cleanly_for_the_binary_and_each_subcommand() {
    let main = ok(&["man"]);
    assert!(main.contains(".TH anthropic-wif 1"), "{}", &main[..200.min(main.len())]);
    let text = groff_clean(&main, "anthropic-wif(1)");
    for sub in SUBCOMMANDS {
        assert!(text.contains(sub), "anthropic-wif(1) lists {sub}");
    }
    for sub in SUBCOMMANDS {
        let page = ok(&["man", sub]);
        assert!(page.contains(&format!(".TH anthropic-wif-{sub} 1")), "{sub}: {}", &page[..200.min(page.len())]);
        assert!(page.contains(env!("CARGO_PKG_VERSION")), "{sub}: the page carries the version");
        groff_clean(&page, sub);
    }
    let token = groff_clean(&ok(&["man", "token"]), "token");
    for flag in ["--identity-token-file", "--format", "--min-remaining", "--force-refresh"] {
        assert!(token.contains(flag), "anthropic-wif-token(1) documents {flag}");
    }
    let daemon = groff_clean(&ok(&["man", "daemon"]), "daemon");
    for flag in ["--target-profile", "--write-profile", "--overwrite-profile", "--once", "--ready-file", "--quiet"] {
        assert!(daemon.contains(flag), "anthropic-wif-daemon(1) documents {flag}");
    }
    let exec = groff_clean(&ok(&["man", "exec"]), "exec");
    assert!(exec.contains("--env-token") && exec.contains("oauth-2025-04-20"), "anthropic-wif-exec(1)");
}

#[test]
fn man_for_an_unknown_subcommand_names_the_choices() {
    let o = run(&["man", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("\"nope\"") && err.contains("token, doctor"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn the_emulator_is_not_in_the_binary_and_the_error_says_where_it_went() {
    let o = run(&["emulator", "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wif-emulator") && err.contains("cargo build -p anthropic-wif-emulator"), "{err}");
    let help = ok(&["--help"]);
    assert!(!help.contains("emulator"), "hidden from --help: {help}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    // `anthropic-wif man | head -1`: the reader leaves early.
    let mut child =
        Command::new(bin()).args(["man"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
