//! Client mode: each script client is a real c2s connection to Prosody (RFC 6120 without TLS on
//! loopback: stream, SASL PLAIN, stream restart, resource binding).

use std::collections::HashMap;

use minidom::Element;
use mixd::xmlstream::{StreamEvent, escape};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc::UnboundedSender;

use super::engine::Transport;
use super::wire::{Delivery, EventReader, NS_STREAM, base64, into_channel, show, write};

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_CLIENT: &str = "jabber:client";

struct Connection {
    wr: OwnedWriteHalf,
    task: tokio::task::JoinHandle<()>,
}

/// The script's clients, logged in to the server at `addr`.
pub struct C2sClients {
    addr: String,
    clients: HashMap<String, Connection>,
}

impl C2sClients {
    pub fn new(addr: String) -> Self {
        C2sClients {
            addr,
            clients: HashMap::new(),
        }
    }
}

impl Drop for C2sClients {
    fn drop(&mut self) {
        for c in self.clients.values() {
            c.task.abort();
        }
    }
}

/// Open a stream to `domain` and read the server's header and features.
async fn open_stream(
    reader: &mut EventReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    domain: &str,
) -> Result<Element, String> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAM}' to='{}' version='1.0'>",
        escape(domain)
    );
    write(wr, header.as_bytes()).await?;
    match reader.next_timed("the server's stream header").await? {
        StreamEvent::Header(_) => {}
        other => return Err(format!("expected a stream header, got {other:?}")),
    }
    let features = reader.stanza("stream features").await?;
    if !features.is("features", NS_STREAM) {
        return Err(format!("expected stream features, got {}", show(&features)));
    }
    Ok(features)
}

/// Send an IQ set during login and wait for its result.
async fn login_iq(
    reader: &mut EventReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    id: &str,
    payload: &str,
) -> Result<Element, String> {
    let iq = format!("<iq type='set' id='{id}'>{payload}</iq>");
    write(wr, iq.as_bytes()).await?;
    let reply = reader.stanza("the login IQ's result").await?;
    if reply.is("iq", NS_CLIENT)
        && reply.attr("id") == Some(id)
        && reply.attr("type") == Some("result")
    {
        Ok(reply)
    } else {
        Err(format!("login IQ {id} failed: {}", show(&reply)))
    }
}

/// Log in as `jid` (asking for its resource); returns the streams and the bound full JID.
async fn login(
    addr: &str,
    jid: &jid::FullJid,
    password: &str,
) -> Result<(EventReader<OwnedReadHalf>, OwnedWriteHalf, jid::FullJid), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    let (rd, mut wr) = stream.into_split();
    let mut reader = EventReader::new(rd);
    let domain = jid.domain().as_str();
    let user = jid.node().map(|n| n.as_str()).unwrap_or_default();

    let features = open_stream(&mut reader, &mut wr, domain).await?;
    let plain = features.get_child("mechanisms", NS_SASL).is_some_and(|m| {
        m.children()
            .any(|c| c.name() == "mechanism" && c.text() == "PLAIN")
    });
    if !plain {
        return Err(format!(
            "the server offers no SASL PLAIN: {}",
            show(&features)
        ));
    }
    // RFC 4616: authzid (empty), authcid, password, NUL-separated.
    let creds = base64(format!("\0{user}\0{password}").as_bytes());
    let auth = format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{creds}</auth>");
    write(&mut wr, auth.as_bytes()).await?;
    let outcome = reader.stanza("the SASL outcome").await?;
    if !outcome.is("success", NS_SASL) {
        return Err(format!("login as {user} refused: {}", show(&outcome)));
    }

    // RFC 6120 §6.4.6: after SASL success both sides start a new stream.
    reader.restart();
    let features = open_stream(&mut reader, &mut wr, domain).await?;
    let bind = format!(
        "<bind xmlns='{NS_BIND}'><resource>{}</resource></bind>",
        escape(jid.resource().as_str())
    );
    let bound = login_iq(&mut reader, &mut wr, "bind", &bind).await?;
    let text = bound
        .get_child("bind", NS_BIND)
        .and_then(|b| b.get_child("jid", NS_BIND))
        .map(|j| j.text())
        .unwrap_or_default();
    let full: jid::FullJid = text
        .parse()
        .map_err(|e| format!("the server bound an invalid JID {text:?}: {e}"))?;
    // RFC 3921 sessions: only servers that still require them get one (Prosody marks it
    // optional).
    if let Some(s) = features.get_child("session", NS_SESSION) {
        if !s.has_child("optional", NS_SESSION) {
            login_iq(
                &mut reader,
                &mut wr,
                "session",
                &format!("<session xmlns='{NS_SESSION}'/>"),
            )
            .await?;
        }
    }
    Ok((reader, wr, full))
}

impl Transport for C2sClients {
    async fn connect(
        &mut self,
        name: &str,
        jid: &jid::FullJid,
        password: &str,
        mailbox: UnboundedSender<Delivery>,
    ) -> Result<jid::FullJid, String> {
        if self.clients.contains_key(name) {
            return Err(format!("{name} is already connected"));
        }
        let (reader, wr, full) = login(&self.addr, jid, password).await?;
        let task = tokio::spawn(reader.pump(into_channel(mailbox)));
        self.clients
            .insert(name.to_owned(), Connection { wr, task });
        Ok(full)
    }

    async fn send(&mut self, name: &str, stanza: Element) -> Result<(), String> {
        let c = self
            .clients
            .get_mut(name)
            .ok_or_else(|| format!("{name} is not connected"))?;
        write(&mut c.wr, &mixd::xmlstream::to_bytes(&stanza)).await
    }

    async fn disconnect(&mut self, name: &str) -> Result<(), String> {
        let Some(mut c) = self.clients.remove(name) else {
            return Err(format!("{name} is not connected"));
        };
        let r = write(&mut c.wr, b"</stream:stream>").await;
        c.task.abort();
        r
    }

    fn problems(&mut self) -> Vec<String> {
        // Everything a c2s client sees arrives in its own mailbox.
        Vec::new()
    }
}
