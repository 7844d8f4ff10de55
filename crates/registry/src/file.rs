//! A cluster's objects read from a directory, keeping the last good version of every
//! resource that a later edit broke.

use isthmus_api::{Diagnostic, Resource, ResourceKey};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The objects of one cluster at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The cluster (registry) name, such as `cluster1`.
    pub cluster: String,
    /// Resources in force, by key.
    pub resources: BTreeMap<ResourceKey, Arc<Resource>>,
    /// Problems of the last read, including the ones for which a last good version is kept.
    pub diagnostics: Vec<Diagnostic>,
}

/// One file as last read.
#[derive(Debug)]
struct CachedFile {
    modified: Option<std::time::SystemTime>,
    len: u64,
    resources: Vec<Arc<Resource>>,
    diagnostics: Vec<Diagnostic>,
}

/// A registry backed by a directory of YAML files.
#[derive(Debug)]
pub struct FileRegistry {
    cluster: String,
    dir: PathBuf,
    current: ClusterConfig,
    /// What each file held when last read, by (modification time, length): an unchanged
    /// file is not parsed again, so one edit in a large registry costs one file.
    files: std::collections::HashMap<PathBuf, CachedFile>,
}

impl FileRegistry {
    /// A registry for `cluster` reading `dir`; call [`FileRegistry::reload`] to read it.
    pub fn new(cluster: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        let cluster = cluster.into();
        FileRegistry {
            current: ClusterConfig {
                cluster: cluster.clone(),
                ..Default::default()
            },
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
            let cached = self
                .files
                .get(&file)
                .filter(|c| c.modified.is_some() && c.modified == modified && c.len == len);
            if cached.is_none() {
                let loaded = isthmus_api::load_file(&file, &ns);
                self.files.insert(
                    file.clone(),
                    CachedFile {
                        modified,
                        len,
                        resources: loaded.resources.into_iter().map(Arc::new).collect(),
                        diagnostics: loaded.diagnostics,
                    },
                );
            }
            if let Some(c) = self.files.get(&file) {
                resources.extend(c.resources.iter().cloned());
                diagnostics.extend(c.diagnostics.iter().cloned());
            }
            seen.insert(file);
        }
        self.files.retain(|f, _| seen.contains(f));
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

    /// The configuration in force.
    pub fn current(&self) -> &ClusterConfig {
        &self.current
    }

    /// Reads the directory again. A resource that is now invalid keeps its previous good
    /// version (and its error is reported); a file that no longer parses at all keeps every
    /// resource it had. Returns true when the resources in force changed.
    pub fn reload(&mut self) -> bool {
        let (loaded_resources, loaded_diagnostics) = self.load();
        let mut next: BTreeMap<ResourceKey, Arc<Resource>> = BTreeMap::new();
        for r in loaded_resources {
            let key = r.key();
            if let Some(prev) = next.get(&key) {
                let mut d = Diagnostic::error(format!(
                    "{key} is defined twice; the one at {}:{} wins",
                    display_file(&prev.origin.file),
                    prev.origin.line
                ));
                d.file = r.origin.file.clone();
                d.line = Some(r.origin.line);
                d.resource = Some(key.to_string());
                self.current.diagnostics.push(d);
                continue;
            }
            next.insert(key, r);
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
        for (key, prev) in &self.current.resources {
            if next.contains_key(key) {
                continue;
            }
            let by_key = broken_resources.contains(key.to_string().as_str())
                || broken_resources.contains(format!("{}/{}", key.kind, key.name).as_str());
            let by_file = prev
                .origin
                .file
                .as_deref()
                .is_some_and(|f| broken_files.contains(f));
            if by_key || by_file {
                next.insert(key.clone(), prev.clone());
            }
        }
        let changed = next.len() != self.current.resources.len()
            || next
                .iter()
                .zip(self.current.resources.iter())
                .any(|((ka, a), (kb, b))| ka != kb || (!Arc::ptr_eq(a, b) && a.object != b.object));
        self.current = ClusterConfig {
            cluster: self.cluster.clone(),
            resources: next,
            diagnostics: loaded_diagnostics,
        };
        changed
    }
}

fn display_file(f: &Option<PathBuf>) -> String {
    f.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SE: &str = "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: httpbin-bar\n  namespace: foo\nspec:\n  hosts: [httpbin.bar.global]\n  ports:\n  - {name: http1, number: 8000, protocol: http}\n  resolution: DNS\n  endpoints:\n  - address: 198.18.0.2\n    ports: {http1: 15443}\n";

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
