//! Token verification: header, provider by `iss`, key by `kid` and `alg`,
//! signature, then the registered claims. Every refusal is an
//! [`AuthFailure`] from the contract's closed set.
//!
//! Claims are checked here rather than by `jsonwebtoken::Validation` so each
//! failure maps to exactly one reason, `iat` is honoured, and `aud` accepts
//! a string or an array with any-of semantics.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::{Map, Value};

use super::claims::Identity;
use super::jwks::{Jwks, RefreshTask};
use crate::config::ProviderConfig;
use crate::error::AuthFailure;

/// Tokens longer than this are refused before any decoding.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A provider ready to verify: its settings, keys and HMAC secret.
pub struct Provider {
    /// Unique for the life of the process; a provider carried over by a
    /// reload keeps it, so verdicts cached for it stay valid.
    pub id: u64,
    /// Validated settings.
    pub config: ProviderConfig,
    /// Its JWKS.
    pub jwks: Arc<Jwks>,
    /// Keeps the JWKS refreshed while any provider using it is alive.
    _refresh: Option<Arc<RefreshTask>>,
    hmac: Option<DecodingKey>,
}

impl Provider {
    /// Wraps a provider's config and JWKS; `refresh` is the JWKS's
    /// background task, stopped when the last provider holding it is gone.
    pub fn new(
        config: ProviderConfig,
        jwks: Arc<Jwks>,
        refresh: Option<Arc<RefreshTask>>,
    ) -> Provider {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let hmac = config
            .client_secret
            .as_ref()
            .filter(|s| !s.is_empty())
            .and_then(|s| DecodingKey::from_secret(s.expose()).ok());
        Provider {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            jwks,
            _refresh: refresh,
            hmac,
        }
    }

    /// The refresh task, to share with a provider that keeps these keys.
    pub fn refresh_task(&self) -> Option<Arc<RefreshTask>> {
        self._refresh.clone()
    }
}

/// A decoded but not yet verified token.
struct Parts<'t> {
    message: &'t str,
    signature: &'t str,
    alg: Algorithm,
    kid: Option<String>,
    claims: Map<String, Value>,
}

fn parse(token: &str) -> Result<Parts<'_>, AuthFailure> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthFailure::Malformed);
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(signature), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let message = &token[..h.len() + 1 + p.len()];
    let header_json = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| AuthFailure::Malformed)?;
    // A derived struct would also take a JSON array; a header is an object.
    if header_json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AuthFailure::Malformed);
    }
    let header: Header<'_> =
        serde_json::from_slice(&header_json).map_err(|_| AuthFailure::Malformed)?;
    let claims: Map<String, Value> = decode_json(p)?;
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if header.crit.0 {
        return Err(AuthFailure::Malformed);
    }
    // `jku`, `x5u`, `jwk` and `x5c` are never followed or trusted: keys
    // come only from the configured JWKS or client secret.
    let alg = header
        .alg
        .parse::<Algorithm>()
        .map_err(|_| AuthFailure::AlgNotAllowed)?;
    let kid = header.kid.map(Cow::into_owned);
    if signature.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(Parts {
        message,
        signature,
        alg,
        kid,
        claims,
    })
}

/// What is read of a token's header: the rest is never acted on. Read in
/// place, without a map or copies; a duplicate member is malformed (RFC
/// 7515 §4 allows refusing it).
#[derive(serde::Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Present,
}

/// Whether a member is there at all, whatever its value (`null` too).
#[derive(Default)]
struct Present(bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

/// One base64url JSON part of a JWT (header or claims), unverified.
pub(crate) fn decode_json(part: &str) -> Result<Map<String, Value>, AuthFailure> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthFailure::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthFailure::Malformed)
}

/// A NumericDate claim: absent is `Ok(None)`, a non-number is malformed.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthFailure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let v = n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .ok_or(AuthFailure::Malformed)?;
            Ok(Some(v))
        }
        Some(_) => Err(AuthFailure::Malformed),
    }
}

/// Checks `exp`, `nbf`, `iat` against `now` with `skew` leeway.
pub fn check_times(
    claims: &Map<String, Value>,
    now: u64,
    skew: u64,
) -> Result<TimeWindow, AuthFailure> {
    let exp = numeric_date(claims, "exp")?.ok_or(AuthFailure::MissingTokenClaim)?;
    let nbf = numeric_date(claims, "nbf")?;
    let iat = numeric_date(claims, "iat")?;
    if now > exp.saturating_add(skew) {
        return Err(AuthFailure::Expired);
    }
    let starts = nbf.into_iter().chain(iat).max();
    if let Some(start) = starts {
        if start > now.saturating_add(skew) {
            return Err(AuthFailure::NotYetValid);
        }
    }
    Ok(TimeWindow {
        not_before: starts.map(|s| s.saturating_sub(skew)),
        not_after: exp.saturating_add(skew),
    })
}

