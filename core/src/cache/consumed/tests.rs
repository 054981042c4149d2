//! The record of presented identity tokens and the checks before sending
//! (the end-to-end behaviour, with real processes and the emulator, is in
//! cli/tests/consumed.rs).

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

fn jwt(claims: Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    format!("{h}.{c}.c2lnbmF0dXJl")
}

fn now() -> i64 {
    crate::clock::now_unix()
}

fn file_spec() -> IdentitySpec {
    IdentitySpec::File { path: "/var/run/secrets/anthropic.com/token".into() }
}

const HOLD: Duration = Duration::from_secs(30);

#[test]
fn fingerprints_follow_jti_and_iss_and_never_hold_the_token() {
    let exp = now() + 600;
    let a = jwt(json!({"iss": "https://i", "jti": "j1", "exp": exp, "sub": "a"}));
    // Another token with the same iss and jti is the same token to the server.
    let a2 = jwt(json!({"iss": "https://i", "jti": "j1", "exp": now() + 900, "sub": "b"}));
    let other_iss = jwt(json!({"iss": "https://other", "jti": "j1", "exp": now() + 600}));
    let no_jti = jwt(json!({"iss": "https://i", "exp": now() + 600}));
    let fa = Fingerprint::of(&format!("  {a}\n"));
    assert_eq!(fa.id, Fingerprint::of(&a2).id);
    assert_ne!(fa.id, Fingerprint::of(&other_iss).id);
    assert_ne!(Fingerprint::of(&no_jti).id, Fingerprint::of(&jwt(json!({"iss": "https://i", "exp": 1}))).id);
    assert_eq!(fa.exp, Some(exp));
    assert!(is_hex_id(&fa.id));
    // Not a JWT at all: the whole text is hashed, no exp.
    let f = Fingerprint::of("not-a-jwt");
    assert!(is_hex_id(&f.id) && f.exp.is_none());
    assert!(!fa.id.contains("j1") && !serialize(&Tokens::new()).contains("eyJ"));
}

