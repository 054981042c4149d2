//! The proxy's access token: obtained ahead of need, replaced before it gets
//! too short for a stream, and re-obtained once when upstream refuses it.
//!
//! Requests read the current token without waiting (a mutex held for a
//! clone). When to stop forwarding with a token, when to replace it and how
//! long to wait after a failure are decided by [`schedule`] and [`backoff`]
//! alone, from core's refresh policy (`anthropic_wif_core::cache::policy`); a background task ([`Tokens::run`])
//! acts on them, and wakes whenever the state changes (a failure recorded by
//! a request, a token dropped after a 401), so a retry never waits for client
//! traffic. Only when there is no usable token does a request wait, for one
//! exchange shared by all waiting requests; while backing off with no usable
//! token, requests are refused at once with the last error (fail closed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anthropic_wif_core::cache::policy::{self, HandOutMargin, Thresholds};
use anthropic_wif_core::{now_unix, AccessToken, Error, Provider};
use hyper::header::HeaderValue;
use serde_json::json;
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use zeroize::Zeroizing;

use crate::log::{self, LogFormat};
use crate::metrics::Metrics;

/// A token minted after a 401 that is refused again within this time is not
/// re-exchanged again: the refusal is not about the token's age.
const REJECT_AGAIN_WINDOW: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The refresh policy. Every number the proxy's token handling uses comes from
// these two functions, and they are built on core's rules
// (`anthropic_wif_core::cache::refresh_windows` and the provider's back-off
// constants), not on a policy of their own; issue #11 moves every face onto
// one policy in core/src/cache/, and this is the one place to replace then.

/// `(floor, refresh_at)` for a token that expires at `exp` and had `lifetime`
/// seconds when the proxy first saw it, from core's refresh policy with the
/// stream allowance as a hard margin ([`Thresholds::strict`]).
///
/// - It is forwarded while it has more than `floor` left:
///   `floor = max(mandatory, min(allowance, lifetime / 2))`, i.e. the stream
///   allowance (so a stream started with it has that long to run), capped at
///   half the lifetime (so a 60-second token serves half its life) and never
///   below the mandatory window.
/// - It is replaced from `refresh_at` on: the advisory lead ahead of the floor
///   (90 s for long tokens, 15 s for 60-second ones), at least a second, so no
///   request waits for an exchange in the steady state and a failed refresh
///   has time for retries.
pub(crate) fn schedule(allowance: i64, lifetime: i64, exp: i64) -> (i64, i64) {
    let t = Thresholds::strict(lifetime, HandOutMargin::StreamSafe { allowance });
    (t.floor, exp - t.refresh.max(t.floor + 1))
}

/// How long to wait after `failures` (>= 1) consecutive failed attempts to
/// obtain a token: core's [`policy::retry_backoff`] (1 s doubling up to the
/// shared 30 s refresh back-off; at least the 5 s advisory back-off while a
/// usable token is still being served, since clients are not affected yet).
pub(crate) fn backoff(failures: u32, serving: bool) -> Duration {
    policy::retry_backoff(failures, serving)
}

#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) id: u64,
    /// `Bearer <token>`, marked sensitive.
    pub(crate) header: HeaderValue,
    pub(crate) expires_at: Option<i64>,
    lifetime: i64,
    floor: i64,
    refresh_at: Option<i64>,
    forced_at: Option<Instant>,
}

impl Current {
    fn usable(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e - now > self.floor)
    }
    fn due(&self, now: i64) -> bool {
        self.refresh_at.is_some_and(|r| now >= r)
    }
}

struct Failure {
    error: Error,
    at: Instant,
    /// Consecutive failed attempts (>= 1).
    count: u32,
    backoff: Duration,
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    failure: Option<Failure>,
}

/// Readiness as `/healthz` reports it.
pub(crate) enum Health {
    Ready { expires_in: Option<i64> },
    NotReady { reason: String, error: Option<Error> },
}

/// What to do after upstream refused a token with a 401.
pub(crate) enum AfterReject {
    /// A new token: replay with it.
    Replay(Current),
    /// Do not replay; pass the 401 on (a token minted moments ago was refused too).
    PassOn,
}

pub(crate) struct Tokens {
    provider: Provider,
    allowance: i64,
    state: Mutex<State>,
    /// Serialises obtaining tokens: one exchange for any number of waiters.
    refresh: AsyncMutex<()>,
    /// Wakes the background task when the state changed outside it.
    wake: Notify,
    next_id: AtomicU64,
    pub(crate) obtained: AtomicU64,
    metrics: Arc<Metrics>,
    log: LogFormat,
}

