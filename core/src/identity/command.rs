//! `{"source": "command", "command": [argv…], "timeout_s": 30}`: run a program
//! (no shell) and take its stdout as the token.
//!
//! - The child's environment is the caller's snapshot ([`Env`]: the calling
//!   thread's `os.environ` or `process.env` in the bindings, the CLI's own
//!   environment), not the process environment, which the engine never reads;
//!   it inherits the working directory; stdin is `/dev/null`, stdout and
//!   stderr are pipes.
//! - stdout is bounded (`MAX_LOCAL_TOKEN_BYTES`); more is an error and the
//!   child is killed at once.
//! - On time-out the child is killed. On Unix it runs in its own process group
//!   and the whole group gets SIGKILL, so `sh -c '…'` wrappers do not leave
//!   grandchildren behind; the child is always waited for (no zombies).
//! - A non-zero exit is an error carrying the exit status and the tail of
//!   stderr, scrubbed of anything that looks like a token.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{finish, MAX_LOCAL_TOKEN_BYTES};
use crate::env::Env;
use crate::error::{scrub, Error, Result};
use crate::secret::Secret;

/// Default time-out when `timeout_s` is not given.
pub(crate) const DEFAULT_TIMEOUT_S: u64 = 30;
/// Largest accepted `timeout_s`.
pub(crate) const MAX_TIMEOUT_S: u64 = 3600;
/// How much of stderr is kept (its tail) while reading.
const STDERR_KEEP_BYTES: usize = 8 * 1024;
/// How much of the stderr tail reaches a message.
const STDERR_MESSAGE_CHARS: usize = 500;

pub(crate) async fn run(argv: &[String], timeout_s: Option<u64>, env: &Env, source: &str) -> Result<Secret> {
    let Some(program) = argv.first().filter(|p| !p.is_empty()) else {
        return Err(Error::config(format!(
            "{source}: the command is empty; give the program and its arguments as a JSON array, e.g. {{\"source\": \"command\", \"command\": [\"/usr/local/bin/get-token\", \"--audience\", \"https://api.anthropic.com\"]}}"
        )));
    };
    let timeout_s = timeout_s.unwrap_or(DEFAULT_TIMEOUT_S);
    if timeout_s == 0 || timeout_s > MAX_TIMEOUT_S {
        return Err(Error::config(format!(
            "{source}: timeout_s is {timeout_s}; it must be between 1 and {MAX_TIMEOUT_S} seconds (default {DEFAULT_TIMEOUT_S})"
        )));
    }
    run_with_timeout(program, &argv[1..], Duration::from_secs(timeout_s), env, source).await
}

