//! Flag values that clap parses with our own rules, and how a refusal keeps
//! the words each command has always used for it ([`BadValue`]) instead of
//! clap's usage message.

use std::time::Duration;

#[cfg(feature = "dev-tools")]
use jsonwebtoken::Algorithm;

/// A flag value one of our parsers refused. It travels through clap as the
/// source of clap's error, and [`BadValue::from_clap`] takes it back out.
#[derive(Debug, Clone, thiserror::Error)]
#[error("idp-gate {command}: {reason}")]
pub struct BadValue {
    command: &'static str,
    reason: String,
}

impl BadValue {
    pub fn new(command: &'static str, reason: String) -> Self {
        Self { command, reason }
    }

    /// The refusal inside `err`, if one of our parsers made it.
    pub fn from_clap(err: &clap::Error) -> Option<Self> {
        std::error::Error::source(err)?
            .downcast_ref::<Self>()
            .cloned()
    }
}

/// `--alg` of `demo` and `dev-idp`, in any case: the development IdP
/// publishes an RS256 and an ES256 key, so it can sign with either.
#[cfg(feature = "dev-tools")]
pub fn idp_alg(
    command: &'static str,
) -> impl Fn(&str) -> Result<Algorithm, BadValue> + Clone + Send + Sync + 'static {
    move |value| match value.to_ascii_uppercase().as_str() {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(BadValue::new(
            command,
            format!("--alg must be RS256 or ES256, not {other}"),
        )),
    }
}

/// A lifetime or timeout: bare seconds (`3600`) or a number with one unit
/// suffix, `s`, `m`, `h` or `d` (`90s`, `15m`, `1h`, `2d`). Zero is refused
/// because a token that is born expired, or a probe that gives up before it
/// starts, is never what was meant. The messages say "ttl" for `--timeout`
/// too, as they always have.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let trimmed = s.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "invalid ttl {s:?}: expected a number such as 3600, 90s, 15m, 1h or 2d"
        ));
    }
    let multiplier: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        _ => return Err(format!("invalid ttl {s:?}: unit must be s, m, h or d")),
    };
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid ttl {s:?}: too large"))?;
    if secs == 0 {
        return Err(format!("invalid ttl {s:?}: must be greater than zero"));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units() {
        let cases = [
            ("3600", 3600),
            ("90s", 90),
            ("15m", 900),
            ("1h", 3600),
            ("2d", 172_800),
            (" 5m ", 300),
        ];
        for (input, secs) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
    }

    #[test]
    fn durations_reject_garbage() {
        for input in [
            "",
            "h",
            "0",
            "0s",
            "-5",
            "+5",
            "1.5h",
            "1h30m",
            "10w",
            "5 m",
            "1H",
            "99999999999999999999",
            "9999999999999999999d",
        ] {
            assert!(
                parse_duration(input).is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[cfg(feature = "dev-tools")]
    #[test]
    fn idp_alg_takes_either_key_in_any_case() {
        let parse = idp_alg("demo");
        assert_eq!(parse("es256").ok(), Some(Algorithm::ES256));
        assert_eq!(parse("RS256").ok(), Some(Algorithm::RS256));
        assert_eq!(
            parse("rs512").unwrap_err().to_string(),
            "idp-gate demo: --alg must be RS256 or ES256, not RS512"
        );
    }
}
