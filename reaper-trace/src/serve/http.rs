//! The metrics endpoint: one route, `GET /metrics` (and `HEAD`), served
//! with hyper's HTTP/1.1 server over plain TCP or rustls, for a daemon that
//! shares its runtime with the tracer.
//!
//! Every connection runs in its own task and holds a slot of [`Slots`]:
//! past [`Limits::max_connections`], a new connection evicts the oldest one
//! that has not sent a complete (and, with basic auth, authorized)
//! request, so idle or slow clients cannot keep a scraper out. Deadlines: the TLS handshake and the request head
//! each within [`Limits::timeout`] (hyper's header read timeout, which
//! starts at the accept), the whole connection within twice that. One
//! request per connection (`Connection: close`); request bodies are ignored.
//! With basic auth configured every path asks for credentials first.

use std::{convert::Infallible, io, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{self, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;

use super::{
    auth::{self, BasicAuth},
    slots::{Slot, Slots},
};

/// The one route.
pub const METRICS_PATH: &str = "/metrics";

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest a connection lingers after its response, reading what the
/// client still sends, so that closing does not reset the connection (a
/// reset can destroy the response before the client has read it).
const LINGER: Duration = Duration::from_secs(1);

/// At most this much is read and discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// How long to pause accepting when the process or system is out of file
/// descriptors or memory, rather than spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bounds on what one client may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; past it the oldest that has no complete
    /// request is closed for the newcomer, and when every one is being
    /// answered, the newcomer is closed (with a 503 over plain HTTP).
    pub max_connections: usize,
    /// The largest request head (request line and headers) read: hyper's
    /// read buffer, which cannot be below 8 KiB.
    pub max_request_bytes: usize,
    /// The deadline for the TLS handshake, and separately for the request
    /// head (from the accept); the whole connection gets twice this.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Eviction keeps scrapes working past it; the cap bounds the
            // descriptors and memory (a few KiB each, tens with TLS).
            max_connections: 128,
            max_request_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What `GET /metrics` renders, called per request on the runtime's
/// thread: it must be cheap.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// What the endpoint answers with.
pub struct Endpoint {
    render: Render,
    auth: Option<BasicAuth>,
    /// Added to every response (`http_server_config.headers`).
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// A response header of the web config that HTTP cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("the response header {0:?} is not a valid HTTP header")]
pub struct BadHeader(String);

impl Endpoint {
    pub fn new(
        render: Render,
        auth: Option<BasicAuth>,
        headers: &[(String, String)],
    ) -> Result<Endpoint, BadHeader> {
        let headers = headers
            .iter()
            .map(|(name, value)| {
                Ok((
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| BadHeader(name.clone()))?,
                    HeaderValue::from_str(value).map_err(|_| BadHeader(name.clone()))?,
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Endpoint {
            render,
            auth,
            headers,
        })
    }

    /// No authentication, no extra headers.
    pub fn plain(render: Render) -> Endpoint {
        Endpoint {
            render,
            auth: None,
            headers: Vec::new(),
        }
    }
}

/// What a request with a valid head is answered with, before
/// authentication and rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The metrics, with their body or (`HEAD`) without.
    Metrics { body: bool },
    /// Another path.
    NotFound,
    /// `/metrics` with another method.
    MethodNotAllowed,
}

/// Routes a request by method and path (the target's path, without query).
pub fn route(method: &Method, path: &str) -> Route {
    if path != METRICS_PATH {
        Route::NotFound
    } else if method == Method::GET {
        Route::Metrics { body: true }
    } else if method == Method::HEAD {
        Route::Metrics { body: false }
    } else {
        Route::MethodNotAllowed
    }
}

fn response(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A short plain-text error response.
fn error_response(status: StatusCode) -> Response<Full<Bytes>> {
    let reason = status.canonical_reason().unwrap_or_default();
    response(
        status,
        "text/plain; charset=utf-8",
        format!("{} {reason}\n", status.as_u16()),
    )
}

/// The response to a complete request head. `authorized` is called once
/// the client is known to be allowed (at once without basic auth).
async fn respond(
    endpoint: &Endpoint,
    request: &Request<Incoming>,
    authorized: impl FnOnce(),
) -> Response<Full<Bytes>> {
    if let Some(auth) = &endpoint.auth {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !auth.check(given).await {
            let mut r = error_response(StatusCode::UNAUTHORIZED);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(auth::CHALLENGE),
            );
            return r;
        }
    }
    authorized();
    match route(request.method(), request.uri().path()) {
        // hyper sends no body for HEAD, but the length of this one.
        Route::Metrics { .. } => {
            response(StatusCode::OK, METRICS_CONTENT_TYPE, (endpoint.render)())
        }
        Route::NotFound => error_response(StatusCode::NOT_FOUND),
        Route::MethodNotAllowed => {
            let mut r = error_response(StatusCode::METHOD_NOT_ALLOWED);
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}

/// Serves until the listener errors fatally; `tls` set: HTTPS only.
///
/// Dropping the returned future stops the server and aborts the connections
/// in flight.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    endpoint: Arc<Endpoint>,
) -> io::Result<()> {
    let slots = Slots::new(limits.max_connections);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        accept_error(e).await?;
                        continue;
                    }
                };
                match slots.admit() {
                    Ok(slot) => {
                        connections.spawn(connection(
                            stream,
                            slot,
                            limits,
                            tls.clone(),
                            Arc::clone(&endpoint),
                        ));
                        // Let the new connection read what it was sent
                        // before the next accept: under a flood of
                        // connections, a scraper's request (already in
                        // the socket) then makes it serving before
                        // newcomers can evict it.
                        tokio::task::yield_now().await;
                    }
                    // Every slot is answering a request: say so if the
                    // socket takes it without waiting (over plain HTTP),
                    // and close.
                    Err(_) if tls.is_none() => {
                        let _ = stream.try_write(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
                              Connection: close\r\n\r\n",
                        );
                    }
                    Err(_) => {}
                }
            }
            // Reap finished connections (a panic in `render` ends only its
            // own connection).
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Whether an accept error leaves the listener usable: errors of the one
/// connection, and running out of descriptors or memory (after a pause),
/// do; anything else is returned.
async fn accept_error(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EINTR | libc::EPROTO | libc::EPERM) => {
            Ok(())
        }
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            Ok(())
        }
        _ if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        ) =>
        {
            Ok(())
        }
        _ => Err(e),
    }
}

