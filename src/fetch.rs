//! URL sources, fetched by vidgate itself (ffmpeg never sees a URL).
//!
//! Before connecting, and again after every redirect, the host is resolved
//! and every address that is loopback, private, link-local, unique-local,
//! shared (CGNAT), multicast, reserved or a cloud metadata endpoint is
//! refused, unless `fetch.allow` lists it. The connection goes to the address
//! that was checked (no second resolution, no proxy), so a DNS answer that
//! changes between check and connect cannot redirect it. Bytes, redirects,
//! total time and time without progress are capped. The body streams into a
//! temporary file that is deleted when the returned value is dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use ipnet::IpNet;
use reqwest::Url;
use tokio::io::AsyncWriteExt;

use crate::config::FetchConfig;
use crate::progress::{emit, Progress, ProgressSender};
use crate::provider::http::error_chain;
use crate::secret::redact_urls;
use crate::timecode;

/// Why a URL was not fetched. Each names the URL (without its userinfo or
/// query values: they may be credentials) and the limit or reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: not a URL vidgate fetches: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: refused: {host} resolves to {addr}, a {class} address (allow it with fetch.allow)")]
    Forbidden { url: String, host: String, addr: IpAddr, class: &'static str },
    #[error("{url}: cannot resolve {host}: {reason}")]
    Resolve { url: String, host: String, reason: String },
    #[error("{url}: more than {limit} redirects (fetch.max_redirects)")]
    TooManyRedirects { url: String, limit: u32 },
    #[error("{url}: the video is larger than the limit of {limit} bytes (fetch.max_bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {reason}")]
    Timeout { url: String, reason: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the download failed: {reason}")]
    Transfer { url: String, reason: String },
    #[error("cannot hold the download in a temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `text` names a URL source rather than a file.
pub fn is_url(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The class of address vidgate refuses to fetch from, or `None` when it is
/// an ordinary public address.
pub fn forbidden_class(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    // Metadata endpoints first: they also fall in the ranges below.
    if o == [169, 254, 169, 254] || o == [100, 100, 100, 200] || o == [169, 254, 170, 2] {
        return Some("cloud metadata");
    }
    Some(match o {
        [127, ..] => "loopback",
        [10, ..] | [192, 168, ..] => "private",
        [172, b, ..] if (16..=31).contains(&b) => "private",
        [169, 254, ..] => "link-local",
        [100, b, ..] if (64..=127).contains(&b) => "shared (carrier-grade NAT)",
        [0, ..] => "unspecified (\"this network\")",
        [192, 0, 0, _] => "IETF protocol assignment",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [198, 18 | 19, ..] => "benchmarking",
        [a, ..] if (224..=239).contains(&a) => "multicast",
        [a, ..] if a >= 240 => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    // IPv4 inside IPv6 (mapped, compatible, NAT64, 6to4): judge the IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if s[..6] == [0; 6] {
        return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return forbidden_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some("cloud metadata");
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique-local",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "Teredo",
        _ => return None,
    })
}

/// The allow-list entries, parsed: single addresses or CIDR blocks.
fn allow_list(config: &FetchConfig) -> Vec<IpNet> {
    config
        .allow
        .iter()
        .filter_map(|entry| IpNet::from_str(entry).ok().or_else(|| IpAddr::from_str(entry).ok().map(IpNet::from)))
        .collect()
}

/// A downloaded video, deleted from disk when dropped.
#[derive(Debug)]
pub struct Downloaded {
    file: tempfile::NamedTempFile,
    pub bytes: u64,
    /// The URL the bytes finally came from, after redirects, without credentials.
    pub final_url: String,
}

impl Downloaded {
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Keep the download as the file `to` (on the same file system as
    /// `fetch.temp_dir`) instead of deleting it.
    ///
    /// # Errors
    /// The file cannot be moved there.
    pub fn persist(self, to: &Path) -> std::io::Result<()> {
        self.file.persist(to).map(drop).map_err(|e| e.error)
    }
}

/// Fetch `url` into a temporary file, within the limits of `config`.
///
/// # Errors
/// A refused address, too many redirects, too many bytes, a timeout or stall,
/// an HTTP error, each naming the URL and the limit.
pub async fn fetch(
    url: &str,
    config: &FetchConfig,
    progress: Option<&ProgressSender>,
) -> Result<Downloaded, FetchError> {
    let allowed = allow_list(config);
    let deadline = Instant::now() + timecode::seconds(config.timeout_s);
    let mut current =
        Url::parse(url).map_err(|e| FetchError::BadUrl { url: redact_urls(url), reason: e.to_string() })?;
    for redirect in 0..=config.max_redirects {
        let shown = redact_urls(current.as_str());
        let (host, addr) = checked_address(&current, &allowed).await?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .resolve(&host, addr)
            .connect_timeout(timecode::seconds(config.connect_timeout_s))
            .build()
            .map_err(|e| FetchError::Transfer { url: shown.clone(), reason: redact_urls(&e.to_string()) })?;
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, client.get(current.clone()).send())
            .await
            .map_err(|_| timeout(&shown, "no answer", config.timeout_s))?
            .map_err(|e| FetchError::Transfer { url: shown.clone(), reason: redact_urls(&error_chain(&e)) })?;
        let status = response.status();
        if status.is_redirection() {
            let Some(location) = response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()) else {
                return Err(FetchError::Status { url: shown, status: status.as_u16() });
            };
            current = current
                .join(location)
                .map_err(|e| FetchError::BadUrl { url: redact_urls(location), reason: e.to_string() })?;
            tracing::debug!(from = %shown, to = %redact_urls(current.as_str()), redirect, "following a redirect");
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status { url: shown, status: status.as_u16() });
        }
        return download(response, shown, config, deadline, progress).await;
    }
    Err(FetchError::TooManyRedirects { url: redact_urls(url), limit: config.max_redirects })
}

fn timeout(url: &str, what: &str, seconds: f64) -> FetchError {
    FetchError::Timeout { url: url.to_string(), reason: format!("{what} within {seconds} s") }
}

/// Resolve the URL's host and pick an address that may be fetched from.
async fn checked_address(url: &Url, allowed: &[IpNet]) -> Result<(String, SocketAddr), FetchError> {
    let shown = redact_urls(url.as_str());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl {
            url: shown,
            reason: format!("the scheme {} is not http or https", url.scheme()),
        });
    }
    let Some(host) = url.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string()) else {
        return Err(FetchError::BadUrl { url: shown, reason: "no host".into() });
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match IpAddr::from_str(&host) {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| FetchError::Resolve { url: shown.clone(), host: host.clone(), reason: e.to_string() })?
            .collect(),
    };
    let mut refused = None;
    for addr in &addrs {
        let ip = addr.ip();
        match forbidden_class(ip) {
            Some(_) if allowed.iter().any(|net| net.contains(&ip)) => return Ok((host, *addr)),
            Some(class) => refused = refused.or(Some((ip, class))),
            None => return Ok((host, *addr)),
        }
    }
    match refused {
        Some((addr, class)) => Err(FetchError::Forbidden { url: shown, host, addr, class }),
        None => Err(FetchError::Resolve { url: shown, host, reason: "no address".into() }),
    }
}

