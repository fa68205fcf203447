//! Native video over the OpenAI-compatible protocol, on the command line
//! against a fake server in vLLM's shapes: the `video_url` part with its
//! `mm_processor_kwargs`, a time range sent as a stream-copied cut whose times
//! come back shifted, and a server that refuses video sent frames instead.
//!
//! The real `llama-server` (b11434) takes video as `input_video` too: see
//! `tests/llama_server.rs`.

use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};
use wiremock::{Request, Respond, ResponseTemplate};

use super::{chat, completion, server, KEY};
use crate::util::*;

/// Answers a video with one timeline event at 1-2 s of what it was sent, or
/// refuses it as a server without video support does; answers frames and
/// text in the frames fake's way. Keeps every request body.
struct VideoServer {
    refuse_video: bool,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Respond for VideoServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        self.seen.lock().unwrap().push(body.clone());
        let parts = body["messages"][0]["content"].as_array().cloned().unwrap_or_default();
        if parts.iter().any(|p| p["type"] == "video_url") {
            if self.refuse_video {
                // llama-server's words for a model without video.
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": {"code": 400, "message": "video input is not supported", "type": "invalid_request_error"}}));
            }
            return ResponseTemplate::new(200).set_body_json(completion(
                r#"{"events":[{"start":"00:01.000","end":"00:02.000","text":"The pattern moves."}]}"#,
            ));
        }
        let frames = parts.iter().filter(|p| p["type"] == "image_url").count();
        ResponseTemplate::new(200).set_body_json(completion(&format!("{frames} frames of a test pattern.")))
    }
}

fn config(dir: &std::path::Path, uri: &str) -> std::path::PathBuf {
    let config = dir.join("vidgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"[sampling]
width = 256

[providers.vllm]
protocol = "openai"
base_url = "{uri}/v1"
api_key_env = "VIDGATE_VIDEO_KEY"
model = "Qwen/Qwen2.5-VL-7B-Instruct"
frames_per_call = 4
[providers.vllm.price]
input_per_mtok = 1.0
output_per_mtok = 2.0
[providers.vllm.models."Qwen/Qwen2.5-VL-7B-Instruct"]
vision = true
native_video = true
video_part = "video_url"
video_sampling = "mm_processor_kwargs"
video_fps = 2.0
video_max_frames = 768
video_tokens_per_frame = 384
"#
        ),
    )
    .unwrap();
    config
}

fn describe(refuse_video: bool, args: &[&str]) -> (Value, Vec<Value>) {
    let rt = runtime();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = rt.block_on(async {
        let server = server().await;
        chat().respond_with(VideoServer { refuse_video, seen: seen.clone() }).mount(&server).await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let out = vidgate()
        .args(["describe", "--provider", "vllm", "--json", "--config"])
        .arg(config(dir.path(), &server.uri()))
        .args(args)
        .arg(testsrc_10s())
        .env("VIDGATE_VIDEO_KEY", KEY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = seen.lock().unwrap().clone();
    (report, seen)
}

fn video_bytes(body: &Value) -> Vec<u8> {
    let url = body["messages"][0]["content"][1]["video_url"]["url"].as_str().expect("a video part");
    let b64 = url.strip_prefix("data:video/mp4;base64,").expect("an MP4 data URL");
    base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
}

#[test]
fn a_describe_sends_the_video_with_its_sampling() {
    let (report, seen) = describe(false, &["--fps", "1"]);
    let video = &seen[0];
    assert_eq!(video["messages"][0]["content"][0]["type"], "text", "the prompt first");
    assert_eq!(video_bytes(video), std::fs::read(testsrc_10s()).unwrap(), "the file itself");
    assert_eq!(video["mm_processor_kwargs"], json!({"fps": 1.0}), "the plan's rate");
    let events: Vec<(u64, u64)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["start_ms"].as_u64().unwrap(), e["end_ms"].as_u64().unwrap()))
        .collect();
    assert_eq!(events, [(1_000, 2_000)], "{report}");
}

#[test]
fn a_time_range_arrives_as_a_cut_and_its_times_come_back_shifted() {
    let (report, seen) = describe(false, &["--start", "4", "--end", "7"]);
    let cut = video_bytes(&seen[0]);
    assert!(cut.len() < std::fs::read(testsrc_10s()).unwrap().len() / 2, "a cut of {} bytes", cut.len());
    let starts: Vec<u64> =
        report["events"].as_array().unwrap().iter().map(|e| e["start_ms"].as_u64().unwrap()).collect();
    assert_eq!(starts, [5_000], "1 s into the cut is 5 s into the video: {report}");
}

#[test]
fn a_server_that_refuses_video_is_sent_frames() {
    let (report, seen) = describe(true, &["--fps", "0.5"]);
    assert!(seen[0]["messages"][0]["content"][1]["type"] == "video_url");
    let frames: usize = seen[1..]
        .iter()
        .map(|b| {
            b["messages"][0]["content"].as_array().map_or(0, |p| p.iter().filter(|p| p["type"] == "image_url").count())
        })
        .sum();
    assert_eq!(frames, 5, "10 s at 0.5 fps, after the refusal");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("video input is not supported"), "{warnings}");
    assert!(warnings.contains("the video itself cannot be used by vllm: sent frames"), "{warnings}");
}
