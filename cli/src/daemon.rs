//! `anthropic-wif daemon --target-profile NAME [config flags]`: keep the
//! credentials file of an externally rotated profile fresh (docs/design.md
//! §2, docs/daemon.md), so that every official SDK (Python, Node, Go, Java,
//! Ruby, PHP, C#) and Claude Code, given only `ANTHROPIC_PROFILE=NAME` (and
//! `ANTHROPIC_CONFIG_DIR`), use federated tokens without any code of ours.
//!
//! The federation configuration is resolved exactly as for `token` (flags,
//! `ANTHROPIC_*` variables, profiles); the keeper (cli/src/keeper.rs) writes
//! `<config_dir>/credentials/NAME.json` (or the profile's `credentials_path`)
//! in the SDKs' format and replaces the token ahead of every reader's window
//! (core's refresh policy), sharing the cache and lock with every other face.
//! `--write-profile` also writes `configs/NAME.json`; a profile of another
//! shape is never written into (`--overwrite-profile` replaces it).
//!
//! Readiness: `--ready-file PATH` exists while the credentials file holds an
//! unexpired token (created when the first one is in place, removed when it
//! expires unrenewed and on exit), and with `NOTIFY_SOCKET` set (systemd
//! `Type=notify`) `READY=1` is sent once, `STATUS=` at each rotation and
//! `STOPPING=1` at exit. SIGTERM or SIGINT ends it cleanly (exit 0), the file
//! keeping its token. `--once` makes one pass (for cron and init containers)
//! and exits 0 when the file then holds an unexpired token, else with the
//! error's code. No listener: the files are the interface (a metrics endpoint
//! would be the only socket of a sidecar that otherwise needs none; see
//! docs/daemon.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anthropic_wif_core::cache::disk::write_private_file;
use anthropic_wif_core::config::rotated::{self, Existing};
use anthropic_wif_core::config::{Env, Origin};
use anthropic_wif_core::{diag, now_unix, process, runtime, Error};
use clap::Args;

use crate::args::CommonArgs;
use crate::fail;
use crate::keeper::{self, Keeper};

const AFTER_HELP: &str = "\
The token is replaced min(360 s, 3/4 of its lifetime) before it expires: a minute ahead of the Java SDK's 300 s
refresh window (120 s for the other SDKs), and well before Node, Go and C# refuse a token 30 s before expiry.
While the token endpoint fails, the file keeps the still-valid token and the daemon retries with back-off
(1 s doubling to 30 s, at least 5 s); exchanges are shared with `anthropic-wif token` and every other
anthropic-wif process using the same configuration (one cache file, one lock), so a `token` call beside the
daemon finds its token and exchanges nothing.

Kubernetes: run it as a native sidecar with the app's uid and a shared emptyDir as ANTHROPIC_CONFIG_DIR;
CI: `anthropic-wif daemon --once` before the job step, or in the background for long jobs (docs/daemon.md).
Exit codes: 0 stopped by SIGTERM/SIGINT, or --once with a token in place; otherwise as for `token`.";

#[derive(Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct DaemonArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The profile the SDKs read (they get ANTHROPIC_PROFILE=NAME): its credentials file,
    /// <config_dir>/credentials/NAME.json or the profile's credentials_path, is kept fresh.
    #[arg(long, value_name = "NAME", help_heading = "Daemon")]
    pub target_profile: String,
    /// Also write <config_dir>/configs/NAME.json: a user_oauth profile without client_id carrying this
    /// configuration's organization_id, workspace_id and base_url.
    #[arg(long, help_heading = "Daemon")]
    pub write_profile: bool,
    /// Replace profile NAME when it has another shape (an interactive login, a federation profile)
    /// instead of refusing to write its token.
    #[arg(long, help_heading = "Daemon")]
    pub overwrite_profile: bool,
    /// Put a token in place (exchanging only when the one there is due) and exit: for cron jobs, CI steps
    /// and init containers.
    #[arg(long, help_heading = "Daemon")]
    pub once: bool,
    /// Keep this file while the credentials file holds an unexpired token (created with the first one,
    /// removed when it expires unrenewed and on exit): a readiness probe (`test -f PATH`).
    #[arg(long, value_name = "PATH", help_heading = "Daemon")]
    pub ready_file: Option<PathBuf>,
    /// No line per rotation on stderr (failures are still reported).
    #[arg(long, help_heading = "Daemon")]
    pub quiet: bool,
}

