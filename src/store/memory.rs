//! `storageType: "memory"`: nothing is persisted; the tables' in-memory index is the store.

use std::io;

use super::{Backend, Durable};

pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn load(&self, _kind: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
        Ok(Vec::new())
    }

    fn write(&self, _kind: &str, _id: &str, _bytes: &[u8], _durable: Durable) -> io::Result<()> {
        Ok(())
    }

    fn remove(&self, _kind: &str, _id: &str, _durable: Durable) -> io::Result<()> {
        Ok(())
    }

    fn quarantine(&self, _kind: &str, id: &str) -> io::Result<String> {
        Ok(id.to_string())
    }
}
