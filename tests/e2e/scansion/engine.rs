//! Runs a script's steps over a transport, the same way in both modes: the transport only knows
//! how to bring a client online, send for it and take it offline; mailboxes, matching (jasca's
//! `ScanElement`), timeouts and the end-of-script check are here.

use std::collections::HashMap;
use std::time::Duration;

use jasca::{Entity, ScanElement};
use minidom::Element;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::script::{Mode, Script, Verb, element};
use super::wire::{Delivery, show, show_compact};

/// How long `receives:` waits for the next stanza.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `receives: nothing` listens before it is satisfied.
pub const NOTHING_WINDOW: Duration = Duration::from_millis(300);
/// After the last step, how long stray stanzas get to arrive before the final check, so that a
/// duplicate reply right after the expected one is still caught.
pub const SETTLE: Duration = Duration::from_millis(200);

/// The mode-specific half of running a script.
pub trait Transport {
    /// Bring a script client online; stanzas for it go to `mailbox`. Returns the full JID it
    /// got (the server may pick another resource than the one asked for).
    async fn connect(
        &mut self,
        name: &str,
        jid: &jid::FullJid,
        password: &str,
        mailbox: UnboundedSender<Delivery>,
    ) -> Result<jid::FullJid, String>;

    /// Send a stanza as the client `name`.
    async fn send(&mut self, name: &str, stanza: Element) -> Result<(), String>;

    async fn disconnect(&mut self, name: &str) -> Result<(), String>;

    /// Problems seen outside any client's stream since the last call (component mode: stanzas
    /// mixd addressed to nobody, a link that dropped).
    fn problems(&mut self) -> Vec<String>;
}

