//! Forwarding: what the sidecar does with a request the decision let
//! through. It acts on the [`Forward`] plan (upstream, path, header
//! rewrite, what is carried past the hop) and does the I/O: the upstream
//! exchange, the body's limits, upgrades.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use prometheus::IntCounter;

use crate::config::Limits;
use crate::decision::Forward;
use crate::error::{GateError, UpstreamFailure};
use crate::headers::{self, X_REQUEST_ID};
use crate::metrics::Metrics;
use crate::proxy::body::{BodyRules, CountedBody};
use crate::proxy::client::ResponseBody;
use crate::proxy::upgrade::{ConnectionHold, Tunnels};
use crate::request_id::RequestId;

/// Sends requests upstream.
pub struct Forwarder {
    metrics: Arc<Metrics>,
    tunnels: Arc<Tunnels>,
    request_body_timeouts: IntCounter,
    /// `limits.requestBodyTimeoutMs` and `limits.tunnelIdleTimeoutMs`, as
    /// at the start (limits take effect at the next start, as the
    /// listener's do).
    request_body_timeout: Duration,
    tunnel_idle_timeout: Duration,
}

/// What the forwarder is told of a request besides its plan.
pub struct Exchange<'a> {
    /// The request id.
    pub request_id: &'a RequestId,
    /// The matched route's name.
    pub route: &'a str,
    /// Where the request body's bytes are counted.
    pub bytes_in: Arc<AtomicU64>,
}

impl Forwarder {
    /// A forwarder counting into `metrics`, keeping upgraded connections
    /// in `tunnels`, with the body and tunnel timeouts of `limits`.
    pub fn new(metrics: Arc<Metrics>, tunnels: Arc<Tunnels>, limits: &Limits) -> Forwarder {
        let request_body_timeouts = metrics.client_timeouts.with_label_values(&["request_body"]);
        Forwarder {
            metrics,
            tunnels,
            request_body_timeouts,
            request_body_timeout: limits.request_body_timeout,
            tunnel_idle_timeout: limits.tunnel_idle_timeout,
        }
    }

    /// Sends `req` upstream as `plan` says, and relays the response.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        plan: Forward,
        exchange: Exchange<'_>,
    ) -> Result<Response<ResponseBody>, GateError> {
        // Every route of a configuration the proxy serves has an upstream
        // (validation and reloads see to it).
        let upstream = plan.upstream.ok_or(GateError::NoRoute)?;
        let uri = upstream
            .uri(&plan.path, plan.query.as_deref())
            .map_err(|_| GateError::BadRequest("the request target cannot be forwarded"))?;
        let (mut parts, body) = req.into_parts();
        parts.uri = uri;
        parts.version = upstream.version();
        let client_upgrade = plan
            .carried
            .upgrade()
            .cloned()
            .zip(parts.extensions.remove::<OnUpgrade>())
            .map(|(protocols, upgrade)| ClientUpgrade {
                protocols,
                upgrade,
                hold: parts.extensions.remove::<ConnectionHold>(),
            });
        // Trailers are filtered as the headers are.
        let protected = plan.rewrite.protected.clone();
        plan.rewrite.apply_for_next_hop(&mut parts.headers);
        plan.carried.restore(&mut parts.headers);
        if upstream.config.protocol.is_http2() {
            // `:authority` names the upstream; a `Host` beside it that differs
            // makes the request malformed (RFC 9113 §8.3.1). The client's host
            // is in `X-Forwarded-Host`.
            parts.headers.remove(header::HOST);
        }

        let rules = BodyRules {
            protected,
            max_bytes: plan.max_body_bytes,
            idle_timeout: self.request_body_timeout,
            timeouts: self.request_body_timeouts.clone(),
        };
        let body = CountedBody::new(body, exchange.bytes_in.clone(), rules);
        let name = upstream.config.name.as_str();
        let resp = match upstream.send(Request::from_parts(parts, body)).await {
            Ok(resp) => resp,
            // The client's doing, not the upstream's: not counted against it.
            Err(failure @ (UpstreamFailure::BodyTooLarge | UpstreamFailure::BodyTimeout)) => {
                return Err(GateError::Upstream(failure));
            }
            Err(failure) => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[name, failure.kind()])
                    .inc();
                return Err(GateError::Upstream(failure));
            }
        };
        self.metrics
            .upstream_requests
            .with_label_values(&[name, resp.status().as_str()])
            .inc();
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return self.switch_protocols(resp, client_upgrade, &exchange);
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(X_REQUEST_ID, exchange.request_id.header_value());
        Ok(Response::from_parts(parts, body))
    }

    /// Relays an upstream's 101 and splices the two connections. A 101 the
    /// client did not ask for, or to a protocol other than the one it asked
    /// for, cannot be relayed: the client would not know what the connection
    /// now speaks.
    fn switch_protocols(
        &self,
        mut resp: Response<ResponseBody>,
        client: Option<ClientUpgrade>,
        exchange: &Exchange<'_>,
    ) -> Result<Response<ResponseBody>, GateError> {
        let protocol = resp.headers().get(header::UPGRADE).cloned();
        let (Some(client), Some(protocol)) = (client, protocol) else {
            tracing::warn!(
                request_id = %exchange.request_id,
                route = exchange.route,
                "the upstream switched protocols without an upgrade to switch to"
            );
            return Err(GateError::Upstream(UpstreamFailure::Reset));
        };
        if !headers::offers(&client.protocols, &protocol) {
            tracing::warn!(
                request_id = %exchange.request_id,
                route = exchange.route,
                "the upstream switched to a protocol the client did not ask for"
            );
            return Err(GateError::Upstream(UpstreamFailure::Reset));
        }
        let upstream = hyper::upgrade::on(&mut resp);
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_upgrade(&mut parts.headers, protocol);
        parts
            .headers
            .insert(X_REQUEST_ID, exchange.request_id.header_value());
        // The (empty) body holds the upstream's connection slot, and the
        // hold the client's: a tunnel keeps both connections, so it keeps
        // their slots.
        self.tunnels.open(
            client.upgrade,
            upstream,
            (body, client.hold),
            self.tunnel_idle_timeout,
            exchange.request_id.clone(),
        );
        self.metrics
            .upgrades
            .with_label_values(&[exchange.route])
            .inc();
        let empty = http_body_util::Empty::new().map_err(|never| match never {});
        Ok(Response::from_parts(parts, empty.boxed()))
    }
}

/// A client's request to switch protocols.
struct ClientUpgrade {
    /// The protocols it offered (`Upgrade`).
    protocols: http::HeaderValue,
    /// Its connection, once the 101 has been written.
    upgrade: OnUpgrade,
    /// Its connection's slots, if the server gave them.
    hold: Option<ConnectionHold>,
}