/// One connection, until it is done, evicted or out of time.
async fn connection(
    stream: TcpStream,
    slot: Slot,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    endpoint: Arc<Endpoint>,
) {
    let evicted = Arc::clone(&slot.evicted);
    let slot = Arc::new(slot);
    let exchange = async {
        match tls {
            None => exchange(stream, slot, limits, endpoint).await,
            Some(acceptor) => {
                // A client that fails the handshake (plain HTTP sent to
                // the TLS port, say) gets rustls' alert and the close.
                if let Ok(Ok(stream)) =
                    tokio::time::timeout(limits.timeout, acceptor.accept(stream)).await
                {
                    exchange(stream, slot, limits, endpoint).await;
                }
            }
        }
    };
    tokio::select! {
        _ = evicted.notified() => {}
        _ = tokio::time::timeout(limits.timeout * 2, exchange) => {}
    }
}

/// The HTTP exchange over `io`, then the linger.
async fn exchange<I>(mut io: I, slot: Arc<Slot>, limits: Limits, endpoint: Arc<Endpoint>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send,
{
    let service_slot = Arc::clone(&slot);
    let service = service_fn(move |request: Request<Incoming>| {
        let endpoint = Arc::clone(&endpoint);
        let slot = Arc::clone(&service_slot);
        async move {
            // A complete head from an allowed client is no longer evicted
            // for newcomers; one still being checked is (a flood of wrong
            // passwords waiting for bcrypt cannot fill the slots).
            let response = respond(&endpoint, &request, || slot.serving()).await;
            Ok::<_, Infallible>(with_common_headers(response, &endpoint))
        }
    });
    // hyper answers malformed heads itself (400, 431 past the buffer),
    // closes past the header read timeout (timed from the first read) and,
    // without keep-alive, shuts the connection down after the one response.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_buf_size(limits.max_request_bytes.max(8 * 1024))
        .keep_alive(false)
        .serve_connection(TokioIo::new(&mut io), service)
        .await;
    slot.done();
    linger(&mut io, limits).await;
}

fn with_common_headers(
    mut response: Response<Full<Bytes>>,
    endpoint: &Endpoint,
) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    for (name, value) in &endpoint.headers {
        headers.insert(name.clone(), value.clone());
    }
    response
}

