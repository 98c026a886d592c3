//! A tiny HTTP/1.1 responder for one route, `GET /metrics`, hardened for a
//! daemon that shares its runtime with the tracer.
//!
//! Every connection runs in its own task with a deadline for reading the
//! request head and another for writing the response, so a slow or stalled
//! client never holds up other clients or the caller. Past
//! [`Limits::max_connections`] concurrent connections, new ones are accepted
//! and closed at once with a 503, so the listen backlog never grows. One
//! request per connection (`Connection: close`); request bodies are ignored.
//!
//! The parsing is a pure function, [`parse_request_head`], that never panics.

use std::{io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
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
    /// Connections served at once; more are closed with a 503.
    pub max_connections: usize,
    /// The largest request head (request line and headers) read.
    pub max_request_bytes: usize,
    /// The deadline for reading the request head, and separately for
    /// writing the response.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            max_request_bytes: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A request's method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    /// Any other syntactically valid method.
    Other(String),
}

/// What the responder uses of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The path of the request target, without its query string.
    pub path: String,
}

/// Why a request head could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head does not end (with an empty line) within the bytes given.
    #[error("incomplete request head")]
    Incomplete,
    /// The head is larger than the limit.
    #[error("request head larger than {0} bytes")]
    HeadTooLarge(usize),
    /// The request line is not `METHOD SP target SP HTTP/x.y`.
    #[error("malformed request line")]
    BadRequestLine,
    /// A header line is not `name: value`.
    #[error("malformed header line")]
    BadHeader,
    /// A well-formed version other than HTTP/1.x.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
}

impl HttpError {
    fn status(&self) -> Status {
        match self {
            HttpError::HeadTooLarge(_) => Status::HeaderFieldsTooLarge,
            HttpError::UnsupportedVersion => Status::VersionNotSupported,
            HttpError::Incomplete | HttpError::BadRequestLine | HttpError::BadHeader => {
                Status::BadRequest
            }
        }
    }
}

/// Parses a request head: the request line and the header lines up to the
/// empty line that ends them (anything after it, a body, is ignored). Lines
/// end with CRLF or a bare LF; empty lines before the request line are
/// skipped (RFC 9112 §2.2). Headers are checked for shape only.
pub fn parse_request_head(bytes: &[u8]) -> Result<RequestHead, HttpError> {
    let (start, end) = head_bounds(bytes).ok_or(HttpError::Incomplete)?;
    let mut lines = bytes[start..end]
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().ok_or(HttpError::BadRequestLine)?;
    let head = parse_request_line(request_line)?;
    for line in lines.filter(|l| !l.is_empty()) {
        check_header_line(line)?;
    }
    Ok(head)
}

