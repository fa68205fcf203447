//! The translation, checked against recorded and hand-written bodies.

use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::media::Frame;
use crate::media::FrameData;

const INLINE_REQUEST: &str = include_str!("../../../../fixtures/recorded/gemini/inline_video.request.json");
const INLINE_RESPONSE: &str = include_str!("../../../../fixtures/recorded/gemini/inline_video.response.json");
const OFFSETS_REQUEST: &str = include_str!("../../../../fixtures/recorded/gemini/youtube_offsets.request.json");
const OFFSETS_RESPONSE: &str = include_str!("../../../../fixtures/recorded/gemini/youtube_offsets.response.json");
const FILE_REQUEST: &str = include_str!("../../../../fixtures/recorded/gemini/file_uri.request.json");
const FILE_RESPONSE: &str = include_str!("../../../../fixtures/recorded/gemini/file_uri.response.json");
const BLOCKED: &str = include_str!("../../../../fixtures/recorded/gemini/prompt_blocked.json");

fn job(task: Task, input: JobInput) -> Job {
    Job {
        task,
        input,
        prompt: Arc::from("Describe what happens."),
        prompt_version: Arc::from("chunk@1"),
        max_output_tokens: 400,
        span: None,
    }
}

fn video_job(range: Option<TimeRange>, duration_ms: u64) -> Job {
    job(
        Task::Describe,
        JobInput::Video { path: "clip.mp4".into(), range, duration_ms, size_bytes: 1, fps: None, sha256: None },
    )
}

fn frames_job(task: Task) -> Job {
    let frames = vec![
        Frame {
            index: 0,
            pts_ms: 0,
            width: 512,
            height: 288,
            data: FrameData::Jpeg(vec![0xFF, 0xD8, 0xFB, 0xFF, 0xD9].into()),
        },
        Frame {
            index: 1,
            pts_ms: 61_500,
            width: 512,
            height: 288,
            data: FrameData::Jpeg(vec![0xFF, 0xD8, 0xFF, 0xD9].into()),
        },
    ];
    job(task, JobInput::Frames(Arc::from(frames)))
}

fn request_json(job: &Job, video: Option<VideoPart<'_>>, options: &RequestOptions) -> Value {
    serde_json::to_value(build_request(job, video, options, "gemini").expect("builds")).expect("serializes")
}

/// Recorded requests came from a client that used the URL-safe alphabet; ours is standard.
fn decode_any(b64: &str) -> Vec<u8> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD.decode(b64).or_else(|_| URL_SAFE.decode(b64)).expect("base64 in either alphabet")
}

#[test]
fn inline_video_goes_first_in_the_standard_alphabet() {
    let recorded: Value = serde_json::from_str(INLINE_REQUEST).expect("fixture");
    let blob = &recorded["contents"][0]["parts"][1]["inlineData"];
    let recorded_b64 = blob["data"].as_str().expect("data");
    assert!(recorded_b64.contains('_') && recorded_b64.contains('-'), "the fixture is URL-safe");
    let bytes = decode_any(recorded_b64);
    assert_eq!(&bytes[4..8], b"ftyp", "an MP4");

    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let video = VideoPart::Inline { mime_type: "video/mp4", base64: &data };
    let req = request_json(&video_job(None, 2_000), Some(video), &RequestOptions::default());
    assert_eq!(req["contents"].as_array().map(Vec::len), Some(1));
    assert_eq!(req["contents"][0]["role"], "user");
    let parts = req["contents"][0]["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 2);
    // The same keys as the recorded part, with the data in the standard alphabet.
    let ours = &parts[0]["inlineData"];
    assert_eq!(ours["mimeType"], blob["mimeType"]);
    let data = ours["data"].as_str().expect("data");
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(data).expect("standard base64"), bytes);
    assert!(data.contains('/') && data.contains('+') && !data.contains('_'), "{data}");
    assert!(parts[0].get("videoMetadata").is_none(), "the whole file at the default fps: {req}");
    assert_eq!(parts[1], json!({"text": "Describe what happens."}));
    assert_eq!(req["generationConfig"], json!({"maxOutputTokens": 400}));
}

