//! Shared helpers for the CLI's end-to-end tests: a real emulator on
//! loopback and real `anthropic-wif` processes with a clean environment.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use anthropic_wif_emulator::{Emulator, EmulatorConfig};

pub const RULE: &str = "fdrl_01TestRule000000000000000";
pub const ORG: &str = "00000000-0000-4000-8000-000000000001";
pub const SVAC: &str = "svac_01TestServiceAccount0000000";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_anthropic-wif")
}

/// A sandbox: a temp HOME with config and cache dirs, an emulator, and the
/// environment a workload would have.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub emu: Emulator,
    pub env: BTreeMap<String, String>,
}

impl Sandbox {
    pub fn new() -> Self {
        Self::with_config(EmulatorConfig::default())
    }

    pub fn with_config(config: EmulatorConfig) -> Self {
        Self::with_config_in(tempfile::tempdir().expect("tempdir"), config)
    }

    /// A sandbox whose emulator mints tokens of `lifetime` seconds and, like a
    /// platform rotating a projected token, keeps `identity-token` holding an
    /// unused JWT (refilled after every exchange): for commands that exchange
    /// again and again (the daemon, exec's keeper). Federation is configured
    /// through the SDKs' environment variables; returns the token file too.
    pub fn rotating(lifetime: u64) -> (Self, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let jwt = dir.path().join("identity-token");
        let config = EmulatorConfig {
            token_lifetime: lifetime,
            identity_token_file: Some(jwt.clone()),
            ..EmulatorConfig::default()
        };
        let mut sb = Self::with_config_in(dir, config);
        assert_eq!(sb.federation_env(), jwt);
        (sb, jwt)
    }

    fn with_config_in(dir: tempfile::TempDir, config: EmulatorConfig) -> Self {
        let emu = Emulator::start(config).expect("emulator starts");
        let mut env = BTreeMap::new();
        env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_default());
        env.insert("HOME".to_string(), dir.path().join("home").display().to_string());
        env.insert("XDG_CACHE_HOME".to_string(), dir.path().join("cache").display().to_string());
        env.insert("ANTHROPIC_CONFIG_DIR".to_string(), dir.path().join("config").display().to_string());
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Sandbox { dir, emu, env }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a fresh single-use JWT to `identity-token` and return its path.
    pub fn fresh_jwt_file(&self) -> PathBuf {
        let p = self.path("identity-token");
        std::fs::write(
            &p,
            format!(
                "{}\n",
                self.emu.mint_jwt(
                    anthropic_wif_emulator::DEFAULT_SUBJECT,
                    anthropic_wif_emulator::DEFAULT_AUDIENCE,
                    3600
                )
            ),
        )
        .unwrap();
        p
    }

    /// Federation through flags: the emulator's base URL, the test rule and
    /// organization, and a fresh identity-token file (`args` first, e.g. the
    /// subcommand).
    pub fn federation_args(&self, args: &[&str]) -> Vec<String> {
        let jwt = self.fresh_jwt_file();
        let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        out.extend(
            ["--base-url", &self.emu.base_url(), "--federation-rule-id", RULE, "--organization-id", ORG]
                .map(String::from),
        );
        out.extend(["--identity-token-file".to_string(), jwt.display().to_string()]);
        out
    }

    /// [`Sandbox::run`] with string arguments.
    pub fn run_owned(&self, args: &[String]) -> Output {
        self.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Configure federation through the SDKs' environment variables.
    pub fn federation_env(&mut self) -> PathBuf {
        let jwt = self.fresh_jwt_file();
        self.env.insert("ANTHROPIC_BASE_URL".into(), self.emu.base_url());
        self.env.insert("ANTHROPIC_FEDERATION_RULE_ID".into(), RULE.into());
        self.env.insert("ANTHROPIC_ORGANIZATION_ID".into(), ORG.into());
        self.env.insert("ANTHROPIC_SERVICE_ACCOUNT_ID".into(), SVAC.into());
        self.env.insert("ANTHROPIC_IDENTITY_TOKEN_FILE".into(), jwt.display().to_string());
        jwt
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).env_clear().envs(&self.env).stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run anthropic-wif")
    }

    pub fn exchanges(&self) -> u64 {
        self.emu.stats().exchanges
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Parse the credential-process JSON and check its shape.
pub fn parse_token_json(o: &Output) -> (String, i64) {
    let out = stdout(o);
    assert!(o.status.success(), "exit {:?}\nstdout: {out}\nstderr: {}", o.status, stderr(o));
    assert!(out.ends_with('\n') && out.matches('\n').count() == 1, "exactly one line: {out:?}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("stdout is JSON");
    let obj = v.as_object().expect("an object");
    assert_eq!(obj.len(), 2, "only access_token and expires_at: {out}");
    let token = obj["access_token"].as_str().expect("access_token string").to_string();
    let exp = obj["expires_at"].as_i64().expect("expires_at integer");
    assert!(token.starts_with("sk-ant-oat01-"), "token shape");
    (token, exp)
}

/// Assert that no secret appears in the process's output streams.
pub fn assert_no_secrets(o: &Output, secrets: &[&str]) {
    let all = format!("{}{}", stdout(o), stderr(o));
    for s in secrets {
        assert!(!s.is_empty());
        assert!(!all.contains(s), "a secret leaked into the output: {all}");
    }
    assert!(!all.contains("eyJ"), "something JWT-like leaked: {all}");
}

pub fn read_secret_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

#[cfg(unix)]
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Run and time a command.
pub fn run_timed(cmd: &mut Command) -> (Output, std::time::Duration) {
    let start = std::time::Instant::now();
    let o = cmd.output().expect("run anthropic-wif");
    (o, start.elapsed())
}

/// The leak check every test uses: none of `secrets` (non-empty strings) and
/// nothing token- or JWT-shaped in `text`.
pub fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(s), "{what}: a secret leaked: {text}");
    }
    assert!(!text.contains("sk-ant-oat01-"), "{what}: an access token leaked: {text}");
    assert!(!text.contains("sk-ant-api03-"), "{what}: an API key leaked: {text}");
    assert!(!text.contains("eyJ"), "{what}: something JWT-like leaked: {text}");
}

/// A failed run: nothing on stdout, the documented exit code, one clear
/// `error [kind]` line on stderr, and no secret anywhere.
pub fn assert_failed(o: &Output, kind: &str, code: i32, secrets: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code for {kind}; stderr: {err}");
    assert!(o.stdout.is_empty(), "nothing on stdout on failure: {:?}", stdout(o));
    assert!(err.contains(&format!("error [{kind}]")), "stderr names the kind {kind}: {err}");
    assert_clean("stderr", &err, secrets);
    err
}

/// Every file under `dir` (recursively) with its contents.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out
}

#[cfg(unix)]
pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The one cache file under `$XDG_CACHE_HOME/anthropic-wif` (env/flag configurations).
pub fn env_cache_file(sb: &Sandbox) -> Option<PathBuf> {
    let dir = sb.path("cache/anthropic-wif");
    std::fs::read_dir(&dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.extension().map(|e| e == "json").unwrap_or(false)
            && !p.file_name().unwrap().to_string_lossy().starts_with('.')
    })
}

/// A loopback HTTP server answering every request with `status` and `body`
/// (as `content_type`), for identity URLs and CI runners; returns its base URL.
pub fn serve_http(status: u16, content_type: &'static str, body: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status} Answer\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}
