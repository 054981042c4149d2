//! Caches: the in-memory refresh policy ([`memory`]) and the on-disk cache
//! shared with the official SDKs, with its cross-process lock ([`disk`]).
//!
//! The provider orchestrates them: memory → disk → lock → re-check disk →
//! exchange → write disk. [`memory::MemoryCache::get_or_refresh`] runs the
//! refresh closure (which does the disk/lock/exchange part) one at a time.

pub mod disk;
pub mod memory;
pub mod policy;

pub use disk::{env_cache_path, read_user_oauth, DiskCache, DiskRead, LockGuard};
pub use memory::{Clock, ManualClock, MemoryCache, SystemClock};
pub use policy::HandOutMargin;

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

/// The refresh windows for a token of `lifetime` seconds (SPEC §5), scaled so
/// that a short token serves at least half its life:
/// `(advisory, mandatory) = (min(120, lifetime/2), min(30, lifetime/4))`.
pub fn refresh_windows(lifetime: i64) -> (i64, i64) {
    let lifetime = lifetime.max(0);
    (ADVISORY_REFRESH_SECONDS.min(lifetime / 2), MANDATORY_REFRESH_SECONDS.min(lifetime / 4))
}

/// The SDKs' advisory refresh threshold (seconds before expiry).
pub const ADVISORY_REFRESH_SECONDS: i64 = 120;
/// The SDKs' mandatory refresh threshold (seconds before expiry); also the
/// margin the SDKs apply when reading the disk cache.
pub const MANDATORY_REFRESH_SECONDS: i64 = 30;
/// After a failed advisory refresh, serve the old token this long before trying again.
pub const ADVISORY_BACKOFF_SECONDS: i64 = 5;
