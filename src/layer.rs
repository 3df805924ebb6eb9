//! The policy as a tower layer: [`AuthLayer`] wraps any
//! `Service<http::Request<B>>`, decides on each request with the same
//! [`decide`] the sidecar uses, answers refusals itself (the same JSON and
//! `WWW-Authenticate`), and hands the rest on with a [`Verified`] in the
//! request's extensions and its headers as the sidecar sends them
//! upstream: a client's `X-Forwarded-*`, `Forwarded`, `X-Real-IP`, identity,
//! claims and organization headers (and their `_` spellings) removed, the
//! verified identity's set, `Authorization` exactly the verified token (or
//! gone). Hop-by-hop headers stay, for the service's own server (an
//! upgrade's `Connection` and `Upgrade`).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use idp_gate::{AuthLayer, Verified};
//! let config = idp_gate::config::Config::load("idp-gate.yaml".as_ref())?;
//! let auth = AuthLayer::from_config(config)?;
//! // e.g. axum: Router::new().route(...).layer(auth)
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower::{Layer, Service};

use crate::auth::Identity;
use crate::auth::cache::TokenCache;
use crate::clock::now_secs;
use crate::config::Config;
use crate::decision::{RequestFacts, decide};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::tls::{self, TlsError};

/// The connection a request came on: the client's address (for
/// `X-Forwarded-For`) and whether it used TLS. Put it in the request's
/// extensions; without it the client is `0.0.0.0` over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address.
    pub addr: IpAddr,
    /// Whether it connected over TLS.
    pub tls: bool,
}

/// The request id to use: put one in the request's extensions if the
/// caller already chose it; otherwise the client's sane `X-Request-Id` or a
/// fresh one.
pub use crate::request_id::RequestId;

/// What passed: in the extensions of every request the layer lets through.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The matched route's name.
    pub route: Arc<str>,
    /// The verified identity (`None` on public routes).
    pub identity: Option<Arc<Identity>>,
    /// The request id.
    pub request_id: RequestId,
}

/// Why [`AuthLayer::from_config`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A CA bundle for the key fetches is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The layer's counters could not be set up.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Verification and authorization as a [`Layer`].
#[derive(Clone)]
pub struct AuthLayer {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl AuthLayer {
    /// A layer enforcing `config`'s routes and providers. Starts the JWKS
    /// refresh tasks, so call it inside a tokio runtime; until the keys are
    /// loaded, protected routes answer 503 (fail closed).
    pub fn from_config(config: Config) -> Result<AuthLayer, LayerError> {
        tls::install_crypto_provider();
        // A private registry: the layer's own counters are not exported.
        let metrics = Metrics::new(false)?;
        let snapshot = Snapshot::build(
            config,
            &Arc::new(metrics),
            &Arc::new(TokenCache::default()),
            None,
        )?;
        Ok(AuthLayer::from_snapshot(Arc::new(ArcSwap::from_pointee(
            snapshot,
        ))))
    }

    /// A layer deciding on whatever snapshot `source` holds at each
    /// request (the sidecar swaps it on reload).
    pub fn from_snapshot(source: Arc<ArcSwap<Snapshot>>) -> AuthLayer {
        AuthLayer { snapshot: source }
    }

    /// The configuration in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            snapshot: self.snapshot.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    snapshot: Arc<ArcSwap<Snapshot>>,
}

/// A response of [`Auth`]: the layer's own refusal, or the inner service's.
pub type AuthResponse<B> = Response<Either<Full<Bytes>, B>>;

impl<S, B, RB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = AuthResponse<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let snapshot = self.snapshot.load_full();
        Box::pin(async move {
            let request_id = match req.extensions().get::<RequestId>() {
                Some(id) => id.clone(),
                None => RequestId::from_headers(req.headers()),
            };
            let client = req
                .extensions()
                .get::<ClientInfo>()
                .copied()
                .unwrap_or(ClientInfo {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    tls: false,
                });
            let facts = RequestFacts {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                client: client.addr,
                tls: client.tls,
                request_id: &request_id,
                now: now_secs(),
                draining: false,
                next_hop: false,
            };
            let decision = decide(&snapshot, &facts).await;
            let plan = match decision.verdict {
                Ok(plan) => plan,
                Err(refusal) => {
                    return Ok(refusal.to_response(request_id.as_str()).map(Either::Left));
                }
            };
            // A handler in-process must no more believe a client's
            // `X-Forwarded-User` than an upstream would.
            plan.rewrite.apply(req.headers_mut());
            req.extensions_mut().insert(Verified {
                route: decision.route.map(|r| r.name.clone()).unwrap_or_default(),
                identity: decision.identity,
                request_id,
            });
            // Ready again after the decision's await, which may have been
            // long (a key fetch).
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            Ok(inner.call(req).await?.map(Either::Right))
        })
    }
}
