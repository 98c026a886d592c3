//! `reaper-trace serve`: the live tracer as a daemon. It traces the whole
//! system (or one cgroup), logs findings as JSON lines on stdout for
//! journald and log shippers, and serves its metrics over HTTP(S). The HTTP
//! server runs on a thread of its own, beside the tracing loop: the loop's
//! thread reads the ring at real-time priority, which clients, however many
//! or however slow, must not share; and its requests are bounded and time
//! out, so a slow client never holds tracing up.

use std::{net::SocketAddr, path::Path, sync::Arc, thread::JoinHandle};

use tokio::{net::TcpListener, sync::oneshot};

use super::{
    auth::BasicAuth,
    http::{self, Endpoint, Limits},
    tls,
    webconfig::WebConfig,
};
use crate::{
    live::{self, LiveOptions},
    output::metrics::Metrics,
};

pub async fn run(
    options: LiveOptions,
    listen: SocketAddr,
    web_config: Option<&Path>,
) -> anyhow::Result<()> {
    // Privileges first: without them nothing below can work, and the one
    // line saying so must not follow a claim that metrics are served.
    crate::kernel::loader::require_capabilities()?;
    // Read the web config and the certificates, then listen, all before
    // attaching anything: these are the likeliest mistakes, and they should
    // cost nothing.
    let web = web_config
        .map(WebConfig::load)
        .transpose()?
        .unwrap_or_default();
    let acceptor = web.tls.as_ref().map(tls::acceptor).transpose()?;
    let auth = BasicAuth::new(web.basic_auth_users.clone())?;
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| {
            anyhow::anyhow!("cannot listen on {listen}: {e}; choose another address with --listen")
        })?;
    // The bound address: with port 0 the kernel chose one.
    let bound = listener.local_addr().unwrap_or(listen);
    for note in &web.notes {
        eprintln!("reaper-trace: note: {note}");
    }
    if acceptor.is_none() && !listen.ip().is_loopback() {
        eprintln!(
            "reaper-trace: warning: serving metrics in plain HTTP on {bound}, beyond loopback: \
             anyone on the network can read them; set tls_server_config (and basic_auth_users) \
             in a --web.config.file, or listen on 127.0.0.1"
        );
    }
    let metrics = Metrics::new();
    let endpoint = Endpoint::new(metrics.renderer(), auth, &web.headers)?;
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let server = Server::start(listener, acceptor, Arc::new(endpoint))?;
    eprintln!("reaper-trace: serving metrics on {scheme}://{bound}/metrics");
    let outcome = live::run_with(options, Some(metrics)).await;
    server.stop();
    outcome.map(|_| ())
}

/// The HTTP server on a thread of its own, with a runtime of its own, at
/// the default scheduling priority.
struct Server {
    thread: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Server {
    fn start(
        listener: std::net::TcpListener,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        endpoint: Arc<Endpoint>,
    ) -> anyhow::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("starting the HTTP server's runtime: {e}"))?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            eprintln!("reaper-trace: cannot serve metrics: {e}");
                            return;
                        }
                    };
                    let serve = http::serve(listener, Limits::default(), acceptor, endpoint);
                    tokio::select! {
                        served = serve => if let Err(e) = served {
                            eprintln!("reaper-trace: the metrics server stopped: {e}");
                        },
                        _ = stopped => {}
                    }
                })
            })
            .map_err(|e| anyhow::anyhow!("starting the HTTP server's thread: {e}"))?;
        Ok(Server { thread, stop })
    }

    /// Stops serving: open connections are dropped with the runtime.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
