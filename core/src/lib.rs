//! anthropic-wif-core: the engine behind every face of anthropic-wif.
//!
//! Trade a short-lived OIDC identity token (JWT) for a short-lived Claude API
//! access token (`sk-ant-oat01-…`) with an RFC 7523 jwt-bearer exchange, cache
//! it in memory and on disk (sharing the official SDKs' cache files), and
//! serialise exchanges across threads and processes, because the server accepts
//! each identity JWT only once.
//!
//! Layout:
//! - [`config`]: ids and their validation, profiles, the environment chain.
//! - [`identity`]: identity-token sources (file, env, command, url, presets).
//! - [`exchange`]: the jwt-bearer POST, response parsing, error mapping.
//! - [`cache`]: in-memory refresh policy, on-disk cache and its file lock.
//! - [`provider`]: identity + exchange + caches, the one entry point.
//! - [`options`]: the one options type every face maps its settings into;
//!   [`schema`]: the shapes the faces declare again, for their drift checks.
//! - [`doctor`]: a secret-free health report of a configuration.
//! - [`process`]: keeping secrets out of core dumps (the CLI's faces call it).
//! - [`api`]: header rules for API calls made with an access token (SPEC §2).
//! - [`trusted`]: the ownership and permission rule for files we read
//!   (profiles, the cache directory, its lock file).

// The engine never writes to stdout: that belongs to the faces (a credential
// process's stdout is the one place a secret may go).
#![cfg_attr(not(test), deny(clippy::print_stdout))]

pub mod api;
pub mod cache;
pub mod config;
pub mod diag;
pub mod doctor;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzz_api;
pub mod identity;
pub mod json;
pub mod jwt;
pub mod options;
pub mod process;
pub mod provider;
pub mod runtime;
pub mod schema;
pub mod secret;
pub mod trusted;

#[cfg(test)]
mod proptests;

pub use error::{Error, ErrorKind, Result};
pub use provider::{AccessToken, Face, Provider, ProviderOptions};
pub use secret::Secret;

/// The crate version, used in the User-Agent.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Current unix time in whole seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
