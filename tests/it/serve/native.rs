//! The native jobs API over real HTTP.

use vidgate::schema::{Task, VideoRequest};
use vidgate::serve::runs::Submission;

use super::with_fake;
use crate::util::block_on;

#[test]
fn runs_are_listed_newest_first_and_an_unknown_one_cannot_be_cancelled() {
    let (server, _) = with_fake();
    let clip = crate::util::testsrc_10s();
    let mut ids = vec![];
    for _ in 0..2 {
        let run = block_on(
            server.app.runs.submit(Submission { request: VideoRequest::new(&clip, Task::Timeline), account: None }),
        )
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
    let run = block_on(
        server.app.runs.submit(Submission { request: VideoRequest::new(&clip, Task::Timeline), account: None }),
    )
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
