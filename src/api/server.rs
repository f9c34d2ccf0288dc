//! The accept loop: hyper's HTTP/1 server driven directly, because
//! `axum::serve` sets no timer, so a client that never finishes its headers
//! held its connection for ever. Connections are capped; shutdown stops
//! accepting, ends live streams, and gives other requests a short grace.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::{app, ApiState};
use crate::config::HubSettings;

/// Request line and headers together at most (431 beyond).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long requests in flight at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves. `listener` as bound from `[api] listen`.
pub async fn serve(
    settings: HubSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let state = ApiState::open(settings, stopping.clone())?;
    let api = &state.settings.api;
    let mut http = Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(api.header_timeout_ms))
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let header_timeout = Duration::from_millis(api.header_timeout_ms);
    let tls = match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some(super::tls::acceptor(cert, key)?),
        _ => None,
    };
    let connections = Arc::new(Semaphore::new(api.max_connections));
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), max_connections = api.max_connections, "API listening.");

    let service = app(state.clone());
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: beyond the cap, clients
        // wait in the kernel's backlog instead of costing memory here.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = connections.clone().acquire_owned() => p?,
        };
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: pass, then retry.
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (http, service, stopping, tls) = (http.clone(), service.clone(), stopping.clone(), tls.clone());
        tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => drive(http, tcp, service, stopping).await,
                // A handshake gets no longer than the headers would.
                Some(tls) => match tokio::time::timeout(header_timeout, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => drive(http, stream, service, stopping).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed."),
                    Err(_) => tracing::debug!("TLS handshake too slow; closed."),
                },
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = tasks.len(), "Connections still open after the grace period; closing them.");
        tasks.shutdown().await;
    }
    state.flush_refused();
    Ok(())
}

/// Serves one connection until it ends, or until shutdown asks it to finish
/// its request in flight.
async fn drive<I>(http: Builder, io: I, service: axum::Router, mut stopping: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