#[test]
fn a_file_uri_carries_offsets_and_fps() {
    let recorded: Value = serde_json::from_str(OFFSETS_REQUEST).expect("fixture");
    let meta = &recorded["contents"][0]["parts"][1]["videoMetadata"];
    let start = meta["start_offset"].as_str().and_then(parse_proto_duration).expect("start");
    let end = meta["end_offset"].as_str().and_then(parse_proto_duration).expect("end");
    let recorded_file: Value = serde_json::from_str(FILE_REQUEST).expect("fixture");
    let file_part = &recorded_file["contents"][3]["parts"][1];
    let uri = file_part["fileData"]["fileUri"].as_str().expect("uri");

    let range = TimeRange::new(start.as_millis() as u64, end.as_millis() as u64);
    let options =
        RequestOptions { media_resolution: Some(MediaResolution::Low), fps: Some(0.5), ..RequestOptions::default() };
    let video = VideoPart::File { mime_type: "video/mp4", uri };
    let req = request_json(&video_job(range, 120_000), Some(video), &options);
    let part = &req["contents"][0]["parts"][0];
    assert_eq!(part["fileData"], file_part["fileData"], "the recorded Files API reference");
    // The recording sent snake_case keys; the REST form is camelCase.
    assert_eq!(part["videoMetadata"], json!({"startOffset": "40s", "endOffset": "80s", "fps": 0.5}));
    assert_eq!(req["generationConfig"]["mediaResolution"], "MEDIA_RESOLUTION_LOW");

    // Milliseconds survive; an end at the file's end is left out; a job span stands in for the range.
    let mut spanned = video_job(None, 90_000);
    spanned.span = TimeRange::new(12_500, 90_000);
    let req = request_json(&spanned, Some(video), &RequestOptions::default());
    assert_eq!(req["contents"][0]["parts"][0]["videoMetadata"], json!({"startOffset": "12.5s"}));
    // Unknown length: the end is always sent.
    let req = request_json(&video_job(TimeRange::new(0, 1), 0), Some(video), &RequestOptions::default());
    assert_eq!(req["contents"][0]["parts"][0]["videoMetadata"], json!({"endOffset": "0.001s"}));
}

#[test]
fn durations_are_protobuf_json() {
    for (ms, text) in [(0, "0s"), (40_000, "40s"), (12_500, "12.5s"), (1, "0.001s"), (61_250, "61.25s")] {
        assert_eq!(proto_duration(ms), text);
        assert_eq!(parse_proto_duration(text).map(|d| d.as_millis() as u64), Some(ms));
    }
    assert_eq!(parse_proto_duration("27s"), Some(std::time::Duration::from_secs(27)));
    assert_eq!(parse_proto_duration("1.5s"), Some(std::time::Duration::from_millis(1500)));
    assert_eq!(parse_proto_duration("0.000250s"), Some(std::time::Duration::from_micros(250)));
    for bad in ["", "s", "27", "-1s", "1.2.3s", "1.0000000001s", "abc", ".5s", "1e3s"] {
        assert_eq!(parse_proto_duration(bad), None, "{bad}");
    }
}

