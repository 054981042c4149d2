//! In-memory token cache with single-flight refresh, on the refresh policy
//! of [`super::policy`] (docs/design.md §5).
//!
//! # Policy
//! For a cached token with `remaining = expires_at - now` seconds left, its
//! lifetime (the minted `lifetime`, else `expires_at` minus the time it was
//! stored here) and the caller's [`HandOutMargin`],
//! [`Thresholds::new`](super::policy::Thresholds::new) gives a `refresh`
//! bound and a `floor`:
//!
//! * `expires_at = None`: served forever, never refreshed.
//! * `remaining > refresh`: fresh, served.
//! * `floor < remaining <= refresh` (refresh due, the advisory window): if a
//!   refresh is in flight, or an advisory refresh failed less than
//!   `ADVISORY_BACKOFF_SECONDS` ago (back-off), the old token is served at
//!   once without calling `refresh`. Otherwise this caller refreshes; on
//!   failure it serves the old token (if still usable then) and starts the
//!   back-off.
//! * `remaining <= floor` or no token (mandatory): refresh or fail. With
//!   a refresh in flight the caller waits for it and shares its outcome, token
//!   or error (a failed exchange is not repeated by every waiter).
//!
//! A token that a refresh just produced is handed to the leader and all its
//! waiters as is, even if it has less than a caller's margin: the
//! refresh closure is trusted to return the freshest token there is.
//!
//! # Forced refreshes
//! `force = true` bypasses the cache. Forced callers never take the result of
//! an unforced refresh (that may re-serve the very token the server just
//! rejected from the disk cache): they wait for it to end and then refresh
//! themselves. They do share a *forced* refresh that is in flight when they
//! ask, or that completed after they asked: its token was minted anew and
//! was not handed out before they asked, so it cannot be the token that made
//! them force. Hence N concurrent forced callers (say N requests that all got
//! a 401) make one forced refresh, or two if an unforced one was in flight.
//!
//! [`MemoryCache::invalidate`] drops the token and makes the next refresh
//! forced (the closure receives `true`); an unforced refresh that overlapped
//! the invalidation hands its token to its own callers but does not cache it.
//!
//! # Cancellation
//! If the leader's future is dropped mid-refresh, the flight is released and
//! its waiters start over (one of them becomes the new leader).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

use super::policy::{HandOutMargin, Standing, Thresholds, ADVISORY_BACKOFF_SECONDS};
use super::CachedToken;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};

/// The in-memory cache. `Send + Sync`; share it behind an `Arc`.
pub struct MemoryCache {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("MemoryCache")
            .field("token", &st.token.as_ref().map(|e| (e.token.access_token.masked(), e.token.expires_at)))
            .field("refreshing", &st.inflight.is_some())
            .finish()
    }
}

#[derive(Default)]
struct State {
    token: Option<Entry>,
    inflight: Option<Arc<Flight>>,
    /// Advisory refreshes are skipped until this time (unix seconds).
    backoff_until: i64,
    /// Number of refreshes that have completed (success or failure).
    completions: u64,
    /// Bumped by `invalidate()`.
    epoch: u64,
    /// Set by `invalidate()`: the next refresh is forced.
    force_next: bool,
    /// Refreshes that failed so far, and the last failure's error.
    failures: u64,
    last_error: Option<Error>,
}

struct Entry {
    token: CachedToken,
    /// Lifetime used for the windows: the minted lifetime, else expires_at - stored_at.
    lifetime: i64,
    /// The completion count of the refresh that produced it (0: inserted).
    completion: u64,
    /// Whether that refresh was forced.
    forced: bool,
}

impl Entry {
    fn new(token: CachedToken, now: i64, completion: u64, forced: bool) -> Self {
        let lifetime =
            token.lifetime.filter(|l| *l > 0).or_else(|| token.expires_at.map(|e| e - now)).unwrap_or(0).max(0);
        Entry { token, lifetime, completion, forced }
    }
}

