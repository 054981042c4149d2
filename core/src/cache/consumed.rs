//! Never present a consumed or an expired identity token (docs/design.md §1, §4).
//!
//! The server accepts each identity JWT once (its `jti`), and refuses an
//! expired one; both refusals are the same opaque 401. So before any
//! exchange, by every face (they all go through `crate::provider`), the
//! token the source handed back is checked here:
//! - **expired**: past its `exp` by more than the clock-skew allowance
//!   (`crate::jwt::EXPIRY_SKEW_ALLOWANCE_SECONDS`): not sent;
//! - **consumed**: this machine already exchanged it, by the **record**
//!   below: not sent. Nor is a token another process is presenting right now.
//!
//! A source that mints (`Renewal::Mints`) is asked again first
//! (`REFETCHES` times); what the provider does next (wait for a file to
//! rotate, serve a still-usable cached access token) is its own business.
//!
//! ## The record
//!
//! One file per user, `RECORD_FILE_NAME` in anthropic-wif's cache
//! directory (`crate::cache::disk::cache_home`: `$XDG_CACHE_HOME/anthropic-wif`,
//! else `~/.cache/anthropic-wif`), whatever cache file a configuration uses:
//! so two configurations that read one token file (two profiles, a profile
//! and the environment, the CLI and a Python program) see each other's
//! exchanges. Its lock is `<record>.lock`, taken like a cache's lock (held
//! for a read-modify-write, never across a request); the file and its
//! directory must pass the cache file's trust rule (0600, ours, not a
//! symlink, in a directory of ours), else the record is not used (and the
//! guard rests on the expiry check alone). Written atomically.
//!
//! Format, never the JWT:
//! `{"version": 1, "tokens": [{"id": "<64 hex>", "exp": 1795…, "state": "consumed", "at": 1795…, "by": "<token cache>"}, …]}`
//! - `id`: SHA-256 of `jti`, `iss` (when the token has a `jti`), else of
//!   the whole token (`Fingerprint`);
//! - `state`: `in_flight` (a process is presenting it, until `until`: the
//!   attempt's time-out and a margin; a crashed presenter's claim lapses
//!   then), `consumed` (the server exchanged it: never again), `presented`
//!   (sent and refused, or sent without a verdict: a 5xx, a time-out. Not
//!   blocking, but a later refusal of it says it was most likely re-used);
//! - bounded: an entry goes once its token is past `exp` and the allowance
//!   (the expiry check refuses it anyway), one without `exp` after a day;
//!   at most `MAX_ENTRIES`, the oldest dropped first.
//!
//! Other programs that exchange the same token (the official SDKs, Claude
//! Code given the federation variables) do not write this record: their
//! exchanges are invisible here (docs/sdk-profiles.md §5).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::disk::{self, DiskCache, PrivateRead};
use crate::diag;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::identity::{self, IdentitySpec, Renewal};
use crate::jwt;
use crate::secret::Secret;

/// The record's file name in anthropic-wif's cache directory.
pub(crate) const RECORD_FILE_NAME: &str = "presented-identity-tokens";
/// `Error::error_code` of a token this machine already exchanged.
pub(crate) const CONSUMED_CODE: &str = "identity_token_consumed";
/// `Error::error_code` of a token another process is presenting right now.
pub(crate) const IN_FLIGHT_CODE: &str = "identity_token_in_flight";
/// `Error::error_code` of an expired token.
pub(crate) const EXPIRED_CODE: &str = "identity_token_expired";
/// How many more times a minting source is asked when it hands back a token
/// that must not be sent.
pub(crate) const REFETCHES: u32 = 2;
/// Entries kept at most.
pub(crate) const MAX_ENTRIES: usize = 1000;
/// How long an entry of a token without `exp` is kept.
const RETENTION_WITHOUT_EXP: i64 = 86_400;
/// Bound on waiting for the record's lock (held for milliseconds).
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// A claim outlives its attempt's time-out by this much.
const CLAIM_MARGIN_SECONDS: i64 = 5;
const WHAT: &str = "record of presented identity tokens";
const STATE_IN_FLIGHT: &str = "in_flight";
const STATE_CONSUMED: &str = "consumed";
const STATE_PRESENTED: &str = "presented";

/// What the record keeps of an identity token: a hash, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    id: String,
    /// The token's `exp`, when it is a JWT with one.
    pub exp: Option<i64>,
}

