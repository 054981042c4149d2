//! Files and races (issue 7, item 3), with real processes and files: a
//! tampered cache file, an unsafe profile, a lock holder killed mid-exchange,
//! herds of processes and threads, and a cache directory that cannot be
//! written.

mod common;
use common::*;

use anthropic_wif_core::config::{Env, Overrides};
use anthropic_wif_core::{Provider, ProviderOptions};
use anthropic_wif_emulator::Fault;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn cached(sb: &mut Sandbox) -> (String, PathBuf) {
    sb.federation_env();
    let (token, _) = parse_token_json(&sb.run(&["token"]));
    (token, env_cache_file(sb).expect("cache file"))
}

/// The cache file is a well-formed 0600 regular file holding `token`.
fn assert_cache_holds(file: &Path, token: &str) {
    let meta = std::fs::symlink_metadata(file).unwrap();
    assert!(meta.file_type().is_file(), "a regular file, not a symlink");
    #[cfg(unix)]
    assert_eq!(mode(file), 0o600);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).expect("not torn");
    assert_eq!(v["access_token"], token);
    assert_eq!(v["type"], "oauth_token");
}

#[cfg(unix)]
#[test]
fn a_cache_file_replaced_by_a_symlink_is_not_followed() {
    let mut sb = Sandbox::new();
    let (old, file) = cached(&mut sb);
    // An attacker's file elsewhere, holding a token of their choosing.
    let target = sb.path("attacker.json");
    let planted = format!(
        "{{\"version\":\"1.0\",\"type\":\"oauth_token\",\"access_token\":\"sk-ant-oat01-PLANTED\",\"expires_at\":{}}}",
        anthropic_wif_core::now_unix() + 3000
    );
    std::fs::write(&target, &planted).unwrap();
    chmod(&target, 0o600);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    sb.fresh_jwt_file();
    let o = sb.run(&["token", "-v"]);
    let (t, _) = parse_token_json(&o);
    assert_ne!(t, "sk-ant-oat01-PLANTED", "the planted token is never handed out");
    assert_ne!(t, old);
    assert!(stderr(&o).contains("symlink"), "-v says why the cache was ignored: {}", stderr(&o));
    assert_clean("stderr", &stderr(&o), &[&t, &old]);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), planted, "the symlink target is untouched");
    assert_cache_holds(&file, &t);
}

#[cfg(unix)]
#[test]
fn a_world_readable_cache_file_is_not_trusted_and_is_replaced() {
    let mut sb = Sandbox::new();
    let (old, file) = cached(&mut sb);
    chmod(&file, 0o644);
    sb.fresh_jwt_file();
    let o = sb.run(&["token", "-v"]);
    let (t, _) = parse_token_json(&o);
    assert_ne!(t, old, "a token others could read is not handed out");
    assert!(stderr(&o).contains("group") || stderr(&o).contains("others"), "{}", stderr(&o));
    assert_cache_holds(&file, &t);
    assert_eq!(sb.exchanges(), 2);
}

#[test]
fn truncated_or_garbage_cache_files_mean_exchange_and_overwrite() {
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", b"{\"version\":\"1.0\",\"type\":\"oauth_token\",\"access_tok".to_vec()),
        ("empty", Vec::new()),
        ("binary", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect()),
        ("json array", b"[1,2,3]".to_vec()),
        ("wrong type", b"{\"type\":\"api_key\",\"access_token\":\"x\",\"expires_at\":1}".to_vec()),
        ("huge", vec![b' '; 2 * 1024 * 1024]),
        ("deeply nested", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes()),
    ];
    for (what, bytes) in garbage {
        let mut sb = Sandbox::new();
        let (old, file) = cached(&mut sb);
        std::fs::write(&file, &bytes).unwrap();
        sb.fresh_jwt_file();
        let o = sb.run(&["token", "-vv"]);
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let (t, _) = parse_token_json(&o);
        assert_ne!(t, old, "{what}");
        assert!(stderr(&o).contains("ignoring the cache file"), "{what}: {}", stderr(&o));
        assert_clean(what, &stderr(&o), &[&t]);
        assert_cache_holds(&file, &t);
    }
}

#[cfg(unix)]
#[test]
fn a_profile_writable_by_others_is_refused() {
    let sb = Sandbox::new();
    let jwt = sb.fresh_jwt_file();
    let dir = sb.path("config/configs");
    std::fs::create_dir_all(&dir).unwrap();
    let profile = dir.join("shared.json");
    let body = serde_json::json!({"version": "1.0", "organization_id": ORG, "base_url": sb.emu.base_url(),
        "authentication": {"type": "oidc_federation", "federation_rule_id": RULE,
            "identity_token": {"source": "file", "path": jwt}}});
    std::fs::write(&profile, body.to_string()).unwrap();
    for m in [0o666, 0o646, 0o664] {
        chmod(&profile, m);
        let o = sb.run(&["token", "--profile", "shared"]);
        let err = assert_failed(&o, "config", 2, &[]);
        assert!(err.contains("shared.json") && err.contains("chmod"), "names the file and the fix: {err}");
    }
    assert_eq!(sb.emu.stats().token_requests, 0);
}

