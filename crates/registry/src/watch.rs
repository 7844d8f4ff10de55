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

/// The longest a burst of file changes is held before it is handed on.
pub const MAX_BURST: Duration = Duration::from_secs(1);

/// Watches `dirs` recursively. The returned receiver yields the [`Changes`] of each burst of
/// events, after `quiet` without events or [`MAX_BURST`] after its first; keep the returned
/// watcher alive for as long as changes are wanted.
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
            // Debounce: wait until nothing happened for `quiet`, but no longer than
            // MAX_BURST after the first change (Istio's debounce max): under steady churn
            // changes still go out every second instead of waiting for a quiet moment.
            let end = tokio::time::Instant::now() + MAX_BURST.max(quiet);
            loop {
                let wait = quiet.min(end.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, raw_rx.recv()).await {
                    Ok(Some(ev)) => changes.add(&ev),
                    Ok(None) | Err(_) => break,
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steady_churn_is_handed_on_every_second_not_held_until_it_stops() {
        let dir = std::env::temp_dir().join(format!("isthmus-watch-churn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let (_watcher, mut bursts) =
            watch_dirs(std::slice::from_ref(&dir), Duration::from_millis(200)).expect("watch");
        // A write every 100 ms for 3.5 s: never quiet for 200 ms.
        let writer = {
            let dir = dir.clone();
            tokio::spawn(async move {
                for i in 0..35 {
                    let _ = std::fs::write(dir.join("churn.yaml"), format!("# {i}\n"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut during = 0;
        let started = tokio::time::Instant::now();
        while started.elapsed() < Duration::from_millis(3300) {
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(100), bursts.recv()).await
            {
                during += 1;
            }
        }
        let _ = writer.await;
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            during >= 2,
            "bursts handed on while the writes went on: {during}"
        );
    }
}
