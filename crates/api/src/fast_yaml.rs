//! A fast reader for the block-style YAML that kubectl, Helm and people write for
//! Kubernetes and Istio objects: block mappings and sequences (also a sequence at its key's
//! indentation), one-line flow collections (`[a, b]`, `{name: http, number: 80}`), plain
//! and simple quoted scalars, comments. It builds the JSON tree directly, several times
//! faster than the full YAML parser, and answers `None` for anything it does not read with
//! certainty (anchors, aliases, tags, block scalars, multi-line scalars, escapes, keys that
//! are not plain words, numbers other than plain integers, YAML's other spellings of null
//! and booleans, duplicate keys, tabs, odd indentation...), which the full parser then reads
//! as before. What it reads, it reads as serde-saphyr does: a differential fuzz target
//! (`fuzz/fuzz_targets/yaml_fast.rs`) and a test over every YAML file in the repository
//! hold the two to the same tree.

use serde_json::{Map, Value};

/// Deepest nesting read here (deeper documents go to the full parser).
const MAX_DEPTH: usize = 64;

/// One line with content: its indentation and its text without indentation, comment and
/// trailing spaces.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The tree of a one-document YAML text, or `None` when the full parser must read it.
pub fn parse(doc: &str) -> Option<Value> {
    if !printable(doc) {
        return None;
    }
    let mut lines = Vec::new();
    for raw in doc.lines() {
        let content = raw.trim_start_matches(' ');
        if content.starts_with('\t') || raw.contains('\r') {
            return None;
        }
        let text = strip_comment(content)?.trim_end_matches(' ');
        if text.is_empty() {
            continue;
        }
        if text.contains('\t') {
            return None;
        }
        lines.push(Line {
            indent: raw.len() - content.len(),
            text,
        });
    }
    if lines.is_empty() || lines[0].indent != 0 {
        return None;
    }
    let mut r = Reader { lines, at: 0 };
    let v = r.node(0, 0)?;
    (r.at == r.lines.len()).then_some(v)
}

/// Whether every character is one YAML allows in a document read here: printable ASCII,
/// newlines, and non-ASCII text other than YAML 1.1's line breaks and byte-order marks
/// (control characters are errors for the full parser, so they are left to it).
fn printable(doc: &str) -> bool {
    doc.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\n')
        || doc.chars().all(|c| {
            matches!(c, '\n' | ' '..='~')
                || (c >= '\u{a0}'
                    && !matches!(
                        c,
                        '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                    ))
        })
}

/// The text before a comment; `None` when a `#` could be inside a quoted scalar.
fn strip_comment(s: &str) -> Option<&str> {
    if s.starts_with('#') {
        return Some("");
    }
    match s.find(" #") {
        None => Some(s),
        Some(_) if s.contains('"') || s.contains('\'') => None,
        Some(i) => Some(&s[..i]),
    }
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
}

/// `- ITEM` or `-`: the item's text (possibly empty).
fn seq_item(text: &str) -> Option<&str> {
    if text == "-" {
        Some("")
    } else {
        text.strip_prefix("- ")
    }
}

/// `KEY: VALUE` or `KEY:` with a plain word key: the key and the value's text.
fn key_value(text: &str) -> Option<(&str, &str)> {
    let first = text.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let (key, rest) = match text.find(": ") {
        Some(i) => (&text[..i], text[i + 2..].trim_start_matches(' ')),
        None => (text.strip_suffix(':')?, ""),
    };
    // YAML bounds an implicit key at 1,024 characters, and the full parser refuses a longer
    // one (found by fuzzing): anything near that is left to it.
    if key.len() > MAX_KEY {
        return None;
    }
    let plain_key = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'/' | b'-' | b'_'));
    (plain_key && !is_special_word(key)).then_some((key, rest))
}