/// Where the head lies in `bytes`: from the first byte after any leading
/// empty lines to the end of its last header line (the empty line that ends
/// it excluded). `None` while that empty line has not arrived.
fn head_bounds(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut start = 0;
    loop {
        match &bytes[start..] {
            [b'\r', b'\n', ..] => start += 2,
            [b'\n', ..] => start += 1,
            _ => break,
        }
    }
    let rest = &bytes[start..];
    // The head ends at a line feed followed by an empty line.
    let mut i = 0;
    while i < rest.len() {
        if rest[i] == b'\n' {
            match &rest[i + 1..] {
                [b'\n', ..] | [b'\r', b'\n', ..] => return Some((start, start + i)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn parse_request_line(line: &[u8]) -> Result<RequestHead, HttpError> {
    let line = std::str::from_utf8(line).map_err(|_| HttpError::BadRequestLine)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HttpError::BadRequestLine);
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequestLine);
    }
    check_version(version)?;
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    Ok(RequestHead {
        method,
        path: target_path(target).to_owned(),
    })
}

/// `HTTP/1.0` and `HTTP/1.1` are served; any other `HTTP/d.d` is a 505.
fn check_version(version: &str) -> Result<(), HttpError> {
    match version.strip_prefix("HTTP/").map(str::as_bytes) {
        Some(b"1.0" | b"1.1") => Ok(()),
        Some([major, b'.', minor]) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(HttpError::UnsupportedVersion)
        }
        _ => Err(HttpError::BadRequestLine),
    }
}

/// The path of a request target in origin form (`/metrics?x`) or absolute
/// form (`http://host:9464/metrics?x`), without the query string.
fn target_path(target: &str) -> &str {
    let target = target.split(['?', '#']).next().unwrap_or_default();
    let Some((_, after_scheme)) = target.split_once("://") else {
        return target;
    };
    match after_scheme.find('/') {
        Some(slash) => &after_scheme[slash..],
        None => "/",
    }
}

fn check_header_line(line: &[u8]) -> Result<(), HttpError> {
    // A continuation line (obsolete line folding) is rejected, like any
    // line without a non-empty token before its colon.
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HttpError::BadHeader)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return Err(HttpError::BadHeader);
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::RequestTimeout => "408 Request Timeout",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large",
            Status::ServiceUnavailable => "503 Service Unavailable",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

/// A complete response, head and body, ready to write.
fn response(status: Status, content_type: &str, body: &str, send_body: bool) -> Vec<u8> {
    let allow = if status == Status::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\n{allow}Connection: close\r\n\r\n",
        status.line(),
        body.len(),
    )
    .into_bytes();
    if send_body {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A short plain-text error response.
fn error_response(status: Status) -> Vec<u8> {
    let body = format!("{}\n", status.line());
    response(status, "text/plain; charset=utf-8", &body, true)
}

/// The response to a well-formed request.
fn route(head: &RequestHead, render: &(dyn Fn() -> String + Send + Sync)) -> Vec<u8> {
    if head.path != METRICS_PATH {
        return error_response(Status::NotFound);
    }
    match head.method {
        Method::Get => response(Status::Ok, METRICS_CONTENT_TYPE, &render(), true),
        Method::Head => response(Status::Ok, METRICS_CONTENT_TYPE, &render(), false),
        Method::Other(_) => error_response(Status::MethodNotAllowed),
    }
}

/// Serves until the listener errors fatally. `render` produces the body of
/// `GET /metrics` (text exposition, called per request); it must be cheap,
/// as it runs on the runtime's thread.
///
/// Dropping the returned future stops the server and aborts the connections
/// in flight.
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    render: Arc<dyn Fn() -> String + Send + Sync>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
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
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let render = Arc::clone(&render);
                        connections.spawn(async move {
                            serve_connection(stream, limits, render.as_ref()).await;
                            drop(slot);
                        });
                    }
                    // Full: say so if the socket takes it without waiting,
                    // and close.
                    Err(_) => {
                        let _ = stream.try_write(&error_response(Status::ServiceUnavailable));
                    }
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

/// What reading a request head came to.
enum Read {
    /// The head, parsed or not.
    Head(Result<RequestHead, HttpError>),
    /// The client closed without sending anything, or the connection failed.
    Nothing,
}

async fn read_head(stream: &mut TcpStream, max: usize) -> Read {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    loop {
        if filled == max {
            return Read::Head(Err(HttpError::HeadTooLarge(max)));
        }
        let before = filled;
        match stream.read(&mut buf[filled..]).await {
            Ok(0) if filled == 0 => return Read::Nothing,
            // Closed (or half-closed) before the head ended.
            Ok(0) => return Read::Head(Err(HttpError::Incomplete)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Read::Nothing,
        }
        // Only a line feed can end the head: look again when one arrives.
        if buf[before..filled].contains(&b'\n') && head_bounds(&buf[..filled]).is_some() {
            return Read::Head(parse_request_head(&buf[..filled]));
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    limits: Limits,
    render: &(dyn Fn() -> String + Send + Sync),
) {
    let response = match tokio::time::timeout(
        limits.timeout,
        read_head(&mut stream, limits.max_request_bytes),
    )
    .await
    {
        Ok(Read::Head(Ok(head))) => route(&head, render),
        Ok(Read::Head(Err(e))) => error_response(e.status()),
        Ok(Read::Nothing) => return,
        Err(_elapsed) => error_response(Status::RequestTimeout),
    };
    let written = tokio::time::timeout(limits.timeout, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    // Read what the client still sends (an ignored body, the rest of an
    // oversized head) until it closes, within bounds.
    let _ = tokio::time::timeout(limits.timeout.min(LINGER), async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
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

    fn get(path: &str) -> RequestHead {
        RequestHead {
            method: Method::Get,
            path: path.to_owned(),
        }
    }

    #[test]
    fn parses_gets_and_heads_with_crlf_or_lf() {
        assert_eq!(
            parse_request_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
            Ok(get("/metrics"))
        );
        assert_eq!(
            parse_request_head(b"HEAD /metrics HTTP/1.0\n\n"),
            Ok(RequestHead {
                method: Method::Head,
                path: "/metrics".into()
            })
        );
        // Leading empty lines are skipped; a body after the head is ignored.
        assert_eq!(
            parse_request_head(b"\r\n\nGET / HTTP/1.1\r\n\r\nbody bytes \0\xff"),
            Ok(get("/"))
        );
        assert_eq!(
            parse_request_head(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            Ok(RequestHead {
                method: Method::Other("POST".into()),
                path: "/metrics".into()
            })
        );
    }

    #[test]
    fn strips_the_query_and_the_scheme_and_authority() {
        let path = |target: &str| {
            parse_request_head(format!("GET {target} HTTP/1.1\r\n\r\n").as_bytes()).map(|h| h.path)
        };
        assert_eq!(path("/metrics?name[]=x&y"), Ok("/metrics".into()));
        assert_eq!(path("/metrics#frag"), Ok("/metrics".into()));
        assert_eq!(
            path("http://localhost:9464/metrics?a"),
            Ok("/metrics".into())
        );
        assert_eq!(path("http://localhost:9464"), Ok("/".into()));
        assert_eq!(path("*"), Ok("*".into()));
        assert_eq!(path("/metrics/"), Ok("/metrics/".into()));
    }

    #[test]
    fn rejects_malformed_heads() {
        use HttpError::*;
        let cases: &[(&[u8], HttpError)] = &[
            (b"", Incomplete),
            (b"GET /metrics HTTP/1.1\r\n", Incomplete),
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Incomplete),
            (b"\r\n\r\n", Incomplete),
            (b"garbage\r\n\r\n", BadRequestLine),
            (b"GET /metrics\r\n\r\n", BadRequestLine),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /metrics HTTP/1.1 extra\r\n\r\n", BadRequestLine),
            (b"GET /metrics HTTP/1.1 \r\n\r\n", BadRequestLine),
            (b"G(T /metrics HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /m\x7fetrics HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /m\xc3\xa9trics HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /\xff HTTP/1.1\r\n\r\n", BadRequestLine),
            (b"GET /metrics HTTP/1.1\t\r\n\r\n", BadRequestLine),
            (b"GET /metrics http/1.1\r\n\r\n", BadRequestLine),
            (b"GET /metrics HTTP/1\r\n\r\n", BadRequestLine),
            (b"GET /metrics HTTP/2.0\r\n\r\n", UnsupportedVersion),
            (b"GET /metrics HTTP/0.9\r\n\r\n", UnsupportedVersion),
            (b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n", BadHeader),
            (b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n", BadHeader),
            (b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", BadHeader),
            (
                b"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                BadHeader,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_request_head(input).as_ref(),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn never_panics_on_prefixes_and_byte_mutations() {
        let valid = b"\r\nGET http://h/metrics?q HTTP/1.1\r\nHost: h\r\nX: a:b\n\r\nbody";
        for end in 0..=valid.len() {
            let _ = parse_request_head(&valid[..end]);
        }
        let mut input = valid.to_vec();
        for i in 0..input.len() {
            let original = input[i];
            for b in 0..=u8::MAX {
                input[i] = b;
                let _ = parse_request_head(&input);
                let _ = parse_request_head(&input[i..]);
            }
            input[i] = original;
        }
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
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            BODY.to_owned()
        });
        tokio::spawn(async move {
            serve(listener, limits, render).await.expect("serve");
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
            assert_eq!(body(&r), BODY);

            let r = exchange(addr, b"GET /metrics?debug=1 HTTP/1.0\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            assert_eq!(body(&r), BODY);

            let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            assert_eq!(header(&r, "content-length"), Some(&*BODY.len().to_string()));
            assert_eq!(body(&r), "");
            assert_eq!(renders.load(Ordering::SeqCst), 3);
        });
    }

    #[test]
    fn answers_other_paths_methods_and_garbage_with_errors() {
        run(async {
            let (addr, renders) = start(Limits::default()).await;
            let r = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 404 Not Found", "{r}");
            assert_eq!(header(&r, "connection"), Some("close"));

            // A body is ignored, and its bytes do not reset the connection.
            let r = exchange(
                addr,
                b"POST /metrics HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world",
            )
            .await;
            assert_eq!(status_line(&r), "HTTP/1.1 405 Method Not Allowed", "{r}");
            assert_eq!(header(&r, "allow"), Some("GET, HEAD"));

            let r = exchange(
                addr,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            )
            .await;
            assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request", "{r}");
            let r = exchange(addr, b"garbage\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request", "{r}");
            // Closed (for writing) before the head ended.
            let r = exchange_half_closed(addr, b"GET /metrics HTTP/1.1\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request", "{r}");

            let r = exchange(addr, b"GET /metrics HTTP/2.0\r\n\r\n").await;
            assert_eq!(
                status_line(&r),
                "HTTP/1.1 505 HTTP Version Not Supported",
                "{r}"
            );
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
            let limits = Limits {
                max_request_bytes: 1024,
                ..Limits::default()
            };
            let (addr, renders) = start(limits).await;
            // Exactly at the limit is fine.
            let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
            request.resize(1024 - 4, b'a');
            request.extend_from_slice(b"\r\n\r\n");
            let r = exchange(addr, &request).await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");

            let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
            request.resize(1024 - 3, b'a');
            request.extend_from_slice(b"\r\n\r\n");
            let r = exchange(addr, &request).await;
            assert_eq!(
                status_line(&r),
                "HTTP/1.1 431 Request Header Fields Too Large",
                "{r}"
            );
            // Much larger: the rest is drained, the answer still arrives.
            let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
            request.resize(40 * 1024, b'a');
            request.extend_from_slice(b"\r\n\r\n");
            let r = exchange(addr, &request).await;
            assert_eq!(
                status_line(&r),
                "HTTP/1.1 431 Request Header Fields Too Large",
                "{r}"
            );
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
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
            drop((silent, partial));
        });
    }

    #[test]
    fn a_stalled_client_is_timed_out() {
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
            let r = tokio::time::timeout(BOUND, read_all(&mut partial))
                .await
                .expect("the server gives up on the client in time");
            assert_eq!(status_line(&r), "HTTP/1.1 408 Request Timeout", "{r}");
        });
    }

    #[test]
    fn connections_beyond_the_cap_are_closed_at_once() {
        run(async {
            let limits = Limits {
                max_connections: 2,
                timeout: Duration::from_secs(60),
                ..Limits::default()
            };
            let (addr, _) = start(limits).await;
            // The kernel's accept queue is FIFO: these two take both slots.
            let first = TcpStream::connect(addr).await.expect("connect");
            let second = TcpStream::connect(addr).await.expect("connect");
            // The third is answered and closed without being read from: it
            // sends nothing, so that the close is not a reset.
            let r = exchange(addr, b"").await;
            assert_eq!(status_line(&r), "HTTP/1.1 503 Service Unavailable", "{r}");

            // A freed slot is served again. The server sees the close
            // asynchronously: retry (each attempt is refused at once, maybe
            // with a reset as its request arrives after the close) until it
            // has, within the bound.
            drop(first);
            tokio::time::timeout(BOUND, async {
                loop {
                    let r = try_exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
                    if r.as_deref()
                        .is_ok_and(|r| status_line(r) == "HTTP/1.1 200 OK")
                    {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the freed slot is reused");
            drop(second);
        });
    }

    #[test]
    fn a_panicking_render_ends_only_its_connection() {
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let calls = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&calls);
            let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first render fails");
                }
                BODY.to_owned()
            });
            tokio::spawn(async move { serve(listener, Limits::default(), render).await });
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert_eq!(r, "");
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{r}");
        });
    }
}
