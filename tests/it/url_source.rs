//! URL sources against servers on loopback (allow-listed for the test) that
//! serve a clip, redirect to forbidden addresses, loop, send without end, or
//! stall. Every refusal happens before a byte is stored, or stops the
//! download and deletes what was written.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use vidgate::config::{Config, FetchConfig, Protocol, ProviderProfile};
use vidgate::fetch::{fetch, FetchError};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::provider::scripted::ScriptedProvider;
use vidgate::schema::{Task, VideoRequest, VideoSource};

use crate::util::*;

/// A small HTTP/1.1 server whose answer depends on the path.
pub(crate) async fn server(clip: PathBuf) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let clip = clip.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let _ = answer(&mut sock, &path, &clip).await;
            });
        }
    });
    addr
}

async fn answer(sock: &mut tokio::net::TcpStream, path: &str, clip: &Path) -> std::io::Result<()> {
    let redirect = |to: &str| format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n\r\n");
    match path {
        "/clip.mp4" => {
            let body = std::fs::read(clip)?;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: {}\r\n\r\n", body.len());
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&body).await
        }
        "/hop" => sock.write_all(redirect("/clip.mp4").as_bytes()).await,
        p if p.starts_with("/signed?") => sock.write_all(redirect("/gone.mp4?X-Amz-Signature=SIGTWO").as_bytes()).await,
        "/metadata" => sock.write_all(redirect("http://169.254.169.254/latest/meta-data/").as_bytes()).await,
        "/private" => sock.write_all(redirect("http://10.0.0.7:8080/video.mp4").as_bytes()).await,
        "/loop" => sock.write_all(redirect("/loop").as_bytes()).await,
        "/huge" => sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000000\r\n\r\n").await,
        "/endless" => {
            sock.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await?;
            let chunk = [7u8; 65536];
            loop {
                sock.write_all(b"10000\r\n").await?;
                sock.write_all(&chunk).await?;
                sock.write_all(b"\r\n").await?;
            }
        }
        "/stall" => {
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n0123456789").await?;
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(())
        }
        _ => sock.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await,
    }
}

fn fetch_config(temp: &Path) -> FetchConfig {
    FetchConfig {
        allow: vec!["127.0.0.1".into()],
        max_bytes: 4 << 20,
        stall_timeout_s: 1.0,
        timeout_s: 20.0,
        temp_dir: Some(temp.to_path_buf()),
        ..FetchConfig::default()
    }
}

