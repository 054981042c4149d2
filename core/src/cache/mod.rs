//! Caches: the refresh policy ([`policy`]), the in-memory cache ([`memory`])
//! and the on-disk cache shared with the official SDKs, with its
//! cross-process lock ([`disk`]); and the record of the identity tokens this
//! machine presented, which keeps consumed and expired ones from being sent
//! (`consumed`).
//!
//! The provider orchestrates them: memory → disk → lock → re-check disk →
//! exchange → write disk. `memory::MemoryCache::get_or_refresh` runs the
//! refresh closure (which does the disk/lock/exchange part) one at a time.

pub(crate) mod consumed;
pub mod disk;
pub mod memory;
pub mod policy;

pub use disk::{DiskCache, DiskRead};
pub use memory::MemoryCache;
pub use policy::HandOutMargin;

use crate::secret::Secret;

/// A token as the caches hold it.
#[derive(Clone, Debug)]
pub struct CachedToken {
    /// The access token (`sk-ant-oat01-…`, or a static bearer).
    pub access_token: Secret,
    /// Unix seconds; `None` means it never expires (never refreshed).
    pub expires_at: Option<i64>,
    /// The minted lifetime (`expires_in`) when known.
    pub lifetime: Option<i64>,
}
