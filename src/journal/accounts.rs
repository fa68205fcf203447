//! Accounts (a service's API keys) as budgets of their own, in the journal.
//!
//! A call of a run paid by an account holds two reservations for the same
//! money: one in the gateway's daily ledger (its `account` is NULL) and one
//! in the account's (its `account` is the key's id). Its spend is one row,
//! carrying the account. So the gateway's day counts every spend row and
//! only the NULL-account reservations; an account's day counts its spend
//! rows and its reservations. Each dollar is counted once in each.
//!
//! A call abandoned with its outcome unknown counts as spent: the gateway's
//! ledger writes an `(abandoned call)` spend row without an account, and the
//! account's ledger keeps its reservation for the rest of the day (it
//! expires at [`KEPT_UNIX_S`], never) instead of writing a second row.

use std::sync::Arc;

use async_trait::async_trait;

use super::db::{vals, DbError, DbResult, Sql, SqlExt};
use super::{now_s, Journal, KEPT_UNIX_S, RESERVATION_TTL_S};
use crate::policy::{BudgetError, SharedLedger};

/// One account's daily spend and reservations: see the module docs.
#[derive(Debug, Clone)]
pub struct AccountLedger {
    journal: Arc<Journal>,
    account: String,
}

impl Journal {
    /// The ledger of the account `id`, for its daily cap.
    pub fn account_ledger(self: &Arc<Self>, id: &str) -> AccountLedger {
        AccountLedger { journal: self.clone(), account: id.to_string() }
    }

    /// [`Journal::queue_spend`], the spend of a run paid by `account`.
    pub fn queue_spend_for(&self, provider: &str, usd: f64, account: Option<&str>) {
        let (provider, account) = (provider.to_string(), account.map(str::to_string));
        self.post("cannot record spend: today's total in the journal is short by it", move |c| {
            super::insert_spend(c, &provider, usd, account.as_deref())
        });
    }

    pub fn account_spent_today(&self, id: &str) -> Result<f64, super::JournalError> {
        let id = id.to_string();
        self.with(move |c| super::keys::spent_today(c, &id, now_s()))
    }
}

/// The account's spend today plus its live reservations.
fn committed_today(c: &mut dyn Sql, account: &str, now: i64) -> DbResult<f64> {
    let committed: Option<f64> = c.one(
        "SELECT (SELECT COALESCE(SUM(usd), 0.0) FROM spend WHERE day = ?1 AND account = ?2)
              + (SELECT COALESCE(SUM(usd), 0.0) FROM reservations
                 WHERE day = ?1 AND account = ?2 AND expires_unix_s > ?3)",
        &vals![now.div_euclid(86_400), account, now],
    )?;
    Ok(committed.unwrap_or(0.0))
}

