//! Files: safetensors tensors, model checkpoints (config.json + model.safetensors +
//! tokenizer.json), Hugging Face model directories, adapter directories (tunelab's and PEFT's),
//! and atomic writes.
//!
//! ## Durability
//!
//! A file is replaced atomically ([`atomic_write`]: a temporary sibling, fsynced, renamed over
//! it). A *directory* whose files belong together (an adapter's config and weights, a
//! checkpoint's weights and optimizer state, a model's config and weights) is replaced as a
//! whole ([`replace_dir`]): its new contents are written into a sibling `NAME.tmp-<pid>`,
//! fsynced, then the old directory is renamed aside to `NAME.old-<pid>`, the new one renamed into
//! place, and the old one removed. A kill at any point leaves `NAME` holding either the old
//! directory or the new one, never a mix; a kill between the two renames leaves no `NAME` but
//! the old directory aside, which [`committed_dir`] finds (readers load it) and the next
//! [`replace_dir`] clears. A `NAME.tmp-*` sibling is an unfinished write: never read, removed by
//! the next write.

pub mod adapter;
pub mod checkpoint;
pub mod hf;
pub mod limits;
pub mod peft;
pub mod peft_methods;
pub mod safetensors;

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to disk,
/// then renamed over the target. A crash leaves either the old file or the new one, never half.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err)?;
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        f.write_all(head).map_err(io_err)?;
        crash_point("atomic_write:half");
        f.write_all(tail).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
    }
    std::fs::rename(&tmp, path).map_err(io_err)?;
    sync_parent(path)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Flushes a directory's entries (the renames and creations in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    // Opening a directory to fsync it works on Unix; elsewhere there is nothing to flush.
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Flushes the directory holding `path`.
fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

/// `dir` with `suffix` appended to its last component (`runs/x/adapter` → `runs/x/adapter.tmp-7`).
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The siblings of `dir` named `NAME<marker>…` (`marker` is `.tmp-` or `.old-`), newest first.
fn leftovers(dir: &Path, marker: &str) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!("{}{marker}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, parent.join(e.file_name()))
        })
        .collect();
    found.sort_by_key(|b| std::cmp::Reverse(b.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// A fresh, empty temporary sibling of `dir` to write its new contents into; hand it to
/// [`replace_dir`] when complete. Unfinished writes of earlier processes (`NAME.tmp-*`) are
/// removed.
pub fn temp_dir_for(dir: &Path) -> Result<PathBuf> {
    for old in leftovers(dir, ".tmp-") {
        let _ = std::fs::remove_dir_all(old);
    }
    let tmp = sibling(dir, &format!(".tmp-{}", std::process::id()));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io_error(&tmp, e))?;
    Ok(tmp)
}

/// Makes the complete directory `tmp` (from [`temp_dir_for`]) the new `dir`, as a whole: `tmp`
/// is fsynced, the old `dir` renamed aside, `tmp` renamed into place, the old one removed (see
/// the module's doc for what a kill at each point leaves).
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    sync_dir(tmp)?;
    crash_point("replace_dir:written");
    // A previous replacement killed between its renames left the committed directory aside:
    // with no `dir`, that one is current; it goes now, as `dir` would.
    let stale = leftovers(dir, ".old-");
    let aside = sibling(dir, &format!(".old-{}", std::process::id()));
    let had_old = match std::fs::rename(dir, &aside) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_error(dir, e)),
    };
    crash_point("replace_dir:set_aside");
    std::fs::rename(tmp, dir).map_err(|e| io_error(dir, e))?;
    sync_parent(dir)?;
    crash_point("replace_dir:renamed");
    if had_old {
        let _ = std::fs::remove_dir_all(&aside);
    }
    for s in stale {
        if s != aside {
            let _ = std::fs::remove_dir_all(s);
        }
    }
    Ok(())
}

/// The directory holding the committed contents of `dir`: `dir` itself, or, when a
/// [`replace_dir`] was killed between its two renames (no `dir`, its old contents set aside),
/// that set-aside directory. `None` when there is neither.
pub fn committed_dir(dir: &Path) -> Option<PathBuf> {
    if dir.exists() {
        return Some(dir.to_path_buf());
    }
    leftovers(dir, ".old-").into_iter().next()
}

/// Whether `dir` exists and holds anything (an empty directory holds nothing to lose).
pub fn is_nonempty_dir(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => dir.exists(),
    }
}

/// Fault injection for the kill test (`tests/suite/durability.rs`): with
/// `TUNELAB_CRASH_AT=<label>:<n>` in the environment, the n-th time (from 1) the process reaches
/// the crash point `label` it kills itself with SIGKILL, as a power cut or `kill -9` would at
/// that instant. Unset (always, outside that test), this is one cached lookup.
pub fn crash_point(label: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("TUNELAB_CRASH_AT").ok()?;
        let (l, n) = v.rsplit_once(':')?;
        Some((l.to_string(), n.parse().ok()?))
    });
    if let Some((l, n)) = target {
        if l == label && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            let _ = std::process::Command::new("kill")
                .args(["-9", &std::process::id().to_string()])
                .status();
            std::process::abort();
        }
    }
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