pub(crate) async fn run_with_timeout(
    program: &str,
    args: &[String],
    timeout: Duration,
    env: &Env,
    source: &str,
) -> Result<Secret> {
    let mut cmd = tokio::process::Command::new(program);
    // Cleared and refilled: with the environment untouched, spawning would
    // read the process environment (and with posix_spawnp, PATH) here.
    cmd.env_clear().envs(env.vars());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);

    let mut child = cmd.spawn().map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("cannot start {program:?}: not found; install it, or give its full path (no shell is used, so PATH lookup is the only search and shell syntax does not work)")
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("cannot start {program:?}: permission denied; make it executable (chmod +x) for this user")
            }
            _ => format!("cannot start {program:?}: {e}"),
        };
        Error::identity(format!("{source}: {why}"))
    })?;
    let mut group = GroupKiller::new(child.id());

    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        group.kill();
        let _ = child.kill().await;
        return Err(Error::internal(format!("{source}: the command's output pipes were not set up")));
    };

    let exited = AtomicBool::new(false);
    let work = async {
        let out = async {
            let r = read_capped(stdout, MAX_LOCAL_TOKEN_BYTES).await;
            if matches!(r, Ok(None)) {
                // Too much output: stop the child now rather than let it run on.
                group.kill_now();
            }
            r
        };
        let wait = async {
            let s = child.wait().await;
            if s.is_ok() {
                exited.store(true, Ordering::Relaxed);
            }
            s
        };
        let (out, err, status) = tokio::join!(out, read_tail(stderr, STDERR_KEEP_BYTES), wait);
        (out, err, status)
    };
    let outcome = tokio::time::timeout(timeout, work).await;

    let (out, err_tail, status) = match outcome {
        Ok(v) => v,
        Err(_) => {
            group.kill();
            let _ = child.kill().await; // SIGKILL (if still running) and reap
            let detail = if exited.load(Ordering::Relaxed) {
                " (the program exited, but its output pipe stayed open: a background process it started still holds it)"
            } else {
                ""
            };
            return Err(Error::identity(format!(
                "{source}: timed out after {}s and was killed{detail}; make the command finish faster, or raise timeout_s",
                timeout.as_secs_f64()
            )));
        }
    };
    group.disarm();
    let status = status.map_err(|e| Error::identity(format!("{source}: cannot wait for the command: {e}")))?;
    let out = out.map_err(|e| Error::identity(format!("{source}: cannot read the command's output: {e}")))?;
    let err_text = String::from_utf8_lossy(&err_tail.unwrap_or_default()).into_owned();

    let Some(out) = out else {
        return Err(Error::identity(format!(
            "{source}: printed more than {MAX_LOCAL_TOKEN_BYTES} bytes on stdout and was killed; the command must print only the identity token"
        )));
    };
    let out_secret = Secret::new(String::from_utf8_lossy(&out).into_owned());
    if !status.success() {
        let tail = stderr_tail(&err_text, &[out_secret.expose()]);
        let tail = if tail.is_empty() { "no stderr output".to_string() } else { format!("stderr: {tail}") };
        return Err(Error::identity(format!(
            "{source}: {}; {tail}; run the command by hand to see why it fails",
            describe_status(&status)
        )));
    }
    let text = match String::from_utf8(out) {
        Ok(t) => t,
        Err(_) => {
            return Err(Error::identity(format!(
                "{source}: printed output that is not UTF-8 text; the command must print only the identity token"
            )))
        }
    };
    drop(out_secret);
    finish(text, source).map_err(|e| {
        let tail = stderr_tail(&err_text, &[]);
        if tail.is_empty() {
            e
        } else {
            let mut e = e;
            e.append(format!(" (stderr: {tail})"));
            e
        }
    })
}

fn describe_status(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    format!("failed ({status})")
}

/// The last [`STDERR_MESSAGE_CHARS`] characters of stderr, scrubbed of
/// `secrets` and anything token-shaped (scrubbed whole first, then cut, so
/// no token can survive as a fragment at the cut).
fn stderr_tail(text: &str, secrets: &[&str]) -> String {
    let clean = scrub(text.trim(), secrets, usize::MAX);
    let n = clean.chars().count();
    if n > STDERR_MESSAGE_CHARS {
        let t: String = clean.chars().skip(n - STDERR_MESSAGE_CHARS).collect();
        format!("…{t}")
    } else {
        clean
    }
}

/// Read up to `cap` bytes; `Ok(None)` when there is more than that.
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, cap: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(buf));
        }
        if buf.len() + n > cap {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read to the end, keeping only the last `keep` bytes. When anything was
/// dropped, the partial first line is dropped too, so a token cut in half at
/// the boundary cannot slip past the scrubber as an unrecognisable fragment.
async fn read_tail<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> std::io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            let cut = buf.len().saturating_sub(keep);
            if cut > 0 {
                truncated = true;
                buf.drain(..cut);
            }
            if truncated {
                let first_nl = buf.iter().position(|&b| b == b'\n').map(|i| i + 1).unwrap_or(buf.len());
                buf.drain(..first_nl);
            }
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * keep {
            let cut = buf.len() - keep;
            buf.drain(..cut);
            truncated = true;
        }
    }
}

/// Kills the child's whole process group (Unix) unless disarmed, including
/// when the fetch future is dropped (cancelled) midway.
struct GroupKiller {
    #[cfg_attr(not(unix), allow(dead_code))]
    pgid: Option<u32>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        GroupKiller { pgid: pid }
    }
    /// Kill now and stay armed (a kill on drop of a dead group is harmless
    /// only while the pid is not reused, so callers disarm after reaping).
    fn kill_now(&self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid {
            if pgid > 1 {
                // SAFETY: killpg has no memory-safety preconditions.
                unsafe {
                    libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
    fn kill(&mut self) {
        self.kill_now();
        self.pgid = None;
    }
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}
