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
//! - [`doctor`]: a secret-free health report of a configuration.
//! - [`api`]: header rules for API calls made with an access token (SPEC §2).

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
pub mod provider;
pub mod runtime;
pub mod secret;

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

/// The UTC calendar date and time of a unix time:
/// `(year, month, day, hour, minute, second)` (Howard Hinnant's civil-from-days).
/// Used wherever a timestamp is formatted (SigV4 dates, the proxy's JSON log).
pub fn utc_civil(unix: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}
