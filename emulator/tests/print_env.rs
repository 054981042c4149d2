//! `wif-emulator --print-env`: paste-ready exports a POSIX shell accepts, an
//! identity token file that is private and refilled after each exchange, and
//! nothing left behind after SIGTERM.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::*;

/// What a shell has after pasting `text`: the ANTHROPIC_* variables.
fn pasted(text: &str) -> BTreeMap<String, String> {
    let mut sh = Command::new("sh")
        .arg("-s")
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-shadowing")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let script = format!("{text}\nenv | grep '^ANTHROPIC_' | sort\n");
    sh.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = sh.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

#[test]
fn print_env_prints_paste_ready_exports_and_keeps_the_token_file_filled() {
    let exe = env!("CARGO_BIN_EXE_wif-emulator");
    let mut child = Command::new(exe)
        .args(["--print-env", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("export ANTHROPIC_IDENTITY_TOKEN_FILE=") {
            break;
        }
    }
    let vars = pasted(&text);
    let names: Vec<&str> = vars.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_FEDERATION_RULE_ID",
            "ANTHROPIC_IDENTITY_TOKEN_FILE",
            "ANTHROPIC_ORGANIZATION_ID",
            "ANTHROPIC_SERVICE_ACCOUNT_ID"
        ],
        "the exports (and the shadowing API key unset):\n{text}"
    );
    assert_eq!(vars["ANTHROPIC_FEDERATION_RULE_ID"], anthropic_wif_emulator::LOCAL_RULE);
    let base = vars["ANTHROPIC_BASE_URL"].clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let file = PathBuf::from(&vars["ANTHROPIC_IDENTITY_TOKEN_FILE"]);
    let dir = file.parent().unwrap().to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let first = std::fs::read_to_string(&file).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = client();
        let mut body = body_for(&first);
        body["federation_rule_id"] = vars["ANTHROPIC_FEDERATION_RULE_ID"].clone().into();
        body["organization_id"] = vars["ANTHROPIC_ORGANIZATION_ID"].clone().into();
        let r = exchange_raw(&c, &base, &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // The file now holds another, unused JWT: a second exchange with it works too.
        let second = std::fs::read_to_string(&file).unwrap();
        assert_ne!(first, second, "refilled after the exchange");
        body["assertion"] = second.clone().into();
        assert_eq!(exchange_raw(&c, &base, &body).await.status, 200);
        // The spent one is refused, as the real endpoint does.
        body["assertion"] = first.clone().into();
        assert_eq!(exchange_raw(&c, &base, &body).await.status, 401);
    });

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists(), "the private directory {} is removed on exit", dir.display());
}

#[test]
fn identity_token_file_keeps_a_chosen_path_filled() {
    let dir = std::env::temp_dir().join(format!("wif-emulator-test-{}-{:016x}", std::process::id(), fastrand::u64(..)));
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("token");
    let exe = env!("CARGO_BIN_EXE_wif-emulator");
    let mut child = Command::new(exe)
        .args(["--listen", "127.0.0.1:0", "--identity-token-file", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let base = ready["base_url"].as_str().unwrap().to_owned();
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(first.starts_with("eyJ"), "a JWT is there before the ready line");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = client();
        assert_eq!(exchange_raw(&c, &base, &body_for(&first)).await.status, 200);
        let second = std::fs::read_to_string(&file).unwrap();
        assert_ne!(first, second, "refilled after the exchange");
        assert_eq!(exchange_raw(&c, &base, &body_for(&second)).await.status, 200);
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(file.exists(), "a file the caller chose stays");
    std::fs::remove_dir_all(&dir).unwrap();
}
