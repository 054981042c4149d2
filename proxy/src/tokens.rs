//! The proxy's access token: obtained ahead of need, replaced before it gets
//! too short for a stream, and re-obtained once when upstream refuses it.
//!
//! Requests read the current token without waiting (a mutex held for a
//! clone). The numbers come from core's refresh policy
//! (`anthropic_wif_core::cache::policy`), with the stream allowance as a
//! hard margin: a token is *usable* for forwarding while it has more than
//! its floor left, `floor = max(mandatory, min(stream allowance, lifetime / 2))`,
//! where the lifetime is what the token had left when the proxy first saw it
//! (so a 60-second token is not thrown away at once under a 300-second
//! allowance). A background task replaces the token from the policy's
//! refresh bound on (the advisory window above the floor, at least a second
//! ahead of it), so no request waits for an exchange in the steady state.
//! Only when there is no usable token does a request wait, for one exchange
//! shared by all waiting requests.
//!
//! Failures back off ([`policy::retry_backoff`]: 1 s doubling to 30 s, at
//! least 5 s while a usable token is still served); while backing off with no
//! usable token, requests are refused at once with the last error (fail closed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anthropic_wif_core::cache::policy::{self, HandOutMargin, Thresholds};
use anthropic_wif_core::{now_unix, AccessToken, Error, Provider};
use hyper::header::HeaderValue;
use tokio::sync::{watch, Mutex as AsyncMutex};
use zeroize::Zeroizing;

/// A token minted after a 401 that is refused again within this time is not
/// re-exchanged again: the refusal is not about the token's age.
const REJECT_AGAIN_WINDOW: Duration = Duration::from_secs(10);

/// `(floor, refresh_at)` for a token that expires at `exp` and had `lifetime`
/// seconds when first seen: it is forwarded while it has more than `floor`
/// left, and replaced from `refresh_at` on (core's policy, the allowance as
/// a hard margin).
pub(crate) fn schedule(allowance: i64, lifetime: i64, exp: i64) -> (i64, i64) {
    let t = Thresholds::strict(lifetime, HandOutMargin::StreamSafe { allowance });
    (t.floor, exp - t.refresh.max(t.floor + 1))
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
    next_id: AtomicU64,
    pub(crate) obtained: AtomicU64,
}

impl Tokens {
    pub(crate) fn new(provider: Provider, allowance: i64) -> Self {
        Tokens {
            provider,
            allowance: allowance.max(0),
            state: Mutex::new(State::default()),
            refresh: AsyncMutex::new(()),
            next_id: AtomicU64::new(1),
            obtained: AtomicU64::new(0),
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
        self.obtain(|c, now| c.usable(now)).await
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
                    {
                        let life = c.expires_at.map(|e| format!("expires in {} s", e - now_unix()));
                        crate::log_line(format!(
                            "anthropic-wif proxy: access token ready ({}; forwarding while more than {} s left){}\n",
                            life.unwrap_or_else(|| "does not expire".into()),
                            c.floor,
                            if recovered { "; recovered" } else { "" }
                        ));
                    }
                }
            }
            Err(e) => {
                let count = st.failure.as_ref().map_or(1, |f| f.count.saturating_add(1));
                let still = st.current.as_ref().is_some_and(|c| c.usable(now_unix()));
                let backoff = policy::retry_backoff(count, still);
                st.failure = Some(Failure { error: e.clone(), at: Instant::now(), count, backoff });
                drop(st);
                {
                    crate::log_line(format!(
                        "anthropic-wif proxy: cannot obtain an access token [{}]: {e}; {}retrying in {} s\n",
                        e.kind.as_str(),
                        if still { "still serving the current token; " } else { "answering 503 meanwhile; " },
                        backoff.as_secs()
                    ));
                }
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
            return Err(e);
        }
        {
            crate::log_line("anthropic-wif proxy: upstream refused the access token (401); exchanging anew\n");
        }
        self.provider.invalidate();
        let result = match self.provider.token(true).await {
            Ok(t) => self.make(t, Some(Instant::now())),
            Err(e) => Err(e),
        };
        self.record(result).map(AfterReject::Replay)
    }

    /// Keep a token ready until `stop` fires: obtain one at start, replace it
    /// ahead of its refresh time, retry failures with back-off.
    pub(crate) async fn run(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let wait = self.next_wake();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
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
    use super::schedule;

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
}
