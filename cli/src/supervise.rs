//! Running CMD as a child that behaves, for whoever started `anthropic-wif
//! exec`, as if it were CMD itself: signals reach CMD once, and CMD's exit
//! status (a code, or death by a signal) is ours. `exec` keeps a child
//! instead of becoming CMD (execvp) because it keeps CMD's credentials file
//! fresh while CMD runs, and removes CMD's private directory afterwards.
//!
//! Unix:
//! - SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 and SIGWINCH are
//!   caught (a handler that only writes a record to a pipe) and forwarded to
//!   CMD by a thread, **unless** they came from the kernel's terminal driver
//!   (Ctrl-C, Ctrl-\, a window resize, a hang-up): those reach the whole
//!   foreground process group, CMD included, so forwarding would deliver
//!   them twice (an interactive program treats a second Ctrl-C as "quit now").
//!   Linux tells them apart by `si_code` (`SI_KERNEL` vs `SI_USER`/`SI_QUEUE`,
//!   as sudo does); other Unixes by a sender pid of 0 (untested here). A
//!   signal CMD sends to us is not sent back. A signal sent to our whole
//!   process group by another process (`kill -TERM -- -PGID`, systemd's
//!   `KillMode=control-group`) reaches CMD directly and through us: twice.
//! - Job control (SIGTSTP, SIGCONT) keeps its default action: a stopped
//!   terminal job stops us and CMD together. SIGKILL cannot be caught: CMD is
//!   then orphaned and its private directory stays behind.
//! - No signal is forwarded to a recycled pid: CMD is waited for with
//!   `WNOWAIT` first (its pid stays reserved while it is a zombie), and the
//!   forwarder sends nothing once it has exited.
//! - CMD's exit code is ours; when a signal killed CMD we restore that
//!   signal's default action and raise it on ourselves (core dumps are off
//!   for us), so our parent sees exactly what it would have seen of CMD
//!   (`128 + N` in a shell); should we survive it, we exit with `128 + N`.
//!
//! Elsewhere (Windows): a console's Ctrl-C / Ctrl-Break reaches CMD through
//! the shared console while this process swallows it and keeps waiting; CMD's
//! 32-bit exit code is passed on whole.

use std::process::{Command, ExitCode};

/// The signals we forward, caught from before CMD's private directory exists
/// until we exit (so a SIGTERM while it is being prepared is not the
/// default death that would leave the directory behind).
pub struct Signals {
    #[cfg(unix)]
    forwarder: imp::Forwarder,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            forwarder: imp::Forwarder::install()?,
        })
    }

    /// A signal asking us to stop (SIGHUP, SIGINT, SIGQUIT, SIGTERM) that
    /// came before CMD started, if any (others that came are dropped: there
    /// was no CMD to forward them to).
    pub fn stop_requested(&self) -> Option<i32> {
        #[cfg(unix)]
        return self.forwarder.stop_requested();
        #[cfg(not(unix))]
        None
    }
}

/// End this process as if `sig` had killed it (for a stop requested before CMD started).
pub fn die_by(sig: i32) -> ExitCode {
    #[cfg(unix)]
    imp::die_by(sig);
    ExitCode::from((128 + sig).clamp(0, 255) as u8)
}

/// Run `cmd` (already configured), call `after` once it has exited (or
/// failed to start), and end this process as CMD ended. Returns only when CMD
/// could not be started (127 not found, 126 not runnable, as a shell says).
pub fn run(mut cmd: Command, program: &str, signals: Signals, after: impl FnOnce()) -> ExitCode {
    #[cfg(windows)]
    let _interrupts = swallow_console_interrupts();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            after();
            return cannot_run(program, &e);
        }
    };
    #[cfg(unix)]
    {
        let pid = child.id() as libc::pid_t;
        let live = signals.forwarder.forward_to(pid);
        imp::wait_exited(pid);
        live.exited();
    }
    #[cfg(not(unix))]
    drop(signals);
    let status = child.wait();
    after();
    match status {
        Ok(s) => exit_like(s),
        Err(e) => {
            eprintln!("anthropic-wif: error [internal]: exec: cannot wait for {program:?}: {e}");
            ExitCode::from(1)
        }
    }
}

