//! The on-disk token cache the SDKs share (docs/design.md §4) and its `<file>.lock`.
//!
//! File format (both official SDKs read and write it):
//! `{"version": "1.0", "type": "oauth_token", "access_token": "sk-ant-oat01-…", "expires_at": 1795475414}`
//!
//! Facts from the SDKs (Python `anthropic` 2.14, npm `@anthropic-ai/sdk` 1.14),
//! behaviour copied, not code:
//! - Both read only `access_token` and `expires_at` and keep every other key
//!   when they rewrite the file (`{**existing, …}`), so extra keys survive.
//! - `expires_at` is unix seconds; Python coerces with `int()`/`float()` (so a
//!   numeric string or a float is accepted), Node compares numerically. A file
//!   without `expires_at` is re-exchanged by Python and used forever by Node;
//!   we re-exchange (a federation token always expires).
//! - Python refuses a symlink and any mode with group/other bits (`& 0o077`);
//!   Node follows symlinks and refuses group/other read or write bits and
//!   warns on a foreign owner. Both fail on such a file. We refuse all of it.
//! - Beyond the SDKs: the directory and the lock file must be this user's (or
//!   root's) and not writable by group or others ([`crate::trusted`]);
//!   otherwise the disk cache is not used at all and tokens are exchanged
//!   without it (the reason shows under `-v` and in `doctor`).
//! - Invalid JSON: Node exchanges and overwrites, Python raises. We report
//!   [`DiskRead::Corrupt`] so the provider exchanges and overwrites.
//! - A `type` other than `oauth_token` makes Python raise; we call it corrupt.
//! - Writes: unique temp file in the same directory, mode 0600, fsync, rename,
//!   fsync of the directory (best effort in both), directory created 0700.
//!   Neither takes a lock.
//!
//! We additionally store the token's lifetime as `"expires_in"` plus
//! `"issued_at"` (= `expires_at - expires_in`). Both SDKs ignore unknown keys
//! (Python's secret wrapper only wraps strings, and `expires_in` is on its
//! plain list anyway) and carry them over when they rewrite the file with a new
//! token — so the pair is trusted only while `issued_at + expires_in ==
//! expires_at`; after another SDK's rewrite the lifetime reads as unknown.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::CachedToken;
use crate::env::Env;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::trusted::{self, is_symlink_error};

/// `"version"` written to the cache file.
pub(crate) const CACHE_FILE_VERSION: &str = "1.0";
/// `"type"` of the cache file.
pub(crate) const CACHE_FILE_TYPE: &str = "oauth_token";
/// `Error::error_code` of a lock time-out (as opposed to a lock file that
/// cannot be created or locked at all, e.g. in a read-only directory).
pub(crate) const LOCK_TIMEOUT_CODE: &str = "lock_timeout";
/// Files larger than this are not cache files.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Keys we own; everything else in an existing file is carried over.
const OWN_KEYS: [&str; 6] = ["version", "type", "access_token", "expires_at", "expires_in", "issued_at"];

/// What [`DiskCache::read`] found. Reasons are secret-free and name the path and the fix.
#[derive(Debug)]
#[non_exhaustive]
pub enum DiskRead {
    /// No file: exchange and write one.
    Missing,
    /// A well-formed token (maybe expired: the caller judges freshness).
    Valid(CachedToken),
    /// Not a usable cache file (bad JSON, missing fields, wrong type…): exchange and overwrite.
    Corrupt(String),
    /// Refused for safety (symlink, not a regular file, readable or writable
    /// by group/others, another owner, unreadable). Never trusted.
    Insecure(String),
}

/// One cache file and its lock file `<file>.lock`.
#[derive(Clone, Debug)]
pub struct DiskCache {
    path: PathBuf,
    lock_path: PathBuf,
}

impl DiskCache {
    /// The cache at `path`; its lock file is `path` + `.lock`. Touches nothing yet.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        DiskCache { path, lock_path: PathBuf::from(lock) }
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Read the cache file. Never fails: every problem is a [`DiskRead`] variant.
    pub fn read(&self) -> DiskRead {
        if let Err(reason) = check_cache_dir(&self.path) {
            return DiskRead::Insecure(reason);
        }
        match read_secure(&self.path, "token cache file") {
            Err(ReadFailure::Missing) => DiskRead::Missing,
            Err(ReadFailure::Insecure(reason)) => DiskRead::Insecure(reason),
            Err(ReadFailure::Corrupt(reason)) => DiskRead::Corrupt(reason),
            Ok(map) => match parse_token(map, &self.path, "token cache file", false) {
                Ok(token) => DiskRead::Valid(token),
                Err(reason) => DiskRead::Corrupt(reason),
            },
        }
    }

    /// Write `token` atomically: the directory is created (0700) if missing,
    /// a unique temp file (0600, `O_EXCL`) in it is written and fsynced, then
    /// renamed over the cache file (a symlink there is replaced, never
    /// followed) and the directory fsynced (best effort, like the SDKs).
    /// Unknown keys of an existing, safe, JSON-object file are kept. On any
    /// failure the temp file is removed and the old file is untouched.
    ///
    /// Directories that already exist are left as they are (their mode is the
    /// user's choice; the file itself is 0600); directories we create are
    /// chmod-ed to exactly 0700 whatever the umask.
    pub fn write(&self, token: &CachedToken) -> Result<()> {
        let Some(expires_at) = token.expires_at else {
            return Err(Error::internal(format!(
                "refusing to write a token without expiry to the token cache file {}",
                self.path.display()
            )));
        };
        let fail = |what: &str, e: io::Error| {
            Error::internal(format!(
                "could not write the token cache file {}: {what}: {e}. Check that its directory is writable by this user, or point the cache elsewhere (credentials_path).",
                self.path.display()
            ))
        };
        let dir = parent_dir(&self.path);
        ensure_dir(dir).map_err(|e| fail(&format!("creating directory {}", dir.display()), e))?;
        check_cache_dir(&self.path).map_err(Error::internal)?;

        // Keep unknown keys of an existing file we would trust.
        let mut extra = match read_secure(&self.path, "token cache file") {
            Ok(map) => map,
            Err(_) => Map::new(),
        };
        for key in OWN_KEYS {
            if let Some(v) = extra.remove(key) {
                wipe(v);
            }
        }

        let mut body = String::with_capacity(256);
        body.push_str("{\n");
        let mut first = true;
        let mut field = |body: &mut String, key: &str, value: &Value| {
            if !first {
                body.push_str(",\n");
            }
            first = false;
            body.push_str("  ");
            body.push_str(&Value::String(key.to_string()).to_string());
            body.push_str(": ");
            body.push_str(&value.to_string());
        };
        field(&mut body, "version", &Value::from(CACHE_FILE_VERSION));
        field(&mut body, "type", &Value::from(CACHE_FILE_TYPE));
        let token_value = Value::String(token.access_token.expose().to_string());
        field(&mut body, "access_token", &token_value);
        wipe(token_value);
        field(&mut body, "expires_at", &Value::from(expires_at));
        if let Some(lifetime) = token.lifetime.filter(|l| *l > 0) {
            field(&mut body, "expires_in", &Value::from(lifetime));
            field(&mut body, "issued_at", &Value::from(expires_at - lifetime));
        }
        for (key, value) in extra {
            field(&mut body, &key, &value);
            wipe(value);
        }
        body.push_str("\n}\n");

        let result = replace_file(dir, &self.path, body.as_bytes()).map_err(|(what, e)| fail(what, e));
        body.zeroize();
        result
    }

