//! Per-organization rate limits: one keyed GCRA limiter per route, keyed
//! by the verified organization (tokens without one share a bucket).
//!
//! The state belongs to a snapshot, so it follows the config: a reload
//! keeps a route's limiter when its name and limit are unchanged, and
//! starts a fresh one otherwise. Limits are per replica: nothing is shared
//! between processes.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::IntCounter;

use crate::error::GateError;
use crate::metrics::Metrics;

/// How often idle organizations are dropped from the limiters. An idle
/// organization's bucket is full again, the same as no entry at all, so
/// dropping it changes no decision; only memory is at stake.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The unit of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// `N/s`.
    Second,
    /// `N/m`.
    Minute,
    /// `N/h`.
    Hour,
}

impl Per {
    fn suffix(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "m",
            Per::Hour => "h",
        }
    }
}

/// A route's limit: `count` requests per `per` for each organization, and
/// at most `burst` at once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per unit.
    pub count: NonZeroU32,
    /// The unit.
    pub per: Per,
    /// The bucket's size.
    pub burst: NonZeroU32,
}

/// Why a rate was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    /// Not `N/s`, `N/m` or `N/h`.
    #[error("is not N/s, N/m or N/h")]
    Form,
    /// `0/s`: nothing could ever pass.
    #[error("lets nothing through: N must be at least 1")]
    Zero,
    /// More than fits a 32-bit count.
    #[error("is too large: N must be below 2^32")]
    TooLarge,
}

impl RateLimit {
    /// Parses `N/s`, `N/m` or `N/h` (N ≥ 1); the burst defaults to N.
    pub fn parse(rate: &str) -> Result<RateLimit, RateError> {
        let (n, unit) = rate.trim().split_once('/').ok_or(RateError::Form)?;
        let per = match unit {
            "s" => Per::Second,
            "m" => Per::Minute,
            "h" => Per::Hour,
            _ => return Err(RateError::Form),
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RateError::Form);
        }
        let n: u32 = n.parse().map_err(|_| RateError::TooLarge)?;
        let count = NonZeroU32::new(n).ok_or(RateError::Zero)?;
        Ok(RateLimit {
            count,
            per,
            burst: count,
        })
    }

    fn quota(&self) -> Quota {
        let quota = match self.per {
            Per::Second => Quota::per_second(self.count),
            Per::Minute => Quota::per_minute(self.count),
            Per::Hour => Quota::per_hour(self.count),
        };
        quota.allow_burst(self.burst)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} per organization, burst {}",
            self.count,
            self.per.suffix(),
            self.burst
        )
    }
}

/// One route's limiter.
pub struct RouteLimiter {
    limit: RateLimit,
    /// Keyed by organization; `None` is every token without one.
    buckets: DefaultKeyedRateLimiter<Option<String>>,
    refused: IntCounter,
}

impl RouteLimiter {
    fn new(limit: RateLimit, refused: IntCounter) -> RouteLimiter {
        RouteLimiter {
            limit,
            buckets: RateLimiter::keyed(limit.quota()),
            refused,
        }
    }

    /// Takes one request from `organization`'s bucket, or says how long
    /// until one would pass.
    fn check(&self, organization: &Option<String>) -> Result<(), GateError> {
        match self.buckets.check_key(organization) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                self.refused.inc();
                Err(GateError::RateLimited {
                    retry_after: retry_after_secs(not_until.wait_time_from(Instant::now())),
                })
            }
        }
    }

    /// Drops organizations whose bucket has refilled, and gives the memory back.
    fn sweep(&self) {
        let before = self.buckets.len();
        self.buckets.retain_recent();
        if self.buckets.len() < before {
            self.buckets.shrink_to_fit();
        }
    }
}

/// `Retry-After` is whole seconds: rounded up (an early retry would only
/// be refused again), and never 0.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The limiters of one configuration, by route name.
pub struct RateLimits {
    routes: HashMap<String, Arc<RouteLimiter>>,
    _sweeper: Option<Sweeper>,
}

impl RateLimits {
    /// Limiters for `routes` (name and limit of each route that has one).
    /// A route whose name and limit are the same in `previous` keeps its
    /// limiter, so a reload does not hand every organization a fresh
    /// budget. Idle organizations are dropped every `sweep_every` (when a
    /// runtime is there to do it).
    pub fn build<'a>(
        routes: impl IntoIterator<Item = (&'a str, RateLimit)>,
        previous: Option<&RateLimits>,
        metrics: &Metrics,
        sweep_every: Duration,
    ) -> RateLimits {
        let mut limiters = HashMap::new();
        for (name, limit) in routes {
            let kept = previous
                .and_then(|p| p.routes.get(name))
                .filter(|old| old.limit == limit);
            let limiter = match kept {
                Some(old) => old.clone(),
                None => Arc::new(RouteLimiter::new(
                    limit,
                    metrics.rate_limited.with_label_values(&[name]),
                )),
            };
            limiters.insert(name.to_string(), limiter);
        }
        let sweeper = (!limiters.is_empty())
            .then(|| Sweeper::spawn(limiters.values().map(Arc::downgrade).collect(), sweep_every))
            .flatten();
        RateLimits {
            routes: limiters,
            _sweeper: sweeper,
        }
    }

