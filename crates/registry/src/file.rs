//! A cluster's objects read from a directory, keeping the last good version of every
//! resource that a later edit broke.

use crate::resources::Resources;
use isthmus_api::{Diagnostic, KeyRef, Resource, ResourceKey};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The objects of one cluster at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The cluster (registry) name, such as `cluster1`.
    pub cluster: String,
    /// Resources in force, in key order.
    pub resources: Resources,
    /// Problems of the last read, including the ones for which a last good version is kept.
    pub diagnostics: Vec<Diagnostic>,
    /// This version's number: every read or applied change that alters the resources makes
    /// a new one (unique in the process, so versions of different registries never match).
    pub revision: u64,
    /// When this version was patched from the one before by [`FileRegistry::apply`], the
    /// keys it touched; `None` after a full read (compare everything).
    pub last_change: Option<KeyChange>,
}

/// The keys one applied change touched (added, replaced or removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyChange {
    /// The revision the change was applied to.
    pub from_revision: u64,
    /// The keys.
    pub keys: BTreeSet<ResourceKey>,
}

fn next_revision() -> u64 {
    static REVISION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    REVISION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl ClusterConfig {
    /// A configuration of `cluster` holding `resources` (of several with one key, the last),
    /// as tools and tests build one from loaded objects.
    pub fn with_resources(cluster: impl Into<String>, resources: Vec<Resource>) -> Self {
        ClusterConfig {
            cluster: cluster.into(),
            resources: resources.into_iter().map(Arc::new).collect(),
            revision: next_revision(),
            ..Default::default()
        }
    }

    /// The resources of one kind, without walking the others (keys sort by kind first).
    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.keyed_from(kind, None)
    }

    /// The resources of one kind in one namespace, in name order, without walking the others.
    pub fn of_kind_in<'a>(
        &'a self,
        kind: &str,
        namespace: &str,
    ) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.keyed_from(kind, Some(namespace))
    }

    fn keyed_from<'a>(
        &'a self,
        kind: &str,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.resources.of_kind(kind, namespace).iter()
    }
}

/// Whether a resource keeps its document's text once parsed: only the kinds whose problems
/// can be found after parsing (Istio's resources, checked against each other when a
/// snapshot is built) need it to point at a field's line. Kubernetes workload objects, the
/// bulk of a registry, are fully checked while loading and drop it.
fn keeps_text(r: &Resource) -> bool {
    use isthmus_api::Object;
    !matches!(
        r.object,
        Object::Pod(_)
            | Object::Service(_)
            | Object::Endpoints(_)
            | Object::EndpointSlice(_)
            | Object::Namespace(_)
            | Object::Secret(_)
            | Object::ConfigMap(_)
            | Object::Deployment(_)
    )
}

/// One file as last read.
#[derive(Debug)]
struct CachedFile {
    modified: Option<std::time::SystemTime>,
    len: u64,
    resources: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

impl CachedFile {
    /// Parses `path` (objects without a namespace get `ns`), stamped with its size and time.
    fn read(
        path: &Arc<PathBuf>,
        ns: &str,
        modified: Option<std::time::SystemTime>,
        len: u64,
    ) -> Self {
        let loaded = isthmus_api::load_shared_file(path, ns);
        CachedFile {
            modified,
            len,
            // Into a vector of its own size: collecting in place would keep the parsed
            // objects' allocation (hundreds of bytes per slot) for one pointer each.
            resources: {
                let mut v = Vec::with_capacity(loaded.resources.len());
                v.extend(loaded.resources.into_iter().map(|mut r| {
                    if !keeps_text(&r) {
                        r.origin.text = None;
                    }
                    Arc::new(r)
                }));
                v
            },
            diagnostics: loaded.diagnostics,
        }
    }

