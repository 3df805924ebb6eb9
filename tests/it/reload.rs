//! Hot reload over real sockets: file changes (written the way Kubernetes
//! updates a mounted ConfigMap) and explicit reloads swap the whole
//! configuration at once, bad files never replace a good one, and what a
//! reload does not change (keys, verdicts, refresh tasks) is kept.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;

use crate::support::*;

/// A directory laid out like a mounted ConfigMap: `config.yaml` is a
/// symlink into `..data/`, and `..data` a symlink to a versioned directory
/// that each update replaces with one atomic rename.
struct ConfigMapDir {
    root: TempDir,
    version: usize,
}

impl ConfigMapDir {
    fn new(text: &str) -> ConfigMapDir {
        let mut dir = ConfigMapDir {
            root: TempDir::new("reload"),
            version: 0,
        };
        dir.update(text);
        std::os::unix::fs::symlink("..data/config.yaml", dir.path()).unwrap();
        dir
    }

    fn path(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    /// What the kubelet does: write a new version directory, point a
    /// temporary symlink at it, rename that over `..data`, drop the old one.
    fn update(&mut self, text: &str) {
        self.version += 1;
        let name = format!("..2026_11_29_v{}", self.version);
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.yaml"), text).unwrap();
        let tmp = self.root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        if self.version > 1 {
            let old = self
                .root
                .join(&format!("..2026_11_29_v{}", self.version - 1));
            let _ = std::fs::remove_dir_all(old);
        }
    }
}

/// A config whose every response says which generation served it: the
/// upstream base path and the identity header name both carry `generation`.
fn generation_config(jwks: &JwksServer, echo: &Echo, generation: &str) -> String {
    generation_config_at(&jwks.jwks_url(), jwks, echo, generation)
}

/// [`generation_config`] with the provider's keys at `jwks_url`.
fn generation_config_at(
    jwks_url: &str,
    jwks: &JwksServer,
    echo: &Echo,
    generation: &str,
) -> String {
    with_loopback_listeners(&format!(
        r#"idp:
  issuer: "{issuer}"
  jwksEndpoint: "{jwks_url}"
  audiences: ["{AUDIENCE}"]
upstreams:
  echo:
    url: "{echo}/{generation}"
routes:
  - name: api-{generation}
    match: {{ pathPrefix: /api }}
    upstream: echo
forwarding:
  identityHeaders:
    user: X-User-{generation}
"#,
        issuer = jwks.issuer(),
        echo = echo.url(),
    ))
}

async fn reloads(gate: &Gate) -> (f64, f64) {
    let text = gate.metrics_text().await;
    (
        metric_value(&text, "idp_gate_config_reloads_total", &[("result", "ok")]),
        metric_value(
            &text,
            "idp_gate_config_reloads_total",
            &[("result", "error")],
        ),
    )
}

/// Waits until the reload counters reach `ok` and `error`.
async fn wait_reloads(gate: &Gate, ok: f64, error: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = reloads(gate).await;
        if now == (ok, error) {
            return;
        }
        assert!(
            now.0 <= ok && now.1 <= error,
            "more reloads than expected: {now:?}, wanted ({ok}, {error})"
        );
        assert!(
            Instant::now() < deadline,
            "reloads {now:?}, wanted ({ok}, {error})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const BAD_FILES: [&str; 3] = [
    "listen: [unclosed\n",
    "idp: { issuer: \"https://x/\", audiences: [a] }\nupstreams: {}\nroutes:\n  - { name: r, match: { pathPrefix: / }, upstream: nowhere }\n",
    "bogusKey: 1\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_under_load_drop_nothing_and_never_mix() {
    let _load = heavy().await;
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let mut dir = ConfigMapDir::new(&generation_config(&jwks, &echo, "g0"));
    let gate = Arc::new(Gate::start_file(&dir.path()).await);
    gate.wait_ready(Duration::from_secs(10)).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gate, token, stop, served) =
            (gate.clone(), token.clone(), stop.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let r = gate.get("/api/x", Some(&token)).await;
                assert_eq!(
                    r.status,
                    200,
                    "a request failed during reloads: {}",
                    r.text()
                );
                let body = r.json();
                let path = body["path"].as_str().unwrap_or_default().to_string();
                let generation = path
                    .trim_start_matches('/')
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                // The identity header of the same generation, and no other.
                let headers = body["headers"].as_object().cloned().unwrap_or_default();
                let user_headers: Vec<&String> = headers
                    .keys()
                    .filter(|k| k.starts_with("x-user-"))
                    .collect();
                assert_eq!(
                    user_headers,
                    [&format!("x-user-{generation}")],
                    "a response mixed two configurations: {body}"
                );
                seen.insert(generation);
                served.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }

    let (mut ok, mut error) = (0.0, 0.0);
    let mut good = 0;
    for i in 0..100 {
        if i % 2 == 0 {
            good += 1;
            dir.update(&generation_config(&jwks, &echo, &format!("g{good}")));
            ok += 1.0;
        } else {
            dir.update(BAD_FILES[i % BAD_FILES.len()]);
            error += 1.0;
        }
        wait_reloads(&gate, ok, error).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut generations = std::collections::BTreeSet::new();
    for c in clients {
        generations.extend(c.await.expect("no client task failed"));
    }
    assert!(served.load(Ordering::Relaxed) > 200, "too little load");
    assert!(
        generations.len() > 10,
        "load did not span the reloads: {generations:?}"
    );
    // The last good file is what serves now, and it is ready.
    let r = gate.expect_ok("/api/x", &token).await;
    assert_eq!(r.json()["path"], format!("/g{good}/api/x"));
    assert_eq!(gate.readyz().await.status, 200);
    assert!(
        gate.metric("idp_gate_config_last_reload_success_timestamp_seconds", &[])
            .await
            > 1.7e9
    );
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_configuration() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let mut dir = ConfigMapDir::new(&generation_config(&jwks, &echo, "g0"));
    let gate = Gate::start_file(&dir.path()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let before = gate
        .metric("idp_gate_config_last_reload_success_timestamp_seconds", &[])
        .await;
    dir.update(BAD_FILES[1]);
    wait_reloads(&gate, 0.0, 1.0).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    let r = gate.expect_ok("/api/x", &token).await;
    assert_eq!(r.json()["path"], "/g0/api/x");
    gate.assert_metric(
        "idp_gate_config_last_reload_success_timestamp_seconds",
        &[],
        before,
    )
    .await;
    // The same bad bytes again are not another attempt; a fix is.
    dir.update(BAD_FILES[1]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(reloads(&gate).await, (0.0, 1.0));
    dir.update(&generation_config(&jwks, &echo, "g1"));
    wait_reloads(&gate, 1.0, 1.0).await;
    assert_eq!(
        gate.expect_ok("/api/x", &token).await.json()["path"],
        "/g1/api/x"
    );
}

#[tokio::test]
async fn unchanged_providers_keep_their_keys_and_verdicts_and_removed_ones_stop() {
    let _load = timed().await;
    let ring_a = ring(Algorithm::RS256);
    let jwks_a = JwksServer::with_ring(ring_a.clone()).await;
    let ring_b = ring(Algorithm::RS256);
    let jwks_b = JwksServer::with_ring(ring_b.clone()).await;
    let echo = Echo::start().await;
    let two = |route: &str, with_b: bool| {
        let b = if with_b {
            format!(
                "  - name: b\n    issuer: \"{}\"\n    jwksEndpoint: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n    jwks: {{ refreshSeconds: 1 }}\n",
                jwks_b.issuer(),
                jwks_b.jwks_url()
            )
        } else {
            String::new()
        };
        with_loopback_listeners(&format!(
            "idps:\n  - name: a\n    issuer: \"{}\"\n    jwksEndpoint: \"{}\"\n    audiences: [\"{AUDIENCE}\"]\n{b}upstreams:\n  echo:\n    url: \"{}\"\nroutes:\n  - name: {route}\n    match: {{ pathPrefix: /api }}\n    upstream: echo\n",
            jwks_a.issuer(),
            jwks_a.jwks_url(),
            echo.url()
        ))
    };
    let mut dir = ConfigMapDir::new(&two("first", true));
    let gate = Gate::start_file(&dir.path()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    let token = sign(&ring_a.active(), &claims(&jwks_a.issuer(), "org_abc", &[]));
    gate.expect_ok("/api/x", &token).await;
    let fetches_a = jwks_a.fetches();
    let hits = gate.metric("idp_gate_token_cache_hits_total", &[]).await;

    // A route change: provider `a` is the same, so nothing of it restarts.
    dir.update(&two("second", true));
    wait_reloads(&gate, 1.0, 0.0).await;
    gate.expect_ok("/api/x", &token).await;
    gate.assert_metric("idp_gate_requests_total", &[("route", "second")], 1.0)
        .await;
    assert_eq!(
        jwks_a.fetches(),
        fetches_a,
        "provider a's keys were fetched again"
    );
    // The verified-token cache is kept: the same token is one more hit.
    gate.assert_metric("idp_gate_token_cache_hits_total", &[], hits + 1.0)
        .await;

    // Provider `b` refreshes every second; once removed, it stops.
    assert!(jwks_b.wait_fetches(2, Duration::from_secs(5)).await);
    dir.update(&two("third", false));
    wait_reloads(&gate, 2.0, 0.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = jwks_b.fetches();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        jwks_b.fetches(),
        after,
        "a removed provider's refresh task still runs"
    );
    let token_b = sign(&ring_b.active(), &claims(&jwks_b.issuer(), "org_abc", &[]));
    assert_eq!(gate.get("/api/x", Some(&token_b)).await.status, 401);
}

#[tokio::test]
async fn a_reload_never_makes_a_ready_gateway_unready() {
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::with_ring(ring.clone()).await;
    let echo = Echo::start().await;
    let mut dir = ConfigMapDir::new(&generation_config(&jwks, &echo, "g0"));
    let gate = Gate::start_file(&dir.path()).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    // A new provider whose keys cannot be fetched.
    let dead = dead_addr().await;
    let dead_keys = format!("http://{dead}/jwks.json");
    dir.update(&generation_config_at(&dead_keys, &jwks, &echo, "g1"));
    let started = Instant::now();
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    // Meanwhile, and after the reload gives up, the old config serves.
    while reloads(&gate).await != (0.0, 1.0) {
        assert_eq!(gate.readyz().await.status, 200);
        assert_eq!(
            gate.expect_ok("/api/x", &token).await.json()["path"],
            "/g0/api/x"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "reload never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gate.readyz().await.status, 200);
    assert_eq!(
        gate.expect_ok("/api/x", &token).await.json()["path"],
        "/g0/api/x"
    );
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_configuration_they_started_with() {
    let slow = SlowUpstream::start(Duration::from_millis(1500)).await;
    let echo = Echo::start().await;
    let text = |upstream: &str| {
        with_loopback_listeners(&format!(
            "upstreams:\n  u:\n    url: \"{upstream}\"\nroutes:\n  - {{ name: r, match: {{ pathPrefix: / }}, auth: none, upstream: u }}\n"
        ))
    };
    let mut dir = ConfigMapDir::new(&text(&slow.url()));
    let gate = Arc::new(Gate::start_file(&dir.path()).await);
    let g = gate.clone();
    let inflight = tokio::spawn(async move { g.get("/slow", None).await });
    slow.arrived("/slow").await;
    dir.update(&text(&echo.url()));
    wait_reloads(&gate, 1.0, 0.0).await;
    // New requests go to the new upstream at once…
    assert!(gate.get("/fast", None).await.json()["path"] == "/fast");
    // …while the old one still finishes where it started.
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow");
}

#[tokio::test]
async fn tls_certificates_are_reloaded_when_their_files_change() {
    let dir = TempDir::new("tls-reload");
    let first = SelfSigned::new();
    let (cert_file, key_file) = first.write(&dir);
    let echo = Echo::start().await;
    let config = dir.write(
        "gate.yaml",
        with_loopback_listeners(&format!(
            "tls: {{ certFile: \"{}\", keyFile: \"{}\" }}\nupstreams:\n  u:\n    url: \"{}\"\nroutes:\n  - {{ name: r, match: {{ pathPrefix: / }}, auth: none, upstream: u }}\n",
            cert_file.display(),
            key_file.display(),
            echo.url()
        )),
    );
    let gate = Gate::start_file(&config).await;
    assert_eq!(served_certificate(gate.proxy).await, first.der());
    let second = SelfSigned::new();
    second.write(&dir);
    wait_reloads(&gate, 1.0, 0.0).await;
    assert_eq!(served_certificate(gate.proxy).await, second.der());
}

/// Polls `GET path` until it answers `status`; the last answer otherwise.
async fn wait_status(gate: &Gate, path: &str, token: Option<&str>, status: u16) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gate.get(path, token).await;
        if r.status == status || Instant::now() >= deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_changed_upstream_ca_bundle_is_trusted_without_a_restart() {
    let (ca1, ca2) = (TestCa::new("CA-1"), TestCa::new("CA-2"));
    let upstream = HttpsHello::start(ca2.acceptor()).await;
    // The bundle in a directory of its own: the config's is not enough.
    let (config_dir, ca_dir) = (
        TempDir::new("ca-reload-config"),
        TempDir::new("ca-reload-ca"),
    );
    let ca_file = ca_dir.write("ca.pem", &ca1.pem);
    let config = config_dir.write(
        "gate.yaml",
        with_loopback_listeners(&format!(
            "upstreams:\n  tls: {{ url: \"{}\", caFile: \"{}\" }}\nroutes:\n  - {{ name: r, match: {{ pathPrefix: / }}, auth: none, upstream: tls }}\n",
            upstream.url(),
            ca_file.display(),
        )),
    );
    let gate = Gate::start_file(&config).await;
    gate.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(gate.get("/x", None).await.status, 502);

    // Renamed over, as Kubernetes does: CA-2 is trusted, no signal needed.
    ca_dir.replace("ca.pem", &ca2.pem);
    let r = wait_status(&gate, "/x", None, 200).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "tls-ok");
    wait_reloads(&gate, 1.0, 0.0).await;

    // Written in place, back to CA-1: new connections are refused again.
    ca_dir.write("ca.pem", &ca1.pem);
    let r = wait_status(&gate, "/x", None, 502).await;
    assert_eq!(r.status, 502, "{}", r.text());
    wait_reloads(&gate, 2.0, 0.0).await;
    ca_dir.write("ca.pem", &ca2.pem);
    assert_eq!(wait_status(&gate, "/x", None, 200).await.status, 200);
    wait_reloads(&gate, 3.0, 0.0).await;
}

#[tokio::test]
async fn a_changed_idp_ca_bundle_is_trusted_without_a_restart() {
    let (ca1, ca2) = (TestCa::new("CA-1"), TestCa::new("CA-2"));
    let ring = ring(Algorithm::RS256);
    let jwks = JwksServer::start_tls(JwksSource::Ring(ring.clone()), ca2.acceptor()).await;
    let echo = Echo::start().await;
    let (config_dir, ca_dir) = (TempDir::new("idp-ca-config"), TempDir::new("idp-ca-ca"));
    let ca_file = ca_dir.write("ca.pem", &ca1.pem);
    let config = config_dir.write(
        "gate.yaml",
        with_loopback_listeners(&config(
            &jwks,
            &echo,
            &format!("  caFile: \"{}\"", ca_file.display()),
            DEFAULT_ROUTES,
        )),
    );
    let gate = Gate::start_file(&config).await;
    let token = sign(&ring.active(), &claims(&jwks.issuer(), "org_abc", &[]));
    // CA-1 does not vouch for the JWKS server: no keys, fail closed.
    let r = gate.get("/api/x", Some(&token)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(gate.readyz().await.status, 503);

    ca_dir.replace("ca.pem", &ca2.pem);
    let r = wait_status(&gate, "/api/x", Some(&token), 200).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(gate.readyz().await.status, 200);
    wait_reloads(&gate, 1.0, 0.0).await;
    assert!(jwks.fetches() >= 1);
}

/// The leaf certificate the gateway presents to a new connection.
async fn served_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

// ------------------------------------------------------------ the binary

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_never_ends_the_process() {
    let echo = Echo::start().await;
    // Slow keys keep the gateway starting (not ready) for a while.
    let jwks = JwksServer::with_ring(ring(Algorithm::RS256)).await;
    jwks.set_delay(Duration::from_millis(1500));
    let text = |route: &str, extra: &str| {
        with_loopback_listeners(&format!(
            "idp: {{ issuer: \"{}\", jwksEndpoint: \"{}\", audiences: [a] }}\nupstreams:\n  u:\n    url: \"{}\"\nroutes:\n  - {{ name: {route}, match: {{ pathPrefix: / }}, auth: none, upstream: u }}\n{extra}",
            jwks.issuer(),
            jwks.jwks_url(),
            echo.url()
        ))
    };
    let mut starting = GateProcess::config(&text("first", "")).spawn();
    // During start-up: as soon as the process says it is starting, long
    // before its keys are loaded.
    starting
        .proc
        .wait_for("a start-up line", Duration::from_secs(10), |l| {
            l.contains("starting").then_some(())
        })
        .await;
    starting.proc.signal("-HUP");
    let mut gate = starting.listening().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    jwks.set_delay(Duration::ZERO);
    while fetch(&gate.admin_url("/readyz"), &[])
        .await
        .map(|r| r.status)
        != Ok(http::StatusCode::OK)
    {
        assert!(
            gate.proc.exited().is_none(),
            "SIGHUP during start-up ended the process\n{}",
            gate.proc.output()
        );
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = |text: &str, result: &str| {
        metric_value(text, "idp_gate_config_reloads_total", &[("result", result)])
    };

    // A bad file: every problem logged with its path, the process lives on.
    gate.write_config(&text(
        "second",
        "organizationBinding: { header: \"bad header\" }\nbogusKey: 1\n",
    ));
    let errors_before = count(&gate.metrics_text().await, "error");
    gate.proc.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&gate.metrics_text().await, "error") <= errors_before {
        assert!(Instant::now() < deadline, "the bad reload was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gate.proc.exited().is_none(),
        "a bad reload ended the process\n{}",
        gate.proc.output()
    );
    assert_eq!(gate.get("/x", None).await.status, 200);
    let logs = gate.logs().join("\n");
    for path in ["bogusKey", "organizationBinding.header"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("config problem") && l.contains(path)),
            "{path} not logged:\n{logs}"
        );
    }

    // Two SIGHUPs in quick succession on a good file.
    gate.write_config(&text("third", ""));
    gate.proc.signal("-HUP");
    gate.proc.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = fetch(&gate.url("/x"), &[]).await;
        if gate
            .metric("idp_gate_requests_total", &[("route", "third")])
            .await
            >= 1.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the good reload never took effect:\n{}",
            gate.proc.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gate.proc.assert_running();
    let (status, _) = gate.proc.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
}
