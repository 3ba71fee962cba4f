//! The rackload coordinator: accepts worker sessions ([`fabric`]) and CLI runs
//! ([`control`]), splits each point of a run into shard plans, starts every worker at one
//! instant, merges their interval histograms and counters ([`merge`]) and streams merged
//! points to the CLI, which writes the results. The control plane only: analysis of
//! finished runs lives in `rackload-analysis`.

pub mod control;
pub mod fabric;
pub mod merge;
pub mod metrics;
pub mod registry;
pub mod run;
pub mod timeline;

use std::future::Future;
use std::sync::Arc;

use rackload_proto::v1::control_server::ControlServer;
use rackload_proto::v1::fabric_server::FabricServer;
use tokio_stream::wrappers::TcpListenerStream;

pub use registry::Registry;

/// Largest message accepted: run specs carry whole datasets.
pub const MAX_MESSAGE: usize = 512 << 20;

/// Limits a standing coordinator enforces on every run, whatever the run asks, and who
/// may talk to it.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// A run still going after this long is aborted.
    pub max_run_duration: std::time::Duration,
    /// Every worker and CLI call must carry this bearer token.
    pub token: Option<String>,
    /// Mutual TLS: this coordinator's identity and the CA of its clients' certificates.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            max_run_duration: rackload_spec::defaults::MAX_RUN_DURATION,
            token: None,
            tls: None,
        }
    }
}

/// Serves the Fabric and Control services on `listener`, and `GET /metrics` on
/// `metrics` when given, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_incoming(TcpListenerStream::new(listener), metrics, config, shutdown).await
}

/// [`serve`] over any stream of connections: TCP in production, in-memory pipes in the
/// run loop's tests.
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    metrics: Option<tokio::net::TcpListener>,
    config: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let registry = Arc::new(Registry::default());
    let runs = Arc::new(control::Runs::default());
    let live = Arc::new(metrics::Live::default());
    if let Some(listener) = metrics {
        let (registry, live) = (registry.clone(), live.clone());
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let accept = headers
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let (kind, text) = live.exposition(&registry, accept);
                async move { ([(axum::http::header::CONTENT_TYPE, kind)], text) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the metrics server stopped: {e}");
            }
        });
    }
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = config.tls.clone() {
        server = server.tls_config(tls)?;
    }
    let token = config.token.clone();
    server
        .layer(rackload_proto::auth::RequireToken::new(token.as_deref()))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(3)))
        .add_service(
            FabricServer::new(fabric::FabricService::new(
                registry.clone(),
                live.clone(),
                token,
            ))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ControlServer::new(control::ControlService::new(registry, runs, config, live))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
