//! Cost per video minute, from the ledger, for each shipped cloud profile.
//!
//! ```text
//! cargo bench --no-default-features --bench cost [-- VIDEO]
//! ```
//!
//! The whole gateway describes `trailer_bbb.mp4` (fixtures/fetch.sh) twice per
//! profile, against a local fake that answers in the API's shape and bills
//! like it (usage computed from what it was sent, by the profile's published
//! token rules and a words-based text count, with answers of realistic
//! length):
//!
//! - the auto plan: what vidgate does by default (the video itself to a
//!   native-video model; else one frame per shot, 512 px, in batches), and
//! - a naive plan at equal coverage: one frame per second of the whole video,
//!   at the source's 1280 px, high detail, one frame per call.
//!
//! It prints the cost per minute of each from the journal's spend ledger, the
//! ratio (goal: auto ≥ 3× cheaper), and vidgate's estimates against what the
//! fake billed: input tokens (goal ±10 %) and the worst-case cost reserved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use vidgate::config::{Config, ImageDetail, ImageTokenRule, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::Journal;
use vidgate::schema::{SamplingMode, SamplingPlan, Task, VideoReport, VideoRequest};

const PROFILES: [&str; 6] = ["gemini", "vertex", "openai", "azure-openai", "openrouter", "groq"];
const KEY_VAR: &str = "VIDGATE_BENCH_KEY";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let video = args.first().map(PathBuf::from).unwrap_or_else(default_video);
    if !video.is_file() {
        eprintln!("{}: not found; fetch it with `fixtures/fetch.sh trailer_bbb`", video.display());
        std::process::exit(2);
    }
    std::env::set_var(KEY_VAR, "bench-key-not-secret");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    rt.block_on(bench(video));
}

fn default_video() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("vidgate/fixtures/trailer_bbb.mp4")
}

/// What the fake needs to bill like the real service: per model, its image
/// rule and its video tokens per second.
#[derive(Clone, Default)]
struct Billing {
    images: BTreeMap<String, ImageTokenRule>,
    video_tps: BTreeMap<String, f64>,
    audio_tps: BTreeMap<String, f64>,
    duration_s: f64,
}

#[derive(Default)]
struct Billed {
    input_tokens: u64,
    output_tokens: u64,
}

struct Fake {
    billing: Billing,
    billed: Arc<Mutex<Billed>>,
}

/// Tokens of text as a tokenizer roughly counts English: 4 per 3 words.
fn text_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64 * 4).div_ceil(3)
}

/// Width and height from a JPEG's SOF marker.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if (0xC0..=0xC3).contains(&marker) {
            let h = u32::from(u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]));
            let w = u32::from(u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]));
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// The published image rules: OpenAI's tiles and patches, fixed counts.
fn image_tokens(rule: Option<&ImageTokenRule>, w: u32, h: u32, low: bool) -> u64 {
    match rule {
        Some(ImageTokenRule::Tiles { base, per_tile, tile_px, max_side, short_side }) => {
            if low {
                return u64::from(*base);
            }
            let (mut w, mut h) = (f64::from(w), f64::from(h));
            let fit = (f64::from(*max_side) / w.max(h)).min(1.0);
            (w, h) = (w * fit, h * fit);
            let short = (f64::from(*short_side) / w.min(h)).min(1.0);
            (w, h) = (w * short, h * short);
            let tiles = (w / f64::from(*tile_px)).ceil() * (h / f64::from(*tile_px)).ceil();
            u64::from(*base) + u64::from(*per_tile) * tiles as u64
        }
        Some(ImageTokenRule::Patches { patch_px, max_patches, multiplier }) => {
            let p = f64::from(*patch_px);
            let mut patches = (f64::from(w) / p).ceil() * (f64::from(h) / p).ceil();
            if patches > f64::from(*max_patches) {
                let shrink = (f64::from(*max_patches) * p * p / (f64::from(w) * f64::from(h))).sqrt();
                patches = (f64::from(w) * shrink / p).floor() * (f64::from(h) * shrink / p).floor();
            }
            (patches.min(f64::from(*max_patches)) * multiplier).ceil() as u64
        }
        Some(ImageTokenRule::Fixed { tokens }) => u64::from(*tokens),
        // Groq does not document its count; the fake assumes one 560-token tile.
        None => 560,
    }
}

