//! Process hardening for the faces that hold secrets in their own process:
//! the CLI's `token`, `exec`, `doctor` and `proxy` (the bindings leave the
//! host program's process alone: that is its owner's decision).
//!
//! [`harden`] keeps the access token and the identity JWT out of core dumps:
//! - Linux: `prctl(PR_SET_DUMPABLE, 0)`. The kernel then writes no core file
//!   and hands nothing to a `core_pattern` pipe handler (systemd-coredump,
//!   apport), whatever `ulimit -c` says; as a side effect, processes of the
//!   same user can no longer `ptrace` us or read `/proc/<pid>/mem` and
//!   `/proc/<pid>/environ`.
//! - Every Unix: the soft `RLIMIT_CORE` is set to 0 (the hard limit is kept,
//!   so [`before_exec`] can give a program we `exec` the user's limit back).
//! - Elsewhere (Windows): nothing; documented no-op. Windows Error Reporting
//!   dumps are configured machine-wide, outside a process's reach.
//!
//! Dumpability is reset by the kernel when `exec` runs another (non-setuid)
//! program, so `anthropic-wif exec` leaves CMD exactly as the user set it up.

use std::sync::OnceLock;

/// The soft `RLIMIT_CORE` before the first [`harden`].
#[cfg(unix)]
static SAVED_CORE_LIMIT: OnceLock<libc::rlim_t> = OnceLock::new();

/// What [`harden`] achieved, read back from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hardening {
    /// `PR_GET_DUMPABLE` after the change (Linux only).
    pub dumpable: Option<i32>,
    /// The soft `RLIMIT_CORE` after the change (Unix only).
    pub core_limit: Option<u64>,
}

impl std::fmt::Display for Hardening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dumpable = self.dumpable.map(|d| d.to_string()).unwrap_or_else(|| "n/a".into());
        let limit = self.core_limit.map(|l| l.to_string()).unwrap_or_else(|| "n/a".into());
        write!(f, "core dumps disabled (dumpable {dumpable}, RLIMIT_CORE soft limit {limit})")
    }
}

/// Keep secrets out of core dumps (see the module docs). Call it first thing
/// in a face that will hold secrets; safe to call more than once. Failures
/// are reported under `-vv`, never fatal.
pub fn harden() -> Hardening {
    #[cfg(unix)]
    {
        #[cfg(target_os = "linux")]
        // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers.
        unsafe {
            libc::prctl(
                libc::PR_SET_DUMPABLE,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            );
        }
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: lim is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } == 0 {
            SAVED_CORE_LIMIT.get_or_init(|| lim.rlim_cur);
            lim.rlim_cur = 0;
            // SAFETY: lim is a valid rlimit; lowering the soft limit is always allowed.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
        }
    }
    let state = current();
    crate::diag::emit(crate::diag::DEBUG, || state.to_string());
    state
}

/// The dumpable flag and soft core limit as the kernel has them now.
pub(crate) fn current() -> Hardening {
    #[cfg(unix)]
    {
        #[cfg(target_os = "linux")]
        // SAFETY: PR_GET_DUMPABLE takes no pointers.
        let dumpable = Some(unsafe {
            libc::prctl(
                libc::PR_GET_DUMPABLE,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        });
        #[cfg(not(target_os = "linux"))]
        let dumpable = None;
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: lim is a valid, writable rlimit.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } == 0;
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every Unix
        let core_limit = ok.then_some(lim.rlim_cur as u64);
        Hardening { dumpable, core_limit }
    }
    #[cfg(not(unix))]
    {
        Hardening { dumpable: None, core_limit: None }
    }
}

/// Just before `exec`-ing another program: give it back the soft core limit
/// the user had (the kernel resets dumpability by itself at `exec`).
pub fn before_exec() {
    #[cfg(unix)]
    {
        let Some(&saved) = SAVED_CORE_LIMIT.get() else { return };
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: lim is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) } == 0 {
            lim.rlim_cur = saved.min(lim.rlim_max);
            // SAFETY: lim is a valid rlimit within the hard limit.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
        }
    }
}
