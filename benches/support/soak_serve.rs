//! The soak's `--serve` mode: `vidgate serve` (in process, over HTTP) under
//! steady load for as long as asked, its journal pruned every
//! `--prune-every-s` seconds and its provider's bearer token expiring every
//! `--expire-s` seconds.
//!
//! The provider is a fake of Gemini on Vertex AI that lets through only the
//! newest token a `token_command` minted, and only while it is younger than
//! its lifetime (older ones get Google's 401). Reports are forgotten by
//! serve's retention sweep after one prune period. Clients upload one clip and ask
//! a new question about it again and again (each question is new work, paid
//! for). Every ten seconds the bench prints the service's resident memory,
//! the journal's size on disk, runs done and failed, tokens minted and 401s
//! answered. Goals: memory and journal flat (the last third's peak within
//! 10 % of the middle third's), no failed run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use vidgate::config::Config;
use vidgate::gateway::Gateway;
use vidgate::journal::{Journal, NewKey};
use vidgate::serve::App;

use super::fake_api::{self, Billed, Billing, Fake, Handler};
use super::status_kib;

/// What the soak is asked for.
pub struct Settings {
    pub minutes: f64,
    pub clients: usize,
    pub expire_s: f64,
    pub prune_every_s: f64,
}

/// The token the fake takes now, and when it was minted.
fn current_token(dir: &Path) -> Option<(String, SystemTime)> {
    let file = dir.join("token");
    let minted = std::fs::metadata(&file).ok()?.modified().ok()?;
    Some((std::fs::read_to_string(&file).ok()?.trim().to_string(), minted))
}

/// A `token_command` that mints a new token each time it runs.
fn token_command(dir: &Path) -> PathBuf {
    let script = dir.join("mint-token.sh");
    let text = format!(
        "#!/bin/sh\nset -e\nn=$(cat {count:?} 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > {count:?}\n\
         echo soak-token-$n > {token:?}.new && mv {token:?}.new {token:?}\necho soak-token-$n\n",
        count = dir.join("count"),
        token = dir.join("token"),
    );
    std::fs::write(&script, text).expect("the token command is written");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("it is made executable");
    script
}

/// The journal file's bytes, and its write-ahead log's (which SQLite reuses
/// between checkpoints: its size follows the write rate, not the history).
fn journal_bytes(path: &Path) -> (u64, u64) {
    let size = |suffix: &str| std::fs::metadata(format!("{}{suffix}", path.display())).map_or(0, |m| m.len());
    (size(""), size("-wal"))
}

/// A multipart body with the one field `file`.
fn form(bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "vidgate-soak-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.mp4\"\r\n\
         Content-Type: video/mp4\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    failed: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

/// One client: its upload, then run after run until `until`.
async fn client(base: String, key: String, clip: PathBuf, n: usize, until: Instant, tally: Arc<Tally>) {
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let (kind, body) = form(&std::fs::read(&clip).expect("the clip"));
    let upload: Value = match http
        .post(format!("{base}/v1/videos"))
        .header("authorization", &auth)
        .header("content-type", kind)
        .body(body)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => {
            tally.errors.lock().unwrap().push(format!("client {n}: upload: {e}"));
            return;
        }
    };
    let mut i = 0;
    while Instant::now() < until {
        i += 1;
        let question = format!("Client {n}, question {i}: what is shown?");
        let body = json!({"video": upload["id"], "task": "ask", "question": question});
        let submitted: Value =
            match http.post(format!("{base}/v1/runs")).header("authorization", &auth).json(&body).send().await {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(e) => Value::String(e.to_string()),
            };
        let Some(id) = submitted["id"].as_i64() else {
            tally.failed.fetch_add(1, Ordering::SeqCst);
            tally.errors.lock().unwrap().push(format!("client {n}: not submitted: {submitted}"));
            continue;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let run: Value = match http.get(format!("{base}/v1/runs/{id}")).header("authorization", &auth).send().await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => continue,
            };
            match run["status"].as_str() {
                Some("done") => {
                    tally.done.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Some("failed" | "cancelled") => {
                    tally.failed.fetch_add(1, Ordering::SeqCst);
                    tally.errors.lock().unwrap().push(format!("run {id}: {}", run["error"]));
                    break;
                }
                _ => {}
            }
        }
    }
}

