//! The translation, checked against recorded and hand-written bodies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::media::Frame;
use crate::media::FrameData;
use crate::schema::Task;

const RECORDED: &str = include_str!("../../../../fixtures/recorded/openai/chat_completions_image.json");

/// A non-2xx answer through the one classification, read as this protocol reads it.
fn http_error(provider: &str, status: u16, body: &str, retry_after: Option<Duration>, cap: Duration) -> ProviderError {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(wait) = retry_after {
        headers.insert("retry-after", wait.as_secs().to_string().parse().unwrap());
    }
    crate::provider::classify(provider, status, body, error_facts(body.as_bytes()).as_ref(), &headers, cap)
}

fn frame(index: u32, pts_ms: u64, bytes: &[u8]) -> Frame {
    Frame { index, pts_ms, width: 512, height: 288, data: FrameData::Jpeg(bytes.to_vec().into()) }
}

fn job(input: JobInput) -> Job {
    Job {
        task: Task::Describe,
        input,
        prompt: Arc::from("Describe what happens."),
        prompt_version: Arc::from("frames@1"),
        max_output_tokens: 300,
        span: None,
    }
}

fn frames_job() -> Job {
    let frames = vec![frame(0, 0, &[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9]), frame(1, 61_500, &[0xFF, 0xD8, 0xFF, 0xD9])];
    job(JobInput::Frames(Arc::from(frames)))
}

fn request_json(job: &Job, options: &RequestOptions) -> Value {
    serde_json::to_value(build_request(job, "gpt-4o", options, "openai").expect("builds")).expect("serializes")
}

