//! One XEP-0114 component link: connect, handshake, read stanzas, write batches, reconnect.
//!
//! Built on tokio and rxml/minidom rather than `tokio_xmpp::Component`, which never reconnects,
//! cannot tell a disconnect from a silent link or a stanza it failed to parse, and holds a whole
//! stanza in memory whatever its size (NOTES.md, "The component link").
//!
//! The link owns its outbound queue across reconnects: producers hold an [`Outbound`] and wait
//! when the queue is full (back-pressure, never unbounded memory); the writer drains it in
//! batches, one `write_all` per batch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use minidom::Element;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::xmlstream::{StreamEvent, StreamParser, escape};

pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// Largest batch the writer gathers before one write.
const BATCH: usize = 512;
/// A whitespace keepalive after this much write silence, so a dead peer is noticed.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Buffers at least this large are written directly instead of gathered.
const DIRECT_WRITE: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight replies before closing the stream.
pub const DRAIN_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where and as whom a link connects.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    pub server: String,
    pub domain: String,
    pub secret: String,
    pub max_stanza_bytes: usize,
    pub reconnect_max: Duration,
}

/// What the link hands to the router.
#[derive(Debug)]
pub enum Inbound {
    Stanza(Element),
    /// A stanza over the size limit: only its head (name and attributes).
    Oversized {
        head: Element,
        bytes: usize,
    },
}

/// A handle to send stanzas out through one link; cloning is cheap.
#[derive(Clone, Debug)]
pub struct Outbound {
    tx: mpsc::Sender<Bytes>,
}

impl Outbound {
    /// Queue serialised bytes; waits while the queue is full.
    pub async fn send_bytes(&self, bytes: Bytes) {
        if self.tx.send(bytes).await.is_err() {
            tracing::debug!("link is gone; stanza dropped at shutdown");
        }
    }

    pub async fn send(&self, el: &Element) {
        self.send_bytes(Bytes::from(crate::xmlstream::to_bytes(el)))
            .await
    }
}

/// Whether the link is up now; read by /health.
#[derive(Debug, Default)]
pub struct LinkStatus {
    pub up: AtomicBool,
}

/// A link before it runs: its spec, its queue and its status.
pub struct Link {
    spec: LinkSpec,
    rx: mpsc::Receiver<Bytes>,
    pub status: Arc<LinkStatus>,
}

impl Link {
    pub fn new(spec: LinkSpec, queue: usize) -> (Link, Outbound) {
        let (tx, rx) = mpsc::channel(queue);
        (
            Link {
                spec,
                rx,
                status: Arc::default(),
            },
            Outbound { tx },
        )
    }

    /// Keep the link up until `shutdown`; stanzas read go to `inbound`.
    ///
    /// On shutdown the reader stops first; the writer then drains what the router still sends
    /// (until every [`Outbound`] is dropped or [`DRAIN_TIMEOUT`]) and closes the stream.
    pub async fn run(mut self, inbound: mpsc::Sender<Inbound>, shutdown: CancellationToken) {
        let domain = self.spec.domain.clone();
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let attempt = tokio::select! {
                r = connect(&self.spec) => r,
                _ = shutdown.cancelled() => break,
            };
            match attempt {
                Ok((stream, parser, early)) => {
                    failures = 0;
                    tracing::info!(%domain, server = %self.spec.server, "component link up");
                    self.status.up.store(true, Ordering::Relaxed);
                    let end =
                        session(stream, parser, early, &mut self.rx, &inbound, &shutdown).await;
                    self.status.up.store(false, Ordering::Relaxed);
                    match end {
                        SessionEnd::Shutdown => {
                            tracing::info!(%domain, "component link closed");
                            return;
                        }
                        SessionEnd::Lost(reason) => {
                            metrics::counter!("mixd_link_reconnects_total", "domain" => domain.clone())
                                .increment(1);
                            tracing::warn!(%domain, %reason, "component link lost; reconnecting");
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%domain, server = %self.spec.server, error = %e, attempt = failures,
                        "component link failed; will retry");
                }
            }
            let delay = backoff(failures, self.spec.reconnect_max);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => break,
            }
        }
    }
}

/// 0.5 s doubling up to `max`, with ±25 % jitter so that many services do not reconnect in step.
fn backoff(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << failures.saturating_sub(1).min(10))
        .min(max);
    let jitter: f64 = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the server: {0}")]
    Unreachable(std::io::Error),
    #[error("timed out connecting to the server")]
    Timeout,
    #[error("the server refused the component secret (stream error {0}); check the secret")]
    Refused(String),
    #[error("the server closed the stream: stream error {0}")]
    StreamError(String),
    #[error("the server closed the connection during the handshake")]
    Closed,
    #[error("I/O error during the handshake: {0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Xml(#[from] crate::xmlstream::NotWellFormed),
}

