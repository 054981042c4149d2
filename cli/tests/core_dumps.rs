//! Core dumps never carry the tokens (issue #10, item 8): the CLI's faces that
//! hold secrets (`token`, `exec`, `doctor`, `proxy`, `daemon`) turn core dumps off for
//! themselves (`core::process::harden`). Checked from the outside on real
//! processes started with `ulimit -c unlimited` in a directory they can
//! write: the soft core limit in `/proc/<pid>/limits`, the owner of
//! `/proc/<pid>/status` (root once a process is no longer dumpable) for a
//! process run as another user, and SIGABRT / SIGSEGV leaving no core file and
//! no "core dumped" in the wait status. The last check also holds on a box
//! whose `core_pattern` pipes to a handler: a non-dumpable process is handed
//! to no handler at all.
#![cfg(target_os = "linux")]

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child that is killed if a test fails before it is reaped.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

/// Start `cmd` with the largest core limit allowed (unlimited where the hard
/// limit is) and its working directory in `dir`, where a core file would land.
fn spawn_dumpable(mut cmd: Command, dir: &Path) -> Proc {
    cmd.current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0 {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_CORE, &lim);
            }
            Ok(())
        });
    }
    Proc(Some(cmd.spawn().expect("start anthropic-wif")))
}

/// The core limit a child of ours starts with (what `spawn_dumpable` sets).
fn inherited_core_limit() -> String {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: lim is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
    if lim.rlim_max == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        (lim.rlim_max / 1024).to_string() // `ulimit -c` counts 1024-byte blocks
    }
}

/// The soft "Max core file size" of a running process.
fn soft_core_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max core file size")).expect("core line");
    line["Max core file size".len()..].split_whitespace().next().unwrap().to_string()
}

/// Stderr lines of `child`, as they come.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let pipe = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collect stderr until a line contains `needle`; returns everything seen.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return seen;
            }
        }
    }
    panic!("no line with {needle:?} in: {seen}");
}

/// The `-vv` line in which the process reports, as the kernel has it, that
/// core dumps are off.
fn assert_reports_hardening(what: &str, log: &str) {
    let note = log.lines().find(|l| l.contains("core dumps disabled")).unwrap_or_else(|| panic!("{what}: {log}"));
    assert!(note.contains("dumpable 0") && note.contains("limit 0"), "{what}: {note}");
}

