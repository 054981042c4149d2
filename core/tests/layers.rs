//! Layering without circles: a module of core may use only modules of lower
//! layers, never one of its own layer or above. The layers are the table
//! "Core's layers" in docs/design.md (read from there, so the page and the
//! rule cannot drift); this test scans every file under core/src for
//! `crate::…` paths (comments excluded) and fails on any that goes sideways
//! or up, on a module missing from the table, and on a table that names a
//! module core does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layers, bottom first, from the table under `### Core's layers`:
/// rows `| N | `a`, `b` | … |`, the module names in backticks of the second cell.
fn layers_from_design() -> Vec<Vec<String>> {
    let path = root().join("../docs/design.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text.find("### Core's layers").expect("docs/design.md has a section \"### Core's layers\"");
    let section = &text[start + 3..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let mut layers = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", "N", "`a`, `b`", "…", ""]
        if cells.len() < 4 || cells[1].parse::<u32>().is_err() {
            continue;
        }
        let names: Vec<String> = cells[2].split('`').skip(1).step_by(2).map(str::to_string).collect();
        assert!(!names.is_empty(), "layer row without module names: {line}");
        layers.push(names);
    }
    assert!(layers.len() > 3, "the layer table in docs/design.md was not found or is empty");
    layers
}

/// Remove `//` comments (doc comments and intra-doc links included) and
/// string literals' contents are left alone: core has no `crate::` in them.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path: `crate::a::b` gives `a`,
/// `crate::{a::x, b}` gives `a` and `b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `pub(crate)` has no `::`; `$crate::` is a macro's
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group, up to its matching brace.
            let (mut depth, mut name, mut at_start) = (0, String::new(), true);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        out.push(std::mem::take(&mut name));
                        at_start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.push(name);
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

/// Root re-exports of lib.rs (`pub use error::{Error, …};`): name → module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in code_of(lib).lines() {
        let Some(path) = line.trim().strip_prefix("pub use ").and_then(|l| l.strip_suffix(';')) else { continue };
        let module = path.split("::").next().unwrap_or_default().to_string();
        let names = match path.find('{') {
            Some(i) => path[i + 1..path.len() - 1].split(',').map(|n| n.trim().to_string()).collect(),
            None => vec![path.rsplit("::").next().unwrap_or_default().to_string()],
        };
        for n in names.into_iter().filter(|n| !n.is_empty()) {
            out.insert(n, module.clone());
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_of_core_uses_one_of_its_own_layer_or_above() {
    let layers = layers_from_design();
    let layer_of: BTreeMap<String, usize> =
        layers.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (m.clone(), i))).collect();
    let src = root().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<String> = code_of(&lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub(crate) ").or_else(|| l.strip_prefix("pub ")).unwrap_or(l);
            l.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')).map(str::to_string)
        })
        .collect();
    let tabled: BTreeSet<String> = layer_of.keys().cloned().collect();
    assert_eq!(declared, tabled, "the modules of core/src/lib.rs and the layer table of docs/design.md differ");
    let reexports = root_reexports(&lib);

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "lib.rs" {
            continue;
        }
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let own = *layer_of.get(&module).unwrap_or_else(|| panic!("{rel}: module {module} is not in the layer table"));
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for used in crate_paths(&code).into_iter().collect::<BTreeSet<_>>() {
            let target = match (layer_of.get(&used), reexports.get(&used)) {
                (Some(_), _) => used.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => {
                    wrong.push(format!("{rel}: crate::{used} is neither a module nor a root re-export"));
                    continue;
                }
            };
            if target == module {
                continue;
            }
            let theirs = layer_of[&target];
            if theirs >= own {
                wrong.push(format!(
                    "{rel}: `{module}` (layer {own}) uses `crate::{used}` (`{target}`, layer {theirs}); \
                     a module may use only lower layers"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "layering violations (docs/design.md, Core's layers):\n{}", wrong.join("\n"));
}

#[test]
fn the_scanner_finds_grouped_and_plain_paths() {
    let code = "use crate::{error::Error, secret::{self, Secret}, env};\nlet t = crate::clock::now_unix();\n\
                pub(crate) fn f() {}\n// crate::doctor in a comment\n";
    assert_eq!(crate_paths(&code_of(code)), ["error", "secret", "env", "clock"]);
    let lib = "pub use error::{Error, ErrorKind, Result};\npub use clock::now_unix;\n";
    let r = root_reexports(lib);
    assert_eq!((r["ErrorKind"].as_str(), r["now_unix"].as_str()), ("error", "clock"));
}
