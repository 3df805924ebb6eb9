//! The sidecar: each request, start to end, in one sequence. The facts of
//! the request go to [`decide`]; a refusal is answered at once, anything
//! else goes to the [`Forwarder`]; then one place counts the request and
//! fills its access line. Each request runs on the [`Snapshot`] it started
//! with, so a reload never changes a request half-way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;

use crate::access::{AccessLine, LoggedBody};
use crate::clock::now_secs;
use crate::decision::{Decision, RequestFacts, decide};
use crate::error::GateError;
use crate::metrics::{Metrics, method_label};
use crate::proxy::Tunnels;
mod forward;

use crate::request_id::RequestId;
use crate::snapshot::Snapshot;
use forward::{Exchange, Forwarder};

/// The response body the gateway returns.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// The proxy's request handler.
pub struct Gateway {
    snapshot: Arc<ArcSwap<Snapshot>>,
    forwarder: Forwarder,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    /// Shutting down: not ready, though still serving until draining.
    leaving: AtomicBool,
    /// Whether clients connect over TLS (`X-Forwarded-Proto`).
    tls: bool,
    tunnels: Arc<Tunnels>,
}

impl Gateway {
    /// A gateway serving `snapshot`; `tls` says what `X-Forwarded-Proto` is.
    pub fn new(snapshot: Snapshot, metrics: Arc<Metrics>, tls: bool) -> Gateway {
        let tunnels = Arc::new(Tunnels::new(
            metrics.open_tunnels.clone(),
            metrics.client_timeouts.with_label_values(&["tunnel_idle"]),
        ));
        let forwarder = Forwarder::new(metrics.clone(), tunnels.clone(), &snapshot.config.limits);
        Gateway {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            forwarder,
            metrics,
            draining: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
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

    /// Reports not-ready from now on, while requests are still served:
    /// the process is about to stop.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
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
        if self.leaving.load(Ordering::SeqCst) {
            return Err("shutting down".into());
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
        line.error = Some("request head refused before routing".into());
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        self.count(&mut line, status, None);
    }

    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
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
        let snapshot = self.snapshot.load_full();
        let facts = RequestFacts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            client: peer.ip(),
            tls: self.tls,
            request_id: &request_id,
            now: now_secs(),
            draining: self.is_draining(),
            next_hop: true,
        };
        let Decision {
            route,
            identity,
            authorized,
            verdict,
        } = decide(&snapshot, &facts).await;
        line.route = route.map(|r| r.name.clone());
        line.identity = identity;
        // Refused organizations are never counted, so they cannot use up
        // the label slots.
        if let Some(org) = line
            .identity
            .as_deref()
            .filter(|_| authorized)
            .and_then(|i| i.organization.as_deref())
        {
            self.metrics.count_organization(org);
        }

        let (response, error) = match verdict {
            Err(refusal) => (own(&refusal, &request_id), Some(refusal)),
            Ok(plan) => {
                line.upstream = plan.upstream.as_ref().map(|u| u.config.name.clone());
                let exchange = Exchange {
                    request_id: &request_id,
                    route: line.route.as_deref().unwrap_or_default(),
                    bytes_in: line.bytes_in.clone(),
                };
                match self.forwarder.forward(req, plan, exchange).await {
                    Ok(resp) => (resp, None),
                    Err(e) => (own(&e, &request_id), Some(e)),
                }
            }
        };
        self.count(&mut line, response.status(), error);
        response.map(|body| LoggedBody::new(body, line).boxed())
    }

    /// The one place a request is counted and its access line filled in
    /// (written when its response body is done).
    fn count(&self, line: &mut AccessLine, status: StatusCode, error: Option<GateError>) {
        let route = line.route.as_deref().unwrap_or("unmatched");
        self.metrics
            .requests
            .with_label_values(&[route, method_label(&line.method), status.as_str()])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route])
            .observe(line.start().elapsed().as_secs_f64());
        let reason = error.as_ref().and_then(GateError::reason);
        if let Some(reason) = reason {
            self.metrics
                .auth_failures
                .with_label_values(&[reason])
                .inc();
        }
        line.status = Some(status.as_u16());
        line.reason = reason;
        if let Some(e) = error.filter(|e| e.reason().is_none()) {
            line.error = Some(e.to_string());
        }
    }
}

/// The gateway's own answer to a refusal or failure.
fn own(e: &GateError, request_id: &RequestId) -> Response<Body> {
    e.to_response(request_id.as_str())
        .map(|b| b.map_err(|never| match never {}).boxed())
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
