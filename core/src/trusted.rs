//! Files and directories we trust: the one ownership and permission rule for
//! everything we read that another local user could otherwise control.
//!
//! A profile decides where an identity token is sent and which command runs
//! as you; the token cache directory and its lock file decide whether tokens
//! are shared, replaced or blocked. So, on Unix:
//!
//! - `Policy::Settings` (profiles, `active_config`, the `configs/` and config
//!   directories, the token cache directory and its lock file): owned by this
//!   user (the effective uid) or root, and not writable by group or others.
//!   A symlink is followed only when the link itself belongs to this user or
//!   root, and then the file it leads to must pass the same rule.
//! - `Policy::Secret` (the token cache file, which both official SDKs also
//!   guard this way): owned by this user, no access at all for group or
//!   others, never a symlink.
//!
//! Files are judged by what was opened, not by name: `open` takes the
//! path's `lstat`, opens it (with `O_NOFOLLOW` unless the link itself was
//! judged), and checks the `fstat` of the descriptor, so swapping the file
//! between the check and the read gains nothing. Directories are judged by
//! path ([`check_dir`]); replacing a trusted directory needs write access to
//! its parent, which is the user's own (home) or sticky (`/tmp`).
//!
//! Every refusal names the file, its owner uid and mode, and the fix.
//!
//! Windows: the owner/mode rule is not checked (the checks compile to "trust
//! a regular file"). Profiles and caches live under the user's profile
//! (`%APPDATA%`, `%LOCALAPPDATA%`), whose ACLs already keep other users out;
//! a configuration that points elsewhere must be protected by its ACLs.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Which rule a file or directory must pass (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Owned by this user or root, not writable by group or others.
    Settings,
    /// Owned by this user, no group or other access, never a symlink.
    Secret,
}

/// Why [`open`] gave no file.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Nothing at the path.
    Missing,
    /// Refused by the rule; the reason names the file, owner, mode and fix.
    Refused(String),
    /// The open itself failed (permission denied, I/O error…).
    Io(io::Error),
}

/// Open `path` for reading if it is a regular file that passes `policy`.
/// `what` names it in messages (e.g. `config file`), `stake` says what an
/// attacker who controls it could do (e.g. `choose where your identity token
/// is sent`).
pub(crate) fn open(path: &Path, what: &str, stake: &str, policy: Policy) -> Result<(File, Metadata), OpenError> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
        Err(e) => return Err(OpenError::Io(e)),
    };
    let is_link = link.file_type().is_symlink();
    if is_link {
        if policy == Policy::Secret {
            return Err(OpenError::Refused(format!(
                "the {what} {} is a symlink; refusing to follow it. Replace it with a regular file.",
                path.display()
            )));
        }
        check_link(&link, path, what).map_err(OpenError::Refused)?;
    }
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: a FIFO planted there must not hang the open.
        let nofollow = if is_link { 0 } else { libc::O_NOFOLLOW };
        opts.custom_flags(nofollow | libc::O_NONBLOCK | libc::O_CLOEXEC);
    }
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
        Err(e) if is_symlink_error(&e) => {
            return Err(OpenError::Refused(format!(
                "the {what} {} was replaced by a symlink while it was being opened; refusing to follow it. \
                 Check who else can write its directory.",
                path.display()
            )))
        }
        Err(e) => return Err(OpenError::Io(e)),
    };
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::Refused(format!(
            "the {what} {} is not a regular file (it is a {}); replace it with a regular file.",
            path.display(),
            if meta.is_dir() { "directory" } else { "special file" }
        )));
    }
    check(&meta, path, what, stake, policy).map_err(OpenError::Refused)?;
    Ok((file, meta))
}

/// Check a file's metadata (of an open descriptor, ideally) against `policy`.
pub(crate) fn check(meta: &Metadata, path: &Path, what: &str, stake: &str, policy: Policy) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let p = path.display();
        let (uid, mode, me) = (meta.uid(), meta.mode() & 0o7777, current_uid());
        match policy {
            Policy::Secret => {
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "the {what} {p} is accessible by group or others (mode {mode:#o}); run `chmod 600 {p}`."
                    ));
                }
                if uid != me {
                    return Err(format!(
                        "the {what} {p} is owned by uid {uid}, not by this user (uid {me}); remove it, or `chown` it \
                         if it is really yours."
                    ));
                }
            }
            Policy::Settings => {
                if uid != me && uid != 0 {
                    return Err(format!(
                        "the {what} {p} belongs to uid {uid} (mode {mode:04o}), not to this user (uid {me}) or root; \
                         refusing it, because whoever owns it could {stake}. If it is yours, run `chown {me} {p}`; \
                         otherwise remove it."
                    ));
                }
                if mode & 0o022 != 0 {
                    return Err(format!(
                        "the {what} {p} is writable by group or others (owner uid {uid}, mode {mode:04o}); refusing \
                         it, because anyone who can write it could {stake}. Run `chmod go-w {p}`."
                    ));
                }
            }
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (meta, path, what, stake, policy);
        Ok(())
    }
}

