//! Component mode: the runner is the XMPP server. It accepts mixd's XEP-0114 links, checks the
//! handshake, and routes between mixd and the script's clients by address, as a server would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jid::Jid;
use minidom::Element;
use mixd::xmlstream::{StreamEvent, escape};
use rxml::xml_ncname;
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::UnboundedSender;

use super::engine::Transport;
use super::wire::{Delivery, EventReader, NS_STREAM, handshake_digest, show, write};

const NS_COMPONENT: &str = "jabber:component:accept";

/// Who receives what: the connected script clients, and what went wrong outside them.
#[derive(Default)]
struct Routes {
    /// Full JID → (client name, mailbox).
    clients: HashMap<String, (String, UnboundedSender<Delivery>)>,
    problems: Vec<String>,
}

impl Routes {
    /// A stanza (or the end of the stream) that arrived from mixd on the link of `link_domain`.
    fn arrived(&mut self, link_domain: &str, d: Delivery) {
        let el = match d {
            Delivery::Stanza(el) => el,
            Delivery::Closed(why) => {
                self.problems
                    .push(format!("mixd's {link_domain} link ended: {why}"));
                return;
            }
        };
        // A server accepts from a component only what comes from the component's domain
        // (XEP-0114 §3: the component is the domain); a stanza on the wrong link is a bug.
        let from_domain = el
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .map(|j| j.domain().to_string());
        if from_domain.as_deref() != Some(link_domain) {
            self.problems.push(format!(
                "mixd sent a stanza with from={:?} on the {link_domain} link: {}",
                el.attr("from"),
                show(&el)
            ));
            return;
        }
        if let Err(e) = self.deliver(with_lang(el)) {
            self.problems.push(format!("mixd sent {e}"));
        }
    }

    /// Hand a stanza to the client it is addressed to: the full JID, or a client with that
    /// bare JID.
    fn deliver(&mut self, el: Element) -> Result<(), String> {
        let to = el.attr("to").and_then(|t| t.parse::<Jid>().ok());
        let target = match &to {
            None => None,
            Some(j) if j.is_full() => self.clients.get(&j.to_string()),
            Some(bare) => {
                let mut matching: Vec<_> = self
                    .clients
                    .iter()
                    .filter(|(full, _)| {
                        full.parse::<Jid>()
                            .is_ok_and(|j| j.to_bare() == bare.to_bare())
                    })
                    .collect();
                matching.sort_by(|a, b| a.0.cmp(b.0));
                matching.first().map(|(_, c)| *c)
            }
        };
        match target {
            Some((_, tx)) => {
                // A closed mailbox means the client disconnected mid-script; the engine
                // already checked what it had.
                let _ = tx.send(Delivery::Stanza(el));
                Ok(())
            }
            None => Err(format!(
                "a stanza to {:?}, which is no connected client of the script: {}",
                el.attr("to"),
                show(&el)
            )),
        }
    }
}

/// RFC 6120 §4.7.4: a server gives a stanza without `xml:lang` the default language of the
/// stream it came on; Prosody's default is "en" (util/xmppstream.lua), and neither mixd nor the
/// runner's clients declare one. Doing the same here keeps a script's strict matches valid in
/// both modes.
fn with_lang(mut el: Element) -> Element {
    if el
        .attr_ns(&rxml::Namespace::XML, xml_ncname!("lang"))
        .is_none()
    {
        el.set_attr(rxml::Namespace::XML, xml_ncname!("lang").to_owned(), "en");
    }
    el
}