fn standing(entry: &Entry, now: i64, margin: HandOutMargin) -> Standing {
    match entry.token.expires_at {
        None => Standing::Fresh,
        Some(expires_at) => Thresholds::new(entry.lifetime, margin).standing(expires_at.saturating_sub(now)),
    }
}

enum Outcome {
    Done(Result<CachedToken>),
    /// The leader was dropped before its refresh finished.
    Cancelled,
}

struct Flight {
    forced: bool,
    /// Callers waiting on it (diagnostics and tests).
    joined: std::sync::atomic::AtomicUsize,
    /// `State::epoch` when the flight started.
    epoch: u64,
    outcome: OnceLock<Outcome>,
    done: Notify,
}

impl Flight {
    fn finish(&self, outcome: Outcome) {
        let _ = self.outcome.set(outcome);
        self.done.notify_waiters();
    }

    async fn wait_joined(&self) -> &Outcome {
        self.joined.fetch_add(1, Ordering::SeqCst);
        let outcome = self.wait().await;
        self.joined.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn wait(&self) -> &Outcome {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Register before checking, so a finish() in between is not missed.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome.get() {
                return outcome;
            }
            notified.await;
        }
    }
}

enum Step {
    Serve(CachedToken),
    /// Wait for this flight and share its outcome.
    Join(Arc<Flight>),
    /// Wait for this flight to end, then decide again (forced caller behind an unforced flight).
    WaitOut(Arc<Flight>),
    /// Refresh; `fallback` is the old token (and its window lifetime) when
    /// this is an advisory refresh.
    Lead {
        flight: Arc<Flight>,
        fallback: Option<(CachedToken, i64)>,
    },
}

