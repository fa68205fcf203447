//! Units being bought right now, so that two runs of one process that need
//! the same unit at the same moment buy it once: the first holds the unit,
//! the others wait for it and then read its answer back from the journal.
//! On a shared database the hold is also claimed there ([`SharedClaim`]),
//! so that no other instance buys the unit meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as UnitLock, OwnedMutexGuard};

type Table = Arc<Mutex<HashMap<String, Arc<UnitLock<()>>>>>;

/// The units held by the runs of this process, by unit key.
#[derive(Default)]
pub(super) struct InFlight {
    held: Table,
}

/// A unit held by one caller until it is dropped. Dropping the last hold
/// (or wait) on a unit forgets it, so the table only holds units in flight.
pub struct UnitHold {
    key: String,
    table: Table,
    guard: Option<OwnedMutexGuard<()>>,
    pub(super) shared: Option<SharedClaim>,
}

/// A unit claimed in a shared database (`unit_claims`) by one hold: renewed
/// while held, let go when dropped; a claim whose instance died runs out.
pub(super) struct SharedClaim {
    pub key: String,
    pub holder: String,
    pub poster: super::exec::Poster,
    pub renew: tokio::task::JoinHandle<()>,
    pub path: String,
}

impl Drop for SharedClaim {
    fn drop(&mut self) {
        self.renew.abort();
        let (key, holder) = (self.key.clone(), self.holder.clone());
        self.poster.post(super::logged_op(
            self.path.clone(),
            "cannot let go of a unit's claim: other instances wait until it runs out",
            move |c| {
                use super::db::Sql;
                c.exec("DELETE FROM unit_claims WHERE key = ?1 AND holder = ?2", &super::db::vals![&key, &holder])
                    .map(drop)
            },
        ));
    }
}

impl InFlight {
    /// Wait until no other caller holds `key`, then hold it.
    pub(super) async fn hold(&self, key: String) -> UnitHold {
        let lock = {
            let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.entry(key.clone()).or_default().clone()
        };
        // A wait cancelled here drops its reference with it; a wait can only
        // be pending while another caller holds the unit, whose drop below
        // then forgets the unit.
        let guard = lock.lock_owned().await;
        UnitHold { key, table: self.held.clone(), guard: Some(guard), shared: None }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or(0)
    }
}

impl Drop for UnitHold {
    fn drop(&mut self) {
        let mut held = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Unlock first, then forget the unit when nobody else waits for it:
        // the table's own reference is the only one left.
        self.guard.take();
        if held.get(&self.key).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_hold_of_one_unit_waits_for_the_first_and_others_do_not() {
        let flight = Arc::new(InFlight::default());
        let first = flight.hold("a".into()).await;
        let other = tokio::time::timeout(Duration::from_millis(50), flight.hold("b".into())).await;
        assert!(other.is_ok(), "another unit is not held up");
        drop(other);
        let waiting = tokio::spawn({
            let flight = flight.clone();
            async move { flight.hold("a".into()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the same unit waits");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert_eq!(flight.len(), 1);
        drop(second);
        assert_eq!(flight.len(), 0, "a unit nobody holds is forgotten");
    }
}