#[tokio::test]
async fn a_consumed_token_is_refused_and_a_presented_one_is_not() {
    let d = tempfile::tempdir().unwrap();
    let record = Record::at(d.path().join("cache").join(RECORD_FILE_NAME));
    let token = jwt(json!({"iss": "https://i", "jti": "j-consumed", "exp": now() + 600}));
    let fp = Fingerprint::of(&token);

    // Claimed, then withdrawn (never sent): as if nothing happened.
    let Claimed::Held(c) = record.claim(&fp, "/c/a.json", HOLD).await else { panic!("claim") };
    assert_eq!(record.lookup(&fp).unwrap().unwrap().state, State::InFlight);
    assert_eq!(c.settle(Verdict::Withdrawn).await, None);
    assert_eq!(record.lookup(&fp).unwrap(), None);

    // Claimed: a second claim meanwhile is refused as in flight.
    let Claimed::Held(c) = record.claim(&fp, "/c/a.json", HOLD).await else { panic!("claim") };
    let Claimed::Refused(e) = record.claim(&fp, "/c/b.json", HOLD).await else { panic!("in flight") };
    assert_eq!((e.state, e.by.as_deref()), (State::InFlight, Some("/c/a.json")));

    // Sent without a verdict: not blocking, and a later refusal says why.
    assert_eq!(c.settle(Verdict::Presented { refused: false }).await, None);
    let Claimed::Held(c) = record.claim(&fp, "/c/b.json", HOLD).await else { panic!("presented is not blocking") };
    let note = c.settle(Verdict::Presented { refused: true }).await.expect("a note for the refusal");
    assert!(note.contains("presented this identity token before") && note.contains("/c/a.json"), "{note}");

    // Exchanged: refused from now on, for every configuration.
    let Claimed::Held(c) = record.claim(&fp, "/c/a.json", HOLD).await else { panic!("claim") };
    assert_eq!(c.settle(Verdict::Consumed).await, None);
    let Claimed::Refused(e) = record.claim(&fp, "/c/b.json", HOLD).await else { panic!("consumed") };
    assert_eq!((e.state, e.by.as_deref()), (State::Consumed, Some("/c/a.json")));

    // The file: 0600, hashes only.
    let text = std::fs::read_to_string(record.path()).unwrap();
    assert!(!text.contains("j-consumed") && !text.contains(&token) && text.contains(&fp.id), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(record.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_lapsed_claim_does_not_block() {
    let d = tempfile::tempdir().unwrap();
    let record = Record::at(d.path().join(RECORD_FILE_NAME));
    let fp = Fingerprint::of(&jwt(json!({"iss": "https://i", "jti": "j-lapsed", "exp": now() + 600})));
    // A presenter that died: its claim's `until` is in the past.
    let mut tokens = Tokens::new();
    let dead = Entry { state: State::InFlight, at: now() - 100, until: Some(now() - 1), by: None, pid: None };
    tokens.insert(fp.id.clone(), (dead, fp.exp));
    std::fs::write(record.path(), serialize(&tokens)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(record.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let Claimed::Held(c) = record.claim(&fp, "x", HOLD).await else { panic!("a lapsed claim blocks") };
    assert!(c.previous.is_some(), "what was known before is kept for the note");
    // A live claim of this very process blocks; one whose process is gone
    // (killed mid-exchange) does not.
    let Claimed::Refused(e) = record.claim(&fp, "y", HOLD).await else { panic!("a live claim does not block") };
    assert_eq!(e.pid, Some(std::process::id()));
    #[cfg(unix)]
    {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let entry = Entry { state: State::InFlight, at: now(), until: Some(now() + 60), by: None, pid: Some(gone) };
        assert!(!entry.blocks(now()), "the claim of a process that exited");
    }
    drop(c);
}

#[test]
fn pruning_drops_expired_and_old_entries_and_bounds_the_size() {
    let n = now();
    let mut tokens = Tokens::new();
    let e = |at| Entry { state: State::Consumed, at, until: None, by: None, pid: None };
    tokens.insert("a".repeat(64), (e(n), Some(n - jwt::EXPIRY_SKEW_ALLOWANCE_SECONDS - 1)));
    tokens.insert("b".repeat(64), (e(n), Some(n - 1)));
    tokens.insert("c".repeat(64), (e(n - RETENTION_WITHOUT_EXP - 1), None));
    tokens.insert("d".repeat(64), (e(n - 10), None));
    prune(&mut tokens, n);
    let kept: Vec<char> = tokens.keys().map(|k| k.chars().next().unwrap()).collect();
    assert_eq!(kept, vec!['b', 'd']);

    let mut many = Tokens::new();
    for i in 0..(MAX_ENTRIES as i64 + 10) {
        many.insert(format!("{i:064x}"), (e(n - 1000 + i), Some(n + 600)));
    }
    prune(&mut many, n);
    assert_eq!(many.len(), MAX_ENTRIES);
    assert!(!many.contains_key(&format!("{:064x}", 0)), "the oldest go first");
    // Reading back what was written gives the same entries.
    let text = serialize(&many);
    let map: Map<String, Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(entries_with_exp(&map), many);
}

#[tokio::test]
async fn an_unusable_record_is_started_afresh_or_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let record = Record::at(d.path().join(RECORD_FILE_NAME));
    let fp = Fingerprint::of(&jwt(json!({"iss": "https://i", "jti": "j-x", "exp": now() + 600})));
    std::fs::write(record.path(), "{not json").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(record.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        // Corrupt: started afresh.
        assert!(matches!(record.claim(&fp, "x", HOLD).await, Claimed::Held(_)));
        // Readable by others: not trusted, not replaced, and the token is sent without it.
        std::fs::set_permissions(record.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let Claimed::Unrecorded(why) = record.claim(&fp, "x", HOLD).await else { panic!("insecure record used") };
        assert!(why.contains("chmod 600"), "{why}");
        assert!(record.lookup(&fp).is_err());
    }
}

#[tokio::test]
async fn check_refuses_expired_and_consumed_tokens_with_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let record = Record::at(d.path().join(RECORD_FILE_NAME));
    let spec = file_spec();
    let expired = Secret::new(jwt(json!({"iss": "https://i", "jti": "old", "exp": now() - 120})));
    let e = check(&expired, &spec, Some(&record), "x", HOLD).await.unwrap_err();
    assert_eq!((e.kind, e.error_code()), (crate::ErrorKind::Identity, Some(EXPIRED_CODE)));
    assert!(e.message().contains("expired 12") && e.message().contains("identity token file"), "{e}");
    assert!(!record.path().exists(), "an expired token is not even recorded");
    // Within the allowance it passes.
    let edge = Secret::new(jwt(json!({"iss": "https://i", "jti": "edge", "exp": now() - 5})));
    assert!(check(&edge, &spec, None, "x", HOLD).await.unwrap().is_none());

    let fresh = Secret::new(jwt(json!({"iss": "https://i", "jti": "new", "exp": now() + 600})));
    let claim = check(&fresh, &spec, Some(&record), "/c/a.json", HOLD).await.unwrap().unwrap();
    claim.settle(Verdict::Consumed).await;
    let e = check(&fresh, &spec, Some(&record), "/c/b.json", HOLD).await.unwrap_err();
    assert_eq!((e.kind, e.error_code()), (crate::ErrorKind::Identity, Some(CONSUMED_CODE)));
    let m = e.message();
    assert!(m.contains("already exchanged") && m.contains("/c/a.json") && m.contains("rotate"), "{m}");
    assert!(worth_waiting(&e, &spec));
    assert!(!worth_waiting(&e, &IdentitySpec::Env { var: "X".into() }));
    let waited = after_waiting(e, &spec, Duration::from_secs(3));
    assert!(waited.message().contains("Waited 3 s for the file to be rotated"), "{waited}");
}
