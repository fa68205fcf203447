//! Policies wrap a provider as small decorators, each doing one thing, in this
//! order, outermost first:
//!
//! `FallbackChain > Budgeted > Retry > RateLimited > Timeout > backend`
//!
//! The budget is the first piece in place: reserve the worst case before a
//! call, reconcile to the reported usage after.

mod budget;

pub use budget::{Budget, BudgetError, Reservation};
