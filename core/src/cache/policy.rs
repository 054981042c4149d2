//! The refresh policy (docs/design.md §5): when a token is fresh, when to
//! refresh it, when it may no longer be handed out, and how long to wait
//! after a failed refresh. Written here once; the memory cache
//! (`standing()`), the provider's disk judgement and fallback, doctor's cache
//! state and the proxy's scheduler all ask it.
//!
//! For a token with `remaining` seconds left, of `lifetime` seconds, handed
//! out under a [`HandOutMargin`], [`Thresholds::new`] gives two bounds:
//!
//! * `floor = max(mandatory, margin.floor())`: at or below it the token is
//!   not handed out (refresh or fail);
//! * `refresh = max(advisory + floor - mandatory, margin.seconds(lifetime))`:
//!   above it the token is fresh; between the two a refresh is due, and when
//!   it fails the token is still served (and the refresh backs off).
//!
//! where `(advisory, mandatory) = (min(120, lifetime/2), min(30, lifetime/4))`
//! ([`refresh_windows`]): the SDKs' windows, scaled so that a short token
//! serves at least half its life. A hard floor above the mandatory window
//! shifts the advisory window up with it, so the window keeps its width.
//!
//! A face does not say who it is: it passes a [`HandOutMargin`], a plain value.
//!
//! **The externally rotated credentials file** (docs/design.md §2, §5): a
//! holder that keeps `credentials/<profile>.json` fresh for readers that only
//! re-read it (the official SDKs and Claude Code with a `user_oauth` profile
//! without `client_id`: `anthropic-wif daemon`, `exec`'s private profile)
//! uses [`HandOutMargin::RotatedFile`]. The readers' windows are not scaled:
//! their caches look again `READER_ADVISORY_SECONDS` (Java; 120 s for the
//! others) before expiry, and Node, Go and C# refuse a token within
//! `MANDATORY_REFRESH_SECONDS` of it. So the file's token is replaced when
//! `min(READER_ADVISORY_SECONDS + REWRITE_LEAD_SECONDS, lifetime * 3/4)`
//! seconds are left: 360 s for every token of 8 minutes or more (a minute
//! before any reader's cache looks again), and after the first quarter of a
//! shorter one's life (a 60 s token is replaced 45 s before expiry, 15 s
//! before the first reader would refuse it; `rotated_file_lead`).
//! Every other face's refresh bound is below this one, so a holder of the
//! file refreshes first and a `token` call beside it finds the new token.

use std::time::Duration;

use super::CachedToken;

/// The SDKs' advisory refresh threshold (seconds before expiry).
pub(crate) const ADVISORY_REFRESH_SECONDS: i64 = 120;
/// The SDKs' mandatory refresh threshold (seconds before expiry); also the
/// margin the SDKs apply when reading the disk cache.
pub(crate) const MANDATORY_REFRESH_SECONDS: i64 = 30;
/// After a failed advisory refresh, a process serves the old token this long
/// before trying again (the SDKs' back-off, in memory).
pub(crate) const ADVISORY_BACKOFF_SECONDS: i64 = 5;
/// After a failed refresh of a still-usable cached token, no process sharing
/// the cache calls the token endpoint again for this long (recorded in the
/// cache's lock file).
pub(crate) const REFRESH_FAILURE_BACKOFF_SECONDS: i64 = 30;
/// The longest advisory window of a reader of the externally rotated
/// credentials file: the Java SDK's cache looks for a new token this long
/// before expiry (the other SDKs 120 s, PHP only then; docs/sdk-profiles.md §4).
pub(crate) const READER_ADVISORY_SECONDS: i64 = 300;
/// How long before [`READER_ADVISORY_SECONDS`] the holder of the externally
/// rotated file replaces a long-lived token.
pub(crate) const REWRITE_LEAD_SECONDS: i64 = 60;
/// The lifetime assumed for a token whose lifetime is unknown (one written
/// by an official SDK): the Console's default rule lifetime.
pub(crate) const ASSUMED_LIFETIME_SECONDS: i64 = 600;

/// The refresh windows for a token of `lifetime` seconds, scaled so that a
/// short token serves at least half its life:
/// `(advisory, mandatory) = (min(120, lifetime/2), min(30, lifetime/4))`.
pub fn refresh_windows(lifetime: i64) -> (i64, i64) {
    let lifetime = lifetime.max(0);
    (ADVISORY_REFRESH_SECONDS.min(lifetime / 2), MANDATORY_REFRESH_SECONDS.min(lifetime / 4))
}