    /// Whether the file is still what was read: same modification time and length.
    fn is_current(&self, modified: Option<std::time::SystemTime>, len: u64) -> bool {
        self.modified.is_some() && self.modified == modified && self.len == len
    }
}

/// A registry backed by a directory of YAML files.
#[derive(Debug)]
pub struct FileRegistry {
    cluster: String,
    dir: PathBuf,
    current: Arc<ClusterConfig>,
    /// What each file held when last read, by (modification time, length): an unchanged
    /// file is not parsed again, so one edit in a large registry costs one file. The key is
    /// the path the file's objects' origins share.
    files: std::collections::HashMap<Arc<PathBuf>, CachedFile>,
}

impl FileRegistry {
    /// A registry for `cluster` reading `dir`; call [`FileRegistry::reload`] to read it.
    pub fn new(cluster: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        let cluster = cluster.into();
        FileRegistry {
            current: Arc::new(ClusterConfig {
                cluster: cluster.clone(),
                ..Default::default()
            }),
            cluster,
            dir: dir.into(),
            files: std::collections::HashMap::new(),
        }
    }

    /// Reads the files that changed since the last call; the others come from the cache.
    fn load(&mut self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        let (mut resources, mut diagnostics) = (Vec::new(), Vec::new());
        let files = match isthmus_api::yaml_files(&self.dir) {
            Ok(f) => f,
            Err(d) => return (resources, vec![d]),
        };
        let mut seen = std::collections::HashSet::new();
        for (file, ns) in files {
            let meta = std::fs::metadata(&file).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            if !self
                .files
                .get(&file)
                .is_some_and(|c| c.is_current(modified, len))
            {
                let file = Arc::new(file.clone());
                let read = CachedFile::read(&file, &ns, modified, len);
                self.files.insert(file, read);
            }
            if let Some(c) = self.files.get(&file) {
                resources.extend(c.resources.iter().cloned());
                diagnostics.extend(c.diagnostics.iter().cloned());
            }
            seen.insert(file);
        }
        self.files.retain(|f, _| seen.contains(&**f));
        (resources, diagnostics)
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force, shared (snapshot builds hold it without copying).
    pub fn current(&self) -> &Arc<ClusterConfig> {
        &self.current
    }

    /// Reads the directory again. A resource that is now invalid keeps its previous good
    /// version (and its error is reported); a file that no longer parses at all keeps every
    /// resource it had. Returns true when the resources in force changed.
    pub fn reload(&mut self) -> bool {
        let (mut loaded, mut loaded_diagnostics) = self.load();
        let mut duplicates = Vec::new();
        // In key order (a stable sort: the first read of a key stays first of its run).
        loaded.sort_by(|a, b| KeyRef::of(a).cmp(&KeyRef::of(b)));
        let mut unique: Vec<Arc<Resource>> = Vec::with_capacity(loaded.len());
        for r in loaded {
            if let Some(prev) = unique.last().filter(|p| KeyRef::of(p) == KeyRef::of(&r)) {
                let key = KeyRef::of(&r);
                let mut d = Diagnostic::error(format!(
                    "{key} is defined twice; the one at {}:{} wins",
                    display_file(prev.origin.file.as_deref().map(PathBuf::as_path)),
                    prev.origin.line
                ));
                d.file = r.origin.file.as_deref().cloned();
                d.line = Some(r.origin.line as usize);
                d.resource = Some(key.to_string());
                duplicates.push(d);
                continue;
            }
            unique.push(r);
        }
        let mut next = Resources::from_sorted(unique);
        // Keep the last good version of what an error now hides.
        let broken_resources: BTreeSet<&str> = loaded_diagnostics
            .iter()
            .filter(|d| d.is_error())
            .filter_map(|d| d.resource.as_deref())
            .collect();
        let broken_files: BTreeSet<&Path> = loaded_diagnostics
            .iter()
            .filter(|d| d.is_error() && d.resource.is_none())
            .filter_map(|d| d.file.as_deref())
            .collect();
        let mut last_good = Vec::new();
        for (key, prev) in &self.current.resources {
            if next.get_ref(key).is_some() {
                continue;
            }
            let by_key = broken_resources.contains(key.to_string().as_str())
                || broken_resources.contains(format!("{}/{}", key.kind, key.name).as_str());
            let by_file = prev
                .origin
                .file
                .as_deref()
                .is_some_and(|f| broken_files.contains(f.as_path()));
            if by_key || by_file {
                last_good.push(prev.clone());
            }
        }
        next.insert_all(last_good);
        let changed = next.len() != self.current.resources.len()
            || next
                .iter()
                .zip(self.current.resources.iter())
                .any(|((ka, a), (kb, b))| ka != kb || (!Arc::ptr_eq(a, b) && a.object != b.object));
        loaded_diagnostics.extend(duplicates);
        self.current = Arc::new(ClusterConfig {
            cluster: self.cluster.clone(),
            resources: next,
            diagnostics: loaded_diagnostics,
            revision: next_revision(),
            last_change: None,
        });
        changed
    }
}

impl FileRegistry {
    /// Applies one burst of file changes. When the changed files are known, only they are
    /// read and the resources in force are patched; when they are not (`rescan`), or a
    /// changed file has problems, or a resource key moves between files, the whole directory
    /// is read as [`FileRegistry::reload`] does (whose last-good rules then apply). Returns
    /// true when the resources in force changed.
    pub fn apply(&mut self, changes: &crate::watch::Changes) -> bool {
        // With problems in force (duplicates, last-good versions) the full rules decide.
        if changes.rescan || !self.current.diagnostics.is_empty() {
            return self.reload();
        }
        // (path, namespace) of the changed files below this registry's directory.
        let mine: Vec<(PathBuf, String)> = changes
            .paths
            .iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(&self.dir).ok()?;
                let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
                if parts.iter().any(|c| c.starts_with('.')) {
                    return None;
                }
                let ns = if parts.len() >= 2 {
                    parts[0]
                } else {
                    "default"
                };
                Some((p.clone(), ns.to_string()))
            })
            .collect();
        if mine.is_empty() {
            return false;
        }
        // Read the changed files; (old, new) resources per file.
        let mut patches = Vec::new();
        let mut clean = true;
        for (path, ns) in mine {
            let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file());
            let (key, old) = match self.files.remove_entry(&path) {
                Some((key, old)) => (key, Some(old)),
                None => (Arc::new(path.clone()), None),
            };
            let new = match meta {
                None => None,
                Some(m) => {
                    let modified = m.modified().ok();
                    match old {
                        // Touched but the same: nothing to do for this file.
                        Some(o) if o.is_current(modified, m.len()) => {
                            self.files.insert(key, o);
                            continue;
                        }
                        _ => Some(CachedFile::read(&key, &ns, modified, m.len())),
                    }
                }
            };
            if old.as_ref().is_some_and(|o| !o.diagnostics.is_empty())
                || new.as_ref().is_some_and(|n| !n.diagnostics.is_empty())
            {
                clean = false;
            }
            let old_resources = old.map(|o| o.resources).unwrap_or_default();
            if let Some(n) = new {
                patches.push((old_resources, n.resources.clone(), Some(path.clone())));
                self.files.insert(key, n);
            } else {
                patches.push((old_resources, Vec::new(), None));
            }
        }
        // A key the new version defines must be free, or the old version's own.
        let mut freed = std::collections::HashSet::new();
        for (old, _, _) in &patches {
            for r in old {
                if self
                    .current
                    .resources
                    .get(&r.key())
                    .is_some_and(|cur| Arc::ptr_eq(cur, r))
                {
                    freed.insert(r.key());
                }
            }
        }
        let mut claimed = std::collections::HashSet::new();
        for (_, new, _) in &patches {
            for r in new {
                let k = r.key();
                if (self.current.resources.contains_key(&k) && !freed.contains(&k))
                    || !claimed.insert(k)
                {
                    clean = false;
                }
            }
        }
        if !clean {
            return self.reload();
        }
        let mut changed = false;
        let mut removed: BTreeMap<ResourceKey, Arc<Resource>> = BTreeMap::new();
        let mut touched: BTreeSet<ResourceKey> = freed.iter().cloned().collect();
        // Copied only if a snapshot build still holds the previous version.
        let current = Arc::make_mut(&mut self.current);
        let freed: BTreeSet<ResourceKey> = freed.into_iter().collect();
        for r in current.resources.remove_all(&freed) {
            removed.insert(r.key(), r);
        }
        let mut inserted = Vec::new();
        for (_, new, path) in patches {
            let mut kept = Vec::with_capacity(new.len());
            for r in new {
                let k = r.key();
                let r = match removed.remove(&k) {
                    // Same content: keep the object the snapshot already knows, so that
                    // what was built from it can be reused.
                    Some(prev) if prev.object == r.object => prev,
                    _ => {
                        changed = true;
                        r
                    }
                };
                touched.insert(k);
                inserted.push(r.clone());
                kept.push(r);
            }
            if let Some(c) = path.and_then(|p| self.files.get_mut(&p)) {
                c.resources = kept;
            }
        }
        current.resources.insert_all(inserted);
        let changed = changed || !removed.is_empty();
        if changed {
            current.last_change = Some(KeyChange {
                from_revision: current.revision,
                keys: touched,
            });
            current.revision = next_revision();
        }
        changed
    }
}

