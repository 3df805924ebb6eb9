//! Path canonicalisation: the one form of a request path that is matched
//! against routes **and** forwarded, so an upstream never acts on a path
//! other than the one that was authorized.
//!
//! Upstreams disagree on how they read a path: Tomcat and Spring drop
//! `;params`, nginx merges slashes, most frameworks percent-decode before
//! routing. Each of those readings, applied to a path the gateway matched
//! literally, can land in another route's space. So the gateway settles the
//! ambiguity first: it decodes what is safe to decode, merges slashes, and
//! refuses what has no single reading (dot segments, encoded separators,
//! backslashes). Pure: values in, values out.

use std::fmt::Write as _;

/// Why a path was refused. Each is answered with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// Not origin-form: does not start with `/` (e.g. `*`).
    NotOriginForm,
    /// A `.` or `..` segment, plain or percent-encoded.
    DotSegment,
    /// `%2F` or `%5C`: a separator the upstream might decode.
    EncodedSeparator,
    /// A plain `\`, which some servers read as `/`.
    Backslash,
    /// `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `;` path parameters on a route that does not allow them.
    PathParameters,
}

impl PathRefusal {
    /// The response's `error_description`.
    pub fn description(self) -> &'static str {
        match self {
            PathRefusal::NotOriginForm => "the request path must start with /",
            PathRefusal::DotSegment => "the request path has a dot segment",
            PathRefusal::EncodedSeparator => "the request path has an encoded slash or backslash",
            PathRefusal::Backslash => "the request path has a backslash",
            PathRefusal::BadPercentEncoding => "the request path has a malformed percent-encoding",
            PathRefusal::PathParameters => {
                "the request path has path parameters (;), which this route does not allow"
            }
        }
    }
}

impl std::fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for PathRefusal {}

/// A canonical request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    forward: String,
    matched: String,
    has_parameters: bool,
}

impl CanonicalPath {
    /// The path sent upstream: unreserved characters decoded, other
    /// percent-encodings upper-cased, slashes merged, `;params` kept.
    pub fn forward(&self) -> &str {
        &self.forward
    }

    /// The form routes are matched against: [`Self::forward`] percent-decoded
    /// once (as an upstream would), with each segment's `;params` removed (as
    /// Tomcat would). Bytes that are not UTF-8 after decoding are replaced,
    /// so they can never equal a configured path.
    pub fn matched(&self) -> &str {
        &self.matched
    }

    /// Whether any segment carries `;` path parameters.
    pub fn has_parameters(&self) -> bool {
        self.has_parameters
    }

    /// [`Self::forward`] without its first `segments` segments (the route's
    /// prefix, for `stripPrefix`); `/` if nothing is left. Counting segments,
    /// not bytes, keeps this right when the forwarded form is still encoded.
    pub fn forward_without_segments(&self, segments: usize) -> &str {
        if segments == 0 {
            return &self.forward;
        }
        // `forward` starts with `/`; the n-th `/` after it starts what is kept.
        match self
            .forward
            .match_indices('/')
            .nth(segments)
            .map(|(i, _)| i)
        {
            Some(i) => &self.forward[i..],
            None => "/",
        }
    }
}

