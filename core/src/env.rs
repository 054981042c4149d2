//! The environment as the engine sees it: a snapshot, never the live process
//! environment.
//!
//! The engine runs on its own threads (the tokio runtime), inside host
//! programs that write their environment while it works: Python assigns
//! `os.environ[…]` and JS `process.env.…` on their own threads, and both end
//! in the C library's `setenv`, which may move the `environ` array while
//! another thread's `getenv` walks it. Rust's environment lock does not cover
//! the host's `setenv`, so an engine thread calling `getenv` can crash the
//! host (SIGSEGV), or read a variable that is set as unset. And in a Node
//! worker, `process.env` is the worker's own copy, not the C environment.
//!
//! So the engine never reads the process environment. Each face hands it an
//! [`Env`] taken on the calling thread, where the host's own rules make that
//! safe: Python copies `os.environ` under the GIL, Node spreads the calling
//! thread's `process.env`, the CLI and the proxy call [`Env::capture`] once on
//! their main thread at start-up (they never write their environment). The
//! engine reads only that fixed map. `core/clippy.toml` refuses
//! `std::env::var` and friends everywhere in core; [`Env::capture`] is the one
//! allowed reader.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A snapshot of environment variables (nothing else is visible). Cheap to
/// clone. `Debug` shows only how many variables it holds: values may be
/// secrets (an identity token in `ANTHROPIC_IDENTITY_TOKEN`).
#[derive(Clone, Default)]
pub struct Env {
    vars: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Env({} variables)", self.vars.len())
    }
}

impl Env {
    /// A snapshot of exactly these variables.
    pub fn fixed<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env { vars: Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()) }
    }

    /// A snapshot of this process's environment, for programs that own their
    /// environment and never write it while the engine runs (the CLI and the
    /// proxy, on their main thread at start-up). Variables whose name or
    /// value is not Unicode are left out. A library loaded into someone
    /// else's program must not call this: take the host's own mapping
    /// instead (`os.environ`, `process.env`), on the host's thread.
    #[allow(clippy::disallowed_methods)] // the one place that reads the process environment
    pub fn capture() -> Self {
        Env::fixed(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    /// The variable's value; empty counts as unset (docs/design.md §3).
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|s| !s.is_empty()).cloned()
    }

    pub(crate) fn is_set(&self, name: &str) -> bool {
        self.vars.get(name).is_some_and(|s| !s.is_empty())
    }

    /// The home directory (`$HOME`, or `%USERPROFILE%` on Windows).
    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").or_else(|| self.get("USERPROFILE")).map(PathBuf::from)
    }

    /// Every variable, empty ones included (the environment of a child process).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many variables the snapshot holds.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether the snapshot holds no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_fixed_and_its_debug_shows_no_value() {
        let env = Env::fixed([("A", "1"), ("EMPTY", ""), ("ANTHROPIC_IDENTITY_TOKEN", "eyJsecret")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("EMPTY"), None, "empty counts as unset");
        assert!(!env.is_set("EMPTY") && env.is_set("A") && !env.is_set("B"));
        assert_eq!(env.vars().count(), 3, "a child process gets the empty ones too");
        let shown = format!("{env:?}");
        assert_eq!(shown, "Env(3 variables)");
        assert!(Env::default().is_empty());
    }

    #[test]
    fn capture_copies_the_process_environment_once() {
        // PATH is set in every test environment; the copy does not follow later changes.
        let env = Env::capture();
        assert!(env.is_set("PATH"));
        assert!(!env.is_set("ANTHROPIC_WIF_TEST_NEVER_SET_VARIABLE"));
    }
}