impl Tokens {
    pub(crate) fn new(provider: Provider, allowance: i64, metrics: Arc<Metrics>, log: LogFormat) -> Self {
        Tokens {
            provider,
            allowance: allowance.max(0),
            state: Mutex::new(State::default()),
            refresh: AsyncMutex::new(()),
            wake: Notify::new(),
            next_id: AtomicU64::new(1),
            obtained: AtomicU64::new(0),
            metrics,
            log,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn usable(&self) -> Option<Current> {
        let now = now_unix();
        self.state().current.as_ref().filter(|c| c.usable(now)).cloned()
    }

    fn recent_failure(&self) -> Option<Error> {
        let st = self.state();
        st.failure.as_ref().filter(|f| f.at.elapsed() < f.backoff).map(|f| f.error.clone())
    }

    /// A token good for forwarding a request now; waits only when there is none.
    pub(crate) async fn get(&self) -> Result<Current, Error> {
        if let Some(c) = self.usable() {
            return Ok(c);
        }
        let _g = self.refresh.lock().await;
        if let Some(c) = self.usable() {
            return Ok(c);
        }
        if let Some(e) = self.recent_failure() {
            return Err(e);
        }
        // Boxed: the exchange's future is large, and inline it would make every request's future
        // as large (moved by memcpy on each request; see bench/PROXY.md).
        Box::pin(self.obtain(|c, now| c.usable(now))).await
    }

    /// Ask the provider (memory, disk shared with other processes, or an
    /// exchange); when what it has is not good enough, force an exchange.
    /// Call with `self.refresh` held.
    async fn obtain(&self, good: impl Fn(&Current, i64) -> bool) -> Result<Current, Error> {
        let result = async {
            let t = self.provider.token(false).await?;
            let c = self.make(t, None)?;
            if good(&c, now_unix()) {
                return Ok(c);
            }
            let t = self.provider.token(true).await?;
            self.make(t, None)
        }
        .await;
        self.record(result)
    }

    fn make(&self, t: AccessToken, forced_at: Option<Instant>) -> Result<Current, Error> {
        let value = Zeroizing::new(format!("Bearer {}", t.token.expose()));
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| Error::unavailable("the access token contains characters not allowed in an HTTP header"))?;
        header.set_sensitive(true);
        let now = now_unix();
        let st = self.state();
        let same = st.current.as_ref().filter(|c| c.header == header && c.expires_at == t.expires_at);
        let (id, lifetime, forced_at) = match same {
            Some(c) => (c.id, c.lifetime, c.forced_at.or(forced_at)),
            None => {
                (self.next_id.fetch_add(1, Ordering::Relaxed), t.expires_at.map_or(0, |e| (e - now).max(0)), forced_at)
            }
        };
        drop(st);
        let (floor, refresh_at) = match t.expires_at {
            None => (0, None),
            Some(exp) => {
                let (floor, refresh_at) = schedule(self.allowance, lifetime, exp);
                (floor, Some(refresh_at))
            }
        };
        Ok(Current { id, header, expires_at: t.expires_at, lifetime, floor, refresh_at, forced_at })
    }

    fn record(&self, result: Result<Current, Error>) -> Result<Current, Error> {
        let mut st = self.state();
        match &result {
            Ok(c) => {
                let changed = st.current.as_ref().is_none_or(|old| old.id != c.id);
                st.current = Some(c.clone());
                let recovered = st.failure.take().is_some();
                drop(st);
                if changed {
                    self.obtained.fetch_add(1, Ordering::Relaxed);
                    self.metrics.exchange(None, false);
                    let expires_in = c.expires_at.map(|e| e - now_unix());
                    let floor = c.floor;
                    log::event(
                        self.log,
                        "token",
                        "ready",
                        || {
                            format!(
                                "access token ready ({}; forwarding while more than {floor} s left){}",
                                expires_in.map_or_else(|| "does not expire".into(), |e| format!("expires in {e} s")),
                                if recovered { "; recovered" } else { "" }
                            )
                        },
                        json!({"expires_in": expires_in, "forward_while_more_than": floor, "recovered": recovered}),
                    );
                }
            }
            Err(e) => {
                let count = st.failure.as_ref().map_or(1, |f| f.count.saturating_add(1));
                let serving = st.current.as_ref().is_some_and(|c| c.usable(now_unix()));
                let wait = backoff(count, serving);
                st.failure = Some(Failure { error: e.clone(), at: Instant::now(), count, backoff: wait });
                drop(st);
                self.metrics.exchange(Some(e.kind), serving);
                let meanwhile = if serving { "still serving the current token" } else { "answering 503 meanwhile" };
                log::event(
                    self.log,
                    "token",
                    "failed",
                    || {
                        format!(
                            "cannot obtain an access token [{}]: {e}; {meanwhile}; retrying in {} s",
                            e.kind.as_str(),
                            wait.as_secs()
                        )
                    },
                    json!({"kind": e.kind.as_str(), "message": e.to_string(), "serving": serving,
                           "failures": count, "retry_in": wait.as_secs()}),
                );
                // The background task retries when the back-off is over, with or without traffic.
                self.wake.notify_one();
            }
        }
        result
    }

    /// Upstream answered 401 to a request made with token `id`: drop it and
    /// exchange anew, once for any number of requests refused together.
    pub(crate) async fn rejected(&self, id: u64) -> Result<AfterReject, Error> {
        let _g = self.refresh.lock().await;
        {
            let mut st = self.state();
            let now = now_unix();
            match &st.current {
                Some(c) if c.id != id && c.usable(now) => return Ok(AfterReject::Replay(c.clone())),
                Some(c) if c.id == id && c.forced_at.is_some_and(|t| t.elapsed() < REJECT_AGAIN_WINDOW) => {
                    return Ok(AfterReject::PassOn);
                }
                Some(c) if c.id == id => st.current = None,
                _ => {}
            }
        }
        if let Some(e) = self.recent_failure() {
            self.wake.notify_one();
            return Err(e);
        }
        log::event(
            self.log,
            "token",
            "refused-upstream",
            || "upstream refused the access token (401); exchanging anew".into(),
            json!({}),
        );
        self.provider.invalidate();
        let result = match self.provider.token(true).await {
            Ok(t) => self.make(t, Some(Instant::now())),
            Err(e) => Err(e),
        };
        self.record(result).map(AfterReject::Replay)
    }

    /// Keep a token ready until `stop` fires: obtain one at start, replace it
    /// ahead of its refresh time, retry failures when their back-off is over.
    /// Wakes early when a request recorded a failure or a 401 dropped the token.
    pub(crate) async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = self.next_wake();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => continue,
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let _g = self.refresh.lock().await;
            if self.recent_failure().is_some() {
                continue;
            }
            let now = now_unix();
            let due = self.state().current.as_ref().is_none_or(|c| c.due(now) || !c.usable(now));
            if due {
                let _ = self.obtain(|c, now| !c.due(now)).await;
            }
        }
    }

    fn next_wake(&self) -> Duration {
        let st = self.state();
        if let Some(f) = &st.failure {
            return f.backoff.saturating_sub(f.at.elapsed()).max(Duration::from_millis(50));
        }
        match &st.current {
            None => Duration::ZERO,
            Some(c) => match c.refresh_at {
                None => Duration::from_secs(3600),
                // Whole seconds: at least one, so a token with a tiny life cannot spin the loop.
                Some(r) => Duration::from_secs((r - now_unix()).clamp(1, 3600) as u64),
            },
        }
    }

    /// Seconds until the current token expires, and consecutive failures (for /metrics).
    pub(crate) fn gauges(&self) -> (Option<i64>, u32) {
        let st = self.state();
        let now = now_unix();
        (st.current.as_ref().and_then(|c| c.expires_at).map(|e| e - now), st.failure.as_ref().map_or(0, |f| f.count))
    }

    pub(crate) fn health(&self) -> Health {
        let now = now_unix();
        let st = self.state();
        if let Some(c) = st.current.as_ref().filter(|c| c.usable(now)) {
            return Health::Ready { expires_in: c.expires_at.map(|e| e - now) };
        }
        match &st.failure {
            Some(f) => Health::NotReady {
                reason: format!(
                    "cannot obtain an access token {}; the proxy's log has the details",
                    crate::reason_class(&f.error)
                ),
                error: Some(f.error.clone()),
            },
            None if st.current.is_some() => Health::NotReady {
                reason: format!(
                    "the access token expires within the stream allowance ({} s); a new one is being obtained",
                    self.allowance
                ),
                error: None,
            },
            None => Health::NotReady {
                reason: "no access token yet; the first exchange is in progress".into(),
                error: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff, schedule};
    use std::time::Duration;

    #[test]
    fn a_long_token_keeps_the_whole_allowance() {
        // 600 s token, 300 s allowance: forwarded until 300 s left, replaced from 390 s left
        // (core's advisory lead of 120 - 30 s ahead of the floor).
        assert_eq!(schedule(300, 600, 10_600), (300, 10_210));
        assert_eq!(schedule(300, 3600, 13_600), (300, 13_210));
    }

    #[test]
    fn a_short_token_serves_half_its_life() {
        // 60 s token under a 300 s allowance: forwarded while more than 30 s left, replaced from 45 s left.
        assert_eq!(schedule(300, 60, 1_060), (30, 1_015));
        // 8 s token: floor 4 s, replaced 2 s before.
        assert_eq!(schedule(300, 8, 108), (4, 102));
    }

    #[test]
    fn never_below_the_mandatory_window() {
        // No allowance: still not forwarded inside core's mandatory 30 s.
        assert_eq!(schedule(0, 600, 1_000), (30, 880));
    }

    #[test]
    fn degenerate_inputs_do_not_underflow() {
        assert_eq!(schedule(300, 0, 1_000), (0, 999));
        assert_eq!(schedule(-5, -5, 1_000), (0, 999));
    }

    #[test]
    fn back_off_doubles_to_cores_cap_and_spares_the_endpoint_while_serving() {
        let s = |n, serving| backoff(n, serving).as_secs();
        assert_eq!(
            [s(1, false), s(2, false), s(3, false), s(5, false), s(6, false), s(99, false)],
            [1, 2, 4, 16, 30, 30]
        );
        assert_eq!([s(1, true), s(3, true), s(4, true), s(6, true)], [5, 5, 8, 30]);
        assert_eq!(backoff(0, false), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, true), Duration::from_secs(30));
    }
}