/// Kill with `sig`; the process must die by it without dumping core.
fn kill_and_check_no_core(mut child: Proc, sig: i32, dir: &Path, what: &str) {
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    if sig == libc::SIGSEGV {
        // Rust's runtime handles the first SIGSEGV (to report stack overflows)
        // by restoring the default action and returning: send it again.
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_none() {
            // SAFETY: as above.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }
    let status: ExitStatus = child.wait().unwrap();
    assert_eq!(status.signal(), Some(sig), "{what}: died by the signal: {status:?}");
    assert!(!status.core_dumped(), "{what}: the kernel dumped core ({status:?})");
    let cores: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("core"))
        .collect();
    assert!(cores.is_empty(), "{what}: core files appeared: {cores:?}");
}

fn federation_flags(sb: &Sandbox, jwt: &Path) -> Vec<String> {
    let base = sb.emu.base_url();
    let flags = ["--base-url", &base, "--federation-rule-id", RULE, "--organization-id", ORG];
    let mut v: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    v.extend(["--identity-token-file".into(), jwt.display().to_string()]);
    v
}

#[test]
fn the_proxy_holding_a_token_dumps_no_core() {
    let sb = Sandbox::new();
    let jwt = sb.fresh_jwt_file();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["proxy".to_string(), "-vv".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(federation_flags(&sb, &jwt));
    let mut cmd = Command::new(bin());
    cmd.args(&args).env_clear().envs(&sb.env).stdin(Stdio::null());
    let mut child = spawn_dumpable(cmd, dir.path());
    let log = stderr_lines(&mut child);
    let mut ready = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.contains("base_url"), "{ready:?}");
    // It holds the access token now.
    let seen = wait_for_line(&log, "access token ready");
    assert_ne!(inherited_core_limit(), "0", "the test could not raise the core limit");
    let limit = soft_core_limit(child.id());
    kill_and_check_no_core(child, libc::SIGABRT, dir.path(), "proxy, SIGABRT");
    assert_eq!(limit, "0", "the proxy's soft core limit");
    assert_reports_hardening("proxy", &seen);
}

#[test]
fn token_doctor_exec_and_daemon_dump_no_core_while_they_work() {
    let sb = Sandbox::new();
    // An identity URL that never answers: the process is caught mid-work.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hang = format!("http://{}/token", silent.local_addr().unwrap());
    let base = sb.emu.base_url();
    let flags = ["--base-url", &base, "--federation-rule-id", RULE, "--organization-id", ORG, "--no-cache"];
    for (sub, sig) in
        [("token", libc::SIGSEGV), ("doctor", libc::SIGQUIT), ("exec", libc::SIGABRT), ("daemon", libc::SIGSEGV)]
    {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![sub, "-vv"];
        args.extend_from_slice(&flags);
        args.extend_from_slice(&["--identity-token-url", &hang]);
        if sub == "exec" {
            args.extend_from_slice(&["--", "true"]);
        }
        if sub == "daemon" {
            args.extend_from_slice(&["--target-profile", "app"]);
        }
        let mut cmd = Command::new(bin());
        cmd.args(&args).env_clear().envs(&sb.env).stdin(Stdio::null());
        let mut child = spawn_dumpable(cmd, dir.path());
        let log = stderr_lines(&mut child);
        // Working: the configuration is resolved, the identity URL hangs.
        let seen = wait_for_line(&log, "configuration:");
        let limit = soft_core_limit(child.id());
        kill_and_check_no_core(child, sig, dir.path(), sub);
        assert_eq!(limit, "0", "{sub}: soft core limit");
        assert_reports_hardening(sub, &seen);
    }
}

#[test]
fn exec_gives_the_command_the_users_core_limit_back() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["exec", "--", "sh", "-c", "ulimit -c"]).env_clear().envs(&sb.env).stdin(Stdio::null());
    let o = spawn_dumpable(cmd, dir.path()).0.take().unwrap().wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), inherited_core_limit(), "CMD's `ulimit -c`");
}

/// As another user, the owner of `/proc/<pid>/status` shows dumpability from
/// the outside: the user's own for a dumpable process, root for one that
/// is not (so that user's other processes cannot read or ptrace it either).
#[test]
fn run_as_another_user_the_proxy_is_not_dumpable() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run the proxy as another uid (CI runs as root)");
        return;
    }
    const NOBODY: u32 = 65534;
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let jwt = dir.path().join("jwt");
    std::fs::write(
        &jwt,
        sb.emu.mint_jwt(anthropic_wif_emulator::DEFAULT_SUBJECT, anthropic_wif_emulator::DEFAULT_AUDIENCE, 3600),
    )
    .unwrap();
    std::os::unix::fs::chown(&jwt, Some(NOBODY), Some(NOBODY)).unwrap();
    let mut args = vec!["proxy".to_string(), "--no-cache".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(federation_flags(&sb, &jwt));
    let mut cmd = Command::new(bin());
    cmd.args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("ANTHROPIC_CONFIG_DIR", dir.path().join("config"))
        .stdin(Stdio::null())
        .uid(NOBODY)
        .gid(NOBODY);
    let mut child = spawn_dumpable(cmd, dir.path());
    let log = stderr_lines(&mut child);
    let mut ready = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.contains("base_url"), "{ready:?}");
    wait_for_line(&log, "access token ready");
    let owner = std::fs::metadata(format!("/proc/{}/status", child.id())).unwrap().uid();
    kill_and_check_no_core(child, libc::SIGABRT, dir.path(), "proxy as nobody, SIGABRT");
    assert_eq!(owner, 0, "a dumpable process's /proc files belong to its user ({NOBODY})");
}
