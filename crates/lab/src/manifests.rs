//! Reading a user's manifests the way `kubectl apply -f` does: placeholders filled from the
//! topology, every document validated (errors name file, line, resource and field), then
//! split into what the lab runs (Deployments become pods) and what it stores for the
//! control plane (Services, Namespaces, Istio resources).

use crate::api_server::registry_dir;
use crate::demo::DemoApp;
use crate::error::{io, LabError};
use crate::topology::Topology;
use isthmus_api::kube::{Deployment, Service};
use isthmus_api::{Object, Resource};
use std::path::{Path, PathBuf};

/// One document to store as the API server would, verbatim.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    /// Kind.
    pub kind: String,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The document text (placeholders filled).
    pub text: String,
}

/// What a set of manifests holds.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Kubernetes Services (the lab assigns ClusterIPs).
    pub services: Vec<Service>,
    /// Deployments (the lab runs their pods).
    pub deployments: Vec<Deployment>,
    /// Namespaces with their labels (`istio-injection=enabled` turns on sidecars).
    pub namespaces: Vec<isthmus_api::kube::Namespace>,
    /// Everything else the control plane reads (Istio resources, ConfigMaps, ...).
    pub stored: Vec<StoredDoc>,
}

/// Replaces `${NAME}` (and the `<NAME>` form seed 002 uses, for names the lab defines)
/// from `vars`; an unknown `${NAME}` is an error naming file and line.
pub fn fill(text: &str, file: &Path, vars: &[(String, String)]) -> Result<String, LabError> {
    let mut text = text.to_string();
    for (k, v) in vars {
        text = text.replace(&format!("<{k}>"), v);
    }
    let text = text.as_str();
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 2..start + len];
            // Comments may mention placeholders; only values must be known.
            let in_comment = rest[..start].contains('#');
            match vars.iter().find(|(k, _)| k == name) {
                Some((_, v)) if !in_comment => {
                    out.push_str(&rest[..start]);
                    out.push_str(v);
                }
                None if !in_comment => {
                    return Err(LabError::Invalid(format!(
                        "{}:{}: unknown placeholder ${{{name}}}; this lab defines {}",
                        file.display(),
                        i + 1,
                        vars.iter()
                            .map(|(k, _)| format!("${{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
                _ => out.push_str(&rest[..start + len + 1]),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    Ok(out)
}

/// The YAML files of `path` (a file or a directory tree), each with its default namespace
/// (a first-level subdirectory's name, else `default_ns`).
pub fn files(path: &Path, default_ns: &str) -> Result<Vec<(PathBuf, String)>, LabError> {
    let mut out = Vec::new();
    if path.is_file() {
        out.push((path.to_path_buf(), default_ns.to_string()));
        return Ok(out);
    }
    let mut walk = vec![(path.to_path_buf(), None::<String>)];
    while let Some((dir, ns)) = walk.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                let sub_ns = ns.clone().unwrap_or_else(|| name.to_string());
                walk.push((p.clone(), Some(sub_ns)));
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push((
                    p.clone(),
                    ns.clone().unwrap_or_else(|| default_ns.to_string()),
                ));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads manifests; every problem is reported at once.
pub fn read(
    inputs: &[(PathBuf, String)],
    vars: &[(String, String)],
) -> Result<Manifests, LabError> {
    let mut m = Manifests::default();
    let mut problems = Vec::new();
    for (file, ns) in inputs {
        let text = std::fs::read_to_string(file).map_err(io(file))?;
        let filled = match fill(&text, file, vars) {
            Ok(t) => t,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let loaded = isthmus_api::load_str(&filled, Some(file), ns);
        for d in loaded.diagnostics.iter().filter(|d| d.is_error()) {
            problems.push(d.to_string());
        }
        for r in loaded.resources {
            classify(r, &mut m);
        }
    }
    if !problems.is_empty() {
        return Err(LabError::Invalid(problems.join("\n")));
    }
    Ok(m)
}

/// The topology's placeholders plus `REGISTRY_<CLUSTER>`: where each cluster's registry
/// lives, for the lab's stand-in of a remote kubeconfig (seed 003's `remote_kubecfg`).
///
/// Also `KUBECONFIG_<CLUSTER>`: what a credential Secret's `data` holds for that cluster
/// (base64): on Kubernetes, the reader kubeconfig `isthmus create-remote-secret` made for its
/// API server's public address; in file mode, `registry: DIR`.
pub fn variables(topology: &Topology, state_dir: &Path) -> Vec<(String, String)> {
    use base64::Engine as _;
    let mut v = topology.variables();
    for c in &topology.clusters {
        let up = crate::topology::variable_part(&c.name);
        let registry = registry_dir(state_dir, &c.name).display().to_string();
        let credential =
            std::fs::read_to_string(crate::kubernetes::reader_kubeconfig(state_dir, &c.name))
                .ok()
                .filter(|_| topology.kubernetes)
                .unwrap_or_else(|| format!("registry: {registry}\n"));
        v.push((format!("REGISTRY_{up}"), registry));
        v.push((
            format!("KUBECONFIG_{up}"),
            base64::engine::general_purpose::STANDARD.encode(credential),
        ));
    }
    v
}

/// Workload API versions that Kubernetes has removed (1.16) but that the seeds' sample
/// Deployments use.
const REMOVED_DEPLOYMENT_APIS: [&str; 3] = ["extensions/v1beta1", "apps/v1beta1", "apps/v1beta2"];

/// The API version of Istio's first authentication policies (MeshPolicy, Policy), which
/// Istio 1.6 stopped serving and whose CRDs its charts no longer install.
const REMOVED_AUTHN_API: &str = "authentication.istio.io/v1alpha1";

/// Istio's root namespace, where a mesh-wide PeerAuthentication lives.
const ROOT_NAMESPACE: &str = "istio-system";

/// For a real API server: each Deployment of a removed API version in `text` rewritten to
/// `apps/v1` as `kubectl convert` does (the selector those versions defaulted from the
/// template's labels made explicit), and each `authentication.istio.io/v1alpha1` MeshPolicy
/// or Policy (seed 002's "Enable mTLS globally") rewritten to the PeerAuthentication Istio's
/// migration gives, every other document left as it is. Returns the text and a line per
/// converted object.
pub fn upgrade_removed_apis(text: &str, file: &Path) -> Result<(String, Vec<String>), LabError> {
    let docs = documents(text);
    let mut notes = Vec::new();
    let mut out = Vec::new();
    for doc in docs {
        if doc.lines().any(|l| {
            l.strip_prefix("apiVersion:")
                .is_some_and(|v| v.trim() == REMOVED_AUTHN_API)
        }) {
            match peer_authentication_of(&doc, file)? {
                Some((converted, note)) => {
                    notes.push(note);
                    out.push(converted);
                }
                // Nothing Istio's migration could carry over: sent as it is, for the API
                // server to refuse with its own message.
                None => out.push(doc),
            }
            continue;
        }
        let old = doc.lines().any(|l| l.trim() == "kind: Deployment")
            && doc.lines().any(|l| {
                l.strip_prefix("apiVersion:")
                    .is_some_and(|v| REMOVED_DEPLOYMENT_APIS.contains(&v.trim()))
            });
        if !old {
            out.push(doc);
            continue;
        }
        let mut v: serde_json::Value = isthmus_api::yaml::from_str(&doc)
            .map_err(|e| LabError::Invalid(format!("{}: {e}", file.display())))?;
        if !v.get("spec").is_some_and(|s| s.is_object()) {
            // Not a Deployment the API server would take either: sent as it is, for it to say.
            out.push(doc);
            continue;
        }
        let from = v["apiVersion"].as_str().unwrap_or_default().to_string();
        v["apiVersion"] = "apps/v1".into();
        if v["spec"]["selector"].is_null() {
            let labels = v["spec"]["template"]["metadata"]["labels"].clone();
            v["spec"]["selector"] = serde_json::json!({ "matchLabels": labels });
        }
        notes.push(format!(
            "Deployment {} in {}: {from} was removed in Kubernetes 1.16; applied as apps/v1 (what `kubectl convert` gives)",
            v["metadata"]["name"].as_str().unwrap_or_default(),
            file.display()
        ));
        out.push(format!("{v}\n"));
    }
    Ok((out.join("---\n"), notes))
}

/// The PeerAuthentication for a v1alpha1 MeshPolicy (mesh-wide: `istio-system/default`) or
/// Policy without targets (its namespace), with the mode it sets, and a line saying so;
/// `None` for a document that is neither, or a Policy whose targets name services (a
/// PeerAuthentication selects workloads by label, which a service name does not give).
fn peer_authentication_of(doc: &str, file: &Path) -> Result<Option<(String, String)>, LabError> {
    let v: serde_json::Value = isthmus_api::yaml::from_str(doc)
        .map_err(|e| LabError::Invalid(format!("{}: {e}", file.display())))?;
    let kind = v["kind"].as_str().unwrap_or_default();
    if kind != "MeshPolicy" && kind != "Policy" {
        return Ok(None);
    }
    let spec: isthmus_api::security::AuthnPolicySpec =
        match serde_json::from_value(v["spec"].clone()) {
            Ok(spec) => spec,
            Err(_) => return Ok(None),
        };
    if !spec.targets.is_empty() {
        return Ok(None);
    }
    let name = v["metadata"]["name"].as_str().unwrap_or("default");
    let mode = spec.mode();
    let (name, namespace) = if kind == "MeshPolicy" {
        ("default", Some(ROOT_NAMESPACE))
    } else {
        (name, v["metadata"]["namespace"].as_str())
    };
    let mut metadata = serde_json::json!({ "name": name });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    let converted = serde_json::json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": metadata,
        "spec": { "mtls": { "mode": mode.as_str() } },
    });
    let at = namespace.map_or(name.to_string(), |ns| format!("{ns}/{name}"));
    let note = format!(
        "{kind} {} in {}: {REMOVED_AUTHN_API} is not served since Istio 1.6; applied as PeerAuthentication {at}, mode {} (what Istio's migration gives)",
        v["metadata"]["name"].as_str().unwrap_or_default(),
        file.display(),
        mode.as_str()
    );
    Ok(Some((format!("{converted}\n"), note)))
}

/// The documents of a YAML stream (split at `---` lines), comments and all.
pub fn documents(text: &str) -> Vec<String> {
    isthmus_kube::install::documents(text)
}

/// A YAML stream in runs of consecutive documents: `true` for those that name their own
/// namespace (or that cannot be read, for the API server to judge), `false` for those that
/// leave it to the default.
pub fn split_by_namespace(text: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    for doc in documents(text) {
        let own = isthmus_api::yaml::from_str::<serde_json::Value>(&doc)
            .map(|v| {
                // Any value (`y` reads as a boolean in YAML 1.1): the API server judges it.
                v.pointer("/metadata/namespace")
                    .is_some_and(|n| !n.is_null())
            })
            .unwrap_or(true);
        match out.last_mut() {
            Some((o, t)) if *o == own => {
                t.push_str("---\n");
                t.push_str(&doc);
            }
            _ => out.push((own, doc)),
        }
    }
    out
}

/// Checks that every Deployment's containers run an image the lab has a demo app for;
/// every unknown image is reported at once.
pub fn check_images(m: &Manifests) -> Result<(), LabError> {
    let mut problems = Vec::new();
    for d in &m.deployments {
        for c in &d.spec.template.spec.containers {
            if let Err(e) = DemoApp::for_image(&c.image) {
                problems.push(format!(
                    "Deployment {}/{}: {e}",
                    d.metadata.namespace, d.metadata.name
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Invalid(problems.join("\n")))
    }
}

fn classify(r: Resource, m: &mut Manifests) {
    match r.object {
        Object::Service(s) => m.services.push(*s),
        Object::Deployment(d) => m.deployments.push(*d),
        Object::Namespace(n) => m.namespaces.push(*n),
        Object::Pod(_) | Object::Endpoints(_) | Object::EndpointSlice(_) => {
            // The lab owns pods and endpoints: they come from Deployments.
        }
        Object::Other(_) => {
            // ServiceAccounts, RBAC and the like: nothing to run or to tell the mesh.
        }
        ref other => {
            let meta = other.metadata();
            m.stored.push(StoredDoc {
                kind: other.kind().to_string(),
                namespace: meta.namespace.to_string(),
                name: meta.name.to_string(),
                text: r.origin.text().map(|t| t.to_string()).unwrap_or_default(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_deployment_versions_become_apps_v1_and_nothing_else_changes() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: sleep}\n---\napiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: sleep\nspec:\n  template:\n    metadata:\n      labels: {app: sleep}\n    spec:\n      containers: [{name: sleep, image: curl}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kept}\nspec: {selector: {matchLabels: {app: kept}}}\n";
        let (out, notes) = upgrade_removed_apis(text, Path::new("s.yaml")).expect("converts");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("Deployment sleep in s.yaml: extensions/v1beta1"),
            "{}",
            notes[0]
        );
        let docs: Vec<&str> = out.split("---\n").collect();
        assert_eq!(
            docs[0],
            "apiVersion: v1\nkind: Service\nmetadata: {name: sleep}\n"
        );
        let d: serde_json::Value = serde_json::from_str(docs[1]).expect("json");
        assert_eq!(d["apiVersion"], "apps/v1");
        assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "sleep");
        assert_eq!(docs[2], "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kept}\nspec: {selector: {matchLabels: {app: kept}}}\n");
    }

    #[test]
    fn documents_are_grouped_by_whether_they_name_their_namespace() {
        let text = "# a comment only\n---\nkind: A\nmetadata: {name: a}\n---\nkind: B\nmetadata: {name: b, namespace: x}\n---\nkind: C\nmetadata: {name: c, namespace: y}\n---\nkind: D\nmetadata: {name: d}\n";
        let got = split_by_namespace(text);
        let own: Vec<bool> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(own, [false, true, false]);
        assert_eq!(got[1].1, "kind: B\nmetadata: {name: b, namespace: x}\n---\nkind: C\nmetadata: {name: c, namespace: y}\n");
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_named() {
        let vars = vec![("GATEWAY_IP_CLUSTER2".to_string(), "198.18.1.2".to_string())];
        let f = Path::new("se.yaml");
        let got = fill("  - address: ${GATEWAY_IP_CLUSTER2}\n", f, &vars).expect("fill");
        assert_eq!(got, "  - address: 198.18.1.2\n");
        let kept = fill("# use ${ANYTHING} here\n", f, &vars).expect("comment");
        let vars2 = vec![(
            "IPofCluster2IngressGateway".to_string(),
            "198.18.1.2".to_string(),
        )];
        let angle = fill("  - address: <IPofCluster2IngressGateway>\n", f, &vars2).expect("angle");
        assert_eq!(angle, "  - address: 198.18.1.2\n");
        assert_eq!(kept, "# use ${ANYTHING} here\n");
        let err = fill("a: 1\nb: ${NOPE}\n", f, &vars).expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("se.yaml:2")
                && msg.contains("${NOPE}")
                && msg.contains("${GATEWAY_IP_CLUSTER2}"),
            "{msg}"
        );
    }

    #[test]
    fn example_manifests_split_into_workloads_and_config() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gateway-connected/cluster2");
        let m = read(&files(&dir, "default").expect("files"), &[]).expect("read");
        assert!(m.deployments.iter().any(|d| &*d.metadata.name == "httpbin"));
        assert!(m
            .services
            .iter()
            .any(|s| &*s.metadata.name == "httpbin" && &*s.metadata.namespace == "bar"));
        assert!(m.namespaces.iter().any(|n| &*n.metadata.name == "bar"
            && n.metadata.labels.get("istio-injection").map(String::as_str) == Some("enabled")));
    }

    fn deployments(yaml: &str) -> Manifests {
        let mut m = Manifests::default();
        let loaded = isthmus_api::load_str(yaml, None, "default");
        assert!(
            loaded.diagnostics.iter().all(|d| !d.is_error()),
            "{:?}",
            loaded.diagnostics
        );
        for r in loaded.resources {
            classify(r, &mut m);
        }
        m
    }

    #[test]
    fn unknown_images_are_all_named_with_their_deployment() {
        let deployment = |ns: &str, name: &str, image: &str| {
            format!("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  template:\n    spec:\n      containers:\n      - {{name: app, image: {image}}}\n")
        };
        let good = deployments(
            &(deployment("foo", "sleep", "curlimages/curl")
                + &deployment("bar", "httpbin", "docker.io/kennethreitz/httpbin")),
        );
        assert_eq!(good.deployments.len(), 2);
        check_images(&good).expect("known images");
        let bad = deployments(
            &(deployment("foo", "sleep", "curlimages/curl")
                + &deployment("foo", "web", "nginx:1.25")
                + &deployment("bar", "db", "postgres")),
        );
        let msg = check_images(&bad).expect_err("unknown images").to_string();
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 2, "{msg}");
        assert!(
            lines[0].starts_with("Deployment foo/web: ") && lines[0].contains("nginx:1.25"),
            "{msg}"
        );
        assert!(
            lines[1].starts_with("Deployment bar/db: ") && lines[1].contains("postgres"),
            "{msg}"
        );
    }

    #[test]
    fn the_seeds_mesh_policy_becomes_a_peer_authentication_in_the_root_namespace() {
        let seed = "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata:\n  name: default\nspec:\n  peers:\n  - mtls:\n      mode: PERMISSIVE\n---\napiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: default}\nspec: {host: \"*.local\"}\n";
        let (text, notes) = upgrade_removed_apis(seed, Path::new("mtls.yaml")).expect("upgrade");
        let docs = documents(&text);
        assert_eq!(docs.len(), 2, "{text}");
        let pa: serde_json::Value = serde_saphyr::from_str(&docs[0]).expect("json");
        assert_eq!(pa["apiVersion"], "security.istio.io/v1");
        assert_eq!(pa["kind"], "PeerAuthentication");
        assert_eq!(pa["metadata"]["name"], "default");
        assert_eq!(pa["metadata"]["namespace"], "istio-system");
        assert_eq!(pa["spec"]["mtls"]["mode"], "PERMISSIVE");
        assert!(docs[1].contains("kind: DestinationRule"), "{text}");
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("PeerAuthentication istio-system/default, mode PERMISSIVE"),
            "{}",
            notes[0]
        );

        // A bare `mtls` is STRICT; a namespace Policy stays in its namespace; no peers is
        // DISABLE; targets (services, not labels) are left for the API server to refuse.
        let policy = |spec: &str| {
            let doc = format!("apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {{name: p, namespace: foo}}\nspec: {spec}\n");
            let (text, notes) = upgrade_removed_apis(&doc, Path::new("p.yaml")).expect("upgrade");
            let v: serde_json::Value = serde_saphyr::from_str(&text).expect("json");
            (v, notes.len())
        };
        let (strict, n) = policy("{peers: [{mtls: {}}]}");
        assert_eq!(
            (
                strict["spec"]["mtls"]["mode"].as_str(),
                strict["metadata"]["namespace"].as_str(),
                n
            ),
            (Some("STRICT"), Some("foo"), 1)
        );
        let (off, _) = policy("{}");
        assert_eq!(off["spec"]["mtls"]["mode"], "DISABLE");
        let (targeted, n) = policy("{targets: [{name: web}], peers: [{mtls: {}}]}");
        assert_eq!((targeted["kind"].as_str(), n), (Some("Policy"), 0));
    }

    #[test]
    fn variables_add_each_clusters_registry_to_the_topologys() {
        let topology: Topology = serde_saphyr::from_str(
            "name: t\nclusters:\n- {name: cluster1, network: n1, podCIDR: 10.10.0.0/16}\n- {name: east-2, network: n2, podCIDR: 10.10.0.0/16, eastWestGateway: false}\n",
        )
        .expect("topology");
        let vars = variables(&topology, Path::new("/state"));
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REGISTRY_CLUSTER1"), Some("/state/registry/cluster1"));
        assert_eq!(get("REGISTRY_EAST_2"), Some("/state/registry/east-2"));
        assert_eq!(get("GATEWAY_IP_CLUSTER1"), Some("198.18.1.1"));
        assert_eq!(get("GATEWAY_IP_EAST_2"), None, "no gateway, no address");
        // The topology's own come first, as before.
        assert_eq!(vars[..topology.variables().len()], topology.variables()[..]);
        let filled = fill(
            "kubeconfig: ${REGISTRY_EAST_2}\n",
            Path::new("s.yaml"),
            &vars,
        )
        .expect("fill");
        assert_eq!(filled, "kubeconfig: /state/registry/east-2\n");
    }
}