/// A token's lifetime, or [`ASSUMED_LIFETIME_SECONDS`] when unknown.
pub(crate) fn lifetime_or_assumed(lifetime: Option<i64>) -> i64 {
    lifetime.unwrap_or(ASSUMED_LIFETIME_SECONDS)
}

/// How many seconds a token handed to a caller must have left, beyond the
/// refresh windows. Faces pick one; core never asks which face is calling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HandOutMargin {
    /// No margin of its own: the refresh windows alone decide. The bindings'
    /// default: the SDKs wrap a provider in their own cache.
    #[default]
    RefreshPolicy,
    /// `min(allowance, lifetime / 2)` seconds: a stream that starts with the
    /// token has `allowance` seconds to run, and a short token still serves
    /// half its life. Preferred, not required: when a refresh fails, a cached
    /// token is still handed out down to the mandatory window.
    /// [`HandOutMargin::STREAM_SAFE`] is the credential process's default.
    StreamSafe {
        /// Seconds (negative counts as 0).
        allowance: i64,
    },
    /// At least this many seconds, always (an explicit `min_remaining`): a
    /// token with less is never handed out, even when a refresh fails.
    /// Negative counts as 0.
    AtLeast(i64),
    /// For the holder of an externally rotated credentials file (module
    /// docs): `min(READER_ADVISORY_SECONDS + REWRITE_LEAD_SECONDS, lifetime * 3/4)`
    /// seconds, preferred but not required (when a refresh fails the token is
    /// still handed out down to the mandatory window: it is all the readers have).
    RotatedFile,
}

/// The stream allowance of [`HandOutMargin::STREAM_SAFE`], in seconds.
pub(crate) const STREAM_ALLOWANCE_SECONDS: i64 = 300;

impl HandOutMargin {
    /// `min(300 s, lifetime / 2)`: the credential process's default (docs/design.md §8).
    pub const STREAM_SAFE: HandOutMargin = HandOutMargin::StreamSafe { allowance: STREAM_ALLOWANCE_SECONDS };

    /// The seconds wanted for a token of `lifetime` seconds.
    pub fn seconds(self, lifetime: i64) -> i64 {
        match self {
            HandOutMargin::RefreshPolicy => 0,
            HandOutMargin::StreamSafe { allowance } => allowance.max(0).min(lifetime.max(0) / 2),
            HandOutMargin::AtLeast(n) => n.max(0),
            HandOutMargin::RotatedFile => {
                (READER_ADVISORY_SECONDS + REWRITE_LEAD_SECONDS).min(lifetime.max(0).saturating_mul(3) / 4)
            }
        }
    }

    /// The part of the margin that holds even when a refresh fails.
    pub fn floor(self) -> i64 {
        match self {
            HandOutMargin::AtLeast(n) => n.max(0),
            HandOutMargin::RefreshPolicy | HandOutMargin::StreamSafe { .. } | HandOutMargin::RotatedFile => 0,
        }
    }
}

/// Where a token stands for one caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Hand it out; nothing to do.
    Fresh,
    /// Still usable, but a refresh is due: try one; if it fails, hand this
    /// token out and back off.
    RefreshDue,
    /// Not to be handed out: refresh or fail.
    Unusable,
}

/// The two bounds of the policy for one token and one margin (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Fresh while more than this many seconds are left.
    pub refresh: i64,
    /// Not handed out with this many seconds left or fewer.
    pub floor: i64,
}

impl Thresholds {
    /// The bounds for a token of `lifetime` seconds under `margin`.
    pub fn new(lifetime: i64, margin: HandOutMargin) -> Self {
        let (advisory, mandatory) = refresh_windows(lifetime);
        let floor = mandatory.max(margin.floor());
        let refresh = advisory.saturating_add(floor - mandatory).max(margin.seconds(lifetime));
        Thresholds { refresh, floor }
    }

    /// [`Thresholds::new`] with the whole margin as a hard floor: for a
    /// holder that never hands out a token below its margin, even while a
    /// refresh fails (the proxy with its stream allowance).
    pub fn strict(lifetime: i64, margin: HandOutMargin) -> Self {
        Thresholds::new(lifetime, HandOutMargin::AtLeast(margin.seconds(lifetime)))
    }