/// A timeline of the video in 5-second events, as a model held to the schema answers.
fn timeline_answer(duration_s: f64) -> String {
    let events: Vec<Value> = (0..(duration_s / 5.0).ceil() as u64)
        .map(|k| {
            let (a, b) = (k * 5, ((k + 1) * 5).min(duration_s as u64).max(k * 5 + 1));
            json!({"start": format!("{:02}:{:02}.000", a / 60, a % 60), "end": format!("{:02}:{:02}.000", b / 60, b % 60),
                   "text": "A large rabbit walks out of his burrow into a sunny meadow and stretches."})
        })
        .collect();
    json!({ "events": events }).to_string()
}

/// An answer of `tokens` tokens of plain description.
fn prose(tokens: u64) -> String {
    "the rabbit stands in the meadow ".repeat((tokens * 3 / 4 / 6).max(1) as usize)
}

impl Fake {
    fn openai(&self, body: &Value) -> ResponseTemplate {
        let model = body["model"].as_str().unwrap_or_default();
        let rule = self.billing.images.get(model);
        let mut input = 3;
        let mut images = 0;
        let mut wants_json = false;
        for message in body["messages"].as_array().into_iter().flatten() {
            let mut texts = Vec::new();
            match &message["content"] {
                Value::String(t) => texts.push(t.clone()),
                Value::Array(parts) => {
                    for part in parts {
                        if let Some(t) = part["text"].as_str() {
                            texts.push(t.to_string());
                        }
                        if let Some(url) = part["image_url"]["url"].as_str() {
                            let data = url.split_once(',').map_or("", |(_, d)| d);
                            let jpeg = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
                            let (w, h) = jpeg_size(&jpeg).unwrap_or((512, 512));
                            let low = part["image_url"]["detail"].as_str() == Some("low");
                            input += image_tokens(rule, w, h, low);
                            images += 1;
                        }
                    }
                }
                _ => {}
            }
            for t in texts {
                wants_json |= t.contains("Return only JSON");
                input += text_tokens(&t) + 3;
            }
        }
        let cap = body["max_completion_tokens"].as_u64().or(body["max_tokens"].as_u64()).unwrap_or(1024);
        let (text, output) = if wants_json {
            let t = timeline_answer(self.billing.duration_s);
            let n = (t.len() as u64 / 4).min(cap);
            (t, n)
        } else {
            let n = (if images > 0 { 60 + 30 * images } else { 350 }).min(cap);
            (prose(n), n)
        };
        self.bill(input, output);
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_764_000_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
        }))
    }

    fn gemini(&self, body: &Value, model: &str) -> ResponseTemplate {
        let mut text = 0;
        let (mut video, mut audio, mut image) = (0u64, 0u64, 0u64);
        for part in body["contents"][0]["parts"].as_array().into_iter().flatten() {
            if let Some(t) = part["text"].as_str() {
                text += text_tokens(t);
            }
            let mime = part["inlineData"]["mimeType"].as_str().or(part["fileData"]["mimeType"].as_str());
            match mime {
                Some(m) if m.starts_with("video/") => {
                    let tps = self.billing.video_tps.get(model).copied().unwrap_or(263.0);
                    video += (tps * self.billing.duration_s).round() as u64;
                    audio +=
                        (self.billing.audio_tps.get(model).copied().unwrap_or(32.0) * self.billing.duration_s) as u64;
                }
                Some(m) if m.starts_with("image/") => {
                    image += image_tokens(self.billing.images.get(model), 0, 0, false)
                }
                _ => {}
            }
        }
        let cap = body["generationConfig"]["maxOutputTokens"].as_u64().unwrap_or(1024);
        let schema = body["generationConfig"]["responseSchema"].is_object();
        let (answer, output) = if schema {
            let t = timeline_answer(self.billing.duration_s);
            let n = (t.len() as u64 / 4).min(cap);
            (t, n)
        } else {
            let n = (if image > 0 { 60 + 30 * image / 560 } else { 350 }).min(cap);
            (prose(n), n)
        };
        let prompt = text + video + audio + image;
        self.bill(prompt, output);
        ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": answer}], "role": "model"}, "finishReason": "STOP"}],
            "modelVersion": model,
            "usageMetadata": {
                "promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output,
                "promptTokensDetails": [
                    {"modality": "TEXT", "tokenCount": text}, {"modality": "VIDEO", "tokenCount": video},
                    {"modality": "AUDIO", "tokenCount": audio}, {"modality": "IMAGE", "tokenCount": image}
                ]
            }
        }))
    }

    fn bill(&self, input: u64, output: u64) {
        let mut b = self.billed.lock().unwrap();
        b.input_tokens += input;
        b.output_tokens += output;
    }
}

