//! API keys of `vidgate serve`, kept in the journal: who may call the
//! service, with what daily cap and request rate.
//!
//! A key is `vg-` and 64 hex digits (32 random bytes). It is shown once, when
//! it is made; the journal keeps only its SHA-256. A plain fast hash is
//! enough here, unlike for passwords: a key holds 256 random bits, so no
//! guess list or brute force gets anywhere near one, and a slow hash would
//! only slow down every request.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::db::{vals, DbResult, Dialect, Sql, SqlExt};
use super::{now_s, Journal, JournalError, KEPT_UNIX_S};
use crate::secret::Secret;

/// What a new key may do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewKey {
    /// Unique among the keys not revoked: 1 to 64 letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// May manage keys and read `/metrics`.
    pub admin: bool,
    /// This key's cap per UTC day, in US dollars, beside the gateway's own.
    pub max_usd_per_day: Option<f64>,
    /// Requests per minute this key may make.
    pub requests_per_minute: Option<u32>,
}

/// A key as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub admin: bool,
    pub max_usd_per_day: Option<f64>,
    pub requests_per_minute: Option<u32>,
    pub created_unix_s: i64,
    pub revoked_unix_s: Option<i64>,
    /// Spent on the current UTC day on this key's runs (with calls whose
    /// outcome is unknown counted whole).
    pub spent_today_usd: f64,
}

/// A key just made: [`CreatedKey::key`] is its only copy.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: Secret,
    pub record: ApiKey,
}

/// Why a key could not be made, found or revoked.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A name or a limit out of range.
    #[error("{0}")]
    Invalid(String),
    /// A live key has this name already.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
}

/// The longest key name.
pub const MAX_NAME_CHARS: usize = 64;

/// The prefix of every key.
pub const KEY_PREFIX: &str = "vg-";

/// The stored form of a presented key.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl NewKey {
    /// # Errors
    /// [`KeyError::Invalid`] naming the field and its range.
    pub fn validate(&self) -> Result<(), KeyError> {
        let name = &self.name;
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(KeyError::Invalid(format!(
                "key name {name:?}: give 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-'"
            )));
        }
        if let Some(usd) = self.max_usd_per_day {
            if !(usd.is_finite() && (0.0..=1e9).contains(&usd)) {
                return Err(KeyError::Invalid(format!("max_usd_per_day is {usd}: give 0 to 1000000000 US dollars")));
            }
        }
        if let Some(rpm) = self.requests_per_minute {
            if !(1..=1_000_000).contains(&rpm) {
                return Err(KeyError::Invalid(format!("requests_per_minute is {rpm}: give 1 to 1000000")));
            }
        }
        Ok(())
    }
}

const COLUMNS: &str = "id, name, admin, max_usd_per_day, requests_per_minute, created_unix_s, revoked_unix_s";

