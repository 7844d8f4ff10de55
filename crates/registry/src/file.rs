//! A cluster's objects read from a directory, keeping the last good version of every
//! resource that a later edit broke: the file [`Source`].

use crate::source::{ClusterConfig, Event, Registry, Source};
use crate::watch::Changes;
use isthmus_api::{Diagnostic, KeyRef, Resource};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Reads `files` (path, default namespace, time, length) on up to as many threads as there
/// are cores, in chunks of whole files; returns them in their order.
fn read_all(
    files: &[(Arc<PathBuf>, &str, Option<std::time::SystemTime>, u64)],
) -> Vec<(Arc<PathBuf>, CachedFile)> {
    let read = |chunk: &[(Arc<PathBuf>, &str, Option<std::time::SystemTime>, u64)]| {
        chunk
            .iter()
            .map(|(f, ns, m, l)| (f.clone(), CachedFile::read(f, ns, *m, *l)))
            .collect::<Vec<_>>()
    };
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(files.len() / 8)
        .max(1);
    if threads == 1 {
        return read(files);
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|c| scope.spawn(move || read(c)))
            .collect();
        handles
            .into_iter()
            // A panic in a reader is the same panic as in a sequential read, not files lost.
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
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
                        r.origin.forget_text();
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

/// A [`Source`] reading a directory of YAML files: one folder per namespace, files at the
/// top in `default`.
#[derive(Debug)]
pub struct FileSource {
    cluster: String,
    dir: PathBuf,
    /// What each file held when last read, by (modification time, length): an unchanged
    /// file is not parsed again, so one edit in a large registry costs one file. The key is
    /// the path the file's objects' origins share.
    files: std::collections::HashMap<Arc<PathBuf>, CachedFile>,
    /// Whether a complete list was given (the first sync gives one).
    listed: bool,
}

/// A registry backed by a directory of YAML files: the file source and its store.
pub type FileRegistry = Registry<FileSource>;

impl Registry<FileSource> {
    /// A registry for `cluster` reading `dir`; call [`FileRegistry::reload`] to read it.
    pub fn new(cluster: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Registry::with_source(FileSource::new(cluster, dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.source().dir()
    }

    /// Reads the whole directory again. A resource that is now invalid keeps its previous
    /// good version (and its error is reported); a file that no longer parses at all keeps
    /// every resource it had. Returns true when the resources in force changed.
    pub fn reload(&mut self) -> bool {
        self.sync(&Changes::everything())
    }

    /// Applies one burst of file changes (see [`FileSource`]'s sync). Returns true when the
    /// resources in force changed.
    pub fn apply(&mut self, changes: &Changes) -> bool {
        self.sync(changes)
    }
}

impl Source for FileSource {
    fn cluster(&self) -> &str {
        &self.cluster
    }

    /// When the changed files are known, only they are read and point events say what
    /// they changed; when they are not (`rescan`, or the first sync), or a changed file has
    /// problems, or problems are in force, or a resource key moves between files, the
    /// whole directory is read and listed, with the last-good rules of a complete read.
    fn sync(&mut self, store: &ClusterConfig, hint: &Changes) -> Vec<Event> {
        if !self.listed || hint.rescan || !store.diagnostics.is_empty() {
            return self.list(store);
        }
        match self.patch(store, hint) {
            Some(events) => events,
            None => self.list(store),
        }
    }
}

impl FileSource {
    /// A source for `cluster` reading `dir`.
    pub fn new(cluster: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        FileSource {
            cluster: cluster.into(),
            dir: dir.into(),
            files: std::collections::HashMap::new(),
            listed: false,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the files that changed since the last call; the others come from the cache.
    fn load(&mut self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        let (mut resources, mut diagnostics) = (Vec::new(), Vec::new());
        let files = match isthmus_api::yaml_files(&self.dir) {
            Ok(f) => f,
            Err(d) => return (resources, vec![d]),
        };
        let mut seen = std::collections::HashSet::new();
        // The files that changed since they were read, parsed on every core: YAML parsing is
        // what a large read spends its time on, and files are independent.
        let stale: Vec<(Arc<PathBuf>, &str, Option<std::time::SystemTime>, u64)> = files
            .iter()
            .filter_map(|(file, ns)| {
                let meta = std::fs::metadata(file).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.as_ref().map(|m| m.len()).unwrap_or(0);
                let current = self
                    .files
                    .get(file)
                    .is_some_and(|c| c.is_current(modified, len));
                (!current).then(|| (Arc::new(file.clone()), ns.as_str(), modified, len))
            })
            .collect();
        for (file, read) in read_all(&stale) {
            self.files.insert(file, read);
        }
        for (file, _) in files {
            if let Some(c) = self.files.get(&file) {
                resources.extend(c.resources.iter().cloned());
                diagnostics.extend(c.diagnostics.iter().cloned());
            }
            seen.insert(file);
        }
        self.files.retain(|f, _| seen.contains(&**f));
        (resources, diagnostics)
    }

    /// The whole directory as a complete list: duplicates reported (the first read wins),
    /// and the last good version of what an error now hides kept from `store`.
    fn list(&mut self, store: &ClusterConfig) -> Vec<Event> {
        self.listed = true;
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
                    display_file(prev.origin.file().map(|f| f.as_path())),
                    prev.origin.line()
                ));
                d.file = r.origin.file().map(|f| f.to_path_buf());
                d.line = Some(r.origin.line() as usize);
                d.resource = Some(key.to_string());
                duplicates.push(d);
                continue;
            }
            unique.push(r);
        }
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
        let mut fresh = unique.iter().peekable();
        for (key, prev) in store.resources.iter() {
            while fresh.peek().is_some_and(|r| KeyRef::of(r) < key) {
                fresh.next();
            }
            if fresh.peek().is_some_and(|r| KeyRef::of(r) == key) {
                continue;
            }
            let by_key = broken_resources.contains(key.to_string().as_str())
                || broken_resources.contains(format!("{}/{}", key.kind, key.name).as_str());
            let by_file = prev
                .origin
                .file()
                .is_some_and(|f| broken_files.contains(f.as_path()));
            if by_key || by_file {
                last_good.push(prev.clone());
            }
        }
        loaded_diagnostics.extend(duplicates);
        let mut events = Vec::with_capacity(unique.len() + last_good.len() + 3);
        events.push(Event::Init);
        events.extend(unique.into_iter().map(Event::InitApply));
        events.extend(last_good.into_iter().map(Event::InitApply));
        events.push(Event::InitDone);
        events.push(Event::Problems(loaded_diagnostics));
        events
    }

    /// Point events for the files in `changes`, or `None` when only a complete read can be
    /// sure (a changed file has problems, or a key moves between files).
    fn patch(&mut self, store: &ClusterConfig, changes: &Changes) -> Option<Vec<Event>> {
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
            match new {
                Some(mut n) => {
                    // An object the store holds with the same content stays that object,
                    // in the cache too.
                    for r in &mut n.resources {
                        if let Some(held) = store.resources.get_ref(KeyRef::of(r)) {
                            if !Arc::ptr_eq(held, r) && held.object == r.object {
                                *r = Arc::clone(held);
                            }
                        }
                    }
                    patches.push((old_resources, n.resources.clone()));
                    self.files.insert(key, n);
                }
                None => patches.push((old_resources, Vec::new())),
            }
        }
        // A key the new version defines must be free, or the old version's own.
        let mut freed = std::collections::BTreeMap::new();
        for (old, _) in &patches {
            for r in old {
                if store
                    .resources
                    .get_ref(KeyRef::of(r))
                    .is_some_and(|cur| Arc::ptr_eq(cur, r))
                {
                    freed.insert(r.key(), r.clone());
                }
            }
        }
        let mut claimed = std::collections::HashSet::new();
        for (_, new) in &patches {
            for r in new {
                let k = r.key();
                if (store.resources.contains_key(&k) && !freed.contains_key(&k))
                    || !claimed.insert(k)
                {
                    clean = false;
                }
            }
        }
        if !clean {
            return None;
        }
        let mut events: Vec<Event> = freed
            .into_iter()
            .filter(|(k, _)| !claimed.contains(k))
            .map(|(_, r)| Event::Delete(r))
            .collect();
        for (_, new) in patches {
            events.extend(new.into_iter().map(Event::Apply));
        }
        Some(events)
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
    use isthmus_api::ResourceKey;

    #[test]
    fn a_files_objects_and_its_cache_entry_share_one_path() {
        let dir = std::env::temp_dir().join(format!("isthmus-reg-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bar")).expect("tmp dir");
        let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n";
        std::fs::write(dir.join("bar/p.yaml"), pods).expect("write");
        let mut reg = FileRegistry::new("c1", &dir);
        assert!(reg.reload());
        let key = reg.source().files.keys().next().cloned().expect("one file");
        assert_eq!(*key, dir.join("bar/p.yaml"));
        let objects: Vec<_> = reg.current().resources.values().cloned().collect();
        assert_eq!(objects.len(), 2);
        assert!(objects
            .iter()
            .all(|r| r.origin.file().is_some_and(|f| Arc::ptr_eq(f, &key))));
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
        assert!(se_before.origin.text().is_some());
        assert!(reg
            .current()
            .of_kind("Pod")
            .all(|r| r.origin.text().is_none() && r.origin.line() > 0));
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
                isthmus_api::Object::Pod(p) => p.status.pod_ip().map(|ip| ip.to_string()),
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