/// When a verified token is usable (already widened by the skew).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// First second it is valid.
    pub not_before: Option<u64>,
    /// Last second it is valid.
    pub not_after: u64,
}

impl TimeWindow {
    /// Re-checks the window at `now` (for cached verdicts).
    pub fn check(&self, now: u64) -> Result<(), AuthFailure> {
        if now > self.not_after {
            return Err(AuthFailure::Expired);
        }
        if self.not_before.is_some_and(|nb| now < nb) {
            return Err(AuthFailure::NotYetValid);
        }
        Ok(())
    }
}

/// `aud` (string or array of strings) contains one of `accepted`.
fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), AuthFailure> {
    let ok = match claims.get("aud") {
        Some(Value::String(a)) => accepted.iter().any(|x| x == a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| accepted.iter().any(|x| x == a)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthFailure::WrongAudience)
    }
}

/// An `email` identity must be one the provider verified: anyone can sign
/// up with an address they do not own. Only an explicit `false` refuses
/// (access tokens often carry no `email_verified` at all).
fn check_email_verified(
    claims: &Map<String, Value>,
    config: &ProviderConfig,
) -> Result<(), AuthFailure> {
    if config.username_claim != "email" || config.allow_unverified_email {
        return Ok(());
    }
    match claims.get("email_verified") {
        Some(Value::Bool(false)) => Err(AuthFailure::UnverifiedEmail),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Err(AuthFailure::UnverifiedEmail)
        }
        _ => Ok(()),
    }
}

/// The providers of one configuration.
pub struct Verifier {
    providers: Vec<Arc<Provider>>,
}

/// A successful verification.
pub struct Verification {
    /// Who the token speaks for.
    pub identity: Arc<Identity>,
    /// The id of the provider that issued it.
    pub provider: u64,
    /// When it may be reused.
    pub window: TimeWindow,
    /// The key-set generation it was verified against (`None` for HMAC).
    pub generation: Option<u64>,
}

impl Verifier {
    /// Wraps the configured providers.
    pub fn new(providers: Vec<Arc<Provider>>) -> Verifier {
        Verifier { providers }
    }

    /// The providers.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// The index of the provider with this id, if it is one of ours.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.providers.iter().position(|p| p.id == id)
    }

    /// Verifies `token` for a route that accepts `allowed` providers (`None`: any).
    pub async fn verify(
        &self,
        token: &str,
        allowed: Option<&[usize]>,
        now: u64,
    ) -> Result<Verification, AuthFailure> {
        let parts = parse(token)?;
        // The provider is chosen by `iss` before any key is looked up.
        let iss = parts.claims.get("iss").and_then(Value::as_str);
        let Some((index, provider)) = self
            .providers
            .iter()
            .enumerate()
            .find(|(_, p)| Some(p.config.issuer.as_str()) == iss)
        else {
            return Err(AuthFailure::WrongIssuer);
        };
        if allowed.is_some_and(|a| !a.contains(&index)) {
            return Err(AuthFailure::WrongIssuer);
        }
        if !provider.config.algorithms.contains(&parts.alg) {
            return Err(AuthFailure::AlgNotAllowed);
        }
        let generation = verify_signature(provider, &parts).await?;
        let window = check_times(&parts.claims, now, provider.config.clock_skew.as_secs())?;
        check_audience(&parts.claims, &provider.config.audiences)?;
        check_email_verified(&parts.claims, &provider.config)?;
        let identity = Identity::from_claims(&provider.config, parts.claims);
        Ok(Verification {
            identity: Arc::new(identity),
            provider: provider.id,
            window,
            generation,
        })
    }

    /// The key-set generation a cached verdict must still match.
    pub fn current_generation(&self, index: usize) -> Option<u64> {
        self.providers.get(index)?.jwks.keys().map(|l| l.generation)
    }
}

/// Verifies the signature; returns the key-set generation used (None for HMAC).
async fn verify_signature(
    provider: &Provider,
    parts: &Parts<'_>,
) -> Result<Option<u64>, AuthFailure> {
    let message = parts.message.as_bytes();
    if parts.alg.family() == AlgorithmFamily::Hmac {
        // HMAC keys come only from the client secret, never from the JWKS.
        let key = provider.hmac.as_ref().ok_or(AuthFailure::AlgNotAllowed)?;
        return if jsonwebtoken::crypto::verify(parts.signature, message, key, parts.alg)
            .unwrap_or(false)
        {
            Ok(None)
        } else {
            Err(AuthFailure::BadSignature)
        };
    }
    let loaded = provider.jwks.keys().ok_or(AuthFailure::JwksUnavailable)?;
    let kid = parts.kid.as_deref();
    if let Some(kid) = kid {
        if !loaded.keys.has_kid(kid) {
            // Rotation: the provider may have published a new key. Rate
            // limited inside, so a flood of random kids is one fetch.
            if !provider.jwks.refetch_for_unknown_kid(kid).await {
                return Err(AuthFailure::UnknownKid);
            }
            let reloaded = provider.jwks.keys().ok_or(AuthFailure::JwksUnavailable)?;
            if !reloaded.keys.has_kid(kid) {
                return Err(AuthFailure::UnknownKid);
            }
            return check_with(&reloaded, kid.into(), parts);
        }
    }
    check_with(&loaded, kid, parts)
}

