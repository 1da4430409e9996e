//! Apply: the executor, the lock, the journal, generations and rollback.
