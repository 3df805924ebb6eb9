//! The development IdP (`demo::idp`) in-process, on its own port.

use std::sync::Arc;
use std::time::Duration;

use idp_gate::demo::idp::{self, DevIdpSettings};
use idp_gate::demo::keys::KeyRing;
use jsonwebtoken::Algorithm;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct DevIdp {
    /// `http://ADDR` and the issuer's path, without the trailing slash.
    pub base: String,
    pub keys: Arc<KeyRing>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl DevIdp {
    /// Serves `settings(issuer)` with a fresh `alg` key; the issuer is
    /// `http://ADDR{path}/`.
    pub async fn start(
        alg: Algorithm,
        path: &str,
        settings: impl FnOnce(String) -> DevIdpSettings,
    ) -> DevIdp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}{path}");
        let keys = Arc::new(KeyRing::generate(alg).unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(idp::serve(
            listener,
            Arc::new(settings(format!("{base}/"))),
            keys.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        DevIdp {
            base,
            keys,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn issuer(&self) -> String {
        format!("{}/", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base)
    }

    /// Stops it and asserts that it ended cleanly.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("the IdP stops within 10 s")
                .expect("the IdP's task")
                .expect("the IdP ends cleanly");
        }
    }
}

impl Drop for DevIdp {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
