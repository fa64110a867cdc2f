//! Files and folders of the server's state. Atomic file writes: a temp file in the same folder
//! renamed over the old one, so a reader sees the old file or the new one, never a half-written
//! one. `write_atomic` also fsyncs the file and the folder, so the new file survives a crash;
//! `replace` leaves that to the caller (the store's journal keeps what it writes durable);
//! `write_private` is for files that hold secrets (0600). Folders ccs creates are 0700. And the
//! process's limit of open files, raised at start; for the unit tests, `TempDir`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The suffix of temp files; anything ending in it is a leftover of a crash and may be removed.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` atomically and durably, creating the parent folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with_mode(path, bytes, None)
}

/// Like `write_atomic`, for a file that holds secrets (the config: API keys, `claudeEnv`): it
/// keeps the permissions of the file it replaces, and a new one is readable by its owner only
/// (0600), in a folder created 0700.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mode = fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    write_with_mode(path, bytes, Some(mode))
}

/// Creates `dir` and its missing parents readable by their owner only (0700); an existing
/// folder keeps its permissions.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// `mode`: the permissions of the new file; `None`: what the umask gives.
fn write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let temp = temp_path(dir, path);
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(mode.unwrap_or(0o666)).open(&temp)?;
        if let Some(mode) = mode {
            // The mode given at creation is filtered by the umask; the one asked for is meant.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Replaces `path` with `bytes` atomically, creating its folder if needed, without waiting for
/// the disk: after a crash the file may be the old one, or even empty on some file systems.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = temp_path(dir, path);
    let written = match File::create(&temp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            File::create(&temp)
        }
        created => created,
    }
    .and_then(|mut file| file.write_all(bytes))
    .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

fn temp_path(dir: &Path, path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}{TEMP_SUFFIX}", std::process::id()))
}

/// Removes `path` and makes the removal durable.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => path.parent().map_or(Ok(()), sync_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes the entries of `dir` (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Raises the soft limit of open files to the hard limit (a server that runs out of descriptors
/// refuses connections); returns (soft before, soft now, hard).
pub fn raise_open_files_limit() -> io::Result<(u64, u64, u64)> {
    let (before, hard) = crate::sys::open_files_limit()?;
    if before < hard {
        crate::sys::set_open_files_limit(hard, hard)?;
    }
    Ok((before, hard, hard))
}

/// A new folder under the system's temp folder for one unit test, removed on drop (so also when
/// the test panics).
#[cfg(test)]
pub struct TempDir(std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    /// `ccs-<tag>-<uuid>`, created empty.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ccs-{tag}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).expect("cannot create a temp folder for a test");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `path` joined with `relative`.
    pub fn join(&self, relative: impl AsRef<Path>) -> std::path::PathBuf {
        self.0.join(relative)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_created_for_its_owner_only_and_keeps_a_mode_it_was_given() {
        let dir = TempDir::new("fsutil");
        let path = dir.join("home").join("config.json");
        write_private(&path, b"{}").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("home")), 0o700);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_private(&path, b"{\"a\":1}").unwrap();
        assert_eq!(mode(&path), 0o640, "a rewrite keeps the mode the owner chose");
        assert_eq!(fs::read(&path).unwrap(), b"{\"a\":1}");
    }
}