impl Fingerprint {
    /// SHA-256 of the token's `iss` and `jti` (what the server remembers),
    /// or of the whole token when it has no `jti` (or is not a JWT).
    pub fn of(token: &str) -> Fingerprint {
        let token = token.trim();
        let decoded = jwt::decode_unverified_lenient(token).ok();
        let mut h = Sha256::new();
        h.update(b"anthropic-wif identity token v1\0");
        match decoded.as_ref().and_then(|d| d.jti().filter(|j| !j.is_empty()).map(|j| (d.iss().unwrap_or(""), j))) {
            Some((iss, jti)) => {
                h.update(b"jti\0");
                h.update(iss.as_bytes());
                h.update(b"\0");
                h.update(jti.as_bytes());
            }
            None => {
                h.update(b"jwt\0");
                h.update(token.as_bytes());
            }
        }
        let id = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Fingerprint { id, exp: decoded.and_then(|d| d.exp()) }
    }
}

/// Where a recorded token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A process is presenting it right now.
    InFlight,
    /// The server exchanged it.
    Consumed,
    /// It was sent before: refused, or without a verdict.
    Presented,
}

/// A recorded token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub state: State,
    /// Unix seconds of the last change.
    pub at: i64,
    /// An in-flight claim lapses then (unix seconds).
    pub until: Option<i64>,
    /// The token cache of the configuration that presented it.
    pub by: Option<String>,
    /// The process presenting it (an in-flight claim).
    pub pid: Option<u32>,
}

impl Entry {
    /// Whether the token must not be sent now: consumed, or claimed by a
    /// process that is still presenting it (its claim has not lapsed and,
    /// on Unix, the process is alive).
    pub fn blocks(&self, now: i64) -> bool {
        match self.state {
            State::Consumed => true,
            State::InFlight => self.until.is_some_and(|u| u > now) && self.pid.is_none_or(alive),
            State::Presented => false,
        }
    }
}

/// Whether process `pid` exists (a presenter killed mid-exchange leaves a
/// claim that must not make others wait). Elsewhere than Unix: assumed.
fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// What became of a claimed token (the provider's reading of the exchange's fate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server exchanged it.
    Consumed,
    /// Sent: refused (`refused`), or without a verdict.
    Presented { refused: bool },
    /// Never sent: forget the claim.
    Withdrawn,
}

/// The record file and its lock.
#[derive(Clone, Debug)]
pub struct Record {
    file: DiskCache,
}

/// A token claimed for one presentation; [`Claim::settle`] it afterwards.
#[derive(Debug)]
pub(crate) struct Claim {
    record: Record,
    fingerprint: Fingerprint,
    /// What was recorded of it before the claim (a `presented` entry).
    previous: Option<Entry>,
}

/// What [`Record::claim`] decided.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// Claimed: send it, then settle.
    Held(Claim),
    /// Must not be sent, as the entry says.
    Refused(Entry),
    /// The record cannot be used (the reason): send without it.
    Unrecorded(String),
}

impl Record {
    /// The per-user record ([`RECORD_FILE_NAME`] in [`disk::cache_home`]).
    pub(crate) fn for_env(env: &Env) -> Result<Record> {
        Ok(Record::at(disk::cache_home(env)?.join(RECORD_FILE_NAME)))
    }

    /// A record at `path` (its lock is `<path>.lock`).
    pub fn at(path: impl Into<PathBuf>) -> Record {
        Record { file: DiskCache::new(path) }
    }

    /// The record file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What the record says of a token, read without the lock (doctor).
    /// `Err` when the record is refused for safety or unreadable.
    pub(crate) fn lookup(&self, fingerprint: &Fingerprint) -> std::result::Result<Option<Entry>, String> {
        match disk::read_private_json(self.path(), WHAT) {
            PrivateRead::Missing => Ok(None),
            PrivateRead::Object(map) => Ok(entries(&map).remove(&fingerprint.id)),
            PrivateRead::Corrupt(reason) | PrivateRead::Insecure(reason) => Err(reason),
        }
    }