fn check_with(
    loaded: &super::jwks::Loaded,
    kid: Option<&str>,
    parts: &Parts<'_>,
) -> Result<Option<u64>, AuthFailure> {
    let mut candidates = loaded.keys.candidates(kid, parts.alg).peekable();
    if candidates.peek().is_none() {
        // The kid exists (or the token has none) but no key may verify this
        // alg: a confusion attempt or a mis-signed token.
        return Err(if kid.is_some() {
            AuthFailure::AlgNotAllowed
        } else {
            AuthFailure::UnknownKid
        });
    }
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parts.signature) else {
        return Err(AuthFailure::BadSignature);
    };
    if candidates.any(|k| k.verify(parts.message.as_bytes(), &signature, parts.alg)) {
        Ok(Some(loaded.generation))
    } else {
        Err(AuthFailure::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// A token with this raw header JSON, valid claims and any signature.
    fn with_header(header: &str) -> String {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.c2ln", b64(header), b64(r#"{"iss":"i","exp":1}"#))
    }

    #[test]
    fn token_headers_are_read_strictly() {
        let kid = |h: &str| parse(&with_header(h)).map(|p| (p.alg, p.kid));
        assert_eq!(
            kid(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
            Ok((Algorithm::RS256, Some("k1".to_string())))
        );
        assert_eq!(
            kid(r#"{"alg":"ES256","kid":null}"#),
            Ok((Algorithm::ES256, None))
        );
        assert_eq!(kid(r#"{"alg":"R\u0053256"}"#), Ok((Algorithm::RS256, None)));
        for (header, refusal) in [
            (r#"{"alg":"none"}"#, AuthFailure::AlgNotAllowed),
            (r#"{"kid":"k1"}"#, AuthFailure::Malformed),
            (r#"{"alg":256}"#, AuthFailure::Malformed),
            (r#"{"alg":"RS256","kid":7}"#, AuthFailure::Malformed),
            (r#"{"alg":"RS256","crit":["b64"]}"#, AuthFailure::Malformed),
            (r#"{"alg":"RS256","crit":null}"#, AuthFailure::Malformed),
            (r#"{"alg":"HS256","alg":"RS256"}"#, AuthFailure::Malformed),
            (r#"["RS256"]"#, AuthFailure::Malformed),
        ] {
            assert_eq!(kid(header).err(), Some(refusal), "{header}");
        }
    }

    #[test]
    fn time_claims() {
        let now = 1_000_000;
        assert_eq!(
            check_times(&claims(json!({})), now, 30),
            Err(AuthFailure::MissingTokenClaim)
        );
        assert_eq!(
            check_times(&claims(json!({"exp": "soon"})), now, 30),
            Err(AuthFailure::Malformed)
        );
        assert!(check_times(&claims(json!({"exp": now + 10})), now, 30).is_ok());
        assert!(check_times(&claims(json!({"exp": now - 20})), now, 30).is_ok());
        assert_eq!(
            check_times(&claims(json!({"exp": now - 31})), now, 30),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            check_times(&claims(json!({"exp": now + 100, "nbf": now + 31})), now, 30),
            Err(AuthFailure::NotYetValid)
        );
        assert_eq!(
            check_times(&claims(json!({"exp": now + 100, "iat": now + 31})), now, 30),
            Err(AuthFailure::NotYetValid)
        );
        assert!(check_times(&claims(json!({"exp": now + 100, "nbf": now + 29})), now, 30).is_ok());
    }

    #[test]
    fn audience_any_of_string_or_array() {
        let accepted = vec!["a".to_string(), "b".to_string()];
        assert!(check_audience(&claims(json!({"aud": "b"})), &accepted).is_ok());
        assert!(check_audience(&claims(json!({"aud": ["x", "a"]})), &accepted).is_ok());
        assert!(check_audience(&claims(json!({"aud": ["x"]})), &accepted).is_err());
        assert!(check_audience(&claims(json!({"aud": "ab"})), &accepted).is_err());
        assert!(check_audience(&claims(json!({})), &accepted).is_err());
        assert!(check_audience(&claims(json!({"aud": 5})), &accepted).is_err());
    }

    #[test]
    fn malformed_tokens() {
        for t in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.e30.sig",
            "e30.!!.sig",
            "e30.e30.",
            "e30.e30.sig",
        ] {
            assert!(parse(t).is_err(), "{t}");
        }
        // {"alg":"none"} / {} / sig
        let none = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(parse(&none).err(), Some(AuthFailure::AlgNotAllowed));
        let crit = format!(
            "{}.e30.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","crit":["x"]}"#)
        );
        assert_eq!(parse(&crit).err(), Some(AuthFailure::Malformed));
    }
}
