//! Only the verified credential goes upstream, over real sockets: a token
//! source that carries a credential twice, or two sources that each carry
//! one, is refused before anything reaches the upstream; the query
//! parameter, cookie or header that carried the token is not forwarded;
//! `;` cannot smuggle another organization past the binding check; and
//! `explain` never prints a token that came in the query.
//!
//! The upstream sits behind a tap that keeps every byte the gateway sends
//! it, so "never reached the upstream" is checked on the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::support::*;
use http::{Method, Request, header};
use idp_gate::explain::{ExplainRequest, explain};
use jsonwebtoken::Algorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP relay in front of an upstream that keeps every byte sent to it.
struct Tap {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    _tasks: JoinSet<()>,
}

impl Tap {
    async fn start(upstream: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        let record = seen.clone();
        tasks.spawn(async move {
            // Relays live in this set, so dropping the tap closes them.
            let mut relays = JoinSet::new();
            while let Ok((down, _)) = listener.accept().await {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let record = record.clone();
                relays.spawn(async move {
                    let (mut down_r, mut down_w) = down.into_split();
                    let (mut up_r, mut up_w) = up.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
                    });
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = down_r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // Kept before it is passed on: once the answer is
                        // back, the whole request is in `seen`.
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if up_w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = up_w.shutdown().await;
                    back.abort();
                });
                while relays.try_join_next().is_some() {}
            }
        });
        Tap {
            addr,
            seen,
            _tasks: tasks,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything the upstream was sent so far.
    fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}

const SOURCES: &str = r#"  tokenSources:
    - header: Authorization
    - header: X-Api-Token
    - query: access_token
    - cookie: session
"#;

/// A gateway reading tokens from every kind of source, in front of the
/// echo upstream behind a tap.
struct Setup {
    ring: Arc<idp_gate::demo::keys::KeyRing>,
    jwks: JwksServer,
    tap: Tap,
    gate: Gate,
    yaml: String,
    _echo: Echo,
}

impl Setup {
    async fn start(forward_authorization: bool, extra: &str) -> Setup {
        let ring = ring(Algorithm::RS256);
        let jwks = JwksServer::with_ring(ring.clone()).await;
        let echo = Echo::start().await;
        let tap = Tap::start(echo.addr).await;
        let rest = format!(
            "{DEFAULT_ROUTES}forwarding:\n  forwardAuthorization: {forward_authorization}\n{extra}"
        );
        let yaml = config(&jwks, &echo, SOURCES, &rest).replace(&echo.url(), &tap.url());
        let gate = Gate::start_ready(&yaml).await;
        Setup {
            ring,
            jwks,
            tap,
            gate,
            yaml,
            _echo: echo,
        }
    }

    fn token(&self) -> String {
        sign(
            &self.ring.active(),
            &claims(&self.jwks.issuer(), "org_abc", &[]),
        )
    }

    /// A token for the same issuer and claims, signed by a key the
    /// provider never published.
    fn forged(&self) -> String {
        let other = ring(Algorithm::RS256);
        sign(
            &other.active(),
            &claims(&self.jwks.issuer(), "org_other", &[]),
        )
    }

    /// Sends `GET target` with `headers`, expecting the gateway's own 400
    /// `bad_request`, no token echoed, and not one byte sent upstream.
    async fn expect_refused(&self, target: &str, headers: &[(&str, &str)], tokens: &[&str]) {
        let before = self.tap.seen().len();
        let mut req = Request::get(self.gate.url(target));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = self.gate.send(req.body(empty()).unwrap()).await;
        assert_eq!(r.status, 400, "{target} {headers:?}: {}", r.text());
        assert_eq!(r.json()["error"], "bad_request", "{}", r.text());
        for t in tokens {
            r.assert_not_echoed(t);
        }
        assert_eq!(
            self.tap.seen().len(),
            before,
            "{target} {headers:?} reached the upstream"
        );
    }

    /// Sends `GET target` with `headers`, expecting the upstream's 200.
    async fn expect_forwarded(&self, target: &str, headers: &[(&str, &str)]) -> Resp {
        let r = self.gate.get_with(target, headers).await;
        assert_eq!(r.status, 200, "{target} {headers:?}: {}", r.text());
        r
    }
}

// ------------------------------------------------ one credential, one place

#[tokio::test]
async fn a_query_token_given_twice_is_refused_before_any_upstream() {
    let s = Setup::start(true, "").await;
    let (valid, forged) = (s.token(), s.forged());
    for target in [
        format!("/api/x?access_token={valid}&access_token={forged}"),
        format!("/api/x?access_token={forged}&access_token={valid}"),
        // Upstreams that also split on `;`, decode names, or ignore case
        // would read the second one.
        format!("/api/x?access_token={valid};access_token={forged}"),
        format!("/api/x?a=1;access_token={forged}&access_token={valid}"),
        format!("/api/x?access_token={valid}&access%5Ftoken={forged}"),
        format!("/api/x?access_token={valid}&Access_Token={forged}"),
        // Present counts, even empty.
        format!("/api/x?access_token={valid}&access_token="),
        format!("/api/x?access_token&access_token={valid}"),
    ] {
        s.expect_refused(&target, &[], &[&valid, &forged]).await;
    }
    assert!(!s.tap.seen().contains(&forged));
}

