//! Keeps a crate's modules in the layers its lib.rs documents ("Layers, bottom first:"): a
//! module may use (`use crate::m::...` or a path `crate::m::...` anywhere, tests included)
//! only modules listed before it, never one after it nor an item of lib.rs, which is the
//! top. So no two modules import each other, directly or through others. Each layered crate
//! has a test calling [`check`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The module list after "Layers, bottom first:" in lib.rs's doc, up to the paragraph's end.
fn documented_layers(lib: &str) -> Vec<String> {
    let marker = "Layers, bottom first:";
    let doc: Vec<&str> = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .collect();
    // Paragraphs, each on one line, so that the marker may wrap.
    let doc = doc.join("\n");
    let Some(list) = doc
        .split("\n\n")
        .map(|p| p.replace('\n', " "))
        .find_map(|p| Some(p.split_once(marker)?.1.to_string()))
    else {
        panic!("lib.rs's doc has no \"{marker}\" list");
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `src` with comments and string and character literals blanked (lines kept), so that a
/// `crate::` in a doc link or a string is not taken for a use.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && {
                let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
                c.get(i + 1 + hashes) == Some(&'"')
            }
        {
            // A raw string r#"..."#; `r#type` (a raw identifier) is not one.
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            i += hashes + 2;
            while i < c.len() {
                if c[i] == '"'
                    && c[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes
                {
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if let Some(&ch) = c.get(i) {
                    blank(&mut out, ch);
                }
                i += 1;
            }
            i += 1;
        } else if c[i] == '\'' && next == Some('\\') {
            // An escaped character: skip the quote, the backslash and what it escapes.
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if c[i] == '\'' && c.get(i + 2) == Some(&'\'') {
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every `crate::NAME` a file's code names, with its line: the first segment of each path,
/// and of each item of a `crate::{a, b::c}` group.
fn crate_refs(src: &str) -> Vec<(String, usize)> {
    let code = code_only(src);
    let name = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|ch| ch.is_alphanumeric() || *ch == '_')
            .collect()
    };
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p;
        from = at + "crate::".len();
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|ch| ch.is_alphanumeric() || ch == '_' || ch == '$')
        {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push((name(&item), line));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            out.push((name(&item), line));
        } else {
            out.push((name(rest), line));
        }
    }
    out.retain(|(n, _)| !n.is_empty());
    out
}

/// Each module's source files: `src/m.rs` and anything under `src/m/`.
fn module_files(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = Path::new(first.as_os_str())
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        out.entry(module).or_default().push(f);
    }
    out
}

/// A cycle in `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

/// What is wrong with the modules under `src` against the layers lib.rs documents: one
/// line per problem, naming the file, line and edge (empty when the layering holds).
pub fn violations(src: &Path) -> Vec<String> {
    let lib = match std::fs::read_to_string(src.join("lib.rs")) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: {e}", src.join("lib.rs").display())],
    };
    let layers = documented_layers(&lib);
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let files = module_files(src);
    let mut problems = Vec::new();
    for m in files.keys().filter(|m| *m != "lib") {
        if !rank.contains_key(m.as_str()) {
            problems.push(format!("module `{m}` is missing from lib.rs's layers"));
        }
    }
    for m in &layers {
        if !files.contains_key(m) {
            problems.push(format!(
                "lib.rs's layers name `{m}`, which has no source file"
            ));
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, paths) in files.iter().filter(|(m, _)| *m != "lib") {
        for path in paths {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let file = path.strip_prefix(src).unwrap_or(path).display();
            for (target, line) in crate_refs(&text) {
                if target == *m {
                    continue;
                }
                if !files.contains_key(&target) {
                    problems.push(format!(
                        "src/{file}:{line}: `{m}` uses `crate::{target}`, an item of lib.rs, \
                         the top layer: move it into a module below `{m}`"
                    ));
                    edges.entry(m.clone()).or_default().insert("lib".into());
                    continue;
                }
                if let (Some(a), Some(b)) = (rank.get(m.as_str()), rank.get(target.as_str())) {
                    if b > a {
                        problems.push(format!(
                            "src/{file}:{line}: `{m}` uses `crate::{target}`, but `{target}` \
                             is above `{m}` in lib.rs's layers (edge {m} -> {target})"
                        ));
                    }
                }
                edges.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    problems
}

/// Panics with every problem [`violations`] finds in the crate at `manifest_dir` (a test's
/// `env!("CARGO_MANIFEST_DIR")`).
pub fn check(manifest_dir: &str) {
    let problems = violations(&Path::new(manifest_dir).join("src"));
    assert!(
        problems.is_empty(),
        "module layering broken:\n  {}",
        problems.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_in_code_only() {
        let src = r##"
    //! See [`crate::above`].
    use crate::{a, b::{c, d}, e as f};
    use crate::g::*;
    fn x<'l>(s: &'l str) -> char {
        let _ = "crate::in_string";
        let _ = r#"crate::in_raw " string"#;
        let _ = envoy::r#type::crate_like;
        /* crate::in /* nested */ comment */
        let _ = crate::h::y(s);
        '"'
    }
    const Q: char = '\'';
    static Z: u8 = crate::z::Z;
    "##;
        let refs: Vec<(String, usize)> = crate_refs(src);
        let names: Vec<&str> = refs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "e", "g", "h", "z"]);
        assert_eq!(refs.last().map(|r| r.1), Some(14));
    }

    #[test]
    fn a_cycle_is_found() {
        let edges: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(m, ts)| (m.to_string(), ts.into_iter().map(str::to_string).collect()))
        .collect();
        assert_eq!(
            find_cycle(&edges),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }

    #[test]
    fn the_layers_are_read_from_the_doc_paragraph() {
        let lib = "//! Intro.\n//!\n//! Modules are layered. Layers,\n//! bottom first: `a`, `b`,\n//! `c`.\n//!\n//! Not `d`.\n\npub mod a;\n";
        assert_eq!(documented_layers(lib), ["a", "b", "c"]);
    }
}