#[async_trait]
impl SharedLedger for AccountLedger {
    async fn hold(&self, amount: f64, cap: f64) -> Result<i64, BudgetError> {
        let account = self.account.clone();
        let held = self
            .journal
            .with_async(move |conn| {
                if conn.dialect() == super::db::Dialect::Postgres {
                    let held = super::pg::hold(conn, amount, cap, Some(&account))?;
                    return Ok(held.map_err(|left| BudgetError::Over { needed: amount, left, cap }));
                }
                conn.write(|tx| {
                    let now = now_s();
                    let left = cap - committed_today(tx, &account, now)?;
                    if amount > left + 1e-12 {
                        return Ok(Err(BudgetError::Over { needed: amount, left: left.max(0.0), cap }));
                    }
                    let id: Option<i64> = tx.one(
                        "INSERT INTO reservations (day, usd, expires_unix_s, account) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                        &vals![now.div_euclid(86_400), amount, now + RESERVATION_TTL_S, &account],
                    )?;
                    id.map(Ok).ok_or_else(|| DbError::new("the reservation has no id"))
                })
            })
            .await;
        held.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot hold money in the journal for the account: the call is refused");
            Err(BudgetError::LedgerUnavailable(e.to_string()))
        })
    }

    fn let_go(&self, id: i64, unrecorded: f64) {
        self.journal.post("cannot release an account's reservation: it counts until it expires", move |c| {
            if unrecorded > 0.0 {
                c.exec(
                    "UPDATE reservations SET expires_unix_s = ?1, usd = ?2 WHERE id = ?3",
                    &vals![KEPT_UNIX_S, unrecorded, id],
                )
            } else {
                c.exec("DELETE FROM reservations WHERE id = ?1", &vals![id])
            }
            .map(drop)
        });
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = self.journal.with(|_| Ok(()));
        }
    }

    async fn left(&self, cap: f64) -> Result<f64, BudgetError> {
        let account = self.account.clone();
        let committed = self.journal.with_async(move |c| committed_today(c, &account, now_s())).await;
        committed.map(|committed| (cap - committed).max(0.0)).map_err(|e| BudgetError::LedgerUnavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::testing::on_both;
    use crate::policy::Budget;

    fn wait<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    /// The gateway's day and one account's, as a run paid by it holds them.
    fn budgets(j: &Arc<Journal>, day: f64, account: &str, cap: f64) -> (Budget, Budget) {
        let global: Arc<dyn SharedLedger> = j.clone();
        (Budget::new(day).shared(global), Budget::new(cap).shared(Arc::new(j.account_ledger(account))))
    }

    on_both! { fn a_call_paid_by_an_account_counts_once_in_each_ledger(place) {
        let j = Arc::new(place.open());
        let (day, a) = budgets(&j, 10.0, "key_a", 1.0);
        // A call reserves in both, costs 0.25: one spend row, carrying the account.
        let (r1, r2) = (wait(day.reserve(0.4)).unwrap(), wait(a.reserve(0.4)).unwrap());
        assert!((wait(j.left(10.0)).unwrap() - 9.6).abs() < 1e-9, "the account's hold is not counted globally");
        assert!((wait(j.account_ledger("key_a").left(1.0)).unwrap() - 0.6).abs() < 1e-9);
        j.queue_spend_for("p", 0.25, Some("key_a"));
        r1.reconcile(0.25);
        r2.reconcile(0.25);
        assert!((wait(j.left(10.0)).unwrap() - 9.75).abs() < 1e-9, "{}", wait(j.left(10.0)).unwrap());
        assert!((j.spent_today().unwrap() - 0.25).abs() < 1e-9);
        assert!((j.account_spent_today("key_a").unwrap() - 0.25).abs() < 1e-9);
        assert_eq!(j.account_spent_today("key_b").unwrap(), 0.0, "another account spent nothing");
        assert!((wait(j.account_ledger("key_b").left(1.0)).unwrap() - 1.0).abs() < 1e-9);
        // An abandoned call: counted once globally, once for the account, and it stays.
        let (r1, r2) = (wait(day.reserve(0.5)).unwrap(), wait(a.reserve(0.5)).unwrap());
        drop((r1, r2));
        assert!((j.spent_today().unwrap() - 0.75).abs() < 1e-9, "{}", j.spent_today().unwrap());
        assert!((wait(j.left(10.0)).unwrap() - 9.25).abs() < 1e-9, "{}", wait(j.left(10.0)).unwrap());
        assert!((j.account_spent_today("key_a").unwrap() - 0.75).abs() < 1e-9);
        assert!((wait(j.account_ledger("key_a").left(1.0)).unwrap() - 0.25).abs() < 1e-9);
        // The account is nearly spent: a call of 0.3 is refused there, not globally.
        let err = wait(a.reserve(0.3)).unwrap_err();
        assert!(matches!(err, BudgetError::Over { left, .. } if (left - 0.25).abs() < 1e-9), "{err}");
    }}

    on_both! { fn parallel_calls_of_one_account_never_pass_its_cap(place) {
        let (ja, jb) = (Arc::new(place.open()), Arc::new(place.open()));
        let held: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let journal = if i % 2 == 0 { ja.clone() } else { jb.clone() };
                    s.spawn(move || {
                        let ledger = Arc::new(journal.account_ledger("key_a"));
                        wait(Budget::new(1.0).shared(ledger).reserve(0.25)).ok()
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 4, "four of eight $0.25 calls fit the key's $1 day");
        assert!((wait(ja.left(1.0)).unwrap() - 1.0).abs() < 1e-9, "the gateway's day holds none of it");
        held.into_iter().for_each(|r| r.release());
        assert!((wait(jb.account_ledger("key_a").left(1.0)).unwrap() - 1.0).abs() < 1e-9);
    }}
}
