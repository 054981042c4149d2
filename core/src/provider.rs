//! Identity + exchange + caches: the one entry point every face uses.
//!
//! `token()` looks in memory (warm path, no I/O), then on disk (the file the
//! official SDKs share), then takes the cross-process lock, looks on disk
//! again (another process may have just exchanged), and only then fetches a
//! fresh identity token and exchanges it, writing the result back. N threads
//! or N processes asking at once therefore make one exchange: a correctness
//! matter, because the server accepts each identity JWT only once.
//!
//! The environment is a snapshot ([`Env`]) handed in by the face: the one
//! taken at construction resolves the configuration; identity sources read
//! variables at each exchange (an `env` source, a CI preset, `${VAR}` in a
//! url), so faces that live inside a host program pass a fresh snapshot with
//! every call that may exchange ([`Provider::token_in`]). The warm path reads
//! no environment at all.
//!
//! No identity token is sent that is expired or that this machine already
//! exchanged (cache/consumed.rs, whatever the face). When the source hands
//! back such a token and no cached access token is usable, a source that
//! rotates (a file) is waited for and one that mints is asked again, for at
//! most [`ProviderOptions::rotation_wait`], without holding the cache lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cache::consumed::{self, Claim, Record, Verdict};
use crate::cache::disk::{self, DiskCache, DiskRead, LockGuard};
use crate::cache::memory::MemoryCache;
use crate::cache::policy::{HandOutMargin, Standing, REFRESH_FAILURE_BACKOFF_SECONDS};
use crate::cache::CachedToken;
use crate::config::{self, Env, FederationConfig, Origin, Overrides, Resolution, Resolved};
use crate::diag;
use crate::error::{Error, Result};
use crate::exchange::{self, ExchangeParams, Fate, Presentation, RetryPolicy, TokenResponse};
use crate::identity;
use crate::runtime::NetSettings;
use crate::secret::Secret;

/// Budget of the one attempt made to refresh a token that is still usable.
const QUICK_REFRESH_BUDGET: Duration = Duration::from_secs(10);

/// Default of [`ProviderOptions::rotation_wait`].
pub const DEFAULT_ROTATION_WAIT: Duration = Duration::from_secs(60);
/// What the disk cache offers.
enum FromDisk {
    /// Fresh enough to hand out without refreshing.
    Fresh(CachedToken),
    /// Due for refresh, but still usable if the refresh fails (seconds left).
    Fallback(CachedToken, i64),
    Nothing,
}

/// Everything a [`Provider`] is built from; every face fills it from [`crate::options::Options`].
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    /// The configuration settings; unset ones come from the SDKs' chain.
    pub overrides: Overrides,
    /// The environment the configuration is resolved from (and identity
    /// sources read, unless a call brings a fresher snapshot).
    pub env: Env,
    /// Who is calling (`cli`, `python`, `node`, `proxy`, or a Rust
    /// program's name): the comment of the exchange's User-Agent,
    /// `anthropic-wif/<version> (<client>)`. Nothing else depends on it.
    pub client: String,
    /// Read and write the on-disk cache (and take its lock). Default true.
    pub disk_cache: bool,
    /// How much life a token handed out has left, beyond the refresh
    /// windows. Default [`HandOutMargin::RefreshPolicy`] (what the bindings
    /// use: the SDKs wrap providers in their own cache); the credential
    /// process uses [`HandOutMargin::STREAM_SAFE`], an explicit
    /// `min_remaining` is [`HandOutMargin::AtLeast`].
    pub min_remaining: HandOutMargin,
    /// Retries of the exchange.
    pub retry: RetryPolicy,
    /// Bound on waiting for another exchange of the same cache file (the
    /// in-process queue and the file lock together).
    pub lock_timeout: Duration,
    /// When the identity source hands back a token this machine already
    /// exchanged and no cached access token is usable: how long to wait for
    /// a file to be rotated, or to ask a minting source again, before
    /// failing. Default [`DEFAULT_ROTATION_WAIT`]; faces give it as the option
    /// `rotation_wait` (core/src/option_table.rs, 0 to 600 s).
    pub rotation_wait: Duration,
}

