//! The `local` file store: a directory (`metadata.rootPath`): put, get, list, delete and
//! metadata of files named by relative paths under the root. Names that would leave the
//! root (absolute, `..`, NUL) are refused. The file system is touched on the backend pool's
//! blocking threads, never on a shard; reads and writes go in chunks, so big files stream with
//! backpressure instead of sitting in memory.

use std::{
    path::{Component as PathPart, Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use bytes::Bytes;
use layotto_core::backend::BackendHandle;

use super::{CHUNK, FileEntry, FilePage, FileStat, FileStore, Upload};
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// Builds one from its entry: `rootPath`, the directory names are confined to; without it, as
/// LayOtto's local store, a name is a path of the file system.
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn FileStore>> {
    let root = entry.take("rootPath").map(PathBuf::from);
    Some(Arc::new(LocalFileStore::new(
        entry.component().to_owned(),
        root,
        entry.backend().clone(),
    )))
}

/// A file store on a local directory (or, without a root, on the whole file system).
pub struct LocalFileStore {
    component: String,
    root: Option<PathBuf>,
    backend: BackendHandle,
}

impl LocalFileStore {
    /// A store for `component` (for messages) under `root`, or taking names as paths.
    pub fn new(component: String, root: Option<PathBuf>, backend: BackendHandle) -> Self {
        Self {
            component,
            root,
            backend,
        }
    }

    /// The path of `name`: under the root, refusing names that would leave it; without a
    /// root, the name itself (not empty, no NUL).
    pub fn resolve(&self, name: &str, allow_root: bool) -> Result<PathBuf, ApiError> {
        let Some(root) = &self.root else {
            if name.contains('\0') || name.is_empty() {
                return Err(ApiError::InvalidArgument(format!(
                    "file name \"{name}\" must be a path"
                )));
            }
            return Ok(PathBuf::from(name));
        };
        let relative = Path::new(name);
        let plain = relative
            .components()
            .all(|component| matches!(component, PathPart::Normal(_) | PathPart::CurDir));
        if name.contains('\0') || !plain || (name.is_empty() && !allow_root) {
            return Err(ApiError::InvalidArgument(format!(
                "file name \"{name}\" must be a relative path inside the store (no .., no leading /)"
            )));
        }
        Ok(root.join(relative))
    }

    /// Runs blocking file work on the backend pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let done = self
            .backend
            .submit(async move { tokio::task::spawn_blocking(work).await })
            .await?;
        let component = self.component.clone();
        match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::NotFound(format!("{component}: no such file")))
            }
            Ok(Err(err)) => Err(ApiError::internal_because(component, err)),
            Err(err) => Err(ApiError::internal_because(component, err)),
        }
    }
}

#[async_trait(?Send)]
impl Component for LocalFileStore {
    /// Creates the root directory if needed and removes the parts of puts that a process
    /// no longer alive left behind (killed mid-stream).
    async fn start(&self) -> Result<(), ApiError> {
        let Some(root) = self.root.clone() else {
            return Ok(());
        };
        std::fs::create_dir_all(&root).map_err(|err| {
            ApiError::internal_because(
                format!("{}: cannot create {}", self.component, root.display()),
                err,
            )
        })?;
        let removed = remove_stale_parts(&root).map_err(|err| {
            ApiError::internal_because(
                format!("{}: cannot clean {}", self.component, root.display()),
                err,
            )
        })?;
        if removed > 0 {
            tracing::info!(
                "{}: removed {removed} unfinished put(s) of stopped processes",
                self.component
            );
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl FileStore for LocalFileStore {
    /// Bytes go to a temporary file that `finish_put` moves into place, so readers never see
    /// half a file.
    async fn start_put(&self, name: &str) -> Result<Upload, ApiError> {
        let target = self.resolve(name, false)?;
        let file_name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file");
        let temporary = target.with_file_name(part_name(file_name, std::process::id()));
        let (t, p) = (target.clone(), temporary.clone());
        self.blocking(move || {
            if let Some(parent) = t.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::File::create(&p).map(drop)
        })
        .await?;
        Ok(Upload {
            target,
            staging: temporary,
        })
    }

    /// Appends `data` to a put in progress.
    async fn append(&self, upload: &Upload, data: Bytes) -> Result<(), ApiError> {
        let temporary = upload.staging.clone();
        self.blocking(move || {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&temporary)?
                .write_all(&data)
        })
        .await
    }

    /// Moves a finished put into place (or removes it when `keep` is false).
    async fn finish_put(&self, upload: Upload, keep: bool) -> Result<(), ApiError> {
        let Upload {
            target,
            staging: temporary,
        } = upload;
        self.blocking(move || {
            if keep {
                std::fs::rename(&temporary, &target)
            } else {
                std::fs::remove_file(&temporary)
            }
        })
        .await
    }

    /// Up to [`CHUNK`] bytes of `name` from `offset` (empty at the end).
    async fn read_chunk(&self, name: &str, offset: u64) -> Result<Vec<u8>, ApiError> {
        let path = self.resolve(name, false)?;
        self.blocking(move || {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = std::fs::File::open(&path)?;
            if file.metadata()?.is_dir() {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut chunk = Vec::with_capacity(CHUNK);
            file.take(CHUNK as u64).read_to_end(&mut chunk)?;
            Ok(chunk)
        })
        .await
    }

    /// Size and modification time of `name` (a file or a directory), with LayOtto's metadata:
    /// `FileMode` (Go's `os.FileMode` in decimal) and `IsDir` (`true`/`false`).
    async fn meta(&self, name: &str) -> Result<FileStat, ApiError> {
        let path = self.resolve(name, false)?;
        self.blocking(move || {
            use std::os::unix::fs::MetadataExt;
            let metadata = std::fs::metadata(&path)?;
            let facts = [
                ("FileMode", go_file_mode(metadata.mode()).to_string()),
                ("IsDir", metadata.is_dir().to_string()),
            ];
            Ok(FileStat {
                size: metadata.len(),
                last_modified: rfc3339(metadata.modified()?),
                metadata: facts
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), vec![value]))
                    .collect(),
            })
        })
        .await
    }

