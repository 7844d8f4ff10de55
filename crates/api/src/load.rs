//! Reads multi-document YAML into [`Resource`]s, keeping each document's file and line,
//! and turns every problem into a [`Diagnostic`] that names the file, line, resource and
//! field. A bad document never stops the others from loading.

// A parse's error is the one Diagnostic that will be reported (128 bytes, made once per bad
// document); boxing it would add an allocation and an indirection for nothing.
#![allow(clippy::result_large_err)]

use crate::diagnostic::Diagnostic;
use crate::locate::field_line;
use crate::meta::ObjectMeta;
use crate::resource::{Object, Origin, OtherObject, Resource};
use crate::shared::Interner;
use crate::validate::validate;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What loading produced: the good resources and the problems.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    /// Resources that parsed and validated (warnings allowed).
    pub resources: Vec<Resource>,
    /// Every problem, errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    fn extend(&mut self, other: Loaded) {
        self.resources.extend(other.resources);
        self.diagnostics.extend(other.diagnostics);
    }
}

/// Loads every `*.yaml`/`*.yml` file below `dir`, in name order. Files in a first-level
/// subdirectory take its name as their default namespace (the way `kubectl apply -n NS`
/// does); files directly in `dir` default to `default`.
pub fn load_dir(dir: &Path) -> Loaded {
    let mut out = Loaded::default();
    match yaml_files(dir) {
        Ok(files) => {
            for (file, ns) in files {
                out.extend(load_file(&file, &ns));
            }
        }
        Err(d) => out.diagnostics.push(d),
    }
    out
}

/// The YAML files below `dir` in name order, each with its default namespace (as
/// [`load_dir`] reads them), so that a caller can re-read only the files that changed.
pub fn yaml_files(dir: &Path) -> Result<Vec<(PathBuf, String)>, Diagnostic> {
    let mut files = Vec::new();
    if let Err(e) = collect_files(dir, None, &mut files) {
        let mut d = Diagnostic::error(format!("cannot read directory: {e}"));
        d.file = Some(dir.to_path_buf());
        return Err(d);
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|(f, ns)| (f, ns.unwrap_or_else(|| "default".to_string())))
        .collect())
}

fn collect_files(
    dir: &Path,
    namespace: Option<&str>,
    out: &mut Vec<(PathBuf, Option<String>)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            let ns = namespace
                .map(str::to_string)
                .unwrap_or_else(|| name.to_string());
            collect_files(&path, Some(&ns), out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push((path.clone(), namespace.map(str::to_string)));
        }
    }
    Ok(())
}

/// Loads one file; objects without a namespace get `default_namespace`.
pub fn load_file(path: &Path, default_namespace: &str) -> Loaded {
    load_shared_file(&Arc::new(path.to_path_buf()), default_namespace)
}

/// Loads one file, as [`load_file`], its objects' origins sharing the caller's `path` (a
/// registry that also keys its cache by it keeps the path once).
pub fn load_shared_file(path: &Arc<PathBuf>, default_namespace: &str) -> Loaded {
    match std::fs::read_to_string(&**path) {
        Ok(text) => load_text(&text, Some(path.clone()), default_namespace),
        Err(e) => {
            let mut d = Diagnostic::error(format!("cannot read file: {e}"));
            d.file = Some(path.to_path_buf());
            Loaded {
                resources: Vec::new(),
                diagnostics: vec![d],
            }
        }
    }
}

/// Loads YAML text holding one or more documents separated by `---`.
pub fn load_str(text: &str, file: Option<&Path>, default_namespace: &str) -> Loaded {
    load_text(
        text,
        file.map(|f| Arc::new(f.to_path_buf())),
        default_namespace,
    )
}

/// Loads YAML text read from `file`: one path for all of the file's objects, and one copy of
/// what they repeat.
fn load_text(text: &str, file: Option<Arc<PathBuf>>, default_namespace: &str) -> Loaded {
    let mut out = Loaded::default();
    let mut shared = Shared::default();
    // A `kind: List` (what `kubectl get -o yaml` prints) stands for its items.
    let documents =
        split_documents(text)
            .into_iter()
            .flat_map(|(line, doc)| match list_items(&doc) {
                Some(items) => items
                    .into_iter()
                    .map(|(offset, item)| (line + offset, item))
                    .collect(),
                None => vec![(line, doc)],
            });
    for (start_line, doc) in documents {
        // The document's text is kept by its origin, not copied for it.
        let doc = Arc::new(doc);
        let origin = Origin::document(
            file.clone(),
            u32::try_from(start_line).unwrap_or(u32::MAX),
            Some(doc.clone()),
        );
        match parse_document(&doc, &origin, default_namespace) {
            Ok(None) => {}
            Ok(Some(mut resource)) => {
                shared.object(&mut resource.object);
                let problems = validate(&resource.object);
                let mut failed = false;
                for p in problems {
                    failed |= p.is_error();
                    out.diagnostics.push(place(p, &resource));
                }
                if !failed {
                    out.resources.push(resource);
                }
            }
            Err(d) => out.diagnostics.push(d),
        }
    }
    out
}

/// What the objects of one file repeat, kept once: namespaces, label maps (a workload's
/// pods carry the same labels, which its Service selects), pod specs, service accounts and
/// node names.
#[derive(Default)]
struct Shared {
    maps: Interner<crate::labels::Labels>,
    strs: Interner<str>,
    specs: Interner<crate::kube::PodSpec>,
    namespaces: Interner<Box<str>>,
}

impl Shared {
    /// Replaces a non-empty `map` with an equal map seen before, or remembers it.
    fn map(&mut self, map: &mut Arc<crate::labels::Labels>) {
        if !map.is_empty() {
            self.maps.share(map);
        }
    }

    fn str(&mut self, s: &mut Arc<str>) {
        self.strs.share(s);
    }

    /// Shares what `object` repeats.
    fn object(&mut self, object: &mut Object) {
        object.metadata_mut().namespace.share(&mut self.namespaces);
        self.map(&mut object.metadata_mut().labels);
        match object {
            Object::Service(s) => {
                self.map(&mut s.spec.selector);
                // Parsing leaves room for more ports than the service has.
                s.spec.ports.shrink_to_fit();
                // Services repeat their type and their ports' names and protocols.
                if let Some(t) = &mut s.spec.type_ {
                    self.str(t);
                }
                for port in &mut s.spec.ports {
                    self.str(&mut port.name);
                    for p in [&mut port.protocol, &mut port.app_protocol]
                        .into_iter()
                        .flatten()
                    {
                        self.str(p);
                    }
                }
            }
            Object::Pod(p) => {
                // A workload's pods on one node have the same spec: it is kept once, and
                // its service account and node name once across specs. A StatefulSet's
                // pod has a DNS name of its own, so a spec of its own: not remembered.
                let spec = Arc::make_mut(&mut p.spec);
                self.str(&mut spec.service_account_name);
                if !spec.node_name.is_empty() {
                    self.str(&mut spec.node_name);
                }
                if spec.dns_name.is_none() {
                    self.specs.share(&mut p.spec);
                }
            }
            _ => {}
        }
    }
}

