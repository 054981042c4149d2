//! The engine's version, and the User-Agent built from it.

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The User-Agent of requests the engine makes for `client` (who is
/// calling: `cli`, `python`, … — see `ProviderOptions::client`):
/// `anthropic-wif/<version> (<client>)`.
pub(crate) fn user_agent(client: &str) -> String {
    format!("anthropic-wif/{VERSION} ({client})")
}