/// CMD could not be started. That is not one of the engine's error kinds
/// (the token was obtained; nothing about anthropic-wif's configuration is
/// wrong), so the message is tagged `[exec]` and the status follows the
/// shells and env(1): 127 not found, 126 found but not runnable
/// (docs/design.md §8).
pub fn cannot_run(program: &str, e: &std::io::Error) -> ExitCode {
    let (code, what) = match e.kind() {
        std::io::ErrorKind::NotFound => (127, "not found (check the name and PATH)"),
        std::io::ErrorKind::PermissionDenied => (126, "not executable (permission denied)"),
        _ => (126, "could not be started"),
    };
    eprintln!("anthropic-wif: error [exec]: {program:?} {what}: {e}");
    ExitCode::from(code)
}

#[cfg(unix)]
fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    if let Some(sig) = status.signal() {
        imp::die_by(sig);
        std::process::exit(128 + sig);
    }
    ExitCode::from(1)
}

#[cfg(not(unix))]
fn exit_like(status: std::process::ExitStatus) -> ExitCode {
    // Windows exit codes are 32-bit (0xC000013A after Ctrl-C, for one): passed on whole.
    std::process::exit(status.code().unwrap_or(1))
}

/// While the returned listeners live, a console Ctrl-C or Ctrl-Break is delivered to them (tokio's
/// console control handler reports it handled) instead of terminating this process.
#[cfg(windows)]
pub fn swallow_console_interrupts() -> (Option<tokio::signal::windows::CtrlC>, Option<tokio::signal::windows::CtrlBreak>)
{
    let _rt = anthropic_wif_core::runtime::runtime().enter();
    (tokio::signal::windows::ctrl_c().ok(), tokio::signal::windows::ctrl_break().ok())
}

#[cfg(unix)]
mod imp {
    use std::io;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::{Arc, Mutex};

