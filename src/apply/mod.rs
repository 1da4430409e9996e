//! Apply: the executor that carries out a [`crate::planner::Planned`], with the lock,
//! the journal, the ledger, generations, health checks and automatic rollback.
//!
//! Test-only hooks (never set them outside tests): `SOVEREIGN_TEST_STOP_AFTER_STEP=N`
//! aborts the process right after step N is journalled as done (a crash at a known
//! point); `SOVEREIGN_TEST_FAIL_STEP=N` makes step N fail with an injected error.

pub mod checks;
pub mod executor;

pub use executor::{ApplyReport, ExecOptions, Progress, RollbackReport, Session, begin, execute};
