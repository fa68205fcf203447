//! The native jobs API over real HTTP.

use vidgate::schema::{Task, VideoRequest};
use vidgate::serve::runs::Submission;

use super::{with_fake, Server};
use crate::util::block_on;

#[test]
fn runs_are_listed_newest_first_and_an_unknown_one_cannot_be_cancelled() {
    let (server, _) = with_fake();
    let clip = crate::util::testsrc_10s();
    let mut ids = vec![];
    for _ in 0..2 {
        let run = block_on(server.app.runs.submit(Submission {
            request: VideoRequest::new(&clip, Task::Timeline),
            account: Some(server.account.clone()),
        }))
        .unwrap();
        block_on(run.finished());
        ids.push(run.id);
    }
    let body: serde_json::Value =
        block_on(async { server.client().get(server.url("/v1/runs")).send().await?.json().await }).unwrap();
    let listed: Vec<i64> = body["data"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(listed, vec![ids[1], ids[0]], "{body}");
    let status =
        block_on(async { server.client().delete(server.url("/v1/runs/999999")).send().await.map(|r| r.status()) })
            .unwrap();
    assert_eq!(status, 404);
    let body: serde_json::Value = block_on(async {
        server.client().delete(server.url(&format!("/v1/runs/{}", ids[0]))).send().await?.json().await
    })
    .unwrap();
    assert_eq!(body["id"], ids[0], "{body}");
    assert_eq!(body["status"], "done", "a finished run stays done: {body}");
}

#[test]
fn a_done_run_gives_its_report_in_four_formats() {
    let (server, _) = with_fake();
    let clip = crate::util::testsrc_10s();
    let run = block_on(server.app.runs.submit(Submission {
        request: VideoRequest::new(&clip, Task::Timeline),
        account: Some(server.account.clone()),
    }))
    .unwrap();
    block_on(run.finished());
    for (ext, kind, needle) in [
        ("json", "application/json", "\"events\""),
        ("md", "text/markdown", "#"),
        ("srt", "application/x-subrip", "-->"),
        ("vtt", "text/vtt", "WEBVTT"),
    ] {
        let (status, ct, body) = block_on(async {
            let r = server.client().get(server.url(&format!("/v1/runs/{}/report.{ext}", run.id))).send().await?;
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            Ok::<_, reqwest::Error>((r.status(), ct, r.text().await?))
        })
        .unwrap();
        assert_eq!(status, 200, "{ext}: {body}");
        assert!(ct.starts_with(kind), "{ext}: {ct}");
        assert!(body.contains(needle), "{ext}: {body}");
    }
}

/// `curl` with the server's key, its output.
fn curl(server: &Server, args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {}", server.key)])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn curl_uploads_a_clip_starts_a_run_and_reads_its_events_to_the_end() {
    let (server, fake) = super::with_fake();
    let clip = crate::util::testsrc_10s();
    let uploaded: serde_json::Value =
        serde_json::from_str(&curl(&server, &["-F", &format!("file=@{}", clip.display()), &server.url("/v1/videos")]))
            .unwrap();
    assert_eq!(uploaded["probe"]["duration_ms"], 10_000, "{uploaded}");
    let body = serde_json::json!({ "video": uploaded["id"], "task": "timeline" }).to_string();
    let started: serde_json::Value = serde_json::from_str(&curl(
        &server,
        &["-H", "content-type: application/json", "-d", &body, &server.url("/v1/runs")],
    ))
    .unwrap();
    let id = started["id"].as_i64().unwrap_or_else(|| panic!("{started}"));
    let events = curl(&server, &["-N", &server.url(&format!("/v1/runs/{id}/events"))]);
    let kinds: Vec<&str> = events.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(kinds.last(), Some(&"end"), "{events}");
    assert!(events.contains("\"kind\":\"planned\"") && events.contains("\"kind\":\"done\""), "{events}");
    assert!(events.contains("{\"status\":\"done\"}"), "{events}");
    assert!(fake.calls() > 0);
    // A key the body does not have, a task without its question, an upload that is no video.
    for (body, needle) in [
        (serde_json::json!({ "video": uploaded["id"], "task": "timeline", "colour": 1 }), "colour"),
        (serde_json::json!({ "video": uploaded["id"], "task": "ask" }), "question"),
    ] {
        let answer =
            curl(&server, &["-H", "content-type: application/json", "-d", &body.to_string(), &server.url("/v1/runs")]);
        assert!(answer.contains("invalid_request_error") && answer.contains(needle), "{answer}");
    }
    let text = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(text.path(), "not a video").unwrap();
    let refused = curl(&server, &["-F", &format!("file=@{}", text.path().display()), &server.url("/v1/videos")]);
    assert!(refused.contains("not a video"), "{refused}");
    let left = std::fs::read_dir(server.app.server.uploads_dir()).unwrap().count();
    assert_eq!(left, 1, "only the clip is kept");
}
