//! An upstream that describes each request it receives, so that what the
//! gateway forwards (path, query, headers, body size) can be checked.

use std::future::Future;
use std::io;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::{json_response, run_server};

/// Answers every request with 200 and JSON
/// `{"method", "path", "version", "headers", "body_bytes"}`.
///
/// `path` is the request target's path and query exactly as received.
/// `headers` maps each lower-case name to its value, or to an array of
/// values when the header was repeated; bytes that are not UTF-8 are
/// replaced with U+FFFD. The body is counted as it streams in, never held.
/// Both HTTP/1.1 and cleartext HTTP/2 are accepted. Runs until `shutdown`
/// resolves.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    run_server(listener, handle, shutdown).await
}

async fn handle(req: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, mut body) = req.into_parts();
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes = body_bytes.saturating_add(data.len() as u64);
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "echo: request body failed");
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "request body could not be read"}),
                );
            }
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": path,
            "version": format!("{:?}", parts.version),
            "headers": headers_json(&parts.headers),
            "body_bytes": body_bytes,
        }),
    )
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let mut values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(values)
        };
        out.insert(name.as_str().to_owned(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn repeated_headers_become_arrays() {
        let mut headers = HeaderMap::new();
        headers.append("x-one", HeaderValue::from_static("a"));
        headers.append("x-many", HeaderValue::from_static("b"));
        headers.append("x-many", HeaderValue::from_static("c"));
        headers.append("x-bin", HeaderValue::from_bytes(b"\xff ok").unwrap());
        assert_eq!(
            headers_json(&headers),
            json!({"x-one": "a", "x-many": ["b", "c"], "x-bin": "\u{fffd} ok"})
        );
    }
}
