//! A hard spending cap that parallel calls cannot overshoot.
//!
//! A call reserves its worst-case cost before it is made; the reservation is
//! reconciled to the real cost after, or kept whole when the outcome is unknown
//! (a timeout may still be billed). `spent + reserved` never passes the cap.
//!
//! A budget may also be [`shared`](Budget::shared) with other processes
//! through a [`SharedLedger`] (the journal's SQLite file): each reservation is
//! then also checked against, and held in, that ledger, so processes that
//! share it cannot pass the cap together either. The ledger's I/O is awaited
//! (it may wait on another process's lock), never done under this budget's
//! own lock or on the caller's thread.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

/// Why a budget refused a call. Either way the call was not made and
/// nothing was spent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    /// The call would pass the cap.
    #[error("budget: this call may cost ${needed:.4}, but only ${left:.4} of ${cap:.4} is left")]
    Over { needed: f64, left: f64, cap: f64 },
    /// The shared ledger could not be asked (its database is away): what is
    /// left is unknown, so nothing is spent until it answers again.
    #[error("budget: the shared ledger cannot be reached, so no money can be held for the call ({0})")]
    LedgerUnavailable(String),
}

#[derive(Debug, Default)]
struct Ledger {
    spent: f64,
    reserved: f64,
}

/// Spending that several processes see: money spent and reservations held,
/// each reservation checked against the cap under one lock.
#[async_trait]
pub trait SharedLedger: Send + Sync + std::fmt::Debug {
    /// Hold `amount` if the cap allows it, counting every process's spend and
    /// live reservations; returns the reservation's id. A ledger that cannot
    /// be read refuses.
    ///
    /// # Errors
    /// [`BudgetError::Over`] when the cap would be passed,
    /// [`BudgetError::LedgerUnavailable`] when the ledger cannot be reached.
    async fn hold(&self, amount: f64, cap: f64) -> Result<i64, BudgetError>;

    /// Let a reservation go. What the call cost is recorded as spend
    /// separately, before this, except `unrecorded` (a call abandoned with
    /// its outcome unknown), which this records as spent. Called from
    /// `Drop`, so it must not block an async runtime's thread.
    fn let_go(&self, id: i64, unrecorded: f64);

    /// What is left of `cap` for every process.
    ///
    /// # Errors
    /// [`BudgetError::LedgerUnavailable`] when the ledger cannot be reached.
    async fn left(&self, cap: f64) -> Result<f64, BudgetError>;
}

/// A shared cap in US dollars.
#[derive(Debug, Clone)]
pub struct Budget {
    cap: f64,
    ledger: Arc<Mutex<Ledger>>,
    shared: Option<Arc<dyn SharedLedger>>,
}

/// Money set aside for one call. Dropping it unreconciled keeps it as spent:
/// a call whose outcome is unknown counts as billed.
#[derive(Debug)]
#[must_use = "reconcile the reservation with the real cost"]
pub struct Reservation {
    amount: f64,
    ledger: Arc<Mutex<Ledger>>,
    shared: Option<(Arc<dyn SharedLedger>, i64)>,
    settled: bool,
}

impl Budget {
    pub fn new(cap_usd: f64) -> Self {
        Self { cap: cap_usd.max(0.0), ledger: Arc::default(), shared: None }
    }

    /// Also hold every reservation in `ledger`, which other processes share.
    /// Spend must be recorded there (before a reservation settles) by the
    /// caller: [`super::Budgeted`]'s spend hook does.
    pub fn shared(mut self, ledger: Arc<dyn SharedLedger>) -> Self {
        self.shared = Some(ledger);
        self
    }

    /// Set aside `amount`, or refuse if spent and reserved money would pass the cap.
    ///
    /// # Errors
    /// [`BudgetError`] with the numbers when the cap would be passed.
    pub async fn reserve(&self, amount: f64) -> Result<Reservation, BudgetError> {
        let amount = if amount.is_finite() { amount.max(0.0) } else { f64::INFINITY };
        {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            let left = self.cap - ledger.spent - ledger.reserved;
            if amount > left + 1e-12 {
                return Err(BudgetError::Over { needed: amount, left: left.max(0.0), cap: self.cap });
            }
            ledger.reserved += amount;
        }
        let mut reservation = Reservation { amount, ledger: self.ledger.clone(), shared: None, settled: false };
        if let Some(shared) = &self.shared {
            // Held here already; the shared ledger is asked without this lock.
            // Dropped while it answers (a deadline), no call was made: released, not spent.
            let pending = Unheld(Some(reservation));
            let held = shared.hold(amount, self.cap).await;
            reservation = pending.into_inner();
            match held {
                Ok(id) => reservation.shared = Some((shared.clone(), id)),
                Err(e) => {
                    reservation.release();
                    return Err(e);
                }
            }
        }
        Ok(reservation)
    }