impl Journal {
    /// Make a key; the answer holds the key, which is not kept anywhere.
    ///
    /// # Errors
    /// A bad name or limit, a live key of the same name, a write failure.
    pub fn create_key(&self, new: &NewKey) -> Result<CreatedKey, KeyError> {
        new.validate()?;
        let key = format!("{KEY_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
        let id = format!("key_{}", hex::encode(rand::random::<[u8; 6]>()));
        let (hash, new) = (key_hash(&key), new.clone());
        let made = self.with(move |c| {
            c.write(|tx| {
                let taken: Option<String> =
                    tx.one("SELECT id FROM api_keys WHERE name = ?1 AND revoked_unix_s IS NULL", &vals![&new.name])?;
                if let Some(other) = taken {
                    return Ok(Err(KeyError::Conflict(format!(
                        "a key named {:?} exists already ({other}): revoke it first or pick another name",
                        new.name
                    ))));
                }
                tx.exec(
                    "INSERT INTO api_keys (id, name, hash, admin, max_usd_per_day, requests_per_minute, created_unix_s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    &vals![&id, &new.name, hash, new.admin, new.max_usd_per_day, new.requests_per_minute, now_s()],
                )?;
                let record = read_key(tx, "id = ?1", &id)?;
                Ok(record.ok_or_else(|| KeyError::NotFound(format!("key {id} vanished"))))
            })
        })??;
        Ok(CreatedKey { key: Secret::new(key), record: made })
    }

    /// Every key, revoked ones too, oldest first.
    ///
    /// # Errors
    /// A read failure.
    pub fn list_keys(&self) -> Result<Vec<ApiKey>, JournalError> {
        self.with(|c| {
            // In the order they were made: SQLite's row ids, PostgreSQL's sequence.
            let order = match c.dialect() {
                Dialect::Sqlite => "rowid",
                Dialect::Postgres => "seq",
            };
            let ids: Vec<String> =
                c.column(&format!("SELECT id FROM api_keys ORDER BY created_unix_s, {order}"), &[])?;
            let mut keys = Vec::with_capacity(ids.len());
            for id in ids {
                keys.extend(read_key(c, "id = ?1", &id)?);
            }
            Ok(keys)
        })
    }

    /// Revoke the key with this id, else the live key with this name; the
    /// key as it is now. Revoking a revoked key changes nothing.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] when no key has that id or live name.
    pub fn revoke_key(&self, id_or_name: &str) -> Result<ApiKey, KeyError> {
        let wanted = id_or_name.to_string();
        self.with(move |c| {
            c.write(|tx| {
                let id: Option<String> = tx.one(
                    "SELECT id FROM api_keys WHERE id = ?1
                     UNION ALL SELECT id FROM api_keys WHERE name = ?1 AND revoked_unix_s IS NULL LIMIT 1",
                    &vals![&wanted],
                )?;
                let Some(id) = id else {
                    return Ok(Err(KeyError::NotFound(format!("no key has the id or the name {wanted:?}"))));
                };
                tx.exec(
                    "UPDATE api_keys SET revoked_unix_s = ?1 WHERE id = ?2 AND revoked_unix_s IS NULL",
                    &vals![now_s(), &id],
                )?;
                let record = read_key(tx, "id = ?1", &id)?;
                Ok(record.ok_or_else(|| KeyError::NotFound(format!("key {id} vanished"))))
            })
        })?
    }

    /// The live (not revoked) key `presented` is, if any. Waits on the
    /// journal's thread, never on the caller's.
    ///
    /// # Errors
    /// A read failure.
    pub async fn find_key(&self, presented: &str) -> Result<Option<ApiKey>, JournalError> {
        let hash = key_hash(presented);
        self.with_async(move |c| read_key(c, "hash = ?1 AND revoked_unix_s IS NULL", &hash)).await
    }
}

/// The key matching `filter` (with `?1` bound to `value`), with today's spend.
fn read_key(c: &mut dyn Sql, filter: &str, value: &str) -> DbResult<Option<ApiKey>> {
    let rows = c.rows(&format!("SELECT {COLUMNS} FROM api_keys WHERE {filter}"), &vals![value])?;
    let Some(row) = rows.first() else { return Ok(None) };
    let rpm: Option<i64> = row.get(4)?;
    let mut key = ApiKey {
        id: row.get(0)?,
        name: row.get(1)?,
        admin: row.get(2)?,
        max_usd_per_day: row.get(3)?,
        requests_per_minute: rpm.and_then(|r| u32::try_from(r).ok()),
        created_unix_s: row.get(5)?,
        revoked_unix_s: row.get(6)?,
        spent_today_usd: 0.0,
    };
    key.spent_today_usd = spent_today(c, &key.id, now_s())?;
    Ok(Some(key))
}

/// What `account` spent on the current UTC day: its spend rows, and its
/// reservations kept as spent (calls abandoned with their outcome unknown).
pub(super) fn spent_today(c: &mut dyn Sql, account: &str, now: i64) -> DbResult<f64> {
    let spent: Option<f64> = c.one(
        "SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1 AND account = ?2)
              + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations
                 WHERE day = ?1 AND account = ?2 AND expires_unix_s = ?3)",
        &vals![now.div_euclid(86_400), account, KEPT_UNIX_S],
    )?;
    Ok(spent.unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::testing::on_both;

    fn new(name: &str) -> NewKey {
        NewKey { name: name.into(), ..NewKey::default() }
    }

    #[test]
    fn a_key_is_found_by_itself_only_while_live_and_only_its_hash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.sqlite3");
        let j = Journal::open(&path).unwrap();
        let made = j
            .create_key(&NewKey {
                name: "app1".into(),
                max_usd_per_day: Some(5.0),
                requests_per_minute: Some(60),
                ..NewKey::default()
            })
            .unwrap();
        let key = made.key.expose().to_string();
        assert!(key.starts_with("vg-") && key.len() == 3 + 64, "{key}");
        assert!(!format!("{made:?}").contains(&key[3..]), "Debug never shows it");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let found = rt.block_on(j.find_key(&key)).unwrap().unwrap();
        assert_eq!(found, made.record);
        assert_eq!(
            (found.name.as_str(), found.max_usd_per_day, found.requests_per_minute),
            ("app1", Some(5.0), Some(60))
        );
        assert_eq!(rt.block_on(j.find_key(&format!("{key}x"))).unwrap(), None);
        assert_eq!(rt.block_on(j.find_key("")).unwrap(), None);
        // The file holds the hash, never the key.
        drop(j);
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(file.unwrap().path()).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(&key[3..]), "the key is in no journal file");
        }
        assert!(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(&key_hash(&key)), "its hash is");
        let j = Journal::open(&path).unwrap();
        let revoked = j.revoke_key("app1").unwrap();
        assert!(revoked.revoked_unix_s.is_some());
        assert_eq!(rt.block_on(j.find_key(&key)).unwrap(), None, "a revoked key is not found");
    }

    on_both! { fn names_are_unique_among_live_keys_and_revoke_takes_an_id_or_a_name(place) {
        let j = place.open();
        let first = j.create_key(&new("app")).unwrap().record;
        let err = j.create_key(&new("app")).unwrap_err();
        assert!(matches!(err, KeyError::Conflict(_)) && err.to_string().contains(&first.id), "{err}");
        assert_eq!(j.revoke_key(&first.id).unwrap().id, first.id);
        let second = j.create_key(&new("app")).unwrap().record;
        assert_ne!(first.id, second.id);
        assert!(matches!(j.revoke_key("nobody"), Err(KeyError::NotFound(_))));
        assert_eq!(j.revoke_key("app").unwrap().id, second.id, "the live one of that name");
        assert!(matches!(j.revoke_key("app"), Err(KeyError::NotFound(_))), "no live key has the name now");
        let listed = j.list_keys().unwrap();
        assert_eq!(listed.iter().map(|k| k.id.clone()).collect::<Vec<_>>(), [first.id, second.id]);
        assert!(listed.iter().all(|k| k.revoked_unix_s.is_some()));
    }}

    on_both! { fn a_key_is_found_while_live_with_its_limits_and_days_spend(place) {
        let j = place.open();
        let made = j
            .create_key(&NewKey { name: "app1".into(), admin: true, requests_per_minute: Some(60), ..new("x") })
            .unwrap();
        j.queue_spend_for("p", 0.5, Some(&made.record.id));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let found = rt.block_on(j.find_key(made.key.expose())).unwrap().unwrap();
        assert_eq!((found.admin, found.requests_per_minute, found.spent_today_usd), (true, Some(60), 0.5));
        j.revoke_key(&found.id).unwrap();
        assert_eq!(rt.block_on(j.find_key(made.key.expose())).unwrap(), None);
    }}

    #[test]
    fn bad_names_and_limits_are_refused_naming_them() {
        let j = Journal::in_memory().unwrap();
        for (key, field) in [
            (new(""), "key name"),
            (new("has space"), "key name"),
            (new(&"x".repeat(65)), "key name"),
            (NewKey { max_usd_per_day: Some(-1.0), ..new("a") }, "max_usd_per_day"),
            (NewKey { max_usd_per_day: Some(f64::NAN), ..new("a") }, "max_usd_per_day"),
            (NewKey { requests_per_minute: Some(0), ..new("a") }, "requests_per_minute"),
        ] {
            let err = j.create_key(&key).unwrap_err();
            assert!(matches!(err, KeyError::Invalid(_)) && err.to_string().contains(field), "{err}");
        }
        assert!(j.list_keys().unwrap().is_empty());
    }
}
