//! A PostgreSQL server for a benchmark: `VIDGATE_BENCH_PG_URL` when set,
//! else one of its own started by `scripts/with-postgres.sh --print` and
//! stopped when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct PgServer {
    pub url: String,
    /// Data and bin directories of a server started here.
    own: Option<(PathBuf, PathBuf)>,
}

impl PgServer {
    pub fn start() -> Self {
        if let Ok(url) = std::env::var("VIDGATE_BENCH_PG_URL") {
            return Self { url, own: None };
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/with-postgres.sh");
        let out = Command::new(script).arg("--print").output().expect("scripts/with-postgres.sh runs");
        assert!(out.status.success(), "no PostgreSQL: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        Self { url: lines[0].to_string(), own: Some((lines[1].into(), lines[2].into())) }
    }

    /// A new database on the server, its name `prefix` and a random tail: its URL.
    pub fn database(&self, prefix: &str) -> String {
        let name = format!("{prefix}_{}", hex::encode(rand::random::<[u8; 4]>()));
        vidgate::journal::create_database(&self.url, &name).expect("a benchmark database")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let Some((data, bin)) = &self.own else { return };
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let mut stop = if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join("pg_ctl"));
            c
        } else {
            Command::new(bin.join("pg_ctl"))
        };
        let _ = stop.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]).output();
        if let Some(dir) = data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