#[test]
fn bad_video_settings_are_refused_before_any_call() {
    let video = VideoPart::Inline { mime_type: "video/mp4", base64: "AAAAAA==" };
    let fps = |fps: f64| RequestOptions { fps: Some(fps), ..RequestOptions::default() };
    for good in [0.01, 1.0, 24.0] {
        assert!(build_request(&video_job(None, 5_000), Some(video), &fps(good), "g").is_ok(), "{good}");
    }
    for bad in [0.0, -1.0, 24.5, f64::NAN, f64::INFINITY] {
        let err = build_request(&video_job(None, 5_000), Some(video), &fps(bad), "g").map(|_| ()).unwrap_err();
        assert_eq!(err.class, ErrorClass::Fatal, "{bad}");
        assert!(err.message.contains("(0, 24]"), "{err}");
    }
    let o = RequestOptions::default();
    let late = video_job(TimeRange::new(9_000, 12_000), 5_000);
    let empty = video_job(Some(TimeRange { start_ms: 3_000, end_ms: 3_000 }), 5_000);
    assert!(build_request(&empty, Some(video), &o, "g").map(|_| ()).unwrap_err().message.contains("is empty"));
    assert!(build_request(&late, Some(video), &o, "g")
        .map(|_| ())
        .unwrap_err()
        .message
        .contains("after the video's end"));
    assert_eq!(build_request(&video_job(None, 1), None, &o, "g").map(|_| ()).unwrap_err().class, ErrorClass::Fatal);
    let frames = frames_job(Task::Describe);
    assert_eq!(build_request(&frames, Some(video), &o, "g").map(|_| ()).unwrap_err().class, ErrorClass::Fatal);
    let mut uncapped = frames_job(Task::Describe);
    uncapped.max_output_tokens = 0;
    assert_eq!(build_request(&uncapped, None, &o, "g").map(|_| ()).unwrap_err().class, ErrorClass::Fatal);
}

#[test]
fn frames_follow_their_timestamps_and_the_prompt_comes_last() {
    let req = request_json(&frames_job(Task::Describe), None, &RequestOptions::default());
    let parts = req["contents"][0]["parts"].as_array().expect("parts");
    let keys: Vec<String> = parts
        .iter()
        .map(|p| p.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(",")).unwrap_or_default())
        .collect();
    assert_eq!(keys, ["text", "inlineData", "text", "inlineData", "text"]);
    assert_eq!(parts[0]["text"], "Frame at 00:00.000:");
    assert_eq!(parts[2]["text"], "Frame at 01:01.500:");
    assert_eq!(parts[1]["inlineData"], json!({"mimeType": "image/jpeg", "data": "/9j7/9k="}));
    assert_eq!(parts[3]["inlineData"]["data"], "/9j/2Q==");
    assert_eq!(parts[4]["text"], "Describe what happens.");

    let rgb = job(
        Task::Describe,
        JobInput::Frames(Arc::from(vec![Frame {
            index: 3,
            pts_ms: 2_000,
            width: 1,
            height: 1,
            data: FrameData::Rgb(vec![0; 3]),
        }])),
    );
    let err = build_request(&rgb, None, &RequestOptions::default(), "g").map(|_| ()).unwrap_err();
    assert!(err.should_fall_back() && err.message.contains("frame 3 at 00:02.000 is RGB"), "{err}");
    assert_eq!(
        build_request(
            &job(Task::Describe, JobInput::Frames(Arc::from(Vec::new()))),
            None,
            &RequestOptions::default(),
            "g"
        )
        .map(|_| ())
        .unwrap_err()
        .class,
        ErrorClass::Fatal
    );
    let text =
        request_json(&job(Task::Describe, JobInput::Text("obs 1\nobs 2".into())), None, &RequestOptions::default());
    assert_eq!(text["contents"][0]["parts"], json!([{"text": "Describe what happens.\n\nobs 1\nobs 2"}]));
}

