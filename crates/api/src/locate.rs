//! Finds the line of a field in a YAML document from its dotted path
//! (`spec.endpoints[0].ports.http1`), so that errors found after parsing still point at
//! the line the user has to change.

/// Returns the 0-based line within `text` where the field `path` is written, or the line of
/// its deepest parent that could be found.
pub fn field_line(text: &str, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut end = lines.len();
    let mut parent_indent: isize = -1;
    let mut found: Option<usize> = None;
    for segment in split_path(path) {
        let (key, index) = segment;
        let mut hit = None;
        if !key.is_empty() {
            for (i, line) in lines.iter().enumerate().take(end).skip(start) {
                let (indent, body) = indent_of(line);
                if (indent as isize) <= parent_indent && !body.is_empty() && i > start {
                    break;
                }
                let body = body.strip_prefix("- ").unwrap_or(body);
                if body.starts_with(&format!("{key}:")) || body.starts_with(&format!("\"{key}\":"))
                {
                    hit = Some((i, indent));
                    break;
                }
            }
            let Some((line, indent)) = hit else {
                return found;
            };
            found = Some(line);
            start = line;
            parent_indent = indent as isize;
            end = block_end(&lines, line, indent);
        }
        if let Some(n) = index {
            // The n-th `- ` item directly under the current key.
            let mut count = 0usize;
            let mut item = None;
            let mut item_indent = None;
            for (i, line) in lines.iter().enumerate().take(end).skip(start + 1) {
                let (indent, body) = indent_of(line);
                if body.starts_with("- ") || body == "-" {
                    let first = *item_indent.get_or_insert(indent);
                    if indent != first {
                        continue;
                    }
                    if count == n {
                        item = Some((i, indent));
                        break;
                    }
                    count += 1;
                }
            }
            let Some((line, indent)) = item else {
                return found;
            };
            found = Some(line);
            start = line;
            end = block_end(&lines, line, indent);
            // keys of this item are indented past the dash
            parent_indent = indent as isize;
        }
    }
    found
}

fn indent_of(line: &str) -> (usize, &str) {
    let trimmed = line.trim_start_matches(' ');
    (line.len() - trimmed.len(), trimmed.trim_end())
}

fn block_end(lines: &[&str], from: usize, indent: usize) -> usize {
    for (i, line) in lines.iter().enumerate().skip(from + 1) {
        let (ind, body) = indent_of(line);
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if ind < indent || (ind == indent && !body.starts_with("- ")) {
            return i;
        }
        if ind == indent && body.starts_with("- ") && lines[from].trim_start().starts_with("- ") {
            return i;
        }
    }
    lines.len()
}

fn split_path(path: &str) -> Vec<(String, Option<usize>)> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(|seg| match seg.find('[') {
            Some(b) => {
                let idx = seg[b + 1..].trim_end_matches(']').parse().ok();
                (seg[..b].to_string(), idx)
            }
            None => (seg.to_string(), None),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin-bar
spec:
  hosts:
  - httpbin.bar.global
  ports:
  - name: http1
    number: 8000
  - name: tcp
    number: 70000
  endpoints:
  - address: 1.2.3.4
    ports:
      http1: 15443
";

    #[test]
    fn finds_nested_fields_and_list_items() {
        assert_eq!(field_line(DOC, "spec.hosts"), Some(5));
        assert_eq!(field_line(DOC, "spec.hosts[0]"), Some(6));
        assert_eq!(field_line(DOC, "spec.ports[1].number"), Some(11));
        assert_eq!(field_line(DOC, "spec.ports[0].name"), Some(8));
        assert_eq!(field_line(DOC, "spec.endpoints[0].ports.http1"), Some(15));
        assert_eq!(field_line(DOC, "metadata.name"), Some(3));
    }

    #[test]
    fn missing_field_points_at_its_parent() {
        assert_eq!(field_line(DOC, "spec.resolution"), Some(4));
    }
}
