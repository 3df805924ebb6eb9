//! A server task of the project's own (the echo upstream, the dev IdP) run
//! in-process: stopped through its shutdown future, or aborted on drop.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a server is given to learn that it should stop.
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Served {
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Served {
    /// Spawns `serve`, handing it the signal that [`Served::stop`] sends.
    pub fn spawn<F, Fut>(what: &'static str, serve: F) -> Served
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        Served {
            what,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops it and asserts that it ended cleanly within 10 s.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let what = self.what;
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap_or_else(|_| panic!("{what} stops within 10 s"))
                .unwrap_or_else(|e| panic!("{what}'s task: {e}"))
                .unwrap_or_else(|e| panic!("{what} ends cleanly: {e}"));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