impl ProviderOptions {
    /// Defaults for `client` (see [`ProviderOptions::client`]), resolving
    /// from `env`: a snapshot the face took on its own thread (env.rs);
    /// the engine never reads the process environment itself.
    pub fn new(client: impl Into<String>, env: Env) -> Self {
        ProviderOptions {
            overrides: Overrides::default(),
            env,
            client: client.into(),
            disk_cache: true,
            min_remaining: HandOutMargin::RefreshPolicy,
            retry: RetryPolicy::default(),
            lock_timeout: Duration::from_secs(60),
            rotation_wait: DEFAULT_ROTATION_WAIT,
        }
    }
}

/// What `Provider::exchange_now` did.
#[derive(Debug)]
pub struct Exchanged {
    /// The token endpoint's answer.
    pub response: TokenResponse,
    /// Where the token was cached, or why it could not be: `None` without a
    /// disk cache.
    pub cached: Option<Result<PathBuf>>,
}

/// An access token handed to a caller. `Debug` never shows the token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The access token.
    pub token: Secret,
    /// Unix seconds; `None` for a token that does not expire (static bearer).
    pub expires_at: Option<i64>,
}

impl From<CachedToken> for AccessToken {
    fn from(t: CachedToken) -> Self {
        AccessToken { token: t.access_token, expires_at: t.expires_at }
    }
}

/// The provider. Cheap to clone; clones share caches.
#[derive(Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

struct Inner {
    options: ProviderOptions,
    resolved: Resolved,
    source: Source,
    memory: MemoryCache,
    notice: Option<String>,
}

// One `Source` per provider, behind an `Arc`: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Source {
    Federation {
        config: FederationConfig,
        params: ExchangeParams,
        disk: Option<DiskCache>,
        /// The record of presented identity tokens; `None` when it has no place.
        record: Option<Record>,
    },
    Static {
        token: Secret,
    },
    UserOauth {
        credentials_path: PathBuf,
        profile: String,
    },
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("step", &self.inner.resolved.step)
            .field("client", &self.inner.options.client)
            .finish()
    }
}

