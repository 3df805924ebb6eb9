//! Finding the one credential in a request, and what it leaves behind
//! that must not go upstream.
//!
//! The gateway and the upstream read a request separately. If it carries
//! two credentials, the gateway could verify one while the upstream acts on
//! the other. So each configured source is read the widest way an upstream
//! might read it: query parameters split on `&` and `;` (Tomcat and older
//! frameworks split on both), cookies on `;` and `,` (RFC 2965 allowed a
//! comma), names percent-decoded and compared without regard to ASCII case
//! (PHP decodes names, ASP.NET ignores their case). A value that is present
//! counts even when empty, since an upstream may still act on it; only a
//! header value with another scheme than the source's (`Basic` where
//! `Bearer` is configured) is not a token. More than one such value, in one
//! source or across sources, is refused before anything is verified.

use std::borrow::Cow;
use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::error::{AuthFailure, GateError};
pub use crate::routing::policy::TokenSource;

/// The one credential a request carries, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The token: as sent in a header or cookie (a cookie's quotes
    /// removed), percent-decoded from the query.
    pub token: Cow<'a, str>,
    /// Where it was found.
    pub carrier: Carrier<'a>,
}

/// Where a credential was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carrier<'a> {
    /// A header source's header.
    Header(&'a HeaderName),
    /// A query parameter: the bytes of its `name=value` within the query.
    Query(Range<usize>),
    /// A cookie source, by its configured name.
    Cookie(&'a str),
}

impl Carrier<'_> {
    /// Why a source that carries a credential twice is refused.
    fn repeated(&self) -> &'static str {
        match self {
            Carrier::Header(_) => "a token header is given more than once",
            Carrier::Query(_) => "a token query parameter is given more than once",
            Carrier::Cookie(_) => "a token cookie is given more than once",
        }
    }
}

impl Credential<'_> {
    /// The query to forward: `query` less the parameter that carried the
    /// token and one separator beside it, every other byte as it came;
    /// `None` when nothing is left of a query that had the token.
    pub fn forwarded_query(&self, query: Option<&str>) -> Option<String> {
        let query = query?;
        let Carrier::Query(span) = &self.carrier else {
            return Some(query.to_string());
        };
        let rest = cut(query.as_bytes(), span.clone());
        // Cut at ASCII separators, so still UTF-8; if not, forward none.
        let rest = String::from_utf8(rest).unwrap_or_default();
        (!rest.is_empty()).then_some(rest)
    }

    /// The cookie that carried the token, if one did.
    pub fn cookie(&self) -> Option<&str> {
        match self.carrier {
            Carrier::Cookie(name) => Some(name),
            _ => None,
        }
    }
}

struct Found<'a> {
    /// Empty when the value is not text: it cannot be a token either.
    value: Cow<'a, str>,
    carrier: Carrier<'a>,
    source: usize,
}

/// The one credential the configured `sources` find in a request.
///
/// Refused with 400 when a source carries more than one value or more
/// than one source carries any (see the module's note on what counts);
/// `missing_token` when none does or the one value is empty or not text.
/// The order of `sources` does not matter: there is never a second value
/// to choose from.
pub fn extract<'a>(
    sources: &'a [TokenSource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Credential<'a>, GateError> {
    let mut found: Option<Found<'a>> = None;
    for (source, s) in sources.iter().enumerate() {
        match s {
            TokenSource::Header { name, scheme } => {
                for v in headers.get_all(name) {
                    if let Some(value) = header_token(v, scheme.as_deref()) {
                        keep(&mut found, source, value, Carrier::Header(name))?;
                    }
                }
            }
            TokenSource::Query(name) => {
                for p in query.into_iter().flat_map(query_params) {
                    if p.name.eq_ignore_ascii_case(name) {
                        let value = p.value();
                        keep(&mut found, source, value, Carrier::Query(p.span))?;
                    }
                }
            }
            TokenSource::Cookie(name) => {
                for field in headers.get_all(header::COOKIE) {
                    for (_, n, v) in cookie_pairs(field.as_bytes()) {
                        if n.eq_ignore_ascii_case(name.as_bytes()) {
                            let value = Cow::Borrowed(std::str::from_utf8(v).unwrap_or_default());
                            keep(&mut found, source, value, Carrier::Cookie(name))?;
                        }
                    }
                }
            }
        }
    }
    match found {
        Some(f) if !f.value.is_empty() => Ok(Credential {
            token: f.value,
            carrier: f.carrier,
        }),
        _ => Err(AuthFailure::MissingToken.into()),
    }
}

