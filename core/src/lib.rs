//! anthropic-wif-core: the engine behind every face of anthropic-wif.
//!
//! Trade a short-lived OIDC identity token (JWT) for a short-lived Claude API
//! access token (`sk-ant-oat01-…`) with an RFC 7523 jwt-bearer exchange, cache
//! it in memory and on disk (sharing the official SDKs' cache files), and
//! serialise exchanges across threads and processes, because the server accepts
//! each identity JWT only once.
//!
//! Layout, in layers (docs/design.md, "Core's layers"; a module uses only
//! lower layers, `tests/layers.rs` checks it):
//! - leaves: [`error`] (the one error, text cleaning), [`json`], [`jwt`],
//!   [`secret`], [`env`] (the environment snapshot), [`clock`], [`version`],
//!   [`trusted`] (the ownership rule for files we read), [`api`] (header
//!   rules for API calls made with an access token, docs/design.md §2);
//! - [`url`]: the base-URL check and URL redaction; [`diag`]: diagnostics;
//! - [`process`]: keeping secrets out of core dumps; [`runtime`]: the one
//!   tokio runtime and HTTP client;
//! - [`identity`]: identity-token sources (file, env, command, url, presets);
//! - [`exchange`]: the jwt-bearer POST, response parsing, error mapping;
//!   [`cache`]: the refresh policy, the memory cache, the on-disk cache and
//!   its file lock;
//! - [`config`]: ids and their validation, profiles, the precedence chain;
//! - [`provider`]: identity + exchange + caches, the one entry point;
//! - [`doctor`]: a secret-free health report of a configuration.

// The engine never writes to stdout: that belongs to the faces (a credential
// process's stdout is the one place a secret may go).
#![cfg_attr(not(test), deny(clippy::print_stdout))]

pub mod api;
pub mod cache;
pub mod clock;
pub mod config;
pub mod diag;
pub mod doctor;
pub mod env;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzz_api;
pub mod identity;
pub mod json;
pub mod jwt;
pub mod process;
pub mod provider;
pub mod runtime;
pub mod secret;
pub mod trusted;
pub mod url;
pub mod version;

#[cfg(test)]
mod proptests;

pub use cache::policy::HandOutMargin;
pub use clock::now_unix;
pub use clock::utc_civil;
pub use env::Env;
pub use error::{Error, ErrorKind, Result};
pub use provider::{AccessToken, Provider, ProviderOptions};
pub use secret::Secret;
pub use version::VERSION;