async fn download(
    mut response: reqwest::Response,
    url: String,
    config: &FetchConfig,
    deadline: Instant,
    progress: Option<&ProgressSender>,
) -> Result<Downloaded, FetchError> {
    if response.content_length().is_some_and(|n| n > config.max_bytes) {
        return Err(FetchError::TooLarge { url, limit: config.max_bytes });
    }
    let suffix = Path::new(response.url().path())
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|e| format!(".{e}"))
        .unwrap_or_default();
    let mut builder = tempfile::Builder::new();
    builder.prefix("vidgate-url-").suffix(&suffix);
    let file = match &config.temp_dir {
        Some(dir) => builder.tempfile_in(dir)?,
        None => builder.tempfile()?,
    };
    let mut out = tokio::fs::File::from_std(file.reopen()?);
    let stall = timecode::seconds(config.stall_timeout_s);
    let total = response.content_length();
    let mut bytes = 0u64;
    loop {
        let wait = stall.min(deadline.saturating_duration_since(Instant::now()));
        let chunk = match tokio::time::timeout(wait, response.chunk()).await {
            Err(_) if Instant::now() >= deadline => {
                return Err(timeout(&url, "the download did not finish", config.timeout_s))
            }
            Err(_) => return Err(timeout(&url, "no data arrived", config.stall_timeout_s)),
            Ok(Err(e)) => return Err(FetchError::Transfer { url, reason: redact_urls(&error_chain(&e)) }),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        bytes += chunk.len() as u64;
        if bytes > config.max_bytes {
            return Err(FetchError::TooLarge { url, limit: config.max_bytes });
        }
        out.write_all(&chunk).await?;
        emit(progress, Progress::Downloading { bytes, total });
    }
    out.flush().await?;
    Ok(Downloaded { file, bytes, final_url: url })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<&'static str> {
        forbidden_class(IpAddr::from_str(text).unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused() {
        for (ip, want) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("100.100.100.200", "cloud metadata"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved or broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd12:3456::1", "unique-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("64:ff9b::a00:1", "private"),
            ("2002:a9fe:a9fe::1", "cloud metadata"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808"] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url("https://example.com/a.mp4") && is_url("HTTP://x"));
        assert!(!is_url("clip.mp4") && !is_url("file:///etc/passwd") && !is_url("./https:/x"));
    }
}
