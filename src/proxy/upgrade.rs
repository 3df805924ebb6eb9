//! Upgraded connections (WebSocket and any other `Upgrade`): once the
//! upstream has answered 101, the client's and the upstream's connections
//! are spliced byte for byte until either side closes or the gateway
//! closes every tunnel at shutdown.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::headers::RequestId;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The open tunnels, and the one signal that ends them all.
///
/// Upgraded connections leave the HTTP server's hands (hyper gives their
/// I/O away), so the server's drain does not see them: without this they
/// would outlive the gateway's shutdown.
pub struct Tunnels {
    closed: watch::Sender<bool>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels::new()
    }
}

impl Tunnels {
    /// No tunnels yet.
    pub fn new() -> Tunnels {
        Tunnels {
            closed: watch::channel(false).0,
        }
    }

    /// Splices `client` and `upstream` once both upgrades complete (the
    /// client's only after the 101 has been written to it). `hold` lives as
    /// long as the tunnel: the upstream's connection slot, say.
    pub fn open(
        &self,
        client: OnUpgrade,
        upstream: OnUpgrade,
        hold: impl Send + 'static,
        request_id: RequestId,
    ) {
        let mut closed = self.closed.subscribe();
        tokio::spawn(async move {
            let _hold = hold;
            let splice = async {
                let (client, upstream) = tokio::try_join!(client, upstream)?;
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                Ok::<_, BoxError>(tokio::io::copy_bidirectional(&mut client, &mut upstream).await?)
            };
            tokio::select! {
                done = splice => match done {
                    Ok((up, down)) => tracing::debug!(request_id = %request_id, bytes_up = up, bytes_down = down, "tunnel closed"),
                    Err(e) => tracing::debug!(request_id = %request_id, error = %e, "tunnel broke"),
                },
                _ = closed.wait_for(|c| *c) => {
                    tracing::debug!(request_id = %request_id, "tunnel closed by shutdown");
                }
            }
        });
    }

    /// Ends every open tunnel, and any opened from now on.
    pub fn close_all(&self) {
        self.closed.send_replace(true);
    }

    /// How many tunnels are open (or waiting for their upgrades).
    pub fn open_count(&self) -> usize {
        self.closed.receiver_count()
    }
}