/// Releases the flight if the leader is dropped before finishing.
struct LeaderGuard<'a> {
    cache: &'a MemoryCache,
    flight: Option<Arc<Flight>>,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if let Some(flight) = self.flight.take() {
            let mut st = self.cache.lock();
            if st.inflight.as_ref().is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                st.inflight = None;
            }
            drop(st);
            flight.finish(Outcome::Cancelled);
        }
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCache {
    /// A cache on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// A cache on the given clock (tests use [`crate::clock::ManualClock`]).
    pub(crate) fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryCache { clock, state: Mutex::new(State::default()) }
    }

    /// The cache's current time (unix seconds).
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The warm path: the cached token if it is fresh for a caller with
    /// this `margin` (a token without expiry always is). Sync, no I/O.
    pub(crate) fn get_fresh(&self, now: i64, margin: HandOutMargin) -> Option<CachedToken> {
        let st = self.lock();
        let entry = st.token.as_ref()?;
        (standing(entry, now, margin) == Standing::Fresh).then(|| entry.token.clone())
    }

    /// Whether the cached token may still be handed out under `margin` (it
    /// is fresh or due for refresh, not below the floor): what a failed
    /// advisory refresh of this cache serves.
    pub(crate) fn holds_usable(&self, now: i64, margin: HandOutMargin) -> bool {
        self.lock().token.as_ref().is_some_and(|entry| standing(entry, now, margin) != Standing::Unusable)
    }

    /// How many callers wait on the refresh in flight (0 when none).
    pub fn waiting(&self) -> usize {
        self.lock().inflight.as_ref().map_or(0, |f| f.joined.load(Ordering::SeqCst))
    }

    /// When the cached token becomes due for refresh for a caller with
    /// `margin` (unix seconds: from then on it is no longer fresh), or `None`
    /// with no token or one that never expires. For holders that refresh
    /// ahead of need on a timer (the daemon) instead of on each call.
    pub fn refresh_due_at(&self, margin: HandOutMargin) -> Option<i64> {
        let st = self.lock();
        let entry = st.token.as_ref()?;
        let expires_at = entry.token.expires_at?;
        Some(expires_at.saturating_sub(Thresholds::new(entry.lifetime, margin).refresh))
    }

    /// How many refreshes have failed so far (a failed advisory refresh too,
    /// whose caller was served the old token) and the last failure's error;
    /// `None` before the first failure.
    pub(crate) fn last_failure(&self) -> Option<(u64, Error)> {
        let st = self.lock();
        st.last_error.clone().map(|e| (st.failures, e))
    }

    /// The cached token, whatever its state (status displays; no policy).
    #[cfg(test)]
    pub(crate) fn peek(&self) -> Option<CachedToken> {
        self.lock().token.as_ref().map(|e| e.token.clone())
    }

    /// Put a token in the cache (e.g. one read from disk), replacing any.
    pub fn insert(&self, token: CachedToken) {
        let now = self.clock.now();
        let mut st = self.lock();
        st.token = Some(Entry::new(token, now, 0, false));
    }

    /// Drop the cached token (after a 401). The next refresh is forced, so
    /// the refresh closure bypasses the disk cache that may hold the same token.
    pub fn invalidate(&self) {
        let mut st = self.lock();
        st.token = None;
        st.force_next = true;
        st.epoch += 1;
    }

    /// A token per the policy in the module docs. `refresh(force)` is called
    /// at most once per call, and only by the single-flight leader; `force`
    /// tells it to bypass any other cache (disk) and exchange anew.
    pub(crate) async fn get_or_refresh<F, Fut>(
        &self,
        force: bool,
        margin: HandOutMargin,
        refresh: F,
    ) -> Result<CachedToken>
    where
        F: FnOnce(bool) -> Fut,
        Fut: Future<Output = Result<CachedToken>>,
    {
        let mut refresh = Some(refresh);
        // Forced callers: refreshes completed before this count do not count.
        let ticket = self.lock().completions;
        loop {
            let step = self.decide(force, margin, ticket);
            match step {
                Step::Serve(token) => return Ok(token),
                Step::Join(flight) => match flight.wait_joined().await {
                    Outcome::Done(result) => return result.clone(),
                    Outcome::Cancelled => continue,
                },
                Step::WaitOut(flight) => {
                    flight.wait_joined().await;
                    continue;
                }
                Step::Lead { flight, fallback } => {
                    let Some(refresh) = refresh.take() else {
                        // Unreachable: a caller leads at most once, then returns.
                        return Err(Error::internal("token refresh was attempted twice in one call"));
                    };
                    let mut guard = LeaderGuard { cache: self, flight: Some(flight.clone()) };
                    let result = refresh(flight.forced).await;
                    guard.flight = None;
                    return self.complete(&flight, result, fallback, margin);
                }
            }
        }
    }

    fn decide(&self, force: bool, margin: HandOutMargin, ticket: u64) -> Step {
        let now = self.clock.now();
        let mut st = self.lock();
        if force {
            if let Some(entry) = &st.token {
                if entry.forced && entry.completion > ticket {
                    return Step::Serve(entry.token.clone());
                }
            }
            return match &st.inflight {
                Some(f) if f.forced => Step::Join(f.clone()),
                Some(f) => Step::WaitOut(f.clone()),
                None => self.start(&mut st, true, None),
            };
        }
        let mut fallback = None;
        if let Some(entry) = &st.token {
            match standing(entry, now, margin) {
                Standing::Fresh => return Step::Serve(entry.token.clone()),
                Standing::RefreshDue => {
                    if st.inflight.is_some() || now < st.backoff_until {
                        return Step::Serve(entry.token.clone());
                    }
                    fallback = Some((entry.token.clone(), entry.lifetime));
                }
                Standing::Unusable => {}
            }
        }
        if let Some(f) = &st.inflight {
            // An unforced refresh that started before invalidate() may bring
            // back the rejected token: let it end, then refresh (forced).
            if !f.forced && f.epoch != st.epoch {
                return Step::WaitOut(f.clone());
            }
            return Step::Join(f.clone());
        }
        let forced = st.force_next;
        self.start(&mut st, forced, fallback)
    }

    fn start(&self, st: &mut State, forced: bool, fallback: Option<(CachedToken, i64)>) -> Step {
        let flight = Arc::new(Flight {
            forced,
            joined: Default::default(),
            epoch: st.epoch,
            outcome: OnceLock::new(),
            done: Notify::new(),
        });
        st.inflight = Some(flight.clone());
        Step::Lead { flight, fallback }
    }

    fn complete(
        &self,
        flight: &Arc<Flight>,
        result: Result<CachedToken>,
        fallback: Option<(CachedToken, i64)>,
        margin: HandOutMargin,
    ) -> Result<CachedToken> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.completions += 1;
        if st.inflight.as_ref().is_some_and(|f| Arc::ptr_eq(f, flight)) {
            st.inflight = None;
        }
        let answer = match &result {
            Ok(token) => {
                // An unforced refresh that overlapped invalidate() may have
                // re-served the rejected token: hand it out, do not cache it.
                if flight.forced || flight.epoch == st.epoch {
                    let completion = st.completions;
                    st.token = Some(Entry::new(token.clone(), now, completion, flight.forced));
                    if flight.forced {
                        st.force_next = false;
                    }
                }
                Ok(token.clone())
            }
            Err(err) => {
                st.failures += 1;
                st.last_error = Some(err.clone());
                match fallback {
                    Some((old, lifetime)) => {
                        st.backoff_until = now + ADVISORY_BACKOFF_SECONDS;
                        // Serve the old token only if it is still usable now (the
                        // failed refresh may have taken a while).
                        let old = Entry { token: old, lifetime, completion: 0, forced: false };
                        if standing(&old, now, margin) != Standing::Unusable {
                            Ok(old.token)
                        } else {
                            Err(err.clone())
                        }
                    }
                    None => Err(err.clone()),
                }
            }
        };
        drop(st);
        flight.finish(Outcome::Done(result));
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::secret::Secret;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    const T0: i64 = 1_800_000_000;
    /// No margin beyond the refresh windows.
    const NONE: HandOutMargin = HandOutMargin::RefreshPolicy;

    fn tok(name: &str, expires_at: Option<i64>, lifetime: Option<i64>) -> CachedToken {
        CachedToken { access_token: Secret::new(format!("sk-ant-oat01-{name}")), expires_at, lifetime }
    }

    fn setup() -> (Arc<ManualClock>, Arc<MemoryCache>) {
        let clock = Arc::new(ManualClock::new(T0));
        let cache = Arc::new(MemoryCache::with_clock(clock.clone()));
        (clock, cache)
    }

    /// A refresh closure that counts calls and returns a token of `lifetime` from `clock`.
    fn minting(
        count: &Arc<AtomicUsize>,
        clock: &Arc<ManualClock>,
        lifetime: i64,
    ) -> impl FnOnce(bool) -> std::future::Ready<Result<CachedToken>> {
        let count = count.clone();
        let now = clock.now();
        move |_force| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            std::future::ready(Ok(tok(&format!("t{n}"), Some(now + lifetime), Some(lifetime))))
        }
    }

    fn failing(count: &Arc<AtomicUsize>) -> impl FnOnce(bool) -> std::future::Ready<Result<CachedToken>> {
        let count = count.clone();
        move |_force| {
            count.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Err(Error::unavailable("token endpoint unreachable")))
        }
    }

    /// Wait (bounded) until `n` callers wait on the refresh in flight.
    async fn until_waiting(cache: &MemoryCache, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cache.waiting() < n {
            assert!(std::time::Instant::now() < deadline, "only {} of {n} callers queued", cache.waiting());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn name(t: &CachedToken) -> &str {
        t.access_token.expose().trim_start_matches("sk-ant-oat01-")
    }

    #[tokio::test]
    async fn fresh_advisory_mandatory_and_backoff() {
        let (clock, cache) = setup();
        let calls = Arc::new(AtomicUsize::new(0));
        // Empty: mandatory refresh.
        let t = cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        assert_eq!((name(&t), calls.load(Ordering::SeqCst)), ("t1", 1));
        assert_eq!(cache.get_fresh(clock.now(), NONE).map(|t| name(&t).to_string()).as_deref(), Some("t1"));

        // 480 s left (> 120): fresh, no refresh.
        clock.advance(120);
        let t = cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        assert_eq!((name(&t), calls.load(Ordering::SeqCst)), ("t1", 1));

        // 100 s left: advisory. A failure serves the old token and backs off 5 s.
        clock.set(T0 + 500);
        assert!(cache.get_fresh(clock.now(), NONE).is_none());
        let t = cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap();
        assert_eq!((name(&t), calls.load(Ordering::SeqCst)), ("t1", 2));
        for dt in 0..5 {
            clock.set(T0 + 500 + dt);
            let t = cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap();
            assert_eq!(name(&t), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "no refresh during back-off");
        // After 5 s it tries again; this time it works.
        clock.set(T0 + 505);
        let t = cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        assert_eq!((name(&t), calls.load(Ordering::SeqCst)), ("t3", 3));

        // Mandatory (< 30 s left of t3 = T0+505+600): refresh or fail.
        clock.set(T0 + 505 + 580);
        let err = cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // A mandatory failure does not start a back-off: the next call tries again.
        let err = cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        let t = cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        assert_eq!(name(&t), "t6");
    }

    #[tokio::test]
    async fn advisory_failure_after_entering_mandatory_is_an_error() {
        let (clock, cache) = setup();
        cache.insert(tok("old", Some(T0 + 100), Some(600)));
        // The refresh takes 80 s (fake): the old token is then in its mandatory window.
        let c2 = clock.clone();
        let err = cache
            .get_or_refresh(false, NONE, move |_| {
                c2.advance(80);
                std::future::ready(Err(Error::unavailable("down")))
            })
            .await
            .unwrap_err();
        assert_eq!(err.message(), "down");
    }

    #[tokio::test]
    async fn short_token_serves_at_least_half_its_life() {
        let (clock, cache) = setup();
        let calls = Arc::new(AtomicUsize::new(0));
        cache.get_or_refresh(false, NONE, minting(&calls, &clock, 60)).await.unwrap();
        // 60 s token: advisory 30, mandatory 15.
        for dt in 0..30 {
            clock.set(T0 + dt);
            assert!(cache.get_fresh(clock.now(), NONE).is_some(), "fresh at +{dt}");
            cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        clock.set(T0 + 30);
        assert!(cache.get_fresh(clock.now(), NONE).is_none());
        // Advisory until 15 s left.
        let t = cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap();
        assert_eq!(name(&t), "t1");
        clock.set(T0 + 45);
        cache.get_or_refresh(false, NONE, failing(&calls)).await.unwrap_err();
    }

    #[tokio::test]
    async fn lifetime_unknown_uses_time_stored() {
        let (clock, cache) = setup();
        cache.insert(tok("disk", Some(T0 + 60), None));
        assert!(cache.get_fresh(T0 + 29, NONE).is_some());
        assert!(cache.get_fresh(T0 + 31, NONE).is_none());
        let _ = clock;
    }

    #[tokio::test]
    async fn no_expiry_never_refreshes() {
        let (clock, cache) = setup();
        cache.insert(tok("static", None, None));
        let calls = Arc::new(AtomicUsize::new(0));
        clock.advance(10 * 365 * 86400);
        let t = cache.get_or_refresh(false, HandOutMargin::AtLeast(1_000_000), failing(&calls)).await.unwrap();
        assert_eq!(name(&t), "static");
        assert!(cache.get_fresh(clock.now(), HandOutMargin::AtLeast(1_000_000)).is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn min_remaining_raises_the_floor() {
        let (clock, cache) = setup();
        cache.insert(tok("a", Some(T0 + 3600), Some(3600)));
        assert!(cache.get_fresh(T0 + 3000, HandOutMargin::AtLeast(300)).is_some()); // 600 left > 300 + 90
        assert!(cache.get_fresh(T0 + 3250, HandOutMargin::AtLeast(300)).is_none()); // 350 left: advisory for this caller
        assert!(cache.get_fresh(T0 + 3250, NONE).is_some()); // but fresh for one without a floor
        let calls = Arc::new(AtomicUsize::new(0));
        clock.set(T0 + 3250);
        let t = cache.get_or_refresh(false, HandOutMargin::AtLeast(300), failing(&calls)).await.unwrap();
        assert_eq!(name(&t), "a", "advisory failure serves the old token");
        clock.set(T0 + 3350); // 250 left < 300: unusable for this caller
        cache.get_or_refresh(false, HandOutMargin::AtLeast(300), failing(&calls)).await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let t = cache.get_or_refresh(false, HandOutMargin::AtLeast(300), minting(&calls, &clock, 3600)).await.unwrap();
        assert_eq!(name(&t), "t3");
    }

    #[tokio::test]
    async fn a_timer_holder_learns_when_the_token_is_due_and_why_a_refresh_failed() {
        let (clock, cache) = setup();
        assert_eq!(cache.refresh_due_at(HandOutMargin::RotatedFile), None);
        assert!(cache.last_failure().is_none());
        let calls = Arc::new(AtomicUsize::new(0));
        cache.get_or_refresh(false, HandOutMargin::RotatedFile, minting(&calls, &clock, 600)).await.unwrap();
        // The policy's bounds for a 600 s token: due 360 s before expiry for the rotated file, 120 s for the SDKs.
        assert_eq!(cache.refresh_due_at(HandOutMargin::RotatedFile), Some(T0 + 240));
        assert_eq!(cache.refresh_due_at(NONE), Some(T0 + 480));
        clock.set(T0 + 239);
        assert!(cache.get_fresh(clock.now(), HandOutMargin::RotatedFile).is_some());
        clock.set(T0 + 240);
        assert!(cache.get_fresh(clock.now(), HandOutMargin::RotatedFile).is_none());
        // A failed advisory refresh serves the old token, and the failure is kept for the holder to report.
        let t = cache.get_or_refresh(false, HandOutMargin::RotatedFile, failing(&calls)).await.unwrap();
        assert_eq!(name(&t), "t1");
        let (n, e) = cache.last_failure().expect("recorded");
        assert_eq!(n, 1);
        assert!(e.to_string().contains("token endpoint unreachable"), "{e}");
        clock.advance(ADVISORY_BACKOFF_SECONDS);
        cache.get_or_refresh(false, HandOutMargin::RotatedFile, failing(&calls)).await.unwrap();
        assert_eq!(cache.last_failure().map(|(n, _)| n), Some(2));
        // A token that never expires is never due.
        cache.insert(tok("static", None, None));
        assert_eq!(cache.refresh_due_at(HandOutMargin::RotatedFile), None);
    }

    /// A refresh that blocks until released, and tells when it has started.
    struct Gate {
        started: Arc<Notify>,
        release: Arc<tokio::sync::Semaphore>,
        calls: Arc<AtomicUsize>,
        forced_calls: Arc<AtomicUsize>,
    }

    impl Gate {
        fn new() -> Self {
            Gate {
                started: Arc::new(Notify::new()),
                release: Arc::new(tokio::sync::Semaphore::new(0)),
                calls: Arc::new(AtomicUsize::new(0)),
                forced_calls: Arc::new(AtomicUsize::new(0)),
            }
        }
        fn refresh(
            &self,
            expires_at: i64,
        ) -> impl FnOnce(bool) -> std::pin::Pin<Box<dyn Future<Output = Result<CachedToken>> + Send>> + Send + 'static
        {
            let started = self.started.clone();
            let release = self.release.clone();
            let calls = self.calls.clone();
            let forced_calls = self.forced_calls.clone();
            move |force| {
                Box::pin(async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if force {
                        forced_calls.fetch_add(1, Ordering::SeqCst);
                    }
                    started.notify_one();
                    let permit = release.acquire().await.map_err(|_| Error::internal("gate closed"))?;
                    permit.forget();
                    Ok(tok(&format!("g{n}{}", if force { "f" } else { "" }), Some(expires_at), Some(600)))
                })
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mandatory_single_flight_64_tasks_one_refresh() {
        let (clock, cache) = setup();
        let gate = Arc::new(Gate::new());
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tasks.push(tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await }));
        }
        gate.started.notified().await;
        until_waiting(&cache, 63).await;
        gate.release.add_permits(64);
        for t in tasks {
            let t = t.await.unwrap().unwrap();
            assert_eq!(name(&t), "g1");
        }
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn mandatory_waiters_share_a_failure() {
        let (_clock, cache) = setup();
        let calls = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(Notify::new());
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, calls, started, release) = (cache.clone(), calls.clone(), started.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_refresh(false, NONE, move |_| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        started.notify_one();
                        let _ = release.acquire().await;
                        Err::<CachedToken, _>(Error::denied("Authentication failed"))
                    })
                    .await
            }));
        }
        started.notified().await;
        until_waiting(&cache, 15).await;
        release.add_permits(16);
        let mut errors = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                errors += 1;
            }
        }
        assert_eq!(errors, 16);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the waiters shared the leader's error");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn advisory_refresh_serves_old_token_to_others_at_once() {
        let (clock, cache) = setup();
        cache.insert(tok("old", Some(T0 + 100), Some(600)));
        let gate = Arc::new(Gate::new());
        let leader = {
            let cache = cache.clone();
            let refresh = gate.refresh(T0 + 700);
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await })
        };
        gate.started.notified().await;
        // The refresh hangs; 63 others get the old token without waiting.
        let mut tasks = Vec::new();
        for _ in 0..63 {
            let cache = cache.clone();
            let refresh = gate.refresh(T0 + 700);
            tasks.push(tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await }));
        }
        for t in tasks {
            let t = tokio::time::timeout(Duration::from_secs(30), t).await.unwrap().unwrap().unwrap();
            assert_eq!(name(&t), "old");
        }
        gate.release.add_permits(1);
        assert_eq!(name(&leader.await.unwrap().unwrap()), "g1");
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
        assert_eq!(name(&cache.get_fresh(clock.now(), NONE).unwrap()), "g1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn forced_callers_share_one_forced_refresh() {
        let (clock, cache) = setup();
        cache.insert(tok("rejected", Some(T0 + 600), Some(600)));
        let gate = Arc::new(Gate::new());
        let spawn = |gate: &Arc<Gate>| {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tokio::spawn(async move { cache.get_or_refresh(true, NONE, refresh).await })
        };
        let first = spawn(&gate);
        gate.started.notified().await;
        let others: Vec<_> = (0..63).map(|_| spawn(&gate)).collect();
        until_waiting(&cache, 63).await;
        gate.release.add_permits(64);
        assert_eq!(name(&first.await.unwrap().unwrap()), "g1f");
        for t in others {
            assert_eq!(name(&t.await.unwrap().unwrap()), "g1f");
        }
        assert_eq!(gate.calls.load(Ordering::SeqCst), 1);
        // Later forced calls do refresh again: that token may be the rejected one now.
        let again = spawn(&gate);
        gate.started.notified().await;
        gate.release.add_permits(1);
        assert_eq!(name(&again.await.unwrap().unwrap()), "g2f");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn forced_callers_do_not_take_an_unforced_result() {
        let (clock, cache) = setup();
        let gate = Arc::new(Gate::new());
        let unforced = {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await })
        };
        gate.started.notified().await;
        let forced: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                let refresh = gate.refresh(clock.now() + 600);
                tokio::spawn(async move { cache.get_or_refresh(true, NONE, refresh).await })
            })
            .collect();
        until_waiting(&cache, 8).await;
        gate.release.add_permits(64);
        assert_eq!(name(&unforced.await.unwrap().unwrap()), "g1");
        for t in forced {
            assert_eq!(name(&t.await.unwrap().unwrap()), "g2f");
        }
        assert_eq!(gate.calls.load(Ordering::SeqCst), 2);
        assert_eq!(gate.forced_calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalidate_forces_the_next_refresh() {
        let (clock, cache) = setup();
        let calls = Arc::new(AtomicUsize::new(0));
        cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        cache.invalidate();
        assert!(cache.get_fresh(clock.now(), NONE).is_none());
        let forced_seen = Arc::new(AtomicUsize::new(0));
        let fs = forced_seen.clone();
        let t = cache
            .get_or_refresh(false, NONE, move |force| {
                if force {
                    fs.fetch_add(1, Ordering::SeqCst);
                }
                std::future::ready(Ok(tok("new", Some(T0 + 600), Some(600))))
            })
            .await
            .unwrap();
        assert_eq!(name(&t), "new");
        assert_eq!(forced_seen.load(Ordering::SeqCst), 1);
        // Once a forced refresh succeeded, refreshes are unforced again.
        cache.invalidate();
        cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await.unwrap();
        let fs = forced_seen.clone();
        clock.advance(590);
        cache
            .get_or_refresh(false, NONE, move |force| {
                if force {
                    fs.fetch_add(1, Ordering::SeqCst);
                }
                std::future::ready(Ok(tok("x", Some(T0 + 1200), Some(600))))
            })
            .await
            .unwrap();
        assert_eq!(forced_seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unforced_refresh_overlapping_invalidate_is_not_cached() {
        let (clock, cache) = setup();
        let gate = Arc::new(Gate::new());
        let leader = {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await })
        };
        gate.started.notified().await;
        cache.invalidate();
        // A caller arriving after the invalidation does not take that result:
        // it waits for it to end, then makes a forced refresh.
        let late = {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await })
        };
        until_waiting(&cache, 1).await;
        gate.release.add_permits(2);
        assert_eq!(name(&leader.await.unwrap().unwrap()), "g1");
        assert_eq!(name(&late.await.unwrap().unwrap()), "g2f");
        assert_eq!(name(&cache.peek().unwrap()), "g2f");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cancelled_leader_releases_waiters() {
        let (clock, cache) = setup();
        let gate = Arc::new(Gate::new());
        let leader = {
            let cache = cache.clone();
            let refresh = gate.refresh(clock.now() + 600);
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, refresh).await })
        };
        gate.started.notified().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let waiter = {
            let (cache, calls, clock) = (cache.clone(), calls.clone(), clock.clone());
            tokio::spawn(async move { cache.get_or_refresh(false, NONE, minting(&calls, &clock, 600)).await })
        };
        until_waiting(&cache, 1).await;
        leader.abort();
        let t = tokio::time::timeout(Duration::from_secs(30), waiter).await.unwrap().unwrap().unwrap();
        assert_eq!(name(&t), "t1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let cache = MemoryCache::new();
        cache.insert(tok("supersecretvalue1234", Some(T0), None));
        let s = format!("{cache:?}");
        assert!(!s.contains("supersecret"), "{s}");
    }

    #[test]
    fn is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<MemoryCache>();
    }

    #[test]
    fn get_or_refresh_future_is_send() {
        fn check<T: Send>(_: T) {}
        let cache = MemoryCache::new();
        check(cache.get_or_refresh(false, NONE, |_| async { Err::<CachedToken, _>(Error::internal("x")) }));
    }
}
