//! The journal's one seam to its database: SQL written once, run on SQLite
//! (the embedded default) or on PostgreSQL (several instances sharing one
//! journal, see [`super::pg`]).
//!
//! The journal's statements use a subset both understand: `?N` parameters
//! (made `$N` for PostgreSQL), `RETURNING`, `ON CONFLICT`, `CAST(? AS
//! BIGINT)` where a parameter's type could not be inferred. Values cross as
//! [`Val`]; a row comes back as a [`Row`] of them. A write that must see
//! and change the ledger as one step runs in [`Conn::write`]: SQLite's
//! `BEGIN IMMEDIATE` (the file's write lock), PostgreSQL's transaction
//! holding one advisory lock, so that every instance's reservations and
//! takeovers line up one after another as SQLite's do.

use std::error::Error as _;

/// A value of a parameter or a column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<u32> for Val {
    fn from(v: u32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// Parameters of a statement, each turned into a [`Val`].
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::journal::db::Val::from($v)),*] };
}
pub(crate) use vals;

/// A database failure, as text (never a connection's password: a
/// PostgreSQL error names neither the URL nor the password).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DbError {
    pub message: String,
    /// The connection failed or went away: the statement may be tried again
    /// on a new one.
    pub connection: bool,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DbError {}

impl DbError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self { message: message.to_string(), connection: false }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self::new(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        // The server's own message (with its detail) reads better than the
        // driver's "db error".
        let message = match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(detail) => format!("{}: {detail}", db.message()),
                None => db.message().to_string(),
            },
            None => match e.source() {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        };
        let connection = e.is_closed()
            || e.as_db_error().is_none() && e.source().is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some());
        Self { message, connection }
    }
}

pub(crate) type DbResult<T> = Result<T, DbError>;

/// A row read back: its columns in the order selected.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row(pub Vec<Val>);

impl Row {
    pub fn get<T: FromVal>(&self, i: usize) -> DbResult<T> {
        let v = self.0.get(i).ok_or_else(|| DbError::new(format!("no column {i} in the row")))?;
        T::from_val(v).ok_or_else(|| DbError::new(format!("column {i} holds {v:?}, not a {}", T::NAME)))
    }
}

/// A Rust value read from a [`Val`].
pub(crate) trait FromVal: Sized {
    const NAME: &'static str;
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for i64 {
    const NAME: &'static str = "integer";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for f64 {
    const NAME: &'static str = "number";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Real(x) => Some(*x),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromVal for bool {
    const NAME: &'static str = "boolean";
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).map(|i| i != 0)
    }
}
impl FromVal for String {
    const NAME: &'static str = "text";
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Null => Some(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// Which database a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// Statements on a connection or in a transaction.
pub(crate) trait Sql {
    fn dialect(&self) -> Dialect;
    /// Run one statement; the rows it changed.
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64>;
    /// Run one statement; the rows it gave.
    fn rows(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>>;
    /// Run statements separated by `;`, without parameters.
    fn batch(&mut self, sql: &str) -> DbResult<()>;
}

/// Reading helpers for any [`Sql`], a `dyn Sql` too.
pub(crate) trait SqlExt: Sql {
    /// The first column of the first row, if there is a row.
    fn one<T: FromVal>(&mut self, sql: &str, args: &[Val]) -> DbResult<Option<T>> {
        self.rows(sql, args)?.first().map(|r| r.get(0)).transpose()
    }

    /// The time that run leases are read and written on, in seconds since
    /// the Unix epoch: on PostgreSQL the server's clock, which every
    /// instance reads alike (an instance whose clock runs ahead takes no
    /// live run); on SQLite this process's (one machine), `skew_s` ahead
    /// (a test's clock that runs ahead; 0 otherwise).
    fn clock_s(&mut self, skew_s: i64) -> DbResult<i64> {
        match self.dialect() {
            Dialect::Postgres => self
                .one("SELECT CAST(FLOOR(EXTRACT(EPOCH FROM clock_timestamp())) AS BIGINT)", &[])?
                .ok_or_else(|| DbError::new("the server gave no time")),
            Dialect::Sqlite => Ok(super::now_s() + skew_s),
        }
    }

    /// The first column of every row.
    fn column<T: FromVal>(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<T>> {
        self.rows(sql, args)?.iter().map(|r| r.get(0)).collect()
    }
}

impl<S: Sql + ?Sized> SqlExt for S {}

/// SQLite, on a connection or in a transaction (which derefs to one).
pub(crate) struct Lite<'a>(pub &'a rusqlite::Connection);

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Owned(Value::Null),
            Val::Int(i) => ToSqlOutput::Owned(Value::Integer(*i)),
            Val::Real(x) => ToSqlOutput::Owned(Value::Real(*x)),
            Val::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn lite_val(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(x) => Val::Real(x),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64> {
        Ok(self.0.execute(sql, rusqlite::params_from_iter(args))? as u64)
    }
    fn rows(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>> {
        let mut stmt = self.0.prepare(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(Row((0..n).map(|i| row.get_ref(i).map(lite_val)).collect::<rusqlite::Result<_>>()?));
        }
        Ok(out)
    }
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        Ok(self.0.execute_batch(sql)?)
    }
}

/// PostgreSQL, on a client or in a transaction, with the connection's
/// prepared statements when it keeps them (one round trip a statement
/// instead of two).
pub(crate) struct Pg<'a, C: postgres::GenericClient> {
    pub client: &'a mut C,
    pub statements: Option<&'a mut Statements>,
}

/// A connection's prepared statements, by their SQL as the journal writes it.
pub(crate) type Statements = std::collections::HashMap<String, postgres::Statement>;

/// A pooled PostgreSQL connection and its prepared statements.
pub(crate) struct PgConn {
    pub client: postgres::Client,
    pub statements: Statements,
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        let mismatch = || format!("{self:?} cannot be sent as {ty}");
        match (self, ty) {
            (Val::Null, _) => Ok(IsNull::Yes),
            (Val::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Val::Int(i), &Type::INT4) => i32::try_from(*i).map_err(|_| mismatch())?.to_sql(ty, out),
            (Val::Int(i), &Type::INT2) => i16::try_from(*i).map_err(|_| mismatch())?.to_sql(ty, out),
            (Val::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Val::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Val::Real(x), &Type::FLOAT8) => x.to_sql(ty, out),
            (Val::Real(x), &Type::FLOAT4) => (*x as f32).to_sql(ty, out),
            (Val::Text(s), _) if <&str as postgres::types::ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            _ => Err(mismatch().into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> postgres::types::FromSql<'a> for Val {
    fn from_sql(ty: &postgres::types::Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f64::from(f32::from_sql(ty, raw)?)),
            _ => Val::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &postgres::types::Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Val::Null)
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(*ty, Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::FLOAT8 | Type::FLOAT4)
            || <String as postgres::types::FromSql>::accepts(ty)
    }
}

/// `?N` made `$N`, outside quoted text.
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            c => out.push(c),
        }
    }
    out
}

