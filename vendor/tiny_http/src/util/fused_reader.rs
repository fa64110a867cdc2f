use std::io::{IoSliceMut, Read, Result as IoResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Wraps another reader and provides "fused" behavior.
/// When the underlying reader reaches EOF, it is dropped,
/// the fused reader becomes an empty stub and the flag returned by `new()` is set.
#[derive(Debug)]
pub struct FusedReader<R: Read> {
    inner: Option<R>,
    finished: Arc<AtomicBool>,
}

impl<R: Read> FusedReader<R> {
    pub fn new(inner: R) -> (Self, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(false));
        let reader = Self {
            inner: Some(inner),
            finished: finished.clone(),
        };
        (reader, finished)
    }

    #[allow(dead_code)]
    pub fn into_inner(self) -> Option<R> {
        self.inner
    }

    fn finish(&mut self) {
        self.inner = None;
        self.finished.store(true, Ordering::Release);
    }
}

impl<R: Read> Read for FusedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match &mut self.inner {
            Some(r) => {
                let l = r.read(buf)?;
                // an empty `buf` reads 0 bytes without meaning EOF
                if l == 0 && !buf.is_empty() {
                    self.finish();
                }
                Ok(l)
            }
            None => Ok(0),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> IoResult<usize> {
        match &mut self.inner {
            Some(r) => {
                let l = r.read_vectored(bufs)?;
                if l == 0 && bufs.iter().any(|b| !b.is_empty()) {
                    self.finish();
                }
                Ok(l)
            }
            None => Ok(0),
        }
    }
}
