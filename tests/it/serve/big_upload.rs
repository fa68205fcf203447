//! An upload larger than axum's default body limit (2 MB) is streamed to disk
//! whole, and judged by what it holds.

use super::with_fake;
use crate::util::block_on;

#[test]
fn an_upload_over_2_mb_is_read_whole_then_probed() {
    let (server, _) = with_fake();
    let boundary = "big-upload-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(0x5a_u8, 8 << 20));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, answer): (_, serde_json::Value) = block_on(async {
        let r = server
            .client()
            .post(server.url("/v1/videos"))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await?;
        Ok::<_, reqwest::Error>((r.status(), r.json().await?))
    })
    .unwrap();
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a video vidgate can read"), "read whole, then refused by the probe: {message}");
    let uploads = server.app.server.uploads_dir();
    assert_eq!(std::fs::read_dir(&uploads).map_or(0, |d| d.count()), 0, "nothing is left in {}", uploads.display());
}
