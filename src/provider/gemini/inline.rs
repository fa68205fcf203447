//! A `generateContent` body with the video inline, streamed rather than held:
//! the JSON up to the video's data, the file's base64 read in pieces, and the
//! JSON after it, with the length known before the first byte is sent. A video
//! of N bytes costs a piece of memory, not the file, its base64 and the JSON
//! around it at once; each send (a resend after a refused token, a retry)
//! reads the file again.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use tokio::io::AsyncReadExt;

use crate::provider::executor::SourceError;

/// File bytes read at a time: a multiple of 3, so that no piece's base64
/// but the last ends in padding, and the pieces join into the file's base64.
const PIECE: u64 = 192 << 10;

/// The parts of one request's body.
#[derive(Debug, Clone)]
pub(super) struct InlineBody {
    head: Bytes,
    tail: Bytes,
    path: PathBuf,
    size: u64,
}

/// A marker for the video's data in a request written before its data is
/// read: random, so that no prompt can hold it.
pub(super) fn marker() -> String {
    format!("vidgate-inline-video-{:032x}", rand::random::<u128>())
}

impl InlineBody {
    /// The body of `json`, a request written with `marker` in place of the
    /// base64 of the `size` bytes at `path`. `None` when `json` does not hold
    /// the marker exactly once.
    pub fn new(json: Vec<u8>, marker: &str, path: &Path, size: u64) -> Option<Self> {
        let text = std::str::from_utf8(&json).ok()?;
        let (at, _) = text.match_indices(marker).next()?;
        if text.match_indices(marker).count() != 1 {
            return None;
        }
        let mut head = Bytes::from(json);
        let tail = head.split_off(at).slice(marker.len()..);
        Some(Self { head, tail, path: path.to_path_buf(), size })
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.head.len() as u64 + self.size.div_ceil(3) * 4 + self.tail.len() as u64
    }

    /// The body, to be sent once: the file is opened when the first piece is
    /// wanted. It breaks off with a [`SourceError`] naming the file when the
    /// file cannot be read, or is no longer as long as announced.
    pub fn body(&self) -> reqwest::Body {
        let (head, tail) = (self.head.clone(), self.tail.clone());
        let pieces = stream::unfold(Pieces::Start { path: self.path.clone(), size: self.size }, Pieces::next);
        let all = stream::once(async move { Ok::<_, SourceError>(head) })
            .chain(pieces)
            .chain(stream::once(async move { Ok(tail) }));
        reqwest::Body::wrap_stream(all)
    }
}

/// Where the base64 of the file has got to.
enum Pieces {
    Start { path: PathBuf, size: u64 },
    Reading { file: tokio::fs::File, path: PathBuf, size: u64, left: u64 },
    Done,
}

/// `path` failed while it was sent, announced as `size` bytes.
fn failed(path: &Path, size: u64, why: impl std::fmt::Display) -> SourceError {
    SourceError::new(
        path.display().to_string(),
        format!("cannot read it whole while sending it (announced as {size} bytes; did it change?): {why}"),
    )
}

impl Pieces {
    async fn next(self) -> Option<(Result<Bytes, SourceError>, Pieces)> {
        let (mut file, path, size, left) = match self {
            Pieces::Done => return None,
            Pieces::Reading { file, path, size, left } => (file, path, size, left),
            Pieces::Start { path, size } => match tokio::fs::File::open(&path).await {
                Ok(file) => (file, path, size, size),
                Err(e) => return Some((Err(failed(&path, size, e)), Pieces::Done)),
            },
        };
        if left == 0 {
            // All that was announced is sent: the file must end here, or
            // the body would be a cut copy of a file that grew.
            let mut more = [0u8; 1];
            return match file.read(&mut more).await {
                Ok(0) => None,
                Ok(_) => Some((Err(failed(&path, size, "it is longer now")), Pieces::Done)),
                Err(e) => Some((Err(failed(&path, size, e)), Pieces::Done)),
            };
        }
        let mut piece = vec![0u8; left.min(PIECE) as usize];
        if let Err(e) = file.read_exact(&mut piece).await {
            let why = match e.kind() {
                io::ErrorKind::UnexpectedEof => "it is shorter now".to_string(),
                _ => e.to_string(),
            };
            return Some((Err(failed(&path, size, why)), Pieces::Done));
        }
        let left = left - piece.len() as u64;
        let text = base64::engine::general_purpose::STANDARD.encode(&piece);
        Some((Ok(Bytes::from(text)), Pieces::Reading { file, path, size, left }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(body: &InlineBody) -> Result<Vec<u8>, String> {
        use http_body_util::BodyExt;
        body.body().collect().await.map(|c| c.to_bytes().to_vec()).map_err(|e| crate::provider::http::error_chain(&e))
    }

    /// Sizes around the piece, to each padding: the body is the JSON with the
    /// whole file's base64 where the marker was, as long as announced.
    #[tokio::test]
    async fn the_streamed_body_is_the_json_with_the_files_base64() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0, 1, 2, 3, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 2] {
            let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
            let path = dir.path().join("v.mp4");
            std::fs::write(&path, &bytes).unwrap();
            let mark = marker();
            let json = serde_json::to_vec(&serde_json::json!({"a": [{"data": mark}], "prompt": "ünïcode"})).unwrap();
            let body = InlineBody::new(json, &mark, &path, size).unwrap();
            let got = collect(&body).await.unwrap();
            let want = serde_json::to_vec(&serde_json::json!({
                "a": [{"data": base64::engine::general_purpose::STANDARD.encode(&bytes)}], "prompt": "ünïcode"
            }))
            .unwrap();
            assert_eq!(got, want, "{size} bytes");
            assert_eq!(body.len(), want.len() as u64, "{size} bytes");
            assert_eq!(collect(&body).await.unwrap(), want, "sent again: the file is read again");
        }
    }

    #[tokio::test]
    async fn a_file_shorter_or_longer_than_announced_breaks_the_body_instead_of_sending_it_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        std::fs::write(&path, [1u8; 10]).unwrap();
        let mark = marker();
        let body = InlineBody::new(format!("[\"{mark}\"]").into_bytes(), &mark, &path, 11).unwrap();
        let err = collect(&body).await.unwrap_err();
        assert!(err.contains("v.mp4") && err.contains("shorter"), "the body breaks off: {err}");
        // Longer than announced: the body breaks off too, rather than send a cut copy.
        let body = InlineBody::new(format!("[\"{mark}\"]").into_bytes(), &mark, &path, 9).unwrap();
        let err = collect(&body).await.unwrap_err();
        assert!(err.contains("v.mp4") && err.contains("longer"), "the body breaks off: {err}");
        std::fs::remove_file(&path).unwrap();
        let err = collect(&InlineBody::new(format!("[\"{mark}\"]").into_bytes(), &mark, &path, 10).unwrap())
            .await
            .unwrap_err();
        assert!(err.contains("v.mp4"), "the body breaks off: {err}");
        assert!(InlineBody::new(b"[]".to_vec(), &mark, &path, 1).is_none(), "no marker");
        let twice = format!("[\"{mark}\", \"{mark}\"]").into_bytes();
        assert!(InlineBody::new(twice, &mark, &path, 1).is_none(), "two markers");
    }
}
