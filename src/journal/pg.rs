//! The journal on PostgreSQL: several `vidgate serve` instances (or command
//! line runs on several machines) sharing one ledger of record.
//!
//! Its tables are SQLite's, in PostgreSQL's types. The schema is versioned:
//! each migration below is applied once, in order, at start, inside one
//! transaction holding the journal's write lock, so instances starting
//! together never race to make it, and `vidgate_migrations` says which ran.

use std::time::Duration;

use super::db::{DbError, DbResult, Pg, PgConn, Sql, SqlExt, PG_WRITE_LOCK};

/// The migrations, by version: append, never edit one that shipped.
const MIGRATIONS: [(i64, &str); 4] = [
    (
        1,
        "
CREATE TABLE units (
    key TEXT PRIMARY KEY,
    video TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    record TEXT NOT NULL,
    created_unix_s BIGINT NOT NULL
);
CREATE INDEX units_by_video ON units(video);
CREATE INDEX units_by_age ON units(created_unix_s);
CREATE TABLE spend (
    id BIGSERIAL PRIMARY KEY,
    day BIGINT NOT NULL,
    at_unix_s BIGINT NOT NULL,
    provider TEXT NOT NULL,
    usd DOUBLE PRECISION NOT NULL,
    account TEXT
);
CREATE INDEX spend_by_day ON spend(day);
CREATE INDEX spend_by_account ON spend(account, day);
CREATE TABLE reservations (
    id BIGSERIAL PRIMARY KEY,
    day BIGINT NOT NULL,
    usd DOUBLE PRECISION NOT NULL,
    expires_unix_s BIGINT NOT NULL,
    account TEXT
);
CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    request TEXT NOT NULL,
    started_unix_s BIGINT NOT NULL,
    finished_unix_s BIGINT,
    status TEXT NOT NULL,
    video_hash TEXT,
    lease_until_unix_s BIGINT NOT NULL DEFAULT 0,
    account TEXT,
    outcome TEXT,
    owner TEXT,
    kept_video TEXT
);
CREATE INDEX runs_by_status ON runs(status);
CREATE TABLE api_keys (
    seq BIGSERIAL UNIQUE,
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    admin BIGINT NOT NULL DEFAULT 0,
    max_usd_per_day DOUBLE PRECISION,
    requests_per_minute BIGINT,
    created_unix_s BIGINT NOT NULL,
    revoked_unix_s BIGINT
);
",
    ),
    // Rate limits shared by every instance (see `rates`).
    (2, "CREATE TABLE rate_limits (key TEXT PRIMARY KEY, tat_ns BIGINT NOT NULL);"),
    // Units being bought now by some instance, so that no other buys them
    // too (see `flight`); a claim whose instance died runs out.
    (
        3,
        "
CREATE TABLE unit_claims (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_unix_s BIGINT NOT NULL
);
",
    ),
    // A reservation checked and written in one round trip: the journal's
    // write lock, then (a new snapshot for each query of a VOLATILE
    // function) today's committed money, then the row. The sums are
    // `Journal::committed_today`'s and the account ledger's.
    (
        4,
        "
CREATE FUNCTION vidgate_hold(p_day BIGINT, p_now BIGINT, p_amount DOUBLE PRECISION, p_cap DOUBLE PRECISION,
                             p_expires BIGINT, p_account TEXT, p_lock BIGINT)
RETURNS TABLE (held_id BIGINT, left_usd DOUBLE PRECISION)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE committed DOUBLE PRECISION;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_account IS NULL THEN
        SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = p_day)
             + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations
                WHERE day = p_day AND expires_unix_s > p_now AND account IS NULL)
        INTO committed;
    ELSE
        SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = p_day AND account = p_account)
             + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations
                WHERE day = p_day AND account = p_account AND expires_unix_s > p_now)
        INTO committed;
    END IF;
    IF p_amount > p_cap - committed + 1e-12 THEN
        RETURN QUERY SELECT NULL::BIGINT, p_cap - committed;
    ELSE
        RETURN QUERY INSERT INTO reservations (day, usd, expires_unix_s, account)
            VALUES (p_day, p_amount, p_expires, p_account) RETURNING reservations.id, p_cap - committed;
    END IF;
END
$$;
",
    ),
];

/// Make a new, empty database `name` (letters, digits, `_`) on the server
/// `server_url` names, and give its URL: for tests and benchmarks, and for
/// setting up a deployment. The server's URL may carry no password (the
/// journal never takes one in a URL either).
///
/// # Errors
/// A name that is not a plain identifier; the server cannot be reached, or
/// refuses (the database exists, the user may not create one).
pub fn create_database(server_url: &str, name: &str) -> Result<String, DbError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbError::new(format!("{name:?} is not a database name of letters, digits and _")));
    }
    let mut url = reqwest::Url::parse(server_url).map_err(|e| DbError::new(format!("not a URL: {e}")))?;
    let (admin, statement) = (super::tls::target(server_url)?, format!("CREATE DATABASE {name}"));
    // The sync driver blocks on a runtime of its own: never on an async one's thread.
    std::thread::spawn(move || -> DbResult<()> {
        let config: postgres::Config = admin.url.parse()?;
        let mut client = match admin.tls {
            Some(tls) => config.connect(tls)?,
            None => config.connect(postgres::NoTls)?,
        };
        Ok(client.batch_execute(&statement)?)
    })
    .join()
    .map_err(|_| DbError::new("creating the database failed"))??;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Hold `amount` of `cap` for today in one round trip (migration 4): the