/// Run every step; the first failure ends the script, as in scansion.
/// `service(false)` stops mixd and `service(true)` starts it again on the same data, for the
/// scripts that restart it (`[Component]` steps).
pub async fn execute(
    t: &mut impl Transport,
    script: &Script,
    mode: Mode,
    service: &mut dyn FnMut(bool) -> Result<(), String>,
) -> Result<(), String> {
    let mut context = script.context.clone();
    // `{scansion:capture:NAME}` values seen so far (Prosody's scansion: the first match
    // captures, later ones must be equal).
    let mut captures: HashMap<String, String> = HashMap::new();
    let mut boxes: HashMap<String, UnboundedReceiver<Delivery>> = HashMap::new();
    for step in &script.steps {
        let who = step.who.as_str();
        let result = match &step.verb {
            Verb::Connect => {
                let (jid, password) = match context.get(who) {
                    Some(Entity::Client(c)) => (c.jid.clone(), c.password.clone()),
                    _ => return Err(format!("{}: no such client", step.describe())),
                };
                let full = jid
                    .try_as_full()
                    .map_err(|b| format!("{}: {b} has no resource", step.describe()))?
                    .clone();
                let (tx, rx) = mpsc::unbounded_channel();
                match t.connect(who, &full, &password, tx).await {
                    Ok(bound) => {
                        if let Some(Entity::Client(c)) = context.get_mut(who) {
                            c.jid = bound.into();
                        }
                        boxes.insert(who.to_owned(), rx);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Verb::Disconnect => {
                let r = t.disconnect(who).await;
                // The end of the stream is what a disconnect asks for; any stanza still queued
                // was not expected by the script.
                let left: Vec<Delivery> = boxes
                    .remove(who)
                    .map(leftovers)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| matches!(d, Delivery::Stanza(_)))
                    .collect();
                r.and_then(|()| unexpected(who, &left))
            }
            Verb::Send(xml) => match element(xml, mode.stanza_ns(), &context) {
                Ok(mut el) if boxes.contains_key(who) => {
                    // What was captured before can be sent back (an archive id to page from).
                    substitute_captures(&mut el, &captures);
                    t.send(who, el).await
                }
                Ok(_) => Err(format!("{who} is not connected")),
                Err(e) => Err(e),
            },
            Verb::Receive(xml) => {
                match (element(xml, mode.stanza_ns(), &context), boxes.get_mut(who)) {
                    (Err(e), _) => Err(e),
                    (Ok(_), None) => Err(format!("{who} is not connected")),
                    (Ok(expected), Some(rx)) => receive(rx, expected, &mut captures).await,
                }
            }
            Verb::ServiceStop => tokio::task::block_in_place(|| service(false)),
            Verb::ServiceStart => tokio::task::block_in_place(|| service(true)),
            Verb::ReceiveNothing => match boxes.get_mut(who) {
                None => Err(format!("{who} is not connected")),
                Some(rx) => {
                    tokio::time::sleep(NOTHING_WINDOW).await;
                    let left = leftovers_of(rx);
                    unexpected(who, &left)
                }
            },
        };
        let problems = t.problems();
        result
            .and_then(|()| problems_to_result(problems))
            .map_err(|e| format!("{}: {e}", step.describe()))?;
    }
    tokio::time::sleep(SETTLE).await;
    let mut names: Vec<_> = boxes.keys().cloned().collect();
    names.sort();
    for name in names {
        if let Some(rx) = boxes.get_mut(&name) {
            unexpected(&name, &leftovers_of(rx))
                .map_err(|e| format!("after the last step: {e}"))?;
        }
    }
    problems_to_result(t.problems()).map_err(|e| format!("after the last step: {e}"))
}

const CAPTURE: &str = "{scansion:capture:";

/// The capture variable an attribute value names, if it is `{scansion:capture:NAME}`.
fn capture_name(value: &str) -> Option<&str> {
    value.strip_prefix(CAPTURE)?.strip_suffix('}')
}

/// Known captures filled in; unknown ones match anything (and are collected after a match).
fn fill_captures(el: &mut Element, known: &HashMap<String, String>) {
    for (_, value) in el.attrs_mut().iter_mut() {
        if let Some(name) = capture_name(value) {
            *value = known
                .get(name)
                .cloned()
                .unwrap_or_else(|| "{scansion:any}".to_owned());
        }
    }
    for c in el.children_mut() {
        fill_captures(c, known);
    }
}

/// In a stanza to send: attributes and texts that are `{scansion:capture:NAME}` of a known
/// capture become its value (an extension: Prosody's scansion captures in received stanzas only).
fn substitute_captures(el: &mut Element, known: &HashMap<String, String>) {
    for (_, value) in el.attrs_mut().iter_mut() {
        if let Some(v) = capture_name(value).and_then(|n| known.get(n)) {
            *value = v.clone();
        }
    }
    for text in el.texts_mut() {
        if let Some(v) = capture_name(text.trim()).and_then(|n| known.get(n)) {
            *text = v.clone();
        }
    }
    for c in el.children_mut() {
        substitute_captures(c, known);
    }
}

/// After a match: the values the received stanza has where `pattern` captures, walking both
/// trees in order (children matched by name and namespace).
fn collect_captures(pattern: &Element, received: &Element, out: &mut HashMap<String, String>) {
    for ((_, attr), value) in pattern.attrs().iter() {
        if let Some(name) = capture_name(value)
            && let Some(v) = received.attr(attr.as_str())
        {
            out.entry(name.to_owned()).or_insert_with(|| v.to_owned());
        }
    }
    let mut used = vec![false; received.children().count()];
    for pc in pattern.children() {
        let found = received
            .children()
            .enumerate()
            .find(|(i, rc)| !used[*i] && rc.name() == pc.name() && rc.ns() == pc.ns());
        if let Some((i, rc)) = found {
            used[i] = true;
            collect_captures(pc, rc, out);
        }
    }
}

/// The next stanza for a client must match `expected` (jasca's matching rules).
async fn receive(
    rx: &mut UnboundedReceiver<Delivery>,
    pattern: Element,
    captures: &mut HashMap<String, String>,
) -> Result<(), String> {
    let mut expected = pattern.clone();
    fill_captures(&mut expected, captures);
    let got = tokio::time::timeout(RECEIVE_TIMEOUT, rx.recv()).await;
    match got {
        Err(_) => Err(format!(
            "nothing received within {RECEIVE_TIMEOUT:?}\n    expected: {}",
            show_compact(&expected)
        )),
        Ok(None) => Err("the client's stream is gone".into()),
        Ok(Some(Delivery::Closed(why))) => Err(format!(
            "the stream closed ({why})\n    expected: {}",
            show_compact(&expected)
        )),
        Ok(Some(Delivery::Stanza(el))) => {
            if ScanElement::new(expected.clone()) == el {
                collect_captures(&pattern, &el, captures);
                Ok(())
            } else {
                Err(format!(
                    "stanza does not match\n    expected: {}\n    received: {}",
                    show_compact(&expected),
                    show(&el)
                ))
            }
        }
    }
}

fn leftovers(mut rx: UnboundedReceiver<Delivery>) -> Vec<Delivery> {
    leftovers_of(&mut rx)
}

fn leftovers_of(rx: &mut UnboundedReceiver<Delivery>) -> Vec<Delivery> {
    let mut v = Vec::new();
    while let Ok(d) = rx.try_recv() {
        v.push(d);
    }
    v
}

fn unexpected(who: &str, left: &[Delivery]) -> Result<(), String> {
    if left.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = left
        .iter()
        .map(|d| match d {
            Delivery::Stanza(el) => format!("    {}", show(el)),
            Delivery::Closed(why) => format!("    (stream closed: {why})"),
        })
        .collect();
    Err(format!("unexpected for {who}:\n{}", lines.join("\n")))
}

fn problems_to_result(p: Vec<String>) -> Result<(), String> {
    if p.is_empty() {
        Ok(())
    } else {
        Err(p.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    //! The jasca matching rules the scripts rely on, pinned here so that a jasca upgrade that
    //! changes them fails loudly instead of silently weakening every script.

    use super::*;

    fn matches(expected: &str, received: &str) -> bool {
        let ctx = jasca::Context::new();
        let e = element(expected, "jabber:client", &ctx).expect("expected");
        let r = element(received, "jabber:client", &ctx).expect("received");
        ScanElement::new(e) == r
    }

    const INFO: &str = "<iq type='result' id='1' from='s' to='a@b/c'><query xmlns='http://jabber.org/protocol/disco#info'>\
        <feature var='x'/><feature var='y'/></query></iq>";

    #[test]
    fn stanza_level_is_not_strict() {
        assert!(matches("<iq type='result' id='1'/>", INFO));
        assert!(!matches("<iq type='result' id='2'/>", INFO));
        assert!(matches("<iq type='result' id='{scansion:any}'/>", INFO));
        assert!(!matches("<iq type='result' extra='1'/>", INFO));
    }

    #[test]
    fn namespaced_payloads_are_strict_and_ordered() {
        let all = "<iq><query xmlns='http://jabber.org/protocol/disco#info'><feature var='x'/><feature var='y'/></query></iq>";
        assert!(matches(all, INFO));
        // Strict: a missing expectation means "must be absent".
        let only_x = "<iq><query xmlns='http://jabber.org/protocol/disco#info'><feature var='x'/></query></iq>";
        assert!(!matches(only_x, INFO));
        let swapped = "<iq><query xmlns='http://jabber.org/protocol/disco#info'><feature var='y'/><feature var='x'/></query></iq>";
        assert!(!matches(swapped, INFO));
        let loose = "<iq><query xmlns='http://jabber.org/protocol/disco#info' scansion:strict='false'><feature var='y'/></query></iq>";
        assert!(matches(loose, INFO));
    }

    #[test]
    fn strict_stanza_rejects_extra_attributes_and_children() {
        let empty = "<iq type='result' id='1' from='s' to='a@b/c'/>";
        assert!(matches(
            "<iq type='result' id='1' from='s' to='a@b/c' scansion:strict='true'/>",
            empty
        ));
        assert!(!matches(
            "<iq type='result' id='1' from='s' scansion:strict='true'/>",
            empty
        ));
        assert!(!matches(
            "<iq type='result' id='1' from='s' to='a@b/c' scansion:strict='true'/>",
            INFO
        ));
    }

    #[test]
    fn captures_take_the_first_value_and_hold_it_afterwards() {
        let pattern: Element =
            "<iq xmlns='jabber:client' type='result'><m xmlns='urn:x'><start id='{scansion:capture:first}'/></m></iq>"
                .parse()
                .expect("xml");
        let received: Element =
            "<iq xmlns='jabber:client' type='result'><m xmlns='urn:x'><start id='abc'/></m></iq>"
                .parse()
                .expect("xml");
        let mut caps = HashMap::new();
        let mut expected = pattern.clone();
        fill_captures(&mut expected, &caps);
        assert!(
            ScanElement::new(expected) == received,
            "unknown captures match anything"
        );
        collect_captures(&pattern, &received, &mut caps);
        assert_eq!(caps.get("first").map(String::as_str), Some("abc"));
        let other: Element =
            "<iq xmlns='jabber:client' type='result'><m xmlns='urn:x'><start id='xyz'/></m></iq>"
                .parse()
                .expect("xml");
        let mut expected = pattern.clone();
        fill_captures(&mut expected, &caps);
        assert!(
            ScanElement::new(expected.clone()) != other,
            "a captured value must repeat"
        );
        assert!(ScanElement::new(expected) == received);
    }
}