#[cfg(unix)]
#[test]
fn a_lock_holder_killed_mid_exchange_does_not_block_the_next_caller() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    sb.emu.push_faults([Fault::hang()]);
    let mut holder = sb.command(&["token"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while sb.emu.stats().token_requests == 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "the first caller never reached the endpoint");
        std::thread::sleep(Duration::from_millis(10));
    }
    // It holds the lock and waits on the endpoint: SIGKILL it.
    unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) };
    let _ = holder.wait();
    let start = Instant::now();
    let o = sb.run(&["token"]);
    parse_token_json(&o);
    assert!(start.elapsed() < Duration::from_secs(5), "the next caller waited {:?}", start.elapsed());
    assert_eq!(sb.exchanges(), 1);
}

fn herd(sb: &Sandbox, n: usize) -> Vec<Output> {
    let children: Vec<_> =
        (0..n).map(|_| sb.command(&["token"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn age_cache(file: &Path, left: i64) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let exp = anthropic_wif_core::now_unix() + left;
    v["expires_at"] = exp.into();
    v["issued_at"] = (exp - v["expires_in"].as_i64().unwrap()).into();
    std::fs::write(file, v.to_string()).unwrap();
}

#[test]
fn sixty_four_processes_on_a_cold_then_an_expiring_cache() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let outs = herd(&sb, 64);
    let tokens: HashSet<String> = outs.iter().map(|o| parse_token_json(o).0).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(sb.emu.stats().token_requests, 1, "cold: one exchange");
    let file = env_cache_file(&sb).unwrap();
    let old = tokens.into_iter().next().unwrap();
    assert_cache_holds(&file, &old);

    age_cache(&file, 10); // expiring: inside the mandatory window
    sb.fresh_jwt_file();
    let outs = herd(&sb, 64);
    let tokens: HashSet<String> = outs.iter().map(|o| parse_token_json(o).0).collect();
    assert_eq!(tokens.len(), 1, "everyone got the one refreshed token");
    assert!(!tokens.contains(&old));
    assert_eq!(sb.emu.stats().token_requests, 2, "expiring: one more exchange");
    assert_cache_holds(&file, tokens.iter().next().unwrap());
    // No temp files left behind.
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn provider_options(sb: &Sandbox) -> ProviderOptions {
    let mut o = ProviderOptions::new("python", Env::fixed(sb.env.iter().map(|(k, v)| (k.clone(), v.clone()))));
    o.overrides = Overrides::default();
    o
}

#[test]
fn sixty_four_threads_with_their_own_providers_on_a_cold_then_an_expiring_cache() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    let race = |sb: &Sandbox| -> HashSet<String> {
        let barrier = std::sync::Barrier::new(64);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..64)
                .map(|_| {
                    let barrier = &barrier;
                    let opts = provider_options(sb);
                    s.spawn(move || {
                        let p = Provider::new(opts).unwrap();
                        barrier.wait();
                        p.token_blocking(false).map(|t| t.token.expose().to_string()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
        })
    };
    let tokens = race(&sb);
    assert_eq!(tokens.len(), 1);
    assert_eq!(sb.emu.stats().token_requests, 1);
    let file = env_cache_file(&sb).unwrap();
    age_cache(&file, 10);
    sb.fresh_jwt_file();
    let tokens2 = race(&sb);
    assert_eq!(tokens2.len(), 1);
    assert_ne!(tokens, tokens2);
    assert_eq!(sb.emu.stats().token_requests, 2);
    assert_cache_holds(&file, tokens2.iter().next().unwrap());
}

#[cfg(unix)]
#[test]
fn a_read_only_cache_directory_still_yields_the_token_and_says_so_under_v() {
    let mut sb = Sandbox::new();
    sb.federation_env();
    // Root ignores directory modes; /sys/kernel is read-only even for root.
    let root = unsafe { libc::geteuid() } == 0;
    let cred = if root {
        PathBuf::from("/sys/kernel/anthropic-wif-test-cache.json")
    } else {
        let d = sb.path("ro");
        std::fs::create_dir_all(&d).unwrap();
        chmod(&d, 0o500);
        d.join("cache.json")
    };
    if root && std::fs::metadata("/sys/kernel").is_err() {
        eprintln!("skipped: no read-only directory available");
        return;
    }
    let o = sb.run(&["token", "-v", "--credentials-path", cred.to_str().unwrap()]);
    let (t, _) = parse_token_json(&o);
    let err = stderr(&o);
    assert!(err.contains("could not cache"), "-v reports the failure to cache: {err}");
    assert_clean("stderr", &err, &[&t]);
    // Without -v the failure is silent and the token still comes out.
    sb.fresh_jwt_file();
    let o = sb.run(&["token", "--credentials-path", cred.to_str().unwrap()]);
    parse_token_json(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[cfg(unix)]
#[test]
fn a_full_cache_directory_still_yields_the_token_and_says_so_under_v() {
    use std::os::unix::process::CommandExt;
    let mut sb = Sandbox::new();
    sb.federation_env();
    // Every write past 0 bytes fails with EFBIG, as on a full disk.
    let mut cmd = sb.command(&["token", "-v"]);
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: 0, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let (t, _) = parse_token_json(&o);
    let err = stderr(&o);
    assert!(err.contains("could not cache"), "-v reports the failure to cache: {err}");
    assert_clean("stderr", &err, &[&t]);
    // Nothing half-written is left: no cache file, no temp file.
    for (p, _) in files_under(&sb.path("cache")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".lock"), "left behind: {}", p.display());
    }
}