/// The server side of mixd's component links.
pub struct ComponentServer {
    /// Served domain → the write half of its link.
    links: HashMap<String, OwnedWriteHalf>,
    routes: Arc<Mutex<Routes>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ComponentServer {
    /// Accept one link for each of `domains`, authenticated with `secret`. `alive` is asked
    /// while waiting, so that a mixd that exits early fails fast with its reason.
    pub async fn accept(
        listener: &TcpListener,
        domains: &[&str],
        secret: &str,
        within: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> Result<ComponentServer, String> {
        let routes = Arc::new(Mutex::new(Routes::default()));
        let mut server = ComponentServer {
            links: HashMap::new(),
            routes,
            tasks: Vec::new(),
        };
        let start = Instant::now();
        while server.links.len() < domains.len() {
            if start.elapsed() > within {
                return Err(format!(
                    "mixd did not open its component links within {within:?} (have {:?})",
                    server.links.keys().collect::<Vec<_>>()
                ));
            }
            alive()?;
            let Ok(accepted) =
                tokio::time::timeout(Duration::from_millis(200), listener.accept()).await
            else {
                continue;
            };
            let (stream, _) = accepted.map_err(|e| format!("accept failed: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("set_nodelay: {e}"))?;
            let (rd, mut wr) = stream.into_split();
            let mut reader = EventReader::new(rd);
            let domain = handshake(&mut reader, &mut wr, domains, secret).await?;
            if server.links.contains_key(&domain) {
                return Err(format!("mixd opened a second link for {domain}"));
            }
            let routes = server.routes.clone();
            let link_domain = domain.clone();
            server.tasks.push(tokio::spawn(reader.pump(move |d| {
                match routes.lock() {
                    Ok(mut r) => r.arrived(&link_domain, d),
                    Err(_) => return false,
                }
                true
            })));
            server.links.insert(domain, wr);
        }
        Ok(server)
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // Routes are only touched under this lock and nothing panics while holding it; a
        // poisoned lock would mean the runner itself is broken.
        self.routes.lock().expect("routes lock")
    }
}

impl Drop for ComponentServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// XEP-0114 §3 from the server's side: read mixd's stream header, answer with a random stream
/// id, check `<handshake>` = hex(SHA-1(id + secret)), confirm with an empty `<handshake/>`.
/// Returns the domain the link serves.
async fn handshake(
    reader: &mut EventReader<tokio::net::tcp::OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    domains: &[&str],
    secret: &str,
) -> Result<String, String> {
    let header = match reader.next_timed("mixd's stream header").await? {
        StreamEvent::Header(h) => h,
        other => return Err(format!("expected a stream header from mixd, got {other:?}")),
    };
    if header.ns != NS_STREAM || header.name != "stream" {
        return Err(format!("not a stream header: {header:?}"));
    }
    let domain = header.attr("to").unwrap_or_default().to_owned();
    if !domains.contains(&domain.as_str()) {
        return Err(format!(
            "mixd asked for a link to {domain:?}; expected one of {domains:?}"
        ));
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let reply = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAM}' id='{id}' from='{}'>",
        escape(&domain)
    );
    write(wr, reply.as_bytes()).await?;
    let hs = reader.stanza("mixd's <handshake>").await?;
    if !hs.is("handshake", NS_COMPONENT) {
        return Err(format!("expected <handshake>, got {}", show(&hs)));
    }
    let want = handshake_digest(&id, secret);
    if hs.text().trim() != want {
        let refusal = "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let _ = write(wr, refusal.as_bytes()).await;
        return Err(format!(
            "mixd's handshake for {domain} is {:?}, expected {want:?}",
            hs.text()
        ));
    }
    write(wr, b"<handshake/>").await?;
    Ok(domain)
}

impl Transport for ComponentServer {
    async fn connect(
        &mut self,
        name: &str,
        jid: &jid::FullJid,
        _password: &str,
        mailbox: UnboundedSender<Delivery>,
    ) -> Result<jid::FullJid, String> {
        let mut routes = self.routes();
        if routes.clients.contains_key(&jid.to_string()) {
            return Err(format!("{jid} is already connected"));
        }
        routes
            .clients
            .insert(jid.to_string(), (name.to_owned(), mailbox));
        Ok(jid.clone())
    }

    async fn send(&mut self, name: &str, mut stanza: Element) -> Result<(), String> {
        let full = {
            let routes = self.routes();
            routes
                .clients
                .iter()
                .find(|(_, (n, _))| n == name)
                .map(|(full, _)| full.clone())
                .ok_or_else(|| format!("{name} is not connected"))?
        };
        // The server stamps the sender's full JID, as it does for c2s clients (RFC 6120 §8.1.2.1).
        if stanza.attr("from").is_none() {
            stanza.set_attr(rxml::Namespace::NONE, xml_ncname!("from").to_owned(), full);
        }
        let stanza = with_lang(stanza);
        let to = stanza
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .ok_or_else(|| format!("stanza without a valid to: {}", show(&stanza)))?;
        match self.links.get_mut(to.domain().as_str()) {
            Some(wr) => write(wr, &mixd::xmlstream::to_bytes(&stanza)).await,
            // Client to client: deliver like the server would.
            None => self.routes().deliver(stanza),
        }
    }

    async fn disconnect(&mut self, name: &str) -> Result<(), String> {
        let mut routes = self.routes();
        routes.clients.retain(|_, (n, _)| n != name);
        Ok(())
    }

    fn problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.routes().problems)
    }
}