impl<C: postgres::GenericClient> Pg<'_, C> {
    /// The statement `sql`, prepared once per connection.
    fn statement(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        let Some(cache) = self.statements.as_deref_mut() else { return Ok(self.client.prepare(&pg_sql(sql))?) };
        if let Some(statement) = cache.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&pg_sql(sql))?;
        cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl<C: postgres::GenericClient> Sql for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let statement = self.statement(sql)?;
        Ok(self.client.execute(&statement, &params)?)
    }
    fn rows(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>> {
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        let statement = self.statement(sql)?;
        let rows = self.client.query(&statement, &params)?;
        rows.iter()
            .map(|row| (0..row.len()).map(|i| row.try_get::<_, Val>(i)).collect::<Result<Vec<_>, _>>().map(Row))
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        Ok(self.client.batch_execute(sql)?)
    }
}

/// The advisory lock every PostgreSQL write transaction holds: the
/// journal's one write lock, as SQLite's file lock is.
pub(crate) const PG_WRITE_LOCK: i64 = 0x7669_6467_6174_6531; // "vidgate1"

/// A connection of either database, as the journal's threads hold it.
pub(crate) enum Conn<'a> {
    Lite(&'a mut rusqlite::Connection),
    Pg(&'a mut PgConn),
}

impl Conn<'_> {
    /// Run `f` in a transaction that holds the journal's write lock from its
    /// start, committed when `f` returns `Ok`, rolled back otherwise.
    pub fn write<T>(&mut self, f: impl FnOnce(&mut dyn Sql) -> DbResult<T>) -> DbResult<T> {
        match self {
            Conn::Lite(c) => {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = f(&mut Lite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Conn::Pg(c) => {
                let PgConn { client, statements } = &mut **c;
                let mut tx = client.transaction()?;
                let mut db = Pg { client: &mut tx, statements: Some(statements) };
                db.exec("SELECT pg_advisory_xact_lock(CAST(?1 AS BIGINT))", &vals![PG_WRITE_LOCK])?;
                let out = f(&mut db)?;
                tx.commit()?;
                Ok(out)
            }
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, vacuum).
    pub fn lite(&mut self) -> Option<&mut rusqlite::Connection> {
        match self {
            Conn::Lite(c) => Some(c),
            Conn::Pg(_) => None,
        }
    }
}

impl Sql for Conn<'_> {
    fn dialect(&self) -> Dialect {
        match self {
            Conn::Lite(_) => Dialect::Sqlite,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }
    fn exec(&mut self, sql: &str, args: &[Val]) -> DbResult<u64> {
        match self {
            Conn::Lite(c) => Lite(c).exec(sql, args),
            Conn::Pg(c) => Pg { client: &mut c.client, statements: Some(&mut c.statements) }.exec(sql, args),
        }
    }
    fn rows(&mut self, sql: &str, args: &[Val]) -> DbResult<Vec<Row>> {
        match self {
            Conn::Lite(c) => Lite(c).rows(sql, args),
            Conn::Pg(c) => Pg { client: &mut c.client, statements: Some(&mut c.statements) }.rows(sql, args),
        }
    }
    fn batch(&mut self, sql: &str) -> DbResult<()> {
        match self {
            Conn::Lite(c) => Lite(c).batch(sql),
            Conn::Pg(c) => c.client.batch_execute(sql).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_dollars_outside_quotes() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d = $12"
        );
    }

    #[test]
    fn values_round_trip_through_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut db = Lite(&c);
        let row = db.rows("SELECT ?1, ?2, ?3, ?4", &vals![7i64, 0.5, "x", None::<i64>]).unwrap();
        assert_eq!(row, vec![Row(vec![Val::Int(7), Val::Real(0.5), Val::Text("x".into()), Val::Null])]);
        assert_eq!(row[0].get::<Option<i64>>(3).unwrap(), None);
        assert!(row[0].get::<String>(0).unwrap_err().message.contains("not a text"));
    }
}
