//! The journal's test suite runs on both databases: each test written with
//! [`on_both!`] runs once on an SQLite file and once on a PostgreSQL
//! database of its own, made on the server that `VIDGATE_TEST_PG_URL`
//! names (`scripts/with-postgres.sh` starts one and sets it). Without that
//! server the PostgreSQL half fails, unless `VIDGATE_ALLOW_SKIP=1`.

use std::path::PathBuf;

use super::{Journal, DEFAULT_POOL_SIZE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// One journal, which [`Place::open`] opens as many times as a test needs
/// processes (each handle has its own connections).
pub(crate) struct Place {
    pub dir: tempfile::TempDir,
    pub kind: Kind,
    url: Option<String>,
}

impl Place {
    /// A new, empty journal of `kind`; none when PostgreSQL is missing and
    /// skipping is allowed.
    pub fn new(kind: Kind) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let url = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => Some(new_database()?),
        };
        Some(Self { dir, kind, url })
    }

    /// Another handle on the journal, as another process would have.
    pub fn open(&self) -> Journal {
        match &self.url {
            None => Journal::open(&self.dir.path().join("j.sqlite3")).unwrap(),
            Some(url) => Journal::connect(url, Some(&self.videos()), DEFAULT_POOL_SIZE).unwrap(),
        }
    }

    /// The folder of kept copies of videos given as bytes.
    pub fn videos(&self) -> PathBuf {
        match self.kind {
            Kind::Sqlite => self.dir.path().join("j.sqlite3.videos"),
            Kind::Postgres => self.dir.path().join("videos"),
        }
    }

    /// The journal's URL (PostgreSQL) or file (SQLite), as `[journal]` takes it.
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

/// The test server's URL; none when skipping is allowed, else a panic that
/// says how to get one.
pub(crate) fn server_url() -> Option<String> {
    match std::env::var("VIDGATE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("VIDGATE_ALLOW_SKIP").as_deref() == Ok("1") => {
            eprintln!("skipped: no PostgreSQL (VIDGATE_TEST_PG_URL unset; VIDGATE_ALLOW_SKIP=1)");
            None
        }
        _ => panic!(
            "VIDGATE_TEST_PG_URL is not set: run the tests under scripts/with-postgres.sh, \
             which starts a PostgreSQL server for them (or set VIDGATE_ALLOW_SKIP=1 to skip)"
        ),
    }
}

/// A new database on the test server, its URL.
pub(crate) fn new_database() -> Option<String> {
    let server = server_url()?;
    let name = format!("vt_{}", hex::encode(rand::random::<[u8; 8]>()));
    let made = super::create_database(&server, &name);
    Some(made.unwrap_or_else(|e| panic!("cannot make a test database: {e}")))
}

/// A test run once on each database: `on_both! { fn name(place) { body } }`
/// makes `name::sqlite` and `name::postgres`.
macro_rules! on_both {
    ($(#[$meta:meta])* fn $name:ident($place:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::journal::testing::{Kind, Place};

            fn body($place: &Place) $body

            #[test]
            fn sqlite() {
                body(&Place::new(Kind::Sqlite).unwrap());
            }

            #[test]
            fn postgres() {
                if let Some(place) = Place::new(Kind::Postgres) {
                    body(&place);
                }
            }
        }
    };
}
pub(crate) use on_both;

/// The journal's write lock, held by another process until released.
pub(crate) enum Locker {
    Sqlite(rusqlite::Connection),
    /// A thread of its own holds a session's advisory lock (the sync
    /// client must stay off async runtimes), until told to let go.
    Postgres(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl Locker {
    pub fn take(place: &Place) -> Self {
        match place.url() {
            None => {
                let other = rusqlite::Connection::open(place.dir.path().join("j.sqlite3")).unwrap();
                other.execute_batch("BEGIN IMMEDIATE").unwrap();
                Locker::Sqlite(other)
            }
            Some(url) => {
                let url = url.to_string();
                let (taken, wait_taken) = std::sync::mpsc::channel();
                let (release, wait_release) = std::sync::mpsc::channel::<()>();
                let holder = std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    client.execute("SELECT pg_advisory_lock($1)", &[&super::db::PG_WRITE_LOCK]).unwrap();
                    taken.send(()).unwrap();
                    let _ = wait_release.recv();
                    client.execute("SELECT pg_advisory_unlock($1)", &[&super::db::PG_WRITE_LOCK]).unwrap();
                });
                wait_taken.recv().unwrap();
                Locker::Postgres(release, holder)
            }
        }
    }

    pub fn release(self) {
        match self {
            Locker::Sqlite(other) => other.execute_batch("COMMIT").unwrap(),
            Locker::Postgres(release, holder) => {
                release.send(()).unwrap();
                holder.join().unwrap();
            }
        }
    }
}

/// A PostgreSQL server of a test's own (`scripts/with-postgres.sh --print`),
/// for a test that stops and starts it; stopped and removed when dropped.
/// None when the tools are missing and skipping is allowed.
pub(crate) struct OwnServer {
    pub url: String,
    data: PathBuf,
    bin: PathBuf,
}

impl OwnServer {
    pub fn start() -> Option<Self> {
        // Without a test server there are no tools to make one either.
        server_url()?;
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/with-postgres.sh");
        let out = std::process::Command::new(script).arg("--print").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        let (url, data, bin) = (lines.next().unwrap(), lines.next().unwrap(), lines.next().unwrap());
        Some(Self { url: url.to_string(), data: data.into(), bin: bin.into() })
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let status = command.arg("-D").arg(&self.data).args(args).stdout(std::process::Stdio::null()).status();
        assert!(status.is_ok_and(|s| s.success()), "pg_ctl {args:?} failed");
    }

    /// Stop the server at once (connections cut), as a crash or a restart would.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        let log = self.data.with_file_name("server.log");
        self.pg_ctl(&["-l", log.to_str().unwrap(), "-w", "-t", "60", "start"]);
    }

    /// Offer TLS with this certificate and key (PEM), restarting the server.
    /// Plain connections are still taken.
    pub fn serve_tls(&self, cert_pem: &str, key_pem: &str) {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let (cert, key) = (self.data.join("server.crt"), self.data.join("server.key"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        // The server refuses a key others may read.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if is_root() {
            let owned = std::process::Command::new("chown").arg("postgres:").args([&cert, &key]).status();
            assert!(owned.is_ok_and(|s| s.success()), "chown of the server's certificate failed");
        }
        let mut conf = std::fs::OpenOptions::new().append(true).open(self.data.join("postgresql.conf")).unwrap();
        writeln!(conf, "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'").unwrap();
        self.stop();
        self.start_again();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.stop());
        if let Some(dir) = self.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
