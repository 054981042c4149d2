//! `wif-emulator --print-env`: try anthropic-wif by hand against the emulator.
//!
//! The emulator keeps a file that always holds an unused test JWT — written at
//! start and replaced after every successful exchange, the way a platform
//! rotates a projected service-account token — in a private temporary
//! directory (0700, created exclusively, removed on exit), and prints the
//! `export` lines a workload would have, ready to paste into another shell.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The federation rule the printed exports name (any well-formed id is accepted unless `--rule` is given).
pub const LOCAL_RULE: &str = "fdrl_01LocalRule0000000000000000";
/// The organization the printed exports name.
pub const LOCAL_ORGANIZATION: &str = "00000000-0000-4000-8000-000000000001";
/// The service account the printed exports name.
pub const LOCAL_SERVICE_ACCOUNT: &str = "svac_01LocalServiceAccount00000";
/// The file name of the identity token inside the private directory.
const TOKEN_FILE: &str = "identity-token";

/// A private directory under the system's temporary directory, removed on drop.
pub(crate) struct PrivateDir {
    dir: PathBuf,
}

impl PrivateDir {
    /// Creates `<tmp>/wif-emulator-<pid>-<random>` exclusively (an existing
    /// path, e.g. a symlink planted by someone else, is never reused).
    pub(crate) fn create() -> io::Result<PrivateDir> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let dir = base.join(format!("wif-emulator-{}-{:016x}", std::process::id(), fastrand::u64(..)));
            #[cfg_attr(not(unix), allow(unused_mut))] // only Unix sets a mode
            let mut b = fs::DirBuilder::new();
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt;
                b.mode(0o700);
            }
            match b.create(&dir) {
                Ok(()) => return Ok(PrivateDir { dir }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no unique directory name")))
    }

    /// The identity-token file inside it.
    pub(crate) fn token_file(&self) -> PathBuf {
        self.dir.join(TOKEN_FILE)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Replaces `path` with `jwt` atomically (a temporary file beside it, then a
/// rename), so a reader sees the old token or the new one, never half.
pub(crate) fn write_identity_token(path: &Path, jwt: &str) -> io::Result<()> {
    let tmp = path.with_extension(format!("{:016x}.tmp", fastrand::u64(..)));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = opts.open(&tmp).and_then(|mut f| f.write_all(jwt.as_bytes())).and_then(|_| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A POSIX-shell single-quoted word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The lines `--print-env` prints: a comment, then `unset`/`export` lines.
pub(crate) fn export_lines(base_url: &str, rule: &str, token_file: &Path) -> String {
    format!(
        "# wif-emulator serves {base_url} until Ctrl-C. Paste these lines into another shell; the identity token file\n\
         # always holds an unused test JWT (the emulator replaces it after each exchange).\n\
         unset ANTHROPIC_API_KEY ANTHROPIC_AUTH_TOKEN ANTHROPIC_PROFILE\n\
         export ANTHROPIC_BASE_URL={}\n\
         export ANTHROPIC_FEDERATION_RULE_ID={rule}\n\
         export ANTHROPIC_ORGANIZATION_ID={LOCAL_ORGANIZATION}\n\
         export ANTHROPIC_SERVICE_ACCOUNT_ID={LOCAL_SERVICE_ACCOUNT}\n\
         export ANTHROPIC_IDENTITY_TOKEN_FILE={}\n",
        shell_quote(base_url),
        shell_quote(&token_file.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed() {
        assert!(crate::ids::is_tagged(LOCAL_RULE, "fdrl_"));
        assert!(crate::ids::is_tagged(LOCAL_SERVICE_ACCOUNT, "svac_"));
        assert!(crate::ids::is_uuid(LOCAL_ORGANIZATION));
    }

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn private_dir_is_private_and_removed() {
        let d = PrivateDir::create().unwrap();
        let f = d.token_file();
        write_identity_token(&f, "a.b.c").unwrap();
        write_identity_token(&f, "d.e.f").unwrap();
        assert_eq!(fs::read_to_string(&f).unwrap(), "d.e.f");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&d.dir).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::read_dir(&d.dir).unwrap().count(), 1, "no temporary file is left behind");
        let dir = d.dir.clone();
        drop(d);
        assert!(!dir.exists());
    }
}