impl Provider {
    /// Resolve and validate the configuration (no network I/O).
    pub fn new(options: ProviderOptions) -> Result<Self> {
        diag::init_from(&options.env);
        let resolved = config::resolve(&options.overrides, &options.env)?;
        let mut notice = None;
        let source = match &resolved.resolution {
            Resolution::Federation(cfg) => {
                let params = ExchangeParams {
                    base_url: cfg.base_url.value.clone(),
                    federation_rule_id: cfg.federation_rule_id.value.clone(),
                    organization_id: cfg.organization_id.value.clone(),
                    service_account_id: cfg.service_account_id.as_ref().map(|v| v.value.clone()),
                    workspace_id: cfg.workspace_id.as_ref().map(|v| v.value.clone()),
                    user_agent: crate::version::user_agent(&options.client),
                    net: NetSettings::from_env(&options.env),
                };
                let disk = if options.disk_cache {
                    let path = match &cfg.credentials_path {
                        Some(p) => p.clone(),
                        None => disk::env_cache_path(&options.env, &cache_key_material(cfg))?,
                    };
                    Some(DiskCache::new(path))
                } else {
                    None
                };
                let record = match Record::for_env(&options.env) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        diag::emit(diag::INFO, || format!("no record of presented identity tokens: {e}"));
                        None
                    }
                };
                Source::Federation { config: cfg.clone(), params, disk, record }
            }
            Resolution::ApiKey { origin, .. } => {
                return Err(Error::config(format!(
                    "{origin} is set, so the official SDKs use that static API key and no workload identity \
                     federation; anthropic-wif only hands out federated access tokens. Unset ANTHROPIC_API_KEY, \
                     or pass the federation settings explicitly (flags or constructor arguments) to use federation"
                )));
            }
            Resolution::StaticBearer { token, origin, .. } => {
                notice = Some(format!(
                    "using the static bearer token from {origin}; workload identity federation is not used \
                     (unset ANTHROPIC_AUTH_TOKEN or pass explicit settings to federate)"
                ));
                Source::Static { token: token.clone() }
            }
            Resolution::UserOauth { profile, credentials_path, .. } => {
                Source::UserOauth { credentials_path: credentials_path.clone(), profile: profile.clone() }
            }
        };
        diag::emit(diag::INFO, || format!("configuration: {}", resolved.step));
        Ok(Provider { inner: Arc::new(Inner { options, resolved, source, memory: MemoryCache::new(), notice }) })
    }

    /// What the configuration chain decided (for `-v` and doctor).
    pub fn resolved(&self) -> &Resolved {
        &self.inner.resolved
    }

    /// A message faces should show the user (e.g. a static credential is
    /// used instead of federation), or `None`.
    pub fn notice(&self) -> Option<&str> {
        self.inner.notice.as_deref()
    }

    /// The federation configuration, when federating.
    pub fn federation(&self) -> Option<&FederationConfig> {
        match &self.inner.source {
            Source::Federation { config, .. } => Some(config),
            _ => None,
        }
    }

    /// Every environment variable that holds a secret of this configuration:
    /// the SDKs' (`config::SECRET_ENV_VARS`) and the identity source's
    /// ([`crate::identity::IdentitySpec::secret_env_vars`]). What `exec`
    /// keeps from its command.
    pub fn secret_env_vars(&self) -> Vec<String> {
        let mut vars: Vec<String> = config::SECRET_ENV_VARS.iter().map(|v| v.to_string()).collect();
        if let Some(fed) = self.federation() {
            vars.extend(fed.identity.value.secret_env_vars());
        }
        vars.sort();
        vars.dedup();
        vars
    }

    /// The on-disk cache file in use, if any.
    pub(crate) fn cache_path(&self) -> Option<&Path> {
        match &self.inner.source {
            Source::Federation { disk: Some(d), .. } => Some(d.path()),
            Source::UserOauth { credentials_path, .. } => Some(credentials_path),
            _ => None,
        }
    }

    /// The base URL tokens are exchanged at (and API calls should go to).
    pub fn base_url(&self) -> Option<&str> {
        match &self.inner.resolved.resolution {
            Resolution::Federation(cfg) => Some(&cfg.base_url.value),
            Resolution::UserOauth { base_url, .. } => Some(&base_url.value),
            _ => None,
        }
    }

    /// Whether the base URL was pinned by a profile or an explicit setting.
    pub fn base_url_pinned(&self) -> bool {
        match &self.inner.resolved.resolution {
            Resolution::Federation(cfg) => matches!(cfg.base_url.origin, Origin::Explicit(_) | Origin::ProfileFile(_)),
            Resolution::UserOauth { base_url, .. } => {
                matches!(base_url.origin, Origin::Explicit(_) | Origin::ProfileFile(_))
            }
            _ => false,
        }
    }

    /// The in-memory token if it is fresh: no I/O, no runtime (warm path).
    pub fn cached(&self) -> Option<AccessToken> {
        match &self.inner.source {
            Source::Static { token } => Some(AccessToken { token: token.clone(), expires_at: None }),
            _ => self
                .inner
                .memory
                .get_fresh(crate::clock::now_unix(), self.inner.options.min_remaining)
                .map(AccessToken::from),
        }
    }

    /// A token with enough life left, from memory, disk, or a new exchange.
    /// `force_refresh` (after a 401 from the API) skips both caches. Identity
    /// sources read the snapshot taken at construction: for programs that
    /// never change their environment (the CLI, the proxy).
    pub async fn token(&self, force_refresh: bool) -> Result<AccessToken> {
        self.token_in(force_refresh, &self.inner.options.env).await
    }

    /// [`Provider::token`], with identity sources reading `env`: a snapshot
    /// the caller just took of its environment (the bindings take one on the
    /// calling thread whenever the warm path misses). Concurrent callers share
    /// one exchange, made with the snapshot of the caller that started it.
    pub async fn token_in(&self, force_refresh: bool, env: &Env) -> Result<AccessToken> {
        if !force_refresh {
            if let Some(t) = self.cached() {
                return Ok(t);
            }
        }
        match &self.inner.source {
            Source::Static { token } => Ok(AccessToken { token: token.clone(), expires_at: None }),
            Source::UserOauth { credentials_path, profile } => self.user_oauth_token(credentials_path, profile),
            Source::Federation { .. } => {
                let margin = self.inner.options.min_remaining;
                let this = self.clone();
                let env = env.clone();
                let t = self
                    .inner
                    .memory
                    .get_or_refresh(force_refresh, margin, move |force| async move { this.obtain(force, &env).await })
                    .await?;
                Ok(t.into())
            }
        }
    }

    /// [`Provider::token`] from synchronous code, on the shared runtime.
    /// Warm calls return without entering the runtime.
    pub fn token_blocking(&self, force_refresh: bool) -> Result<AccessToken> {
        if !force_refresh {
            if let Some(t) = self.cached() {
                return Ok(t);
            }
            // A fresh token on disk needs no runtime: a credential process that
            // finds one answers without starting the runtime's threads.
            if let Source::Federation { disk: Some(disk), .. } = &self.inner.source {
                if let FromDisk::Fresh(t) = self.judge_disk(disk) {
                    self.inner.memory.insert(t.clone());
                    return Ok(t.into());
                }
            }
        }
        crate::runtime::block_on(self.token(force_refresh))
    }

    /// When the token this provider holds in memory becomes due for refresh
    /// under its hand-out margin (unix seconds; cache/policy.rs), or `None`
    /// when it holds none or one that never expires. A holder that keeps a
    /// token ready on a timer (`anthropic-wif daemon`) sleeps until then and
    /// calls [`Provider::token`] again.
    pub fn refresh_due_at(&self) -> Option<i64> {
        match &self.inner.source {
            Source::Federation { .. } => self.inner.memory.refresh_due_at(self.inner.options.min_remaining),
            _ => None,
        }
    }

    /// How many refreshes of this provider have failed so far, and the last
    /// failure's error (`None` before the first). [`Provider::token`] hands
    /// out a still-usable token when a refresh fails (docs/design.md §5); a
    /// holder that must say why its token was not renewed reads it here.
    pub fn last_refresh_failure(&self) -> Option<(u64, Error)> {
        self.inner.memory.last_failure()
    }

    /// Drop the in-memory token (the next call re-checks disk).
    pub fn invalidate(&self) {
        self.inner.memory.invalidate();
    }

    /// A provider for another deployment (SDK `for_base_url`). A base URL
    /// pinned by a profile or an explicit setting is kept (returns a clone).
    pub fn for_base_url(&self, base_url: &str) -> Result<Provider> {
        let current = self.base_url();
        if self.base_url_pinned() || current.map(|c| same_url(c, base_url)).unwrap_or(true) {
            return Ok(self.clone());
        }
        let mut options = self.inner.options.clone();
        options.overrides.base_url = Some(base_url.to_string());
        Provider::new(options)
    }

    /// Disk, under the lock, or a fresh exchange.
    ///
    /// A cached token that is due for refresh but still above the floor
    /// (cache/policy.rs) is kept as a fallback: the refresh gets one quick
    /// attempt, and when it fails the fallback is served and every process
    /// sharing the cache backs off for [`REFRESH_FAILURE_BACKOFF_SECONDS`]
    /// (recorded in the lock file), so an endpoint that is down is not
    /// hammered by callers that still hold a valid token.
    ///
    /// When the identity source hands back a token that must not be sent
    /// because this machine already exchanged it (or another process is
    /// presenting it), and no usable token is held in memory, this waits
    /// (polling, without the cache lock) up to the rotation wait for the
    /// source to hand back another one (cache/consumed.rs).
    async fn obtain(&self, force: bool, env: &Env) -> Result<CachedToken> {
        let started = std::time::Instant::now();
        let wait = self.inner.options.rotation_wait;
        let mut polls: u32 = 0;
        loop {
            let result = self.obtain_once(force, env).await;
            let Err(error) = &result else { return result };
            let Some(spec) = self.federation().map(|c| &c.identity.value) else { return result };
            // A usable token in memory keeps being served (the memory cache
            // does, on this error); a forced refresh has none (it was refused).
            if !consumed::worth_waiting(error, spec)
                || (!force
                    && self.inner.memory.holds_usable(crate::clock::now_unix(), self.inner.options.min_remaining))
            {
                return result;
            }
            if polls == 0 && !wait.is_zero() {
                diag::emit(diag::INFO, || {
                    format!("waiting for a fresh identity token, at most {:.0} s: {error}", wait.as_secs_f64())
                });
            }
            // A minting source is asked again less and less often; a file (or
            // another process's claim) is looked at often, without the cache
            // lock, until what it hands back may be sent.
            loop {
                let left = wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return result.map_err(|e| consumed::after_waiting(e, spec, started.elapsed().min(wait)));
                }
                polls += 1;
                let renewal = spec.renewal();
                let mints = renewal == identity::Renewal::Mints;
                let pause = if mints { Duration::from_millis(500 << polls.min(4)) } else { Duration::from_millis(250) };
                tokio::time::sleep(pause.min(left)).await;
                if mints {
                    break;
                }
                match self.refused_now(spec, env).await {
                    // Still being presented elsewhere, or consumed in a file that may yet rotate.
                    Some(consumed::State::InFlight) => {}
                    Some(consumed::State::Consumed) if renewal == identity::Renewal::Rotates => {}
                    // Sendable now, or consumed for good: one more pass says which.
                    _ => break,
                }
            }
        }
    }

    /// Why what the identity source hands back now must still not be sent
    /// (consumed, or another process is presenting it), by a look at the
    /// source and the record, claiming nothing; `None` when it may be sent
    /// (or the look failed: the next pass reports it). For sources that do
    /// not mint, where looking costs a file read.
    async fn refused_now(&self, spec: &identity::IdentitySpec, env: &Env) -> Option<consumed::State> {
        let Source::Federation { record: Some(record), .. } = &self.inner.source else { return None };
        let token = identity::fetch(spec, env).await.ok()?;
        let entry = record.lookup(&consumed::Fingerprint::of(token.expose())).ok().flatten()?;
        entry.blocks(crate::clock::now_unix()).then_some(entry.state)
    }

    /// One pass of [`Provider::obtain`].
    async fn obtain_once(&self, force: bool, env: &Env) -> Result<CachedToken> {
        let Source::Federation { config, params, disk, .. } = &self.inner.source else {
            return Err(Error::internal("obtain() on a non-federation provider"));
        };
        let Some(disk) = disk else {
            return self.exchange(config, params, &self.inner.options.retry, env).await.map(cached_token);
        };
        if !force {
            if let FromDisk::Fresh(t) = self.judge_disk(disk) {
                return Ok(t);
            }
        }
        let lock = self.lock(disk).await?;
        let mut fallback = None;
        if !force {
            match self.judge_disk(disk) {
                FromDisk::Fresh(t) => {
                    diag::emit(diag::INFO, || {
                        format!("another process refreshed {}; using its token", disk.path().display())
                    });
                    drop(lock);
                    return Ok(t);
                }
                FromDisk::Fallback(t, left) => fallback = Some((t, left)),
                FromDisk::Nothing => {}
            }
        }
        let Some((old, left)) = fallback else {
            let token = self.exchange(config, params, &self.inner.options.retry, env).await.map(cached_token);
            if let Ok(t) = &token {
                let _ = self.store(disk, lock.as_ref(), t);
            }
            drop(lock);
            return token;
        };

        // A refresh with a still-valid token in hand.
        let now = crate::clock::now_unix();
        if let Some(until) = lock.as_ref().and_then(|l| l.refresh_backoff_until()).filter(|u| *u > now) {
            drop(lock);
            diag::emit(diag::INFO, || {
                format!(
                    "a token refresh failed recently; backing off for {} s more, serving the cached token ({left} s left)",
                    until - now
                )
            });
            let error = Error::unavailable(format!(
                "a token refresh failed less than {REFRESH_FAILURE_BACKOFF_SECONDS} s ago (recorded in {}); \
                 not calling the token endpoint again before then",
                disk.lock_path().display()
            ));
            return self.serve_fallback(old, error);
        }
        let base = &self.inner.options.retry;
        let quick = RetryPolicy {
            max_attempts: 1,
            max_total: base.max_total.min(QUICK_REFRESH_BUDGET),
            timeout: base.timeout.min(QUICK_REFRESH_BUDGET),
            ..base.clone()
        };
        match self.exchange(config, params, &quick, env).await.map(cached_token) {
            Ok(t) => {
                let _ = self.store(disk, lock.as_ref(), &t);
                Ok(t)
            }
            Err(e) => {
                if let Some(l) = &lock {
                    l.set_refresh_backoff_until(Some(crate::clock::now_unix() + REFRESH_FAILURE_BACKOFF_SECONDS));
                }
                drop(lock);
                diag::emit(diag::INFO, || {
                    format!(
                        "token refresh failed ({e}); serving the cached token ({left} s left) and backing off \
                         for {REFRESH_FAILURE_BACKOFF_SECONDS} s"
                    )
                });
                self.serve_fallback(old, e)
            }
        }
    }

    /// Exchange `assertion`, an identity token the caller fetched itself,
    /// once (no retry: it is single-use), under the cache lock, and write the
    /// result to the cache as any exchange does (clearing a recorded refresh
    /// back-off): what `doctor --exchange` does with the token it diagnosed.
    ///
    /// Like every exchange, it refuses (with nothing sent) a token that is
    /// expired or that this machine already exchanged (cache/consumed.rs).
    pub(crate) async fn exchange_now(&self, assertion: Secret) -> Result<Exchanged> {
        let Source::Federation { config, params, disk, record } = &self.inner.source else {
            return Err(Error::config("this configuration does not use workload identity federation"));
        };
        let lock = match disk {
            Some(d) => self.lock(d).await?,
            None => None,
        };
        let by = presenter(disk.as_ref());
        let claim =
            consumed::check(&assertion, &config.identity.value, record.as_ref(), &by, exchange::DEFAULT_TIMEOUT)
                .await?;
        let response = exchange::exchange_once(params, Presented { token: assertion, claim }).await?;
        let token = CachedToken {
            access_token: response.access_token.clone(),
            expires_at: Some(response.expires_at),
            lifetime: Some(response.expires_in),
        };
        let cached = disk.as_ref().map(|d| self.store(d, lock.as_ref(), &token).map(|()| d.path().to_path_buf()));
        drop(lock);
        self.inner.memory.insert(token);
        Ok(Exchanged { response, cached })
    }

    /// The cache's file lock. One task per process and cache file waits for
    /// it; the others queue in memory without a thread each (cache/disk.rs).
    /// A lock that cannot be had at all (read-only or full directory, a
    /// symlink in its place) must not cost the caller its token: `None`, go
    /// on without it. Waiting too long for another holder is an error.
    async fn lock(&self, disk: &DiskCache) -> Result<Option<LockGuard>> {
        match disk.lock_async(self.inner.options.lock_timeout).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if e.error_code() == Some(disk::LOCK_TIMEOUT_CODE) => Err(e),
            Err(e) => {
                diag::emit(diag::INFO, || format!("could not take the cache lock, continuing without it: {e}"));
                Ok(None)
            }
        }
    }

    /// Write a freshly exchanged token to the cache and clear a recorded
    /// refresh back-off (the endpoint answered).
    fn store(&self, disk: &DiskCache, lock: Option<&LockGuard>, t: &CachedToken) -> Result<()> {
        if let Some(l) = lock.filter(|l| l.refresh_backoff_until().is_some()) {
            l.set_refresh_backoff_until(None);
        }
        let written = disk.write(t);
        match &written {
            Ok(()) => diag::emit(diag::INFO, || format!("cached the token in {}", disk.path().display())),
            Err(e) => diag::emit(diag::INFO, || format!("could not cache the token: {e}")),
        }
        written
    }

    /// After a failed or backed-off refresh: when the in-memory cache holds a
    /// still-valid token it serves it itself (and backs off in memory), so
    /// report the error; otherwise (a fresh process) serve the disk token.
    fn serve_fallback(&self, old: CachedToken, error: Error) -> Result<CachedToken> {
        if self.inner.memory.holds_usable(crate::clock::now_unix(), self.inner.options.min_remaining) {
            Err(error)
        } else {
            Ok(old)
        }
    }

    /// The disk cache's token, judged by the refresh policy under this
    /// provider's hand-out margin (cache/policy.rs).
    fn judge_disk(&self, disk: &DiskCache) -> FromDisk {
        match disk.read() {
            DiskRead::Valid(t) => {
                let now = crate::clock::now_unix();
                let remaining = t.expires_at.map_or(i64::MAX, |e| e - now);
                match t.standing(now, self.inner.options.min_remaining) {
                    Standing::Fresh => {
                        if t.expires_at.is_some() {
                            diag::emit(diag::INFO, || {
                                format!("using the cached token from {} ({remaining} s left)", disk.path().display())
                            });
                        }
                        FromDisk::Fresh(t)
                    }
                    standing => {
                        diag::emit(diag::INFO, || {
                            format!("cached token in {} has {remaining} s left; refreshing", disk.path().display())
                        });
                        match standing {
                            Standing::RefreshDue => FromDisk::Fallback(t, remaining),
                            _ => FromDisk::Nothing,
                        }
                    }
                }
            }
            DiskRead::Missing => FromDisk::Nothing,
            DiskRead::Corrupt(reason) | DiskRead::Insecure(reason) => {
                diag::emit(diag::INFO, || format!("ignoring the cache file: {reason}"));
                FromDisk::Nothing
            }
        }
    }

    async fn exchange(
        &self,
        config: &FederationConfig,
        params: &ExchangeParams,
        policy: &RetryPolicy,
        env: &Env,
    ) -> Result<TokenResponse> {
        let Source::Federation { disk, record, .. } = &self.inner.source else {
            return Err(Error::internal("exchange() on a non-federation provider"));
        };
        let spec = &config.identity.value;
        diag::emit(diag::INFO, || {
            format!("exchanging an identity token from {} at {}", spec.describe(), params.base_url)
        });
        let (by, record, hold) = (presenter(disk.as_ref()), record.as_ref(), policy.timeout);
        let by = by.as_str();
        let resp = exchange::exchange_with_retry(params, policy, move || async move {
            consumed::admit(spec, env, record, by, hold).await.map(|(token, claim)| Presented { token, claim })
        })
        .await?;
        diag::emit(diag::INFO, || {
            format!(
                "exchange succeeded: lifetime {} s{}",
                resp.expires_in,
                resp.request_id.as_deref().map(|r| format!(", request-id {r}")).unwrap_or_default()
            )
        });
        Ok(resp)
    }

    fn user_oauth_token(&self, path: &Path, profile: &str) -> Result<AccessToken> {
        let t = disk::read_user_oauth(path)?;
        // Not refreshed by us: usable down to the mandatory window.
        if t.standing(crate::clock::now_unix(), HandOutMargin::RefreshPolicy) == Standing::Unusable {
            return Err(Error::config(format!(
                "profile {profile} uses authentication type user_oauth, but {} holds no unexpired access token; \
                 log in again with your Anthropic tooling (anthropic-wif reads user_oauth tokens but does not refresh them)",
                path.display()
            )));
        }
        Ok(t.into())
    }
}