/// Keeps the first value found (`value`, carried by `carrier` of the
/// source at index `source`); a second one is the refusal.
fn keep<'a>(
    found: &mut Option<Found<'a>>,
    source: usize,
    value: Cow<'a, str>,
    carrier: Carrier<'a>,
) -> Result<(), GateError> {
    match found {
        None => {
            *found = Some(Found {
                value,
                carrier,
                source,
            });
            Ok(())
        }
        Some(first) if first.source == source => Err(GateError::BadRequest(carrier.repeated())),
        Some(_) => Err(GateError::BadRequest(
            "the request carries credentials in more than one token source",
        )),
    }
}

/// The token in a header value, if the value is one for this source:
/// any value without a scheme, else a value whose scheme (up to the first
/// space) is `scheme`, in any case, even with nothing after it.
fn header_token<'a>(v: &'a HeaderValue, scheme: Option<&str>) -> Option<Cow<'a, str>> {
    let v = v.as_bytes().trim_ascii();
    let token = match scheme {
        None => v,
        Some(scheme) => {
            let (given, rest) = match v.iter().position(|b| *b == b' ') {
                Some(i) => (&v[..i], &v[i..]),
                None => (v, &v[v.len()..]),
            };
            if !given.eq_ignore_ascii_case(scheme.as_bytes()) {
                return None;
            }
            rest.trim_ascii()
        }
    };
    Some(Cow::Borrowed(
        std::str::from_utf8(token).unwrap_or_default(),
    ))
}

/// One query parameter, as [`query_params`] reads it.
pub(crate) struct Param<'q> {
    /// The bytes of its `name=value` within the query.
    pub span: Range<usize>,
    /// Its name, decoded.
    pub name: Cow<'q, str>,
    raw_value: &'q str,
}

impl<'q> Param<'q> {
    /// Its value, decoded: only asked for when the name is of interest.
    pub fn value(&self) -> Cow<'q, str> {
        decode(self.raw_value)
    }
}

/// A query's parameters as the strictest upstream reads them: split on
/// both `&` and `;`; a parameter without `=` has an empty value.
pub(crate) fn query_params(query: &str) -> impl Iterator<Item = Param<'_>> {
    segments(query.as_bytes(), |b| b == b'&' || b == b';').filter_map(|span| {
        let pair = query.get(span.clone()).filter(|p| !p.is_empty())?;
        let (name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        Some(Param {
            span,
            name: decode(name),
            raw_value,
        })
    })
}

/// Form decoding (`+` is a space, then `%XX`), invalid UTF-8 replaced:
/// what `application/x-www-form-urlencoded` parsers do.
fn decode(s: &str) -> Cow<'_, str> {
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy();
        return Cow::Owned(decoded.into_owned());
    }
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

/// A `Cookie` field's pairs as the most lenient upstream reads them: split
/// on `;` and `,`, the name trimmed and percent-decoded, the value trimmed
/// and unquoted; a pair without `=` is a name with an empty value. Each
/// with its bytes within the field.
fn cookie_pairs(field: &[u8]) -> impl Iterator<Item = (Range<usize>, Cow<'_, [u8]>, &[u8])> {
    segments(field, |b| b == b';' || b == b',').filter_map(|span| {
        let pair = field.get(span.clone())?;
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = name.trim_ascii();
        if name.is_empty() && value.is_empty() {
            return None;
        }
        let mut value = value.trim_ascii();
        while let Some(v) = value
            .strip_prefix(b"\"")
            .or_else(|| value.strip_suffix(b"\""))
        {
            value = v;
        }
        Some((span, percent_encoding::percent_decode(name).into(), value))
    })
}

/// The spans between separators, empty ones included.
fn segments(s: &[u8], is_sep: impl Fn(u8) -> bool) -> impl Iterator<Item = Range<usize>> {
    let mut start = 0;
    let ends = s
        .iter()
        .enumerate()
        .filter(move |(_, b)| is_sep(**b))
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    ends.map(move |end| {
        let span = start..end;
        start = end + 1;
        span
    })
}

