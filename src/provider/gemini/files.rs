//! The Files API: the resumable upload (start a session, send the bytes in
//! chunks with their offsets, finalize), polling the file until it is
//! ACTIVE, deleting it, and the record of files uploaded before, kept on disk
//! so a video is not sent twice within its lifetime. All HTTP goes through
//! the provider's executor, passed in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::status::{self, FileInfo, FileState};
use crate::provider::executor::{Executor, ERROR_BODY_CAP};
use crate::provider::{ErrorClass, ProviderError};

/// Chunks are a multiple of the protocol's 256 KiB granularity.
const CHUNK: usize = 8 << 20;
/// Uploaded files live 48 hours; reuse one only with an hour to spare.
const FILE_LIFETIME: Duration = Duration::from_secs(47 * 3600);

/// A file the API holds, ready to be referred to.
#[derive(Debug, Clone)]
pub(super) struct Uploaded {
    pub name: String,
    pub uri: String,
    pub mime_type: String,
    /// Uploaded by this call rather than reused.
    pub fresh: bool,
}

/// The Files API of one API root.
#[derive(Debug)]
pub(super) struct Files {
    /// The Developer API's root (Vertex AI has no Files API).
    root: String,
    /// How long a file may stay PROCESSING before frames are sent instead.
    timeout: Duration,
    cache: Mutex<UploadCache>,
}

impl Files {
    pub fn new(root: String, timeout: Duration, cache_path: Option<PathBuf>) -> Self {
        Self { root, timeout, cache: Mutex::new(UploadCache::load(cache_path)) }
    }

    /// Keep the record of uploaded files at `path`.
    pub fn set_cache_path(&self, path: PathBuf) {
        *self.cache() = UploadCache::load(Some(path));
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, UploadCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The video at `path` (`size` bytes of `mime`) as an ACTIVE file: reused
    /// when uploaded before, else uploaded and waited for. `None` when it
    /// cannot be used (processing failed or took too long). `sha256` is its
    /// content hash when the caller has it; else the file is read for it.
    pub async fn ensure(
        &self,
        exec: &Executor,
        path: &Path,
        size: u64,
        mime: &str,
        sha256: Option<&str>,
    ) -> Result<Option<Uploaded>, ProviderError> {
        let content = match sha256 {
            Some(known) => known.to_string(),
            None => crate::models::hash_file(path)
                .await
                .map_err(|e| exec.error(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?,
        };
        // An upload belongs to one API root (and so one project's files).
        let hash = format!("{} {content}", self.root);
        if let Some(cached) = self.cache().fresh(&hash) {
            tracing::info!(provider = %exec.provider(), file = %cached.name, "reusing an uploaded file");
            return Ok(Some(Uploaded {
                name: cached.name,
                uri: cached.uri,
                mime_type: cached.mime_type,
                fresh: false,
            }));
        }
        let file = self.upload(exec, path, size, mime).await?;
        let Some(file) = self.wait_active(exec, file).await? else {
            return Ok(None);
        };
        self.cache().remember(&hash, &file, mime);
        Ok(Some(Uploaded { name: file.name, uri: file.uri, mime_type: mime.to_string(), fresh: true }))
    }

    /// Upload `path` (`size` bytes of `mime`); the file as the API describes it.
    async fn upload(&self, exec: &Executor, path: &Path, size: u64, mime: &str) -> Result<FileInfo, ProviderError> {
        let unreadable =
            |e: std::io::Error| exec.error(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display()));
        let start = exec
            .request(Method::POST, format!("{}/upload/v1beta/files", self.root))
            .header("X-Goog-Upload-Protocol", "resumable")
            .header("X-Goog-Upload-Command", "start")
            .header("X-Goog-Upload-Header-Content-Length", size.to_string())
            .header("X-Goog-Upload-Header-Content-Type", mime)
            .unbilled()
            .cap(ERROR_BODY_CAP)
            .json(&serde_json::json!({"file": {"display_name": "vidgate upload"}}))?
            .send()
            .await?;
        let session = start
            .headers
            .get("x-goog-upload-url")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| exec.error(ErrorClass::Transient, "the upload start gave no x-goog-upload-url"))?;

        let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
        let mut offset: u64 = 0;
        let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).await.map_err(unreadable)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            let last = offset + filled as u64 >= size || filled < buf.len();
            // The session URL carries its own authority: the key is not sent there.
            let answer = exec
                .request(Method::POST, &session)
                .header("X-Goog-Upload-Command", if last { "upload, finalize" } else { "upload" })
                .header("X-Goog-Upload-Offset", offset.to_string())
                .bytes(buf[..filled].to_vec())
                .unauthorised()
                .unbilled()
                .cap(1 << 20)
                .send()
                .await?;
            offset += filled as u64;
            if last {
                return status::parse_file(&answer.body)
                    .map_err(|e| exec.error(ErrorClass::Transient, format!("the finished upload: {e}")));
            }
        }
    }

    /// Poll until the file is ACTIVE. `None` when it FAILED or the wait ran out
    /// (the file is then deleted, so nothing is left behind).
    async fn wait_active(&self, exec: &Executor, mut file: FileInfo) -> Result<Option<FileInfo>, ProviderError> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            match file.state {
                FileState::Active => return Ok(Some(file)),
                FileState::Failed => {
                    tracing::warn!(provider = %exec.provider(), file = %file.name, error = %exec.redact(&format!("{:?}", file.error)), "the upload FAILED processing: sending frames");
                    self.delete(exec, &file.name).await;
                    return Ok(None);
                }
                FileState::Processing | FileState::Unknown => {}
            }
            if started.elapsed() + delay > self.timeout {
                tracing::warn!(provider = %exec.provider(), file = %file.name, "the upload is still PROCESSING after {:?}: sending frames", self.timeout);
                self.delete(exec, &file.name).await;
                return Ok(None);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
            let answer = exec
                .request(Method::GET, format!("{}/v1beta/{}", self.root, file.name))
                .unbilled()
                .cap(ERROR_BODY_CAP)
                .send()
                .await?;
            file = status::parse_file(&answer.body).map_err(|e| exec.error(ErrorClass::Transient, e))?;
        }
    }

    /// Delete an uploaded file; a failure is logged, not returned.
    pub async fn delete(&self, exec: &Executor, name: &str) {
        let url = format!("{}/v1beta/{name}", self.root);
        match exec.request(Method::DELETE, url).unbilled().cap(ERROR_BODY_CAP).send().await {
            Ok(_) => self.cache().forget(name),
            Err(e) => {
                tracing::warn!(provider = %exec.provider(), file = name, "could not delete an uploaded file: {e}")
            }
        }
    }
}