/// Fills in file, line and resource of a diagnostic found in `resource`.
pub fn place(mut d: Diagnostic, resource: &Resource) -> Diagnostic {
    d.file = resource.origin.file().map(|f| f.to_path_buf());
    d.resource = Some(resource.key().to_string());
    let rel = d
        .field
        .as_deref()
        .and_then(|f| field_line(resource.origin.text().map_or("", |t| t.as_str()), f))
        .unwrap_or(0);
    // An object read from an API server has no line to point at.
    d.line = (resource.origin.line() > 0).then_some(resource.origin.line() as usize + rel);
    d
}

/// The items of a `kind: List` document, each as its own text (the item's lines, dedented)
/// with its first line counted from the document's (0 for the first line); `None` when
/// `doc` is not a List. Slicing the text rather than re-writing parsed items keeps every
/// line where the user sees it, for diagnostics.
fn list_items(doc: &str) -> Option<Vec<(usize, String)>> {
    let lines: Vec<&str> = doc.lines().collect();
    let is_list = lines.iter().any(|l| {
        matches!(
            l.trim_end(),
            "kind: List" | "kind: \"List\"" | "kind: 'List'"
        )
    });
    if !is_list {
        return None;
    }
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let items_at = lines
        .iter()
        .position(|l| indent_of(l) == 0 && l.trim_end().starts_with("items:"))?;
    if lines[items_at].trim_end() != "items:" {
        // `items: []`: an empty list.
        return Some(Vec::new());
    }
    let mut starts = Vec::new();
    let mut end = lines.len();
    let mut indent = None;
    for (i, l) in lines.iter().enumerate().skip(items_at + 1) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let at = indent_of(l);
        let item_indent = *indent.get_or_insert(at);
        if at == item_indent && (t.starts_with("- ") || t == "-") {
            starts.push(i);
        } else if at <= item_indent {
            // The List's next key (`kind: List`, `metadata:`): the items are over.
            end = i;
            break;
        }
    }
    let indent = indent.unwrap_or(0);
    let mut items = Vec::new();
    for (n, start) in starts.iter().enumerate() {
        let stop = starts.get(n + 1).copied().unwrap_or(end);
        let mut text = String::new();
        for (k, l) in lines[*start..stop].iter().enumerate() {
            // The item's first line loses its `- `; every line its list indentation.
            let body = if k == 0 {
                l.get(indent + 2..).unwrap_or("")
            } else {
                l.get(indent + 2..).unwrap_or_else(|| l.trim_start())
            };
            text.push_str(body);
            text.push('\n');
        }
        items.push((*start, text));
    }
    Some(items)
}

/// Splits a YAML stream at `---` lines, returning each document with its 1-based first line.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_sep = line.starts_with("---")
            && line[3..]
                .trim_start()
                .chars()
                .next()
                .is_none_or(|c| c == '#');
        if is_sep {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else if line.starts_with("...") && line.trim_end() == "..." {
            continue;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// `line 8 column 42: unknown ...` -> `unknown ...`.
fn strip_position(message: &str) -> &str {
    let Some(rest) = message.strip_prefix("line ") else {
        return message;
    };
    let mut parts = rest.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(line), Some("column"), Some(col), Some(tail))
            if line.bytes().all(|b| b.is_ascii_digit())
                && col
                    .strip_suffix(':')
                    .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit())) =>
        {
            tail
        }
        _ => message,
    }
}

fn yaml_error(e: serde_saphyr::Error, origin: &Origin, resource: Option<String>) -> Diagnostic {
    let message = e.to_string();
    let first = message.lines().next().unwrap_or("invalid YAML");
    // The diagnostic says `error` itself; the YAML reader's own prefix would double it, and
    // its position is within the document, not the file (the diagnostic's line is).
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = strip_position(first);
    let mut d = Diagnostic::error(format!("invalid YAML: {first}"));
    d.file = origin.file().map(|f| f.to_path_buf());
    d.resource = resource;
    d.line =
        Some(origin.line() as usize + e.location().map(|l| l.line() as usize).unwrap_or(1) - 1);
    d
}

fn parse_document(
    doc: &str,
    origin: &Origin,
    default_namespace: &str,
) -> Result<Option<Resource>, Diagnostic> {
    // The fast reader takes the usual block-style documents; the full parser the rest (and
    // says where a document is wrong).
    let value: serde_json::Value = match crate::fast_yaml::parse(doc) {
        Some(v) => v,
        None => crate::yaml::from_str(doc).map_err(|e| yaml_error(e, origin, None))?,
    };
    if value.is_null() {
        return Ok(None);
    }
    let top_error = |field: &str, message: String| {
        let mut d = Diagnostic::error(message).at(field);
        d.file = origin.file().map(|f| f.to_path_buf());
        d.line = Some(origin.line() as usize + field_line(doc, field).unwrap_or(0));
        d
    };
    let text = TextDocument {
        doc,
        origin,
        value: &value,
    };
    let object = typed_object(&value, &text, &top_error)?;
    Ok(Some(finish(object, origin.clone(), default_namespace)))
}

/// Fills in the namespace an object leaves to its reader.
fn finish(mut object: Object, origin: Origin, default_namespace: &str) -> Resource {
    if !object.is_cluster_scoped() && object.metadata().namespace.is_empty() {
        object.metadata_mut().namespace = default_namespace.into();
    }
    Resource { object, origin }
}

/// A document the typed structs are read from: YAML text (with its place in a file, for
/// errors), or a JSON value as an API server returns it.
trait Document {
    /// Reads the whole document as `T`; `label` (KIND/NAME) names it in errors.
    fn parse<T: DeserializeOwned>(&self, label: &str) -> Result<T, Diagnostic>;
}

/// YAML text from a file, and the tree it was already parsed into.
struct TextDocument<'a> {
    doc: &'a str,
    origin: &'a Origin,
    value: &'a serde_json::Value,
}

impl Document for TextDocument<'_> {
    /// Reads the typed object from the parsed tree (the YAML is not parsed a second time);
    /// only when that fails is the text read again, for an error that points at its line.
    /// The text may also succeed where the tree does not (a YAML scalar such as `80` or
    /// `1.0` read into a string field), so its result is the one taken.
    fn parse<T: DeserializeOwned>(&self, label: &str) -> Result<T, Diagnostic> {
        if let Ok(t) = T::deserialize(self.value) {
            return Ok(t);
        }
        crate::yaml::from_str(self.doc)
            .map_err(|e| yaml_error(e, self.origin, Some(label.to_string())))
    }
}

/// An object as a Kubernetes API server returns it.
struct ValueDocument<'a>(&'a serde_json::Value);

impl Document for ValueDocument<'_> {
    fn parse<T: DeserializeOwned>(&self, label: &str) -> Result<T, Diagnostic> {
        T::deserialize(self.0).map_err(|e| {
            let mut d = Diagnostic::error(e.to_string());
            d.resource = Some(label.to_string());
            d
        })
    }
}

