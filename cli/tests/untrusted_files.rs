//! Files we read must be ours and well-formed (issue #10, items 2 and 5 and
//! "decide and document"): a profile, `active_config` or `configs/` owned by
//! another user (or writable by group or others) is refused before anything in
//! it runs; a cache directory or lock file owned by another user costs only
//! the caching; a cached token is checked as strictly as one from the endpoint.
//!
//! "Another user" is uid 65534 (nobody): the tests that need to chown skip,
//! saying so, when not run as root (CI runs as root).

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// Another user's uid.
const OTHER: u32 = 65534;

/// Whether the test can chown files to another user; says so when it cannot.
fn can_chown() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() == 0 };
    if !root {
        eprintln!("skipped: needs root to create files owned by another uid (CI runs as root)");
    }
    root
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A profile whose `command` source leaves a marker file when it runs.
fn write_profile(sb: &Sandbox, path: &Path, marker: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!("touch {}; cat {}", marker.display(), sb.fresh_jwt_file().display());
    let body = serde_json::json!({"version": "1.0", "organization_id": ORG, "base_url": sb.emu.base_url(),
        "authentication": {"type": "oidc_federation", "federation_rule_id": RULE,
            "identity_token": {"source": "command", "command": ["sh", "-c", script]}}});
    std::fs::write(path, body.to_string()).unwrap();
    chmod(path, 0o644);
}

/// The run failed with a configuration error that names `file`, uid 65534,
/// the mode and a fix, and the profile's command never ran.
fn assert_refused(sb: &Sandbox, o: &std::process::Output, file: &Path, mode: &str, marker: &Path) {
    let err = assert_failed(o, "config", 2, &[]);
    assert!(err.contains(&file.display().to_string()), "names the file: {err}");
    assert!(err.contains(&format!("uid {OTHER}")) && err.contains(mode), "names owner and mode: {err}");
    assert!(err.contains("chown") && err.contains("remove it"), "says the fix: {err}");
    assert!(!marker.exists(), "the profile's command ran: {err}");
    assert_eq!(sb.emu.stats().token_requests, 0);
}

/// A sandbox with `configs/default.json` (ours, 0644) whose command leaves
/// a marker: (sandbox, marker, configs dir, default profile).
fn with_default_profile() -> (Sandbox, PathBuf, PathBuf, PathBuf) {
    let sb = Sandbox::new();
    let marker = sb.path("command-ran");
    let configs = sb.path("config/configs");
    let default = configs.join("default.json");
    write_profile(&sb, &default, &marker);
    (sb, marker, configs, default)
}

#[test]
fn a_profile_owned_by_another_user_never_runs_its_command() {
    if !can_chown() {
        return;
    }
    let (sb, marker, configs, default) = with_default_profile();
    // The default profile, found without any setting (issue #10: it ran as root three times).
    chown(&default, OTHER);
    let o = sb.run(&["token"]);
    assert_refused(&sb, &o, &default, "mode 0644", &marker);
    // Named by --profile, by ANTHROPIC_PROFILE, and under doctor.
    let o = sb.run(&["token", "--profile", "default"]);
    assert_refused(&sb, &o, &default, "mode 0644", &marker);
    let mut sb2 = Sandbox::new();
    let configs2 = sb2.path("config/configs");
    let ci = configs2.join("ci.json");
    write_profile(&sb2, &ci, &marker);
    chown(&ci, OTHER);
    sb2.env.insert("ANTHROPIC_PROFILE".into(), "ci".into());
    assert_refused(&sb2, &sb2.run(&["token"]), &ci, "mode 0644", &marker);
    let o = sb2.run(&["doctor"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("uid {OTHER}")), "{}", stdout(&o));
    assert!(!marker.exists());

    // Our own symlink to their file: the file it leads to is judged.
    let theirs = sb.path("elsewhere/theirs.json");
    write_profile(&sb, &theirs, &marker);
    chown(&theirs, OTHER);
    let link = configs.join("linked.json");
    std::os::unix::fs::symlink(&theirs, &link).unwrap();
    let o = sb.run(&["token", "--profile", "linked"]);
    assert_refused(&sb, &o, &link, "mode 0644", &marker);
    // Their symlink to a file of ours: the link is judged.
    let mine = sb.path("elsewhere/mine.json");
    write_profile(&sb, &mine, &marker);
    let their_link = configs.join("their-link.json");
    std::os::unix::fs::symlink(&mine, &their_link).unwrap();
    chown(&their_link, OTHER);
    let o = sb.run(&["token", "--profile", "their-link"]);
    let err = assert_failed(&o, "config", 2, &[]);
    assert!(err.contains("symlink owned by uid 65534"), "{err}");
    assert!(!marker.exists());
}