fn walk<'a>(v: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
    match v {
        Value::Object(o) => {
            out.push(o);
            o.values().for_each(|c| walk(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
        _ => {}
    }
}

#[test]
fn timelines_ask_for_json_in_geminis_schema_dialect() {
    let options = RequestOptions { json_schema: true, ..RequestOptions::default() };
    let req = request_json(&frames_job(Task::Timeline), None, &options);
    let config = &req["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    let schema = &config["responseSchema"];
    assert_eq!(schema["type"], "OBJECT");
    assert_eq!(schema["required"], json!(["events"]));
    let event = &schema["properties"]["events"]["items"];
    assert_eq!(schema["properties"]["events"]["type"], "ARRAY");
    assert_eq!(event["propertyOrdering"], json!(["start", "end", "text"]));
    assert_eq!(event["properties"]["start"]["type"], "STRING");
    assert!(event["properties"]["start"]["description"].as_str().is_some_and(|d| d.contains("MM:SS.mmm")));
    let mut objects = Vec::new();
    walk(schema, &mut objects);
    for o in objects.iter().filter(|o| o.contains_key("type")) {
        assert!(!o.contains_key("additionalProperties"), "{schema}");
    }

    let find = request_json(&frames_job(Task::Find { what: "a bird".into() }), None, &options);
    assert_eq!(find["generationConfig"]["responseSchema"], *schema);
    // Not for free text, nor for a model without structured output.
    let describe = request_json(&frames_job(Task::Describe), None, &options);
    assert!(describe["generationConfig"].get("responseSchema").is_none());
    let plain = request_json(&frames_job(Task::Timeline), None, &RequestOptions::default());
    assert!(plain["generationConfig"].get("responseMimeType").is_none(), "{plain}");
}

#[test]
fn the_recorded_answers_parse() {
    let job = video_job(None, 60_000);
    let answer = parse_response(OFFSETS_RESPONSE.as_bytes(), &job, "gemini").expect("parses");
    assert!(answer.text.starts_with("At 00:40, the user scrolls"), "{}", answer.text);
    assert_eq!(answer.model_version.as_deref(), Some("gemini-2.5-flash"));
    assert!(!answer.truncated);
    let usage = answer.usage.expect("usage");
    assert_eq!((usage.prompt, usage.candidates, usage.thoughts, usage.cached), (5918, 31, 157, 0));
    assert_eq!(
        usage.prompt_by_modality,
        ModalityTokens { text: 21, video: 5260, audio: 637, ..ModalityTokens::default() }
    );
    assert_eq!((usage.input_tokens(), usage.output_tokens()), (5918, 188));

    // An AUDIO entry with no count (a silent track) is zero.
    let inline = parse_response(INLINE_RESPONSE.as_bytes(), &job, "gemini").expect("parses");
    assert!(inline.text.starts_with("Okay! It looks like"));
    let usage = inline.usage.expect("usage");
    assert_eq!((usage.prompt_by_modality.audio, usage.prompt_by_modality.video, usage.thoughts), (0, 258, 0));

    // A text part with a thought signature is still the answer.
    let file = parse_response(FILE_RESPONSE.as_bytes(), &job, "gemini").expect("parses");
    assert!(file.text.starts_with("I received a video file."));
    assert_eq!(file.usage.map(|u| u.prompt_by_modality.video), Some(263));
}

fn answer(parts: Value, finish: &str) -> String {
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 50}})
    .to_string()
}

fn parse_err(body: &str) -> ProviderError {
    parse_response(body.as_bytes(), &frames_job(Task::Describe), "gemini").map(|_| ()).unwrap_err()
}

#[test]
fn thoughts_are_not_the_answer() {
    let body = answer(
        json!([{"text": "Let me think about the frames...", "thought": true}, {"text": "A door "}, {"text": "opens."}]),
        "STOP",
    );
    let parsed = parse_response(body.as_bytes(), &frames_job(Task::Describe), "gemini").expect("parses");
    assert_eq!(parsed.text, "A door opens.");
    assert_eq!(parsed.usage.map(|u| u.output_tokens()), Some(53));

    let only_thoughts = parse_err(&answer(json!([{"text": "Thinking...", "thought": true}]), "MAX_TOKENS"));
    assert!(only_thoughts.should_fall_back() && only_thoughts.maybe_billed);
    assert!(only_thoughts.message.contains("output cap of 400 tokens"), "{only_thoughts}");
    let truncated = answer(json!([{"text": "{\"events\": ["}]), "MAX_TOKENS");
    assert!(parse_response(truncated.as_bytes(), &frames_job(Task::Describe), "g").expect("kept").truncated);
}

