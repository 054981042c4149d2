//! Keeping an externally rotated credentials file fresh (docs/design.md §2):
//! what `anthropic-wif daemon` does for a named profile and `exec` for the
//! private profile it gives CMD.
//!
//! The keeper holds a provider whose hand-out margin is
//! [`HandOutMargin::RotatedFile`]: core's refresh policy decides when the
//! token is due (`min(360 s, 3/4 of its lifetime)` before expiry, ahead of
//! every SDK's window) and the provider does the rest as for every face: the
//! disk cache and cross-process lock it shares with `token`, `exec`, the
//! proxy and the bindings (so a `token` call beside it finds the new token
//! and exchanges nothing), the quick attempt while the old token is still
//! valid, the shared back-off after a failure. One [`Keeper::pass`] asks the
//! provider for a token, writes it to the file when it is not what the file
//! holds (core's cache writer: the SDKs' format, 0600 in a 0700 directory,
//! atomic) and says how long to sleep: until the token falls due, or after
//! a failure [`policy::retry_backoff`] (the proxy's back-off), while the
//! file keeps the still-valid token.
//!
//! One line on stderr per rotation and per failed attempt, never a secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anthropic_wif_core::cache::policy::{self, HandOutMargin};
use anthropic_wif_core::cache::{CachedToken, DiskCache, DiskRead};
use anthropic_wif_core::config::rotated::ReaderSettings;
use anthropic_wif_core::{now_unix, AccessToken, Error, Provider};

use crate::args::CommonArgs;

/// Longest sleep between passes (a token that never falls due is still looked at).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// What a pass achieved.
#[derive(Debug)]
pub struct Pass {
    /// Sleep this long before the next pass.
    pub next: Duration,
    /// The file holds an unexpired token after this pass.
    pub usable: bool,
    /// The error of this pass, when it neither wrote nor confirmed a fresh token.
    pub error: Option<Error>,
}

pub struct Keeper {
    provider: Provider,
    file: DiskCache,
    /// `daemon` or `exec`: the prefix of its log lines.
    who: &'static str,
    /// Log rotations (failures are always logged).
    log_rotations: bool,
    /// What the file holds, as far as we know.
    held: Option<AccessToken>,
    failures: u32,
    /// The provider's failure count already reported.
    reported: u64,
}

impl Keeper {
    /// A keeper of `file` with `provider` (whose margin must be
    /// [`HandOutMargin::RotatedFile`]). A token already in the file is
    /// taken as held, so a restart does not rewrite it.
    pub fn new(provider: Provider, file: PathBuf, who: &'static str, log_rotations: bool) -> Self {
        let file = DiskCache::new(file);
        let held = match file.read() {
            DiskRead::Valid(t) => Some(AccessToken::from(t)),
            _ => None,
        };
        Keeper { provider, file, who, log_rotations, held, failures: 0, reported: 0 }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// One pass: obtain a token, put it in the file if it is new, and say
    /// when to come back.
    pub async fn pass(&mut self) -> Pass {
        let result = self.provider.token(false).await;
        let now = now_unix();
        match result {
            Ok(t) => {
                let new = self.held.as_ref().is_none_or(|h| h.token != t.token || h.expires_at != t.expires_at);
                if new {
                    let written =
                        CachedToken { access_token: t.token.clone(), expires_at: t.expires_at, lifetime: None };
                    if let Err(e) = self.file.write(&written) {
                        return self.failed(e, now);
                    }
                    self.held = Some(t.clone());
                }
                match self.provider.refresh_due_at() {
                    Some(due) if due > now => {
                        if new && self.log_rotations {
                            self.say(&format!(
                                "wrote a new access token to {} (expires in {} s, at {}); next rotation in {} s",
                                self.file.path().display(),
                                t.expires_at.map_or(0, |e| e - now),
                                t.expires_at.unwrap_or(0),
                                due - now
                            ));
                        }
                        self.failures = 0;
                        Pass { next: secs(due - now), usable: true, error: None }
                    }
                    // Still due after the call: the refresh failed (or is backing off, after a
                    // failure here or in another process sharing the cache) and the provider
                    // handed out the still-valid token, which the file keeps.
                    Some(_) => {
                        self.failures += 1;
                        let backoff = policy::retry_backoff(self.failures, true);
                        let error = self.provider.last_refresh_failure().and_then(|(n, e)| {
                            (n != self.reported).then(|| {
                                self.reported = n;
                                e
                            })
                        });
                        if let Some(e) = &error {
                            self.say(&format!(
                                "could not renew the access token [{}]: {e}; {} keeps the current one ({} s left), \
                                 retrying in {} s",
                                e.kind.as_str(),
                                self.file.path().display(),
                                t.expires_at.map_or(0, |x| x - now),
                                backoff.as_secs()
                            ));
                        }
                        Pass { next: backoff, usable: true, error }
                    }
                    None => Pass { next: MAX_SLEEP, usable: true, error: None },
                }
            }
            Err(e) => self.failed(e, now),
        }
    }

    fn failed(&mut self, e: Error, now: i64) -> Pass {
        self.failures += 1;
        let left = self.held.as_ref().and_then(|h| h.expires_at).map(|x| x - now);
        let usable = left.is_some_and(|l| l > 0);
        let backoff = policy::retry_backoff(self.failures, usable);
        let state = match left {
            Some(l) if l > 0 => format!("{} holds a token with {l} s left", self.file.path().display()),
            Some(_) => format!("the token in {} has expired", self.file.path().display()),
            None => format!("{} holds no token yet", self.file.path().display()),
        };
        self.say(&format!(
            "cannot obtain an access token [{}]: {e}; {state}; retrying in {} s",
            e.kind.as_str(),
            backoff.as_secs()
        ));
        Pass { next: backoff, usable, error: Some(e) }
    }

    /// When the token in the file expires (unix seconds), as far as we know.
    pub fn held_expiry(&self) -> Option<i64> {
        self.held.as_ref().and_then(|h| h.expires_at)
    }

    /// Whether the file holds an unexpired token now.
    pub fn usable_now(&self) -> bool {
        self.held.as_ref().and_then(|h| h.expires_at).is_some_and(|x| x > now_unix())
    }

    fn say(&self, line: &str) {
        log(self.who, line);
    }
}

/// One line on stderr, `anthropic-wif <who>: <line>`; a closed stderr is not an error.
pub fn log(who: &str, line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "anthropic-wif {who}: {line}");
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.clamp(1, MAX_SLEEP.as_secs() as i64) as u64)
}

/// The hand-out margin a keeper's provider uses.
const MARGIN: HandOutMargin = HandOutMargin::RotatedFile;

/// The provider of a holder of an externally rotated file (the daemon,
/// exec, setup): `common`'s configuration, resolved as for `token`, with the
/// keeper's margin and `client` in the User-Agent. It must be federation;
/// otherwise the error starts with `needs` (what the command does) and ends
/// with `otherwise` (what to do instead). Also returns what the profile it
/// keeps tells its readers (the configuration's ids and base URL).
pub fn provider(
    common: &CommonArgs,
    client: &str,
    needs: &str,
    otherwise: &str,
) -> Result<(Provider, ReaderSettings), Error> {
    let provider = Provider::new(common.provider_options_as(client, MARGIN)?)?;
    let Some(fed) = provider.federation() else {
        return Err(Error::config(format!(
            "{needs} with tokens from workload identity federation, but the configuration ({}) is not \
             federation; {otherwise}",
            provider.resolved().step
        )));
    };
    let settings = ReaderSettings::of(fed);
    Ok((provider, settings))
}