/// reservation's id, or what is left when it does not fit.
pub(crate) fn hold(c: &mut dyn Sql, amount: f64, cap: f64, account: Option<&str>) -> DbResult<Result<i64, f64>> {
    let now = super::now_s();
    let rows = c.rows(
        "SELECT held_id, left_usd FROM vidgate_hold(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &super::db::vals![
            now.div_euclid(86_400),
            now,
            amount,
            cap,
            now + super::RESERVATION_TTL_S,
            account,
            PG_WRITE_LOCK
        ],
    )?;
    let row = rows.first().ok_or_else(|| DbError::new("vidgate_hold gave no row"))?;
    Ok(match row.get::<Option<i64>>(0)? {
        Some(id) => Ok(id),
        None => Err(row.get::<f64>(1)?.max(0.0)),
    })
}

/// How long a call waits for a connection while the server is away.
pub(crate) const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// How long one try for a connection waits; while the server is away the
/// pool tries again at most this often, half of it.
const CHECKOUT_WAIT: Duration = Duration::from_secs(4);

/// A pool of `size` connections to `url`, the schema brought up to date.
///
/// # Errors
/// A URL that does not parse, a server that cannot be reached (one try),
/// a failed migration.
pub(crate) fn connect(url: &str, password: Option<&str>, size: u32) -> DbResult<PgPool> {
    let target = super::tls::target(url)?;
    let mut config: postgres::Config = target
        .url
        .parse()
        .map_err(|e| DbError::new(format!("not a PostgreSQL URL (postgres://user@host:port/db): {e}")))?;
    if let Some(password) = password {
        config.password(password);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.application_name("vidgate");
    let manager = Manager { config, tls: target.tls };
    let pool = r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_WAIT)
        // Errors of connections the pool opens in the background are the
        // calls' to report, not the log's every few seconds.
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build(manager)
        .map_err(|e| DbError { message: format!("cannot connect: {e}"), connection: true })?;
    let mut client = pool.get().map_err(|e| DbError { message: format!("cannot connect: {e}"), connection: true })?;
    migrate(&mut client.client)?;
    drop(client);
    Ok(pool)
}

/// The journal's connections to one database.
pub(crate) type PgPool = r2d2::Pool<Manager>;

/// Connections for the pool: each with its prepared statements, checked
/// with an empty query when taken from the pool (a connection the server
/// dropped meanwhile is replaced, not handed to a call). Over TLS when the
/// URL asks for it ([`super::tls`]).
pub(crate) struct Manager {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    /// With the driver's cause (a refused certificate, a reset) in its text.
    type Error = DbError;

    fn connect(&self) -> Result<PgConn, DbError> {
        let client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(postgres::NoTls)?,
        };
        Ok(PgConn { client, statements: Default::default() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), DbError> {
        Ok(conn.client.simple_query("").map(drop)?)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// Apply the migrations not yet applied; the version now in force.
fn migrate(client: &mut postgres::Client) -> DbResult<i64> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_WRITE_LOCK])?;
    let mut db = Pg { client: &mut tx, statements: None };
    db.batch(
        "CREATE TABLE IF NOT EXISTS vidgate_migrations (version BIGINT PRIMARY KEY, applied_unix_s BIGINT NOT NULL)",
    )?;
    let applied: Vec<i64> = db.column("SELECT version FROM vidgate_migrations", &[])?;
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(unknown) = applied.iter().find(|v| !MIGRATIONS.iter().any(|(m, _)| m == *v)) {
        return Err(DbError::new(format!(
            "the journal's schema has migration {unknown}, which this vidgate does not know (it knows up to \
             {newest}): upgrade vidgate"
        )));
    }
    // Each one not applied yet, in order: by version, not by the highest.
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        db.batch(sql)?;
        db.exec(
            "INSERT INTO vidgate_migrations (version, applied_unix_s) VALUES (?1, ?2)",
            &super::db::vals![*version, super::now_s()],
        )?;
    }
    tx.commit()?;
    Ok(newest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_name_is_a_plain_identifier_never_sql() {
        for name in ["", "x; DROP DATABASE vidgate", "a-b", "x\"y"] {
            let err = super::create_database("postgres://vidgate@127.0.0.1:1/vidgate", name).unwrap_err();
            assert!(err.message.contains("not a database name"), "{name}: {err}");
        }
    }
}