fn left_behind(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn a_url_is_fetched_described_and_its_download_deleted() {
    let temp = tempfile::tempdir().unwrap();
    let addr = block_on(server(testsrc_10s()));
    let mut config = Config::builtin().unwrap();
    config.fetch = fetch_config(temp.path());
    config
        .providers
        .insert("a".into(), ProviderProfile { protocol: Some(Protocol::Openai), ..ProviderProfile::default() });
    config.router.chain = vec!["a".into()];
    let a = Arc::new(ScriptedProvider::new("a"));
    let gateway = Gateway::with_journal(config, Journal::in_memory().unwrap()).with_provider("a", a.clone());
    let mut request = VideoRequest::new("unused", Task::Describe);
    request.source = VideoSource::Url { url: format!("http://{addr}/hop") };
    let report = block_on(gateway.run(request)).unwrap();
    assert!(!report.observations.is_empty());
    assert!(report.story.is_some());
    assert!(left_behind(temp.path()).is_empty(), "the download is deleted: {:?}", left_behind(temp.path()));
}

#[test]
fn forbidden_addresses_are_refused_before_connecting_and_after_every_redirect() {
    let temp = tempfile::tempdir().unwrap();
    let addr = block_on(server(testsrc_10s()));
    let config = fetch_config(temp.path());
    let refused = |path: &str, config: &FetchConfig| block_on(fetch(&format!("http://{addr}{path}"), config, None));
    for (path, want) in
        [("/metadata", "169.254.169.254, a cloud metadata address"), ("/private", "10.0.0.7, a private address")]
    {
        let started = Instant::now();
        let err = refused(path, &config).unwrap_err();
        assert!(matches!(err, FetchError::Forbidden { .. }), "{path}: {err}");
        assert!(err.to_string().contains(want) && err.to_string().contains("fetch.allow"), "{path}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused without trying to connect");
    }
    // Without the allow-list, loopback itself is refused.
    let strict = FetchConfig { allow: Vec::new(), ..config.clone() };
    let err = refused("/clip.mp4", &strict).unwrap_err();
    assert!(err.to_string().contains("127.0.0.1, a loopback address"), "{err}");
    // A name is judged by what it resolves to.
    let err = block_on(fetch("http://localhost:1/x.mp4", &strict, None)).unwrap_err();
    assert!(err.to_string().contains("localhost resolves to") && err.to_string().contains("loopback"), "{err}");
    assert!(left_behind(temp.path()).is_empty());
}

#[test]
fn limits_on_redirects_bytes_and_time_hold() {
    let temp = tempfile::tempdir().unwrap();
    let addr = block_on(server(testsrc_10s()));
    let config = fetch_config(temp.path());
    let get = |path: &str| block_on(fetch(&format!("http://{addr}{path}"), &config, None));

    let err = get("/loop").unwrap_err();
    assert!(err.to_string().contains("more than 5 redirects (fetch.max_redirects)"), "{err}");
    let err = get("/huge").unwrap_err();
    assert!(err.to_string().contains("larger than the limit of 4194304 bytes (fetch.max_bytes)"), "{err}");
    let started = Instant::now();
    let err = get("/endless").unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let started = Instant::now();
    let err = get("/stall").unwrap_err();
    assert!(err.to_string().contains("no data arrived within 1 s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let err = get("/missing").unwrap_err();
    assert!(err.to_string().ends_with("HTTP 404"), "{err}");
    assert!(left_behind(temp.path()).is_empty(), "partial downloads are deleted: {:?}", left_behind(temp.path()));

    for url in ["file:///etc/passwd", "ftp://example.com/a.mp4", "http://"] {
        let err = block_on(fetch(url, &config, None)).unwrap_err();
        assert!(matches!(err, FetchError::BadUrl { .. }), "{url}: {err}");
    }
    let ok = get("/clip.mp4").unwrap();
    assert_eq!(ok.bytes, std::fs::metadata(testsrc_10s()).unwrap().len());
    let path = ok.path().to_path_buf();
    drop(ok);
    assert!(!path.exists());
}

#[test]
fn the_cli_takes_a_url_and_refuses_a_forbidden_one_in_one_line() {
    let out = vidgate()
        .args(["describe", "--provider", "openai", "http://169.254.169.254/latest/meta-data/video.mp4"])
        .env("OPENAI_API_KEY", "sk-not-used")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("refused: 169.254.169.254 resolves to 169.254.169.254, a cloud metadata address"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn credentials_in_a_url_are_never_printed_logged_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let addr = block_on(server(testsrc_10s()));
    let journal = dir.path().join("journal.sqlite3");
    let config = dir.path().join("vidgate.toml");
    std::fs::write(&config, format!("[fetch]\nallow = [\"127.0.0.1\"]\n\n[journal]\npath = {journal:?}\n")).unwrap();
    let url = format!("http://user:PWSECRET@{addr}/signed?sig=SIGONE&X-Amz-Credential=CREDONE");
    let out = vidgate()
        .args(["-vv", "describe", "--provider", "openai", "--config"])
        .arg(&config)
        .arg(&url)
        .env("OPENAI_API_KEY", "sk-not-used")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("following a redirect") && err.contains("X-Amz-Signature=***"),
        "the -vv redirect line: {err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains(&format!("http://***@{addr}/gone.mp4?X-Amz-Signature=***: HTTP 404")), "{err}");
    let stored = String::from_utf8_lossy(&std::fs::read(&journal).unwrap()).into_owned();
    assert!(stored.contains(&format!("http://***@{addr}/signed?sig=***&X-Amz-Credential=***")), "runs.request");
    for secret in ["PWSECRET", "SIGONE", "CREDONE", "SIGTWO"] {
        assert!(!err.contains(secret), "{secret} in stderr: {err}");
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let path = file.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{secret} in {}", path.display());
        }
    }
}