/// The typed object of a document whose parsed form is `value`; `top_error(field, message)`
/// makes an error about a top-level field.
fn typed_object(
    value: &serde_json::Value,
    doc: &impl Document,
    top_error: &dyn Fn(&str, String) -> Diagnostic,
) -> Result<Object, Diagnostic> {
    let Some(map) = value.as_object() else {
        return Err(top_error(
            "",
            "a document must be a mapping with apiVersion and kind".into(),
        ));
    };
    let api_version = map
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let kind = map.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if api_version.is_empty() {
        return Err(top_error("apiVersion", "apiVersion is required".into()));
    }
    if kind.is_empty() {
        return Err(top_error("kind", "kind is required".into()));
    }
    if kind == "List" {
        return Err(top_error(
            "kind",
            "List documents are not supported; write one document per object".into(),
        ));
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    let label = format!("{kind}/{name}");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let version = api_version.rsplit('/').next().unwrap_or_default();
    let unsupported = || {
        top_error(
            "apiVersion",
            format!("{kind} is not served in {api_version}; use one of the versions Istio serves"),
        )
    };
    if let Some((field, message)) = unknown_field(map, group) {
        return Err(top_error(&field, message));
    }
    let istio_versions = ["v1alpha3", "v1beta1", "v1"];
    Ok(match (group, kind) {
        ("", "Namespace") => Object::Namespace(doc.parse(&label)?),
        ("", "Node") => Object::Node(doc.parse(&label)?),
        ("", "Service") => Object::Service(doc.parse(&label)?),
        ("", "Pod") => Object::Pod(doc.parse(&label)?),
        ("", "Endpoints") => Object::Endpoints(doc.parse(&label)?),
        ("", "ConfigMap") => Object::ConfigMap(doc.parse(&label)?),
        ("", "Secret") => Object::Secret(doc.parse(&label)?),
        ("discovery.k8s.io", "EndpointSlice") => Object::EndpointSlice(doc.parse(&label)?),
        ("apps" | "extensions", "Deployment") => Object::Deployment(doc.parse(&label)?),
        // Read for the pods it would create, as a Deployment whose spec names its Service.
        ("apps", "StatefulSet") => Object::Deployment(doc.parse(&label)?),
        ("networking.istio.io", _) if !istio_versions.contains(&version) => {
            return Err(unsupported());
        }
        ("networking.istio.io", "ServiceEntry") => Object::ServiceEntry(doc.parse(&label)?),
        ("networking.istio.io", "WorkloadEntry") => Object::WorkloadEntry(doc.parse(&label)?),
        ("networking.istio.io", "DestinationRule") => Object::DestinationRule(doc.parse(&label)?),
        ("networking.istio.io", "VirtualService") => Object::VirtualService(doc.parse(&label)?),
        ("networking.istio.io", "Gateway") => Object::Gateway(doc.parse(&label)?),
        ("networking.istio.io", "Sidecar") => Object::Sidecar(doc.parse(&label)?),
        ("security.istio.io", "PeerAuthentication") if ["v1beta1", "v1"].contains(&version) => {
            Object::PeerAuthentication(doc.parse(&label)?)
        }
        ("security.istio.io", "AuthorizationPolicy") if ["v1beta1", "v1"].contains(&version) => {
            Object::AuthorizationPolicy(doc.parse(&label)?)
        }
        ("security.istio.io", "RequestAuthentication") if ["v1beta1", "v1"].contains(&version) => {
            Object::RequestAuthentication(doc.parse(&label)?)
        }
        ("authentication.istio.io", "MeshPolicy") if version == "v1alpha1" => {
            Object::MeshPolicy(doc.parse(&label)?)
        }
        ("authentication.istio.io", "Policy") if version == "v1alpha1" => {
            Object::AuthnPolicy(doc.parse(&label)?)
        }
        (
            "networking.istio.io"
            | "security.istio.io"
            | "authentication.istio.io"
            | "telemetry.istio.io"
            | "extensions.istio.io",
            _,
        ) => {
            let known = KNOWN_UNSUPPORTED.contains(&kind);
            return Err(top_error(
                "kind",
                if known {
                    format!("{kind} ({api_version}) is not supported by Isthmus; it would not be enforced, so it is refused")
                } else {
                    format!("unknown kind {kind} in {api_version}")
                },
            ));
        }
        _ => {
            let metadata: ObjectMeta = map
                .get("metadata")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| top_error("metadata", format!("invalid metadata: {e}")))?
                .unwrap_or_default();
            Object::Other(Box::new(OtherObject {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                metadata,
            }))
        }
    })
}

/// Every field of Kubernetes' ObjectMeta: anything else under `metadata` is a typo (the API
/// server would drop it, and a `lables` would leave the object without its labels).
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// A field no Kubernetes object has under `metadata`, or (for Istio's kinds) at the top
/// level: its path and the message.
fn unknown_field(
    map: &serde_json::Map<String, serde_json::Value>,
    group: &str,
) -> Option<(String, String)> {
    if let Some(meta) = map.get("metadata").and_then(|m| m.as_object()) {
        if let Some(key) = meta
            .keys()
            .find(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        {
            return Some((
                format!("metadata.{key}"),
                format!(
                    "unknown field `{key}` in metadata (a Kubernetes API server would drop it)"
                ),
            ));
        }
    }
    let istio = group.ends_with(".istio.io");
    if istio {
        if let Some(key) = map
            .keys()
            .find(|k| !["apiVersion", "kind", "metadata", "spec", "status"].contains(&k.as_str()))
        {
            return Some((
                key.clone(),
                format!("unknown field `{key}`: an Istio object has apiVersion, kind, metadata, spec (and status)"),
            ));
        }
    }
    None
}

/// Istio kinds that exist but that Isthmus does not implement: refused by name, never
/// ignored (an AuthorizationPolicy that is not enforced is a hole).
const KNOWN_UNSUPPORTED: &[&str] = &[
    "EnvoyFilter",
    "WorkloadGroup",
    "ProxyConfig",
    "Telemetry",
    "WasmPlugin",
];

/// Reads objects one at a time as a Kubernetes API server returns them (JSON values with
/// `apiVersion` and `kind`), sharing what they repeat across calls as a file's objects do.
/// Each object is parsed and validated exactly as a file's document is.
#[derive(Default)]
pub struct ObjectReader {
    shared: Shared,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectReader")
    }
}

impl ObjectReader {
    /// A reader with nothing shared yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets what was shared (the objects read keep their copies), so that values no
    /// longer in use are not held: call it when a complete list is read again.
    pub fn forget(&mut self) {
        self.shared = Shared::default();
    }

