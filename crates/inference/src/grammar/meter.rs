//! How much memory a compiled grammar keeps: the process allocator counts, on a thread that
//! asks it to, the bytes allocated minus the bytes freed. A compile runs on a thread of its
//! own, so what that thread still holds when the compile returns is what the compiled
//! grammar keeps (plus caches it filled once for all grammars, which only overstates).
//! The grammar cache charges each entry this figure against its memory budget.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting on metered threads. Off a metered thread the cost is one
/// thread-local read per call.
pub struct Metered;

thread_local! {
    // Const-initialized without a destructor, so the allocator may touch them at any time,
    // thread teardown included.
    static ON: Cell<bool> = const { Cell::new(false) };
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    let _ = ON.try_with(|on| {
        if on.get() {
            let _ = NET.try_with(|n| n.set(n.get() + delta));
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting touches
// only thread-local cells and never allocates.
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Metered = Metered;

/// Run `f` and return its result with the bytes it left allocated on this thread
/// (0 when it freed more than it kept).
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, u64) {
    NET.with(|n| n.set(0));
    ON.with(|on| on.set(true));
    let out = f();
    ON.with(|on| on.set(false));
    let net = NET.with(Cell::get);
    (out, net.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_bytes_are_counted_and_freed_ones_are_not() {
        let (kept, bytes) = measure(|| {
            let scratch = vec![0u8; 1 << 20];
            drop(scratch);
            vec![1u8; 300_000]
        });
        assert_eq!(kept.len(), 300_000);
        assert!((300_000..400_000).contains(&bytes), "{bytes}");
        let ((), none) = measure(|| ());
        assert_eq!(none, 0);
    }
}
