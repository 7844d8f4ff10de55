//! Known differences between Isthmus and istiod, each with which side is right and why
//! (citing Istio's code or documentation). A rule names the kind, a pattern of resource names,
//! the field (or that one side alone sends the resource) and, where it holds for one seed
//! scenario only, that scenario. The first matching rule wins.

use super::compare::{Difference, Side};

/// Who is right about a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Isthmus; istiod is wrong (a known Istio bug or a default that breaks the seed).
    Isthmus,
    /// istiod; Isthmus is wrong (a bug of ours, to be fixed).
    Istiod,
    /// Both: the configurations differ but make the same traffic happen.
    Equivalent,
}

impl Right {
    /// As the report writes it.
    pub fn label(self) -> &'static str {
        match self {
            Right::Isthmus => "Isthmus",
            Right::Istiod => "istiod",
            Right::Equivalent => "equivalent",
        }
    }
}

/// A verdict.
#[derive(Debug)]
pub struct Verdict {
    /// Who is right.
    pub right: Right,
    /// Why, with the source.
    pub why: &'static str,
}

/// How a rule matches resource names.
#[derive(Debug, Clone, Copy)]
enum Name {
    Any,
    Exact(&'static str),
    Prefix(&'static str),
    Contains(&'static str),
}

impl Name {
    fn matches(self, name: &str) -> bool {
        match self {
            Name::Any => true,
            Name::Exact(n) => name == n,
            Name::Prefix(p) => name.starts_with(p),
            Name::Contains(c) => name.contains(c),
        }
    }
}

/// What a rule asks of a difference.
#[derive(Debug, Clone, Copy)]
enum What {
    /// Only this side sends the resource.
    Only(Side),
    /// This field differs.
    Field(&'static str),
}

struct Rule {
    scenario: Option<&'static str>,
    kind: &'static str,
    name: Name,
    what: What,
    verdict: Verdict,
}

/// The rules, first match wins.
static RULES: &[Rule] = &[];

/// The verdict on `d` in scenario `scenario`, if a rule explains it.
pub fn find(scenario: &str, d: &Difference) -> Option<&'static Verdict> {
    RULES
        .iter()
        .find(|r| {
            r.scenario.is_none_or(|s| s == scenario)
                && r.kind == d.kind
                && r.name.matches(&d.name)
                && match r.what {
                    What::Only(side) => d.only() == Some(side),
                    What::Field(f) => d.field.as_deref() == Some(f),
                }
        })
        .map(|r| &r.verdict)
}
