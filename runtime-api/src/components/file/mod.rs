//! The file building block: the [`FileStore`] contract (streamed put, chunked get, paged list,
//! delete, metadata of files named by relative paths) and the registry of its backend types
//! (`local`: a directory). Stores are shared by all shards; their I/O runs on the backend pool.

mod local;

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    components::{component::Component, registry::Registry},
    error::ApiError,
};

pub use local::LocalFileStore;

/// Bytes per chunk read from a file.
pub const CHUNK: usize = 256 * 1024;

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the listed directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, RFC 3339.
    pub last_modified: String,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePage {
    /// The entries, by name.
    pub entries: Vec<FileEntry>,
    /// Where the next page starts (the last name returned), when there is one.
    pub next_marker: Option<String>,
}

/// A put in progress: where the file goes and where its bytes are staged until it is complete.
#[derive(Debug)]
pub struct Upload {
    /// The file's final place.
    pub target: PathBuf,
    /// Where the bytes go until `finish_put`.
    pub staging: PathBuf,
}

/// A file store.
#[async_trait(?Send)]
pub trait FileStore: Component {
    /// Starts writing `name`; readers see nothing of it until [`FileStore::finish_put`].
    async fn start_put(&self, name: &str) -> Result<Upload, ApiError>;
    /// Appends `data` to a put in progress.
    async fn append(&self, upload: &Upload, data: Bytes) -> Result<(), ApiError>;
    /// Makes a finished put visible (or discards it when `keep` is false).
    async fn finish_put(&self, upload: Upload, keep: bool) -> Result<(), ApiError>;
    /// Up to [`CHUNK`] bytes of `name` from `offset` (empty at the end).
    async fn read_chunk(&self, name: &str, offset: u64) -> Result<Vec<u8>, ApiError>;
    /// Size and modification time (RFC 3339) of `name`.
    async fn meta(&self, name: &str) -> Result<(u64, String), ApiError>;
    /// Deletes `name`.
    async fn delete(&self, name: &str) -> Result<(), ApiError>;
    /// Files under the directory `name` (the root when empty), by name, `page_size` at a time
    /// after `marker`.
    async fn list(
        &self,
        name: &str,
        page_size: usize,
        marker: String,
    ) -> Result<FilePage, ApiError>;
}

/// The backend types of `file`.
pub(crate) const BACKENDS: Registry<dyn FileStore> = Registry {
    label: "file",
    kind: "file store",
    default_type: None,
    fields: &[],
    backends: &[("local", local::build)],
};