pub fn run(a: DaemonArgs) -> ExitCode {
    diag::set_verbosity(a.common.verbose);
    // The daemon holds access tokens for as long as it runs: keep them out of core dumps.
    process::harden();
    if a.common.has("min_remaining") {
        return fail(&Error::config(
            "--min-remaining does not apply to the daemon: it replaces the token min(360 s, 3/4 of its lifetime) \
             before expiry, ahead of every SDK's refresh window",
        ));
    }
    let env = Env::capture();
    let (provider, settings) = match keeper::provider(
        &a.common,
        "daemon",
        "the daemon keeps a profile's credentials fresh",
        "give the federation settings (flags, ANTHROPIC_* variables or an oidc_federation profile with --profile)",
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let target = match rotated::inspect(
        &provider.resolved().config_dir,
        &a.target_profile,
        &Origin::Explicit("--target-profile".into()),
        &env,
    ) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    if let Err(e) = target.check_ours(a.overwrite_profile, "--overwrite-profile") {
        return fail(&e);
    }
    if a.write_profile {
        match rotated::write(&target, &settings, a.overwrite_profile, "--overwrite-profile") {
            Ok(true) => keeper::log(
                "daemon",
                &format!("wrote the profile {} (user_oauth without client_id)", target.config_path().display()),
            ),
            Ok(false) => {}
            Err(e) => return fail(&e),
        }
    } else if matches!(target.existing, Existing::Missing) {
        keeper::log(
            "daemon",
            &format!(
                "note: there is no profile {}, so the SDKs will not find this token under ANTHROPIC_PROFILE={}; \
                 pass --write-profile to write it",
                target.config_path().display(),
                a.target_profile
            ),
        );
    }
    let credentials = target.credentials_path();
    let mut keeper = Keeper::new(provider, credentials, "daemon", !a.quiet);
    let mut ready = Readiness::new(a.ready_file.clone(), if a.once { None } else { env.get("NOTIFY_SOCKET") });

    if a.once {
        let pass = runtime::block_on(keeper.pass());
        if keeper.usable_now() {
            ready.update(&keeper);
            return ExitCode::SUCCESS;
        }
        return fail(&pass.error.unwrap_or_else(|| Error::internal("no access token could be obtained")));
    }
    let result = runtime::block_on(async {
        let shutdown = crate::proxy::shutdown_signal()?;
        tokio::pin!(shutdown);
        loop {
            let pass = tokio::select! {
                p = keeper.pass() => p,
                _ = &mut shutdown => break,
            };
            ready.update(&keeper);
            tokio::select! {
                _ = tokio::time::sleep(pass.next) => {}
                _ = &mut shutdown => break,
            }
        }
        Ok::<(), Error>(())
    });
    ready.stopping();
    if let Err(e) = result {
        return fail(&e);
    }
    keeper::log("daemon", &format!("stopping; {} keeps its token", keeper.path().display()));
    ExitCode::SUCCESS
}

/// The ready file and systemd's notification socket.
struct Readiness {
    file: Option<PathBuf>,
    notify: Option<String>,
    ready: bool,
    announced: bool,
    expires_at: Option<i64>,
}

impl Readiness {
    fn new(file: Option<PathBuf>, notify: Option<String>) -> Self {
        Readiness { file, notify, ready: false, announced: false, expires_at: None }
    }

    /// Follow the credentials file: ready while it holds an unexpired token.
    fn update(&mut self, keeper: &Keeper) {
        let usable = keeper.usable_now();
        let expires_at = keeper.held_expiry();
        if usable && (!self.ready || expires_at != self.expires_at) {
            if let Some(f) = &self.file {
                let body = serde_json::json!({
                    "credentials_path": keeper.path().display().to_string(),
                    "expires_at": expires_at,
                })
                .to_string()
                    + "\n";
                if let Err(e) = write_private_file(f, "ready file", body.as_bytes()) {
                    keeper::log("daemon", &e.to_string());
                }
            }
            let status = format!(
                "STATUS=token in {} expires in {} s",
                keeper.path().display(),
                expires_at.map_or(0, |e| e - now_unix())
            );
            if !self.announced {
                self.announced = true;
                sd_notify(self.notify.as_deref(), &format!("READY=1\n{status}"));
            } else {
                sd_notify(self.notify.as_deref(), &status);
            }
            self.ready = true;
            self.expires_at = expires_at;
        } else if !usable && self.ready {
            self.ready = false;
            self.remove_file();
            sd_notify(self.notify.as_deref(), "STATUS=the token in the credentials file has expired; renewing");
        }
    }

    fn stopping(&mut self) {
        sd_notify(self.notify.as_deref(), "STOPPING=1");
        self.remove_file();
    }

    fn remove_file(&self) {
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Send `state` to systemd's notification socket (`NOTIFY_SOCKET`: a path,
/// or `@name` for an abstract socket on Linux). Best effort, like
/// `sd_notify(3)`; nothing without the variable, and nothing off Unix.
fn sd_notify(socket: Option<&str>, state: &str) {
    #[cfg(unix)]
    if let Some(socket) = socket {
        use std::os::unix::net::UnixDatagram;
        let Ok(sock) = UnixDatagram::unbound() else { return };
        let sent = match socket.strip_prefix('@') {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Some(name) => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
            }
            _ => sock.send_to(state.as_bytes(), socket),
        };
        if let Err(e) = sent {
            diag::emit(diag::INFO, || format!("could not notify {socket}: {e}"));
        }
    }
    #[cfg(not(unix))]
    let _ = (socket, state);
}