    /// Where a token with `remaining` seconds left stands.
    pub(crate) fn standing(&self, remaining: i64) -> Standing {
        if remaining > self.refresh && remaining > self.floor {
            Standing::Fresh
        } else if remaining > self.floor {
            Standing::RefreshDue
        } else {
            Standing::Unusable
        }
    }
}

impl CachedToken {
    /// Where this token stands at `now` under `margin`; a token without
    /// expiry is always fresh, one of unknown lifetime is judged as if it
    /// lived [`ASSUMED_LIFETIME_SECONDS`].
    pub(crate) fn standing(&self, now: i64, margin: HandOutMargin) -> Standing {
        match self.expires_at {
            None => Standing::Fresh,
            Some(exp) => Thresholds::new(lifetime_or_assumed(self.lifetime), margin).standing(exp.saturating_sub(now)),
        }
    }
}

/// For a token of `lifetime` seconds in an externally rotated credentials
/// file: how many seconds pass between its replacement
/// ([`HandOutMargin::RotatedFile`]) and the moment the first reader (Node,
/// Go, C#: [`MANDATORY_REFRESH_SECONDS`] before expiry) would refuse it. At
/// or below 0 such readers fail for a while in every rotation: the token is
/// too short (the server's rules give at least 60 s, a lead of 15 s).
#[cfg(test)]
pub(crate) fn rotated_file_lead(lifetime: i64) -> i64 {
    Thresholds::new(lifetime, HandOutMargin::RotatedFile).refresh - MANDATORY_REFRESH_SECONDS
}

