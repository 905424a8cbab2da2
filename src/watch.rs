//! Threads that turn the outside world into daemon [`Event`]s: signals (signal-hook) and
//! edits of the configuration file or the secret file (notify). They only send.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use notify::{RecursiveMode, Watcher};

use crate::shutdown::Shutdown;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM or SIGINT: stop.
    Shutdown,
    /// SIGHUP: reload the configuration now.
    Reload,
    /// SIGUSR1: start a pass now.
    SyncNow,
    /// The configuration file, or the secret file, changed on disk.
    FileChanged,
}

/// Starts the signal thread. SIGTERM also raises `shutdown`, and SIGTERM and SIGHUP raise
/// `interrupt`, directly, so a pass in progress stops at its next page boundary instead of
/// when the main loop next reads its events.
pub fn signals(
    events: Sender<Event>,
    shutdown: Shutdown,
    interrupt: Shutdown,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGTERM | SIGINT => {
                        shutdown.request();
                        interrupt.request();
                        Event::Shutdown
                    }
                    SIGHUP => {
                        interrupt.request();
                        Event::Reload
                    }
                    _ => Event::SyncNow,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}

/// Watches the directories holding `files` (editors save by writing a new file and
/// renaming it over the old one, which a watch on the file itself would miss) and sends
/// [`Event::FileChanged`] when an event names one of them, raising `interrupt` so that a pass
/// in progress yields to the reload. The returned watcher must be kept alive.
pub fn files(
    files: &[PathBuf],
    events: Sender<Event>,
    interrupt: Shutdown,
) -> notify::Result<notify::RecommendedWatcher> {
    let names: Vec<(PathBuf, OsString)> = files
        .iter()
        .filter_map(|f| Some((directory_of(f), f.file_name()?.to_owned())))
        .collect();
    let wanted = names.clone();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let Ok(event) = result else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            wanted
                .iter()
                .any(|(dir, name)| p.file_name() == Some(name) && directory_of(p) == *dir)
        });
        if relevant {
            interrupt.request();
            let _ = events.send(Event::FileChanged);
        }
    })?;
    let mut watched: Vec<&PathBuf> = Vec::new();
    for (dir, _) in &names {
        if !watched.contains(&dir) {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            watched.push(dir);
        }
    }
    Ok(watcher)
}

/// The directory of `path`, absolute where possible so event paths compare equal.
fn directory_of(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dir.canonicalize().unwrap_or(dir)
}
