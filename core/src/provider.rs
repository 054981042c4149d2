//! Identity + exchange + caches: the one entry point every face uses.

use crate::config::{Env, Overrides};
use crate::error::Result;
use crate::exchange::RetryPolicy;
use crate::secret::Secret;

/// Which face is calling: sets the User-Agent and the default hand-out margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Cli,
    Python,
    Node,
    Proxy,
}

impl Face {
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Cli => "cli",
            Face::Python => "python",
            Face::Node => "node",
            Face::Proxy => "proxy",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProviderOptions {
    pub overrides: Overrides,
    pub env: Env,
    pub face: Face,
    /// Read and write the on-disk cache (and take its lock). Default true.
    pub disk_cache: bool,
    /// A token handed out has at least this many seconds left. `None`: the
    /// face default (CLI: min(300, lifetime/2); bindings: the refresh policy only).
    pub min_remaining: Option<i64>,
    pub retry: RetryPolicy,
    /// Bound on waiting for another process's exchange (the file lock).
    pub lock_timeout: std::time::Duration,
}

impl ProviderOptions {
    pub fn new(face: Face) -> Self {
        ProviderOptions {
            overrides: Overrides::default(),
            env: Env::Process,
            face,
            disk_cache: true,
            min_remaining: None,
            retry: RetryPolicy::default(),
            lock_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// An access token handed to a caller.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: Secret,
    /// Unix seconds; `None` for a token that does not expire (static bearer).
    pub expires_at: Option<i64>,
}

/// The provider. Cheap to clone; clones share caches.
#[derive(Clone)]
pub struct Provider {
    _private: (),
}

impl Provider {
    pub fn new(options: ProviderOptions) -> Result<Self> {
        let _ = options;
        Err(crate::Error::internal("Provider is not built yet"))
    }

    /// A token with enough life left, from memory, disk, or a new exchange.
    pub async fn token(&self, force_refresh: bool) -> Result<AccessToken> {
        let _ = force_refresh;
        Err(crate::Error::internal("Provider is not built yet"))
    }

    /// [`Provider::token`] from synchronous code, on the shared runtime.
    pub fn token_blocking(&self, force_refresh: bool) -> Result<AccessToken> {
        crate::runtime::block_on(self.token(force_refresh))
    }

    /// The in-memory token if it is fresh: no I/O, no runtime (warm path).
    pub fn cached(&self) -> Option<AccessToken> {
        None
    }

    /// A provider for another deployment (SDK `for_base_url`); a profile or
    /// explicit setting that pins the base URL keeps it.
    pub fn for_base_url(&self, base_url: &str) -> Result<Provider> {
        let _ = base_url;
        Err(crate::Error::internal("Provider is not built yet"))
    }

    /// Drop the cached token (memory; the next call re-checks disk).
    pub fn invalidate(&self) {}
}