#[test]
fn content_policy_blocks_fall_back_and_say_so() {
    let blocked = parse_err(BLOCKED);
    assert_eq!(blocked.class, ErrorClass::FallBack);
    assert_eq!(blocked.message, "content policy: the prompt was blocked (PROHIBITED_CONTENT)");
    assert!(!blocked.is_retryable() && blocked.maybe_billed);

    for reason in ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII"] {
        let e = parse_err(&answer(json!([{"text": "partial"}]), reason));
        assert!(e.should_fall_back() && e.message.starts_with("content policy:"), "{reason}: {e}");
        assert!(e.message.contains(reason));
    }
    let safety = json!({"candidates": [{"finishReason": "SAFETY", "index": 0,
        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}]});
    assert!(parse_err(&safety.to_string()).message.starts_with("content policy:"));
}

#[test]
fn empty_and_garbled_answers() {
    assert!(parse_err(&answer(json!([{"text": "  "}]), "STOP")).message.contains("empty (finishReason \"STOP\")"));
    assert!(parse_err(r#"{"candidates": []}"#).should_fall_back());
    assert!(parse_err(r#"{"usageMetadata": {"promptTokenCount": 3}}"#).message.contains("no candidates"));
    for body in ["<html>502</html>", "", r#"{"candidates": "#, r#"{"candidates": 3}"#] {
        let e = parse_err(body);
        assert_eq!(e.class, ErrorClass::Transient, "{body}: {e}");
        assert_eq!(e.body.as_deref(), Some(body));
    }
    let in_200 = parse_err(r#"{"error": {"code": 400, "message": "Bad video.", "status": "INVALID_ARGUMENT"}}"#);
    assert!(in_200.should_fall_back() && in_200.message.contains("Bad video. (INVALID_ARGUMENT)"), "{in_200}");
}

#[test]
fn profile_resolutions_parse() {
    assert_eq!(media_resolution("medium"), Some(MediaResolution::Medium));
    assert_eq!(media_resolution(" HIGH "), Some(MediaResolution::High));
    assert_eq!(media_resolution("low"), Some(MediaResolution::Low));
    assert_eq!(media_resolution("ultra"), None);
}

/// A frame's base64 is made once: a retry (the same job again) sends the
/// frame's own encoding, not a new one.
#[test]
fn a_frame_is_encoded_once_for_all_its_requests() {
    let inline = |job: &Job| -> Vec<Arc<str>> {
        let request = build_request(job, None, &RequestOptions::default(), "gemini").expect("builds");
        let parts = request.contents[0].parts.iter();
        parts
            .filter_map(|p| if let PartData::InlineData(blob) = &p.data { Some(blob.data.clone()) } else { None })
            .collect()
    };
    let job = frames_job(Task::Describe);
    let (first, again) = (inline(&job), inline(&job));
    let JobInput::Frames(frames) = &job.input else { unreachable!() };
    assert_eq!(first.len(), frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let FrameData::Jpeg(jpeg) = &frame.data else { panic!("JPEG") };
        assert!(Arc::ptr_eq(&first[i], &jpeg.base64()) && Arc::ptr_eq(&first[i], &again[i]), "frame {i} encoded again");
    }
}

#[test]
fn a_negative_count_costs_the_usage_not_the_answer() {
    let mut body: Value = serde_json::from_str(&answer(json!([{"text": "A door opens."}]), "STOP")).unwrap();
    body["usageMetadata"]["candidatesTokenCount"] = json!(-5);
    let parsed = parse_response(body.to_string().as_bytes(), &frames_job(Task::Describe), "g").expect("kept");
    assert_eq!(parsed.text, "A door opens.");
    assert_eq!(parsed.usage, None, "the estimate stands");
    assert_eq!(parsed.unusable_usage.as_deref(), Some("candidatesTokenCount = -5"));
}
