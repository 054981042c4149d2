//! Diagnostics on stderr (`-v`, or `ANTHROPIC_WIF_LOG=info|debug` in any face).
//! Callers pass only secret-free text; there is no way to log a `Secret`
//! except by exposing it, which this crate never does here.
//!
//! `ANTHROPIC_WIF_LOG` is read from the first environment snapshot a face
//! hands the engine ([`init_from`], called by `Provider::new` and the doctor),
//! never from the process environment: engine threads do not call `getenv`
//! (env.rs says why).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::env::Env;

/// 0 = quiet, 1 = info (`-v`), 2 = debug (`-vv`). 255 = not yet initialised (quiet).
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);

const UNSET: u8 = 255;

/// Verbosity of `-v` / `ANTHROPIC_WIF_LOG=info`.
pub const INFO: u8 = 1;
/// Verbosity of `-vv` / `ANTHROPIC_WIF_LOG=debug`.
pub const DEBUG: u8 = 2;

/// The variable that turns diagnostics on in the bindings.
pub(crate) const ENV_LOG: &str = "ANTHROPIC_WIF_LOG";

/// Set the verbosity (the CLI's `-v` count). Wins over [`init_from`].
pub fn set_verbosity(level: u8) {
    LEVEL.store(level.min(2), Ordering::Relaxed);
}

/// Take the verbosity from `ANTHROPIC_WIF_LOG` in `env`, unless it is set
/// already (by [`set_verbosity`] or an earlier snapshot).
pub fn init_from(env: &Env) {
    if LEVEL.load(Ordering::Relaxed) != UNSET {
        return;
    }
    let _ = LEVEL.compare_exchange(UNSET, level_from(env), Ordering::Relaxed, Ordering::Relaxed);
}

/// The verbosity `ANTHROPIC_WIF_LOG` asks for in `env`.
fn level_from(env: &Env) -> u8 {
    match env.get(ENV_LOG).unwrap_or_default().to_ascii_lowercase().as_str() {
        "debug" | "trace" | "2" => DEBUG,
        "info" | "1" | "true" => INFO,
        _ => 0,
    }
}

/// Current verbosity (quiet until [`set_verbosity`] or [`init_from`]).
pub(crate) fn verbosity() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        UNSET => 0,
        v => v,
    }
}

/// Whether diagnostics of `level` ([`INFO`], [`DEBUG`]) are written.
pub fn enabled(level: u8) -> bool {
    verbosity() >= level
}

/// Write one diagnostic line to stderr when `level` is enabled. As a last
/// line of defence the line goes through [`crate::error::scrub`]: nothing
/// token- or JWT-shaped (a user may put a token where a path or a name
/// belongs) and no control characters (no forged log lines).
pub fn emit(level: u8, message: impl FnOnce() -> String) {
    if enabled(level) {
        eprintln!("anthropic-wif: {}", crate::error::scrub(&message(), &[], 4000));
    }
}

#[cfg(test)]
mod tests {
    use crate::env::Env;

    #[test]
    fn the_level_comes_from_the_snapshot() {
        assert_eq!(super::level_from(&Env::fixed([("ANTHROPIC_WIF_LOG", "Debug")])), super::DEBUG);
        assert_eq!(super::level_from(&Env::fixed([("ANTHROPIC_WIF_LOG", "info")])), super::INFO);
        assert_eq!(super::level_from(&Env::fixed([("ANTHROPIC_WIF_LOG", "nonsense")])), 0);
        assert_eq!(super::level_from(&Env::default()), 0);
    }
    #[test]
    fn emitted_lines_are_scrubbed() {
        // emit() writes to stderr; check the transformation it applies.
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let line = format!("identity token file {jwt} and sk-ant-oat01-abc\nforged");
        let out = crate::error::scrub(&line, &[], 4000);
        assert!(!out.contains(jwt) && !out.contains("sk-ant-oat01-abc") && !out.contains('\n'), "{out}");
    }
}