#[tokio::test]
async fn a_forged_cookie_beside_a_valid_authorization_is_refused() {
    let s = Setup::start(true, "").await;
    let (valid, forged) = (s.token(), s.forged());
    let bearer = format!("Bearer {valid}");
    for cookie in [
        format!("session={forged}"),
        format!("theme=dark; session={forged}"),
        // An empty one is a credential the upstream may still act on.
        "session=".to_string(),
    ] {
        s.expect_refused(
            "/api/x",
            &[("authorization", &bearer), ("cookie", &cookie)],
            &[&valid, &forged],
        )
        .await;
    }
    // Two sources of any kind.
    let query = format!("/api/x?access_token={forged}");
    s.expect_refused(&query, &[("authorization", &bearer)], &[&valid, &forged])
        .await;
    let cookie = format!("session={valid}");
    s.expect_refused(&query, &[("cookie", &cookie)], &[&valid, &forged])
        .await;
    s.expect_refused(
        "/api/x",
        &[("authorization", &bearer), ("x-api-token", &forged)],
        &[&valid, &forged],
    )
    .await;
    assert!(!s.tap.seen().contains(&forged));
    // A credential of another kind in a Bearer source is not a token:
    // the token in the cookie is the one verified and forwarded.
    let r = s
        .expect_forwarded(
            "/api/x",
            &[
                ("authorization", "Basic YWRtaW46YWRtaW4="),
                ("cookie", &cookie),
            ],
        )
        .await;
    r.assert_upstream(&[("authorization", &bearer)]);
    assert!(!s.tap.seen().contains("YWRtaW46YWRtaW4="));
}

#[tokio::test]
async fn a_token_cookie_or_header_given_twice_is_refused() {
    let s = Setup::start(true, "").await;
    let (valid, forged) = (s.token(), s.forged());
    for cookies in [
        vec![format!("session={valid}; session={forged}")],
        vec![format!("session={valid}"), format!("a=b; session={forged}")],
        vec![format!("session={valid}, session={forged}")],
        vec![format!("session={valid}; Session={forged}")],
        vec![format!("session={valid}; %73ession={forged}")],
    ] {
        let headers: Vec<(&str, &str)> = cookies.iter().map(|c| ("cookie", c.as_str())).collect();
        s.expect_refused("/api/x", &headers, &[&valid, &forged])
            .await;
    }
    s.expect_refused(
        "/api/x",
        &[("x-api-token", &valid), ("x-api-token", &forged)],
        &[&valid, &forged],
    )
    .await;
    assert!(!s.tap.seen().contains(&forged));
}

// ------------------------------------------------ what carried it stays here

#[tokio::test]
async fn the_query_token_is_removed_from_the_forwarded_query() {
    for forward in [false, true] {
        let s = Setup::start(forward, "").await;
        let token = s.token();
        for (target, forwarded) in [
            (
                format!("/api/x?a=1&access_token={token}&b=%2F+c;d&&e="),
                "/api/x?a=1&b=%2F+c;d&&e=".to_string(),
            ),
            (
                format!("/api/x?access_token={token}&z=%7E"),
                "/api/x?z=%7E".into(),
            ),
            (
                format!("/api/x?q=a;access_token={token}"),
                "/api/x?q=a".into(),
            ),
            (format!("/api/x?access%5Ftoken={token}"), "/api/x".into()),
        ] {
            let r = s.expect_forwarded(&target, &[]).await;
            assert_eq!(r.json()["path"], forwarded, "{target}");
            assert_eq!(
                r.upstream_header("authorization"),
                forward.then(|| format!("Bearer {token}")),
            );
        }
        if !forward {
            assert!(!s.tap.seen().contains(&token), "the token went upstream");
        }
        // Public routes do not touch credentials.
        let target = format!("/public/x?access_token={token}&access_token=b");
        let r = s.expect_forwarded(&target, &[]).await;
        assert_eq!(r.json()["path"], target);
    }
}

#[tokio::test]
async fn the_cookie_token_is_removed_from_the_forwarded_cookies() {
    for forward in [false, true] {
        let s = Setup::start(forward, "").await;
        let token = s.token();
        let alone = format!("session={token}");
        let between = format!("theme=dark; session={token}; lang=en");
        for (cookies, forwarded) in [
            (vec![between.as_str()], Some("theme=dark; lang=en")),
            (vec!["theme=dark", alone.as_str()], Some("theme=dark")),
            (vec![alone.as_str()], None),
        ] {
            let headers: Vec<(&str, &str)> = cookies.iter().map(|c| ("cookie", *c)).collect();
            let r = s.expect_forwarded("/api/x", &headers).await;
            assert_eq!(
                r.upstream_header("cookie").as_deref(),
                forwarded,
                "{cookies:?}"
            );
            assert_eq!(
                r.upstream_header("authorization"),
                forward.then(|| format!("Bearer {token}")),
            );
        }
        if !forward {
            assert!(!s.tap.seen().contains(&token), "the token went upstream");
        }
    }
}