    /// Claim `fingerprint` for a presentation that ends within `hold`, or say
    /// why it must not be sent. `by` names the configuration's token cache.
    pub(crate) async fn claim(&self, fingerprint: &Fingerprint, by: &str, hold: Duration) -> Claimed {
        let now = crate::clock::now_unix();
        let result = self
            .update(now, |tokens| {
                let previous = tokens.get(&fingerprint.id).map(|(e, _)| e.clone());
                if let Some(e) = previous.as_ref().filter(|e| e.blocks(now)) {
                    return Err(e.clone());
                }
                let until = now.saturating_add(hold.as_secs() as i64).saturating_add(CLAIM_MARGIN_SECONDS);
                let entry = Entry {
                    state: State::InFlight,
                    at: now,
                    until: Some(until),
                    by: Some(by.to_string()),
                    pid: Some(std::process::id()),
                };
                tokens.insert(fingerprint.id.clone(), (entry, fingerprint.exp));
                Ok(previous)
            })
            .await;
        match result {
            Ok(Ok(previous)) => Claimed::Held(Claim {
                record: self.clone(),
                fingerprint: fingerprint.clone(),
                previous: previous.filter(|p| p.state != State::Consumed),
            }),
            Ok(Err(entry)) => Claimed::Refused(entry),
            Err(reason) => Claimed::Unrecorded(reason),
        }
    }

    /// Read, change and write the record under its lock. `Err` (a reason)
    /// when the record cannot be used.
    async fn update<T>(&self, now: i64, change: impl FnOnce(&mut Tokens) -> T) -> std::result::Result<T, String> {
        let lock = self.file.lock_async(LOCK_TIMEOUT).await.map_err(|e| e.into_message())?;
        let mut tokens = match disk::read_private_json(self.path(), WHAT) {
            PrivateRead::Missing => Tokens::new(),
            PrivateRead::Object(map) => entries_with_exp(&map),
            PrivateRead::Corrupt(reason) => {
                diag::emit(diag::INFO, || format!("starting the {WHAT} afresh: {reason}"));
                Tokens::new()
            }
            PrivateRead::Insecure(reason) => return Err(reason),
        };
        let out = change(&mut tokens);
        prune(&mut tokens, now);
        let bytes = serialize(&tokens);
        disk::write_private_file(self.path(), WHAT, bytes.as_bytes()).map_err(|e| e.into_message())?;
        drop(lock);
        Ok(out)
    }
}

impl Claim {
    /// Record what became of the claimed token. Returns the note for a
    /// refusal of a token this machine had presented before.
    pub async fn settle(self, verdict: Verdict) -> Option<String> {
        let now = crate::clock::now_unix();
        let Claim { record, fingerprint, previous } = self;
        let by = |tokens: &Tokens| tokens.get(&fingerprint.id).and_then(|(e, _)| e.by.clone());
        let result = record
            .update(now, |tokens| {
                let new = match verdict {
                    Verdict::Consumed => {
                        Some(Entry { state: State::Consumed, at: now, until: None, by: by(tokens), pid: None })
                    }
                    Verdict::Presented { .. } => {
                        Some(Entry { state: State::Presented, at: now, until: None, by: by(tokens), pid: None })
                    }
                    Verdict::Withdrawn => previous.clone(),
                };
                match new {
                    Some(e) => tokens.insert(fingerprint.id.clone(), (e, fingerprint.exp)),
                    None => tokens.remove(&fingerprint.id),
                };
            })
            .await;
        if let Err(reason) = result {
            diag::emit(diag::INFO, || format!("could not update the {WHAT}: {reason}"));
        }
        match (verdict, previous) {
            (Verdict::Presented { refused: true }, Some(p)) => Some(refused_again_note(&p, now)),
            _ => None,
        }
    }
}

/// Fetch an identity token from `spec` that may be sent: not expired, not
/// consumed, not being presented by another process; claimed in `record`
/// for one presentation within `hold`. A minting source is asked again
/// ([`REFETCHES`] times) when it hands back a token that must not be sent.
pub(crate) async fn admit(
    spec: &IdentitySpec,
    env: &Env,
    record: Option<&Record>,
    by: &str,
    hold: Duration,
) -> Result<(Secret, Option<Claim>)> {
    let tries = if spec.renewal() == Renewal::Mints { 1 + REFETCHES } else { 1 };
    let mut refused = None;
    for _ in 0..tries {
        let token = identity::fetch(spec, env).await?;
        match check(&token, spec, record, by, hold).await {
            Ok(claim) => return Ok((token, claim)),
            Err(e) => {
                diag::emit(diag::INFO, || format!("not sending that identity token: {e}"));
                refused = Some(e);
            }
        }
    }
    Err(refused.unwrap_or_else(|| Error::internal("no identity token was fetched")))
}

