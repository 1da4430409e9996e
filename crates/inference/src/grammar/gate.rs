//! Admission and time budget for grammar compiles, shared by every model of the daemon.
//!
//! A compile is CPU work a client chooses the size of. So at most `compile_concurrency`
//! run at once, each on a thread of its own at the lowest CPU priority (the engine and plain
//! requests keep their cores), with a stack sized for the deepest recursion the input
//! limits allow ([`COMPILE_STACK`]); at most `compile_queue` more wait, and one beyond is a
//! 429. A client waits at most the compile budget for a compiler and at most the budget for
//! its compile (503 beyond, saying which). llguidance cannot be interrupted mid-compile, so
//! a compile past its budget finishes on its thread, still holding its place, and its
//! result is dropped: the concurrency bound holds whatever the clients do, and
//! llguidance's own fuel limits bound how long that takes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::super::error::ApiError;
use super::super::limits::ServerLimits;

/// Stack of a compile thread. llguidance's grammar and schema compilers recurse once or
/// more per nesting level, rule in a chain and `$ref` hop; within [`super::limits`] the
/// deepest input the limits accept needs under 1 MiB (measured), so this is a wide margin;
/// untouched stack costs address space only.
pub const COMPILE_STACK: usize = 64 << 20;

/// Compiles admitted, waiting and their budget.
pub struct CompileGate {
    /// One permit per compile allowed to run.
    running: Arc<Semaphore>,
    /// Requests waiting for a permit now.
    waiting: AtomicUsize,
    /// Most requests that may wait.
    queue: usize,
    /// The wait for a permit, and the compile itself, each get this long.
    budget: Duration,
}

impl CompileGate {
    pub fn new(limits: &ServerLimits) -> Self {
        CompileGate {
            running: Arc::new(Semaphore::new(limits.compile_concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            queue: limits.compile_queue,
            budget: limits.compile_timeout,
        }
    }

    /// Run `compile` on a compile thread once admitted. Errors: 429 when the queue is
    /// full, 503 when the wait or the compile runs past the budget, 500 when the compile
    /// panics (the daemon lives on).
    pub async fn run<T: Send + 'static>(
        &self,
        compile: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = self.admit().await?;
        let (tx, rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("grammar-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn(move || {
                lowest_priority();
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(compile));
                // Held until the compile is over, even when its client stopped waiting.
                drop(permit);
                let _client_gone = tx.send(out);
            })
            .map_err(|e| ApiError::Engine(format!("cannot start a grammar compile: {e}")))?;
        let seconds = self.budget.as_secs();
        match tokio::time::timeout(self.budget, rx).await {
            Err(_) => Err(ApiError::CompileTimeout {
                seconds,
                waiting: false,
            }),
            Ok(Err(_)) => Err(ApiError::Internal(
                "the grammar compile thread ended".into(),
            )),
            Ok(Ok(Ok(out))) => Ok(out),
            Ok(Ok(Err(panic))) => {
                let why = super::super::error::panic_text(&*panic);
                tracing::error!("grammar compile panicked: {why}");
                Err(ApiError::Internal(
                    "the grammar compile failed unexpectedly; the daemon logged it".into(),
                ))
            }
        }
    }

    /// A running place at once, or a waiting place while the queue has room.
    async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.running.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ApiError::CompileQueueFull);
        }
        let waited = tokio::time::timeout(self.budget, self.running.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_closed)) => Err(ApiError::NotReady("the daemon is shutting down".into())),
            Err(_) => Err(ApiError::CompileTimeout {
                seconds: self.budget.as_secs(),
                waiting: true,
            }),
        }
    }
}

/// Lower this thread to the lowest CPU priority (nice 19): Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to the one thread. Elsewhere it stays as it is.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
        let tid = unsafe { libc::gettid() };
        // SAFETY: as above; a failure leaves the priority as it was, which is harmless.
        let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
        if failed != 0 {
            tracing::debug!("cannot lower the compile thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(concurrency: usize, queue: usize, budget_ms: u64) -> Arc<CompileGate> {
        Arc::new(CompileGate::new(&ServerLimits {
            compile_concurrency: concurrency,
            compile_queue: queue,
            compile_timeout: Duration::from_millis(budget_ms),
            ..ServerLimits::default()
        }))
    }

    #[tokio::test]
    async fn a_full_queue_is_429_and_a_slow_compile_is_503() {
        let g = gate(1, 1, 300);
        let slow = |ms| move || std::thread::sleep(Duration::from_millis(ms));
        let running = tokio::spawn({
            let g = g.clone();
            async move { g.run(slow(250)).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.run(slow(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let refused = g.run(slow(1)).await.unwrap_err();
        assert_eq!(refused.status(), 429, "{}", refused.message());
        assert!(running.await.unwrap().is_ok());
        assert!(
            waiting.await.unwrap().is_ok(),
            "the waiter got the freed place"
        );
        let e = g.run(slow(600)).await.unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.message().contains("budget"), "{}", e.message());
    }

    #[tokio::test]
    async fn a_panicking_compile_is_a_500_and_the_gate_goes_on() {
        let g = gate(1, 0, 2000);
        let e = g
            .run(|| -> u32 { panic!("boom in a dependency") })
            .await
            .unwrap_err();
        assert_eq!(e.status(), 500);
        assert_eq!(g.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn the_compile_thread_has_a_deep_stack() {
        fn depth(n: u32) -> u32 {
            let pad = std::hint::black_box([n as u8; 512]);
            if n == 0 {
                u32::from(pad[0])
            } else {
                depth(n - 1) + u32::from(pad[1] & 1)
            }
        }
        // About 20 MiB of frames: ten times a normal thread's stack.
        let g = gate(1, 0, 20_000);
        assert!(g.run(|| depth(30_000)).await.is_ok());
    }
}
