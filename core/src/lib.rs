//! anthropic-wif-core: the engine behind every face of anthropic-wif.
//!
//! Trade a short-lived OIDC identity token (JWT) for a short-lived Claude API
//! access token (`sk-ant-oat01-…`) with an RFC 7523 jwt-bearer exchange, cache
//! it in memory and on disk (sharing the official SDKs' cache files), and
//! serialise exchanges across threads and processes, because the server accepts
//! each identity JWT only once.
//!
//! Layout, in layers (docs/design.md, "Core's layers"; a module uses only
//! lower layers, `tests/layers.rs` checks it; the modules named in plain
//! text are private, their types re-exported at the root):
//! - leaves: [`error`] (the one error, text cleaning), `json`, [`jwt`],
//!   `secret` ([`Secret`]), `env` (the environment snapshot, [`Env`]),
//!   `clock`, `version` ([`VERSION`]),
//!   [`trusted`] (the ownership rule for files we read), [`api`] (header
//!   rules for API calls made with an access token, docs/design.md §2);
//! - [`url`]: the base-URL check and URL redaction; [`diag`]: diagnostics;
//! - [`process`]: keeping secrets out of core dumps; [`runtime`]: the one
//!   tokio runtime and HTTP client;
//! - [`identity`]: identity-token sources (file, env, command, url, presets);
//! - `exchange`: the jwt-bearer POST, response parsing, error mapping
//!   ([`RetryPolicy`]);
//!   [`cache`]: the refresh policy, the memory cache, the on-disk cache and
//!   its file lock;
//! - [`config`]: ids and their validation, profiles, the precedence chain;
//! - `provider`: identity + exchange + caches, the one entry point
//!   ([`Provider`]);
//! - [`options`]: the one options type and table every face maps its
//!   settings into; [`schema`]: the shapes the faces declare again, for
//!   their drift checks;
//! - [`doctor`]: a secret-free health report of a configuration.
//!
//! # Embedding the engine
//!
//! A Rust program gets tokens the way every face does: settings in
//! [`ProviderOptions`] (anything left unset is resolved from the environment
//! snapshot, then profiles under `~/.config/anthropic`, exactly like the
//! CLI), one [`Provider`] for the program's life, and
//! [`Provider::token_blocking`] (or the async [`Provider::token`]) before
//! each API call. The provider exchanges once, serves the token from memory
//! (and the shared disk cache) until its refresh window, and never puts the
//! token in an error or `Debug` output.
//!
//! ```
//! use anthropic_wif_core::identity::IdentitySpec;
//! use anthropic_wif_core::{Env, Provider, ProviderOptions};
//! # fn main() -> Result<(), anthropic_wif_core::Error> {
//! # let (base_url, jwt) = doc_support::token_endpoint();
//! # let home = std::env::temp_dir().join(format!("wif-doc-{}", std::process::id())).display().to_string();
//!
//! // The environment is a snapshot: `Env::capture()` in a real program.
//! let env = Env::fixed([("HOME", home.as_str()), ("MY_OIDC_TOKEN", jwt.as_str())]);
//! let mut options = ProviderOptions::new("my-app", env); // the User-Agent comment
//! options.overrides.federation_rule_id = Some("fdrl_01ExampleRule".into());
//! options.overrides.organization_id = Some("8f1a6a2e-3c4b-4d5e-9f60-7a8b9c0d1e2f".into());
//! options.overrides.base_url = Some(base_url);
//! options.overrides.identity_token = Some(IdentitySpec::Env { var: "MY_OIDC_TOKEN".into() });
//! options.disk_cache = false;
//!
//! let provider = Provider::new(options)?;
//! let token = provider.token_blocking(false)?;
//! assert!(token.token.expose().starts_with("sk-ant-oat01-"));
//! assert!(!format!("{token:?}").contains("sk-ant-oat01-")); // Debug never shows it
//! // Send it as `Authorization: Bearer …` with `anthropic-beta: oauth-2025-04-20`
//! // (`anthropic_wif_core::api::OAUTH_BETA`).
//! # Ok(())
//! # }
//! # mod doc_support {
//! #     use std::io::{BufRead, BufReader, Read, Write};
//! #     use base64::Engine;
//! #     /// A one-request stand-in for `POST /v1/oauth/token` on loopback, and an unsigned JWT.
//! #     pub fn token_endpoint() -> (String, String) {
//! #         let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! #         let base_url = format!("http://{}", listener.local_addr().unwrap());
//! #         std::thread::spawn(move || {
//! #             let (stream, _) = listener.accept().unwrap();
//! #             let mut reader = BufReader::new(stream);
//! #             let mut length = 0;
//! #             loop {
//! #                 let mut line = String::new();
//! #                 reader.read_line(&mut line).unwrap();
//! #                 if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") { length = v.trim().parse().unwrap(); }
//! #                 if line == "\r\n" { break; }
//! #             }
//! #             let mut body = vec![0; length];
//! #             reader.read_exact(&mut body).unwrap();
//! #             assert!(String::from_utf8(body).unwrap().contains("jwt-bearer"));
//! #             let answer = r#"{"access_token":"sk-ant-oat01-example","token_type":"Bearer","expires_in":3600}"#;
//! #             write!(reader.get_mut(), "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}", answer.len()).unwrap();
//! #         });
//! #         let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
//! #         let now = anthropic_wif_core::now_unix();
//! #         let claims = serde_json::json!({"iss": "https://issuer.example", "sub": "doc", "aud": "https://api.anthropic.com",
//! #             "iat": now, "exp": now + 600, "jti": format!("doc-{}-{now}", std::process::id())});
//! #         (base_url, format!("{}.{}.c2ln", b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})), b64(claims)))
//! #     }
//! # }
//! ```

// The engine never writes to stdout: that belongs to the faces (a credential
// process's stdout is the one place a secret may go).
#![cfg_attr(not(test), deny(clippy::print_stdout))]
#![warn(missing_docs)]

pub mod api;
pub mod cache;
pub(crate) mod clock;
pub mod config;
pub mod diag;
pub mod doctor;
pub(crate) mod env;
pub mod error;
pub(crate) mod exchange;
#[doc(hidden)]
pub mod fuzz_api;
pub mod identity;
pub(crate) mod json;
pub mod jwt;
pub(crate) mod option_table;
pub mod options;
pub mod process;
pub(crate) mod provider;
pub mod runtime;
pub mod schema;
pub(crate) mod secret;
pub mod trusted;
pub mod url;
pub(crate) mod version;

#[cfg(test)]
mod proptests;

pub use cache::policy::HandOutMargin;
pub use clock::now_unix;
pub use clock::utc_civil;
pub use env::Env;
pub use error::{Error, ErrorKind, Result};
pub use exchange::RetryPolicy;
pub use provider::{AccessToken, Exchanged, Provider, ProviderOptions, DEFAULT_ROTATION_WAIT};
pub use secret::Secret;
pub use version::VERSION;