    pub fn spent(&self) -> f64 {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner()).spent
    }

    /// What is left, of this budget and of the shared ledger's.
    ///
    /// # Errors
    /// [`BudgetError::LedgerUnavailable`] when the shared ledger cannot be reached.
    pub async fn remaining(&self) -> Result<f64, BudgetError> {
        let here = {
            let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            (self.cap - ledger.spent - ledger.reserved).max(0.0)
        };
        match &self.shared {
            Some(shared) => Ok(here.min(shared.left(self.cap).await?)),
            None => Ok(here),
        }
    }

    pub fn cap(&self) -> f64 {
        self.cap
    }
}

impl Reservation {
    /// Replace the reservation with what the call really cost.
    pub fn reconcile(mut self, actual: f64) {
        self.settle(actual.max(0.0));
    }

    /// The call was never sent: nothing was spent.
    pub fn release(mut self) {
        self.settle(0.0);
    }

    fn settle(&mut self, actual: f64) {
        self.settle_with(actual, 0.0);
    }

    fn settle_with(&mut self, actual: f64, unrecorded: f64) {
        if self.settled {
            return;
        }
        self.settled = true;
        {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.reserved -= self.amount;
            ledger.spent += actual;
        }
        if let Some((shared, id)) = self.shared.take() {
            shared.let_go(id, unrecorded);
        }
    }
}

/// A reservation whose shared hold is still being asked for: released if dropped.
struct Unheld(Option<Reservation>);

impl Unheld {
    fn into_inner(mut self) -> Reservation {
        self.0.take().expect("taken only here")
    }
}

impl Drop for Unheld {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.release();
        }
    }
}

impl Drop for Reservation {
    /// Dropped unsettled (its call was abandoned): it counts as spent, in the
    /// shared ledger too, where nobody else will record it.
    fn drop(&mut self) {
        let amount = self.amount;
        self.settle_with(amount, amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn parallel_reservations_never_pass_the_cap() {
        let budget = Budget::new(1.0);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = budget.clone();
                std::thread::spawn(move || block_on(b.reserve(0.3)).map(|r| r.reconcile(0.3)).is_ok())
            })
            .collect();
        let ok = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(ok, 3, "three calls of $0.30 fit in $1.00");
        assert!(budget.spent() <= 1.0 + 1e-9, "spent {}", budget.spent());
        assert!((budget.spent() - 0.9).abs() < 1e-9, "three calls fit");
    }

    /// A shared ledger that never answers a hold.
    #[derive(Debug)]
    struct Silent;

    #[async_trait::async_trait]
    impl SharedLedger for Silent {
        async fn hold(&self, _: f64, _: f64) -> Result<i64, BudgetError> {
            std::future::pending().await
        }
        fn let_go(&self, _: i64, _: f64) {}
        async fn left(&self, cap: f64) -> Result<f64, BudgetError> {
            Ok(cap)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_dropped_while_the_shared_ledger_answers_is_released_not_spent() {
        let budget = Budget::new(1.0).shared(Arc::new(Silent));
        let cut = tokio::time::timeout(std::time::Duration::from_secs(1), budget.reserve(0.6)).await;
        assert!(cut.is_err(), "the hold never answered");
        assert_eq!(budget.spent(), 0.0, "no call was made");
        assert_eq!(budget.remaining().await, Ok(1.0), "nothing is left reserved");
    }

    #[tokio::test]
    async fn reconcile_release_and_unknown_outcomes() {
        let budget = Budget::new(1.0);
        budget.reserve(0.5).await.unwrap().reconcile(0.1);
        assert!((budget.spent() - 0.1).abs() < 1e-12);
        budget.reserve(0.5).await.unwrap().release();
        assert!((budget.remaining().await.unwrap() - 0.9).abs() < 1e-12);
        drop(budget.reserve(0.4).await.unwrap());
        assert!((budget.spent() - 0.5).abs() < 1e-12, "an unreconciled call counts as billed");
        let err = budget.reserve(0.6).await.unwrap_err();
        assert!(err.to_string().contains("$0.6000") && err.to_string().contains("$0.5000"), "{err}");
        assert!(budget.reserve(f64::NAN).await.is_err());
    }
}