impl Respond for Fake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let path = request.url.path();
        if let Some(rest) = path.split("/models/").nth(1).and_then(|r| r.strip_suffix(":generateContent")) {
            return self.gemini(&body, rest);
        }
        if body["messages"].is_array() {
            let mut body = body;
            // Azure names the model in the path (the deployment), not the body.
            if let Some(deployment) = path.split("/deployments/").nth(1).and_then(|r| r.split('/').next()) {
                body["model"] = json!(deployment);
            }
            return self.openai(&body);
        }
        ResponseTemplate::new(404).set_body_json(json!({"error": {"message": format!("no such route {path}")}}))
    }
}

struct Outcome {
    report: VideoReport,
    ledger_usd: f64,
    billed: Billed,
}

async fn run_once(
    profile_name: &str,
    profile: ProviderProfile,
    billing: Billing,
    sampling: SamplingPlan,
    video: &PathBuf,
) -> Result<Outcome, String> {
    let server = MockServer::start().await;
    let billed = Arc::new(Mutex::new(Billed::default()));
    Mock::given(wiremock::matchers::any()).respond_with(Fake { billing, billed: billed.clone() }).mount(&server).await;
    let mut config = Config::builtin().map_err(|e| e.to_string())?;
    let mut profile = profile;
    let openai_like = profile.protocol == Some(vidgate::config::Protocol::Openai);
    profile.base_url =
        Some(if openai_like && profile_name != "azure-openai" { format!("{}/v1", server.uri()) } else { server.uri() });
    if profile.token_env.is_some() || profile_name == "vertex" {
        profile.token_env = Some(KEY_VAR.into());
        profile.token_command = None;
        profile.project = Some("bench-project".into());
    } else {
        profile.api_key_env = Some(KEY_VAR.into());
    }
    profile.limits.requests_per_minute = None;
    profile.limits.tokens_per_minute = None;
    config.providers.insert(profile_name.to_string(), profile);
    config.router.chain = vec![profile_name.to_string()];
    config.budget.max_usd_per_request = 100.0;
    config.budget.downgrade = Vec::new();
    let gateway = Gateway::with_journal(config, Journal::in_memory().map_err(|e| e.to_string())?);
    let mut request = VideoRequest::new(video, Task::Describe);
    request.sampling = sampling;
    let report = gateway.run(request).await.map_err(|e| e.to_string())?;
    let ledger_usd = gateway.journal().spent_today().map_err(|e| e.to_string())?;
    let billed = std::mem::take(&mut *billed.lock().unwrap());
    Ok(Outcome { report, ledger_usd, billed })
}