/// The checks of [`admit`] for a token already fetched from `spec`.
pub(crate) async fn check(
    token: &Secret,
    spec: &IdentitySpec,
    record: Option<&Record>,
    by: &str,
    hold: Duration,
) -> Result<Option<Claim>> {
    let fingerprint = Fingerprint::of(token.expose());
    let now = crate::clock::now_unix();
    if let Some((exp, ago)) = fingerprint.exp.and_then(|e| jwt::expired_seconds_ago(e, now).map(|a| (e, a))) {
        return Err(expired_error(spec, exp, ago));
    }
    let Some(record) = record else { return Ok(None) };
    match record.claim(&fingerprint, by, hold).await {
        Claimed::Held(claim) => Ok(Some(claim)),
        Claimed::Refused(entry) => Err(refusal_error(spec, &entry, record.path(), now)),
        Claimed::Unrecorded(reason) => {
            diag::emit(diag::INFO, || format!("the {WHAT} is not used: {reason}"));
            Ok(None)
        }
    }
}

/// Whether waiting may help with `error` from [`admit`]: a consumed token
/// from a source that rotates or mints, or a token another process is
/// presenting.
pub(crate) fn worth_waiting(error: &Error, spec: &IdentitySpec) -> bool {
    match error.error_code() {
        Some(IN_FLIGHT_CODE) => true,
        Some(CONSUMED_CODE) => spec.renewal() != Renewal::Fixed,
        _ => false,
    }
}

/// `error` from [`admit`] after waiting `waited` for a token that may be sent.
pub(crate) fn after_waiting(mut error: Error, spec: &IdentitySpec, waited: Duration) -> Error {
    let s = waited.as_secs_f64();
    let what = match (error.error_code(), spec.renewal()) {
        (Some(IN_FLIGHT_CODE), _) => "for the other process to finish",
        (_, Renewal::Rotates) => "for the file to be rotated",
        _ => "asking the source again",
    };
    if waited.is_zero() {
        error.append(" (The rotation wait is 0, so it was not waited for.)");
    } else {
        error.append(format!(" (Waited {s:.0} s {what}; raise the rotation wait to wait longer.)"));
    }
    error
}

// ---------------------------------------------------------------------------

type Tokens = std::collections::BTreeMap<String, (Entry, Option<i64>)>;

fn entries(map: &Map<String, Value>) -> std::collections::BTreeMap<String, Entry> {
    entries_with_exp(map).into_iter().map(|(k, (e, _))| (k, e)).collect()
}

fn entries_with_exp(map: &Map<String, Value>) -> Tokens {
    let mut out = Tokens::new();
    let Some(Value::Array(list)) = map.get("tokens") else { return out };
    for item in list.iter().take(MAX_ENTRIES * 2) {
        let Some(id) = item.get("id").and_then(Value::as_str).filter(|id| is_hex_id(id)) else { continue };
        let state = match item.get("state").and_then(Value::as_str) {
            Some(STATE_IN_FLIGHT) => State::InFlight,
            Some(STATE_CONSUMED) => State::Consumed,
            Some(STATE_PRESENTED) => State::Presented,
            _ => continue,
        };
        let Some(at) = item.get("at").and_then(Value::as_i64) else { continue };
        let entry = Entry {
            state,
            at,
            until: item.get("until").and_then(Value::as_i64),
            by: item.get("by").and_then(Value::as_str).map(|s| s.chars().take(1024).collect()),
            pid: item.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok()),
        };
        out.insert(id.to_string(), (entry, item.get("exp").and_then(Value::as_i64)));
    }
    out
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Drop what can no longer matter, then the oldest beyond [`MAX_ENTRIES`].
fn prune(tokens: &mut Tokens, now: i64) {
    tokens.retain(|_, (e, exp)| match exp {
        Some(exp) => jwt::expired_seconds_ago(*exp, now).is_none(),
        None => now.saturating_sub(e.at) <= RETENTION_WITHOUT_EXP,
    });
    if tokens.len() > MAX_ENTRIES {
        let mut ages: Vec<(i64, String)> = tokens.iter().map(|(k, (e, _))| (e.at, k.clone())).collect();
        ages.sort();
        for (_, k) in ages.into_iter().take(tokens.len() - MAX_ENTRIES) {
            tokens.remove(&k);
        }
    }
}