    /// Deletes `name`.
    async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let path = self.resolve(name, false)?;
        self.blocking(move || std::fs::remove_file(&path)).await
    }

    /// Files under the directory `name` (the root when empty), by name, `page_size` at a time
    /// after `marker`.
    async fn list(
        &self,
        name: &str,
        page_size: usize,
        marker: String,
    ) -> Result<FilePage, ApiError> {
        let dir = self.resolve(name, true)?;
        self.blocking(move || {
            let mut entries = Vec::new();
            let mut pending = vec![dir.clone()];
            while let Some(current) = pending.pop() {
                for entry in std::fs::read_dir(&current)? {
                    let entry = entry?;
                    let metadata = entry.metadata()?;
                    let path = entry.path();
                    let relative = path
                        .strip_prefix(&dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    if relative
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| part_writer(n).is_some())
                    {
                        continue; // a put in progress
                    }
                    if metadata.is_dir() {
                        pending.push(path);
                    } else if relative > marker {
                        entries.push(FileEntry {
                            name: relative,
                            size: metadata.len(),
                            last_modified: rfc3339(metadata.modified()?),
                        });
                    }
                }
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            let truncated = entries.len() > page_size;
            entries.truncate(page_size);
            let next_marker = truncated
                .then(|| entries.last().map(|e| e.name.clone()))
                .flatten();
            Ok(FilePage {
                entries,
                next_marker,
            })
        })
        .await
    }
}

/// The name of the temporary file a put of `target` by process `pid` writes.
fn part_name(target: &str, pid: u32) -> String {
    format!(".{target}.part-{pid}")
}

/// The writer's pid if `name` is a put's temporary file.
fn part_writer(name: &str) -> Option<u32> {
    let (base, pid) = name.strip_prefix('.')?.rsplit_once(".part-")?;
    if base.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Removes every put part under `root` whose writer process is gone; answers how many.
fn remove_stale_parts(root: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(part_writer) else {
                continue;
            };
            let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
            if !alive {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// A Unix `st_mode` as Go's `os.FileMode` (what LayOtto's local store reports): the permission
/// bits, and Go's own bits for the file type and setuid/setgid/sticky, as Go's `os.Stat` fills
/// them on Linux.
fn go_file_mode(st_mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const NAMED_PIPE: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHAR_DEVICE: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    let kind = match st_mode & 0o170_000 {
        0o060_000 => DEVICE,
        0o020_000 => DEVICE | CHAR_DEVICE,
        0o040_000 => DIR,
        0o010_000 => NAMED_PIPE,
        0o120_000 => SYMLINK,
        0o140_000 => SOCKET,
        _ => 0,
    };
    let special = [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)]
        .into_iter()
        .filter(|(unix, _)| st_mode & unix != 0)
        .fold(0, |bits, (_, go)| bits | go);
    (st_mode & 0o777) | kind | special
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_parts_of_dead_writers_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a");
        std::fs::create_dir_all(&nested).unwrap();
        // pid 0 is never a process's; our own pid is alive.
        let dead = nested.join(part_name("x.txt", 0));
        let ours = dir.path().join(part_name("y.txt", std::process::id()));
        let file = dir.path().join("z.part-0");
        for path in [&dead, &ours, &file] {
            std::fs::write(path, b"data").unwrap();
        }
        assert_eq!(remove_stale_parts(dir.path()).unwrap(), 1);
        assert!(!dead.exists() && ours.exists() && file.exists());
        assert_eq!(part_writer(".x.part-12"), Some(12));
        assert_eq!(part_writer("x.part-12"), None);
        assert_eq!(part_writer("..part-12"), None);
    }

    #[test]
    fn unix_modes_become_go_file_modes() {
        assert_eq!(go_file_mode(0o100_644), 0o644);
        assert_eq!(go_file_mode(0o040_755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(0o104_755), (1 << 23) | 0o755);
        assert_eq!(go_file_mode(0o041_777), (1 << 31) | (1 << 20) | 0o777);
        assert_eq!(go_file_mode(0o020_666), (1 << 26) | (1 << 21) | 0o666);
    }

    #[test]
    fn names_must_stay_inside_the_root() {
        let pool = layotto_core::backend::BackendPool::start(1, 4).unwrap();
        let store = LocalFileStore::new(
            "file \"f\"".into(),
            Some("/srv/files".into()),
            pool.handle(),
        );
        assert_eq!(
            store.resolve("a/b.txt", false).unwrap(),
            Path::new("/srv/files/a/b.txt")
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\0b"] {
            assert!(store.resolve(bad, false).is_err(), "{bad:?}");
        }
        assert_eq!(store.resolve("", true).unwrap(), Path::new("/srv/files"));
        // Without a root, as LayOtto's, a name is a path.
        let paths = LocalFileStore::new("file \"p\"".into(), None, pool.handle());
        assert_eq!(
            paths.resolve("/tmp/x/../y.txt", false).unwrap(),
            Path::new("/tmp/x/../y.txt")
        );
        assert!(paths.resolve("", true).is_err() && paths.resolve("a\0b", false).is_err());
    }
}