fn display_file(f: Option<&Path>) -> String {
    f.map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn of_kind_yields_exactly_that_kind() {
        let mut c = ClusterConfig::default();
        let doc = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n";
        for r in isthmus_api::load_str(doc, None, "default").resources {
            c.resources.insert(r.key(), Arc::new(r));
        }
        let names =
            |kind: &str| -> Vec<String> { c.of_kind(kind).map(|r| r.key().to_string()).collect() };
        assert_eq!(names("Secret").len(), 2, "{:?}", names("Secret"));
        assert!(names("Secret").iter().all(|n| n.contains("Secret")));
        assert_eq!(names("Pod").len(), 1);
        assert!(names("ConfigMap").is_empty());
    }

    #[test]
    fn of_kind_in_yields_that_kind_in_that_namespace() {
        let doc = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: r, namespace: a}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: b}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\n";
        let c = ClusterConfig::with_resources("c", isthmus_api::load_str(doc, None, "x").resources);
        let names = |kind: &str, ns: &str| -> Vec<String> {
            c.of_kind_in(kind, ns)
                .map(|r| r.key().to_string())
                .collect()
        };
        assert_eq!(names("Secret", "a"), ["Secret/a/r", "Secret/a/s"]);
        assert_eq!(names("Secret", "b"), ["Secret/b/t"]);
        assert!(names("Secret", "c").is_empty());
        assert_eq!(names("Pod", "a"), ["Pod/a/p"]);
        assert!(names("Pod", "b").is_empty());
    }

    use super::*;

    #[test]
    fn a_files_objects_and_its_cache_entry_share_one_path() {
        let dir = std::env::temp_dir().join(format!("isthmus-reg-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bar")).expect("tmp dir");
        let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n";
        std::fs::write(dir.join("bar/p.yaml"), pods).expect("write");
        let mut reg = FileRegistry::new("c1", &dir);
        assert!(reg.reload());
        let key = reg.files.keys().next().cloned().expect("one file");
        assert_eq!(*key, dir.join("bar/p.yaml"));
        let objects: Vec<_> = reg.current().resources.values().cloned().collect();
        assert_eq!(objects.len(), 2);
        assert!(objects.iter().all(|r| r
            .origin
            .file
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, &key))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    const SE: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: httpbin-bar\n  namespace: foo\nspec:\n  hosts: [httpbin.bar.global]\n  ports:\n  - {name: http1, number: 8000, protocol: http}\n  resolution: DNS\n  endpoints:\n  - address: 198.18.0.2\n    ports: {http1: 15443}\n";

    /// The patch path gives what a full reload gives, keeps unchanged objects as the same
    /// `Arc`, and falls back to a full read when it cannot be sure.
    #[test]
    fn applying_changed_files_patches_like_a_reload() {
        use crate::watch::Changes;
        let dir = std::env::temp_dir().join(format!("isthmus-reg-apply-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bar")).expect("tmp dir");
        let pod = |ip: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nstatus: {{podIP: {ip}}}\n")
        };
        std::fs::write(dir.join("bar/p.yaml"), pod("10.0.0.1")).expect("write");
        std::fs::write(dir.join("se.yaml"), SE).expect("write");
        let mut reg = FileRegistry::new("c1", &dir);
        assert!(reg.reload());
        let se_of = |reg: &FileRegistry| {
            reg.current()
                .resources
                .values()
                .find(|r| r.object.kind() == "ServiceEntry")
                .cloned()
                .expect("se")
        };
        let se_before = se_of(&reg);
        // Istio resources keep their text for later diagnostics; workload objects do not.
        assert!(se_before.origin.text.is_some());
        assert!(reg
            .current()
            .of_kind("Pod")
            .all(|r| r.origin.text.is_none() && r.origin.line > 0));
        let changes = |paths: &[&str]| Changes {
            paths: paths.iter().map(|p| dir.join(p)).collect(),
            rescan: false,
        };

        // An edit: one file read, the namespace from its folder, the rest untouched.
        std::fs::write(dir.join("bar/p.yaml"), pod("10.0.0.2")).expect("write");
        let revision = reg.current().revision;
        assert_eq!(reg.current().last_change, None, "a full read lists no keys");
        assert!(reg.apply(&changes(&["bar/p.yaml"])));
        // The new version says what it was patched from and which keys moved.
        let change = reg.current().last_change.clone().expect("a patch");
        assert_eq!(change.from_revision, revision);
        assert_ne!(reg.current().revision, revision);
        assert_eq!(
            change
                .keys
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            [ResourceKey {
                kind: "Pod".into(),
                namespace: "bar".into(),
                name: "p".into()
            }
            .to_string()]
        );
        let mut fresh = FileRegistry::new("c1", &dir);
        fresh.reload();
        assert_eq!(
            reg.current().resources.keys().collect::<Vec<_>>(),
            fresh.current().resources.keys().collect::<Vec<_>>()
        );
        for (k, v) in &reg.current().resources {
            assert_eq!(
                v.object,
                fresh
                    .current()
                    .resources
                    .get_ref(k)
                    .expect("same keys")
                    .object,
                "{k}"
            );
        }
        assert!(reg
            .current()
            .resources
            .keys()
            .any(|k| k.namespace == "bar" && k.name == "p"));
        let se_after = se_of(&reg);
        assert!(
            Arc::ptr_eq(&se_before, &se_after),
            "an unchanged file keeps its objects"
        );

        // Touched with the same content: no change. A path of another registry: no change.
        std::fs::write(dir.join("bar/p.yaml"), pod("10.0.0.2")).expect("write");
        let revision = reg.current().revision;
        assert!(!reg.apply(&changes(&["bar/p.yaml"])));
        assert_eq!(
            reg.current().revision,
            revision,
            "no change, no new version"
        );
        assert!(!reg.apply(&Changes {
            paths: [PathBuf::from("/elsewhere/x.yaml")].into(),
            rescan: false
        }));

        // A second file defining the same key: the full rules decide (first file wins, and
        // the duplicate is reported).
        std::fs::write(dir.join("bar/q.yaml"), pod("10.0.0.3")).expect("write");
        reg.apply(&changes(&["bar/q.yaml"]));
        assert!(
            reg.current()
                .diagnostics
                .iter()
                .any(|d| d.to_string().contains("defined twice")),
            "{:?}",
            reg.current().diagnostics
        );
        let in_force: Vec<_> = reg
            .current()
            .resources
            .values()
            .filter_map(|r| match &r.object {
                isthmus_api::Object::Pod(p) => p.status.pod_ip.map(|ip| ip.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(in_force, ["10.0.0.2"], "the file read first (p.yaml) wins");
        std::fs::remove_file(dir.join("bar/q.yaml")).expect("rm");

        // Deleting a file removes what it held.
        std::fs::remove_file(dir.join("bar/p.yaml")).expect("rm");
        assert!(reg.apply(&changes(&["bar/q.yaml", "bar/p.yaml"])));
        assert!(!reg.current().resources.keys().any(|k| k.kind == "Pod"));
        assert!(reg.current().diagnostics.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn invalid_edit_keeps_last_good_version_and_deletion_removes() {
        let dir = std::env::temp_dir().join(format!("isthmus-reg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("se.yaml");
        std::fs::write(&file, SE).expect("write");
        let mut reg = FileRegistry::new("cluster1", &dir);
        assert!(reg.reload());
        assert_eq!(reg.current().resources.len(), 1);

        std::fs::write(&file, SE.replace("number: 8000", "number: 80000")).expect("write");
        assert!(
            !reg.reload(),
            "an invalid edit must not change what is served"
        );
        assert_eq!(reg.current().resources.len(), 1);
        assert!(reg.current().diagnostics[0]
            .to_string()
            .contains("spec.ports[0].number"));

        std::fs::write(&file, "kind: [unclosed").expect("write");
        assert!(!reg.reload(), "a broken file keeps its resources");

        std::fs::remove_file(&file).expect("rm");
        assert!(reg.reload());
        assert!(reg.current().resources.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
