//! Diagnostics on stderr (`-v`, or `ANTHROPIC_WIF_LOG=info|debug` in any face).
//! Callers pass only secret-free text; there is no way to log a `Secret`
//! except by exposing it, which this crate never does here.

use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = quiet, 1 = info (`-v`), 2 = debug (`-vv`). 255 = not yet initialised.
static LEVEL: AtomicU8 = AtomicU8::new(255);

pub const INFO: u8 = 1;
pub const DEBUG: u8 = 2;

/// Set the verbosity (the CLI's `-v` count).
pub fn set_verbosity(level: u8) {
    LEVEL.store(level.min(2), Ordering::Relaxed);
}

/// Current verbosity; the first call reads `ANTHROPIC_WIF_LOG`.
pub fn verbosity() -> u8 {
    let v = LEVEL.load(Ordering::Relaxed);
    if v != 255 {
        return v;
    }
    let from_env = match std::env::var("ANTHROPIC_WIF_LOG").unwrap_or_default().to_ascii_lowercase().as_str() {
        "debug" | "trace" | "2" => DEBUG,
        "info" | "1" | "true" => INFO,
        _ => 0,
    };
    LEVEL.store(from_env, Ordering::Relaxed);
    from_env
}

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
    #[test]
    fn emitted_lines_are_scrubbed() {
        // emit() writes to stderr; check the transformation it applies.
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        let line = format!("identity token file {jwt} and sk-ant-oat01-abc\nforged");
        let out = crate::error::scrub(&line, &[], 4000);
        assert!(!out.contains(jwt) && !out.contains("sk-ant-oat01-abc") && !out.contains('\n'), "{out}");
    }
}
