//! The sidecar's request handler: the [`AuthLayer`] (the one decision:
//! route, authenticate, authorize, choose the upstream, plan the rewrite)
//! around the [`Forwarder`] (the I/O), with what an operator needs around
//! both: draining, metrics and the access line. Each request runs on the
//! [`Snapshot`] it started with, so a reload never changes a request
//! half-way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use tower::Service;

use crate::access::{AccessLine, LoggedBody};
use crate::error::GateError;
use crate::layer::{Auth, AuthLayer, ClientInfo, Decided, RequestId, RouteNote};
use crate::metrics::{Metrics, method_label};
use crate::proxy::Tunnels;
use crate::proxy::forward::{BytesIn, Forwarded, Forwarder};
use crate::snapshot::Snapshot;

/// The response body the gateway returns.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy's request handler.
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    service: Auth<Forwarder>,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Whether clients connect over TLS (`X-Forwarded-Proto`).
    tls: bool,
    tunnels: Arc<Tunnels>,
}

impl Gateway {
    /// A gateway serving `snapshot`; `tls` says what `X-Forwarded-Proto` is.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, tls: bool) -> Gateway {
        let limits = snapshot.config.limits.clone();
        let snapshot = Arc::new(ArcSwap::from_pointee(snapshot));
        let tunnels = Arc::new(Tunnels::new(
            metrics.open_tunnels.clone(),
            metrics.client_timeouts.with_label_values(&["tunnel_idle"]),
        ));
        let forwarder = Forwarder::new(metrics.clone(), tunnels.clone(), &limits);
        let service = tower::Layer::layer(&AuthLayer::from_snapshot(snapshot.clone()), forwarder);
        Gateway {
            snapshot,
            service,
            metrics,
            draining: AtomicBool::new(false),
            tls,
            tunnels,
        }
    }

    /// The snapshot new requests use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Installs a new snapshot; requests in flight finish on the old one.
    pub fn swap(&self, snapshot: Arc<Snapshot>) {
        self.snapshot.store(snapshot);
    }

    /// Stops taking new requests (they get 503) and reports not-ready.
    /// Upgraded connections are closed now: they have no end of their own
    /// for the drain to wait for.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.tunnels.close_all();
    }

    /// Whether draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Ready when not draining and every provider has usable keys.
    /// Returns the reason otherwise.
    pub fn readiness(&self) -> Result<(), String> {
        if self.is_draining() {
            return Err("draining".into());
        }
        self.snapshot.load().readiness()
    }

    /// The upgraded connections, for closing them at shutdown.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Records a request that hyper refused before it reached
    /// [`Gateway::handle`] (a malformed or oversized head).
    pub fn rejected(&self, peer: SocketAddr, status: u16) {
        // hyper parsed no method: "-" is a valid method token that no
        // client request could be confused with in the log.
        let unknown = http::Method::from_bytes(b"-").unwrap_or_default();
        let mut line = AccessLine::new(
            self.metrics.clone(),
            peer.ip(),
            RequestId::fresh(),
            unknown,
            String::new(),
        );
        line.status = Some(status);
        line.error = Some("request head refused before routing".into());
        self.metrics
            .requests
            .with_label_values(&["unmatched", "OTHER", &status.to_string()])
            .inc();
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        // A guard, not a pair of calls: hyper drops this future when the
        // client goes away, and the gauge must come down then too.
        let _inflight = Inflight::enter(&self.metrics.inflight);
        let request_id = RequestId::from_headers(req.headers());
        // Also a guard: if this future is dropped, the line says 499.
        let mut line = AccessLine::new(
            self.metrics.clone(),
            peer.ip(),
            request_id.clone(),
            req.method().clone(),
            req.uri().path().to_string(),
        );
        let (response, decided, forwarded) = if self.is_draining() {
            let e = GateError::Draining;
            let resp = e
                .to_response(request_id.as_str())
                .map(|b| b.map_err(|never| match never {}).boxed());
            let decided = Decided {
                refusal: Some(e),
                ..Decided::default()
            };
            (resp, decided, Forwarded::default())
        } else {
            let ext = req.extensions_mut();
            ext.insert(ClientInfo {
                addr: peer.ip(),
                tls: self.tls,
            });
            ext.insert(request_id);
            ext.insert(RouteNote(line.route_note.clone()));
            ext.insert(BytesIn(line.bytes_in.clone()));
            let Ok(mut resp) = self.service.clone().call(req).await;
            let decided = resp
                .extensions_mut()
                .remove::<Decided>()
                .unwrap_or_default();
            let forwarded = resp
                .extensions_mut()
                .remove::<Forwarded>()
                .unwrap_or_default();
            let resp = resp.map(|body| match body {
                Either::Left(own) => own.map_err(|never| match never {}).boxed(),
                Either::Right(upstream) => upstream,
            });
            (resp, decided, forwarded)
        };

        let status = response.status();
        let route_name = decided.route.as_deref().unwrap_or("unmatched");
        self.metrics
            .requests
            .with_label_values(&[route_name, method_label(&line.method), status.as_str()])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route_name])
            .observe(line.start().elapsed().as_secs_f64());
        let error = decided.refusal.or(forwarded.error);
        let reason = error.as_ref().and_then(GateError::reason);
        if let Some(reason) = reason {
            self.metrics
                .auth_failures
                .with_label_values(&[reason])
                .inc();
        }
        let identity = decided.identity.as_deref();
        // Refused organizations are never counted, so they cannot use up
        // the label slots.
        if let Some(org) = identity
            .filter(|_| decided.authorized)
            .and_then(|i| i.organization.as_deref())
        {
            self.metrics.count_organization(org);
        }
        line.status = Some(status.as_u16());
        line.route = decided.route;
        line.upstream = forwarded.upstream;
        line.identity = decided.identity;
        line.reason = reason;
        line.error = error
            .as_ref()
            .filter(|e| e.reason().is_none())
            .map(|e| e.to_string());
        response.map(|body| LoggedBody::new(body, line).boxed())
    }
}

/// Counts a request in `inflight_requests` while alive.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
