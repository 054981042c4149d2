//! Caches: the in-memory refresh policy ([`memory`]) and the on-disk cache
//! shared with the official SDKs, with its cross-process lock ([`disk`]).

pub mod disk;
pub mod memory;

use crate::secret::Secret;

/// A token as the caches hold it.
#[derive(Clone, Debug)]
pub struct CachedToken {
    pub access_token: Secret,
    /// Unix seconds; `None` means it never expires (never refreshed).
    pub expires_at: Option<i64>,
    /// The minted lifetime (`expires_in`) when known.
    pub lifetime: Option<i64>,
}
