//! Finding the token in a request.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

/// One place a token may be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header, with an optional scheme (compared case-insensitively).
    Header {
        /// Header name.
        name: HeaderName,
        /// e.g. `Bearer`.
        scheme: Option<String>,
    },
    /// A query parameter.
    Query(String),
    /// A cookie.
    Cookie(String),
}

/// The first token found in `sources`, in order. A source that is present
/// but empty or with another scheme does not count as found.
pub fn extract<'a>(
    sources: &[TokenSource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    sources.iter().find_map(|source| match source {
        TokenSource::Header { name, scheme } => headers.get_all(name).iter().find_map(|v| {
            let v = v.to_str().ok()?.trim();
            let token = match scheme {
                Some(scheme) => {
                    let (given, rest) = v.split_once(' ')?;
                    if !given.eq_ignore_ascii_case(scheme) {
                        return None;
                    }
                    rest.trim()
                }
                None => v,
            };
            (!token.is_empty()).then_some(Cow::Borrowed(token))
        }),
        TokenSource::Query(name) => query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, v)| k == name.as_str() && !v.is_empty())
                .map(|(_, v)| Cow::Owned(v.into_owned()))
        }),
        TokenSource::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| Cow::Borrowed(v.trim_matches('"'))),
    })
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

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER  abc "] {
            assert_eq!(
                extract(&[bearer()], &headers(&[("authorization", v)]), None).as_deref(),
                Some("abc"),
                "{v}"
            );
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "abc"] {
            assert_eq!(
                extract(&[bearer()], &headers(&[("authorization", v)]), None),
                None,
                "{v}"
            );
        }
    }

    #[test]
    fn sources_in_order() {
        let sources = [
            bearer(),
            TokenSource::Header {
                name: HeaderName::from_static("x-token"),
                scheme: None,
            },
            TokenSource::Query("access_token".into()),
            TokenSource::Cookie("session".into()),
        ];
        let h = headers(&[
            ("x-token", "from-header"),
            ("cookie", "a=b; session=from-cookie"),
        ]);
        assert_eq!(
            extract(&sources, &h, Some("access_token=q")).as_deref(),
            Some("from-header")
        );
        let h = headers(&[("cookie", "a=b; session=from-cookie")]);
        assert_eq!(
            extract(&sources, &h, Some("x=1&access_token=q%2B")).as_deref(),
            Some("q+")
        );
        assert_eq!(extract(&sources, &h, None).as_deref(), Some("from-cookie"));
        assert_eq!(extract(&sources, &HeaderMap::new(), None), None);
    }
}
