//! CPU-heavy work off the async workers.
//!
//! Mapping and templates can run for a long time (a template that exhausts its budget runs for
//! seconds, a PKCS#12 conversion ~1.5 ms). Run on an async worker, they would stall every other
//! task scheduled there (watches, other reconciles, probes). [`map`] therefore runs the mapping
//! of ExternalSecrets with a template on tokio's blocking pool, behind a semaphore of `max(1, workers - 1)` permits, so at least
//! one async worker's worth of CPU is left to the rest of the runtime even when every permit is
//! busy. Inputs are owned (the spec and metadata are cloned: a few KiB, small next to the
//! mapping itself).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use eso_api::ExternalSecret;
use eso_mapping::{Fetched, Mapped, MappingError, MappingInput, TemplateSources};
use tokio::sync::Semaphore;

/// Why an offloaded mapping did not produce a result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OffloadError {
    /// The mapping itself failed.
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// The blocking task panicked or was cancelled (runtime shutting down).
    #[error("mapping task did not complete: {0}")]
    Task(String),
}

/// Permits for CPU-heavy work given the runtime's async worker count: one less than the
/// workers, at least one.
pub(crate) fn permits_for(workers: usize) -> usize {
    workers.saturating_sub(1).max(1)
}

fn semaphore() -> &'static Arc<Semaphore> {
    static SEM: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SEM.get_or_init(|| {
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or(1);
        Arc::new(Semaphore::new(permits_for(workers)))
    })
}

/// Run `f` on the blocking pool once a permit of `sem` is free.
pub(crate) async fn run_bounded<T, F>(sem: &Arc<Semaphore>, f: F) -> Result<T, OffloadError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let permit = sem
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| OffloadError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
    .map_err(|e| OffloadError::Task(e.to_string()))
}

/// [`eso_mapping::map`] for `es`, on the blocking pool (see the module docs).
pub(crate) async fn map(
    es: &ExternalSecret,
    namespace: &str,
    name: &str,
    fetched: Fetched,
    template_sources: TemplateSources,
) -> Result<Mapped, OffloadError> {
    let namespace = namespace.to_string();
    let name = name.to_string();
    let spec = es.spec.clone();
    let labels: Option<BTreeMap<String, String>> = es.metadata.labels.clone();
    let annotations: Option<BTreeMap<String, String>> = es.metadata.annotations.clone();
    run_bounded(semaphore(), move || {
        eso_mapping::map(&MappingInput {
            namespace: &namespace,
            name: &name,
            spec: &spec,
            labels: labels.as_ref(),
            annotations: annotations.as_ref(),
            fetched: &fetched,
            template_sources: &template_sources,
        })
    })
    .await?
    .map_err(OffloadError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn permits_leave_a_worker_free() {
        assert_eq!(permits_for(0), 1);
        assert_eq!(permits_for(1), 1);
        assert_eq!(permits_for(2), 1);
        assert_eq!(permits_for(8), 7);
    }

    /// Slow CPU work (here: a blocking sleep standing in for a budget-exhausting template)
    /// does not stall other tasks, and never more than the permit count runs at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_work_does_not_stall_the_runtime() {
        let sem = Arc::new(Semaphore::new(permits_for(2)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (sem, running, peak) = (sem.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    run_bounded(&sem, move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(150));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for j in jobs {
            j.await.expect("join").expect("ran");
        }
        ticker.abort();
        assert_eq!(peak.load(Ordering::SeqCst), 1, "semaphore bound respected");
        // 4 × 150 ms of blocking work ran serially (~600 ms): the 10 ms ticker kept ticking.
        assert!(
            ticks.load(Ordering::SeqCst) >= 20,
            "ticker stalled: {} ticks",
            ticks.load(Ordering::SeqCst)
        );
    }
}
