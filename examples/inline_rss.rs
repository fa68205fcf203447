//! The peak memory of one Gemini request with a video inline: a file of
//! `SIZE` bytes (default 50 MB) sent to a local fake that reads the body and
//! drops it, in this process. Prints the peak resident set (VmHWM, Linux)
//! before and after the request.
//!
//! `cargo run --no-default-features --example inline_rss [SIZE]`

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use vidgate::config::Config;
use vidgate::provider::gemini::Gemini;
use vidgate::provider::{Job, JobInput, Provider};
use vidgate::schema::Task;

const ANSWER: &str = include_str!("../fixtures/recorded/gemini/inline_video.response.json");

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0)
}

/// One request: its headers, then its body read and dropped; the recorded answer.
async fn serve(mut conn: TcpStream) -> std::io::Result<u64> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).await? == 0 || head.len() > 64 << 10 {
            return Ok(0);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("the request announces its length");
    let mut left = length;
    let mut buf = vec![0u8; 64 << 10];
    while left > 0 {
        let n = conn.read(&mut buf[..left.min(64 << 10) as usize]).await?;
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
    conn.write_all(answer.as_bytes()).await?;
    Ok(length - left)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50_000_000);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("video.mp4");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("the video file"));
        let mut x: u32 = 1;
        let mut piece = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            for b in piece.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let n = left.min(piece.len() as u64) as usize;
            file.write_all(&piece[..n]).expect("write the video");
            left -= n as u64;
        }
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let addr = listener.local_addr().expect("its address");
    let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(serve(conn).await.unwrap_or(0));
            });
        }
    });

    std::env::set_var("VIDGATE_INLINE_RSS_KEY", "AIzaInlineRssKey-0123456789");
    // The shipped Gemini profile, pointed at the fake.
    let mut profile = Config::builtin().expect("the shipped profiles").providers["gemini"].clone();
    profile.base_url = Some(format!("http://{addr}"));
    profile.api_key_env = Some("VIDGATE_INLINE_RSS_KEY".into());
    profile.inline_max_bytes = Some(size.max(1));
    profile.timeout_s = Some(120.0);
    let gemini = Gemini::from_profile("gemini", &profile, &Config::default()).expect("the provider");
    let job = Job {
        task: Task::Describe,
        input: JobInput::Video {
            path: path.clone(),
            range: None,
            duration_ms: 10_000,
            size_bytes: size,
            fps: None,
            sha256: None,
        },
        prompt: "Describe the video.".into(),
        prompt_version: "chunk@1".into(),
        max_output_tokens: 500,
        span: None,
    };
    let before = status_kb("VmHWM");
    let output = gemini.run(&job).await.expect("the request");
    let body = received.recv().await.unwrap_or(0);
    println!(
        "video inline: {size} bytes; request body received: {body} bytes; answer: {} observation(s)",
        output.observations.len()
    );
    println!("peak RSS (VmHWM): {before} kB before the request, {} kB after", status_kb("VmHWM"));
}
