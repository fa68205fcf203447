//! `vidgate serve`, in process on a free port, with scripted providers, and
//! as the real binary for the tests that need a process (signals, clients
//! in other languages, a browser).

mod big_upload;
mod budget;
mod instances;
mod keys;
mod kill;
mod native;
mod native_more;
mod openai;

use std::net::SocketAddr;
use std::sync::Arc;

use vidgate::config::{Config, Protocol, ProviderProfile};
use vidgate::gateway::Gateway;
use vidgate::journal::{Journal, NewKey};
use vidgate::provider::scripted::ScriptedProvider;
use vidgate::provider::Provider;
use vidgate::serve::App;

mod reload;
mod restart;
mod web;

/// A service on a free loopback port, stopped when dropped.
#[allow(dead_code)] // each field serves some of the tests
pub struct Server {
    pub app: App,
    pub addr: SocketAddr,
    pub base: String,
    /// A client key for requests (see [`Server::client`]), in the journal.
    pub key: String,
    /// A key made with `--admin`: key management and `/metrics`.
    pub admin_key: String,
    /// The account of [`Server::key`]: runs submitted in the process under
    /// it are that key's, which it reads over HTTP (another key does not).
    pub account: vidgate::gateway::Account,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Server {
    /// Serve `config` with `providers` standing in for the profiles of the
    /// same names, on the shared test runtime. Uploads and the journal go to
    /// a temp dir.
    pub fn start(config: Config, providers: Vec<(&str, Arc<dyn Provider>)>) -> Self {
        Self::start_inner(config, providers, None)
    }

    /// [`Server::start`] on `journal` (another instance's, say).
    pub fn start_on(config: Config, providers: Vec<(&str, Arc<dyn Provider>)>, journal: Journal) -> Self {
        Self::start_inner(config, providers, Some(journal))
    }

    fn start_inner(mut config: Config, providers: Vec<(&str, Arc<dyn Provider>)>, journal: Option<Journal>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        config.server.data_dir = Some(dir.path().join("uploads"));
        // Names unique among live keys, in a journal other servers share.
        let tag =
            if journal.is_some() { format!("-{}", hex::encode(rand::random::<[u8; 3]>())) } else { String::new() };
        let journal = journal.unwrap_or_else(|| Journal::open(&dir.path().join("journal.sqlite3")).unwrap());
        let make = |name: &str, admin: bool| {
            let new = NewKey { name: format!("{name}{tag}"), admin, ..NewKey::default() };
            let made = journal.create_key(&new).unwrap();
            (made.key.expose().to_string(), made.record.id)
        };
        let ((key, id), (admin_key, _)) = (make("test-client", false), make("test-admin", true));
        let account = vidgate::gateway::Account { id, max_usd_per_day: None };
        let mut gateway = Gateway::with_journal(config, journal);
        for (name, provider) in providers {
            gateway = gateway.with_provider(name, provider);
        }
        let app = App::new(gateway);
        let listener = crate::util::block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = vidgate::serve::router(app.clone());
        crate::util::runtime().spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { app, addr, base: format!("http://{addr}"), key, admin_key, account, stop: Some(stop), _dir: dir }
    }

    /// A client that sends the server's test key on every request.
    pub fn client(&self) -> reqwest::Client {
        client_with(&self.key)
    }

    /// The server's journal file.
    pub fn journal_path(&self) -> std::path::PathBuf {
        self._dir.path().join("journal.sqlite3")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// A client that sends `key` on every request.
pub fn client_with(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// One scripted call's cost, and a provider that sees one frame a call:
/// the gateway tests' own.
pub(crate) use crate::gateway::{scripted, UNIT_USD};

/// A config whose chain is the one profile `name`, served by a scripted provider.
pub fn config(name: &str) -> Config {
    let mut c = Config::builtin().unwrap();
    c.providers
        .insert(name.to_string(), ProviderProfile { protocol: Some(Protocol::Openai), ..ProviderProfile::default() });
    c.router.chain = vec![name.to_string()];
    c
}

/// A server with one scripted provider `fake`, and that provider.
pub fn with_fake() -> (Server, Arc<ScriptedProvider>) {
    let fake = Arc::new(scripted("fake"));
    (Server::start(config("fake"), vec![("fake", fake.clone() as Arc<dyn Provider>)]), fake)
}

#[test]
fn health_says_ok_with_the_load() {
    let (server, _) = with_fake();
    let body: serde_json::Value =
        crate::util::block_on(async { server.client().get(server.url("/healthz")).send().await?.json().await })
            .unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["runs"]["running"], 0, "{body}");
}

#[test]
fn a_submitted_run_ends_with_its_report_under_its_journal_id() {
    use vidgate::schema::{Task, VideoRequest};
    use vidgate::serve::runs::Submission;
    let (server, fake) = with_fake();
    let clip = crate::util::testsrc_10s();
    let request = VideoRequest::new(&clip, Task::Timeline);
    let run =
        crate::util::block_on(server.app.runs.submit(Submission { request, account: Some(server.account.clone()) }))
            .unwrap();
    let state = crate::util::block_on(run.finished());
    assert_eq!(state.name(), "done", "{state:?}");
    let body: serde_json::Value = crate::util::block_on(async {
        server.client().get(server.url(&format!("/v1/runs/{}", run.id))).send().await?.json().await
    })
    .unwrap();
    assert_eq!(body["status"], "done", "{body}");
    assert!(!body["report"]["events"].as_array().unwrap().is_empty(), "{body}");
    assert!(fake.calls() > 0);
    let (history, _) = run.events();
    assert!(matches!(history.last(), Some(vidgate::progress::Progress::Done { .. })), "{history:?}");
}