/// The longest key the fast reader takes; well under YAML's 1,024-character bound on an
/// implicit key, and over any key a Kubernetes object has (a label key is at most 316).
const MAX_KEY: usize = 1000;

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.at).copied()
    }

    /// The block node whose first line is the next one, at exactly `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        let line = self.peek()?;
        if line.indent != indent {
            return None;
        }
        if seq_item(line.text).is_some() {
            self.sequence(indent, depth)
        } else if key_value(line.text).is_some() {
            self.mapping(indent, depth)
        } else {
            None
        }
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let mut map = Map::new();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && seq_item(line.text).is_some()) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (key, rest) = key_value(line.text)?;
            self.at += 1;
            let value = if rest.is_empty() {
                match self.peek() {
                    Some(next) if next.indent > indent => self.node(next.indent, depth + 1)?,
                    // A sequence may sit at its key's indentation (kubectl writes it so).
                    Some(next) if next.indent == indent && seq_item(next.text).is_some() => {
                        self.sequence(indent, depth + 1)?
                    }
                    // An empty value (null): left to the full parser.
                    _ => return None,
                }
            } else {
                inline(rest, depth)?
            };
            if map.insert(key.to_string(), value).is_some() {
                return None;
            }
        }
        Some(Value::Object(map))
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Option<Value> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent {
                if line.indent > indent {
                    return None;
                }
                break;
            }
            let Some(rest) = seq_item(line.text) else {
                break;
            };
            let trimmed = rest.trim_start_matches(' ');
            if trimmed.is_empty() {
                self.at += 1;
                match self.peek() {
                    Some(next) if next.indent > indent => {
                        items.push(self.node(next.indent, depth + 1)?)
                    }
                    _ => return None,
                }
            } else if key_value(trimmed).is_some() && !trimmed.starts_with(['{', '[']) {
                // `- key: value`: a mapping whose first line starts after the dash; the
                // line is read again as that mapping's first line.
                let item_indent = indent + (line.text.len() - trimmed.len());
                self.lines[self.at] = Line {
                    indent: item_indent,
                    text: trimmed,
                };
                items.push(self.mapping(item_indent, depth + 1)?);
            } else if seq_item(trimmed).is_some() {
                // `- - x`: nested sequences on one line, left to the full parser.
                return None;
            } else {
                self.at += 1;
                items.push(inline(trimmed, depth)?);
            }
        }
        Some(Value::Array(items))
    }
}

/// A value written on its key's or dash's line: a flow collection or a scalar.
fn inline(text: &str, depth: usize) -> Option<Value> {
    if text.starts_with(['[', '{']) {
        let (v, rest) = flow(text, depth + 1)?;
        return rest.trim().is_empty().then_some(v);
    }
    scalar(text, false)
}

/// A flow collection at the start of `s`, and what follows it.
fn flow(s: &str, depth: usize) -> Option<(Value, &str)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (close, is_map) = match s.as_bytes().first()? {
        b'[' => (']', false),
        b'{' => ('}', true),
        _ => return None,
    };
    let mut rest = s[1..].trim_start_matches(' ');
    let mut items = Vec::new();
    let mut map = Map::new();
    if let Some(after) = rest.strip_prefix(close) {
        return Some((
            if is_map {
                Value::Object(map)
            } else {
                Value::Array(items)
            },
            after,
        ));
    }
    loop {
        let key = if is_map {
            let end = rest.find(": ")?;
            let (key, _) = key_value(&rest[..end + 1])?;
            rest = rest[end + 2..].trim_start_matches(' ');
            Some(key)
        } else {
            None
        };
        let (value, after) = if rest.starts_with(['[', '{']) {
            flow(rest, depth + 1)?
        } else {
            let end = rest.find([',', ']', '}']).unwrap_or(rest.len());
            (
                scalar(rest[..end].trim_end_matches(' '), true)?,
                &rest[end..],
            )
        };
        match key {
            Some(k) => {
                if map.insert(k.to_string(), value).is_some() {
                    return None;
                }
            }
            None => items.push(value),
        }
        rest = after.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start_matches(' ');
            // A trailing comma before the end is left to the full parser.
            if rest.starts_with([']', '}']) {
                return None;
            }
            continue;
        }
        let after = rest.strip_prefix(close)?;
        let v = if is_map {
            Value::Object(map)
        } else {
            Value::Array(items)
        };
        return Some((v, after));
    }
}

/// A scalar read as YAML's core schema reads it, when certain: plain integers, `true` and
/// `false`, simple quoted strings, and plain strings that cannot be anything else.
fn scalar(text: &str, in_flow: bool) -> Option<Value> {
    let first = *text.as_bytes().first()?;
    if first == b'\'' || first == b'"' {
        let body = text
            .strip_prefix(first as char)?
            .strip_suffix(first as char)?;
        if body.contains(['\'', '"', '\\']) {
            return None;
        }
        return Some(Value::String(body.to_string()));
    }
    // Indicators that start something else than a plain scalar.
    if b"&*!|>%@`#?-[]{},:<=~".contains(&first) && !(first == b'-' && text.len() > 1) {
        return None;
    }
    if text.contains(": ")
        || text.ends_with(':')
        || (in_flow && text.contains([',', '[', ']', '{', '}']))
    {
        return None;
    }
    if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.') {
        return number_like(text);
    }
    match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        // Other spellings of null, booleans and floats are left to the full parser.
        _ if is_special_word(text) => None,
        _ => Some(Value::String(text.to_string())),
    }
}

/// Words YAML (1.1 or 1.2) may read as something else than a string.
fn is_special_word(text: &str) -> bool {
    matches!(
        text.to_ascii_lowercase().as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "nan" | "inf"
    )
}