pub async fn soak(settings: Settings, clip: PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let builtin = Config::builtin().expect("the built-in config");
    let info = vidgate::media::probe(&clip, &builtin.limits).await.expect("the clip probes");
    let billed = Arc::new(Mutex::new(Billed::default()));
    let fake = Fake { billing: Billing::for_profile(&builtin, "vertex", info.duration_ms as f64 / 1000.0), billed };
    let refused = Arc::new(AtomicUsize::new(0));
    let handler: Handler = Arc::new(move |path: &str, body: &[u8]| fake.answer(path, body));
    let (token_dir, lifetime, counted) =
        (dir.path().to_path_buf(), Duration::from_secs_f64(settings.expire_s), refused.clone());
    let gate = Arc::new(move |auth: Option<&str>| {
        let fresh = current_token(&token_dir).is_some_and(|(token, minted)| {
            auth == Some(format!("Bearer {token}").as_str()) && minted.elapsed().unwrap_or_default() < lifetime
        });
        if !fresh {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        fresh
    });
    let server = fake_api::serve_gated(handler, gate);

    let mut config = builtin.clone();
    let profile = config.providers.get_mut("vertex").expect("the shipped vertex profile");
    profile.base_url = Some(server);
    profile.project = Some("soak".into());
    profile.token_env = None;
    profile.token_command = Some(vec![token_command(dir.path()).display().to_string()]);
    // A little under the token's life, as a real deployment would set it.
    profile.token_lifetime_s = Some((settings.expire_s - 5.0).max(1.0));
    profile.limits.requests_per_minute = None;
    config.router.chain = vec!["vertex".into()];
    config.budget.max_usd_per_request = 10.0;
    config.server.data_dir = Some(dir.path().join("uploads"));
    config.server.max_concurrent_runs = settings.clients.max(1);
    // Reports are forgotten as the journal is pruned (serve's retention sweep).
    config.server.keep_reports_days = settings.prune_every_s / 86_400.0;
    let journal_path = dir.path().join("journal.sqlite3");
    let journal = Journal::open(&journal_path).expect("the journal");
    let key = journal
        .create_key(&NewKey { name: "soak".into(), ..NewKey::default() })
        .expect("a key")
        .key
        .expose()
        .to_string();
    let app = App::new(Gateway::with_journal(config, journal));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let router = vidgate::serve::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let sweeping = vidgate::serve::native::retention::spawn(app.clone());

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(settings.minutes * 60.0);
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..settings.clients)
        .map(|n| tokio::spawn(client(base.clone(), key.clone(), clip.clone(), n, until, tally.clone())))
        .collect();
    // The journal is pruned of what is older than one prune period, as
    // `serve` prunes by `journal.keep_days` on its schedule.
    let prune_every = Duration::from_secs_f64(settings.prune_every_s);
    let gateway = app.gateway();
    let pruned = Arc::new(AtomicUsize::new(0));
    let pruner = {
        let pruned = pruned.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(prune_every).await;
                let gateway = gateway.clone();
                let removed = tokio::task::spawn_blocking(move || gateway.journal().prune(prune_every)).await;
                match removed.expect("the prune ends") {
                    Ok(p) => {
                        pruned.fetch_add(p.rows.values().sum::<u64>() as usize, Ordering::SeqCst);
                    }
                    Err(e) => println!("prune failed: {e}"),
                }
            }
        })
    };
    println!("| s | RSS MiB | peak RSS MiB | journal KiB | WAL KiB | units | runs done | failed | tokens minted | 401s | rows pruned |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let (mut rss, mut sizes) = (Vec::new(), Vec::new());
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let now = status_kib("VmRSS:") as f64 / 1024.0;
        let (file, wal) = journal_bytes(&journal_path);
        let size = file as f64 / 1024.0;
        let units = {
            let gateway = app.gateway();
            tokio::task::spawn_blocking(move || gateway.journal().stats()).await.expect("stats end")
        }
        .map_or(0, |s| s.rows.get("units").copied().unwrap_or(0));
        rss.push(now);
        sizes.push(size);
        let minted = std::fs::read_to_string(dir.path().join("count")).unwrap_or_default();
        println!(
            "| {:.0} | {now:.1} | {:.1} | {size:.0} | {:.0} | {units} | {} | {} | {} | {} | {} |",
            started.elapsed().as_secs_f64(),
            status_kib("VmHWM:") as f64 / 1024.0,
            wal as f64 / 1024.0,
            tally.done.load(Ordering::SeqCst),
            tally.failed.load(Ordering::SeqCst),
            minted.trim(),
            refused.load(Ordering::SeqCst),
            pruned.load(Ordering::SeqCst),
        );
    }
    for c in clients {
        let _ = c.await;
    }
    pruner.abort();
    sweeping.abort();
    let third = (rss.len() / 3).max(1);
    let peak =
        |v: &[f64], from: usize, to: usize| v[from.min(v.len())..to.min(v.len())].iter().copied().fold(0.0, f64::max);
    let (rss_mid, rss_last) = (peak(&rss, third, 2 * third), peak(&rss, 2 * third, rss.len()));
    let (size_mid, size_last) = (peak(&sizes, third, 2 * third), peak(&sizes, 2 * third, sizes.len()));
    let failed = tally.failed.load(Ordering::SeqCst);
    println!(
        "\n{:.0} s, {} clients: {} runs done, {failed} failed. RSS peak: middle third {rss_mid:.1} MiB, last third {rss_last:.1} MiB ({:+.1} %). \
         Journal file: middle third {size_mid:.0} KiB, last third {size_last:.0} KiB ({:+.1} %). 401s answered by the fake: {} (each refetched and resent).",
        started.elapsed().as_secs_f64(),
        settings.clients,
        tally.done.load(Ordering::SeqCst),
        (rss_last / rss_mid - 1.0) * 100.0,
        (size_last / size_mid - 1.0) * 100.0,
        refused.load(Ordering::SeqCst),
    );
    for e in tally.errors.lock().unwrap().iter().take(10) {
        println!("  {e}");
    }
    println!("Goals: RSS and the journal file within 10 % between the middle and last thirds (the WAL follows the write rate); no failed run.");
}
