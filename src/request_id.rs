//! Request ids: the client's when sane, else a fresh one.

use http::header::{HeaderMap, HeaderValue};

use crate::headers::X_REQUEST_ID;

/// A request id: the client's `X-Request-Id` if it is sane (1–128 of
/// `[A-Za-z0-9._:-]`), else a fresh one. Held as the header value it
/// travels as, so passing it on (the access line, the upstream request,
/// the response) shares its bytes instead of copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The client's id from `headers`, or a fresh one.
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        headers
            .get(X_REQUEST_ID)
            .filter(|v| is_sane(v.as_bytes()))
            .map(|v| RequestId(v.clone()))
            .unwrap_or_else(RequestId::fresh)
    }

    /// A fresh id.
    pub fn fresh() -> RequestId {
        RequestId(fresh_request_id())
    }

    /// `id` if it is sane, else a fresh one.
    pub fn from_str_or_fresh(id: &str) -> RequestId {
        if is_sane(id.as_bytes()) {
            if let Ok(v) = HeaderValue::from_str(id) {
                return RequestId(v);
            }
        }
        RequestId::fresh()
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // Only sane ids are made: visible ASCII, which `to_str` accepts.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new request id, a UUID in its 36-character form: a random prefix
/// drawn once per process, then a counter. Unique without asking the OS for
/// randomness on every request, which is what `Uuid::new_v4` does; an id
/// only has to correlate lines, not to be unguessable.
fn fresh_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids are still unique within the process.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Uuid::from_u64_pair(prefix, count)
        .hyphenated()
        .encode_lower(&mut text);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(RequestId::from_headers(&h).as_str(), "abc-123_x.y:z");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("bad id<script>"));
        assert_ne!(RequestId::from_headers(&h).as_str(), "bad id<script>");
        let (a, b) = (
            RequestId::from_headers(&HeaderMap::new()),
            RequestId::from_headers(&HeaderMap::new()),
        );
        assert_eq!(a.as_str().len(), 36);
        assert_ne!(a, b);
    }
}
