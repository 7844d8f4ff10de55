//! Watching registry directories: every change (after a short quiet period, so that an
//! editor's several writes count as one) is sent as a unit on a channel.

use notify::{RecursiveMode, Watcher};
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

/// Watches `dirs` recursively. The returned receiver yields `()` once per burst of changes;
/// keep the returned watcher alive for as long as changes are wanted.
pub fn watch_dirs(
    dirs: &[PathBuf],
    quiet: Duration,
) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = raw_tx.send(());
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
        while raw_rx.recv().await.is_some() {
            // Debounce: wait until nothing happened for `quiet`.
            while let Ok(Some(())) = tokio::time::timeout(quiet, raw_rx.recv()).await {}
            if tx.send(()).await.is_err() {
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
