//! `limits`: connection and request limits of the proxy listener.

use std::time::Duration;

use super::Problems;
use super::values::positive;
use crate::config::Limits;
use crate::config::raw::RawLimits;

/// Every limit is at least 1; `maxHeaderBytes` at least 8192.
pub(super) fn limits(l: &RawLimits, p: &mut Problems) -> Limits {
    let ms = |v: u64, key: &str, p: &mut Problems| {
        Duration::from_millis(positive(v, &format!("limits.{key}"), p) as u64)
    };
    Limits {
        header_read_timeout: ms(l.header_read_timeout_ms, "headerReadTimeoutMs", p),
        idle_timeout: ms(l.idle_timeout_ms, "idleTimeoutMs", p),
        max_connections: positive(l.max_connections, "limits.maxConnections", p),
        max_connections_per_client: positive(
            l.max_connections_per_client,
            "limits.maxConnectionsPerClient",
            p,
        ),
        max_header_bytes: {
            let v = positive(l.max_header_bytes, "limits.maxHeaderBytes", p);
            // hyper needs room for at least one read buffer.
            if v < 8192 {
                p.add("limits.maxHeaderBytes", "must be at least 8192");
            }
            v
        },
        max_request_body_bytes: (l.max_request_body_bytes > 0).then_some(l.max_request_body_bytes),
        request_body_timeout: ms(l.request_body_timeout_ms, "requestBodyTimeoutMs", p),
        response_write_timeout: ms(l.response_write_timeout_ms, "responseWriteTimeoutMs", p),
        tunnel_idle_timeout: ms(l.tunnel_idle_timeout_ms, "tunnelIdleTimeoutMs", p),
    }
}