/// `s` without `span` and one separator beside it (the one after it, else
/// the one before), every other byte kept.
fn cut(s: &[u8], span: Range<usize>) -> Vec<u8> {
    let (start, end) = if span.end < s.len() {
        (span.start, span.end + 1)
    } else {
        (span.start.saturating_sub(1), span.end)
    };
    let mut out = Vec::with_capacity(s.len());
    out.extend_from_slice(s.get(..start).unwrap_or_default());
    out.extend_from_slice(s.get(end..).unwrap_or_default());
    out
}

/// Removes the cookie `name` (read as [`extract`] reads it) from every
/// `Cookie` field, keeping the other cookies; a field left empty goes.
pub fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let fields: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    headers.remove(header::COOKIE);
    for field in fields {
        let doomed: Vec<Range<usize>> = cookie_pairs(field.as_bytes())
            .filter(|(_, n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(span, _, _)| span)
            .collect();
        if doomed.is_empty() {
            headers.append(header::COOKIE, field);
            continue;
        }
        let mut rest = field.as_bytes().to_vec();
        // From the last, so the earlier spans still point at their bytes.
        for span in doomed.into_iter().rev() {
            rest = cut(&rest, span);
        }
        let rest = rest.trim_ascii();
        if rest.is_empty() {
            continue;
        }
        // A part of a valid value is valid; if not, the field goes.
        if let Ok(v) = HeaderValue::from_bytes(rest) {
            headers.append(header::COOKIE, v);
        }
    }
}

/// Whether a decoded parameter name is one of the query sources.
pub(crate) fn is_query_source(sources: &[TokenSource], name: &str) -> bool {
    sources
        .iter()
        .any(|s| matches!(s, TokenSource::Query(q) if q.eq_ignore_ascii_case(name)))
}

