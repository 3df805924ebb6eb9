//! Checks of single values that every section shares: counts, addresses,
//! URLs, header names and files.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use http::HeaderName;
use url::Url;

use super::Problems;

/// A count or duration that must be at least 1 (and fit in memory).
pub(super) fn positive(v: u64, path: &str, p: &mut Problems) -> usize {
    match usize::try_from(v) {
        Ok(0) => {
            p.add(path, "must be greater than 0");
            1
        }
        Ok(v) if v <= u32::MAX as usize => v,
        _ => {
            p.add(path, format!("{v} is too large"));
            1
        }
    }
}

/// A listener address, `host:port`.
pub(super) fn socket_addr(s: &str, path: &str, p: &mut Problems) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    match s.to_socket_addrs().map(|mut it| it.next()) {
        Ok(Some(a)) => Some(a),
        _ => {
            p.add(path, format!("{s:?} is not a host:port address"));
            None
        }
    }
}

/// An `http://` or `https://` URL with a host and no query or fragment.
pub(super) fn http_url(s: &str, path: &str, p: &mut Problems) -> Option<Url> {
    match Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {
            if u.query().is_some() || u.fragment().is_some() {
                p.add(path, format!("{s:?} must not have a query or fragment"));
                return None;
            }
            Some(u)
        }
        Ok(_) => {
            p.add(path, format!("{s:?} is not an http:// or https:// URL"));
            None
        }
        Err(e) => {
            p.add(path, format!("{s:?} is not a valid URL: {e}"));
            None
        }
    }
}

/// A valid HTTP header name.
pub(super) fn header_name(s: &str, path: &str, p: &mut Problems) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            p.add(path, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

/// A file that must be given and must exist.
pub(super) fn existing_file(s: &str, path: &str, p: &mut Problems) -> PathBuf {
    if s.is_empty() {
        p.add(path, "is required");
    } else if !std::path::Path::new(s).is_file() {
        p.add(path, format!("file {s:?} does not exist"));
    }
    PathBuf::from(s)
}

/// A file that may be left empty, and must exist when given.
pub(super) fn optional_file(s: &str, path: &str, p: &mut Problems) -> Option<PathBuf> {
    (!s.is_empty()).then(|| existing_file(s, path, p))
}