/// Check a directory against `Policy::Settings`: owned by this user or
/// root, not writable by group or others (a symlink to it must belong to this
/// user or root too). A directory that does not exist passes: whoever creates
/// it next is checked then.
pub fn check_dir(dir: &Path, what: &str, stake: &str) -> Result<(), String> {
    let link = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("the {what} {} cannot be inspected: {e}", dir.display())),
    };
    if link.file_type().is_symlink() {
        check_link(&link, dir, what)?;
    }
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("the {what} {} cannot be inspected: {e}", dir.display())),
    };
    if !meta.is_dir() {
        return Err(format!("the {what} {} is not a directory; remove it.", dir.display()));
    }
    check(&meta, dir, what, stake, Policy::Settings)
}

/// A symlink is followed only when it belongs to this user or root.
fn check_link(link: &Metadata, path: &Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (uid, me) = (link.uid(), current_uid());
        if uid != me && uid != 0 {
            return Err(format!(
                "the {what} {} is a symlink owned by uid {uid}, not by this user (uid {me}) or root; refusing to \
                 follow it. Remove it (`rm {}`), or replace it with the real file.",
                path.display(),
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = (link, path, what);
    Ok(())
}

/// The effective uid (0 on systems without uids).
pub(crate) fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// `ELOOP`: an `O_NOFOLLOW` open met a symlink.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    const OTHER: u32 = 65534;

    fn is_root() -> bool {
        current_uid() == 0
    }

    fn put(path: &Path, mode: u32) {
        fs::write(path, "{}").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refused(r: Result<(File, Metadata), OpenError>) -> String {
        match r {
            Err(OpenError::Refused(why)) => why,
            Err(e) => panic!("not refused but {e:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn own_files_pass_and_writable_ones_do_not() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        put(&p, 0o644);
        open(&p, "config file", "x", Policy::Settings).unwrap();
        check_dir(d.path(), "dir", "x").unwrap();
        for mode in [0o664, 0o646, 0o666] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let why = refused(open(&p, "config file", "choose things", Policy::Settings));
            assert!(why.contains("writable by group or others") && why.contains(&format!("mode {mode:04o}")), "{why}");
            assert!(why.contains(&format!("chmod go-w {}", p.display())) && why.contains("choose things"), "{why}");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let why = refused(open(&p, "cache file", "x", Policy::Secret));
        assert!(why.contains("chmod 600"), "{why}");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let why = check_dir(d.path(), "token cache directory", "x").unwrap_err();
        assert!(why.contains("writable by group or others") && why.contains("mode 0777"), "{why}");
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(open(&d.path().join("nope"), "f", "x", Policy::Settings), Err(OpenError::Missing)));
        check_dir(&d.path().join("nope"), "dir", "x").unwrap();
    }

    #[test]
    fn files_and_dirs_of_another_user_are_refused_even_through_symlinks() {
        if !is_root() {
            eprintln!("skipped: needs root to create files owned by another uid (CI runs as root)");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let theirs = d.path().join("theirs.json");
        put(&theirs, 0o644);
        std::os::unix::fs::chown(&theirs, Some(OTHER), Some(OTHER)).unwrap();
        let why = refused(open(&theirs, "config file", "run commands as you", Policy::Settings));
        assert!(why.contains(&format!("uid {OTHER}")) && why.contains("mode 0644"), "{why}");
        assert!(why.contains("run commands as you") && why.contains("chown 0"), "{why}");
        // Our symlink to their file: the file is judged.
        let ours = d.path().join("ours.json");
        symlink(&theirs, &ours).unwrap();
        assert!(refused(open(&ours, "config file", "x", Policy::Settings)).contains(&format!("uid {OTHER}")));
        // Their symlink to our file: the link is judged.
        let mine = d.path().join("mine.json");
        put(&mine, 0o600);
        let their_link = d.path().join("their-link.json");
        symlink(&mine, &their_link).unwrap();
        std::os::unix::fs::lchown(&their_link, Some(OTHER), Some(OTHER)).unwrap();
        let why = refused(open(&their_link, "config file", "x", Policy::Settings));
        assert!(why.contains("symlink owned by uid 65534"), "{why}");
        // Our symlink to our file is fine for settings, never for secrets.
        let good_link = d.path().join("good-link.json");
        symlink(&mine, &good_link).unwrap();
        open(&good_link, "config file", "x", Policy::Settings).unwrap();
        assert!(refused(open(&good_link, "cache file", "x", Policy::Secret)).contains("symlink"));
        // A directory of theirs, directly or through our symlink.
        let dir = d.path().join("their-dir");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(OTHER), Some(OTHER)).unwrap();
        let why = check_dir(&dir, "token cache directory", "delete your tokens").unwrap_err();
        assert!(why.contains("uid 65534") && why.contains("mode 0755") && why.contains("delete your tokens"), "{why}");
        let dir_link = d.path().join("dir-link");
        symlink(&dir, &dir_link).unwrap();
        assert!(check_dir(&dir_link, "dir", "x").unwrap_err().contains("uid 65534"));
    }
}