    /// The signals forwarded to CMD (module docs).
    const FORWARDED: [libc::c_int; 7] =
        [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

    /// The write end of the signal pipe, for the handler.
    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

    /// One caught signal: (signal, si_code, sender pid), written whole (12
    /// bytes, below PIPE_BUF, so never interleaved).
    type Record = [libc::c_int; 3];

    extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
        let errno = errno();
        let (code, pid) = if info.is_null() {
            (0, 0)
        } else {
            // SAFETY: the kernel hands a valid siginfo_t to an SA_SIGINFO handler.
            unsafe { ((*info).si_code, (*info).si_pid()) }
        };
        let rec: Record = [sig, code, pid];
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: write(2) is async-signal-safe; `rec` is a valid buffer. A full pipe
            // (non-blocking) drops the record: that many signals pending is a flood anyway.
            unsafe { libc::write(fd, rec.as_ptr().cast(), std::mem::size_of::<Record>()) };
        }
        set_errno(errno);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn errno() -> libc::c_int {
        // SAFETY: the thread's errno location is always valid.
        unsafe { *libc::__errno_location() }
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn set_errno(v: libc::c_int) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = v }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn errno() -> libc::c_int {
        0
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn set_errno(_: libc::c_int) {}

    /// Whether a caught signal should be sent on to CMD (`child`).
    fn should_forward(code: libc::c_int, sender: libc::pid_t, child: libc::pid_t) -> bool {
        if sender == child {
            return false; // CMD signalled us: not back to it
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SI_USER (0), SI_QUEUE, SI_TKILL… are <= 0: sent by a process (pid 0 when from
            // outside our pid namespace, e.g. `docker stop`). SI_KERNEL and the rest are the
            // kernel's: the terminal already signalled CMD's process group.
            code <= 0
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = code;
            sender != 0
        }
    }

    pub(super) struct Forwarder {
        read: libc::c_int,
    }

    /// Whether CMD may still be signalled; cleared (under the lock the
    /// forwarder holds while sending) once CMD has exited.
    pub(super) struct Live(Arc<Mutex<bool>>);

    impl Live {
        pub(super) fn exited(self) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
        }
    }

    impl Forwarder {
        /// Create the pipe and install the handlers (before CMD starts, so
        /// no signal is lost in between: records wait in the pipe).
        pub(super) fn install() -> io::Result<Forwarder> {
            let (read, write) = pipe()?;
            PIPE_WRITE.store(write, Ordering::SeqCst);
            for sig in FORWARDED {
                // SAFETY: a zeroed sigaction is a valid starting point; the handler only
                // calls async-signal-safe functions.
                unsafe {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = on_signal as *const () as usize;
                    sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                    libc::sigemptyset(&mut sa.sa_mask);
                    if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
            }
            Ok(Forwarder { read })
        }

        /// Read what is in the pipe without waiting: the first signal asking
        /// us to stop, if any.
        pub(super) fn stop_requested(&self) -> Option<libc::c_int> {
            loop {
                let mut pfd = libc::pollfd { fd: self.read, events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd; a zero time-out never blocks.
                if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 {
                    return None;
                }
                let mut rec: Record = [0; 3];
                // SAFETY: `rec` is a valid buffer of that size; the pipe has data.
                let n = unsafe { libc::read(self.read, rec.as_mut_ptr().cast(), std::mem::size_of::<Record>()) };
                if n != std::mem::size_of::<Record>() as isize {
                    return None;
                }
                if [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM].contains(&rec[0]) {
                    return Some(rec[0]);
                }
            }
        }

        /// Start forwarding to `child` (records already in the pipe included).
        pub(super) fn forward_to(self, child: libc::pid_t) -> Live {
            let live = Arc::new(Mutex::new(true));
            let flag = live.clone();
            let read = self.read;
            std::thread::Builder::new()
                .name("anthropic-wif-signals".into())
                .spawn(move || loop {
                    let mut rec: Record = [0; 3];
                    // SAFETY: `rec` is a valid buffer of that size; `read` is our pipe.
                    let n = unsafe { libc::read(read, rec.as_mut_ptr().cast(), std::mem::size_of::<Record>()) };
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    if n != std::mem::size_of::<Record>() as isize {
                        return;
                    }
                    let [sig, code, sender] = rec;
                    if !should_forward(code, sender, child) {
                        anthropic_wif_core::diag::emit(anthropic_wif_core::diag::DEBUG, || {
                            format!("signal {sig} (code {code}, from pid {sender}) reached CMD directly: not forwarded")
                        });
                        continue;
                    }
                    let alive = flag.lock().unwrap_or_else(|e| e.into_inner());
                    if *alive {
                        // SAFETY: plain kill(2); the pid is CMD's, reserved until it is reaped.
                        unsafe { libc::kill(child, sig) };
                        anthropic_wif_core::diag::emit(anthropic_wif_core::diag::DEBUG, || {
                            format!("signal {sig} (code {code}, from pid {sender}) forwarded to CMD")
                        });
                    }
                })
                .ok();
            Live(live)
        }
    }

    /// A pipe whose ends do not leak into other children (close-on-exec), the
    /// write end non-blocking (the handler must never block).
    fn pipe() -> io::Result<(libc::c_int, libc::c_int)> {
        let mut fds = [-1; 2];
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: `fds` is a valid array of two descriptors.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        // SAFETY: as above; close-on-exec is set right after.
        let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: fcntl on descriptors we just created.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: as above.
        unsafe {
            let flags = libc::fcntl(fds[1], libc::F_GETFL);
            libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok((fds[0], fds[1]))
    }

    /// Block until `pid` has exited, without reaping it (its pid stays
    /// reserved: nothing can be forwarded to a recycled pid).
    pub(super) fn wait_exited(pid: libc::pid_t) {
        loop {
            // SAFETY: a zeroed siginfo_t is a valid output buffer.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: plain waitid(2) on our own child.
            let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    /// End this process by `sig`, as CMD ended (module docs).
    pub(super) fn die_by(sig: libc::c_int) {
        // SAFETY: plain signal-disposition and mask calls on this process.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(sig);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::should_forward;

        #[test]
        fn terminal_signals_and_cmds_own_are_not_sent_twice() {
            let child = 4242;
            #[cfg(target_os = "linux")]
            {
                assert!(should_forward(libc::SI_USER, 100, child), "kill(1) from another process");
                assert!(should_forward(libc::SI_USER, 0, child), "from outside the pid namespace (docker stop)");
                assert!(should_forward(libc::SI_QUEUE, 100, child));
                assert!(!should_forward(libc::SI_KERNEL, 0, child), "Ctrl-C: the terminal signalled CMD too");
            }
            assert!(!should_forward(0, child, child), "CMD signalling us");
        }
    }
}
