//! The differences between what two control planes sent the same proxy, and the verdict on
//! each: which side is right and why, from [`super::verdicts`]. A difference no rule explains
//! is reported as unexplained, never dropped.

use super::features::{Features, KINDS};
use super::verdicts::{self, Verdict};
use serde_json::Value;

/// Which control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// Isthmus.
    Isthmus,
    /// istiod.
    Istiod,
}

/// One difference.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// `cluster`, `endpoints`, `listener` or `route`.
    pub kind: &'static str,
    /// The resource's name (routes: `CONFIG/VIRTUAL_HOST`).
    pub name: String,
    /// The feature that differs; `None` when only one side sent the resource.
    pub field: Option<String>,
    /// Isthmus's value (`None`: not sent).
    pub isthmus: Option<Value>,
    /// istiod's value (`None`: not sent).
    pub istiod: Option<Value>,
}

impl Difference {
    /// The side that alone sent the resource, for a resource one side did not send.
    pub fn only(&self) -> Option<Side> {
        match (&self.field, &self.isthmus, &self.istiod) {
            (None, Some(_), None) => Some(Side::Isthmus),
            (None, None, Some(_)) => Some(Side::Istiod),
            _ => None,
        }
    }
}

/// Every difference between `isthmus` and `istiod`, kind by kind, name by name, field by
/// field, in that order.
pub fn differences(isthmus: &Features, istiod: &Features) -> Vec<Difference> {
    let empty = Default::default();
    let mut out = Vec::new();
    for kind in KINDS {
        let ours = isthmus.get(kind).unwrap_or(&empty);
        let theirs = istiod.get(kind).unwrap_or(&empty);
        let mut names: Vec<&String> = ours.keys().chain(theirs.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            match (ours.get(name), theirs.get(name)) {
                (Some(a), Some(b)) => {
                    let fields = |v: &Value| -> Vec<String> {
                        v.as_object()
                            .map(|o| o.keys().cloned().collect())
                            .unwrap_or_default()
                    };
                    let mut keys = fields(a);
                    keys.extend(fields(b));
                    keys.sort();
                    keys.dedup();
                    for k in keys {
                        let (x, y) = (a.get(&k), b.get(&k));
                        if x != y {
                            out.push(Difference {
                                kind,
                                name: name.clone(),
                                field: Some(k),
                                isthmus: x.cloned(),
                                istiod: y.cloned(),
                            });
                        }
                    }
                }
                (a, b) => out.push(Difference {
                    kind,
                    name: name.clone(),
                    field: None,
                    isthmus: a.cloned(),
                    istiod: b.cloned(),
                }),
            }
        }
    }
    out
}

/// A difference with its verdict.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The difference.
    pub difference: Difference,
    /// Who is right and why (`None`: no rule explains it).
    pub verdict: Option<&'static Verdict>,
}

/// Judges every difference of scenario `scenario`.
pub fn judge(scenario: &str, diffs: Vec<Difference>) -> Vec<Judged> {
    diffs
        .into_iter()
        .map(|d| Judged {
            verdict: verdicts::find(scenario, &d),
            difference: d,
        })
        .collect()
}

/// A value as one short line for the report (long values are cut).
pub fn short(v: Option<&Value>) -> String {
    let text = match v {
        None => "(not sent)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let text = text.replace('|', "\\|");
    if text.chars().count() > 160 {
        format!("{}...", text.chars().take(157).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn features(clusters: &[(&str, Value)]) -> Features {
        let mut f = Features::new();
        f.insert(
            "cluster",
            clusters
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
        );
        f
    }

    #[test]
    fn differences_are_by_resource_then_field() {
        let ours = features(&[
            ("a", json!({"type": "EDS", "lb_policy": "ROUND_ROBIN"})),
            ("only-ours", json!({"type": "STATIC"})),
        ]);
        let theirs = features(&[
            ("a", json!({"type": "EDS", "lb_policy": "LEAST_REQUEST"})),
            ("only-theirs", json!({"type": "EDS"})),
        ]);
        let d = differences(&ours, &theirs);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[0].name, "a");
        assert_eq!(d[0].field.as_deref(), Some("lb_policy"));
        assert_eq!(d[0].isthmus, Some(json!("ROUND_ROBIN")));
        assert_eq!(d[0].istiod, Some(json!("LEAST_REQUEST")));
        assert_eq!(d[1].only(), Some(Side::Isthmus));
        assert_eq!(d[2].only(), Some(Side::Istiod));
        assert!(differences(&ours, &ours).is_empty());
    }

    #[test]
    fn report_values_are_one_short_line() {
        assert_eq!(short(None), "(not sent)");
        assert_eq!(short(Some(&json!("a|b"))), "a\\|b");
        assert_eq!(short(Some(&json!("x".repeat(300)))).chars().count(), 160);
    }
}
