//! Observing provider API calls: every call a provider makes to its backend is reported to an
//! [`ApiCallObserver`], which the operator turns into ESO's
//! `externalsecret_provider_api_calls_count{provider,call,status}` counter. Providers depend only
//! on this trait, never on the reconciler or a metrics library.

use std::sync::Arc;

/// How one API call ended, with the label values ESO uses for its `status` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// The backend answered the call successfully.
    Success,
    /// The call failed (an error answer, a timeout, no connection, no credentials).
    Error,
}

impl CallStatus {
    /// `"success"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Success => "success",
            CallStatus::Error => "error",
        }
    }

    /// The status of a call's result: any `Err` is an error, as in ESO.
    pub fn of<T, E>(result: &Result<T, E>) -> Self {
        if result.is_ok() {
            CallStatus::Success
        } else {
            CallStatus::Error
        }
    }
}

/// Told about every API call a provider makes, after it completes (retries inside one SDK call
/// count once). Implementations must be cheap and must not block: they run on the read path.
pub trait ApiCallObserver: Send + Sync {
    /// One call: `provider` names the backend service (ESO's label values, e.g.
    /// `AWS/SecretsManager`), `call` the operation (e.g. `GetSecretValue`).
    fn api_call(&self, provider: &'static str, call: &'static str, status: CallStatus);
}

/// An observer that ignores every call (the default when nothing is wired).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl ApiCallObserver for NoObserver {
    fn api_call(&self, _: &'static str, _: &'static str, _: CallStatus) {}
}

/// A shared observer handle for providers to keep.
#[derive(Clone)]
pub struct CallObserver(Arc<dyn ApiCallObserver>);

impl CallObserver {
    /// Wrap an observer.
    pub fn new(observer: Arc<dyn ApiCallObserver>) -> Self {
        Self(observer)
    }

    /// Report `result` of `call` to `provider` and hand it back unchanged.
    pub fn record<T, E>(
        &self,
        provider: &'static str,
        call: &'static str,
        result: Result<T, E>,
    ) -> Result<T, E> {
        self.0.api_call(provider, call, CallStatus::of(&result));
        result
    }
}

impl Default for CallObserver {
    fn default() -> Self {
        Self(Arc::new(NoObserver))
    }
}

impl std::fmt::Debug for CallObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallObserver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(&'static str, &'static str, CallStatus)>>);

    impl ApiCallObserver for Recorder {
        fn api_call(&self, provider: &'static str, call: &'static str, status: CallStatus) {
            if let Ok(mut v) = self.0.lock() {
                v.push((provider, call, status));
            }
        }
    }

    #[test]
    fn record_reports_the_status_and_returns_the_result() {
        let rec = Arc::new(Recorder::default());
        let obs = CallObserver::new(rec.clone());
        assert_eq!(obs.record("P", "Ok", Ok::<u8, ()>(1)), Ok(1));
        assert_eq!(obs.record("P", "Bad", Err::<u8, &str>("x")), Err("x"));
        let seen = rec.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                ("P", "Ok", CallStatus::Success),
                ("P", "Bad", CallStatus::Error)
            ]
        );
        assert_eq!(CallStatus::Success.as_str(), "success");
        assert_eq!(CallStatus::Error.as_str(), "error");
        // The default observer accepts calls and does nothing.
        assert_eq!(
            CallObserver::default().record("P", "C", Ok::<(), ()>(())),
            Ok(())
        );
    }
}
