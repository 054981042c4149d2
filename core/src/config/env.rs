//! The environment as the engine sees it: the live process environment, or a
//! fixed map (tests, and bindings that pass their own).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub enum Env {
    /// Read the live process environment at each lookup.
    #[default]
    Process,
    /// A fixed set of variables (nothing else is visible).
    Fixed(Arc<HashMap<String, String>>),
}

impl Env {
    pub fn fixed<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env::Fixed(Arc::new(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect()))
    }

    /// The variable's value; empty counts as unset (SPEC §3).
    pub fn get(&self, name: &str) -> Option<String> {
        let v = match self {
            Env::Process => std::env::var(name).ok(),
            Env::Fixed(map) => map.get(name).cloned(),
        };
        v.filter(|s| !s.is_empty())
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The home directory (`$HOME`, or `%USERPROFILE%` on Windows).
    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME").or_else(|| self.get("USERPROFILE")).map(PathBuf::from)
    }
}
