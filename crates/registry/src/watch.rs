//! Watching registry directories: every burst of changes (after a short quiet period, so
//! that an editor's several writes count as one) is sent on a channel with the files it
//! touched, so that a registry re-reads only those.

use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// The directories could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The operating system refused the watch.
    #[error("cannot watch {dir}: {source}")]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: notify::Error,
    },
}

/// What changed below the watched directories during one quiet period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// YAML files created, modified or removed.
    pub paths: BTreeSet<PathBuf>,
    /// The watcher cannot say which files changed (a directory came or went, events were
    /// lost): everything must be read again.
    pub rescan: bool,
}

impl Changes {
    /// Everything must be read again.
    pub fn everything() -> Changes {
        Changes {
            paths: BTreeSet::new(),
            rescan: true,
        }
    }

    fn add(&mut self, ev: &notify::Event) {
        if ev.need_rescan() || ev.paths.is_empty() {
            self.rescan = true;
        }
        for p in &ev.paths {
            let yaml = p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e == "yaml" || e == "yml");
            if yaml && !p.is_dir() {
                self.paths.insert(p.clone());
            } else if p.is_dir() || (p.extension().is_none() && !p.exists()) {
                // A directory (a namespace folder; namespace names have no dots) created,
                // renamed or removed: its files may have no events of their own.
                self.rescan = true;
            }
            // Anything else (an editor's swap file, a `.tmp` renamed into place) is not a
            // registry file.
        }
    }
}

/// Watches `dirs` recursively. The returned receiver yields the [`Changes`] of each burst of
/// events, after `quiet` without events; keep the returned watcher alive for as long as
/// changes are wanted.
pub fn watch_dirs(
    dirs: &[PathBuf],
    quiet: Duration,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<Changes>), WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(ev) => {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = raw_tx.send(ev);
                }
            }
            // An error from the watcher: it may have lost events.
            Err(_) => {
                let _ = raw_tx.send(
                    notify::Event::new(notify::EventKind::Other)
                        .set_flag(notify::event::Flag::Rescan),
                );
            }
        }
    })
    .map_err(|source| WatchError::Watch {
        dir: PathBuf::new(),
        source,
    })?;
    for dir in dirs {
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Watch {
                dir: dir.clone(),
                source,
            })?;
    }
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            let mut changes = Changes::default();
            changes.add(&first);
            // Debounce: wait until nothing happened for `quiet`.
            while let Ok(Some(ev)) = tokio::time::timeout(quiet, raw_rx.recv()).await {
                changes.add(&ev);
            }
            if tx.send(changes).await.is_err() {
                break;
            }
        }
    });
    Ok((watcher, rx))
}

/// Starts watching one more directory with a watcher from [`watch_dirs`] (a remote
/// registry that a credential Secret names).
pub fn watch_more(
    watcher: &mut notify::RecommendedWatcher,
    dir: &std::path::Path,
) -> Result<(), WatchError> {
    watcher
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|source| WatchError::Watch {
            dir: dir.to_path_buf(),
            source,
        })
}

/// Stops watching a directory (its credential Secret was deleted).
pub fn unwatch(watcher: &mut notify::RecommendedWatcher, dir: &std::path::Path) {
    let _ = watcher.unwatch(dir);
}
