//! For the tests of store faults: a journal disk in a real folder that fails on demand.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::journal::{Disk, Folder};

/// What fails, and what happened.
#[derive(Default)]
pub struct Faults {
    /// Every start and append fails, writing nothing (a read-only file system).
    pub down: bool,
    /// The next append writes its bytes, then fails as a failed fdatasync does.
    pub fail_next_sync: bool,
    /// Each append: the journal file it went to, and whether it succeeded.
    pub appends: Vec<(PathBuf, bool)>,
}

pub struct FlakyDisk {
    folder: Folder,
    current: PathBuf,
    faults: Arc<Mutex<Faults>>,
}

impl FlakyDisk {
    pub fn new(root: &Path) -> FlakyDisk {
        FlakyDisk { folder: Folder::new(root), current: PathBuf::new(), faults: Arc::default() }
    }

    /// The switches, kept by the test once the disk is handed to a journal.
    pub fn faults(&self) -> Arc<Mutex<Faults>> {
        self.faults.clone()
    }
}

fn read_only() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}

impl Disk for FlakyDisk {
    fn start(&mut self, number: u64) -> io::Result<PathBuf> {
        if self.faults.lock().down {
            return Err(read_only());
        }
        self.current = self.folder.start(number)?;
        Ok(self.current.clone())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut faults = self.faults.lock();
        let result = if faults.down {
            Err(read_only())
        } else if std::mem::take(&mut faults.fail_next_sync) {
            self.folder.append(bytes).and(Err(io::Error::from_raw_os_error(libc::EIO)))
        } else {
            self.folder.append(bytes)
        };
        faults.appends.push((self.current.clone(), result.is_ok()));
        result
    }
}
