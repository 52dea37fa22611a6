//! An in-memory store, for tests and for dry runs. Nothing survives the process, which is the
//! one way it departs from the `Store` contract ("durable on return").

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use super::{Cleaned, ObjectInfo, Store, check_key, check_prefix, slice_range};
use crate::error::{Error, Result};

/// Objects in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        check_key(key)?;
        self.objects
            .write()
            .expect("poisoned")
            .insert(key.to_string(), data.to_vec());
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        check_key(key)?;
        self.objects
            .read()
            .expect("poisoned")
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("object {key} not found")))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        let map = self.objects.read().expect("poisoned");
        let data = map
            .get(key)
            .ok_or_else(|| Error::not_found(format!("object {key} not found")))?;
        slice_range(key, data, offset, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        let map = self.objects.read().expect("poisoned");
        Ok(map
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectInfo {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect())
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.objects.write().expect("poisoned").remove(key);
        Ok(())
    }

    /// Nothing to clean: a streamed object is buffered in the writer, never stored half-way.
    fn clean_temporaries(&self, prefix: &str, _older_than: Duration) -> Result<Cleaned> {
        check_prefix(prefix)?;
        Ok(Cleaned::default())
    }
}
