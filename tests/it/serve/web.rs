//! The web page at `/`: its assets and headers over HTTP, thumbnails of
//! uploads, and the whole page driven in a real headless Chromium.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{config, scripted, Server};

fn get(server: &Server, path: &str) -> reqwest::Response {
    crate::util::block_on(server.client().get(server.url(path)).send()).unwrap()
}

#[test]
fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_csp() {
    let (server, _) = super::with_fake();
    for (path, kind, needle) in [
        ("/", "text/html", "<script type=\"module\" src=\"/assets/app.js\">"),
        ("/assets/app.js", "text/javascript", "Authorization"),
        ("/assets/style.css", "text/css", "#timeline"),
    ] {
        let response = get(&server, path);
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind), "{path}: {headers:?}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = crate::util::block_on(response.text()).unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}");
        assert!(!body.contains("http://") && !body.contains("https://cdn"), "{path} loads from elsewhere");
    }
    assert_eq!(get(&server, "/assets/secret.txt").status(), 404);
    assert_eq!(get(&server, "/assets/..%2FCargo.toml").status(), 404);
}

/// Put the clip in the server's uploads dir as an upload; its id.
fn upload(server: &Server, clip: &Path) -> String {
    let dir = server.app.server.uploads_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let id = vidgate::serve::uploads::new_id();
    std::fs::copy(clip, dir.join(format!("{id}.mp4"))).unwrap();
    id
}

#[test]
fn a_thumbnail_is_a_jpeg_of_the_frame_at_that_time_bounded_in_width() {
    let (server, _) = super::with_fake();
    let id = upload(&server, &crate::util::testsrc_10s());
    let response = get(&server, &format!("/v1/videos/{id}/thumbnail?t_ms=4000&width=160"));
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    let jpeg = crate::util::block_on(response.bytes()).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    // The SOF0 marker carries the frame's size: 160x120 from 320x240.
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("no SOF0 marker");
    let height = u16::from_be_bytes([jpeg[sof + 5], jpeg[sof + 6]]);
    let width = u16::from_be_bytes([jpeg[sof + 7], jpeg[sof + 8]]);
    assert_eq!((width, height), (160, 120));
    // Past the end: the last frame, not an error.
    assert_eq!(get(&server, &format!("/v1/videos/{id}/thumbnail?t_ms=99999999")).status(), 200);
    let too_wide = get(&server, &format!("/v1/videos/{id}/thumbnail?width=4000"));
    assert_eq!(too_wide.status(), 400);
    let body: Value = crate::util::block_on(too_wide.json()).unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("640"), "{body}");
    assert_eq!(get(&server, "/v1/videos/00ff/thumbnail").status(), 404);
    assert_eq!(get(&server, "/v1/videos/..%2F..%2Fetc/thumbnail").status(), 404);
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

fn chromedriver() -> Option<Driver> {
    let Some(binary) = which("chromedriver") else { return crate::util::require("chromedriver") };
    if which("chromium").is_none() {
        return crate::util::require("chromium");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver does not start");
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

/// Poll `script` in the page until it returns true.
async fn wait_until(client: &fantoccini::Client, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if client.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let error = client.execute("return document.getElementById('error').textContent", vec![]).await;
            panic!("{what}: not within 60 s (page error: {error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_page_uploads_a_clip_runs_a_timeline_seeks_the_player_and_downloads_srt() {
    use fantoccini::{ClientBuilder, Locator};
    let Some(driver) = chromedriver() else { return };
    let fake = std::sync::Arc::new(scripted("fake"));
    let server = Server::start(config("fake"), vec![("fake", fake.clone() as _)]);
    let clip = crate::util::testsrc_10s();
    let downloads = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            "prefs": {
                "download.default_directory": downloads.path(),
                "download.prompt_for_download": false,
            },
        },
    });
    let capabilities = capabilities.as_object().unwrap().clone();
    crate::util::block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .unwrap();
        client.goto(&server.base).await.unwrap();
        client.find(Locator::Css("#key")).await.unwrap().send_keys(&server.key).await.unwrap();
        client.find(Locator::Css("#file")).await.unwrap().send_keys(clip.to_str().unwrap()).await.unwrap();
        client.find(Locator::Css("input[value=timeline]")).await.unwrap().click().await.unwrap();
        client.find(Locator::Css("#start")).await.unwrap().click().await.unwrap();

        wait_until(
            &client,
            "the timeline with a thumbnail per event",
            "const items = document.querySelectorAll('#timeline li'); \
             return items.length > 0 && [...items].every(li => { \
               const img = li.querySelector('img'); return img && img.complete && img.naturalWidth > 0; })",
        )
        .await;
        let progress: Value = client
            .execute(
                "return ['p-status','p-frames','p-units','p-spent'].map(id => document.getElementById(id).textContent)",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(progress[0], "done", "{progress}");
        assert_ne!(progress[1], "0", "no frames sampled shown: {progress}");
        assert_eq!(progress[2], json!(fake.calls().to_string()), "{progress}");
        assert_eq!(progress[3], json!(format!("${:.4}", fake.calls() as f64 * super::UNIT_USD)), "{progress}");
        // The key went out as a header and was kept, never in a URL.
        let stored = client.execute("return localStorage.getItem('vidgate.key')", vec![]).await.unwrap();
        assert_eq!(stored, json!(server.key));

        wait_until(&client, "the player's metadata", "return document.getElementById('player').readyState >= 1").await;
        let events = client.find_all(Locator::Css("#timeline li button")).await.unwrap();
        let event = events.last().unwrap();
        let start_ms: f64 = event.attr("data-start-ms").await.unwrap().unwrap().parse().unwrap();
        // Move the player away from the event first, so the click must seek.
        let away = if start_ms >= 5000.0 { 1.0 } else { 8.0 };
        client
            .execute("document.getElementById('player').currentTime = arguments[0]", vec![json!(away)])
            .await
            .unwrap();
        wait_until(
            &client,
            "the player away from the event",
            &format!("return Math.abs(document.getElementById('player').currentTime - {away}) < 0.01"),
        )
        .await;
        event.click().await.unwrap();
        let at = client.execute("return document.getElementById('player').currentTime", vec![]).await.unwrap();
        let at = at.as_f64().unwrap();
        assert!((at - start_ms / 1000.0).abs() <= 0.1, "the player is at {at} s, the event at {start_ms} ms");

        client.find(Locator::Css(".downloads button[data-format=srt]")).await.unwrap().click().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let srt = loop {
            let done = std::fs::read_dir(downloads.path())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "srt"));
            if let Some(path) = done {
                break std::fs::read_to_string(path).unwrap();
            }
            assert!(Instant::now() < deadline, "no SRT downloaded within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(srt.starts_with("1\n00:00:00,000 --> "), "{srt}");
        assert!(srt.contains("a test pattern"), "{srt}");
        client.close().await.unwrap();
    });
}
