//! SIGHUP: the real binary reads its config again and serves with it; a
//! config it refuses is logged and the one in force stays.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use vidgate::journal::{Journal, NewKey};

use crate::util::{block_on, vidgate};

fn write_config(dir: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let file = dir.join("vidgate.toml");
    let text = format!(
        "[journal]\npath = {journal:?}\n\n[router]\nchain = [\"fake\"]\n\n\
         [server]\nbind = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nshutdown_grace_s = 1\n\n\
         [providers.fake]\nprotocol = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_env = \"VIDGATE_RELOAD_PROVIDER_KEY\"\nmodel = \"fake-vision\"\n\n{extra}",
        journal = dir.join("journal.sqlite3"),
        data = dir.join("uploads"),
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn hang_up(child: &Child) {
    let sent = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// The model ids `/v1/models` lists now.
fn models(client: &reqwest::Client, base: &str) -> Vec<String> {
    let body: Value = block_on(async { client.get(format!("{base}/v1/models")).send().await?.json().await }).unwrap();
    body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_config_and_a_bad_one_is_refused_with_the_old_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let config = write_config(dir.path(), port, "");
    let key = Journal::open(&dir.path().join("journal.sqlite3"))
        .unwrap()
        .create_key(&NewKey { name: "reload-test".into(), ..NewKey::default() })
        .unwrap()
        .key
        .expose()
        .to_string();
    let client = super::client_with(&key);
    let log = dir.path().join("stderr.log");
    let mut child = vidgate()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("VIDGATE_RELOAD_PROVIDER_KEY", "sk-vidgate-reload-test")
        .env("VIDGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stop = Guard(&mut child);
    wait_for("the service answers", || block_on(reqwest::get(format!("{base}/healthz"))).is_ok());
    assert!(!models(&client, &base).contains(&"team/story".to_string()));

    write_config(dir.path(), port, "[router.aliases.\"team/story\"]\ntask = \"describe\"\n");
    hang_up(&*stop.0);
    wait_for("the new alias is served", || models(&client, &base).contains(&"team/story".to_string()));

    // A value out of range: refused, logged with its key, the alias stays.
    write_config(dir.path(), port, "[sampling]\nfps = -1.0\n");
    hang_up(&*stop.0);
    wait_for("the refusal is logged", || std::fs::read_to_string(&log).unwrap().contains("config reload refused"));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("sampling.fps"), "{logged}");
    assert!(models(&client, &base).contains(&"team/story".to_string()), "the config in force was dropped");
    assert!(!logged.contains("sk-vidgate-reload-test") && !logged.contains(&key), "a key is in the log");
    drop(stop);
}

/// Kills the child when dropped, whatever the test's outcome.
struct Guard<'a>(&'a mut Child);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
