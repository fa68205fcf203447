//! Uploaded videos: streamed to a file in the uploads dir as they arrive,
//! never held whole in memory, size-capped, and removed when the upload
//! fails halfway (a client that goes away leaves nothing behind).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::ApiError;

/// A video stored in the uploads dir.
#[derive(Debug, Clone, Serialize)]
pub struct Upload {
    /// The id clients name it by: its file name without the extension.
    pub id: String,
    #[serde(skip)]
    pub path: PathBuf,
    pub bytes: u64,
}

/// A file being written; removed unless [`Partial::keep`] is called.
struct Partial {
    path: Option<PathBuf>,
}

impl Partial {
    fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A new upload id: 128 random bits, hex.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Write `body` to a new file in `dir`, named `<id>.<ext>`, refusing more
/// than `max_bytes`. The file is removed when the stream fails or stops
/// (the client went away) or the limit is passed.
///
/// # Errors
/// 413 over the limit; 400 when the body breaks off; 500 when the file cannot be written.
pub async fn save<S, E>(dir: &Path, ext: &str, max_bytes: u64, body: S) -> Result<Upload, ApiError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let ext = extension(ext);
    tokio::fs::create_dir_all(dir).await.map_err(|e| server_error(dir, &e))?;
    let id = new_id();
    let path = dir.join(format!("{id}.{ext}"));
    let partial = Partial { path: Some(path.clone()) };
    let mut file = tokio::fs::File::create(&path).await.map_err(|e| server_error(&path, &e))?;
    let mut written = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("the upload broke off after {written} bytes: {e}")))?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(too_large(max_bytes));
        }
        file.write_all(&chunk).await.map_err(|e| server_error(&path, &e))?;
    }
    file.flush().await.map_err(|e| server_error(&path, &e))?;
    if written == 0 {
        return Err(ApiError::invalid("the upload is empty (0 bytes)"));
    }
    Ok(Upload { id, path: partial.keep(), bytes: written })
}

/// A file name extension made safe: at most 8 ASCII letters and digits,
/// lower case; `bin` when none is left.
pub fn extension(ext: &str) -> String {
    let ext: String = ext.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    if ext.is_empty() {
        "bin".to_string()
    } else {
        ext.to_ascii_lowercase()
    }
}

/// The upload `id` in `dir`, if there is one.
pub fn find(dir: &Path, id: &str) -> Option<Upload> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().find_map(|entry| {
        let path = entry.path();
        let stem = path.file_stem()?.to_str()?;
        (stem == id).then(|| Upload { id: id.to_string(), bytes: entry.metadata().map_or(0, |m| m.len()), path })
    })
}

/// [`find`], for a run that reads the upload: its last use becomes now, so
/// retention keeps it longer (a file that cannot be touched is kept as long
/// as it was).
pub fn find_for_use(dir: &Path, id: &str) -> Option<Upload> {
    let found = find(dir, id)?;
    let _ = std::fs::File::options()
        .append(true)
        .open(&found.path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    Some(found)
}

/// 413, naming the limit and its setting.
pub fn too_large(max_bytes: u64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("the video is larger than the server takes: {max_bytes} bytes at most (server.max_upload_bytes)"),
    )
    .code("upload_too_large")
}

fn server_error(path: &Path, e: &std::io::Error) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        format!("cannot write the upload to {}: {e}", path.display()),
    )
}