/// A scalar that starts like a number: a plain decimal integer, or a dotted string of
/// digits such as an IPv4 address, a CIDR or a version (`1.2.3`); `None` for anything else.
fn number_like(text: &str) -> Option<Value> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty()
        && text != "-0"
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
    {
        let n: i64 = text.parse().ok()?;
        return Some(Value::from(n));
    }
    let dots = text.bytes().filter(|b| *b == b'.').count();
    let dotted = dots >= 2
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'/')
        && !text.starts_with('.')
        && !text.ends_with('.')
        && !text.contains("..");
    dotted.then(|| Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(doc: &str) -> Value {
        crate::yaml::from_str(doc).expect("valid YAML")
    }

    /// Every document the fast reader takes must read as the full parser reads it.
    fn same(doc: &str) -> bool {
        match parse(doc) {
            Some(v) => {
                assert_eq!(v, full(doc), "fast reader differs on:\n{doc}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_usual_shapes_are_read_as_the_full_parser_reads_them() {
        let docs = [
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: httpbin\n  labels: {app: httpbin, version: v1}\nspec:\n  ports:\n  - name: http\n    port: 8000\n    targetPort: 80\n  selector:\n    app: httpbin\n",
            "kind: ServiceEntry\nspec:\n  hosts: [a.b.global, 'c.d']\n  addresses:\n  - 127.255.0.2\n  - 10.0.0.0/8\n  endpoints:\n    - address: 10.0.0.1 # the gateway\n      ports:\n        http1: 15443\n  location: MESH_INTERNAL\n",
            "a:\n  b:\n    c: [1, -2, {k: v, z: [true, false]}]\n  d: \"quoted value\"\n# comment\ne: 0\n",
            "list:\n- - nested\n",
            "items:\n-\n  a: 1\n- b\n",
        ];
        let read: Vec<bool> = docs.iter().map(|d| same(d)).collect();
        assert_eq!(read, [true, true, true, false, true]);
    }

    #[test]
    fn anything_uncertain_goes_to_the_full_parser() {
        for doc in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: |\n  text\n",
            "a: >\n  text\n",
            "a: multi\n  line\n",
            "a: 1.5\n",
            "a: 0x1f\n",
            "a: 012\n",
            "a: yes\n",
            "a: ~\n",
            "a: null\n",
            "a:\n",
            "a: 1\na: 2\n",
            "a: \"esc\\n\"\n",
            "\"quoted key\": 1\n",
            "8080: port\n",
            "a: [1, 2,]\n",
            "a:\n\tb: 1\n",
            "a: b: c\n",
            "- just\n- a list\n",
            "plain scalar\n",
            "a: 1 # x\n  b: 2\n",
            "a: 'it''s'\n",
            "<<: {a: 1}\n",
            "a: b\u{0}\n",
            "a: \u{feff}b\n",
        ] {
            if let Some(v) = parse(doc) {
                // Taken only where certain: then it must agree.
                assert_eq!(Some(v), crate::yaml::from_str::<Value>(doc).ok(), "{doc}");
            }
        }
        assert!(parse("a: &x 1\nb: *x\n").is_none());
        assert!(parse("a: 1.5\n").is_none());
        assert!(parse("a: yes\n").is_none());
        assert!(parse("a: 1\na: 2\n").is_none());
        assert!(
            parse("a: b\u{0}\n").is_none(),
            "control characters (found by fuzzing)"
        );
        // A key over YAML's 1,024-character bound (found by fuzzing), in a block and in a
        // flow mapping: the full parser refuses both, the fast reader takes neither.
        let long = "k".repeat(1100);
        for doc in [format!("{long}: v\n"), format!("a: {{{long}: v}}\n")] {
            assert!(parse(&doc).is_none(), "{doc}");
            assert!(crate::yaml::from_str::<Value>(&doc).is_err(), "{doc}");
        }
        let at_most = "k".repeat(MAX_KEY);
        assert!(same(&format!("{at_most}: v\n")));
    }

    #[test]
    fn every_yaml_file_in_the_repository_reads_the_same_both_ways() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut taken = 0;
        let mut all = 0;
        for dir in ["examples", "testdata", "crates/envoy/tests"] {
            let mut stack = vec![root.join(dir)];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                        let text = std::fs::read_to_string(&p).unwrap_or_default();
                        for doc in text.split("\n---") {
                            let Ok(expected) = crate::yaml::from_str::<Value>(doc) else {
                                continue;
                            };
                            all += 1;
                            if let Some(v) = parse(doc) {
                                assert_eq!(v, expected, "{}:\n{doc}", p.display());
                                taken += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            all > 100,
            "the repository's YAML was found ({all} documents)"
        );
        assert!(
            taken * 2 > all,
            "most documents take the fast path: {taken} of {all}"
        );
    }
}