    /// Take the cross-process lock on `<file>.lock` (never the cache file),
    /// waiting at most `timeout`, without a thread: the way the engine waits.
    ///
    /// Callers in one process queue first on an in-process async lock keyed
    /// by the lock file's path, so however many providers of this process
    /// wait for the same cache file, one task polls the file lock (every 1 to
    /// 25 ms, on the runtime's timer) and the others sleep until it is handed
    /// to them, in turn. `timeout` bounds both waits together.
    ///
    /// The OS releases the lock when its holder exits, however it dies, and
    /// a child the holder forked never keeps it (module `fork` below); the guard
    /// releases it on drop.
    pub(crate) async fn lock_async(&self, timeout: Duration) -> Result<LockGuard> {
        let deadline = Instant::now() + timeout;
        let queue = lock_queue(&self.lock_path);
        let turn = match tokio::time::timeout(timeout, queue.lock_owned()).await {
            Ok(turn) => turn,
            Err(_) => return Err(self.lock_timed_out(timeout)),
        };
        let file = self.open_lock()?;
        let mut pause = Duration::from_millis(1);
        while let Some(wait) = self.attempt(&file, deadline, timeout, &mut pause)? {
            tokio::time::sleep(wait).await;
        }
        Ok(LockGuard {
            file,
            #[cfg(test)]
            path: self.lock_path.clone(),
            _turn: Some(turn),
        })
    }

    /// [`DiskCache::lock_async`] for synchronous callers: blocks this thread
    /// (sleeping between attempts) and skips the in-process queue.
    #[cfg(test)]
    pub(crate) fn lock(&self, timeout: Duration) -> Result<LockGuard> {
        let deadline = Instant::now() + timeout;
        let file = self.open_lock()?;
        let mut pause = Duration::from_millis(1);
        while let Some(wait) = self.attempt(&file, deadline, timeout, &mut pause)? {
            std::thread::sleep(wait);
        }
        Ok(LockGuard { file, path: self.lock_path.clone(), _turn: None })
    }