/// Closes for writing, then reads what the client still sends (an ignored
/// body, the rest of an oversized head) until it closes, within bounds, so
/// that the close does not reset the connection under the response.
async fn linger<I: AsyncRead + AsyncWrite + Unpin>(io: &mut I, limits: Limits) {
    let _ = tokio::time::timeout(limits.timeout.min(LINGER), async {
        if io.shutdown().await.is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::{
        net::SocketAddr,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// The failure bound of any one client exchange in these tests.
    const BOUND: Duration = Duration::from_secs(2);

    #[test]
    fn routes_one_path_and_two_methods() {
        assert_eq!(
            route(&Method::GET, "/metrics"),
            Route::Metrics { body: true }
        );
        assert_eq!(
            route(&Method::HEAD, "/metrics"),
            Route::Metrics { body: false }
        );
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::DELETE, "*"), Route::NotFound);
    }

    // --- Over real loopback sockets, on a current-thread runtime like the
    // daemon's: a client that blocked the thread would stall the test.

    fn run<F: Future<Output = ()>>(test: F) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(test);
    }

    const BODY: &str =
        "# TYPE reaper_trace_tracked_processes gauge\nreaper_trace_tracked_processes 3\n";

    /// Starts a server on an ephemeral loopback port; returns its address
    /// and the number of times `render` ran.
    async fn start(limits: Limits) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let renders = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&renders);
        let render: Render = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            BODY.to_owned()
        });
        tokio::spawn(async move {
            serve(listener, limits, None, Arc::new(Endpoint::plain(render)))
                .await
                .expect("serve");
        });
        (addr, renders)
    }

    /// Sends `request` on a new connection and reads until the server
    /// closes it.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        tokio::time::timeout(BOUND, try_exchange(addr, request))
            .await
            .expect("the server answers and closes in time")
            .expect("the exchange succeeds")
    }

    async fn try_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<String> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    async fn read_all(stream: &mut TcpStream) -> String {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.expect("read response");
        String::from_utf8_lossy(&out).into_owned()
    }

    fn status_line(response: &str) -> &str {
        response.split("\r\n").next().unwrap_or_default()
    }

    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let (head, _) = response.split_once("\r\n\r\n")?;
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(v)
        })
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[test]
    fn serves_metrics_on_get_and_head() {
        run(async {
            let (addr, renders) = start(Limits::default()).await;
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            assert_eq!(header(&r, "content-type"), Some(METRICS_CONTENT_TYPE));
            assert_eq!(header(&r, "content-length"), Some(&*BODY.len().to_string()));
            assert_eq!(header(&r, "connection"), Some("close"));
            assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
            assert_eq!(body(&r), BODY);

            let r = exchange(addr, b"GET /metrics?debug=1 HTTP/1.0\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.0 200 OK", "{r}");
            assert_eq!(body(&r), BODY);

            // The absolute form of the target.
            let r = exchange(
                addr,
                b"GET http://x:9464/metrics?a HTTP/1.1\r\nHost: x\r\n\r\n",
            )
            .await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");

            let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            assert_eq!(header(&r, "content-length"), Some(&*BODY.len().to_string()));
            assert_eq!(body(&r), "");
            assert_eq!(renders.load(Ordering::SeqCst), 4);
        });
    }

    #[test]
    fn answers_other_paths_methods_and_garbage_with_errors() {
        run(async {
            let (addr, renders) = start(Limits::default()).await;
            let r = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 404 Not Found", "{r}");
            assert_eq!(header(&r, "connection"), Some("close"));

            // A body is ignored, and its bytes do not reset the connection.
            let r = exchange(
                addr,
                b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
            )
            .await;
            assert_eq!(status_line(&r), "HTTP/1.1 405 Method Not Allowed", "{r}");
            assert_eq!(header(&r, "allow"), Some("GET, HEAD"));

            // A TLS ClientHello on the plain port, and other garbage.
            for garbage in [
                &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
                b"garbage\r\n\r\n",
                b"GET /metrics HTTP/2.0\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            ] {
                let r = exchange(addr, garbage).await;
                assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request", "{r}");
            }
            // Closed (for writing) before the head ended: closed in turn.
            let r = exchange_half_closed(addr, b"GET /metrics HTTP/1.1\r\n").await;
            assert!(!r.contains("200 OK"), "{r}");
            assert_eq!(renders.load(Ordering::SeqCst), 0);
        });
    }

    async fn exchange_half_closed(addr: SocketAddr, request: &[u8]) -> String {
        tokio::time::timeout(BOUND, async {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request).await.expect("write request");
            stream.shutdown().await.expect("shutdown");
            read_all(&mut stream).await
        })
        .await
        .expect("the server answers and closes in time")
    }

    #[test]
    fn rejects_oversized_heads() {
        run(async {
            let limits = Limits::default();
            let (addr, renders) = start(limits).await;
            // Well within the limit is fine.
            let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
            request.resize(limits.max_request_bytes / 2, b'a');
            request.extend_from_slice(b"\r\n\r\n");
            let r = exchange(addr, &request).await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");

            // Past it, and much larger: the rest is drained, the answer
            // still arrives.
            for size in [limits.max_request_bytes + 1, 40 * 1024] {
                let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
                request.resize(size, b'a');
                request.extend_from_slice(b"\r\n\r\n");
                let r = exchange(addr, &request).await;
                assert_eq!(
                    status_line(&r),
                    "HTTP/1.1 431 Request Header Fields Too Large",
                    "{size}: {r}"
                );
            }
            assert_eq!(renders.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn a_stalled_client_does_not_delay_others() {
        run(async {
            // A timeout far beyond the test's bound: the second client must
            // be served while the first still holds its connection.
            let limits = Limits {
                timeout: Duration::from_secs(60),
                ..Limits::default()
            };
            let (addr, _) = start(limits).await;
            let silent = TcpStream::connect(addr).await.expect("connect");
            let mut partial = TcpStream::connect(addr).await.expect("connect");
            partial
                .write_all(b"GET /metrics HTTP/1.1\r\nHo")
                .await
                .expect("write");
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            drop((silent, partial));
        });
    }

    #[test]
    fn stalled_and_silent_clients_are_timed_out() {
        run(async {
            let limits = Limits {
                timeout: Duration::from_millis(100),
                ..Limits::default()
            };
            let (addr, _) = start(limits).await;
            let mut partial = TcpStream::connect(addr).await.expect("connect");
            partial
                .write_all(b"GET /metrics HTTP/1.1\r\n")
                .await
                .expect("write");
            let mut silent = TcpStream::connect(addr).await.expect("connect");
            for stream in [&mut partial, &mut silent] {
                let r = tokio::time::timeout(BOUND, read_all(stream))
                    .await
                    .expect("the server gives up on the client in time");
                assert!(!r.contains("200 OK"), "{r}");
            }
        });
    }

    #[test]
    fn idle_connections_give_way_to_a_scrape_past_the_cap() {
        run(async {
            let limits = Limits {
                max_connections: 2,
                timeout: Duration::from_secs(60),
                ..Limits::default()
            };
            let (addr, renders) = start(limits).await;
            // Ten idle clients for two slots: each new one evicts the oldest.
            let mut idle = Vec::new();
            for _ in 0..10 {
                idle.push(TcpStream::connect(addr).await.expect("connect"));
            }
            for _ in 0..3 {
                let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
                assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            }
            // The evicted ones were closed: all but the newest idle one (at
            // most) read an end of file.
            let mut closed = 0;
            for stream in &mut idle {
                if tokio::time::timeout(BOUND, read_all(stream)).await.is_ok() {
                    closed += 1;
                }
            }
            assert!(
                closed >= idle.len() - 1,
                "{closed} of {} closed",
                idle.len()
            );
            assert_eq!(renders.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn a_panicking_render_ends_only_its_connection() {
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let calls = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&calls);
            let render: Render = Arc::new(move || {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first render fails");
                }
                BODY.to_owned()
            });
            tokio::spawn(async move {
                serve(
                    listener,
                    Limits::default(),
                    None,
                    Arc::new(Endpoint::plain(render)),
                )
                .await
            });
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(r, "");
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
        });
    }
}
