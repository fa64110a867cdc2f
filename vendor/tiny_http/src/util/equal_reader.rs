use std::io::Read;
use std::io::Result as IoResult;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF, drops the sub-reader and sets the flag returned by
/// `new()`. If the limit is not reached when the destructor is called, the remaining bytes are
/// left unread (and the flag unset): reading them here could take forever (a slow client) and
/// a lot of memory (a huge `Content-Length`); the owner of the stream decides what to do.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: Option<R>,
    size: usize,
    finished: Arc<AtomicBool>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub fn new(reader: R, size: usize) -> (EqualReader<R>, Arc<AtomicBool>) {
        let finished = Arc::new(AtomicBool::new(false));

        let mut r = EqualReader {
            reader: Some(reader),
            size,
            finished: finished.clone(),
        };
        r.finish_if_done();

        (r, finished)
    }

    fn finish_if_done(&mut self) {
        if self.size == 0 {
            // drop the sub-reader first: for a request body, this hands the stream to the next request
            self.reader = None;
            self.finished.store(true, Ordering::Release);
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let reader = match self.reader.as_mut() {
            Some(reader) => reader,
            None => return Ok(0),
        };

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        let len = reader.read(buf)?;
        self.size -= len;
        self.finish_if_done();
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use std::io::Read;
    use std::sync::atomic::Ordering;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, finished) = EqualReader::new(org_reader.by_ref(), 5);

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
            assert!(finished.load(Ordering::Acquire));
        }

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn finished_as_soon_as_the_last_byte_is_read() {
        let mut org_reader = &b"hello world"[..];
        let (mut equal_reader, finished) = EqualReader::new(&mut org_reader, 5);

        let mut buf = [0; 5];
        equal_reader.read_exact(&mut buf).unwrap();
        assert!(finished.load(Ordering::Acquire));
        drop(equal_reader);
        assert_eq!(org_reader, b" world");
    }

    #[test]
    fn test_not_enough() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());

        {
            let (mut equal_reader, finished) = EqualReader::new(org_reader.by_ref(), 5);

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
            assert!(!finished.load(Ordering::Acquire));
        }

        // the rest of the body is left where it is
        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, "ello world");
    }
}