    /// Reads one object. `Err` holds why it cannot be used (at least one error, each naming
    /// the object and, where it can, the field); `Ok` may come with warnings.
    pub fn read(
        &mut self,
        value: &serde_json::Value,
    ) -> Result<(Resource, Vec<Diagnostic>), Vec<Diagnostic>> {
        let key_of = || {
            let get = |f: &str| value.pointer(f).and_then(|v| v.as_str()).unwrap_or("");
            let ns = get("/metadata/namespace");
            let (kind, name) = (get("/kind"), get("/metadata/name"));
            if ns.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}/{ns}/{name}")
            }
        };
        let top_error = |field: &str, message: String| {
            let mut d = Diagnostic::error(message).at(field);
            d.resource = Some(key_of());
            d
        };
        let mut object = match typed_object(value, &ValueDocument(value), &top_error) {
            Ok(o) => o,
            Err(mut d) => {
                d.resource = Some(key_of());
                return Err(vec![d]);
            }
        };
        self.shared.object(&mut object);
        let resource = finish(object, Origin::default(), "default");
        let problems: Vec<Diagnostic> = validate(&resource.object)
            .into_iter()
            .map(|p| place(p, &resource))
            .collect();
        if problems.iter().any(Diagnostic::is_error) {
            return Err(problems);
        }
        Ok((resource, problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        load_str(yaml, None, "bar")
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    /// Found by the yaml_fast fuzz target: YAML's comments are not a resource to budget. A
    /// long run of comment lines before a collection entry (a seed file's commentary
    /// pasted twice) read well by the fast reader, and the full parser refused the same
    /// file with "too many buffered comments while looking ahead".
    #[test]
    fn a_long_run_of_comments_reads_on_both_paths() {
        let comments = "  # the address httpbin.bar.global resolves to\n".repeat(120);
        for tail in ["", "  location: &where MESH_INTERNAL\n"] {
            // The anchor sends the document to the full parser.
            let yaml = format!(
                "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  \
                 name: httpbin-bar\nspec:\n  hosts:\n{comments}  - httpbin.bar.global\n  \
                 resolution: DNS\n  ports:\n  - {{name: http1, number: 8000, protocol: http}}\n{tail}"
            );
            let loaded = load_str(&yaml, None, "bar");
            let problems: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
            assert!(
                problems.iter().all(|p| !p.contains("comments")),
                "{problems:?}"
            );
            assert_eq!(loaded.resources.len(), 1, "{problems:?}");
        }
    }

    #[test]
    fn authorization_policies_are_read_strictly_and_what_isthmus_cannot_enforce_is_refused() {
        let ok = load_str(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  action: DENY\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]\n    to: [{operation: {methods: [GET], paths: [/ip*]}}]\n    when: [{key: 'request.headers[x-a]', values: [b]}]\n",
            None,
            "bar",
        );
        assert!(ok.diagnostics.is_empty(), "{:?}", ok.diagnostics);
        assert_eq!(ok.resources.len(), 1);

        // A typo is an error with its line, not a field silently dropped.
        let typo = problems("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nspec:\n  action: DENY\n  rules:\n  - form: [{source: {principals: [x]}}]\n");
        assert!(
            typo.iter()
                .any(|p| p.contains("unknown field `form`") && p.starts_with("line 7:")),
            "{typo:?}"
        );
        let refused = [
            (
                "spec: {action: CUSTOM, provider: {name: opa}, rules: [{}]}",
                "not supported by Isthmus",
            ),
            (
                "spec: {targetRefs: [{kind: Gateway, name: gw}]}",
                "not supported by Isthmus",
            ),
            (
                "spec: {rules: [{from: [{source: {requestPrincipals: ['a*b']}}]}]}",
                "a value is exact, `*`, `prefix*` or `*suffix`",
            ),
            (
                // Found by the yaml_load fuzz target: a multi-byte character next to a `*`
                // used to panic the validation (byte slicing).
                "spec: {rules: [{to: [{operation: {paths: ['é*é*']}}]}]}",
                "a value is exact",
            ),
            (
                "spec: {rules: [{from: [{source: {requestPrincipals: [alice]}}]}]}",
                "`alice` is not ISSUER/SUBJECT",
            ),
            (
                "spec: {rules: [{when: [{key: 'request.auth.claims[]', values: [x]}]}]}",
                "a claim key is `request.auth.claims[NAME]`",
            ),
            (
                "spec: {rules: [{when: [{key: 'request.auth.colour', values: [x]}]}]}",
                "unknown condition key",
            ),
            (
                "spec: {rules: [{when: [{key: source.colour, values: [x]}]}]}",
                "unknown condition key",
            ),
            (
                "spec: {rules: [{from: [{source: {ipBlocks: [10.0.0.300]}}]}]}",
                "not an IP address",
            ),
            (
                "spec: {rules: [{to: [{operation: {paths: ['/a*b']}}]}]}",
                "`prefix*` or `*suffix`",
            ),
            (
                "spec: {rules: [{to: [{operation: {ports: ['http']}}]}]}",
                "not a port number",
            ),
            ("spec: {rules: [{from: [{}]}]}", "`source` is required"),
        ];
        for (spec, want) in refused {
            let p = problems(&format!(
                "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {{name: a}}\n{spec}\n"
            ));
            assert!(p.iter().any(|d| d.contains(want)), "{spec}: {p:?}");
        }
    }

    #[test]
    fn destination_rules_are_read_strictly_and_unenforced_fields_refused() {
        let dr = |spec: &str| {
            problems(&format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec:\n  host: httpbin.bar.global\n{spec}"
            ))
        };
        let typo = dr("  trafficPolcy: {tls: {mode: ISTIO_MUTUAL}}\n");
        assert!(
            typo.iter()
                .any(|p| p.contains("unknown field `trafficPolcy`") && p.starts_with("line 6:")),
            "{typo:?}"
        );
        for (spec, want) in [
            ("  trafficPolicy: {loadBalancer: {warmupDurationSecs: 10s}}\n", "trafficPolicy.loadBalancer.warmupDurationSecs: warmupDurationSecs is not supported by Isthmus yet"),
            ("  subsets: [{name: v1, labels: {v: '1'}, trafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}}]\n", "subsets[0].trafficPolicy.outlierDetection.maxEjectionPercent"),
            ("  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n", "unknown SimpleLb `FASTEST`"),
            ("  trafficPolicy: {connectionPool: {tcp: {maxConections: 1}}}\n", "unknown field `maxConections`"),
            ("  trafficPolicy: {portLevelSettings: [{port: {number: 80}}]}\n", "portLevelSettings is not supported by Isthmus yet"),
            ("  trafficPolicy: {tls: {mode: SIMPLE, credentialName: cert}}\n", "credentialName (certificates from a Kubernetes Secret) is not supported by Isthmus"),
            ("  trafficPolicy: {tls: {mode: MUTUAL, caCertificates: /etc/ca.pem}}\n", "MUTUAL needs clientCertificate"),
            ("  trafficPolicy: {tls: {mode: SIMPLE, privateKey: /k.pem}}\n", "privateKey is for MUTUAL"),
            ("  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: ca.pem}}\n", "absolute path"),
            ("  trafficPolicy: {tls: {mode: SIMPLE, sny: x}}\n", "unknown field `sny`"),
            ("  workloadSelector: {matchLabels: {app: a}}\n", "workloadSelector is not supported by Isthmus"),
        ] {
            let p = dr(spec);
            assert!(p.iter().any(|d| d.contains(want)), "{spec}: {p:?}");
        }
        assert!(dr("  trafficPolicy: {tls: {mode: SIMPLE, sni: api.example.com, caCertificates: /etc/ca.pem, subjectAltNames: [api.example.com]}}\n").is_empty());
        assert!(dr("  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}, connectionPool: {http: {http2MaxRequests: 10}}, outlierDetection: {consecutive5xxErrors: 3}}\n").is_empty());
    }

    /// Each spec must be refused (not loaded) with a diagnostic containing `want`.
    fn refused(kind: &str, spec: &str, want: &str) {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n{spec}"
        );
        let loaded = load_str(&yaml, None, "bar");
        let p: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            p.iter().any(|d| d.contains(want)),
            "{kind} {spec}: want {want:?} in {p:?}"
        );
        assert!(loaded.resources.is_empty(), "{kind} {spec}: applied anyway");
    }

    #[test]
    fn virtual_services_are_read_strictly_and_unenforced_fields_refused() {
        let vs = |route: &str| format!("  hosts: [a]\n  http:\n  - {route}\n");
        for (spec, want) in [
            (vs("{retires: {attempts: 1}, route: [{destination: {host: a}}]}"), "unknown field `retires`"),
            (vs("{mach: [{uri: {exact: /}}], route: [{destination: {host: a}}]}"), "unknown field `mach`"),
            (vs("{match: [{uri: {exakt: /}}], route: [{destination: {host: a}}]}"), "unknown field `exakt`"),
            (vs("{route: [{destination: {host: a, subst: v1}}]}"), "unknown field `subst`"),
            (vs("{corsPolicy: {allowOrigins: [{exakt: x}]}, route: [{destination: {host: a}}]}"), "unknown field `exakt`"),
            (vs("{corsPolicy: {allowOrigins: [{}]}, route: [{destination: {host: a}}]}"), "spec.http[0].corsPolicy.allowOrigins[0]: give one of exact, prefix or regex"),
            (vs("{corsPolicy: {allowMethods: ['GET POST'], maxAge: 1d}, route: [{destination: {host: a}}]}"), "spec.http[0].corsPolicy.allowMethods[0]: `GET POST` is not an HTTP token"),
            (vs("{corsPolicy: {maxAge: 1d}, route: [{destination: {host: a}}]}"), "spec.http[0].corsPolicy.maxAge: `1d` is not a duration"),
            (vs("{corsPolicy: {unmatchedPreflights: DROP}, route: [{destination: {host: a}}]}"), "`DROP` is not an unmatchedPreflights value"),
            (vs("{directResponse: {status: 99}}"), "spec.http[0].directResponse.status: 99 is not an HTTP status"),
            (vs("{directResponse: {status: 503, body: {string: a, bytes: YQ==}}}"), "`string` or `bytes`, not both"),
            (vs("{directResponse: {status: 503, body: {bytes: '*'}}}"), "`bytes` is not base64"),
            (vs("{directResponse: {status: 503}, route: [{destination: {host: a}}]}"), "one of `route`, `redirect`, `directResponse` and `delegate`"),
            (vs("{delegate: {name: b}, route: [{destination: {host: a}}]}"), "one of `route`, `redirect`, `directResponse` and `delegate`, not several"),
            (vs("{delegate: {nam: b}}"), "unknown field `nam`"),
            ("  gateways: [g]\n  http: [{route: [{destination: {host: a}}]}]\n".into(), "a delegate VirtualService (one without hosts) takes its gateways from the root"),
            ("  http: [{route: [{destination: {host: a}}]}]\n  tcp: [{route: [{destination: {host: a}}]}]\n".into(), "a delegate VirtualService (one without hosts) has HTTP routes only"),
            (vs("{mirrors: [{destination: {host: b}, percentage: {value: 101}}], route: [{destination: {host: a}}]}"), "spec.http[0].mirrors[0].percentage.value: 101 is not a percentage"),
            (vs("{mirror: {host: c}, mirrors: [{destination: {host: b}}], route: [{destination: {host: a}}]}"), "`mirror` or `mirrors`, not both"),
            (vs("{mirrorPercentage: {value: 5}, mirrors: [{destination: {host: b}}], route: [{destination: {host: a}}]}"), "give each of `mirrors` its own `percentage`"),
            (vs("{match: [{sourceLabels: {app: a}}], route: [{destination: {host: a}}]}"), "spec.http[0].match[0].sourceLabels: sourceLabels is not supported"),
            (vs("{match: [{withoutHeaders: {x: {exact: y}}}], route: [{destination: {host: a}}]}"), "withoutHeaders is not supported"),
            (vs("{route: [{destination: {host: a}, headers: {request: {set: {host: y}}}}]}"), "spec.http[0].route[0].headers.request.set: `host` cannot be changed"),
            (vs("{headers: {response: {remove: [':status']}}, route: [{destination: {host: a}}]}"), "spec.http[0].headers.response.remove: `:status` cannot be changed"),
            (vs("{match: [{uri: {exact: /, prefix: /}}], route: [{destination: {host: a}}]}"), "give only one of exact, prefix or regex"),
            (vs("{match: [{uri: {}}], route: [{destination: {host: a}}]}"), "give one of exact, prefix or regex"),
            (vs("{timeout: 5, route: [{destination: {host: a}}]}"), "`5` is not a duration"),
            (vs("{fault: {abort: {grpcStatus: NOPE}}, route: [{destination: {host: a}}]}"), "grpcStatus \"NOPE\" is not a gRPC status"),
            (vs("{fault: {delay: {percentage: {value: 5}}}, route: [{destination: {host: a}}]}"), "a delay needs fixedDelay"),
            (vs("{redirect: {uri: /x}, route: [{destination: {host: a}}]}"), "one of `route`, `redirect`, `directResponse` and `delegate`, not several"),
            (vs("{match: [{uri: {prefix: /}}]}"), "needs `route` (destinations), `redirect`, `directResponse` or `delegate`"),
            ("  hosts: [a]\n  gateways: [g]\n  tcp: [{route: [{destination: {host: a}}]}]\n".into(), "TCP routes on gateways are not supported by Isthmus"),
            ("  hosts: [a]\n  tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: a}}]}]\n".into(), "spec.tcp[0].match[0].destinationSubnets[0]: `10.0.0.0/33` is not an IP address or CIDR"),
            ("  hosts: [a]\n  tcp: [{match: [{sourceSubnet: 10.0.0.0/8}], route: [{destination: {host: a}}]}]\n".into(), "sourceSubnet is deprecated"),
            ("  hosts: [a]\n  tcp: [{match: [{prot: 80}], route: [{destination: {host: a}}]}]\n".into(), "unknown field `prot`"),
            ("  hosts: [a]\n  tcp: [{route: [{destination: {host: a}, weight: 30}, {destination: {host: b}, weight: 30}]}]\n".into(), "route weights add up to 60"),
            ("  hosts: [a]\n  tls: [{match: [{sniHosts: [a]}], route: [{destination: {host: a}}]}]\n".into(), "TLS routes for sidecars"),
            ("  hosts: [a]\n  gateways: [g]\n  tls: [{match: [{sniHosts: [a]}], route: [{destination: {host: a}, weight: 50}, {destination: {host: b}, weight: 50}]}]\n".into(), "weighted TLS routes"),
            ("  hosts: [a]\n  gateways: [g]\n  tls: [{match: [{sniHosts: [a]}], route: [{destination: {host: a}, headers: {request: {set: {x: y}}}}]}]\n".into(), "headers are changed on HTTP routes only"),
            ("  hosts: [a]\n  exportTo: [., '~']\n  http: [{route: [{destination: {host: a}}]}]\n".into(), "spec.exportTo: `~` (exported to no namespace) cannot be combined"),
            ("  hosts: [a]\n  exportTo: [Foo_Bar]\n  http: [{route: [{destination: {host: a}}]}]\n".into(), "spec.exportTo[0]: `Foo_Bar` is not `*`, `.`, `~` or a namespace name"),
        ] {
            refused("VirtualService", &spec, want);
        }
        let ok = load_str(
            &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: x}}\nspec:\n{}", vs("{corsPolicy: {allowOrigins: [{prefix: 'https://'}], allowMethods: [GET], maxAge: 24h, unmatchedPreflights: IGNORE}, mirrors: [{destination: {host: m}, percentage: {value: 5}}], match: [{scheme: {exact: https}, headers: {x-a: {}}, queryParams: {q: {regex: 'a.*'}}}], fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}, retries: {attempts: 3, retryOn: '5xx,503', backoff: 25ms}, rewrite: {uriRegexRewrite: {match: '^/a/(.*)', rewrite: '/\\\\1'}}, route: [{destination: {host: a, port: {number: 80}}, weight: 60, headers: {request: {set: {x-d: a}}}}, {destination: {host: b, port: {number: 80}}, weight: 40}]}")),
            None,
            "bar",
        );
        assert!(loaded_ok(&ok), "{:?}", ok.diagnostics);
    }

    fn loaded_ok(l: &Loaded) -> bool {
        l.diagnostics.is_empty() && l.resources.len() == 1
    }

    #[test]
    fn a_list_is_its_items_each_at_its_own_line() {
        // What `kubectl get virtualservices,destinationrules -o yaml` prints.
        let text = "apiVersion: v1\nitems:\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata:\n    name: a\n    namespace: bar\n  spec:\n    host: a.bar.svc.cluster.local\n- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata:\n    name: b\n    namespace: bar\n  spec:\n    host: b.bar.svc.cluster.local\n    trafficPolicy: {loadBalancer: {simple: ROUND_ROBN}}\nkind: List\nmetadata:\n  resourceVersion: \"\"\n";
        let loaded = load_str(text, Some(Path::new("list.yaml")), "default");
        let names: Vec<&str> = loaded
            .resources
            .iter()
            .map(|r| &*r.object.metadata().name)
            .collect();
        assert_eq!(names, ["a"], "{:?}", loaded.diagnostics);
        assert_eq!(loaded.resources[0].origin.line(), 3);
        // The second item's error names its own line in the file.
        let d = loaded.diagnostics.first().expect("b's error");
        assert!(d.to_string().contains("ROUND_ROBN"), "{d}");
        assert!(
            d.line.is_some_and(|l| (10..=17).contains(&l)),
            "line {:?}: {d}",
            d.line
        );
        // Indented items and an empty list.
        let indented = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: x}\n";
        assert_eq!(load_str(indented, None, "default").resources.len(), 1);
        assert!(
            load_str("apiVersion: v1\nkind: List\nitems: []\n", None, "default")
                .resources
                .is_empty()
        );
    }

    #[test]
    fn gateways_sidecars_and_service_entries_are_read_strictly() {
        let server = |rest: &str| {
            format!("  selector: {{istio: ingressgateway}}\n  servers:\n  - {{port: {{number: 443, name: https, protocol: HTTPS}}, hosts: ['*'], {rest}}}\n")
        };
        for (spec, want) in [
            (server("tls: {mode: SIMPLE, credentialName: my-cert, privateKey: /k}"), "spec.servers[0].tls.privateKey: privateKey and credentialName are exclusive"),
            (server("tls: {mode: ISTIO_MUTUAL, credentialName: my-cert}"), "spec.servers[0].tls.credentialName: credentialName is for tls.mode SIMPLE or MUTUAL"),
            (server("tls: {mode: SIMPLE, credentialNames: [a, b]}"), "tls.credentialNames is not supported by Isthmus yet"),
            (server("tls: {mode: SIMPLE}"), "spec.servers[0].tls.serverCertificate: tls.mode SIMPLE needs serverCertificate (the path of a PEM file the gateway can read) or credentialName"),
            (server("tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, minProtocolVersion: TLSV1_3}"), "tls.minProtocolVersion is not supported"),
            (server("tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}, bind: 127.0.0.1"), "spec.servers[0].bind: bind is not supported"),
            (server("tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k, sni: x}"), "unknown field `sni`"),
            (server("tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}, hostz: [a]"), "unknown field `hostz`"),
            ("  servers:\n  - {port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}\n".into(), "a TCP server is not supported by Isthmus yet"),
            ("  servers:\n  - {port: {number: 9443, name: tls, protocol: TLS}, hosts: ['*'], tls: {mode: SIMPLE, serverCertificate: /c, privateKey: /k}}\n".into(), "a TLS server with tls.mode SIMPLE is not supported"),
        ] {
            refused("Gateway", &spec, want);
        }
        for (spec, want) in [
            ("  ingress: [{port: {number: 80, protocol: HTTP, name: h}, defaultEndpoint: 10.0.0.1:8080}]\n", "spec.ingress[0].defaultEndpoint: `10.0.0.1:8080` is not 127.0.0.1:PORT"),
            ("  ingress: [{port: {number: 80}, defaultEndpoint: 'unix:///var/run/app.sock'}]\n", "a Unix socket defaultEndpoint is not supported by Isthmus"),
            ("  ingress: [{port: {number: 80}, tls: {mode: SIMPLE}}]\n", "spec.ingress[0].tls: ingress tls is not supported by Isthmus"),
            ("  ingress: [{port: {number: 80}}, {port: {number: 80}}]\n", "port 80 has two ingress listeners"),
            ("  ingress: [{port: {numbr: 80}}]\n", "unknown field `numbr`"),
            ("  outboundTrafficPolicy: {mode: REGISTRY_ONLY, egressProxy: {host: egress}}\n", "egressProxy is not supported"),
            ("  outboundTrafficPolicy: {mode: REGISTRY}\n", "unknown OutboundTrafficMode `REGISTRY`"),
            ("  egress: [{port: {number: 80, protocol: HTTP, name: h}, hosts: [./*]}]\n", "spec.egress[0].port: egress port is not supported"),
            ("  egress: [{hosts: [foo.com]}]\n", "is not `namespace/dnsName`"),
            ("  egres: [{hosts: [./*]}]\n", "unknown field `egres`"),
        ] {
            refused("Sidecar", spec, want);
        }
        for (spec, want) in [
            ("  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  workloadSelector: {labels: {app: vm}}\n", "spec.resolution: workloadSelector selects endpoints, which resolution NONE does not use"),
            ("  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: vm}, namespace: x}\n", "unknown field `namespace`"),
            ("  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  exportTo: ['*.foo']\n", "`*.foo` is not `*`, `.`, `~` or a namespace name"),
            ("  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoint: [{address: 1.2.3.4}]\n", "unknown field `endpoint`"),
            ("  hosts: [a.com]\n  ports: [{number: 80, name: http, protokol: HTTP}]\n", "unknown field `protokol`"),
        ] {
            refused("ServiceEntry", spec, want);
        }
        refused(
            "WorkloadEntry",
            "  address: 10.1.2.3\n  labels: {app: vm}\n  weigth: 2\n",
            "unknown field `weigth`",
        );
    }

    #[test]
    fn request_authentications_are_read_strictly_and_checked() {
        let ra = |rule: &str| {
            format!("apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: r}}\nspec:\n  selector: {{matchLabels: {{app: a}}}}\n  jwtRules:\n  - {rule}\n")
        };
        let ok = load_str(
            &ra("{issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/keys', audiences: [a], fromHeaders: [{name: x-token, prefix: 'Bearer '}], fromParams: [t], outputClaimToHeaders: [{header: x-sub, claim: sub}], forwardOriginalToken: true, timeout: 2s}"),
            None,
            "bar",
        );
        assert!(loaded_ok(&ok), "{:?}", ok.diagnostics);
        let inline = load_str(
            &ra("{issuer: lab, jwks: '{\"keys\":[{\"kty\":\"EC\"}]}'}"),
            None,
            "bar",
        );
        assert!(loaded_ok(&inline), "{:?}", inline.diagnostics);
        let discover = load_str(&ra("{issuer: 'https://accounts.example'}"), None, "bar");
        assert!(loaded_ok(&discover), "{:?}", discover.diagnostics);
        for (rule, want) in [
            (
                "{issuer: lab}",
                "no jwks or jwksUri, and issuer `lab` is not an http(s) URL",
            ),
            (
                "{issuer: lab, jwks: 'not json'}",
                "jwks must be a JWKS document",
            ),
            (
                "{issuer: lab, jwks: '{\"keys\": []}'}",
                "jwks must be a JWKS document",
            ),
            (
                "{issuer: lab, jwksUri: 'ftp://x/keys'}",
                "jwksUri `ftp://x/keys` is not an http(s) URL",
            ),
            (
                "{jwksUri: 'https://x/keys'}",
                "spec.jwtRules[0].issuer: issuer is required",
            ),
            (
                "{issuer: 'https://x', timeout: soon}",
                "`soon` is not a duration",
            ),
            (
                "{issuer: 'https://x', outputClaimToHeaders: [{header: 'bad header', claim: sub}]}",
                "is not a header name",
            ),
            (
                "{issuer: 'https://x', jwksURI: 'https://x/k'}",
                "unknown field `jwksURI`",
            ),
        ] {
            let l = load_str(&ra(rule), None, "bar");
            let p: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
            assert!(
                p.iter().any(|d| d.contains(want)),
                "{rule}: want {want:?} in {p:?}"
            );
            assert!(l.resources.is_empty(), "{rule}: applied anyway");
        }
        let twice = load_str(
            "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec:\n  targetRef: {kind: Gateway, name: g}\n  jwtRules: [{issuer: 'https://x'}, {issuer: 'https://x'}]\n",
            None,
            "bar",
        );
        let p: Vec<String> = twice.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            p.iter()
                .any(|d| d.contains("issuer `https://x` is given twice")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|d| d.contains("spec.targetRef") && d.contains("not supported by Isthmus")),
            "{p:?}"
        );
    }

    #[test]
    fn typos_in_metadata_and_at_the_top_of_istio_objects_are_errors() {
        let p = problems("apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  lables: {app: a}\nspec: {ports: [{port: 80}]}\n");
        assert!(
            p.iter()
                .any(|d| d.contains("metadata.lables") && d.contains("unknown field `lables`")),
            "{p:?}"
        );
        let p = problems("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\nsepc: {action: DENY}\n");
        assert!(
            p.iter().any(|d| d.contains("unknown field `sepc`")),
            "{p:?}"
        );
        assert!(problems("apiVersion: v1\nkind: Service\nmetadata: {name: a, uid: x, resourceVersion: '1', generation: 2}\nspec: {ports: [{port: 80}]}\n").is_empty());
    }

    #[test]
    fn peer_authentications_are_read_strictly() {
        let pa = |spec: &str| {
            problems(&format!(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p}}\n{spec}\n"
            ))
        };
        assert!(pa("spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}").is_empty());
        for (spec, want) in [
            ("spec: {mtls: {mod: STRICT}}", "unknown field `mod`"),
            ("spec: {mTLS: {mode: STRICT}}", "unknown field `mTLS`"),
            (
                "spec: {portLevelMtls: {8080: {mode: DISABLE}}}",
                "portLevelMtls needs a selector",
            ),
            (
                "spec: {selector: {matchLabels: {app: a}}, portLevelMtls: {http: {mode: DISABLE}}}",
                "not a port number",
            ),
        ] {
            let p = pa(spec);
            assert!(p.iter().any(|d| d.contains(want)), "{spec}: {p:?}");
        }
    }

    #[test]
    fn a_yaml_error_says_error_once_with_its_line() {
        let loaded = load_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: x\n",
            None,
            "default",
        );
        let text = loaded
            .diagnostics
            .first()
            .map(|d| d.to_string())
            .unwrap_or_default();
        assert!(text.starts_with("line 3: error: invalid YAML: "), "{text}");
        assert_eq!(text.matches("error").count(), 1, "{text}");
    }

    #[test]
    fn yaml_scalars_read_into_strings_as_written_though_the_tree_holds_numbers() {
        // The tree parsed first holds 1.0 and 80 as numbers, which a string field refuses;
        // the text is read again and the labels come out as written.
        let l = load_str(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {version: 1.0, port: 80, app: web}\nstatus: {podIP: 10.0.0.1}\n",
            None,
            "default",
        );
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        let labels = &l.resources[0].object.metadata().labels;
        assert_eq!(labels.get("version").map(String::as_str), Some("1.0"));
        assert_eq!(labels.get("port").map(String::as_str), Some("80"));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn loads_seed_000_service_entry_and_fills_namespace() {
        let text = "apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: httpbin-bar
spec:
  hosts:
  # must be of form name.namespace.global
  - httpbin.bar.global
  location: MESH_INTERNAL
  ports:
  - name: http1
    number: 8000
    protocol: http
  resolution: DNS
  addresses:
  - 127.255.0.2
  endpoints:
  - address: 198.18.0.2
    ports:
      http1: 15443 # Do not change this port value
";
        let loaded = load_str(text, None, "foo");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let Object::ServiceEntry(se) = &loaded.resources[0].object else {
            panic!("not a ServiceEntry")
        };
        assert_eq!(&*se.metadata.namespace, "foo");
        assert_eq!(se.spec.endpoints[0].ports["http1"], 15443);
        assert_eq!(
            se.spec.ports[0].protocol,
            Some(crate::enums::Protocol::Http)
        );
    }

    #[test]
    fn bad_document_is_reported_with_line_and_others_still_load() {
        let text = "apiVersion: v1
kind: Namespace
metadata:
  name: foo
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: bad
spec:
  hosts:
  - a.b.global
  resolution: DNZ
";
        let loaded = load_str(text, Some(Path::new("x.yaml")), "default");
        assert_eq!(loaded.resources.len(), 1);
        assert_eq!(loaded.diagnostics.len(), 1);
        let d = &loaded.diagnostics[0];
        assert_eq!(d.line, Some(13), "{d}");
        assert_eq!(d.resource.as_deref(), Some("ServiceEntry/bad"));
        assert!(d.message.contains("DNZ"), "{d}");
    }

    #[test]
    fn semantic_error_points_at_the_field_line() {
        let text = "---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: se
  namespace: foo
spec:
  hosts:
  - a.b.global
  ports:
  - name: http
    number: 0
    protocol: HTTP
";
        let loaded = load_str(text, Some(Path::new("se.yaml")), "default");
        assert!(loaded.resources.is_empty());
        let d = &loaded.diagnostics[0];
        assert_eq!(d.to_string(), "se.yaml:12: error: ServiceEntry/foo/se: spec.ports[0].number: port must be between 1 and 65535, got 0");
    }

    #[test]
    fn unsupported_version_and_unknown_kind_are_errors() {
        let loaded = load_str(
            "apiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata:\n  name: g\n",
            None,
            "d",
        );
        assert!(loaded.diagnostics[0].message.contains("not served"));
        let loaded = load_str(
            "apiVersion: networking.istio.io/v1\nkind: Sidecarz\nmetadata:\n  name: g\n",
            None,
            "d",
        );
        assert!(loaded.diagnostics[0]
            .message
            .contains("unknown kind Sidecarz"));
    }

    #[test]
    fn objects_labelled_alike_share_one_label_map_and_the_file_path() {
        let pod = |name: &str, app: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}}}}}\nstatus: {{podIP: 10.0.0.1}}\n")
        };
        let text = [pod("a-0", "a"), pod("a-1", "a"), pod("b-0", "b")].join("---\n");
        let loaded = load_str(&text, Some(Path::new("/r/ns/a.yaml")), "ns");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let labels: Vec<_> = loaded
            .resources
            .iter()
            .map(|r| r.object.metadata().labels.clone())
            .collect();
        assert_eq!(labels[0].get("app").map(String::as_str), Some("a"));
        assert!(Arc::ptr_eq(&labels[0], &labels[1]));
        assert!(!Arc::ptr_eq(&labels[0], &labels[2]));
        assert_eq!(labels[2].get("app").map(String::as_str), Some("b"));
        let files: Vec<_> = loaded
            .resources
            .iter()
            .map(|r| r.origin.file().cloned().expect("file"))
            .collect();
        assert_eq!(&*files[0], Path::new("/r/ns/a.yaml"));
        assert!(Arc::ptr_eq(&files[0], &files[2]));
    }

    #[test]
    fn a_files_objects_share_namespace_labels_selector_and_pod_strings() {
        let pod = |name: &str, sa: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: a}}}}\nspec: {{serviceAccountName: {sa}, nodeName: n1}}\nstatus: {{podIP: 10.0.0.1, phase: Running}}\n")
        };
        let service =
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {selector: {app: a}}\n";
        let text = [
            service.to_string(),
            pod("a-0", "x"),
            pod("a-1", "x"),
            pod("a-2", "y"),
        ]
        .join("---\n");
        let loaded = load_str(&text, None, "ns");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let Object::Service(s) = &loaded.resources[0].object else {
            panic!("a Service first");
        };
        let pods: Vec<&crate::kube::Pod> = loaded.resources[1..]
            .iter()
            .filter_map(|r| match &r.object {
                Object::Pod(p) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(pods.len(), 3);
        assert!(Arc::ptr_eq(&s.spec.selector, &pods[0].metadata.labels));
        // The namespace the file leaves to the loader is one string for all its objects.
        assert_eq!(&*s.metadata.namespace, "ns");
        assert!(pods
            .iter()
            .all(|p| p.metadata.namespace.ptr_eq(&s.metadata.namespace)));
        let sa = |i: usize| &pods[i].spec.service_account_name;
        assert_eq!((&**sa(0), &**sa(2)), ("x", "y"));
        assert!(Arc::ptr_eq(sa(0), sa(1)) && !Arc::ptr_eq(sa(0), sa(2)));
        // The pods alike share one spec.
        assert!(Arc::ptr_eq(&pods[0].spec, &pods[1].spec));
        assert!(!Arc::ptr_eq(&pods[0].spec, &pods[2].spec));
        assert!(Arc::ptr_eq(
            &pods[0].spec.node_name,
            &pods[2].spec.node_name
        ));
        let status = &pods[0].status;
        assert_eq!(status.phase, Some(crate::kube::PodPhase::Running));
        assert_eq!(
            status.pod_ip(),
            Some(std::net::Ipv4Addr::new(10, 0, 0, 1).into())
        );
    }

    #[test]
    fn services_share_their_type_and_their_ports_names_and_protocols() {
        let service = |name: &str, port: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: ClusterIP\n  ports:\n  - {{name: {port}, port: 80, protocol: TCP, appProtocol: http}}\n")
        };
        let text = [
            service("a", "http"),
            service("b", "http"),
            service("c", "web"),
        ]
        .join("---\n");
        let loaded = load_str(&text, None, "ns");
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let services: Vec<&crate::kube::Service> = loaded
            .resources
            .iter()
            .filter_map(|r| match &r.object {
                Object::Service(s) => Some(&**s),
                _ => None,
            })
            .collect();
        let port = |i: usize| &services[i].spec.ports[0];
        assert_eq!(&*port(0).name, "http");
        assert!(Arc::ptr_eq(&port(0).name, &port(1).name));
        assert!(!Arc::ptr_eq(&port(0).name, &port(2).name));
        for i in 1..3 {
            let (a, b) = (port(0), port(i));
            let shared = |x: &Option<Arc<str>>, y: &Option<Arc<str>>| match (x, y) {
                (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                _ => false,
            };
            assert!(shared(&a.protocol, &b.protocol), "protocol of {i}");
            assert!(
                shared(&a.app_protocol, &b.app_protocol),
                "appProtocol of {i}"
            );
            assert!(
                shared(&services[0].spec.type_, &services[i].spec.type_),
                "type of {i}"
            );
        }
        assert_eq!(port(2).app_protocol.as_deref(), Some("http"));
    }

    #[test]
    fn a_pod_ip_that_is_no_address_is_an_error_at_its_line_and_an_empty_one_is_none() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\nstatus:\n  podIP: 10.0.0.300\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: n}\nstatus: {podIP: ''}\n";
        let loaded = load_str(text, Some(Path::new("/r/p.yaml")), "n");
        assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
        let d = loaded.diagnostics[0].to_string();
        assert!(
            d.contains("status.podIP: `10.0.0.300` is not an IP address"),
            "{d}"
        );
        assert!(d.contains("/r/p.yaml:5"), "{d}");
        assert_eq!(loaded.resources.len(), 1);
        let Object::Pod(b) = &loaded.resources[0].object else {
            panic!("pod b");
        };
        assert_eq!(b.status.pod_ip(), None);
    }
}
