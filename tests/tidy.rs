//! Tidy checks of the source tree's shape (ARCHITECTURE.md, "Invariants"): only `store` speaks
//! SQL, and the top-level modules of `src/` import each other without cycles. They read the
//! source as text (comments and string literals skipped), so they need no build of their own.

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file of the library under `src/`, with its text; `main.rs` is the binary, a
/// separate crate that sees the library only through its public API.
fn library_sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && path != root.join("main.rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path.strip_prefix(&root).unwrap().to_owned(), text));
            }
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to: `store` for `store/tx.rs`, `sync` for `sync.rs`;
/// `None` for the crate root.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// `text` with comments, string and character literals replaced by spaces, so that only code
/// is searched.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (at(i + 1) == '#' || at(i + 1) == '"')
            && !ident_char(at_prev(&chars, i))
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| at(j + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A character literal; a lifetime ('a) has no closing quote.
            i += 1;
            if chars[i] == '\\' {
                i += 1;
            }
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn at_prev(chars: &[char], i: usize) -> char {
    if i == 0 { ' ' } else { chars[i - 1] }
}

fn ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The top-level modules named by `crate::` paths in `code`, e.g. `use crate::{auth, graph::X}`
/// names `auth` and `graph`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(pos) = rest.find("crate::") {
        let before = rest[..pos].chars().next_back().unwrap_or(' ');
        let after = &rest[pos + "crate::".len()..];
        rest = after;
        if ident_char(before) || before == '$' {
            continue;
        }
        let after = after.trim_start();
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && ident_char(c) => {
                        let name: String =
                            group[i..].chars().take_while(|&c| ident_char(c)).collect();
                        found.insert(name);
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            let name: String = after.chars().take_while(|&c| ident_char(c)).collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn only_store_speaks_sql() {
    let offenders: Vec<String> = library_sources()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("store"))
        .filter(|(_, text)| {
            let code = code_only(text);
            code.match_indices("rusqlite")
                .any(|(i, _)| !code[..i].chars().next_back().is_some_and(ident_char))
        })
        .map(|(path, _)| format!("src/{}", path.display()))
        .collect();
    assert!(
        offenders.is_empty(),
        "rusqlite is used outside src/store/ in {offenders:?}: move the SQL behind a `Store` or \
         `Tx` method in src/store/ (ARCHITECTURE.md: only `store` speaks SQL)"
    );
}

#[test]
fn top_level_modules_import_without_cycles() {
    // module -> (imported module -> a file that imports it)
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let files = library_sources();
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    for (path, text) in &files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let entry = edges.entry(from.clone()).or_default();
        for to in crate_paths(&code_only(text)) {
            if to != from && modules.contains(&to) {
                entry
                    .entry(to)
                    .or_insert_with(|| format!("src/{}", path.display()));
            }
        }
    }
    let cycles = cycles(&edges);
    let described: Vec<String> = cycles
        .iter()
        .map(|cycle| {
            let mut steps = Vec::new();
            for (i, from) in cycle.iter().enumerate() {
                let to = &cycle[(i + 1) % cycle.len()];
                steps.push(format!("{from} -> {to} ({})", edges[from][to]));
            }
            steps.join(", ")
        })
        .collect();
    assert!(
        described.is_empty(),
        "import cycles between top-level modules: {described:#?}; move the shared type to the \
         module that owns its concept (ARCHITECTURE.md, code map)"
    );
}

/// One cycle per strongly connected group of modules (depth-first search from each module,
/// reporting the first way back to where it started).
fn cycles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for start in edges.keys() {
        if covered.contains(start) {
            continue;
        }
        let mut path = vec![start.clone()];
        if let Some(cycle) = back_to(start, &mut path, edges, &mut BTreeSet::new()) {
            covered.extend(cycle.iter().cloned());
            found.push(cycle);
        }
    }
    found
}

fn back_to(
    start: &str,
    path: &mut Vec<String>,
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in edges.get(&here).into_iter().flat_map(|e| e.keys()) {
        if next == start {
            return Some(path.clone());
        }
        if seen.insert(next.clone()) {
            path.push(next.clone());
            if let Some(cycle) = back_to(start, path, edges, seen) {
                return Some(cycle);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The parser itself: without this, a broken parser would pass both tests above.
    let code = code_only(
        "use crate::{auth, graph::{Graph, X}, self as y};\n// use crate::commented;\n\
         let s = \"crate::in_a_string\"; let r = r#\"crate::raw\"#; let c = '\"';\n\
         fn f<'a>(x: &'a str) { crate::sync::run(); $crate::macro_path(); }\n\
         /* crate::block */ use rusqlite;",
    );
    let names: Vec<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(names, ["auth", "graph", "self", "sync"]);
    assert!(code.contains("rusqlite"));
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        edges
            .entry(from.into())
            .or_default()
            .insert(to.into(), String::new());
    }
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c"]]);
    edges.get_mut("c").unwrap().remove("a");
    assert!(cycles(&edges).is_empty());
}