    /// One try at the file lock: `None` when it is ours, else how long to
    /// sleep before the next try (short sleeps growing to 25 ms, with jitter
    /// so waiters of different processes do not poll in lockstep); an error
    /// past the deadline.
    fn attempt(
        &self,
        file: &LockFile,
        deadline: Instant,
        timeout: Duration,
        pause: &mut Duration,
    ) -> Result<Option<Duration>> {
        match file.file.try_lock() {
            Ok(()) => return Ok(None),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(self.lock_failed("lock", e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(self.lock_timed_out(timeout));
        }
        let jitter = Duration::from_micros(fastrand::u64(0..=pause.as_micros() as u64 / 2));
        let wait = (*pause + jitter).min(deadline - now);
        *pause = (*pause * 2).min(Duration::from_millis(25));
        Ok(Some(wait))
    }

    /// Open (creating it 0600, never through a symlink) the lock file, its
    /// directory created 0700 if missing. The lock file is left in place
    /// (removing it would race with other acquirers).
    fn open_lock(&self) -> Result<LockFile> {
        let path = &self.lock_path;
        let dir = parent_dir(path);
        ensure_dir(dir).map_err(|e| self.lock_failed(&format!("create the directory {} for", dir.display()), e))?;
        check_cache_dir(path).map_err(Error::internal)?;
        let lock = open_lock_file(path).map_err(|e| {
            if is_symlink_error(&e) {
                Error::internal(format!(
                    "the token cache lock file {} is a symlink; refusing to follow it. Remove it (`rm {}`).",
                    path.display(),
                    path.display()
                ))
            } else {
                self.lock_failed("open", e)
            }
        })?;
        // Someone else's lock file (or one anyone can write) could be held
        // forever or carry a forged refresh back-off: refuse it.
        let meta = lock.file.metadata().map_err(|e| self.lock_failed("inspect", e))?;
        trusted::check(&meta, path, "token cache lock file", CACHE_STAKE, trusted::Policy::Settings)
            .map_err(Error::internal)?;
        Ok(lock)
    }

    fn lock_failed(&self, what: &str, e: io::Error) -> Error {
        Error::internal(format!("could not {what} the token cache lock file {}: {e}", self.lock_path.display()))
    }

    fn lock_timed_out(&self, timeout: Duration) -> Error {
        let p = self.lock_path.display();
        Error::internal(format!(
            "timed out after {:.1} s waiting for the token cache lock {p}: another process (or another provider \
             in this process) holds it (it is exchanging a token, or hangs). The lock is released when that \
             process exits; find it with `fuser {p}` or raise the lock time-out.",
            timeout.as_secs_f64(),
        ))
        .with_error_code(Some(LOCK_TIMEOUT_CODE.into()))
    }
}

/// Holds the cache lock; released on drop (then the next waiter of this
/// process gets its turn).
#[derive(Debug)]
pub(crate) struct LockGuard {
    file: LockFile,
    #[cfg(test)]
    path: PathBuf,
    /// This process's turn at the lock file ([`DiskCache::lock_async`]);
    /// dropped after the file lock is released.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl LockGuard {
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Until when (unix seconds) refreshes of a still-usable token are backed
    /// off after a failure, as recorded by any process in the lock file.
    /// The lock file is ours alone (the SDKs never see it) and is read and
    /// written only by the lock holder, so the record needs no lock of its own.
    pub fn refresh_backoff_until(&self) -> Option<i64> {
        use std::io::Seek;
        let mut f = &self.file.file;
        f.seek(io::SeekFrom::Start(0)).ok()?;
        let mut text = String::new();
        f.take(4096).read_to_string(&mut text).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v.get("refresh_backoff_until")?.as_i64()
    }

    /// Record (or with `None`, clear) the refresh back-off. Best effort: a
    /// failure only means the next process tries the endpoint again.
    pub(crate) fn set_refresh_backoff_until(&self, until: Option<i64>) {
        use std::io::Seek;
        let mut f = &self.file.file;
        let _ = f.set_len(0);
        if let Some(until) = until {
            let _ = f.seek(io::SeekFrom::Start(0));
            let _ = f.write_all(format!("{{\"refresh_backoff_until\": {until}}}\n").as_bytes());
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Unlocked before its descriptor leaves the fork registry (LockFile's
        // drop), so a fork in between hands the child nothing locked.
        let _ = self.file.file.unlock();
    }
}

/// The in-process queue in front of one lock file: an async mutex per lock
/// path, shared by every provider of this process while any of them uses it.
fn lock_queue(path: &Path) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    use std::sync::{Arc, Weak};
    let mut map = queues().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(q) = map.get(path).and_then(Weak::upgrade) {
        return q;
    }
    map.retain(|_, q| q.strong_count() > 0);
    let q = Arc::new(tokio::sync::Mutex::new(()));
    map.insert(path.to_path_buf(), Arc::downgrade(&q));
    q
}

type Queues = std::sync::Mutex<std::collections::HashMap<PathBuf, std::sync::Weak<tokio::sync::Mutex<()>>>>;

/// This process's queues. A forked child starts with none (the fork handler
/// forgets the parent's, whose holders are tasks the child does not have, and
/// whose mutex a parent thread may have held at the fork).
fn queues() -> &'static Queues {
    use std::sync::atomic::Ordering;
    fork::install();
    let current = fork::QUEUES.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: set below from a leaked Box, never freed.
        return unsafe { &*current };
    }
    let fresh: *mut Queues = Box::into_raw(Box::default());
    match fork::QUEUES.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` is a leaked Box, never freed from now on.
        Ok(_) => unsafe { &*fresh },
        Err(other) => {
            // Another thread won: free ours (never shared) and use theirs.
            // SAFETY: `fresh` came from Box::into_raw above and was not published.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: a leaked Box, never freed.
            unsafe { &*other }
        }
    }
}

/// An open lock file, registered with [`fork`] while open so that a forked
/// child never keeps its lock alive.
#[derive(Debug)]
struct LockFile {
    file: File,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Out of the registry before the descriptor is closed (the `File`
        // field drops after this), so the child handler never touches a
        // number that is being reused.
        fork::forget(&self.file);
    }
}

/// A forked child must never hold the parent's cache lock.
///
/// `flock` locks belong to an open file description, which `fork` shares
/// with the child: if the parent then died (OOM kill, crash), a child that
/// lives on (a `multiprocessing` or gunicorn worker) would hold the lock
/// forever and every process sharing the cache would time out. So every
/// open lock file is recorded here, and a `pthread_atfork` child handler
/// points each recorded descriptor at `/dev/null` in the child (with `dup2`,
/// async-signal-safe; never `LOCK_UN`, which would release the parent's
/// lock): the description loses the child's reference and the lock stays
/// the parent's alone, released when it unlocks or exits. Opening a lock
/// file and recording it happen under a read lock that the fork's prepare
/// handler takes for writing, so no descriptor is forked between the two.
/// `exec` needs none of this: lock files are opened `O_CLOEXEC`.
///
/// Windows has no fork: std's `File::lock` there is `LockFileEx` on a handle,
/// and the handles we open are not inheritable, so a child process never
/// holds the lock.
mod fork {
    use std::fs::File;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::sync::Once;

    /// This process's lock queues (see `queues`); reset in a forked child.
    pub(super) static QUEUES: AtomicPtr<super::Queues> = AtomicPtr::new(std::ptr::null_mut());

    #[cfg(unix)]
    mod imp {
        use std::cell::UnsafeCell;
        use std::sync::atomic::{AtomicI32, Ordering};

        /// Descriptors of the open lock files (-1: free slot).
        pub(super) static FDS: [AtomicI32; 256] = [const { AtomicI32::new(-1) }; 256];

        pub(super) struct Barrier(pub(super) UnsafeCell<libc::pthread_rwlock_t>);
        // SAFETY: a pthread rwlock is made to be shared between threads.
        unsafe impl Sync for Barrier {}
        /// Held for reading while a lock file is opened and recorded, for
        /// writing by a fork in progress.
        pub(super) static BARRIER: Barrier = Barrier(UnsafeCell::new(libc::PTHREAD_RWLOCK_INITIALIZER));

        pub(super) extern "C" fn prepare() {
            // SAFETY: a statically initialised rwlock.
            unsafe { libc::pthread_rwlock_wrlock(BARRIER.0.get()) };
        }

        pub(super) extern "C" fn parent() {
            // SAFETY: taken for writing by `prepare` on this thread.
            unsafe { libc::pthread_rwlock_unlock(BARRIER.0.get()) };
        }

        /// In the child, where only the forking thread exists: async-signal-safe
        /// calls only (atomics, open, dup2, fcntl, close).
        pub(super) extern "C" fn child() {
            for slot in FDS.iter() {
                let fd = slot.swap(-1, Ordering::SeqCst);
                if fd < 0 {
                    continue;
                }
                // SAFETY: plain system calls on descriptor numbers; `fd` is open
                // (recorded until its owner unrecords it, before closing it).
                unsafe {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
                    if null >= 0 {
                        // `fd` stays a valid descriptor (of /dev/null), so its
                        // owner, should it ever run here, closes that instead.
                        libc::dup2(null, fd);
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                        libc::close(null);
                    } else {
                        libc::close(fd);
                    }
                }
            }
            super::QUEUES.store(std::ptr::null_mut(), Ordering::SeqCst);
            // The forking thread holds the barrier for writing; in the child
            // it starts over unlocked (no other thread exists to hold it).
            // SAFETY: no other thread exists in the child.
            unsafe { BARRIER.0.get().write(libc::PTHREAD_RWLOCK_INITIALIZER) };
        }
    }

    /// Register the fork handlers (once per process; a child inherits them).
    pub(super) fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            #[cfg(unix)]
            // SAFETY: the handlers only lock/unlock a static rwlock and, in the
            // child, make async-signal-safe calls.
            unsafe {
                libc::pthread_atfork(Some(imp::prepare), Some(imp::parent), Some(imp::child));
            }
        });
    }

    /// Run `open` and record the file it opens, with no fork in between.
    pub(super) fn open_recorded(open: impl FnOnce() -> std::io::Result<File>) -> std::io::Result<File> {
        install();
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            struct ReadLocked;
            impl Drop for ReadLocked {
                fn drop(&mut self) {
                    // SAFETY: taken for reading below, on this thread.
                    unsafe { libc::pthread_rwlock_unlock(imp::BARRIER.0.get()) };
                }
            }
            // SAFETY: a statically initialised rwlock; released by `ReadLocked`.
            unsafe { libc::pthread_rwlock_rdlock(imp::BARRIER.0.get()) };
            let _read = ReadLocked;
            let file = open()?;
            let fd = file.as_raw_fd();
            let recorded =
                imp::FDS.iter().any(|slot| slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst).is_ok());
            if !recorded {
                return Err(std::io::Error::other(
                    "more than 256 token cache lock files are open in this process at once",
                ));
            }
            Ok(file)
        }
        #[cfg(not(unix))]
        open()
    }

    /// Take `file` out of the record (before it is closed).
    pub(super) fn forget(file: &File) {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            if let Some(slot) = imp::FDS.iter().find(|s| s.load(Ordering::SeqCst) == fd) {
                let _ = slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        #[cfg(not(unix))]
        let _ = file;
    }
}

/// The cache file for configuration that has no profile (flags/env):
/// `$XDG_CACHE_HOME/anthropic-wif/<sha256 hex of key_material>.json`, else
/// `~/.cache/anthropic-wif/…` (`%LOCALAPPDATA%\anthropic-wif\…` on Windows).
/// `key_material` is everything that determines the token (base URL, rule,
/// org, service account, workspace, identity source description), never the
/// identity JWT itself; only its hash reaches the file system.
pub(crate) fn env_cache_path(env: &Env, key_material: &str) -> Result<PathBuf> {
    let digest = Sha256::digest(key_material.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(cache_home(env)?.join(format!("{hex}.json")))
}

/// The directory that holds anthropic-wif's own cache files:
/// `$XDG_CACHE_HOME/anthropic-wif`, else `~/.cache/anthropic-wif`
/// (`%LOCALAPPDATA%\anthropic-wif` on Windows).
pub(crate) fn cache_home(env: &Env) -> Result<PathBuf> {
    let base = env
        .get("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            if cfg!(windows) {
                env.get("LOCALAPPDATA").map(PathBuf::from)
            } else {
                env.home().map(|h| h.join(".cache"))
            }
        })
        .ok_or_else(|| {
            Error::config(
                "cannot place the token cache: neither XDG_CACHE_HOME (absolute) nor HOME is set. \
                 Set one of them, or give the cache file explicitly (credentials_path).",
            )
        })?;
    Ok(base.join("anthropic-wif"))
}

/// What [`read_private_json`] found.
pub(super) enum PrivateRead {
    Missing,
    Object(Map<String, Value>),
    /// Not usable (bad JSON, too large…): start afresh and overwrite it.
    Corrupt(String),
    /// Refused for safety (see [`DiskCache::read`]): neither trusted nor replaced.
    Insecure(String),
}

/// Read a JSON object from a file of ours beside the caches, under the
/// cache file's rules (0600, ours, not a symlink, in a directory of ours).
pub(super) fn read_private_json(path: &Path, what: &str) -> PrivateRead {
    if let Err(reason) = check_cache_dir(path) {
        return PrivateRead::Insecure(reason);
    }
    match read_secure(path, what) {
        Ok(map) => PrivateRead::Object(map),
        Err(ReadFailure::Missing) => PrivateRead::Missing,
        Err(ReadFailure::Corrupt(reason)) => PrivateRead::Corrupt(reason),
        Err(ReadFailure::Insecure(reason)) => PrivateRead::Insecure(reason),
    }
}

/// Read the credentials file of a `user_oauth` profile (an interactive
/// login's tokens: `access_token`, `expires_at`, usually `refresh_token`;
/// `expires_at` may be absent or null, meaning no expiry information). Same
/// safety checks as the cache. Refreshing is out of scope: an expired token is
/// returned as is and the caller decides.
pub(crate) fn read_user_oauth(path: &Path) -> Result<CachedToken> {
    const WHAT: &str = "user_oauth credentials file";
    check_cache_dir(path).map_err(Error::config)?;
    match read_secure(path, WHAT) {
        Err(ReadFailure::Missing) => Err(Error::config(format!(
            "the {WHAT} {} does not exist; log in again with the tool that created the profile, \
             or set authentication.credentials_path to the right file",
            path.display()
        ))),
        Err(ReadFailure::Insecure(reason)) | Err(ReadFailure::Corrupt(reason)) => Err(Error::config(reason)),
        Ok(map) => parse_token(map, path, WHAT, true).map_err(Error::config),
    }
}

// ---------------------------------------------------------------------------

/// What whoever controls the cache directory or lock file could do.
pub(crate) const CACHE_STAKE: &str =
    "delete, replace or block your cached tokens (every call would then wait for the lock)";

/// The directory of a cache (or lock) file must pass [`trusted::check_dir`]:
/// this user's or root's, not writable by group or others. Otherwise the disk
/// cache is not used at all (the token is still served, like with a read-only
/// directory), and the reason says why and how to fix it.
fn check_cache_dir(file: &Path) -> std::result::Result<(), String> {
    trusted::check_dir(parent_dir(file), "token cache directory", CACHE_STAKE)
        .map_err(|why| format!("{why} Until then the token cache on disk is not used."))
}

enum ReadFailure {
    Missing,
    Insecure(String),
    Corrupt(String),
}

/// Open without following a symlink, check it is a regular file of ours with
/// no group/other bits, read at most 1 MiB, parse a JSON object.
fn read_secure(path: &Path, what: &str) -> std::result::Result<Map<String, Value>, ReadFailure> {
    let p = path.display();
    let symlink = || {
        ReadFailure::Insecure(format!(
            "the {what} {p} is a symlink; refusing to follow it. Replace it with a regular file \
             (remove it with `rm {p}`; a cache file is rewritten by the next exchange)."
        ))
    };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(symlink()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFailure::Missing),
        Err(_) => {} // the open below reports it
    }
    let mut file = match open_read_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadFailure::Missing),
        Err(e) if is_symlink_error(&e) => return Err(symlink()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ReadFailure::Insecure(format!(
                "the {what} {p} cannot be read by this user ({e}); it probably belongs to another user. \
                 Remove it or fix its owner (`chown`)."
            )))
        }
        Err(e) if is_not_regular_error(&e) => {
            return Err(ReadFailure::Insecure(format!("the {what} {p} is not a regular file; remove it.")))
        }
        Err(e) => return Err(ReadFailure::Corrupt(format!("the {what} {p} could not be opened: {e}"))),
    };
    let meta =
        file.metadata().map_err(|e| ReadFailure::Corrupt(format!("the {what} {p} could not be inspected: {e}")))?;
    if !meta.is_file() {
        return Err(ReadFailure::Insecure(format!(
            "the {what} {p} is not a regular file (it is a {}); remove it.",
            if meta.is_dir() { "directory" } else { "special file" }
        )));
    }
    trusted::check(&meta, path, what, "read or replace your token", trusted::Policy::Secret)
        .map_err(ReadFailure::Insecure)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadFailure::Corrupt(format!(
            "the {what} {p} is larger than 1 MiB, so it is not a token file; remove it."
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    let read = (&mut file).take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes);
    let result = match read {
        Err(e) => Err(ReadFailure::Corrupt(format!("the {what} {p} could not be read: {e}"))),
        Ok(n) if n as u64 > MAX_FILE_BYTES => Err(ReadFailure::Corrupt(format!(
            "the {what} {p} is larger than 1 MiB, so it is not a token file; remove it."
        ))),
        Ok(_) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => {
                let kind = json_kind(&other);
                wipe(other);
                Err(ReadFailure::Corrupt(format!(
                    "the {what} {p} holds a JSON {kind}, not an object; it will be replaced by the next \
                     exchange (or remove it)."
                )))
            }
            // serde_json messages can quote input; keep only the category and position.
            Err(e) => Err(ReadFailure::Corrupt(format!(
                "the {what} {p} is not valid JSON ({} at line {} column {}); it will be replaced by the \
                 next exchange (or remove it).",
                match e.classify() {
                    serde_json::error::Category::Eof => "truncated",
                    serde_json::error::Category::Syntax => "syntax error",
                    serde_json::error::Category::Data => "bad data",
                    serde_json::error::Category::Io => "I/O error",
                },
                e.line(),
                e.column()
            ))),
        },
    };
    bytes.zeroize();
    result
}

/// The token fields of a parsed file. Errors are secret-free reasons.
fn parse_token(
    mut map: Map<String, Value>,
    path: &Path,
    what: &str,
    allow_no_expiry: bool,
) -> std::result::Result<CachedToken, String> {
    let p = path.display();
    let fix = if allow_no_expiry { "log in again" } else { "it will be replaced by the next exchange (or remove it)" };
    let result = (|| {
        if let Some(t) = map.get("type") {
            if t.as_str() != Some(CACHE_FILE_TYPE) {
                return Err(format!(
                    "the {what} {p} has \"type\" {}, expected \"{CACHE_FILE_TYPE}\"; {fix}.",
                    match t {
                        Value::String(s) if s.len() <= 40 && !s.contains("sk-ant") => format!("\"{s}\""),
                        other => format!("of JSON kind {}", json_kind(other)),
                    }
                ));
            }
        }
        let access_token = match map.remove("access_token") {
            Some(Value::String(s)) => Secret::new(s),
            Some(other) => {
                wipe(other);
                return Err(format!("the {what} {p} has a non-string \"access_token\"; {fix}."));
            }
            None => return Err(format!("the {what} {p} has no \"access_token\"; {fix}.")),
        };
        // As strict as a token from the endpoint: a newline here would come out of `--format env`.
        if let Some(why) = crate::api::access_token_problem(access_token.expose()) {
            return Err(format!("the {what} {p} has an \"access_token\" that {why}; {fix}."));
        }
        let expires_at = match map.get("expires_at") {
            None | Some(Value::Null) if allow_no_expiry => None,
            None | Some(Value::Null) => {
                return Err(format!("the {what} {p} has no \"expires_at\"; {fix}."));
            }
            Some(v) => Some(unix_seconds(v).ok_or_else(|| {
                format!("the {what} {p} has an invalid \"expires_at\" (expected integer unix seconds); {fix}.")
            })?),
        };
        let lifetime = match (
            expires_at,
            map.get("expires_in").and_then(unix_seconds),
            map.get("issued_at").and_then(unix_seconds),
        ) {
            (Some(e), Some(l), Some(i)) if l > 0 && i.checked_add(l) == Some(e) => Some(l),
            _ => None,
        };
        Ok(CachedToken { access_token, expires_at, lifetime })
    })();
    wipe(Value::Object(map));
    result
}

/// An integer number of seconds as the SDKs accept it: a JSON integer, a
/// float (truncated, like Python's `int()`), or a string of digits.
fn unix_seconds(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15).map(|f| f as i64))
        }
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Zero every string in a JSON value before dropping it (they may be secrets).
fn wipe(v: Value) {
    match v {
        Value::String(mut s) => s.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(map) => map.into_iter().for_each(|(mut k, v)| {
            k.zeroize();
            wipe(v)
        }),
        _ => {}
    }
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `bytes` to `path` as every file we write is written (the token
/// cache, the record of presented identity tokens, profiles, a ready file,
/// Claude Code's settings): the directory
/// created 0700 if missing, the file 0600, atomically (`replace_file`), so
/// a reader sees the old content or the new, never a part, and nobody else
/// can read it. `what` names the file in the error, which says which step
/// failed.
pub fn write_private_file(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let fail = |step: &str, e: io::Error| {
        Error::config(format!(
            "could not write the {what} {}: {step}: {e}. Check that {} is writable by this user",
            path.display(),
            dir.display()
        ))
    };
    ensure_dir(dir).map_err(|e| fail("creating its directory", e))?;
    replace_file(dir, path, bytes).map_err(|(step, e)| fail(step, e))
}

/// Replace `path` (in `dir`) with `bytes` atomically, the way every file we
/// write is written (the token cache, the externally rotated profile): a
/// unique temporary file (0600, `O_EXCL`, never through a symlink) in the same
/// directory, written and fsynced, renamed over `path` (a symlink there is
/// replaced, never followed), then the directory fsynced (best effort). On any
/// failure the temporary file is removed and `path` is untouched; the error
/// says which step failed.
fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> std::result::Result<(), (&'static str, io::Error)> {
    let (mut file, tmp) = create_temp(dir, path).map_err(|e| ("creating a temporary file", e))?;
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    set_mode(&file, 0o600).map_err(|e| ("setting mode 0600", e))?;
    file.write_all(bytes).map_err(|e| ("writing", e))?;
    file.sync_all().map_err(|e| ("syncing", e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| ("renaming the temporary file into place", e))?;
    guard.0 = None;
    sync_dir(dir);
    Ok(())
}

/// Create `dir` and any missing ancestors, each 0700 (exactly, whatever the
/// umask). Existing directories are not touched.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    #[cfg_attr(not(unix), allow(unused_mut))] // only Unix sets a mode
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        // Another process created it meanwhile: theirs, leave it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new file `.<name>.<pid>.<random>.tmp` beside `target`, created
/// exclusively with mode 0600.
fn create_temp(dir: &Path, target: &Path) -> io::Result<(File, PathBuf)> {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "cache".into());
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), fastrand::u64(..)));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        }
        match opts.open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique temporary file name")))
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

/// fsync a directory so a rename in it survives a crash. Best effort: not
/// every platform supports it, and the file itself is already synced.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn open_read_nofollow(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO planted there must not hang.
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    opts.open(path)
}

fn open_lock_file(path: &Path) -> io::Result<LockFile> {
    let file = fork::open_recorded(|| {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC);
        }
        opts.open(path)
    })?;
    let file = LockFile { file };
    if !file.file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn is_not_regular_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::EISDIR))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const SECRET: &str = "sk-ant-oat01-TOPSECRETtokenVALUE_1234";

    fn tok(expires_at: Option<i64>, lifetime: Option<i64>) -> CachedToken {
        CachedToken { access_token: Secret::new(SECRET), expires_at, lifetime }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn put(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn is_root() -> bool {
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn private_files_are_0600_in_0700_directories_and_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("a/b/ready");
        write_private_file(&path, "ready file", b"one\n").unwrap();
        assert_eq!((mode(&path), mode(&d.path().join("a")), mode(&d.path().join("a/b"))), (0o600, 0o700, 0o700));
        // A symlink planted at the path is replaced, not followed.
        let victim = d.path().join("victim");
        put(&victim, "keep", 0o644);
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_private_file(&path, "ready file", b"two\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        assert!(leftovers(&d.path().join("a/b")).is_empty());
        let e = write_private_file(&d.path().join("victim/x"), "ready file", b"").unwrap_err().to_string();
        assert!(e.contains("ready file") && e.contains("victim"), "{e}");
    }

    fn reason(read: DiskRead) -> (&'static str, String) {
        match read {
            DiskRead::Missing => ("missing", String::new()),
            DiskRead::Valid(_) => ("valid", String::new()),
            DiskRead::Corrupt(r) => ("corrupt", r),
            DiskRead::Insecure(r) => ("insecure", r),
        }
    }

    #[test]
    fn write_creates_0700_dirs_and_0600_file_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/cache.json");
        let cache = DiskCache::new(&path);
        assert!(matches!(cache.read(), DiskRead::Missing));
        cache.write(&tok(Some(1_795_475_414), Some(600))).unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
        assert_eq!(mode(&path), 0o600);
        let json: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["version"], "1.0");
        assert_eq!(json["type"], "oauth_token");
        assert_eq!(json["access_token"], SECRET);
        assert_eq!(json["expires_at"], 1_795_475_414);
        assert_eq!(json["expires_in"], 600);
        assert_eq!(json["issued_at"], 1_795_475_414 - 600);
        match cache.read() {
            DiskRead::Valid(t) => {
                assert_eq!(t.access_token.expose(), SECRET);
                assert_eq!(t.expires_at, Some(1_795_475_414));
                assert_eq!(t.lifetime, Some(600));
            }
            other => panic!("{other:?}"),
        }
        assert!(leftovers(&tmp.path().join("a/b")).is_empty());
        // Rewriting replaces the token.
        cache
            .write(&CachedToken {
                access_token: Secret::new("sk-ant-oat01-second"),
                expires_at: Some(5),
                lifetime: None,
            })
            .unwrap();
        match cache.read() {
            DiskRead::Valid(t) => {
                assert_eq!(t.access_token.expose(), "sk-ant-oat01-second");
                assert_eq!(t.lifetime, None);
            }
            other => panic!("{other:?}"),
        }
        let json: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert!(json.get("expires_in").is_none() && json.get("issued_at").is_none(), "{json}");
    }

    #[test]
    fn existing_directory_mode_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        DiskCache::new(dir.join("c.json")).write(&tok(Some(10), None)).unwrap();
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("c.json")), 0o600);
    }

    #[test]
    fn sdk_written_file_is_read() {
        // As the Python SDK writes it (indent 2, no extra keys), and variants the SDKs accept.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.json");
        for (text, exp) in [
            (format!("{{\n  \"version\": \"1.0\",\n  \"type\": \"oauth_token\",\n  \"access_token\": \"{SECRET}\",\n  \"expires_at\": 1795475414\n}}"), 1_795_475_414),
            (format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": \"1795475414\"}}"), 1_795_475_414),
            (format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 1795475414.9}}"), 1_795_475_414),
        ] {
            put(&path, &text, 0o600);
            match DiskCache::new(&path).read() {
                DiskRead::Valid(t) => {
                    assert_eq!(t.access_token.expose(), SECRET);
                    assert_eq!(t.expires_at, Some(exp));
                    assert_eq!(t.lifetime, None);
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn symlink_is_refused_and_replaced_by_write() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere.json");
        let valid = format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 99}}");
        put(&target, &valid, 0o600);
        let path = tmp.path().join("cache.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let cache = DiskCache::new(&path);
        let (kind, why) = reason(cache.read());
        assert_eq!(kind, "insecure");
        assert!(why.contains("symlink") && why.contains(&path.display().to_string()), "{why}");
        cache
            .write(&CachedToken { access_token: Secret::new("sk-ant-oat01-new"), expires_at: Some(7), lifetime: None })
            .unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file(), "the link itself was replaced");
        assert_eq!(fs::read_to_string(&target).unwrap(), valid, "the link target is untouched");
        assert!(matches!(cache.read(), DiskRead::Valid(t) if t.access_token.expose() == "sk-ant-oat01-new"));
    }

    #[test]
    fn group_or_world_access_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        for m in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o610] {
            put(&path, &format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 99}}"), m);
            let (kind, why) = reason(DiskCache::new(&path).read());
            assert_eq!(kind, "insecure", "mode {m:o}");
            assert!(why.contains("chmod 600") && why.contains(&format!("{m:#o}")), "{why}");
            assert!(!why.contains("TOPSECRET"));
        }
        // Rewriting fixes it: the new file is 0600.
        DiskCache::new(&path).write(&tok(Some(99), None)).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn other_owner_is_refused() {
        if !is_root() {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        put(&path, &format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 99}}"), 0o600);
        std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
        let (kind, why) = reason(DiskCache::new(&path).read());
        assert_eq!(kind, "insecure");
        assert!(why.contains("uid 4242"), "{why}");
    }

    #[test]
    fn special_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir_path = tmp.path().join("dir.json");
        fs::create_dir(&dir_path).unwrap();
        let (kind, why) = reason(DiskCache::new(&dir_path).read());
        assert_eq!(kind, "insecure");
        assert!(why.contains("not a regular file"), "{why}");

        let fifo = tmp.path().join("fifo.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (kind, why) = reason(DiskCache::new(&fifo).read()); // must not hang
        assert_eq!(kind, "insecure");
        assert!(why.contains("not a regular file"), "{why}");
    }

    #[test]
    fn garbage_is_corrupt_and_reasons_hold_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        let cases = [
            ("", "truncated"),
            ("garbage TOPSECRET", "syntax"),
            (&format!("{{\"access_token\": \"{SECRET}"), "truncated"),
            (&format!("[\"{SECRET}\"]"), "array"),
            (&format!("\"{SECRET}\""), "string"),
            ("{}", "access_token"),
            ("{\"access_token\": \"\", \"expires_at\": 5}", "access_token"),
            ("{\"access_token\": 12, \"expires_at\": 5}", "access_token"),
            // A newline would come out of `token --format env` as a second line.
            (&format!("{{\"access_token\": \"{SECRET}\\nX=TOPSECRET\", \"expires_at\": 5}}"), "HTTP header"),
            (&format!("{{\"access_token\": \"{SECRET} \", \"expires_at\": 5}}"), "HTTP header"),
            (&format!("{{\"access_token\": \"{SECRET}\"}}"), "expires_at"),
            (&format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": null}}"), "expires_at"),
            (&format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": \"soon TOPSECRET\"}}"), "expires_at"),
            (
                &format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 5, \"type\": \"private_key\"}}"),
                "private_key",
            ),
            (&format!("{{\"access_token\": \"{SECRET}\", \"expires_at\": 5, \"type\": \"{SECRET}\"}}"), "type"),
        ];
        for (text, needle) in cases {
            put(&path, text, 0o600);
            let (kind, why) = reason(DiskCache::new(&path).read());
            assert_eq!(kind, "corrupt", "{text}");
            assert!(why.contains(needle) && why.contains(&path.display().to_string()), "{text}: {why}");
            assert!(!why.contains("TOPSECRET"), "{why}");
        }
        // A corrupt file is overwritten by the next write.
        DiskCache::new(&path).write(&tok(Some(99), Some(60))).unwrap();
        assert!(matches!(DiskCache::new(&path).read(), DiskRead::Valid(_)));
    }

    #[test]
    fn unknown_fields_are_kept_and_stale_lifetime_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        put(
            &path,
            r#"{"version":"1.0","type":"oauth_token","access_token":"sk-ant-oat01-old","expires_at":1000,
               "refresh_token":"sk-ant-ort01-keepme","custom":{"a":[1,"x"]},"expires_in":5,"issued_at":1}"#,
            0o600,
        );
        let cache = DiskCache::new(&path);
        // Our lifetime pair does not add up (another SDK rewrote expires_at): ignored.
        assert!(matches!(cache.read(), DiskRead::Valid(t) if t.lifetime.is_none() && t.expires_at == Some(1000)));
        cache.write(&tok(Some(2000), Some(600))).unwrap();
        let json: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(json["refresh_token"], "sk-ant-ort01-keepme");
        assert_eq!(json["custom"], serde_json::json!({"a": [1, "x"]}));
        assert_eq!(json["access_token"], SECRET);
        assert_eq!(
            (json["expires_at"].as_i64(), json["expires_in"].as_i64(), json["issued_at"].as_i64()),
            (Some(2000), Some(600), Some(1400))
        );
        // An SDK rewrite keeps our keys but changes expires_at: the lifetime reads as unknown.
        let mut obj = json.as_object().unwrap().clone();
        obj.insert("expires_at".into(), Value::from(5000));
        put(&path, &Value::Object(obj).to_string(), 0o600);
        assert!(matches!(cache.read(), DiskRead::Valid(t) if t.lifetime.is_none() && t.expires_at == Some(5000)));
    }

    #[test]
    fn failed_write_leaves_no_temp_file_and_old_file_intact() {
        let tmp = tempfile::tempdir().unwrap();
        // Rename fails after the temp file was written: the target is a non-empty directory.
        let path = tmp.path().join("cache.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        let err = DiskCache::new(&path).write(&tok(Some(99), None)).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Internal);
        assert!(
            err.message().contains(&path.display().to_string()) && err.message().contains("renaming"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("TOPSECRET"));
        assert!(leftovers(tmp.path()).is_empty(), "{:?}", leftovers(tmp.path()));

        // A read-only directory (meaningless for root, who may write anyway).
        if !is_root() {
            let ro = tmp.path().join("ro");
            fs::create_dir(&ro).unwrap();
            let file = ro.join("cache.json");
            put(&file, "{\"access_token\":\"sk-ant-oat01-old\",\"expires_at\":1}", 0o600);
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
            let err = DiskCache::new(&file).write(&tok(Some(99), None)).unwrap_err();
            assert!(err.message().contains(&file.display().to_string()), "{}", err.message());
            assert!(leftovers(&ro).is_empty());
            assert!(fs::read_to_string(&file).unwrap().contains("sk-ant-oat01-old"));
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).unwrap();
        }
        // A file where the directory should be.
        let blocked = tmp.path().join("plain");
        fs::write(&blocked, "x").unwrap();
        let err = DiskCache::new(blocked.join("cache.json")).write(&tok(Some(99), None)).unwrap_err();
        assert!(err.message().contains("creating directory"), "{}", err.message());
    }

    #[test]
    fn token_without_expiry_is_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        assert!(DiskCache::new(&path).write(&tok(None, None)).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn lock_is_a_separate_0600_file_and_times_out_with_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d/cache.json");
        let a = DiskCache::new(&path);
        let b = DiskCache::new(&path);
        let guard = a.lock(Duration::from_secs(5)).unwrap();
        assert_eq!(guard.path(), tmp.path().join("d/cache.json.lock"));
        assert_eq!(mode(guard.path()), 0o600);
        assert_eq!(mode(&tmp.path().join("d")), 0o700);
        assert!(!path.exists(), "locking does not touch the cache file");
        let started = Instant::now();
        let err = b.lock(Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(err.kind, crate::ErrorKind::Internal);
        assert!(
            err.message().contains("cache.json.lock") && err.message().contains("another process"),
            "{}",
            err.message()
        );
        drop(guard);
        let _again = b.lock(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn symlinked_lock_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("victim");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("cache.json.lock")).unwrap();
        let err = DiskCache::new(tmp.path().join("cache.json")).lock(Duration::from_millis(100)).unwrap_err();
        assert!(err.message().contains("symlink"), "{}", err.message());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn sixteen_threads_with_separate_handles_serialize() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        let counter = tmp.path().join("counter");
        fs::write(&counter, "0").unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (path, counter, inside) = (path.clone(), counter.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..5 {
                        let cache = DiskCache::new(&path); // its own file handle each time
                        let _guard = cache.lock(Duration::from_secs(60)).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        let n: u64 = fs::read_to_string(&counter).unwrap().parse().unwrap();
                        std::thread::sleep(Duration::from_millis(1));
                        fs::write(&counter, (n + 1).to_string()).unwrap();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(fs::read_to_string(&counter).unwrap(), "80");
    }

    const CHILD_ENV: &str = "ANTHROPIC_WIF_TEST_LOCK_CHILD";
    const FORK_ENV: &str = "ANTHROPIC_WIF_TEST_LOCK_FORK";

    /// Not a test: the child process of the `lock_holder_*` tests. It takes
    /// the lock and, with FORK_ENV set, forks a grandchild that lives on.
    #[test]
    #[ignore = "helper process, run by the lock_holder_* tests"]
    fn lock_holder_child() {
        let env = Env::capture();
        let Some(path) = env.get(CHILD_ENV) else { return };
        let _guard = DiskCache::new(PathBuf::from(path)).lock(Duration::from_secs(10)).unwrap();
        let mut grandchild = 0;
        if env.is_set(FORK_ENV) {
            // SAFETY: the child only sleeps (async-signal-safe) and exits.
            grandchild = unsafe { libc::fork() };
            if grandchild == 0 {
                unsafe {
                    libc::sleep(120);
                    libc::_exit(0);
                }
            }
        }
        // libtest may print "test … ... " before this on the same line.
        println!("\nLOCKED {grandchild}");
        io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(120)); // killed long before
    }

    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Start `lock_holder_child` on `path`; returns it once it holds the
    /// lock, with the pid of its grandchild when it forked one.
    fn spawn_lock_holder(path: &Path, fork: bool) -> (KillOnDrop, i32) {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "cache::disk::tests::lock_holder_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if fork {
            cmd.env(FORK_ENV, "1");
        }
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let stdout = child.0.stdout.take().unwrap();
        for line in io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("LOCKED ") {
                return (child, rest.trim().parse().unwrap());
            }
        }
        panic!("child did not take the lock");
    }

    #[test]
    fn lock_holder_killed_releases_the_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        let (mut child, _) = spawn_lock_holder(&path, false);
        let cache = DiskCache::new(&path);
        assert!(cache.lock(Duration::from_millis(100)).is_err(), "the child holds the lock");
        let started = Instant::now();
        let waiter = std::thread::spawn(move || cache.lock(Duration::from_secs(30)).map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        child.0.kill().unwrap(); // SIGKILL: no cleanup in the child
        child.0.wait().unwrap();
        waiter.join().unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn lock_holder_that_forked_and_died_releases_the_lock() {
        // The holder forks a process that lives on, then is SIGKILLed: the
        // lock must go with the holder (issue 10, item 12). With a plain
        // flock the grandchild shared the locked file description and kept
        // the lock until it exited.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        let (mut child, grandchild) = spawn_lock_holder(&path, true);
        assert!(grandchild > 0);
        struct KillPid(i32);
        impl Drop for KillPid {
            fn drop(&mut self) {
                // SAFETY: plain kill(2) of the grandchild this test made.
                unsafe { libc::kill(self.0, libc::SIGKILL) };
            }
        }
        let grandchild = KillPid(grandchild);
        let cache = DiskCache::new(&path);
        assert!(cache.lock(Duration::from_millis(100)).is_err(), "the child holds the lock");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        // SAFETY: signal 0 only checks that the process exists.
        assert_eq!(unsafe { libc::kill(grandchild.0, 0) }, 0, "the grandchild lives on");
        let started = Instant::now();
        cache.lock(Duration::from_secs(10)).expect("the lock went with its holder");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn async_waiters_queue_in_the_process_and_time_out_together() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.json");
        crate::runtime::block_on(async {
            let holder = DiskCache::new(&path).lock_async(Duration::from_secs(5)).await.unwrap();
            // Waiting in the in-process queue counts against the time-out.
            let started = Instant::now();
            let err = DiskCache::new(&path).lock_async(Duration::from_millis(200)).await.unwrap_err();
            assert!(started.elapsed() >= Duration::from_millis(200) && started.elapsed() < Duration::from_secs(10));
            assert_eq!(err.error_code(), Some(LOCK_TIMEOUT_CODE));
            assert!(err.message().contains("another provider in this process"), "{}", err.message());
            // Many waiters: served one at a time, each exactly once.
            let inside = Arc::new(AtomicUsize::new(0));
            let served = Arc::new(AtomicUsize::new(0));
            let waiters: Vec<_> = (0..200)
                .map(|_| {
                    let (path, inside, served) = (path.clone(), inside.clone(), served.clone());
                    tokio::spawn(async move {
                        let _g = DiskCache::new(&path).lock_async(Duration::from_secs(30)).await.unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(served.load(Ordering::SeqCst), 0);
            drop(holder);
            for w in waiters {
                w.await.unwrap();
            }
            assert_eq!(served.load(Ordering::SeqCst), 200);
        });
    }

    #[test]
    fn env_cache_path_uses_xdg_then_home_and_hashes_the_key() {
        let xdg = Env::fixed([("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]);
        let p = env_cache_path(&xdg, "https://api.anthropic.com|fdrl_1|org|file:/t").unwrap();
        assert!(p.starts_with("/x/cache/anthropic-wif"), "{}", p.display());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 64 + 5);
        assert!(name.ends_with(".json") && name[..64].chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!p.display().to_string().contains("fdrl_1"));
        let home = Env::fixed([("HOME", "/home/u"), ("XDG_CACHE_HOME", "relative/ignored")]);
        let q = env_cache_path(&home, "https://api.anthropic.com|fdrl_1|org|file:/t").unwrap();
        assert_eq!(q, PathBuf::from("/home/u/.cache/anthropic-wif").join(name));
        let other = env_cache_path(&home, "https://api.anthropic.com|fdrl_2|org|file:/t").unwrap();
        assert_ne!(q, other);
        let err = env_cache_path(&Env::fixed::<[(&str, &str); 0], &str, &str>([]), "k").unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Config);
        assert!(err.message().contains("HOME"), "{}", err.message());
    }

    #[test]
    fn user_oauth_credentials_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("default.json");
        put(
            &path,
            &format!(
                r#"{{"version":"1.0","type":"oauth_token","access_token":"{SECRET}","refresh_token":"sk-ant-ort01-r","expires_at":1795475414}}"#
            ),
            0o600,
        );
        let t = read_user_oauth(&path).unwrap();
        assert_eq!((t.access_token.expose(), t.expires_at), (SECRET, Some(1_795_475_414)));
        put(&path, &format!(r#"{{"access_token":"{SECRET}","expires_at":null}}"#), 0o600);
        assert_eq!(read_user_oauth(&path).unwrap().expires_at, None);
        put(&path, &format!(r#"{{"access_token":"{SECRET}"}}"#), 0o600);
        assert_eq!(read_user_oauth(&path).unwrap().expires_at, None);
        put(&path, r#"{"refresh_token":"sk-ant-ort01-TOPSECRET"}"#, 0o600);
        let err = read_user_oauth(&path).unwrap_err();
        assert!(err.message().contains("access_token") && !err.message().contains("TOPSECRET"), "{}", err.message());
        put(&path, &format!(r#"{{"access_token":"{SECRET}"}}"#), 0o644);
        assert!(read_user_oauth(&path).unwrap_err().message().contains("chmod 600"));
        let err = read_user_oauth(&tmp.path().join("nope.json")).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::Config);
        assert!(err.message().contains("does not exist"), "{}", err.message());
    }
}
