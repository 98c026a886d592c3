//! `reaper-trace serve`: the live tracer as a daemon. It traces the whole
//! system (or one cgroup), logs findings as JSON lines on stdout for
//! journald and log shippers, and serves its metrics over HTTP. The HTTP
//! server runs beside the tracing loop on the same runtime; its requests
//! are bounded and time out, so a slow client never holds tracing up.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::http::{self, Limits};
use crate::{
    live::{self, LiveOptions},
    output::metrics::Metrics,
};

pub async fn run(options: LiveOptions, listen: SocketAddr) -> anyhow::Result<()> {
    // Privileges first: without them nothing below can work, and the one
    // line saying so must not follow a claim that metrics are served.
    crate::kernel::loader::require_capabilities()?;
    // Listen before attaching anything: a port in use is the likeliest
    // mistake, and it should cost nothing.
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {listen}: {e}; choose another address with --listen")
    })?;
    // The bound address: with port 0 the kernel chose one.
    let bound = listener.local_addr().unwrap_or(listen);
    let metrics = Metrics::new();
    let server = tokio::spawn(http::serve(listener, Limits::default(), metrics.renderer()));
    eprintln!("reaper-trace: serving metrics on http://{bound}/metrics");
    let outcome = live::run_with(options, Some(metrics)).await;
    server.abort();
    outcome.map(|_| ())
}
