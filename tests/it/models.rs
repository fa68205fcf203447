//! `vidgate models pull` against a local server: resume, size and sha256.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use vidgate::models::{self, CatalogueModel, ModelFile, ModelKind};

use crate::util::*;

/// A file server that honours `Range`, and cuts the first answer short once.
async fn serve(content: Arc<Vec<u8>>, cut_first_after: Option<usize>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let content = content.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let from: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("range: bytes="))
                    .and_then(|r| r.trim_end_matches('-').trim().trim_end_matches('-').parse().ok())
                    .unwrap_or(0);
                let body = &content[from.min(content.len())..];
                let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\ncontent-type: application/octet-stream\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
                match cut_first_after {
                    Some(cut) if n == 0 => {
                        let _ = sock.write_all(&body[..cut]).await;
                        let _ = sock.shutdown().await;
                    }
                    _ => {
                        let _ = sock.write_all(body).await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), served)
}

fn test_model(sha256: Option<String>, size: Option<u64>) -> CatalogueModel {
    CatalogueModel {
        description: "test".into(),
        kind: ModelKind::Vision,
        default: false,
        files: vec![ModelFile { role: "model".into(), path: "org/repo/resolve/main/tiny.gguf".into(), size, sha256 }],
    }
}

fn content() -> Arc<Vec<u8>> {
    Arc::new((0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect())
}

#[test]
fn an_interrupted_download_resumes_and_is_verified() {
    runtime().block_on(async {
        let data = content();
        let sha = hex::encode(sha2::Sha256::digest(&data[..]));
        let (base, served) = serve(data.clone(), Some(1_000_000)).await;
        let cache = tempfile::tempdir().unwrap();
        let model = test_model(Some(sha.clone()), Some(data.len() as u64));

        let err = models::pull("tiny", &model, &base, cache.path()).await.unwrap_err();
        assert!(err.to_string().contains("run again to resume"), "{err}");
        let part = cache.path().join("tiny/tiny.part");
        // What arrived before the cut is kept (a reset may lose the last bytes in flight).
        let kept = std::fs::metadata(&part).unwrap().len();
        assert!(kept > 0 && kept <= 1_000_000, "kept {kept} bytes");
        assert!(models::installed(cache.path(), "tiny", &model).is_none());

        let paths = models::pull("tiny", &model, &base, cache.path()).await.unwrap();
        assert_eq!(std::fs::read(&paths[0]).unwrap(), *data);
        assert!(!part.exists());
        assert_eq!(served.load(Ordering::SeqCst), 2, "the second request resumed");
        assert_eq!(models::installed(cache.path(), "tiny", &model).unwrap().0, paths[0]);

        // Already there: nothing is fetched again.
        models::pull("tiny", &model, &base, cache.path()).await.unwrap();
        assert_eq!(served.load(Ordering::SeqCst), 2);
    });
}

/// Pull `model` and gather the progress events it sent.
async fn pull_reporting(
    model: &CatalogueModel,
    base: &str,
    cache: &std::path::Path,
) -> (Result<Vec<std::path::PathBuf>, models::ModelError>, Vec<models::PullProgress>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let result = models::pull_with_progress("tiny", model, base, cache, Some(&tx)).await;
    drop(tx);
    let mut events = Vec::new();
    while let Some(event) = rx.recv().await {
        events.push(event);
    }
    (result, events)
}

/// The byte counts of the `Received` events, which must rise.
fn received(events: &[models::PullProgress]) -> Vec<u64> {
    let bytes: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            models::PullProgress::Received { file, bytes } => {
                assert_eq!(file, "tiny.gguf");
                Some(*bytes)
            }
            _ => None,
        })
        .collect();
    assert!(bytes.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
    bytes
}

#[test]
fn a_download_reports_its_progress_as_events_and_resumes_from_what_it_kept() {
    use models::PullProgress::{Started, Verified};
    runtime().block_on(async {
        let data = content();
        let total = Some(data.len() as u64);
        let (base, _) = serve(data.clone(), Some(1_000_000)).await;
        let cache = tempfile::tempdir().unwrap();
        let model = test_model(Some(hex::encode(sha2::Sha256::digest(&data[..]))), total);
        let file = || "tiny.gguf".to_string();

        let (result, events) = pull_reporting(&model, &base, cache.path()).await;
        result.unwrap_err();
        assert_eq!(events[0], Started { file: file(), bytes: 0, total });
        let kept = std::fs::metadata(cache.path().join("tiny/tiny.part")).unwrap().len();
        assert_eq!(received(&events[1..]).last(), Some(&kept), "{events:?}");
        assert!(!events.contains(&Verified { file: file() }));

        let (result, events) = pull_reporting(&model, &base, cache.path()).await;
        result.unwrap();
        assert_eq!(events[0], Started { file: file(), bytes: kept, total });
        assert_eq!(received(&events[1..events.len() - 1]).last(), total.as_ref());
        assert_eq!(events.last(), Some(&Verified { file: file() }));

        let (result, events) = pull_reporting(&model, &base, cache.path()).await;
        result.unwrap();
        assert_eq!(events, [], "nothing to fetch, nothing to report");
    });
}

#[test]
fn a_wrong_checksum_or_size_is_refused_and_removed() {
    runtime().block_on(async {
        let data = content();
        let (base, _) = serve(data.clone(), None).await;
        let cache = tempfile::tempdir().unwrap();
        let wrong = test_model(Some("0".repeat(64)), None);
        let err = models::pull("tiny", &wrong, &base, cache.path()).await.unwrap_err().to_string();
        assert!(err.contains("sha256") && err.contains(&"0".repeat(64)) && err.contains("removed"), "{err}");
        assert!(!cache.path().join("tiny/tiny.gguf").exists() && !cache.path().join("tiny/tiny.part").exists());

        let short = test_model(None, Some(data.len() as u64 + 1));
        let err = models::pull("tiny", &short, &base, cache.path()).await.unwrap_err().to_string();
        assert!(err.contains("the server offers 3000000 bytes, the catalogue says 3000001"), "{err}");
    });
}

#[test]
fn models_list_and_an_unknown_pull_on_the_command_line() {
    let cache = tempfile::tempdir().unwrap();
    let out = vidgate().args(["models", "list"]).env("VIDGATE__MODELS__CACHE_DIR", cache.path()).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("smolvlm2-256m-video-instruct") && text.contains("(default)"), "{text}");
    // The download size, from the catalogue's pins: 175056352 + 103771680 bytes.
    assert!(text.lines().any(|l| l.starts_with("smolvlm2-256m-video-instruct") && l.contains(" 0.28 GB ")), "{text}");
    assert!(text.contains(&cache.path().display().to_string()), "{text}");
    let out = vidgate().args(["models", "pull", "nope"]).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success() && err.contains("no model called `nope`"), "{err}");
}