/// An identity token on its way to the token endpoint, with its claim in the
/// record of presented identity tokens, settled with the attempt's fate.
struct Presented {
    token: Secret,
    claim: Option<Claim>,
}

impl Presentation for Presented {
    fn assertion(&self) -> &Secret {
        &self.token
    }

    async fn settle(self, fate: Fate) -> Option<String> {
        let verdict = match fate {
            Fate::Exchanged => Verdict::Consumed,
            Fate::Refused => Verdict::Presented { refused: true },
            Fate::Unknown => Verdict::Presented { refused: false },
            Fate::NotSent => Verdict::Withdrawn,
        };
        self.claim?.settle(verdict).await
    }
}

/// How the record names the configuration presenting a token: its cache.
fn presenter(disk: Option<&DiskCache>) -> String {
    match disk {
        Some(d) => d.path().display().to_string(),
        None => "(none: the on-disk cache is off)".to_string(),
    }
}

/// The token of an exchange's answer, as the caches hold it.
fn cached_token(resp: TokenResponse) -> CachedToken {
    CachedToken { access_token: resp.access_token, expires_at: Some(resp.expires_at), lifetime: Some(resp.expires_in) }
}

/// Everything that determines the token, never the JWT: the key of the
/// on-disk cache for environment and explicit configurations.
fn cache_key_material(cfg: &FederationConfig) -> String {
    let spec = serde_json::to_string(&cfg.identity.value).unwrap_or_else(|_| cfg.identity.value.describe());
    format!(
        "v1\n{}\n{}\n{}\n{}\n{}\n{}",
        cfg.base_url.value.trim_end_matches('/'),
        cfg.federation_rule_id.value,
        cfg.organization_id.value,
        cfg.service_account_id.as_ref().map(|v| v.value.as_str()).unwrap_or(""),
        cfg.workspace_id.as_ref().map(|v| v.value.as_str()).unwrap_or(""),
        spec
    )
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}