/// Connect and authenticate (XEP-0114 §3): stream header, `<handshake>` with
/// hex(SHA-1(stream id + secret)), wait for the empty `<handshake/>`. Returns, with the
/// stream and its parser, whatever the server sent right behind the `<handshake/>` in the
/// same read: those stanzas are the session's first.
async fn connect(
    spec: &LinkSpec,
) -> Result<(TcpStream, StreamParser, Vec<StreamEvent>), ConnectError> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&spec.server))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(ConnectError::Unreachable)?;
    stream.set_nodelay(true).map_err(ConnectError::Io)?;
    let mut parser = StreamParser::new(spec.max_stanza_bytes);
    let early = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, &mut parser, spec))
        .await
        .map_err(|_| ConnectError::Timeout)??;
    Ok((stream, parser, early))
}

async fn handshake(
    stream: &mut TcpStream,
    parser: &mut StreamParser,
    spec: &LinkSpec,
) -> Result<Vec<StreamEvent>, ConnectError> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAM}' to='{}'>",
        escape(&spec.domain)
    );
    stream
        .write_all(header.as_bytes())
        .await
        .map_err(ConnectError::Io)?;
    let mut buf = vec![0u8; 8192];
    let mut events = Vec::new();
    let mut sent_handshake = false;
    loop {
        let n = stream.read(&mut buf).await.map_err(ConnectError::Io)?;
        if n == 0 {
            return Err(ConnectError::Closed);
        }
        parser.feed(&buf[..n], &mut events)?;
        let mut pending = std::mem::take(&mut events).into_iter();
        while let Some(ev) = pending.next() {
            match ev {
                StreamEvent::Header(h) if !sent_handshake => {
                    let id = h.attr("id").unwrap_or_default();
                    let digest = Sha1::digest(format!("{id}{}", spec.secret).as_bytes());
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    stream
                        .write_all(format!("<handshake>{hex}</handshake>").as_bytes())
                        .await
                        .map_err(ConnectError::Io)?;
                    sent_handshake = true;
                }
                StreamEvent::Stanza(el) if el.is("handshake", NS_COMPONENT) => {
                    return Ok(pending.collect());
                }
                StreamEvent::Stanza(el) if el.is("error", NS_STREAM) => {
                    let condition = stream_error_condition(&el);
                    return Err(if condition == "not-authorized" {
                        ConnectError::Refused(condition)
                    } else {
                        ConnectError::StreamError(condition)
                    });
                }
                StreamEvent::End => return Err(ConnectError::Closed),
                other => tracing::debug!(?other, "ignored during handshake"),
            }
        }
    }
}

fn stream_error_condition(el: &Element) -> String {
    el.children()
        .find(|c| c.ns() == NS_STREAM_ERRORS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".into())
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

async fn session(
    stream: TcpStream,
    parser: StreamParser,
    early: Vec<StreamEvent>,
    rx: &mut mpsc::Receiver<Bytes>,
    inbound: &mpsc::Sender<Inbound>,
    shutdown: &CancellationToken,
) -> SessionEnd {
    let (rd, wr) = stream.into_split();
    let reader = read_loop(rd, parser, early, inbound, shutdown);
    let writer = write_loop(wr, rx);
    tokio::pin!(reader, writer);
    tokio::select! {
        end = &mut reader => match end {
            ReadEnd::Shutdown => {
                // Finish in-flight work: the router drops its senders when it is done.
                match tokio::time::timeout(DRAIN_TIMEOUT, &mut writer).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "write failed while draining"),
                    Err(_) => tracing::warn!("replies still pending at shutdown; closing anyway"),
                }
                SessionEnd::Shutdown
            }
            ReadEnd::Lost(reason) => SessionEnd::Lost(reason),
        },
        res = &mut writer => match res {
            Ok(()) => SessionEnd::Shutdown,
            Err(e) => SessionEnd::Lost(format!("write failed: {e}")),
        },
    }
}