/// Canonicalises a raw request path (without its query).
pub fn canonicalize(raw: &str) -> Result<CanonicalPath, PathRefusal> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathRefusal::NotOriginForm);
    }
    let mut forward = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?))
                    .ok_or(PathRefusal::BadPercentEncoding)?;
                match decoded {
                    b'/' | b'\\' => return Err(PathRefusal::EncodedSeparator),
                    d if is_unreserved(d) => forward.push(char::from(d)),
                    d => {
                        let _ = write!(forward, "%{d:02X}");
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathRefusal::Backslash),
            b'/' if forward.ends_with('/') => i += 1,
            _ => {
                // The path of an `http::Uri` is ASCII, so byte = char; a
                // non-ASCII byte is re-encoded rather than trusted.
                if b.is_ascii() {
                    forward.push(char::from(b));
                } else {
                    let _ = write!(forward, "%{b:02X}");
                }
                i += 1;
            }
        }
    }

    let mut matched_bytes = Vec::with_capacity(forward.len());
    let mut has_parameters = false;
    for (n, segment) in forward.split('/').enumerate() {
        if n > 0 {
            matched_bytes.push(b'/');
        }
        let (name, params) = match segment.split_once(';') {
            Some((name, _)) => (name, true),
            None => (segment, false),
        };
        has_parameters |= params;
        let start = matched_bytes.len();
        matched_bytes.extend(percent_decode(name.as_bytes()));
        if matches!(&matched_bytes[start..], b"." | b"..") {
            return Err(PathRefusal::DotSegment);
        }
    }
    let matched = match String::from_utf8(matched_bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(CanonicalPath {
        forward,
        matched,
        has_parameters,
    })
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` in an already-validated canonical segment.
fn percent_decode(bytes: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        if b == b'%' {
            if let Some(d) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex(h[0])? << 4 | hex(h[1])?))
            {
                i += 3;
                return Some(d);
            }
        }
        i += 1;
        Some(b)
    })
}

impl From<PathRefusal> for crate::error::GateError {
    fn from(why: PathRefusal) -> Self {
        crate::error::GateError::BadRequest(why.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(raw: &str) -> String {
        canonicalize(raw).unwrap().forward().to_string()
    }

    fn matched(raw: &str) -> String {
        canonicalize(raw).unwrap().matched().to_string()
    }

    #[test]
    fn unreserved_characters_are_decoded_and_the_rest_upper_cased() {
        assert_eq!(forward("/api/am/%61dmin/x"), "/api/am/admin/x");
        assert_eq!(forward("/a%7e%2D%5f%2e%41"), "/a~-_.A");
        assert_eq!(forward("/a%3ab%20c%25"), "/a%3Ab%20c%25");
        assert_eq!(matched("/a%3ab%20c%25"), "/a:b c%");
    }

    #[test]
    fn repeated_slashes_are_merged() {
        assert_eq!(forward("/api/am//admin/x"), "/api/am/admin/x");
        assert_eq!(forward("//api///x//"), "/api/x/");
        assert_eq!(forward("/"), "/");
    }

    #[test]
    fn path_parameters_are_kept_but_not_matched() {
        let c = canonicalize("/api/am/admin;x=1/x").unwrap();
        assert_eq!(c.forward(), "/api/am/admin;x=1/x");
        assert_eq!(c.matched(), "/api/am/admin/x");
        assert!(c.has_parameters());
        assert!(!canonicalize("/api/x").unwrap().has_parameters());
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        use PathRefusal::*;
        for (raw, why) in [
            ("/public/../admin", DotSegment),
            ("/public/%2e%2e/admin", DotSegment),
            ("/public/%2E./admin", DotSegment),
            ("/a/./b", DotSegment),
            ("/a/..", DotSegment),
            ("/a/..;x=1/b", DotSegment),
            ("/a/.%2e;/b", DotSegment),
            ("/a%2fb", EncodedSeparator),
            ("/a%2Fb", EncodedSeparator),
            ("/a%5Cb", EncodedSeparator),
            ("/a\\b", Backslash),
            ("/a%zz", BadPercentEncoding),
            ("/a%4", BadPercentEncoding),
            ("*", NotOriginForm),
            ("", NotOriginForm),
        ] {
            assert_eq!(canonicalize(raw), Err(why), "{raw}");
        }
        for good in ["/a..b/c", "/file.txt", "/...", "/a/.hidden"] {
            assert!(canonicalize(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn strip_counts_segments_of_the_encoded_form() {
        let c = canonicalize("/a%3Ab/x/y").unwrap();
        assert_eq!(c.forward_without_segments(1), "/x/y");
        assert_eq!(c.forward_without_segments(3), "/");
        assert_eq!(c.forward_without_segments(0), "/a%3Ab/x/y");
        let c = canonicalize("/api").unwrap();
        assert_eq!(c.forward_without_segments(1), "/");
    }
}