#[test]
fn a_configs_dir_or_active_config_of_another_user_is_refused() {
    if !can_chown() {
        return;
    }
    let (sb, marker, configs, _) = with_default_profile();
    // The directory is theirs (our file in it could be swapped at any time).
    chown(&configs, OTHER);
    let o = sb.run(&["token", "--profile", "default"]);
    assert_refused(&sb, &o, &configs, "mode 0755", &marker);
    chown(&configs, 0);
    // Ours, but anyone may write it.
    chmod(&configs, 0o777);
    let o = sb.run(&["token", "--profile", "default"]);
    let err = assert_failed(&o, "config", 2, &[]);
    assert!(err.contains("writable by group or others") && err.contains("mode 0777"), "{err}");
    assert!(err.contains(&format!("chmod go-w {}", configs.display())), "{err}");
    chmod(&configs, 0o755);
    // active_config chooses the profile: theirs is refused.
    let evil = configs.join("evil.json");
    write_profile(&sb, &evil, &marker);
    let pointer = sb.path("config/active_config");
    std::fs::write(&pointer, "evil\n").unwrap();
    chmod(&pointer, 0o644);
    chown(&pointer, OTHER);
    let o = sb.run(&["token"]);
    assert_refused(&sb, &o, &pointer, "mode 0644", &marker);
    // Our own 0644 profile still works.
    chown(&pointer, 0);
    std::fs::write(&pointer, "default\n").unwrap();
    parse_token_json(&sb.run(&["token"]));
    assert!(marker.exists(), "our own profile's command ran");
}

/// Write a cache file (mode 0600) holding `token`, valid for an hour.
fn forge_cache(file: &Path, token: &str) {
    let body = serde_json::json!({
        "version": "1.0",
        "type": "oauth_token",
        "access_token": token,
        "expires_at": anthropic_wif_core::now_unix() + 3600,
    });
    std::fs::write(file, body.to_string()).unwrap();
    #[cfg(unix)]
    chmod(file, 0o600);
}

#[test]
fn a_cached_token_with_a_newline_is_never_printed() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    let file = env_cache_file(&sb).expect("cache file");
    // Appended to $GITHUB_ENV, this would set a second variable for later steps.
    forge_cache(&file, &format!("{token}\nANTHROPIC_BASE_URL=https://evil.example"));
    sb.fresh_jwt_file();
    let o = sb.run(&["token", "--format", "env", "-v"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
    assert!(out.starts_with("ANTHROPIC_AUTH_TOKEN=sk-ant-oat01-") && !out.contains("evil"), "{out:?}");
    assert!(!out.contains(&token), "a fresh token, not the forged one");
    assert_eq!(sb.exchanges(), 2, "the forged cache entry was not used");
    let err = stderr(&o);
    assert!(err.contains("ignoring the cache file") && err.contains("HTTP header"), "said so under -v: {err}");
    assert_clean("stderr", &err, &[&token]);
    // The cache now holds the new, clean token.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(format!("ANTHROPIC_AUTH_TOKEN={}\n", v["access_token"].as_str().unwrap()), out);
}

#[test]
fn a_static_bearer_with_a_newline_is_refused() {
    let mut sb = Sandbox::new();
    sb.env.insert("ANTHROPIC_AUTH_TOKEN".into(), "static-bearer-XYZ\nANTHROPIC_BASE_URL=https://evil.example".into());
    let o = sb.run(&["token", "--format", "env"]);
    let err = assert_failed(&o, "config", 2, &["static-bearer-XYZ"]);
    assert!(err.contains("ANTHROPIC_AUTH_TOKEN") && err.contains("HTTP header"), "{err}");
}

/// The cache file `token` uses for the sandbox's environment configuration,
/// learnt from a first run; the directory is then removed.
fn cache_file_name(sb: &mut Sandbox) -> (std::path::PathBuf, String) {
    sb.federation_env();
    parse_token_json(&sb.run(&["token"]));
    let file = env_cache_file(sb).expect("cache file");
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_dir_all(file.parent().unwrap()).unwrap();
    (file.parent().unwrap().to_path_buf(), name)
}

/// A 0666 lock file of another user's, locked by "them" (this test process)
/// for as long as the returned handle lives.
fn their_held_lock(dir: &Path, name: &str) -> std::fs::File {
    let lock = dir.join(format!("{name}.lock"));
    std::fs::write(&lock, format!("{{\"refresh_backoff_until\": {}}}\n", anthropic_wif_core::now_unix() + 86400))
        .unwrap();
    chmod(&lock, 0o666);
    chown(&lock, OTHER);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&lock).unwrap();
    f.lock().unwrap();
    f
}

