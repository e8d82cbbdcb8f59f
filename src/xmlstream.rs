//! An incremental reader for one XMPP stream (RFC 6120 §4), pure and push-driven.
//!
//! Bytes go in with [`StreamParser::feed`]; stream events come out: the stream header, each
//! top-level stanza as a [`minidom::Element`], and the end of the stream. It is shared by the
//! component link and by the test runner (which plays both a server and c2s clients), so it knows
//! nothing about sockets or about what the stanzas mean.
//!
//! A stanza larger than the limit is never built in memory: once its bytes pass the limit, the
//! parser keeps only its top element's name and attributes (enough to address an error reply) and
//! skips the rest, so a peer cannot make the service allocate without bound.

use minidom::Element;
use rxml::{AttrMap, Event, Parse, Parser};

/// One thing read from a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The opening `<stream:stream>`: its attributes (`id`, `from`, `to`, ...).
    Header(Header),
    /// One complete top-level element.
    Stanza(Element),
    /// A top-level element that exceeded the size limit and was skipped. The element holds the
    /// name, namespace and attributes only, without any children.
    Oversized { head: Element, bytes: usize },
    /// `</stream:stream>`.
    End,
}

/// The attributes of a stream header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Header {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<(String, String)>,
}

impl Header {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The stream broke: the XML is not well-formed (RFC 6120 §4.9.3.13, a stream error, not a stanza
/// error: the parser cannot know where the next stanza starts).
#[derive(Debug, thiserror::Error)]
#[error("XML is not well-formed: {0}")]
pub struct NotWellFormed(pub String);

/// The push parser for one stream. Create a new one for every new stream.
pub struct StreamParser {
    parser: Parser,
    limit: usize,
    /// Elements open below the stream root; `stack[0]` is the current stanza.
    stack: Vec<Element>,
    /// Bytes seen for the current stanza so far.
    stanza_bytes: usize,
    /// Set while skipping an oversized stanza: its head and how deep we are inside it.
    skipping: Option<(Element, usize)>,
    in_stream: bool,
}

impl StreamParser {
    /// A parser refusing stanzas above `limit` bytes.
    pub fn new(limit: usize) -> Self {
        StreamParser {
            parser: Parser::new(),
            limit,
            stack: Vec::new(),
            stanza_bytes: 0,
            skipping: None,
            in_stream: false,
        }
    }

    /// Feed the next bytes of the stream; events that became complete are pushed onto `out`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), NotWellFormed> {
        loop {
            match self.parser.parse(&mut data, false) {
                Ok(Some(ev)) => self.event(ev, out),
                Ok(None) => return Ok(()),
                Err(rxml::error::EndOrError::NeedMoreData) => return Ok(()),
                Err(rxml::error::EndOrError::Error(e)) => return Err(NotWellFormed(e.to_string())),
            }
        }
    }

    fn event(&mut self, ev: Event, out: &mut Vec<StreamEvent>) {
        let len = ev.metrics().len();
        match ev {
            Event::XmlDeclaration(..) => {}
            Event::StartElement(_, (ns, name), attrs) => {
                if !self.in_stream {
                    self.in_stream = true;
                    out.push(StreamEvent::Header(Header {
                        ns: ns.to_string(),
                        name: name.to_string(),
                        attrs: plain_attrs(&attrs),
                    }));
                    return;
                }
                if let Some((_, depth)) = &mut self.skipping {
                    *depth += 1;
                    return;
                }
                if self.stack.is_empty() {
                    self.stanza_bytes = 0;
                }
                self.stanza_bytes += len;
                let mut el = Element::bare(name.to_string(), ns.to_string());
                *el.attrs_mut() = attrs;
                self.stack.push(el);
                self.check_size();
            }
            Event::Text(_, text) => {
                if self.skipping.is_some() {
                    return;
                }
                // Whitespace between stanzas (keepalives) is not part of any stanza.
                let Some(top) = self.stack.last_mut() else {
                    return;
                };
                self.stanza_bytes += len;
                top.append_text(text);
                self.check_size();
            }
            Event::EndElement(_) => {
                if let Some((head, depth)) = &mut self.skipping {
                    if *depth > 0 {
                        *depth -= 1;
                    } else {
                        let head = head.clone();
                        out.push(StreamEvent::Oversized {
                            head,
                            bytes: self.stanza_bytes,
                        });
                        self.skipping = None;
                    }
                    return;
                }
                match self.stack.pop() {
                    None => out.push(StreamEvent::End),
                    Some(el) => {
                        self.stanza_bytes += len;
                        match self.stack.last_mut() {
                            Some(parent) => {
                                parent.append_child(el);
                            }
                            None => out.push(StreamEvent::Stanza(el)),
                        }
                    }
                }
            }
        }
    }

    fn check_size(&mut self) {
        if self.stanza_bytes <= self.limit {
            return;
        }
        // Keep the stanza's head, drop everything built so far; depth counts the open
        // elements inside the head that still have to close.
        let depth = self.stack.len() - 1;
        let mut stack = std::mem::take(&mut self.stack);
        stack.truncate(1);
        if let Some(mut head) = stack.pop() {
            let _ = head.take_nodes();
            self.skipping = Some((head, depth));
        }
    }
}

fn plain_attrs(attrs: &AttrMap) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|((_, name), value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Serialise a stanza for the wire.
pub fn to_bytes(el: &Element) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    // Writing into a Vec cannot fail for I/O reasons; minidom only fails on invalid names, which
    // an Element built through its API cannot hold.
    if let Err(e) = el.write_to(&mut buf) {
        tracing::error!(error = %e, "could not serialise a stanza");
        buf.clear();
    }
    buf
}

/// Escape text for use inside an attribute value or element body written by hand.
/// Append `s` escaped for an attribute value; the common case (nothing to escape) is one copy.
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>' | b'\'' | b'"'))
    {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend_from_slice(escape(s).as_bytes());
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='mix.localhost'>";

    fn feed_all(p: &mut StreamParser, chunks: &[&[u8]]) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).expect("well-formed");
        }
        out
    }

    #[test]
    fn header_stanzas_and_end() {
        let mut p = StreamParser::new(1 << 16);
        let ev = feed_all(
            &mut p,
            &[
                HEAD.as_bytes(),
                b" <iq type='get' id='1' to='mix.localhost' from='a@localhost/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
                b"<message><body>hi &amp; bye</body></message></stream:stream>",
            ],
        );
        let StreamEvent::Header(h) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(h.attr("id"), Some("abc"));
        assert_eq!(h.name, "stream");
        let StreamEvent::Stanza(iq) = &ev[1] else {
            panic!()
        };
        assert!(iq.is("iq", "jabber:component:accept"));
        assert_eq!(iq.attr("from"), Some("a@localhost/r"));
        assert!(iq.has_child("query", "http://jabber.org/protocol/disco#info"));
        let StreamEvent::Stanza(msg) = &ev[2] else {
            panic!()
        };
        assert_eq!(
            msg.get_child("body", "jabber:component:accept")
                .map(|b| b.text()),
            Some("hi & bye".into())
        );
        assert_eq!(ev[3], StreamEvent::End);
        assert_eq!(ev.len(), 4);
    }

    #[test]
    fn byte_at_a_time() {
        let mut p = StreamParser::new(1 << 16);
        let whole = format!("{HEAD}<presence to='x@y'><status>é</status></presence>");
        let mut out = Vec::new();
        for b in whole.as_bytes() {
            p.feed(std::slice::from_ref(b), &mut out).expect("ok");
        }
        assert_eq!(out.len(), 2, "{out:?}");
        let StreamEvent::Stanza(p) = &out[1] else {
            panic!()
        };
        assert_eq!(p.children().next().map(|s| s.text()), Some("é".into()));
    }

    #[test]
    fn oversized_is_skipped_and_next_stanza_survives() {
        let mut p = StreamParser::new(200);
        let big = "x".repeat(5000);
        let ev = feed_all(
            &mut p,
            &[
                HEAD.as_bytes(),
                format!("<message id='m1' from='a@b/c' to='r@mix.localhost'><body>{big}</body><x><y/></x></message>").as_bytes(),
                b"<iq type='get' id='2'/>",
            ],
        );
        assert_eq!(ev.len(), 3, "{ev:?}");
        let StreamEvent::Oversized { head, bytes } = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(head.name(), "message");
        assert_eq!(head.attr("id"), Some("m1"));
        assert_eq!(head.children().count(), 0);
        assert!(*bytes > 200);
        let StreamEvent::Stanza(iq) = &ev[2] else {
            panic!()
        };
        assert_eq!(iq.attr("id"), Some("2"));
    }

    #[test]
    fn broken_xml_is_an_error() {
        let mut p = StreamParser::new(1000);
        let mut out = Vec::new();
        p.feed(HEAD.as_bytes(), &mut out).expect("head");
        assert!(p.feed(b"<message></iq>", &mut out).is_err());
    }

    #[test]
    fn serialise_round_trip() {
        let el: Element =
            "<message xmlns='jabber:component:accept' to='a@b'><body>&lt;3</body></message>"
                .parse()
                .expect("parse");
        let bytes = to_bytes(&el);
        let mut p = StreamParser::new(1000);
        let mut out = Vec::new();
        p.feed(HEAD.as_bytes(), &mut out).expect("head");
        p.feed(&bytes, &mut out).expect("stanza");
        assert_eq!(out[1], StreamEvent::Stanza(el));
    }
}
