//! Wiring: a validated [`Config`] becomes listening servers, background
//! JWKS refreshers and a shutdown sequence.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::fetch::Fetcher;
use crate::auth::jwks::Jwks;
use crate::auth::{CachingVerifier, Provider, Verifier};
use crate::config::Config;
use crate::gateway::{Gateway, Runtime};
use crate::metrics::Metrics;
use crate::proxy::Upstream;
use crate::{admin, server, tls};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Builds the request-time state of a config. JWKS are created empty (or
/// from their cache files); refreshers are the caller's to spawn.
pub fn build_runtime(
    config: Config,
    metrics: &Arc<Metrics>,
) -> Result<(Runtime, Vec<Arc<Jwks>>), StartError> {
    let mut providers = Vec::new();
    let mut jwks_list = Vec::new();
    for p in &config.providers {
        let fetcher = Fetcher::new(p.ca_file.as_deref())?;
        metrics.jwks_keys.with_label_values(&[&p.issuer]).set(0);
        let jwks = Arc::new(Jwks::new(p, fetcher, metrics.clone()));
        jwks_list.push(jwks.clone());
        providers.push(Provider::new(p.clone(), jwks));
    }
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| {
            for kind in ["connect", "reset", "timeout"] {
                metrics.upstream_errors.with_label_values(&[&u.name, kind]);
            }
            Upstream::new(u.clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    for r in &config.routes {
        metrics.request_duration.with_label_values(&[&r.name]);
    }
    let verifier = CachingVerifier::new(Verifier::new(providers), metrics.clone());
    Ok((
        Runtime {
            config,
            verifier,
            upstreams,
        },
        jwks_list,
    ))
}

/// A running gateway.
pub struct Running {
    /// Where the proxy listens.
    pub proxy_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The request handler (for readiness and draining).
    pub gateway: Arc<Gateway>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    refreshers: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts draining: not ready, no new connections, in-flight requests
    /// get `shutdownGraceSeconds` to finish.
    pub fn shutdown(&self) {
        self.gateway.drain();
        let _ = self.shutdown.send(true);
    }

    /// Waits until both servers have stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        for r in self.refreshers {
            r.abort();
        }
    }
}

/// Binds the listeners and starts serving `config`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    tls::install_crypto_provider();
    let metrics = Arc::new(Metrics::new(config.organization_label)?);
    let acceptor = match &config.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            &t.cert_file,
            &t.key_file,
        )?)),
        None => None,
    };
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let proxy_listener = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.admin_listen,
            source,
        })?;
    let grace = config.shutdown_grace;
    let tls_on = acceptor.is_some();

    let (runtime, jwks) = build_runtime(config, &metrics)?;
    let refreshers = jwks.into_iter().map(|j| tokio::spawn(j.run())).collect();
    let gateway = Arc::new(Gateway::new(runtime, metrics.clone(), tls_on));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let g = gateway.clone();
    let proxy = tokio::spawn(server::serve(
        proxy_listener,
        acceptor,
        move |req, peer| {
            let g = g.clone();
            async move { g.handle(req, peer).await }
        },
        stopped(shutdown_rx.clone()),
        grace,
    ));
    let (g, m) = (gateway.clone(), metrics.clone());
    // The admin API stays up while the proxy drains, so probes see not-ready.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin = tokio::spawn(server::serve(
        admin_listener,
        None,
        move |req, _peer| {
            let resp = admin::handle(&req, &g, &m);
            async move { resp }
        },
        stopped(admin_stop_rx),
        std::time::Duration::from_secs(1),
    ));
    let sequence = tokio::spawn(async move {
        let _ = proxy.await;
        let _ = admin_stop_tx.send(true);
        let _ = admin.await;
    });
    tracing::info!(proxy = %proxy_addr, admin = %admin_addr, tls = tls_on, "idp-gate listening");
    Ok(Running {
        proxy_addr,
        admin_addr,
        gateway,
        metrics,
        shutdown: shutdown_tx,
        tasks: vec![sequence],
        refreshers,
    })
}

/// Serves `config` until SIGTERM or SIGINT, then drains and returns.
pub async fn run(config: Config) -> Result<(), StartError> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown();
    running.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
