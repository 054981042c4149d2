//! The minimum supported Rust version is stated once, as `rust-version` in
//! the workspace Cargo.toml, and kept true as far as this machine can check
//! (it has one toolchain, so the MSRV itself is not built here):
//! - every "Rust >= X" the docs, scripts and error messages state is that version;
//! - no dependency in Cargo.lock declares a newer `rust-version` (cargo metadata);
//! - standard-library items newer than it are refused by clippy's
//!   `incompatible_msrv` lint, which reads `rust-version` (`.ci/run` runs clippy
//!   with `-D warnings`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// `rust-version` of the workspace, as (major, minor).
fn msrv() -> (u32, u32) {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let line = toml.lines().find(|l| l.trim_start().starts_with("rust-version")).expect("rust-version in Cargo.toml");
    parse(line.split('"').nth(1).expect("a quoted version")).expect("major.minor")
}

fn parse(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[test]
fn every_stated_rust_version_is_the_one_in_cargo_toml() {
    let want = msrv();
    let files = Command::new("git").arg("ls-files").current_dir(root()).output().expect("git ls-files");
    let mut stated = 0;
    for file in String::from_utf8_lossy(&files.stdout).lines() {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else { continue };
        for (i, _) in text.match_indices("Rust >= ") {
            let version: String = text[i + 8..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let Some(v) = parse(version.trim_end_matches('.')) else { continue };
            assert_eq!(v, want, "{file} states Rust >= {version}, Cargo.toml's rust-version is {}.{}", want.0, want.1);
            stated += 1;
        }
    }
    assert!(stated >= 3, "the docs and scripts state the Rust version ({stated} places found)");
}

#[test]
fn no_dependency_needs_a_newer_rust() {
    let want = msrv();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root())
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut checked = 0;
    for pkg in meta["packages"].as_array().unwrap() {
        if let Some(v) = pkg["rust_version"].as_str().and_then(parse) {
            assert!(
                v <= want,
                "{} {} needs Rust {}.{}, newer than our {}.{}",
                pkg["name"],
                pkg["version"],
                v.0,
                v.1,
                want.0,
                want.1
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} packages declare a rust-version");
}