    /// Takes one request of `organization` on `route`: 429 when its bucket
    /// is empty. A route without a limit always passes.
    pub fn check(&self, route: &str, organization: &Option<String>) -> Result<(), GateError> {
        match self.routes.get(route) {
            Some(limiter) => limiter.check(organization),
            None => Ok(()),
        }
    }

    /// The limit of `route`, if it has one.
    pub fn limit(&self, route: &str) -> Option<RateLimit> {
        self.routes.get(route).map(|l| l.limit)
    }

    /// How many organizations `route`'s limiter tracks now.
    pub fn tracked(&self, route: &str) -> usize {
        self.routes.get(route).map_or(0, |l| l.buckets.len())
    }

    /// Drops idle organizations now (the periodic task does it anyway).
    pub fn sweep(&self) {
        for limiter in self.routes.values() {
            limiter.sweep();
        }
    }

    /// Whether `self` and `other` share `route`'s limiter (its state).
    pub fn shares(&self, other: &RateLimits, route: &str) -> bool {
        match (self.routes.get(route), other.routes.get(route)) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// The periodic sweep. It holds the limiters weakly and stops with the
/// snapshot that owns it; a limiter carried over to the next snapshot is
/// swept by that snapshot's task.
struct Sweeper(tokio::task::JoinHandle<()>);

impl Sweeper {
    fn spawn(limiters: Vec<Weak<RouteLimiter>>, every: Duration) -> Option<Sweeper> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(Sweeper(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                for limiter in limiters.iter().filter_map(Weak::upgrade) {
                    limiter.sweep();
                }
            }
        })))
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: &str, burst: u32) -> RateLimit {
        RateLimit {
            burst: NonZeroU32::new(burst).unwrap(),
            ..RateLimit::parse(rate).unwrap()
        }
    }

    fn limiter(rate: &str, burst: u32) -> RouteLimiter {
        let metrics = Metrics::new(false).unwrap();
        RouteLimiter::new(
            limit(rate, burst),
            metrics.rate_limited.with_label_values(&["r"]),
        )
    }

    #[test]
    fn rates_parse_with_their_unit() {
        let r = RateLimit::parse("100/s").unwrap();
        assert_eq!(
            (r.count.get(), r.per, r.burst.get()),
            (100, Per::Second, 100)
        );
        assert_eq!(RateLimit::parse("5/m").unwrap().per, Per::Minute);
        assert_eq!(RateLimit::parse("1/h").unwrap().per, Per::Hour);
        for bad in [
            "100/x", "100", "/s", "-1/s", "1.5/s", "100/ s", "ten/s", "100/S",
        ] {
            assert_eq!(RateLimit::parse(bad), Err(RateError::Form), "{bad}");
        }
        assert_eq!(RateLimit::parse("0/s"), Err(RateError::Zero));
        assert_eq!(RateLimit::parse("5000000000/s"), Err(RateError::TooLarge));
    }

    #[test]
    fn a_burst_passes_then_the_bucket_refuses_with_a_whole_second_wait() {
        let l = limiter("1/m", 3);
        let org = Some("org_a".to_string());
        for _ in 0..3 {
            assert_eq!(l.check(&org), Ok(()));
        }
        match l.check(&org) {
            Err(GateError::RateLimited { retry_after }) => {
                assert!((59..=60).contains(&retry_after), "{retry_after}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.refused.get(), 1);
        // Another organization, and tokens without one, have buckets of their own.
        assert_eq!(l.check(&Some("org_b".into())), Ok(()));
        assert_eq!(l.check(&None), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3600)), 3600);
    }

    #[tokio::test]
    async fn the_periodic_sweep_forgets_idle_organizations() {
        let metrics = Metrics::new(false).unwrap();
        let limits = RateLimits::build(
            [("r", limit("1000/s", 1))],
            None,
            &metrics,
            Duration::from_millis(20),
        );
        for i in 0..10_000 {
            assert_eq!(limits.check("r", &Some(format!("org_{i}"))), Ok(()));
        }
        assert_eq!(limits.tracked("r"), 10_000);
        // Each bucket is full again after 1 ms; the task notices within a tick.
        let deadline = Instant::now() + Duration::from_secs(5);
        while limits.tracked("r") > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(limits.tracked("r"), 0);
    }

    #[test]
    fn a_reload_keeps_a_limiter_only_when_its_limit_is_unchanged() {
        let metrics = Metrics::new(false).unwrap();
        let every = Duration::from_secs(3600);
        let old = RateLimits::build(
            [("a", limit("1/m", 1)), ("b", limit("1/m", 1))],
            None,
            &metrics,
            every,
        );
        let new = RateLimits::build(
            [("a", limit("1/m", 1)), ("b", limit("1/m", 2))],
            Some(&old),
            &metrics,
            every,
        );
        assert!(new.shares(&old, "a"));
        assert!(!new.shares(&old, "b"));
        assert_eq!(new.limit("b"), Some(limit("1/m", 2)));
        assert_eq!(new.limit("c"), None);
    }
}
