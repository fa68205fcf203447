//! A fake of the Chat Completions and Gemini `generateContent` APIs that
//! bills like the real services: usage computed from what it is sent, by the
//! profile's published image and video token rules and a words-based text
//! count, with answers of realistic length. Shared by the cost and soak
//! benchmarks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

use vidgate::config::{Config, ImageTokenRule, Price};

/// What the fake needs to bill like the real service: per model, its image
/// rule and its video tokens per second.
#[derive(Clone, Default)]
pub struct Billing {
    pub images: BTreeMap<String, ImageTokenRule>,
    pub video_tps: BTreeMap<String, f64>,
    pub audio_tps: BTreeMap<String, f64>,
    pub duration_s: f64,
    /// Prices by model, to bill in dollars.
    pub prices: BTreeMap<String, Price>,
}

#[derive(Default)]
pub struct Billed {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Dollars at the model's price, audio at its own price where it has one.
    pub usd: f64,
    pub calls: u64,
}

pub struct Fake {
    pub billing: Billing,
    pub billed: Arc<Mutex<Billed>>,
}

/// Tokens of text as a tokenizer roughly counts English: 4 per 3 words.
fn text_tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64 * 4).div_ceil(3)
}

/// Width and height from a JPEG's SOF marker.
pub fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
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
pub fn image_tokens(rule: Option<&ImageTokenRule>, w: u32, h: u32, low: bool) -> u64 {
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
    fn openai(&self, body: &Value) -> Reply {
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
        self.bill(model, input, 0, output);
        Reply::json(
            200,
            json!({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_764_000_000, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output},
            }),
        )
    }

    fn gemini(&self, body: &Value, model: &str) -> Reply {
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
        self.bill(model, prompt - audio, audio, output);
        Reply::json(
            200,
            json!({
                "candidates": [{"content": {"parts": [{"text": answer}], "role": "model"}, "finishReason": "STOP"}],
                "modelVersion": model,
                "usageMetadata": {
                    "promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output,
                    "promptTokensDetails": [
                        {"modality": "TEXT", "tokenCount": text}, {"modality": "VIDEO", "tokenCount": video},
                        {"modality": "AUDIO", "tokenCount": audio}, {"modality": "IMAGE", "tokenCount": image}
                    ]
                }
            }),
        )
    }

    fn bill(&self, model: &str, input: u64, audio: u64, output: u64) {
        let mut b = self.billed.lock().unwrap();
        b.input_tokens += input + audio;
        b.output_tokens += output;
        b.calls += 1;
        if let Some(p) = self.billing.prices.get(model) {
            let audio_price = p.audio_input_per_mtok.unwrap_or(p.input_per_mtok);
            b.usd += (input as f64 * p.input_per_mtok + audio as f64 * audio_price + output as f64 * p.output_per_mtok)
                / 1e6;
        }
    }
}

impl Fake {
    /// The answer to a POST of `body` to `path`.
    pub fn answer(&self, path: &str, body: &[u8]) -> Reply {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
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
        Reply::json(404, json!({"error": {"message": format!("no such route {path}")}}))
    }
}

/// One answer: status, extra headers, JSON body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: Value) -> Self {
        Self { status, headers: Vec::new(), body: value.to_string().into_bytes() }
    }
}

pub type Handler = Arc<dyn Fn(&str, &[u8]) -> Reply + Send + Sync>;

/// Whether a request's `Authorization` header (if any) is let through.
pub type Gate = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// A bare HTTP/1.1 server (hyper) on its own thread and runtime that keeps
/// nothing of what it receives; returns its base URL.
pub fn serve(handler: Handler) -> String {
    serve_gated(handler, Arc::new(|_: Option<&str>| true))
}

/// As [`serve`], answering 401 in Google's shape to a request `gate` refuses.
pub fn serve_gated(handler: Handler, gate: Gate) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("the fake's runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("an address")).expect("the bench waits");
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let (handler, gate) = (handler.clone(), gate.clone());
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (handler, gate) = (handler.clone(), gate.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                        let body = req.into_body().collect().await?.to_bytes();
                        let reply = if gate(auth.as_deref()) {
                            handler(&path, &body)
                        } else {
                            let error = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
                            Reply::json(401, error)
                        };
                        let response =
                            hyper::Response::builder().status(reply.status).header("content-type", "application/json");
                        let response =
                            reply.headers.into_iter().fold(response, |r, (name, value)| r.header(name, value));
                        Ok::<_, hyper::Error>(response.body(Full::new(Bytes::from(reply.body))).expect("a response"))
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), service);
                tokio::spawn(connection);
            }
        });
    });
    format!("http://{}", rx.recv().expect("the fake starts"))
}

impl Billing {
    /// What the fake needs for every model of the profile `name` in `config`.
    pub fn for_profile(config: &Config, name: &str, duration_s: f64) -> Self {
        let mut billing = Billing { duration_s, ..Billing::default() };
        let Some(profile) = config.provider(name) else { return billing };
        for (m, p) in &profile.models {
            if let Some(rule) = p.image_tokens {
                billing.images.insert(m.clone(), rule);
            }
            if let Some(tps) = p.video_tokens_per_second {
                billing.video_tps.insert(m.clone(), tps);
            }
            if let Some(tps) = p.audio_tokens_per_second {
                billing.audio_tps.insert(m.clone(), tps);
            }
            if let Some(price) = profile.price_for(m) {
                billing.prices.insert(m.clone(), price);
            }
        }
        billing
    }
}
