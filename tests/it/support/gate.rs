//! The gateway in-process (`app::start` on loopback ports), what a test
//! asks of any running gateway, and the simplest world around one.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, StatusCode, header};
use idp_gate::app::{self, Running};
use idp_gate::config::Config;
use idp_gate::demo::keys::KeyRing;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::{
    AUDIENCE, Echo, HttpClient, JwksServer, ReqBody, Resp, claims, client, empty, metric_value,
    ring, send, sign,
};

/// Parses config text the way the binary does (no environment variables).
pub fn parse_config(text: &str) -> Config {
    match Config::from_yaml(text, Path::new("test.yaml"), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e}\n{text}"),
    }
}

/// `yaml` (YAML or JSON) with `listen` and `admin.listen` on
/// `127.0.0.1:0` and `shutdownGraceSeconds: 1`, unless it gives them.
pub fn with_loopback_listeners(yaml: &str) -> String {
    let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).expect("test YAML");
    let map = v.as_mapping_mut().expect("a YAML mapping");
    let key = |s: &str| serde_yaml::Value::String(s.into());
    if !map.contains_key(key("listen")) {
        map.insert(key("listen"), key("127.0.0.1:0"));
    }
    if !map.contains_key(key("shutdownGraceSeconds")) {
        map.insert(key("shutdownGraceSeconds"), serde_yaml::Value::from(1));
    }
    if !map.contains_key(key("admin")) {
        let mut admin = serde_yaml::Mapping::new();
        admin.insert(key("listen"), key("127.0.0.1:0"));
        map.insert(key("admin"), serde_yaml::Value::Mapping(admin));
    }
    serde_yaml::to_string(&v).unwrap()
}

/// Polls `cond` every 25 ms for at most `within`.
pub async fn poll_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- any gateway

/// The two listeners of a running gateway (in-process or a child process)
/// and a client for them: what a test asks of it.
pub struct Ends {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub client: HttpClient,
}

impl Ends {
    pub fn new(proxy: SocketAddr, admin: SocketAddr) -> Ends {
        Ends {
            proxy,
            admin,
            client: client(),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.proxy, path_and_query)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// GET on the proxy, with `Authorization: Bearer <token>` if given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = Request::get(self.url(path));
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(req.body(empty()).unwrap()).await
    }

