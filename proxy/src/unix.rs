//! Creating the Unix socket with no moment at which another user can reach it.
//!
//! `bind(2)` creates the socket file with the process umask, so binding at the
//! final path and `chmod`-ing afterwards leaves a window in which anyone may
//! connect (and keep the connection). Instead the socket is bound inside a
//! fresh private directory (`mkdir` 0700 next to the final path, opened
//! `O_NOFOLLOW` and checked to be ours), given its final mode there, and only
//! then hard-linked to the final path: the name appears atomically with the
//! right mode, `link(2)` never follows a symlink and fails if the name was
//! taken meanwhile. The private directory is removed again. Every step goes
//! through directory descriptors, so renaming directories meanwhile cannot
//! redirect it.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use anthropic_wif_core::Error;

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_dir(at: libc::c_int, name: &CString, nofollow: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
    // SAFETY: a valid C string and flags; the returned descriptor is owned below.
    let fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dir: &OwnedFd, name: &CString) -> io::Result<libc::stat> {
    // SAFETY: zeroed is a valid `stat`; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor, C string and out pointer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

/// The private directory: removed (with the temporary name in it) on drop.
struct Private<'a> {
    parent: &'a OwnedFd,
    name: CString,
    dir: OwnedFd,
}

impl Drop for Private<'_> {
    fn drop(&mut self) {
        // SAFETY: valid descriptors and C strings; failures leave only an empty directory.
        unsafe {
            libc::unlinkat(self.dir.as_raw_fd(), c"s".as_ptr(), 0);
            libc::unlinkat(self.parent.as_raw_fd(), self.name.as_ptr(), libc::AT_REMOVEDIR);
        }
    }
}

fn make_private(parent: &OwnedFd) -> io::Result<Private<'_>> {
    for _ in 0..16 {
        let name = cstr(OsStr::new(&format!(".anthropic-wif-{:08x}", fastrand::u32(..))))?;
        // SAFETY: valid descriptor and C string.
        match check(unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o700) }) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let dir = match open_dir(parent.as_raw_fd(), &name, true) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: as above; removes the directory we just made.
                unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) };
                return Err(e);
            }
        };
        let private = Private { parent, name, dir };
        // SAFETY: zeroed is a valid `stat`; fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out pointer.
        check(unsafe { libc::fstat(private.dir.as_raw_fd(), &mut st) })?;
        // SAFETY: geteuid cannot fail.
        if st.st_uid != unsafe { libc::geteuid() } || st.st_mode & 0o077 != 0 {
            return Err(io::Error::other("the private directory is not ours alone"));
        }
        return Ok(private);
    }
    Err(io::Error::other("could not create a private directory next to the socket"))
}

/// Bind and listen on a Unix socket at `path` with permission bits `mode`,
/// replacing a stale socket left by a process that died.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<UnixListener, Error> {
    let shown = path.display();
    let fail = |what: &str, e: io::Error| Error::config(format!("--listen unix:{shown}: {what} ({e})"));
    let Some(file) = path.file_name() else {
        return Err(Error::config(format!("--listen unix:{shown}: give a path to a socket file, not a directory")));
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = cstr(file).map_err(|e| fail("bad path", e))?;
    let parent_c = cstr(parent.as_os_str()).map_err(|e| fail("bad path", e))?;
    let parent = open_dir(libc::AT_FDCWD, &parent_c, false).map_err(|e| fail("cannot open its directory", e))?;

    match stat_at(&parent, &name) {
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFSOCK => {
            return Err(Error::config(format!(
                "--listen unix:{shown}: the path exists and is not a socket (a symlink or a file); choose another path"
            )));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::config(format!(
                    "--listen unix:{shown}: another process is listening on this socket"
                )));
            }
            // A socket left behind by a process that died: replace it.
            // SAFETY: valid descriptor and C string; unlinkat does not follow symlinks.
            check(unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) })
                .map_err(|e| fail("cannot remove the stale socket", e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("cannot inspect the path", e)),
    }

    let private = make_private(&parent).map_err(|e| fail("cannot create a private directory next to it", e))?;
    // Bind through the directory descriptor: /proc/self/fd/N is the private
    // directory itself whatever happens to its name (and keeps the bound path short).
    let via_fd = format!("/proc/self/fd/{}/s", private.dir.as_raw_fd());
    let listener = if Path::new("/proc/self/fd").is_dir() {
        UnixListener::bind(&via_fd)
    } else {
        UnixListener::bind(parent_path_join(parent_c.as_bytes(), private.name.as_bytes()))
    }
    .map_err(|e| fail("cannot listen", e))?;
    // SAFETY: valid descriptor and C string; nobody else can reach into the private directory.
    check(unsafe { libc::fchmodat(private.dir.as_raw_fd(), c"s".as_ptr(), (mode & 0o777) as libc::mode_t, 0) })
        .map_err(|e| fail("cannot set the socket's mode", e))?;
    // SAFETY: valid descriptors and C strings; flags 0: never follows a symlink.
    let linked =
        check(unsafe { libc::linkat(private.dir.as_raw_fd(), c"s".as_ptr(), parent.as_raw_fd(), name.as_ptr(), 0) });
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::config(format!(
                "--listen unix:{shown}: the path was created by someone else while the proxy was starting; \
                 choose a path in a directory only you can write to"
            )));
        }
        Err(e) => return Err(fail("cannot put the socket in place", e)),
    }
    drop(private);
    // std listens with a backlog of 128; allow a burst of clients as TCP does.
    // SAFETY: a listening socket we own.
    unsafe { libc::listen(listener.as_raw_fd(), 1024) };
    Ok(listener)
}

fn parent_path_join(parent: &[u8], private: &[u8]) -> std::path::PathBuf {
    Path::new(OsStr::from_bytes(parent)).join(OsStr::from_bytes(private)).join("s")
}
