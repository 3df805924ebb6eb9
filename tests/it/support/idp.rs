//! The development IdP (`demo::idp`) in-process, on its own port.

use std::sync::Arc;

use idp_gate::demo::idp::{self, DevIdpSettings};
use idp_gate::demo::keys::KeyRing;
use jsonwebtoken::Algorithm;
use tokio::net::TcpListener;

use super::Served;

pub struct DevIdp {
    /// `http://ADDR` and the issuer's path, without the trailing slash.
    pub base: String,
    pub keys: Arc<KeyRing>,
    served: Served,
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
        let settings = Arc::new(settings(format!("{base}/")));
        let served = Served::spawn("the IdP", |stop| {
            idp::serve(listener, settings, keys.clone(), stop)
        });
        DevIdp { base, keys, served }
    }

    pub fn issuer(&self) -> String {
        format!("{}/", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.base)
    }

    /// Stops it and asserts that it ended cleanly.
    pub async fn stop(self) {
        self.served.stop().await;
    }
}