    /// GET with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(empty()).unwrap()).await
    }

    pub async fn send(&self, req: Request<ReqBody>) -> Resp {
        send(&self.client, req).await
    }

    pub async fn admin_get(&self, path: &str) -> Resp {
        self.send(Request::get(self.admin_url(path)).body(empty()).unwrap())
            .await
    }

    pub async fn readyz(&self) -> Resp {
        self.admin_get("/readyz").await
    }

    /// Polls `/readyz` until 200; panics after `within`.
    pub async fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let r = self.readyz().await;
            if r.status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {within:?}: {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn metrics_text(&self) -> String {
        let r = self.admin_get("/metrics").await;
        assert_eq!(r.status, StatusCode::OK);
        r.text()
    }

    /// Sum of the series of `name` whose labels include `labels` (0 if none).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }

    /// Asserts that the series of `name` whose labels include `labels`
    /// sum to `want`.
    pub async fn assert_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let got = self.metric(name, labels).await;
        assert_eq!(got, want, "{name} with {labels:?}");
    }

    pub async fn auth_failures(&self, reason: &str) -> f64 {
        self.metric("idp_gate_auth_failures_total", &[("reason", reason)])
            .await
    }

    /// Sends `req` and asserts a refusal by the gateway: `status`, the JSON
    /// `error_description` equal to `reason`, `WWW-Authenticate` as the
    /// contract says, the token (if any) never echoed, and
    /// `auth_failures_total{reason}` up by one.
    pub async fn expect_refusal(
        &self,
        req: Request<ReqBody>,
        status: u16,
        reason: &str,
        token: Option<&str>,
    ) -> Resp {
        let before = self.auth_failures(reason).await;
        let r = self.send(req).await;
        assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
        let body = r.json();
        assert_eq!(body["error_description"], reason, "body: {body}");
        assert!(body["request_id"].is_string(), "body: {body}");
        assert_eq!(
            r.header("x-request-id").as_deref(),
            body["request_id"].as_str()
        );
        let www = r.header("www-authenticate");
        match status {
            401 if reason == "missing_token" => {
                assert_eq!(www.as_deref(), Some(r#"Bearer realm="idp-gate""#));
            }
            401 => {
                let www = www.expect("WWW-Authenticate on 401");
                assert!(www.starts_with("Bearer realm=\"idp-gate\""), "{www}");
                assert!(www.contains(r#"error="invalid_token""#), "{www}");
                assert!(
                    www.contains(&format!(r#"error_description="{reason}""#)),
                    "{www}"
                );
            }
            403 => {
                let www = www.expect("WWW-Authenticate on 403");
                assert!(www.starts_with("Bearer "), "{www}");
                assert!(www.contains(r#"error="insufficient_scope""#), "{www}");
            }
            503 => {
                assert!(r.header("retry-after").is_some(), "503 without Retry-After");
            }
            _ => {}
        }
        if let Some(t) = token {
            r.assert_not_echoed(t);
            // Not even the signature part alone.
            if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() > 16) {
                r.assert_not_echoed(sig);
            }
        }
        let after = self.auth_failures(reason).await;
        assert_eq!(
            after,
            before + 1.0,
            "auth_failures_total{{reason=\"{reason}\"}} did not move by one"
        );
        r
    }

    /// `GET path` with a bearer token, expecting a refusal (see [`Gate::expect_refusal`]).
    pub async fn expect_token_refused(
        &self,
        path: &str,
        token: &str,
        status: u16,
        reason: &str,
    ) -> Resp {
        let req = Request::get(self.url(path))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(empty())
            .unwrap();
        self.expect_refusal(req, status, reason, Some(token)).await
    }

    /// `GET path` with a bearer token, expecting the echo upstream's 200.
    pub async fn expect_ok(&self, path: &str, token: &str) -> Resp {
        let r = self.get(path, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK, "body: {}", r.text());
        r
    }
}

// ---------------------------------------------------------------- in-process

/// The real gateway, started with `app::start` on loopback ports.
pub struct Gate {
    ends: Ends,
    running: Option<Running>,
}

impl Deref for Gate {
    type Target = Ends;

    fn deref(&self) -> &Ends {
        &self.ends
    }
}

impl Gate {
    /// Starts a gateway with `yaml` (YAML or JSON), filled in by
    /// [`with_loopback_listeners`].
    pub async fn start(yaml: &str) -> Gate {
        let config = parse_config(&with_loopback_listeners(yaml));
        Gate::new(app::start(config).await.expect("gateway starts"))
    }

    /// Starts a gateway serving the config file at `path` and watching it
    /// for changes, as `idp-gate run` does (no SIGHUP handler).
    pub async fn start_file(path: &Path) -> Gate {
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}"),
        };
        let running = app::start_watching(config, path.to_path_buf(), None)
            .await
            .expect("gateway starts");
        Gate::new(running)
    }

    fn new(running: Running) -> Gate {
        Gate {
            ends: Ends::new(running.proxy_addr, running.admin_addr),
            running: Some(running),
        }
    }

    /// Starts and waits until `/readyz` answers 200.
    pub async fn start_ready(yaml: &str) -> Gate {
        let gate = Gate::start(yaml).await;
        gate.wait_ready(Duration::from_secs(15)).await;
        gate
    }

    /// What `app::start` returned.
    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Drains and waits for the servers to stop.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            tokio::time::timeout(Duration::from_secs(15), r.wait())
                .await
                .expect("gateway stops");
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(r) = &self.running {
            r.shutdown();
        }
    }
}

// ---------------------------------------------------------------- configs

/// A config with one provider (`jwks`' issuer and JWKS URL), one echo
/// upstream `echo` and the given routes (YAML list items, indented by 2).
/// `idp_extra` lines are added under `idp:` (indented by 2).
pub fn config(jwks: &JwksServer, echo: &Echo, idp_extra: &str, rest: &str) -> String {
    format!(
        r#"idp:
  issuer: "{issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
{idp_extra}
upstreams:
  echo:
    url: "{echo}"
{rest}
"#,
        issuer = jwks.issuer(),
        jwks_url = jwks.jwks_url(),
        echo = echo.url(),
    )
}

/// The simplest world: an RS256 ring, its JWKS server, an echo upstream and
/// a gateway with a protected `/api` route and a public `/public` route.
pub struct World {
    pub ring: Arc<KeyRing>,
    pub jwks: JwksServer,
    _echo: Echo,
    pub gate: Gate,
}

pub const DEFAULT_ROUTES: &str = r#"routes:
  - name: public
    match: { pathPrefix: /public }
    auth: none
    upstream: echo
  - name: api
    match: { pathPrefix: /api }
    upstream: echo
"#;

impl World {
    /// `idp_extra` goes under `idp:`, `rest` after `upstreams:` (routes etc.).
    pub async fn start(alg: Algorithm, idp_extra: &str, rest: &str) -> World {
        let ring = ring(alg);
        let jwks = JwksServer::with_ring(ring.clone()).await;
        let echo = Echo::start().await;
        let gate = Gate::start_ready(&config(&jwks, &echo, idp_extra, rest)).await;
        World {
            ring,
            jwks,
            _echo: echo,
            gate,
        }
    }

    pub async fn default() -> World {
        World::start(Algorithm::RS256, "", DEFAULT_ROUTES).await
    }

    pub fn issuer(&self) -> String {
        self.jwks.issuer()
    }

    /// A valid token for `org` with `scopes`, signed by the ring's active key.
    pub fn token(&self, org: &str, scopes: &[&str]) -> String {
        sign(&self.ring.active(), &claims(&self.issuer(), org, scopes))
    }

    pub fn claims(&self, org: &str, scopes: &[&str]) -> Value {
        claims(&self.issuer(), org, scopes)
    }

    pub fn sign(&self, claims: &Value) -> String {
        sign(&self.ring.active(), claims)
    }
}