fn serialize(tokens: &Tokens) -> String {
    let list: Vec<Value> = tokens
        .iter()
        .map(|(id, (e, exp))| {
            let mut v = json!({"id": id, "exp": exp, "state": match e.state {
                State::InFlight => STATE_IN_FLIGHT,
                State::Consumed => STATE_CONSUMED,
                State::Presented => STATE_PRESENTED,
            }, "at": e.at});
            if let Some(u) = e.until {
                v["until"] = json!(u);
            }
            if let Some(b) = &e.by {
                v["by"] = json!(b);
            }
            if let Some(p) = e.pid {
                v["pid"] = json!(p);
            }
            v
        })
        .collect();
    let mut text = serde_json::to_string(&json!({"version": 1, "tokens": list})).unwrap_or_default();
    text.push('\n');
    text
}

fn ago(at: i64, now: i64) -> String {
    let s = now.saturating_sub(at).max(0);
    format!("{s} s ago (unix time {at})")
}

fn by_text(entry: &Entry) -> String {
    match &entry.by {
        Some(b) => format!(" for the configuration with token cache {b}"),
        None => String::new(),
    }
}

/// The error for a token that must not be sent because of `entry` (what
/// [`check`] returns, and `doctor`'s finding).
pub(crate) fn refusal_error(spec: &IdentitySpec, entry: &Entry, record: &Path, now: i64) -> Error {
    let source = spec.describe();
    let share = "Configurations that read one token file should share one token cache (the same profile, or the \
                 same credentials_path) instead of each exchanging it.";
    if entry.state == State::InFlight {
        return Error::identity(format!(
            "{source} handed back an identity token that another process on this machine is presenting to the \
             token endpoint right now (since {}{}; see {}); the server accepts each identity token only once, so \
             it was not sent a second time. {share}",
            ago(entry.at, now),
            by_text(entry),
            record.display()
        ))
        .with_error_code(Some(IN_FLIGHT_CODE.into()));
    }
    let fix = match spec.renewal() {
        Renewal::Rotates => format!(
            "Whatever writes the file (the kubelet, spiffe-helper, a CI step) must put a new token there before \
             the next exchange: rotate it more often than the access token lives. {share}"
        ),
        Renewal::Mints => "Make the source return a fresh token each time it is asked (a token it keeps and \
                           hands out again is consumed by the first exchange)."
            .to_string(),
        Renewal::Fixed => "Its token does not change while this process runs: set a fresh identity token, or use \
                           a source that rotates or mints tokens (a file, a command, a platform preset)."
            .to_string(),
    };
    Error::identity(format!(
        "{source} handed back an identity token that this machine already exchanged {}{} (recorded in {}); the \
         server accepts each identity token only once, so it was not sent. {fix}",
        ago(entry.at, now),
        by_text(entry),
        record.display()
    ))
    .with_error_code(Some(CONSUMED_CODE.into()))
}

/// The error for a token past its `exp` (and the allowance).
fn expired_error(spec: &IdentitySpec, exp: i64, ago: i64) -> Error {
    let fix = match spec.renewal() {
        Renewal::Rotates => "Check what writes the file (the kubelet, a CI step, a sidecar): it stopped rotating it.",
        Renewal::Mints => "It handed back expired tokens each time it was asked: check its configuration.",
        Renewal::Fixed => "Set a fresh identity token.",
    };
    Error::identity(format!(
        "{} handed back an identity token that expired {ago} s ago (exp {exp}, allowing {} s of clock skew); it \
         was not sent, because the server refuses expired tokens. {fix} If the token looks fresh, check this \
         machine's clock.",
        spec.describe(),
        jwt::EXPIRY_SKEW_ALLOWANCE_SECONDS
    ))
    .with_error_code(Some(EXPIRED_CODE.into()))
}

/// Appended to a refusal of a token this machine had presented before.
fn refused_again_note(previous: &Entry, now: i64) -> String {
    format!(
        "This machine had presented this identity token before ({}{}), and the server accepts each identity \
         token only once: it was most likely refused as already used (the Console's Workload identity page \
         shows a re-used jti). Make the identity-token source yield a fresh token for each exchange.",
        ago(previous.at, now),
        by_text(previous)
    )
}

#[cfg(test)]
mod tests;
