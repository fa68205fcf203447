//! The Files API's resumable upload: start a session, send the bytes in
//! chunks with their offsets, finalize, and read back the file.

use std::path::Path;

use tokio::io::AsyncReadExt;

use super::client::Gemini;
use super::status::{self, FileInfo};
use crate::provider::http;
use crate::provider::{ErrorClass, ProviderError};

/// Chunks are a multiple of the protocol's 256 KiB granularity.
const CHUNK: usize = 8 << 20;

/// Upload `path` (`size` bytes of `mime`); the file as the API describes it.
pub(super) async fn upload(
    g: &Gemini,
    root: &str,
    path: &Path,
    size: u64,
    mime: &str,
) -> Result<FileInfo, ProviderError> {
    let fail = |class, message: String| ProviderError::new(g.id_str(), class, message);
    let start = g
        .authorise(
            g.http()
                .post(format!("{root}/upload/v1beta/files"))
                .header("X-Goog-Upload-Protocol", "resumable")
                .header("X-Goog-Upload-Command", "start")
                .header("X-Goog-Upload-Header-Content-Length", size.to_string())
                .header("X-Goog-Upload-Header-Content-Type", mime)
                .json(&serde_json::json!({"file": {"display_name": "vidgate upload"}})),
        )
        .await?;
    let response = start.send().await.map_err(|e| g.send_error(&e, false))?;
    if !response.status().is_success() {
        return Err(g.status_error(response).await);
    }
    let session = response
        .headers()
        .get("x-goog-upload-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| fail(ErrorClass::Transient, "the upload start gave no x-goog-upload-url".into()))?;

    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| fail(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?;
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; CHUNK.min(size.max(1) as usize)];
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| fail(ErrorClass::Fatal, format!("{}: cannot read it: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let last = offset + filled as u64 >= size || filled < buf.len();
        // The session URL carries its own authority: the key is not sent there.
        let response = g
            .http()
            .post(&session)
            .header("X-Goog-Upload-Command", if last { "upload, finalize" } else { "upload" })
            .header("X-Goog-Upload-Offset", offset.to_string())
            .body(buf[..filled].to_vec())
            .send()
            .await
            .map_err(|e| g.send_error(&e, false))?;
        if !response.status().is_success() {
            return Err(g.status_error(response).await);
        }
        offset += filled as u64;
        if last {
            let body =
                http::read_capped(response, 1 << 20).await.map_err(|e| fail(ErrorClass::Transient, e.to_string()))?;
            return status::parse_file(&body)
                .map_err(|e| fail(ErrorClass::Transient, format!("the finished upload: {e}")));
        }
    }
}
