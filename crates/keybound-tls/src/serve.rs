//! Serving a router with the limits `axum::serve` lacks: a deadline for a request's headers
//! (a slow-loris client sending one byte at a time is cut off) and a cap on open connections
//! (further clients wait in the kernel's backlog instead of exhausting memory or descriptors),
//! and a bound on a request's header section (431 past it, instead of hyper's 400 KiB).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tower::ServiceExt as _;

/// hyper's smallest HTTP/1.1 read buffer.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// How [`serve`] limits its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeLimits {
    /// Time allowed to receive a request's headers, from the first byte; also how long a
    /// keep-alive connection may sit idle before its next request (default 10 s).
    pub header_read_timeout: Duration,
    /// Connections served at once (default 4096); more wait to be accepted.
    pub max_connections: usize,
    /// Bytes of a request's header section, over HTTP/1.1 (its read buffer, at least 8 KiB) and
    /// HTTP/2 (the header list); larger requests get 431 (default 32 KiB: a DPoP proof is at
    /// most 8 KiB, a token rarely over 4 KiB).
    pub max_header_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_header_bytes: 32 * 1024,
        }
    }
}

impl ServeLimits {
    /// With another bound on a request's header section (at least 8 KiB).
    #[must_use]
    pub fn with_max_header_bytes(mut self, max: usize) -> Self {
        self.max_header_bytes = max.max(MIN_HEADER_BYTES);
        self
    }

    /// With another header read timeout.
    #[must_use]
    pub const fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// With another connection cap (at least 1).
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }
}

/// Serves `router` on `listener` until `shutdown` completes, HTTP/1.1 and HTTP/2, with each
/// request carrying `ConnectInfo` of the listener's address type (the peer's socket address,
/// or [`Peer`](crate::Peer) for a [`TlsListener`](crate::TlsListener)).
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = &mut shutdown => return,
        };
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(addr.clone()));
                router.clone().oneshot(request)
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(limits.header_read_timeout))
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            if let Err(error) = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .await
            {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
