//! `{"source": "file", "path": …}`: a token file, read afresh at every call
//! (projected Kubernetes / SPIFFE tokens rotate underneath us).

use std::io::ErrorKind as IoKind;
use std::path::Path;

use std::io::Read;

use super::{finish, MAX_LOCAL_TOKEN_BYTES};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The generic fix appended to file errors.
const FILE_FIX: &str = "point the identity token file at a file that holds the identity JWT (ANTHROPIC_IDENTITY_TOKEN_FILE or the profile's identity_token.path); \
on Kubernetes, mount a projected service-account token with audience https://api.anthropic.com at that path \
(volumes: projected: sources: serviceAccountToken: {audience: https://api.anthropic.com, path: …})";

pub(crate) async fn read(path: &Path, source: &str) -> Result<Secret> {
    read_with_fix(path, source, FILE_FIX).await
}

/// Like [`read`], with a source-specific fix in every error (presets).
pub(crate) async fn read_with_fix(path: &Path, source: &str, fix: &str) -> Result<Secret> {
    if path.as_os_str().is_empty() {
        return Err(Error::config(format!("{source}: the path is empty; {fix}")));
    }
    let io_err = |e: std::io::Error| -> Error {
        let what = match e.kind() {
            IoKind::NotFound => "does not exist".to_string(),
            IoKind::PermissionDenied => {
                "cannot be read (permission denied); give this process's user read access to it".to_string()
            }
            _ => format!("cannot be read ({e})"),
        };
        Error::identity(format!("{source} {what}; {fix}"))
    };
    // A small local file: read it right here rather than hopping to the blocking
    // pool four times (open, metadata, read, close), which costs more CPU than
    // the read. Opened non-blocking so a FIFO cannot hang us (a regular file
    // ignores the flag). Open first, then inspect the open file: no window
    // between the check and the read.
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(Error::identity(format!("{source} is {kind}; {fix}")));
    }
    if meta.len() > MAX_LOCAL_TOKEN_BYTES as u64 {
        return Err(too_big(source, meta.len(), fix));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow between metadata and read: bound the read itself too.
    file.take(MAX_LOCAL_TOKEN_BYTES as u64 + 1).read_to_end(&mut buf).map_err(io_err)?;
    if buf.len() > MAX_LOCAL_TOKEN_BYTES {
        return Err(too_big(source, buf.len() as u64, fix));
    }
    let text = String::from_utf8(buf).map_err(|_| {
        Error::identity(format!("{source} is not UTF-8 text; it must hold the identity JWT itself; {fix}"))
    })?;
    finish(text, source)
}

fn too_big(source: &str, len: u64, fix: &str) -> Error {
    Error::identity(format!(
        "{source} is {len} bytes, more than the {MAX_LOCAL_TOKEN_BYTES}-byte limit for an identity token; is it the right file? {fix}"
    ))
}
