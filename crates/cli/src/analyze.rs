//! `isthmus analyze`: what `istioctl analyze` says, for files: every resource checked by
//! itself (IST0106), then the mesh built from them exactly as the control plane builds it
//! (its conflicts), then the checks across resources ([`isthmus_model::analysis`]), each
//! message with Istio's code, level, the resource and its file:line.

use anyhow::{bail, Result};
use isthmus_api::diagnostic::codes;
use isthmus_api::{Diagnostic, Severity};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// How `analyze` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// One line per message, as istioctl prints them.
    Text,
    /// A JSON array, with istioctl's keys.
    Json,
    /// The same as YAML.
    Yaml,
}

/// The level from which a message makes `analyze` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Threshold {
    /// Any message.
    Info,
    /// Warnings and errors.
    Warning,
    /// Errors only (the default, as istioctl's).
    Error,
}

/// One message as `istioctl analyze -o json` writes it (and the field at fault).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    code: &'static str,
    name: &'static str,
    level: &'static str,
    message: String,
    /// `Kind name.namespace`, as istioctl names the resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// `file:line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Istio's page for the code (Isthmus's own codes are in the README).
    #[serde(skip_serializing_if = "Option::is_none")]
    documentation_url: Option<String>,
}

/// `Kind/ns/name` (or `Kind/name`) as istioctl writes it: `Kind name.ns`.
fn origin(resource: &str) -> String {
    let parts: Vec<&str> = resource.splitn(3, '/').collect();
    match parts.as_slice() {
        [kind, ns, name] => format!("{kind} {name}.{ns}"),
        [kind, name] => format!("{kind} {name}"),
        _ => resource.to_string(),
    }
}

fn level(d: &Diagnostic) -> &'static str {
    match d.severity {
        Severity::Error => "Error",
        Severity::Warning => "Warning",
    }
}

fn message(d: &Diagnostic) -> Message {
    let code = d.code.unwrap_or(&codes::SCHEMA_VALIDATION_ERROR);
    let reference = d.file.as_ref().map(|f| match d.line {
        Some(l) => format!("{}:{l}", f.display()),
        None => f.display().to_string(),
    });
    let documentation_url = code.id.starts_with("IST").then(|| {
        format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/",
            code.id.to_lowercase()
        )
    });
    Message {
        code: code.id,
        name: code.name,
        level: level(d),
        message: d.message.clone(),
        origin: d.resource.as_deref().map(origin),
        reference,
        field: d.field.clone(),
        documentation_url,
    }
}

/// istioctl's line: `Error [IST0101] (VirtualService reviews.default a.yaml:12) ...`.
fn line(m: &Message) -> String {
    let place: Vec<&str> = [m.origin.as_deref(), m.reference.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let field = m
        .field
        .as_deref()
        .map(|f| format!("{f}: "))
        .unwrap_or_default();
    if place.is_empty() {
        format!("{} [{}] {field}{}", m.level, m.code, m.message)
    } else {
        format!(
            "{} [{}] ({}) {field}{}",
            m.level,
            m.code,
            place.join(" "),
            m.message
        )
    }
}

/// Every message about `paths` (directories or files; `namespace` for objects that name
/// none) and, with `live`, the objects an API server holds (a file's version of an object
/// replaces the server's, as `istioctl analyze` does with files and a cluster), sorted by
/// file and line.
pub fn diagnostics(
    paths: &[PathBuf],
    namespace: &str,
    live: Option<&isthmus_registry::ClusterConfig>,
) -> Result<(usize, Vec<Diagnostic>)> {
    let mut resources = Vec::new();
    let mut out = Vec::new();
    for p in paths {
        if !p.exists() {
            bail!("{}: no such file or directory", p.display());
        }
        let loaded = if p.is_dir() {
            isthmus_api::load_dir(p)
        } else {
            isthmus_api::load_file(p, namespace)
        };
        resources.extend(loaded.resources);
        out.extend(loaded.diagnostics);
    }
    if let Some(live) = live {
        let from_files: std::collections::BTreeSet<isthmus_api::ResourceKey> =
            resources.iter().map(|r| r.key()).collect();
        resources.extend(
            live.resources
                .values()
                .filter(|r| !from_files.contains(&r.key()))
                .map(|r| (**r).clone()),
        );
        out.extend(live.diagnostics.iter().cloned());
    }
    let mut out: Vec<Diagnostic> = out
        .into_iter()
        .map(|d| match d.code {
            Some(_) => d,
            None => d.code(&codes::SCHEMA_VALIDATION_ERROR),
        })
        .collect();
    let count = resources.len();
    let input = isthmus_model::SnapshotInput {
        clusters: vec![Arc::new(isthmus_registry::ClusterConfig::with_resources(
            "analyze", resources,
        ))],
        local_cluster: "analyze".into(),
        ..Default::default()
    };
    let snapshot = isthmus_model::MeshBuilder::new().check(&input);
    out.extend(snapshot.diagnostics.iter().cloned());
    out.extend(isthmus_model::analysis::analyze(&input, &snapshot));
    out.sort_by(|a, b| (&a.file, a.line, &a.message).cmp(&(&b.file, b.line, &b.message)));
    out.dedup();
    Ok((count, out))
}

/// What `analyze` prints, and whether it fails at `threshold`.
pub fn report(
    count: usize,
    found: &[Diagnostic],
    output: Output,
    threshold: Threshold,
) -> Result<(String, bool)> {
    let messages: Vec<Message> = found.iter().map(message).collect();
    let failed = found.iter().any(|d| match threshold {
        Threshold::Info | Threshold::Warning => true,
        Threshold::Error => d.is_error(),
    });
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&messages)? + "\n",
        Output::Yaml => serde_saphyr::to_string(&messages)?,
        Output::Text => {
            let errors = found.iter().filter(|d| d.is_error()).count();
            let mut t: String = messages.iter().map(|m| line(m) + "\n").collect();
            t.push_str(&format!(
                "{} loaded: {}, {}\n",
                crate::counted(count, "resource"),
                crate::counted(errors, "error"),
                crate::counted(found.len() - errors, "warning")
            ));
            t
        }
    };
    Ok((text, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_as_istioctls() {
        let mut d = Diagnostic::error("Referenced gateway not found: \"bogus\"")
            .at("spec.gateways[0]")
            .code(&codes::REFERENCED_RESOURCE_NOT_FOUND);
        d.file = Some("vs.yaml".into());
        d.line = Some(9);
        d.resource = Some("VirtualService/default/reviews".into());
        let m = message(&d);
        assert_eq!(
            line(&m),
            "Error [IST0101] (VirtualService reviews.default vs.yaml:9) spec.gateways[0]: Referenced gateway not found: \"bogus\""
        );
        assert_eq!(
            m.documentation_url.as_deref(),
            Some("https://istio.io/latest/docs/reference/config/analysis/ist0101/")
        );
        let (json, failed) =
            report(1, std::slice::from_ref(&d), Output::Json, Threshold::Error).expect("json");
        assert!(failed);
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v[0]["code"], "IST0101");
        assert_eq!(v[0]["level"], "Error");
        assert_eq!(v[0]["reference"], "vs.yaml:9");
        let warning = Diagnostic::warning("w").code(&codes::GATEWAY_PORT_NOT_ON_WORKLOAD);
        let (_, failed) = report(
            1,
            std::slice::from_ref(&warning),
            Output::Text,
            Threshold::Error,
        )
        .expect("text");
        assert!(!failed, "a warning passes the default threshold");
        let (_, failed) = report(1, &[warning], Output::Yaml, Threshold::Warning).expect("yaml");
        assert!(failed);
    }
}
