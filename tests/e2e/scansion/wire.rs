//! Byte-level helpers shared by both modes: reading stream events from a socket with mixd's own
//! push parser, and the two encodings the handshakes need (hex SHA-1, base64).

use std::time::Duration;

use minidom::Element;
use mixd::xmlstream::{StreamEvent, StreamParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";

/// The runner trusts its peers' sizes: this only bounds a runaway test.
const LIMIT: usize = 16 << 20;

/// How long any single read during a handshake may take before the peer is considered stuck.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a reader task hands to whoever consumes one stream.
#[derive(Debug)]
pub enum Delivery {
    Stanza(Element),
    /// The stream ended or broke; the text says how.
    Closed(String),
}

/// Stream events read from one socket.
pub struct EventReader<R> {
    rd: R,
    parser: StreamParser,
    pending: std::collections::VecDeque<StreamEvent>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> EventReader<R> {
    pub fn new(rd: R) -> Self {
        EventReader {
            rd,
            parser: StreamParser::new(LIMIT),
            pending: Default::default(),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Start parsing a new stream on the same socket (after SASL success, RFC 6120 §6.4.6).
    pub fn restart(&mut self) {
        self.parser = StreamParser::new(LIMIT);
        self.pending.clear();
    }

    /// The next stream event; an error when the socket closes or the XML breaks.
    pub async fn next(&mut self) -> Result<StreamEvent, String> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            let n = self
                .rd
                .read(&mut self.buf)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            let mut out = Vec::new();
            self.parser
                .feed(&self.buf[..n], &mut out)
                .map_err(|e| e.to_string())?;
            self.pending.extend(out);
        }
    }

    /// [`Self::next`] with [`HANDSHAKE_TIMEOUT`], for the strictly sequential handshake phases.
    pub async fn next_timed(&mut self, what: &str) -> Result<StreamEvent, String> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.next())
            .await
            .map_err(|_| format!("timed out waiting for {what}"))?
    }

    /// The next top-level element; the stream ending or a stream error is an error here.
    pub async fn stanza(&mut self, what: &str) -> Result<Element, String> {
        match self.next_timed(what).await? {
            StreamEvent::Stanza(el) if el.is("error", NS_STREAM) => Err(format!(
                "stream error while waiting for {what}: {}",
                show(&el)
            )),
            StreamEvent::Stanza(el) => Ok(el),
            other => Err(format!("expected {what}, got {other:?}")),
        }
    }

    /// Forward every stanza to `deliver` until the stream ends; then report how it ended. Runs
    /// as its own task so that stanzas are collected while the script waits on something else.
    pub async fn pump(mut self, mut deliver: impl FnMut(Delivery) -> bool) {
        loop {
            let d = match self.next().await {
                Ok(StreamEvent::Stanza(el)) if el.is("error", NS_STREAM) => {
                    Delivery::Closed(format!("stream error {}", show(&el)))
                }
                Ok(StreamEvent::Stanza(el)) => Delivery::Stanza(el),
                Ok(StreamEvent::Oversized { head, bytes }) => Delivery::Closed(format!(
                    "a {bytes}-byte stanza exceeded the runner's limit: {}",
                    show(&head)
                )),
                Ok(StreamEvent::End) => Delivery::Closed("the peer ended the stream".into()),
                Ok(StreamEvent::Header(_)) => continue,
                Err(e) => Delivery::Closed(e),
            };
            let closed = matches!(d, Delivery::Closed(_));
            if !deliver(d) || closed {
                return;
            }
        }
    }
}

/// Forward deliveries into a channel; false once nobody listens any more.
pub fn into_channel(tx: mpsc::UnboundedSender<Delivery>) -> impl FnMut(Delivery) -> bool {
    move |d| tx.send(d).is_ok()
}

pub async fn write(wr: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<(), String> {
    wr.write_all(bytes)
        .await
        .map_err(|e| format!("write failed: {e}"))
}

/// An element as one line of XML, for failure messages.
pub fn show(el: &Element) -> String {
    String::from_utf8_lossy(&mixd::xmlstream::to_bytes(el)).into_owned()
}

/// An expected stanza from a script as one line: without the indentation whitespace, which
/// the matching rules ignore anyway.
pub fn show_compact(el: &Element) -> String {
    fn strip(el: &Element) -> Element {
        let mut out = el.clone();
        let nodes = out.take_nodes();
        for node in nodes {
            match node {
                minidom::Node::Element(child) => {
                    out.append_child(strip(&child));
                }
                minidom::Node::Text(t) if t.trim().is_empty() => {}
                minidom::Node::Text(t) => out.append_text_node(t),
            }
        }
        out
    }
    show(&strip(el))
}

/// XEP-0114 §3: lowercase hex of SHA-1(stream id + secret).
pub fn handshake_digest(id: &str, secret: &str) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(format!("{id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Standard base64 with padding (RFC 4648 §4), for SASL PLAIN. Written here because the test
/// build has no base64 crate of its own and this is all it needs.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
        assert_eq!(super::base64(b"\0alice\0alice"), "AGFsaWNlAGFsaWNl");
    }

    #[test]
    fn handshake_digest_is_lowercase_hex_sha1() {
        // SHA-1("abc") from FIPS 180-2, appendix A.
        assert_eq!(
            super::handshake_digest("ab", "c"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
