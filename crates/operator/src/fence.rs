//! Write fencing for leader election: the controllers' Kubernetes client refuses every mutating
//! request unless this replica renewed its Lease recently.
//!
//! Exiting when a renewal fails is not enough on its own: a leader that was frozen (SIGSTOP, a
//! long GC-like pause, a suspended VM) wakes up with every timer expired, and its reconciles may
//! run before the renewal loop notices that another replica took the Lease. The fence closes that
//! window: a write goes out only if the last successful renewal, measured on the monotonic clock
//! (which keeps running while the process is stopped), is younger than the renew deadline.
//! Reads and watches are never fenced.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request};
use tower::{BoxError, Layer, Service};

/// When this replica last confirmed it holds the Lease.
#[derive(Debug)]
pub struct LeaseClock {
    renewed: Mutex<Option<Instant>>,
    valid_for: Duration,
}

impl LeaseClock {
    /// A clock whose confirmations are trusted for `valid_for` (the renew deadline). Nothing is
    /// confirmed until [`LeaseClock::renewed_at`] is called.
    pub fn new(valid_for: Duration) -> Self {
        Self {
            renewed: Mutex::new(None),
            valid_for,
        }
    }

    /// Record a successful acquisition or renewal whose request started at `at` (never moves
    /// the confirmation backwards).
    pub fn renewed_at(&self, at: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(r.map_or(at, |prev| prev.max(at)));
        }
    }

    /// Forget every confirmation: writes are refused from now on (the Lease was lost or
    /// released). A later [`LeaseClock::renewed_at`] confirms again.
    pub fn revoke(&self) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = None;
        }
    }

    /// `Ok` while the last confirmation is younger than the validity; otherwise how old it is
    /// (`None`: never confirmed).
    pub fn check(&self) -> Result<(), Option<Duration>> {
        let last = self.renewed.lock().ok().and_then(|r| *r);
        match last {
            Some(t) if t.elapsed() < self.valid_for => Ok(()),
            Some(t) => Err(Some(t.elapsed())),
            None => Err(None),
        }
    }
}

/// A write refused by the fence.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The Lease was not confirmed recently enough to write.
    #[error(
        "refusing to {method} {path}: this replica has not confirmed it holds the leader Lease for {age} \
         (limit {limit:?}); another replica may be leading, so it must not write"
    )]
    NotLeader {
        /// HTTP method of the refused request.
        method: Method,
        /// Request path (no query string).
        path: String,
        /// How long ago the Lease was last confirmed.
        age: String,
        /// The renew deadline.
        limit: Duration,
    },
}

/// Tower layer adding the fence to a Kubernetes client stack.
#[derive(Clone, Debug)]
pub struct WriteFenceLayer {
    clock: Arc<LeaseClock>,
}

impl WriteFenceLayer {
    /// A layer that fences writes on `clock`.
    pub fn new(clock: Arc<LeaseClock>) -> Self {
        Self { clock }
    }
}

impl<S> Layer<S> for WriteFenceLayer {
    type Service = WriteFence<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteFence {
            inner,
            clock: self.clock.clone(),
        }
    }
}

/// The fencing service (see [`WriteFenceLayer`]).
#[derive(Clone, Debug)]
pub struct WriteFence<S> {
    inner: S,
    clock: Arc<LeaseClock>,
}

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S, B> Service<Request<B>> for WriteFence<S>
where
    S: Service<Request<B>>,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if is_write(req.method())
            && let Err(age) = self.clock.check()
        {
            let err = FenceError::NotLeader {
                method: req.method().clone(),
                path: req.uri().path().to_string(),
                age: age.map_or_else(|| "ever".to_string(), |a| format!("{a:?}")),
                limit: self.clock.valid_for,
            };
            tracing::warn!(error = %err, "write fenced");
            return Box::pin(std::future::ready(Err(BoxError::from(err))));
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts the requests that reach it.
    #[derive(Clone)]
    struct Counter(Arc<AtomicU32>);

    impl Service<Request<()>> for Counter {
        type Response = ();
        type Error = BoxError;
        type Future = std::future::Ready<Result<(), BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(()))
        }
    }

    fn req(m: Method) -> Request<()> {
        Request::builder()
            .method(m)
            .uri("/api/v1/namespaces/ns/secrets/s")
            .body(())
            .unwrap()
    }

    async fn send(svc: &mut WriteFence<Counter>, m: Method) -> Result<(), BoxError> {
        svc.call(req(m)).await
    }

    #[tokio::test]
    async fn writes_pass_only_while_the_lease_is_fresh() {
        let clock = Arc::new(LeaseClock::new(Duration::from_millis(100)));
        let hits = Arc::new(AtomicU32::new(0));
        let mut svc = WriteFenceLayer::new(clock.clone()).layer(Counter(hits.clone()));

        // Never confirmed: reads pass, writes are refused.
        send(&mut svc, Method::GET).await.unwrap();
        let e = send(&mut svc, Method::PATCH).await.unwrap_err();
        assert!(e.to_string().contains("refusing to PATCH"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);

        // Fresh: writes pass.
        clock.renewed_at(Instant::now());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            send(&mut svc, m).await.unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 5);

        // Stale (a frozen process wakes up): every write is refused, reads still pass.
        std::thread::sleep(Duration::from_millis(150));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(send(&mut svc, m).await.is_err());
        }
        send(&mut svc, Method::GET).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 6);

        // Renewed again: writes resume.
        clock.renewed_at(Instant::now());
        send(&mut svc, Method::PATCH).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 7);

        // Revoked (the Lease was lost or released): writes are refused at once, however fresh
        // the last renewal was.
        clock.revoke();
        assert!(matches!(clock.check(), Err(None)));
        assert!(send(&mut svc, Method::PATCH).await.is_err());
        send(&mut svc, Method::GET).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 8);
    }
}
