//! Shared helpers for the integration tests: a fresh database per test, unique topics, and a
//! consumer that collects what is committed.

pub mod kafka;
pub mod postgres;
pub mod python;
pub mod serve;
pub mod sink;
pub mod source;

use std::sync::atomic::{AtomicU64, Ordering};

/// How to bring the services up; every "service is down" failure ends with this.
pub const START_SERVICES: &str =
    "start the test services with `scripts/services.sh up` (or run `scripts/test.sh`)";

/// A name no other test (in this run or an earlier one) uses: `<prefix>_<uuid>_<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}_{n}", &uuid[..12])
}

/// Runs `work` to completion on a runtime of its own, on a thread of its own: for clean-up in
/// `Drop`, which may run inside or outside a tokio runtime.
pub fn run_detached<F>(work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds")
            .block_on(work);
    });
    if handle.join().is_err() {
        eprintln!("test clean-up panicked");
    }
}