/// `token -v` succeeds at once (no 60 s lock wait), says why under -v, and
/// every call exchanges (no cache is read from or written to `dir`).
fn assert_served_without_the_cache(sb: &mut Sandbox, dir: &Path, why: &[&str]) {
    let before: Vec<_> = files_under(dir).into_iter().map(|(p, _)| p).collect();
    for round in 1..=2 {
        sb.fresh_jwt_file();
        let started = std::time::Instant::now();
        let o = sb.run(&["token", "-v"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "waited for their lock");
        parse_token_json(&o);
        let err = stderr(&o);
        for w in why {
            assert!(err.contains(w), "round {round}: -v explains ({w}): {err}");
        }
        assert!(err.contains("not used"), "round {round}: {err}");
    }
    let after: Vec<_> = files_under(dir).into_iter().map(|(p, _)| p).collect();
    assert_eq!(before, after, "nothing was written into the refused directory");
}

#[test]
fn a_cache_directory_of_another_user_costs_only_the_caching() {
    if !can_chown() {
        return;
    }
    let mut sb = Sandbox::new();
    let (dir, name) = cache_file_name(&mut sb);
    let exchanges = sb.exchanges();
    // Issue #10: another uid pre-creates anthropic-wif/ in a shared cache
    // home and holds a lock on its own 0666 lock file.
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o777);
    chown(&dir, OTHER);
    let _held = their_held_lock(&dir, &name);
    assert_served_without_the_cache(&mut sb, &dir, &["token cache directory", &format!("uid {OTHER}"), "mode 0777"]);
    assert_eq!(sb.exchanges(), exchanges + 2, "one exchange per call, no cache");
    // doctor explains it too.
    let o = sb.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["cache"]["state"], "insecure", "{v}");
    assert!(v["cache"]["detail"].as_str().unwrap().contains(&format!("uid {OTHER}")), "{v}");
    // Ours but writable by anyone: refused the same way.
    chown(&dir, 0);
    assert_served_without_the_cache(&mut sb, &dir, &["writable by group or others", "mode 0777"]);
}

#[test]
fn a_lock_file_of_another_user_is_not_waited_for_nor_believed() {
    if !can_chown() {
        return;
    }
    let mut sb = Sandbox::new();
    let (dir, name) = cache_file_name(&mut sb);
    std::fs::create_dir_all(&dir).unwrap();
    chmod(&dir, 0o700);
    let _held = their_held_lock(&dir, &name);
    sb.fresh_jwt_file();
    let started = std::time::Instant::now();
    let o = sb.run(&["token", "-v"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "waited for their lock");
    parse_token_json(&o);
    let err = stderr(&o);
    assert!(err.contains("token cache lock file") && err.contains(&format!("uid {OTHER}")), "{err}");
    assert!(dir.join(&name).exists(), "the directory is ours: the token is cached");
    let o = sb.run(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["cache"]["state"], "insecure", "{v}");
    assert!(v["cache"]["detail"].as_str().unwrap().contains("lock file"), "{v}");
}