#[test]
fn each_frame_follows_its_timestamp() {
    let options = RequestOptions { detail: ImageDetail::Low, ..RequestOptions::default() };
    let req = request_json(&frames_job(), &options);
    assert_eq!(req["model"], "gpt-4o");
    assert_eq!(req["max_completion_tokens"], 300);
    assert!(req.get("max_tokens").is_none() && req.get("response_format").is_none(), "{req}");
    assert_eq!(req["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(req["messages"][0]["role"], "user");
    let parts = req["messages"][0]["content"].as_array().expect("parts");
    let kinds: Vec<&str> = parts.iter().map(|p| p["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(kinds, ["text", "text", "image_url", "text", "image_url"]);
    assert_eq!(parts[0], json!({"type": "text", "text": "Describe what happens."}));
    assert_eq!(parts[1]["text"], "Frame at 00:00.000:");
    assert_eq!(parts[3]["text"], "Frame at 01:01.500:");
    for (part, want) in
        [(&parts[2], &[0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9][..]), (&parts[4], &[0xFF, 0xD8, 0xFF, 0xD9][..])]
    {
        assert_eq!(part["image_url"]["detail"], "low");
        let url = part["image_url"]["url"].as_str().expect("url");
        let b64 = url.strip_prefix("data:image/jpeg;base64,").expect("a JPEG data URL");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"), want);
    }
}

#[test]
fn options_choose_the_cap_field_and_the_schema() {
    let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"], "additionalProperties": false});
    let options = RequestOptions {
        detail: ImageDetail::High,
        token_limit: TokenLimitField::MaxTokens,
        response_schema: Some(ResponseSchema { name: "observation".into(), schema: schema.clone() }),
    };
    let req = request_json(&frames_job(), &options);
    assert_eq!(req["max_tokens"], 300);
    assert!(req.get("max_completion_tokens").is_none());
    assert_eq!(
        req["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "observation", "schema": schema, "strict": true}})
    );
    assert_eq!(req["messages"][0]["content"][2]["image_url"]["detail"], "high");
}

/// The body sent is byte for byte what serde writes for the request, images,
/// text that needs escaping, both cap fields and a schema included.
#[test]
fn the_body_is_the_request_as_serde_writes_it() {
    let schema = json!({"type": "object", "properties": {"q\"uote": {"type": "string"}}});
    let with_schema = RequestOptions {
        detail: ImageDetail::High,
        token_limit: TokenLimitField::MaxTokens,
        response_schema: Some(ResponseSchema { name: "timeline".into(), schema }),
    };
    let odd = Job { prompt: Arc::from("Say \"what\" \\ here\n\u{1}\u{2028}é 🎬 </script>"), ..frames_job() };
    // Many frames, a larger image: base64 with `+` and `/` in it.
    let pixels: Vec<u8> = (0..3000u32).map(|i| (i * 7919 % 256) as u8).collect();
    let big = job(JobInput::Frames((0..20).map(|i| frame(i, u64::from(i) * 500, &pixels)).collect()));
    let text = job(JobInput::Text("obs \"1\"\tobs 2".into()));
    for (job, options) in [
        (&frames_job(), &RequestOptions::default()),
        (&odd, &with_schema),
        (&big, &RequestOptions { detail: ImageDetail::Low, ..RequestOptions::default() }),
        (&text, &with_schema),
    ] {
        let request = build_request(job, "gpt-4o", options, "openai").expect("builds");
        let body = request.to_json().expect("writes");
        let reference = serde_json::to_vec(&request).expect("serializes");
        assert_eq!(String::from_utf8(body).expect("UTF-8"), String::from_utf8(reference).expect("UTF-8"));
    }
}

/// A frame's base64 is made once: a retry (the same job again) and a
/// fallback or batch (a copy of the frames) send the same encoding.
#[test]
fn a_frame_is_encoded_once_for_all_its_requests() {
    let urls = |job: &Job| -> Vec<Arc<str>> {
        let request = build_request(job, "gpt-4o", &RequestOptions::default(), "openai").expect("builds");
        let Content::Parts(parts) = &request.messages[0].content else { panic!("parts") };
        let urls = parts.iter().filter_map(|p| match p {
            Part::ImageUrl { image_url } => Some(image_url.url.base64().clone()),
            _ => None,
        });
        urls.collect()
    };
    let job = frames_job();
    let JobInput::Frames(frames) = &job.input else { unreachable!() };
    let first = urls(&job);
    let again = urls(&job);
    let copied = urls(&Job { input: JobInput::Frames(frames.to_vec().into()), ..job.clone() });
    assert_eq!(first.len(), 2);
    for (i, frame) in frames.iter().enumerate() {
        let FrameData::Jpeg(jpeg) = &frame.data else { panic!("JPEG") };
        for (what, other) in [("the frame's own", &jpeg.base64()), ("a retry's", &again[i]), ("a copy's", &copied[i])] {
            assert!(Arc::ptr_eq(&first[i], other), "frame {i}: {what} base64 was encoded again");
        }
    }
}

#[test]
fn text_jobs_are_one_string_and_bad_jobs_are_refused() {
    let req = request_json(&job(JobInput::Text("obs 1\nobs 2".into())), &RequestOptions::default());
    assert_eq!(req["messages"][0]["content"], "Describe what happens.\n\nobs 1\nobs 2");

    let o = RequestOptions::default();
    let video = job(JobInput::Video {
        path: "a.mp4".into(),
        range: None,
        duration_ms: 1,
        size_bytes: 1,
        fps: None,
        sha256: None,
    });
    assert_eq!(build_request(&video, "m", &o, "p").map(|_| ()).unwrap_err().class, ErrorClass::FallBack);
    let rgb = job(JobInput::Frames(Arc::from(vec![Frame { data: FrameData::Rgb(vec![0; 3]), ..frame(0, 0, &[]) }])));
    assert_eq!(build_request(&rgb, "m", &o, "p").map(|_| ()).unwrap_err().class, ErrorClass::FallBack);
    let empty = job(JobInput::Frames(Arc::from(Vec::new())));
    assert_eq!(build_request(&empty, "m", &o, "p").map(|_| ()).unwrap_err().class, ErrorClass::Fatal);
}

#[test]
fn the_recorded_openai_answer_parses() {
    let answer = parse_response(RECORDED.as_bytes(), &frames_job(), "openai").expect("parses");
    assert_eq!(answer.text, "The fruit in the image is a kiwi.");
    assert_eq!(answer.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(answer.usage, Some(TokenUsage { input_tokens: 1119, output_tokens: 10, cached_input_tokens: 0 }));
    assert!(!answer.truncated);
}

/// llama-server's answer (shared/contracts/llamacpp/recorded/chat_text.json, trimmed).
#[test]
fn a_llama_server_answer_at_its_cap_is_kept_and_marked() {
    let body = br#"{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":"A rabbit"}}],"model":"models/gemma-3-270m-q4_k_m.gguf","usage":{"completion_tokens":40,"prompt_tokens":36,"total_tokens":76,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    let answer = parse_response(body, &frames_job(), "llama-server").expect("parses");
    assert!(answer.truncated && answer.text == "A rabbit");
    assert_eq!(answer.usage.map(|u| u.input_tokens), Some(36));
}

fn parse_err(body: &str) -> ProviderError {
    parse_response(body.as_bytes(), &frames_job(), "openai").map(|_| ()).unwrap_err()
}

fn with_message(message: Value, finish: &str) -> String {
    json!({"choices": [{"index": 0, "finish_reason": finish, "message": message}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).to_string()
}

#[test]
fn refusals_filters_and_empty_answers_fall_back() {
    let refused = parse_err(&with_message(
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."}),
        "stop",
    ));
    assert_eq!(refused.class, ErrorClass::FallBack);
    assert!(refused.message.contains("refused: I can't help with that."), "{refused}");
    assert!(refused.maybe_billed);

    let filtered = parse_err(&with_message(json!({"role": "assistant", "content": "partial"}), "content_filter"));
    assert_eq!(filtered.class, ErrorClass::FallBack);
    assert!(filtered.message.contains("content filter"), "{filtered}");

    let null = parse_err(&with_message(json!({"role": "assistant", "content": null}), "stop"));
    assert!(null.should_fall_back() && null.message.contains("empty"), "{null}");
    let spent = parse_err(&with_message(json!({"role": "assistant", "content": ""}), "length"));
    assert!(spent.message.contains("output cap of 300 tokens"), "{spent}");
    assert!(parse_err(r#"{"choices": []}"#).should_fall_back());
}

#[test]
fn garbage_is_transient() {
    for body in ["<html>502 Bad Gateway</html>", "", r#"{"choices": "#, r#"{"choices": 3}"#] {
        let e = parse_err(body);
        assert_eq!(e.class, ErrorClass::Transient, "{body}: {e}");
        assert_eq!(e.body.as_deref(), Some(body));
    }
}

#[test]
fn error_bodies_name_their_message() {
    let openai = r#"{"error": {"message": "Invalid image.", "type": "invalid_request_error", "param": null, "code": "invalid_image"}}"#;
    let api = parse_error_body(openai.as_bytes()).expect("an error body");
    assert_eq!(
        (api.kind.as_deref(), api.code.as_deref(), api.param.as_deref()),
        (Some("invalid_request_error"), Some("invalid_image"), None)
    );
    assert_eq!(api.summary(), "Invalid image. (invalid_image)");
    // Inside a 200, it falls back with the message.
    let e = parse_err(openai);
    assert!(e.should_fall_back() && e.message.contains("Invalid image."), "{e}");

    // llama-server: a numeric code (shared/contracts/llamacpp/recorded/chat_image_no_mmproj.txt).
    let llama = r#"{"error":{"code":500,"message":"image input is not supported - hint: if this is unexpected, you may need to provide the mmproj","type":"server_error"}}"#;
    assert_eq!(parse_error_body(llama.as_bytes()).and_then(|a| a.code), Some("500".into()));
    assert_eq!(parse_error_body(br#"{"error": "model not found"}"#).map(|a| a.message), Some("model not found".into()));
    assert!(parse_error_body(b"not json").is_none());

    let cap = Duration::from_secs(30);
    let e = http_error(
        "openai",
        429,
        r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded","param":null}}"#,
        None,
        cap,
    );
    assert_eq!(e.message, "HTTP 429: Rate limit reached (rate_limit_exceeded)");
    assert!(e.is_retryable() && e.status == Some(429));
    assert_eq!(http_error("x", 502, "<html>", None, cap).message, "HTTP 502");
}

mod video {
    use super::*;
    use crate::config::{ModelProfile, VideoPart, VideoSampling};
    use crate::provider::openai_compat::video::{VideoData, VideoOptions};

    fn options(part: VideoPart, sampling: VideoSampling) -> VideoOptions {
        let model = ModelProfile {
            native_video: Some(true),
            video_part: Some(part),
            video_sampling: Some(sampling),
            video_fps: Some(2.0),
            video_max_frames: Some(64),
            video_tokens_per_frame: Some(100),
            ..ModelProfile::default()
        };
        VideoOptions::from_profile(&model).expect("valid").expect("native")
    }

    fn clip(duration_ms: u64, fps: Option<f64>) -> Job {
        let input =
            JobInput::Video { path: "clip.mp4".into(), range: None, duration_ms, size_bytes: 9, fps, sha256: None };
        job(input)
    }

    // `+` and `/` in it, as real base64 has.
    const DATA: &str = "AAAAIGZ0eXBpc29t+/8=";

    fn data() -> VideoData {
        VideoData { mime: "video/mp4", base64: Arc::from(DATA) }
    }

    fn body(job: &Job, o: &VideoOptions) -> Value {
        let request =
            build_video_request(job, &data(), o, "Qwen/Qwen2.5-VL-7B-Instruct", &RequestOptions::default(), "vllm")
                .expect("builds");
        let bytes = request.to_json().expect("writes");
        // The hand-written body is what serde writes.
        assert_eq!(bytes, serde_json::to_vec(&request).expect("serializes"));
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn each_part_shape_is_what_its_servers_read() {
        let url = format!("data:video/mp4;base64,{DATA}");
        let sampling = VideoSampling::None;
        for (part, want) in [
            (VideoPart::VideoUrl, json!({"type": "video_url", "video_url": {"url": url}})),
            (VideoPart::InputVideo, json!({"type": "input_video", "input_video": {"data": DATA}})),
            (VideoPart::File, json!({"type": "file", "file": {"file_data": url, "format": "video/mp4"}})),
        ] {
            let req = body(&clip(10_000, None), &options(part, sampling));
            let content = &req["messages"][0]["content"];
            assert_eq!(content[0], json!({"type": "text", "text": "Describe what happens."}), "the prompt first");
            assert_eq!(content[1], want, "{part:?}");
            assert_eq!(content.as_array().map(Vec::len), Some(2));
            assert!(req.get("fps").is_none() && req.get("mm_processor_kwargs").is_none(), "no knob: {req}");
        }
    }

    #[test]
    fn the_sampling_knob_goes_where_the_server_reads_it() {
        let vllm = options(VideoPart::VideoUrl, VideoSampling::MmProcessorKwargs);
        let req = body(&clip(10_000, Some(1.0)), &vllm);
        assert_eq!(req["mm_processor_kwargs"], json!({"fps": 1.0}));
        assert!(req.get("fps").is_none());
        // Over the 64-frame cap (100 s at 2 fps): the cap, alone.
        assert_eq!(body(&clip(100_000, None), &vllm)["mm_processor_kwargs"], json!({"num_frames": 64}));

        let top = options(VideoPart::VideoUrl, VideoSampling::Fps);
        let req = body(&clip(10_000, Some(1.0)), &top);
        assert_eq!(req["fps"], json!(1.0));
        assert!(req.get("mm_processor_kwargs").is_none());
        assert_eq!(body(&clip(64_000, Some(4.0)), &top)["fps"], json!(1.0), "lowered to land on the cap");
    }

    #[test]
    fn a_ranged_or_frames_job_is_not_sent_as_a_video() {
        let o = options(VideoPart::VideoUrl, VideoSampling::None);
        let ranged = Job {
            input: JobInput::Video {
                path: "clip.mp4".into(),
                range: crate::schema::TimeRange::new(2_000, 4_000),
                duration_ms: 10_000,
                size_bytes: 9,
                fps: None,
                sha256: None,
            },
            ..clip(10_000, None)
        };
        let build = |job: &Job| build_video_request(job, &data(), &o, "m", &RequestOptions::default(), "vllm");
        let e = build(&ranged).unwrap_err();
        assert_eq!(e.class, ErrorClass::FallBack);
        assert!(e.message.contains("00:02.000..00:04.000 must be cut out first"), "{e}");
        assert_eq!(build(&frames_job()).unwrap_err().class, ErrorClass::FallBack);
        let uncapped = Job { max_output_tokens: 0, ..clip(1_000, None) };
        assert_eq!(build(&uncapped).unwrap_err().class, ErrorClass::Fatal);
    }
}
