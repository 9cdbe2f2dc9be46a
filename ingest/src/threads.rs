//! Worker threads' health, shared by the processors' runtime, the sinks and the supervisors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a worker thread (a processor's, a sink's) still runs: readiness probes hold a
/// clone, the thread clears it when it ends, by returning, with an error or by a panic.
#[derive(Clone, Debug)]
pub struct Liveness(Arc<AtomicBool>);

impl Liveness {
    /// A thread about to start.
    pub fn starting() -> Liveness {
        Liveness(Arc::new(AtomicBool::new(true)))
    }

    /// True until the thread holding [`Liveness::guard`] ends.
    pub fn is_alive(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Marks the thread down or up again while it lives (a sink restarting in its thread).
    pub fn set(&self, alive: bool) {
        self.0.store(alive, Ordering::Relaxed);
    }

    /// Held by the thread: clears the flag when dropped, unwinding included.
    pub fn guard(&self) -> LivenessGuard {
        LivenessGuard(self.0.clone())
    }
}

/// See [`Liveness::guard`].
pub struct LivenessGuard(Arc<AtomicBool>);

impl Drop for LivenessGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}


/// The text of a panic's payload (`panic!("…")` gives a `&str` or a `String`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(a non-text payload)".to_string())
}
