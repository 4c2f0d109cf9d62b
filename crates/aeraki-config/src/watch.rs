//! Watching a directory: every change (debounced ~200 ms) reloads the whole directory and
//! yields either a new [`LoadedConfig`] or the errors that refused it (the caller keeps
//! serving its last good config).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::{ConfigErrors, LoadedConfig, load_dir};

/// Quiet period after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A running directory watch. Dropping it stops the watch.
#[derive(Debug)]
pub struct DirWatcher {
    rx: mpsc::Receiver<Result<LoadedConfig, ConfigErrors>>,
    _watcher: notify::RecommendedWatcher,
}

impl DirWatcher {
    /// The next reload result, after a change. `None` once the watch has stopped.
    pub async fn recv(&mut self) -> Option<Result<LoadedConfig, ConfigErrors>> {
        self.rx.recv().await
    }
}

/// Starts watching `dir` (recursively). Requires a Tokio runtime. The first result arrives
/// after the first change; load the initial config with [`load_dir`].
pub fn watch_dir(dir: impl AsRef<Path>) -> Result<DirWatcher, notify::Error> {
    let dir: PathBuf = dir.as_ref().to_path_buf();
    let (event_tx, mut event_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(ev) if relevant(&ev) => {
                let _ = event_tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("file watch error: {e}"),
        })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;

    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while event_rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, event_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let d = dir.clone();
            let result = tokio::task::spawn_blocking(move || load_dir(&d))
                .await
                .unwrap_or_else(|e| {
                    Err(ConfigErrors::single(format!("config reload failed: {e}")))
                });
            if tx.send(result).await.is_err() {
                return;
            }
        }
    });
    Ok(DirWatcher {
        rx,
        _watcher: watcher,
    })
}

/// Whether an event may change the config: a config file, or a directory (a rename or a
/// removal of a whole subtree), not an access.
fn relevant(ev: &notify::Event) -> bool {
    if matches!(ev.kind, notify::EventKind::Access(_)) {
        return false;
    }
    ev.paths.iter().any(|p| {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        !hidden && (crate::store::is_config_file(p) || p.extension().is_none())
    })
}
