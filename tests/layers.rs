//! The layers of `src/` import one way (docs/layers.md): each top-level
//! module may name, through `crate::`, only the modules listed for it below.
//! Reads the source files; comments are skipped, so a doc link may point
//! anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it may import. Everything not
/// listed may import nothing but itself.
const ALLOWED: &[(&str, &[&str])] = &[
    // Leaves.
    ("proto", &[]),
    ("gofmt", &[]),
    ("ops", &[]),
    // The engine: prints through gofmt, reads the generated protocol types.
    ("alert", &["gofmt", "proto"]),
    // The wire, delivery, and Kapacitor's API: above the engine, beside each
    // other one way (kapacitor keeps its marks in delivery's outbox and
    // receives udf's session lifecycle; udf and delivery know neither).
    ("udf", &["alert", "gofmt", "ops", "proto"]),
    ("delivery", &["alert", "gofmt", "ops", "proto"]),
    (
        "kapacitor",
        &["alert", "delivery", "gofmt", "ops", "proto", "udf"],
    ),
    // Operator surfaces (HTTP API, status, simulate, check).
    (
        "tools",
        &[
            "alert",
            "delivery",
            "gofmt",
            "kapacitor",
            "ops",
            "proto",
            "udf",
        ],
    ),
    // The fuzz targets' properties: a leaf above the parsers it exercises
    // (the frame decoder, Init options, expressions, templates); nothing
    // imports it.
    ("fuzzing", &["alert", "proto", "udf"]),
    // The daemon assembled.
    (
        "app",
        &[
            "alert",
            "delivery",
            "gofmt",
            "kapacitor",
            "ops",
            "proto",
            "tools",
            "udf",
        ],
    ),
];

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

/// The top-level module a file of `src/` belongs to (`None`: the crate
/// roots, which declare every module).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// The code of a file without its comments (line comments, doc comments
/// and block comments; string literals are kept, which is conservative).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        if in_str {
            if b[i] == b'\\' && i + 1 < b.len() {
                out.push_str(&text[i..i + 2]);
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = false;
            }
            out.push(b[i] as char);
            i += 1;
            continue;
        }
        if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            in_str = true;
        } else if text[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if text[i..].starts_with("/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
            continue;
        }
        // Only ASCII matters for the paths searched; keep byte positions simple.
        let ch = text[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Every top-level module named by `crate::NAME` or `use crate::{NAME, …}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `kapacitor_pagertree::crate::` does not exist; `$crate::` is a macro's.
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b, c::{…}}`: the first segment of each item.
            let mut depth = 0;
            let mut item_start = true;
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[n..]);
                        if !name.is_empty() {
                            refs.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                refs.insert(name);
            }
        }
    }
    refs
}

#[test]
fn each_module_imports_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut modules_seen = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        modules_seen.insert(module.clone());
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        let may = allowed.get(module.as_str()).copied().unwrap_or(&[]);
        for target in crate_refs(&code) {
            if target == module || target == "self" || target == "super" {
                continue;
            }
            if !may.contains(&target.as_str()) {
                violations.push(format!(
                    "{}: {module} imports crate::{target}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    for m in &modules_seen {
        assert!(
            allowed.contains_key(m.as_str()),
            "src/{m} is a top-level module the layer table does not list: add it to ALLOWED"
        );
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_plain_grouped_and_nested_imports_but_not_comments() {
    let code = without_comments(
        "use crate::alert::Event;\n\
         use crate::{ops::config, udf, delivery::{a, b}};\n\
         // use crate::app;\n\
         /// [`crate::kapacitor`]\n\
         /* crate::tools */\n\
         let s = \"//\"; fn f() -> crate::gofmt::X {}\n",
    );
    let refs: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(refs, ["alert", "delivery", "gofmt", "ops", "udf"]);
}
