//! The refresh policy (docs/design.md §5): when a token is fresh, when to
//! refresh it, when it may no longer be handed out, and how long to wait
//! after a failed refresh. Written here once; the memory cache, the disk
//! judgement, the provider's fallback, doctor and the proxy's scheduler all
//! ask it.
//!
//! A face does not say who it is: it passes a [`HandOutMargin`], a plain value.

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
}

/// The stream allowance of [`HandOutMargin::STREAM_SAFE`], in seconds.
pub const STREAM_ALLOWANCE_SECONDS: i64 = 300;

impl HandOutMargin {
    /// `min(300 s, lifetime / 2)`: the credential process's default (docs/design.md §8).
    pub const STREAM_SAFE: HandOutMargin = HandOutMargin::StreamSafe { allowance: STREAM_ALLOWANCE_SECONDS };

    /// The seconds wanted for a token of `lifetime` seconds.
    pub fn seconds(self, lifetime: i64) -> i64 {
        match self {
            HandOutMargin::RefreshPolicy => 0,
            HandOutMargin::StreamSafe { allowance } => allowance.max(0).min(lifetime.max(0) / 2),
            HandOutMargin::AtLeast(n) => n.max(0),
        }
    }

    /// The part of the margin that holds even when a refresh fails.
    pub fn floor(self) -> i64 {
        match self {
            HandOutMargin::AtLeast(n) => n.max(0),
            HandOutMargin::RefreshPolicy | HandOutMargin::StreamSafe { .. } => 0,
        }
    }
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
}