#[tokio::test]
async fn a_header_token_is_removed_from_the_forwarded_headers() {
    for forward in [false, true] {
        let s = Setup::start(forward, "").await;
        let (token, forged) = (s.token(), s.forged());
        // The `_` spelling, which CGI and WSGI servers read as the same
        // header, is not a source and never goes upstream either.
        let r = s
            .expect_forwarded(
                "/api/x",
                &[("x-api-token", &token), ("x_api_token", &forged)],
            )
            .await;
        r.assert_not_upstream(&["x-api-token", "x_api_token"]);
        assert_eq!(
            r.upstream_header("authorization"),
            forward.then(|| format!("Bearer {token}")),
        );
        assert!(
            !s.tap.seen().contains(&forged),
            "the forged token went upstream"
        );
        if !forward {
            assert!(!s.tap.seen().contains(&token), "the token went upstream");
        }
    }
}

// ------------------------------------------------ organization binding

#[tokio::test]
async fn a_semicolon_cannot_smuggle_another_organization() {
    let binding = "organizations:\n  org_abc: { name: org1 }\n  org_xyz: { name: org2 }\norganizationBinding:\n  queryParam: organization\n";
    let s = Setup::start(true, binding).await;
    let bearer = format!("Bearer {}", s.token());
    for target in [
        "/api/x?a=1;organization=org2",
        "/api/x?organization=org1;organization=org2",
        "/api/x?organization=org1&a=1;organization=org_xyz",
    ] {
        let req = Request::get(s.gate.url(target))
            .header(header::AUTHORIZATION, &bearer)
            .body(empty())
            .unwrap();
        s.gate
            .expect_refusal(req, 403, "organization_mismatch", None)
            .await;
    }
    assert!(!s.tap.seen().contains("org2"));
    // The caller's own organization, by id or name, on either separator.
    for target in [
        "/api/x?a=1;organization=org1",
        "/api/x?organization=org_abc;a=2",
    ] {
        let r = s
            .expect_forwarded(target, &[("authorization", &bearer)])
            .await;
        assert_eq!(r.json()["path"], target);
    }
}

// ------------------------------------------------ explain

/// Every way a token could show in a report: whole, or its signature.
fn assert_no_token(report: &str, token: &str) {
    assert!(!report.contains(token), "the token is printed:\n{report}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !report.contains(signature),
        "the signature is printed:\n{report}"
    );
}

#[tokio::test]
async fn explain_shows_a_query_token_redacted_and_the_query_as_forwarded() {
    let s = Setup::start(true, "").await;
    let config = parse_config(&s.yaml);
    let token = s.token();
    let run = |path: String, token: Option<String>| {
        let config = config.clone();
        async move {
            explain(
                config,
                ExplainRequest {
                    token: token.as_deref(),
                    method: Method::GET,
                    path: &path,
                    host: None,
                },
            )
            .await
        }
    };

    let e = run(format!("/api/x?a=1&access_token={token}&b=2"), None).await;
    assert!(e.refusal.is_none(), "{}", e.report);
    assert_no_token(&e.report, &token);
    assert!(
        e.report.contains("a=1&access_token=[redacted]&b=2"),
        "{}",
        e.report
    );
    assert!(
        e.report.contains("path sent: /api/x?a=1&b=2\n"),
        "{}",
        e.report
    );

    // Encoded, `;`-separated, refused, public: never the token.
    for (path, given) in [
        (format!("/api/x?access%5Ftoken={token}"), None),
        (format!("/api/x?a=1;access_token={token}"), None),
        (format!("/api/x?access_token={token}"), Some(token.clone())),
        (format!("/public/x?access_token={token}"), None),
        (format!("/api/x?access_token={token}&access_token=x"), None),
        (format!("/api/x?other={token}"), Some(token.clone())),
    ] {
        let e = run(path.clone(), given).await;
        assert_no_token(&e.report, &token);
        assert!(e.report.contains("[redacted]"), "{path}:\n{}", e.report);
    }
}

#[tokio::test]
async fn the_explain_command_never_prints_a_query_token() {
    let s = Setup::start(true, "").await;
    let token = s.token();
    let dir = TempDir::new("cred");
    let file = dir.write("gate.yaml", &s.yaml);
    // Run from here, not blocking: it fetches the keys from this process.
    let mut explain = idp_gate(&["explain", "--config"]);
    explain
        .arg(&file)
        .args(["--method", "GET", "--path"])
        .arg(format!("/api/x?access_token={token}&keep=%2F"));
    let out = tokio::process::Command::from(explain)
        .output()
        .await
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success();
    assert!(ok, "{printed}");
    assert_no_token(&printed, &token);
    assert!(
        printed.contains("access_token=[redacted]&keep=%2F"),
        "{printed}"
    );
    assert!(
        printed.contains("path sent: /api/x?keep=%2F\n"),
        "{printed}"
    );
}