/// The mime type of a video, by its extension.
pub(super) fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("webm") => "video/webm",
        Some("mov") => "video/quicktime",
        Some("avi") => "video/x-msvideo",
        Some("mkv") => "video/x-matroska",
        Some("mpg" | "mpeg") => "video/mpeg",
        Some("flv") => "video/x-flv",
        Some("wmv") => "video/x-ms-wmv",
        Some("3gp") => "video/3gpp",
        _ => "video/mp4",
    }
}

/// Files uploaded before, by content hash, kept on disk across runs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UploadCache {
    #[serde(skip)]
    path: Option<PathBuf>,
    files: HashMap<String, CachedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    name: String,
    uri: String,
    mime_type: String,
    uploaded_unix: u64,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl UploadCache {
    fn load(path: Option<PathBuf>) -> Self {
        let mut cache: UploadCache = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        cache.path = path;
        cache
    }

    fn fresh(&self, hash: &str) -> Option<CachedFile> {
        self.files.get(hash).filter(|f| now_unix().saturating_sub(f.uploaded_unix) < FILE_LIFETIME.as_secs()).cloned()
    }

    fn remember(&mut self, hash: &str, file: &FileInfo, mime: &str) {
        let now = now_unix();
        self.files.retain(|_, f| now.saturating_sub(f.uploaded_unix) < FILE_LIFETIME.as_secs());
        self.files.insert(
            hash.to_string(),
            CachedFile {
                name: file.name.clone(),
                uri: file.uri.clone(),
                mime_type: mime.to_string(),
                uploaded_unix: now,
            },
        );
        self.save();
    }

    fn forget(&mut self, name: &str) {
        self.files.retain(|_, f| f.name != name);
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec_pretty(self) {
            let tmp = path.with_extension("json.tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}