/// How long a holder that retries on its own (the proxy) waits after
/// `failures` (at least 1) consecutive failed attempts to obtain a token:
/// 1 s, doubling, up to `REFRESH_FAILURE_BACKOFF_SECONDS`; while it still
/// serves a usable token (`serving`), at least `ADVISORY_BACKOFF_SECONDS`.
pub fn retry_backoff(failures: u32, serving: bool) -> Duration {
    let doubling = 1i64 << failures.saturating_sub(1).min(16);
    let mut secs = doubling.min(REFRESH_FAILURE_BACKOFF_SECONDS);
    if serving {
        secs = secs.max(ADVISORY_BACKOFF_SECONDS);
    }
    Duration::from_secs(secs.max(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins() {
        assert_eq!(HandOutMargin::RefreshPolicy.seconds(3600), 0);
        assert_eq!(HandOutMargin::STREAM_SAFE.seconds(3600), 300);
        assert_eq!(HandOutMargin::STREAM_SAFE.seconds(60), 30);
        assert_eq!(HandOutMargin::StreamSafe { allowance: -5 }.seconds(60), 0);
        assert_eq!(HandOutMargin::AtLeast(90).seconds(60), 90);
        assert_eq!(HandOutMargin::AtLeast(-1).seconds(60), 0);
        assert_eq!(HandOutMargin::STREAM_SAFE.floor(), 0);
        assert_eq!(HandOutMargin::AtLeast(90).floor(), 90);
    }

    #[test]
    fn windows_scale_with_lifetime() {
        assert_eq!(refresh_windows(3600), (120, 30));
        assert_eq!(refresh_windows(600), (120, 30));
        assert_eq!(refresh_windows(60), (30, 15));
        assert_eq!(refresh_windows(0), (0, 0));
        assert_eq!(refresh_windows(-5), (0, 0));
    }

    #[test]
    fn thresholds_per_margin() {
        let t = |lifetime, margin| {
            let Thresholds { refresh, floor } = Thresholds::new(lifetime, margin);
            (refresh, floor)
        };
        // The SDKs' windows, scaled for short tokens.
        assert_eq!(t(600, HandOutMargin::RefreshPolicy), (120, 30));
        assert_eq!(t(60, HandOutMargin::RefreshPolicy), (30, 15));
        // Stream-safe: fresh above min(300, lifetime/2); usable down to the mandatory window.
        assert_eq!(t(600, HandOutMargin::STREAM_SAFE), (300, 30));
        assert_eq!(t(3600, HandOutMargin::STREAM_SAFE), (300, 30));
        assert_eq!(t(60, HandOutMargin::STREAM_SAFE), (30, 15));
        // A hard margin shifts the advisory window up with it.
        assert_eq!(t(3600, HandOutMargin::AtLeast(300)), (390, 300));
        assert_eq!(t(3600, HandOutMargin::AtLeast(10)), (120, 30));
        // Strict: the stream-safe margin as a floor (the proxy's allowance).
        assert_eq!(Thresholds::strict(600, HandOutMargin::STREAM_SAFE), Thresholds { refresh: 390, floor: 300 });
        assert_eq!(Thresholds::strict(60, HandOutMargin::STREAM_SAFE), Thresholds { refresh: 45, floor: 30 });
        assert_eq!(Thresholds::strict(0, HandOutMargin::STREAM_SAFE), Thresholds { refresh: 0, floor: 0 });
    }

    #[test]
    fn standing_at_the_bounds() {
        let th = Thresholds::new(600, HandOutMargin::RefreshPolicy);
        assert_eq!(th.standing(121), Standing::Fresh);
        assert_eq!(th.standing(120), Standing::RefreshDue);
        assert_eq!(th.standing(31), Standing::RefreshDue);
        assert_eq!(th.standing(30), Standing::Unusable);
        let tok = |expires_at, lifetime| CachedToken {
            access_token: crate::secret::Secret::new("sk-ant-oat01-x"),
            expires_at,
            lifetime,
        };
        assert_eq!(tok(None, None).standing(1_000, HandOutMargin::AtLeast(1 << 40)), Standing::Fresh);
        // Unknown lifetime: judged as a 600 s token.
        assert_eq!(tok(Some(1_030), None).standing(1_000, HandOutMargin::RefreshPolicy), Standing::Unusable);
        assert_eq!(tok(Some(1_031), None).standing(1_000, HandOutMargin::RefreshPolicy), Standing::RefreshDue);
        // A 60 s token: mandatory 15 s.
        assert_eq!(tok(Some(1_016), Some(60)).standing(1_000, HandOutMargin::RefreshPolicy), Standing::RefreshDue);
    }

    #[test]
    fn the_rotated_file_is_replaced_before_every_readers_window() {
        let t = |lifetime| Thresholds::new(lifetime, HandOutMargin::RotatedFile);
        // Long tokens: 360 s before expiry, a minute ahead of Java's 300 s advisory window.
        assert_eq!(t(600), Thresholds { refresh: 360, floor: 30 });
        assert_eq!(t(3600), Thresholds { refresh: 360, floor: 30 });
        assert_eq!(t(86_400).refresh, 360);
        assert_eq!(t(480).refresh, 360);
        // Shorter ones after a quarter of their life: still ahead of the SDKs' 120 s window from 160 s on,
        // and always ahead of the 30 s in which Node, Go and C# refuse a token.
        assert_eq!(t(300), Thresholds { refresh: 225, floor: 30 });
        assert_eq!(t(160).refresh, 120);
        assert_eq!(t(60), Thresholds { refresh: 45, floor: 15 });
        assert_eq!(rotated_file_lead(60), 15);
        assert_eq!(rotated_file_lead(600), 330);
        assert!(rotated_file_lead(40) <= 0, "a 40 s token cannot be replaced before readers refuse it");
        assert_eq!(t(0), Thresholds { refresh: 0, floor: 0 });
        assert_eq!(HandOutMargin::RotatedFile.floor(), 0);
        // Whoever keeps the file refreshes first: every other face's bound is at or below its own
        // (the proxy's strict allowance excepted, which then makes the one exchange itself).
        for lifetime in [60, 90, 120, 300, 600, 3600, 86_400] {
            let own = t(lifetime).refresh;
            for other in [HandOutMargin::RefreshPolicy, HandOutMargin::STREAM_SAFE] {
                assert!(Thresholds::new(lifetime, other).refresh <= own, "{lifetime} s, {other:?}");
            }
        }
    }

    #[test]
    fn retry_backoff_doubles_to_the_shared_back_off() {
        let secs = |n, serving| retry_backoff(n, serving).as_secs();
        assert_eq!((1..=7).map(|n| secs(n, false)).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(secs(1, true), 5);
        assert_eq!(secs(5, true), 16);
        assert_eq!(secs(u32::MAX, false), 30);
        assert_eq!(secs(0, false), 1);
    }
}