/// `query` as it may be shown: the value of every token parameter of
/// `sources` replaced by `[redacted]`, the rest as it came.
pub fn redact_query<'q>(query: &'q str, sources: &[TokenSource]) -> Cow<'q, str> {
    let values: Vec<Range<usize>> = query_params(query)
        .filter(|p| is_query_source(sources, &p.name))
        .filter_map(|p| {
            let eq = query.get(p.span.clone())?.find('=')?;
            Some(p.span.start + eq + 1..p.span.end)
        })
        .collect();
    if values.is_empty() {
        return Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len());
    let mut at = 0;
    for v in values {
        out.push_str(query.get(at..v.start).unwrap_or_default());
        out.push_str("[redacted]");
        at = v.end;
    }
    out.push_str(query.get(at..).unwrap_or_default());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue, header::AUTHORIZATION};

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: AUTHORIZATION,
            scheme: Some("Bearer".into()),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn token(
        sources: &[TokenSource],
        h: &HeaderMap,
        q: Option<&str>,
    ) -> Result<String, &'static str> {
        extract(sources, h, q)
            .map(|c| c.token.into_owned())
            .map_err(|e| match e {
                GateError::BadRequest(_) => "400",
                other => other.reason().unwrap_or("other"),
            })
    }

    fn all() -> [TokenSource; 4] {
        [
            bearer(),
            TokenSource::Header {
                name: HeaderName::from_static("x-token"),
                scheme: None,
            },
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("session".into()),
        ]
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(
                token(&[bearer()], &headers(&[("authorization", v)]), None),
                Ok("abc".to_string()),
                "{v}"
            );
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert_eq!(
                token(&[bearer()], &headers(&[("authorization", v)]), None),
                Err("missing_token"),
                "{v}"
            );
        }
    }

    #[test]
    fn each_kind_of_source() {
        let sources = all();
        let h = headers(&[("x-token", "from-header")]);
        assert_eq!(token(&sources, &h, None), Ok("from-header".to_string()));
        let h = headers(&[("cookie", "a=b; session=\"from-cookie\"")]);
        assert_eq!(token(&sources, &h, None), Ok("from-cookie".to_string()));
        let q = Some("x=1&access_token=q%2B");
        assert_eq!(token(&sources, &HeaderMap::new(), q), Ok("q+".to_string()));
        assert_eq!(
            token(&sources, &HeaderMap::new(), None),
            Err("missing_token")
        );
        // Not text: no token, but a value all the same.
        let mut h = HeaderMap::new();
        h.insert("x-token", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(token(&sources, &h, None), Err("missing_token"));
        h.insert("cookie", HeaderValue::from_static("session=t"));
        assert_eq!(token(&sources, &h, None), Err("400"));
    }

    #[test]
    fn one_credential_in_one_place_or_a_refusal() {
        let sources = all();
        let refused = |h: &[(&str, &str)], q: Option<&str>| {
            assert_eq!(token(&sources, &headers(h), q), Err("400"), "{h:?} {q:?}");
        };
        // Two sources, however the second is spelled or left empty.
        refused(&[("x-token", "a"), ("cookie", "session=b")], None);
        refused(&[("authorization", "Bearer a")], Some("access_token="));
        refused(&[("authorization", "Bearer a")], Some("ACCESS%5Ftoken=b"));
        refused(&[("cookie", "session=a")], Some("access_token"));
        refused(&[("authorization", "bearer"), ("x-token", "a")], None);
        // One source, twice.
        refused(&[], Some("access_token=a&access_token=b"));
        refused(&[], Some("x=1;access_token=a&access_token=b"));
        refused(&[("cookie", "session=a"), ("cookie", "session=b")], None);
        refused(&[("cookie", "session=a, Session=b")], None);
        refused(&[("cookie", "%73ession=a; session")], None);
        refused(&[("x-token", "a"), ("x-token", "")], None);
        // Another scheme is not a token: the cookie is the one.
        let h = headers(&[("authorization", "Basic a"), ("cookie", "session=t")]);
        assert_eq!(token(&sources, &h, None), Ok("t".to_string()));
        // Look-alike names are other parameters.
        let q = Some("access_token_2=a&xaccess_token=b&access_token=t");
        assert_eq!(token(&sources, &HeaderMap::new(), q), Ok("t".to_string()));
    }

    #[test]
    fn the_forwarded_query_loses_the_token_and_nothing_else() {
        let sources = all();
        let none = HeaderMap::new();
        for (query, forwarded) in [
            ("access_token=t", None),
            ("access_token=t&", None),
            ("a=%2F&access_token=t&b=+", Some("a=%2F&b=+")),
            ("a=1;access_token=t&b", Some("a=1;b")),
            ("a&&access_token=t", Some("a&")),
            ("access%5ftoken=t;a=1", Some("a=1")),
        ] {
            let c = extract(&sources, &none, Some(query)).unwrap();
            assert_eq!(c.token, "t", "{query}");
            assert_eq!(
                c.forwarded_query(Some(query)).as_deref(),
                forwarded,
                "{query}"
            );
        }
        // From elsewhere, the query goes as it came, a bare `?` included.
        let h = headers(&[("x-token", "t")]);
        let c = extract(&sources, &h, Some("")).unwrap();
        assert_eq!(c.forwarded_query(Some("")).as_deref(), Some(""));
        assert_eq!(c.forwarded_query(None), None);
    }

    #[test]
    fn the_token_cookie_is_stripped_and_the_others_kept() {
        for (fields, left) in [
            (&["a=1; session=t; b=2"][..], &["a=1; b=2"][..]),
            (&["session=t; b=2"], &["b=2"]),
            (&["a=1, session=t"], &["a=1"]),
            (&["a=1", "SESSION=t"], &["a=1"]),
            (&["session=t"], &[]),
        ] {
            let mut h = HeaderMap::new();
            for f in fields {
                h.append(header::COOKIE, HeaderValue::from_static(f));
            }
            strip_cookie(&mut h, "session");
            let got: Vec<_> = h.get_all(header::COOKIE).iter().collect();
            assert_eq!(got, left, "{fields:?}");
        }
    }

    #[test]
    fn token_parameters_are_redacted_wherever_they_sit() {
        let sources = all();
        for (query, shown) in [
            (
                "a=1&access_token=t.s&b=2",
                "a=1&access_token=[redacted]&b=2",
            ),
            ("a=1;Access%5FToken=t", "a=1;Access%5FToken=[redacted]"),
            ("access_token", "access_token"),
            ("a=1", "a=1"),
        ] {
            assert_eq!(redact_query(query, &sources), shown, "{query}");
        }
    }
}