enum ReadEnd {
    Shutdown,
    Lost(String),
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut parser: StreamParser,
    early: Vec<StreamEvent>,
    inbound: &mpsc::Sender<Inbound>,
    shutdown: &CancellationToken,
) -> ReadEnd {
    let mut buf = vec![0u8; 64 * 1024];
    let mut events = early;
    loop {
        if let Some(end) = deliver(&mut events, inbound).await {
            return end;
        }
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => return ReadEnd::Lost("server closed the connection".into()),
                Ok(n) => n,
                Err(e) => return ReadEnd::Lost(format!("read failed: {e}")),
            },
            _ = shutdown.cancelled() => return ReadEnd::Shutdown,
        };
        if let Err(e) = parser.feed(&buf[..n], &mut events) {
            // RFC 6120 §4.9.3.13: not-well-formed XML ends the stream; the link reconnects.
            return ReadEnd::Lost(e.to_string());
        }
    }
}

/// Hand parsed events to the router; `Some` when the session must end.
async fn deliver(
    events: &mut Vec<StreamEvent>,
    inbound: &mpsc::Sender<Inbound>,
) -> Option<ReadEnd> {
    for ev in events.drain(..) {
        let item = match ev {
            StreamEvent::Stanza(el) if el.is("error", NS_STREAM) => {
                return Some(ReadEnd::Lost(format!(
                    "stream error {}",
                    stream_error_condition(&el)
                )));
            }
            StreamEvent::Stanza(el) => Inbound::Stanza(el),
            StreamEvent::Oversized { head, bytes } => Inbound::Oversized { head, bytes },
            StreamEvent::End => return Some(ReadEnd::Lost("server ended the stream".into())),
            StreamEvent::Header(_) => continue,
        };
        if inbound.send(item).await.is_err() {
            return Some(ReadEnd::Shutdown);
        }
    }
    None
}

/// Drain the queue in batches. Returns Ok when every sender is gone (shutdown), after closing
/// the stream.
async fn write_loop(mut wr: OwnedWriteHalf, rx: &mut mpsc::Receiver<Bytes>) -> std::io::Result<()> {
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let got = match tokio::time::timeout(KEEPALIVE, rx.recv_many(&mut batch, BATCH)).await {
            Ok(n) => n,
            Err(_) => {
                wr.write_all(b" ").await?;
                continue;
            }
        };
        if got == 0 {
            wr.write_all(b"</stream:stream>").await?;
            wr.shutdown().await?;
            return Ok(());
        }
        // Small stanzas are gathered into one write; a large buffer (a fan-out chunk) goes out
        // as it is rather than being copied again.
        buf.clear();
        for b in batch.drain(..) {
            if b.len() >= DIRECT_WRITE {
                if !buf.is_empty() {
                    wr.write_all(&buf).await?;
                    buf.clear();
                }
                wr.write_all(&b).await?;
            } else {
                buf.extend_from_slice(&b);
            }
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
        }
        metrics::counter!("mixd_link_writes_total").increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server may send stanzas right behind `<handshake/>`, in the same TCP segment; they
    /// are the session's first stanzas, not leftovers of the handshake.
    #[tokio::test]
    async fn stanzas_in_the_same_read_as_the_handshake_are_delivered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let spec = LinkSpec {
            server: listener.local_addr().expect("addr").to_string(),
            domain: "mix.x".into(),
            secret: "s".into(),
            max_stanza_bytes: 65536,
            reconnect_max: Duration::from_secs(1),
        };
        let (link, _out) = Link::new(spec, 16);
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(link.run(tx, stop.clone()));
        let (mut sock, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("<stream:stream") {
            let n = sock.read(&mut buf).await.expect("read");
            seen.extend_from_slice(&buf[..n]);
        }
        sock.write_all(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
              xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='mix.x'>",
        )
        .await
        .expect("header");
        seen.clear();
        while !String::from_utf8_lossy(&seen).contains("</handshake>") {
            let n = sock.read(&mut buf).await.expect("read");
            seen.extend_from_slice(&buf[..n]);
        }
        sock.write_all(
            b"<handshake/><iq type='get' id='early' from='a@x/r' to='mix.x'>\
              <ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await
        .expect("handshake and a stanza");
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("delivered")
            .expect("open");
        let Inbound::Stanza(el) = got else {
            panic!("not a stanza: {got:?}")
        };
        assert_eq!(el.attr("id"), Some("early"));
        stop.cancel();
        let _ = task.await;
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(30);
        let first = backoff(1, max);
        assert!(first >= Duration::from_millis(375) && first <= Duration::from_millis(625));
        let later = backoff(20, max);
        assert!(later <= max.mul_f64(1.25) && later >= max.mul_f64(0.75));
    }
}