async fn bench(video: PathBuf) {
    let info = vidgate::media::probe(&video, &vidgate::config::MediaLimits::default()).await.expect("the video probes");
    let duration_s = info.duration_ms as f64 / 1000.0;
    let minutes = duration_s / 60.0;
    let builtin = Config::builtin().expect("the built-in config");
    println!(
        "{} ({:.1} s, {}x{}), describe; cost per video minute from the journal's spend ledger\n",
        video.file_name().and_then(|n| n.to_str()).unwrap_or("video"),
        duration_s,
        info.video.width,
        info.video.height
    );
    println!("| profile (model) | auto plan | $/min | 1 fps, 512 px, batched | naive 1 fps | $/min | naive ÷ auto | est. input ÷ billed (auto, naive) | reserved ÷ spent (auto) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for name in PROFILES {
        let shipped = builtin.provider(name).expect("a shipped profile").clone();
        let model = shipped.model.clone().unwrap_or_default();
        let mut billing = Billing { duration_s, ..Billing::default() };
        for (m, p) in &shipped.models {
            if let Some(rule) = p.image_tokens {
                billing.images.insert(m.clone(), rule);
            }
            if let Some(tps) = p.video_tokens_per_second {
                billing.video_tps.insert(m.clone(), tps);
            }
            if let Some(tps) = p.audio_tokens_per_second {
                billing.audio_tps.insert(m.clone(), tps);
            }
        }
        let native = shipped.models.get(&model).and_then(|m| m.native_video).unwrap_or(false);

        // Auto: the default plan. Native video as is; frames one per shot, batched.
        let mut auto_profile = shipped.clone();
        if !native {
            let limit = shipped.models.get(&model).and_then(|m| m.max_images_per_request).unwrap_or(8);
            auto_profile.frames_per_call = Some(auto_profile.frames_per_call.unwrap_or(8).min(limit).max(1));
        }
        let auto_sampling = SamplingPlan {
            mode: SamplingMode::Scenes { threshold: 0.35, min_gap_ms: 1000 },
            range: None,
            max_frames: 64,
            width: 512,
        };
        // Naive: every second, full size, high detail, one frame per call; no native video.
        let mut naive_profile = shipped.clone();
        naive_profile.frames_per_call = Some(1);
        naive_profile.detail = Some(ImageDetail::High);
        for m in naive_profile.models.values_mut() {
            m.native_video = Some(false);
        }
        let naive_sampling = SamplingPlan {
            mode: SamplingMode::Fps { fps: 1.0 },
            range: None,
            max_frames: duration_s.ceil() as u32,
            width: info.video.width,
        };
        // Batched at equal frame coverage: every second, but 512 px and in batches.
        let batched_sampling = SamplingPlan { width: 512, ..naive_sampling.clone() };
        let auto = run_once(name, auto_profile.clone(), billing.clone(), auto_sampling, &video).await;
        let naive = run_once(name, naive_profile, billing.clone(), naive_sampling, &video).await;
        let batched =
            if native { None } else { run_once(name, auto_profile, billing, batched_sampling, &video).await.ok() };
        let batched_cell = batched.as_ref().map_or("(native video)".to_string(), |b| {
            format!("{} calls ${:.4}/min", b.report.attempts.len(), b.ledger_usd / minutes)
        });
        match (auto, naive) {
            (Ok(a), Ok(n)) => {
                let describe = |o: &Outcome| format!("{} calls", o.report.attempts.len());
                let est_in =
                    |o: &Outcome| o.report.attempts.iter().map(|a| a.estimated_input_tokens).sum::<u64>() as f64;
                let reserved: f64 = a.report.attempts.iter().map(|x| x.estimated_cost_usd).sum();
                println!(
                    "| {name} ({model}) | {} ${:.4} | ${:.4} | {batched_cell} | {} ${:.4} | ${:.4} | {:.1}× | {:.2}, {:.2} | {:.2} |",
                    describe(&a),
                    a.ledger_usd,
                    a.ledger_usd / minutes,
                    describe(&n),
                    n.ledger_usd,
                    n.ledger_usd / minutes,
                    n.ledger_usd / a.ledger_usd.max(1e-12),
                    est_in(&a) / a.billed.input_tokens.max(1) as f64,
                    est_in(&n) / n.billed.input_tokens.max(1) as f64,
                    reserved / a.ledger_usd.max(1e-12),
                );
                for (label, o) in [("auto", &a), ("naive", &n)] {
                    let report_usd = o.report.usage.cost_usd;
                    if (report_usd - o.ledger_usd).abs() > 1e-9 {
                        println!("  ({label}: the report says ${report_usd:.6}, the ledger ${:.6})", o.ledger_usd);
                    }
                    if o.report.usage.output_tokens != o.billed.output_tokens {
                        println!(
                            "  ({label}: the report counts {} output tokens, the fake billed {})",
                            o.report.usage.output_tokens, o.billed.output_tokens
                        );
                    }
                }
            }
            (a, n) => {
                let err = |r: &Result<Outcome, String>| r.as_ref().err().cloned().unwrap_or_else(|| "ok".into());
                println!("| {name} ({model}) | failed: {} | | | failed: {} | | | | |", err(&a), err(&n));
            }
        }
    }
    println!("\nGoals: naive ÷ auto ≥ 3×; estimated input within ±10 % of billed. The reservation is the worst case (every answer at its output cap), so it is above what is spent by design. Groq does not publish its image token count: the fake assumes 560 per image, so its input ratio only shows that vidgate's guess differs.");
}
