//! Distributed MUC (seed 003, "DMUC3"), the master's side: a mirror service on another server
//! joins a room once per local user, with `<dmuc xmlns='http://tridsys.com/protocol/dmuc'
//! from='mirror-domain'/>`, from the user's XEP-0106-escaped address at its own domain
//! (`wayne\40raleigh.example\2fphone@mirror.raleigh.example`: a component can only send from its
//! own domain). From then on:
//!
//! - what the room sends to one such user goes to that escaped address (the mirror hands it on);
//! - what the room broadcasts goes once to the mirror's domain, not once per user behind it:
//!   the mirror delivers it to every local occupant (seed: "one presence with no <addresses/>");
//! - a new mirror first gets the room configuration and its roster (`urn:xmpp:dmuc:0`), and
//!   asks for the history (answered in one IQ result, the subject last); users behind a mirror
//!   get history and subject from the mirror's copy, never from here;
//! - users behind a mirror keep their nick (seed business rules: `not-acceptable`);
//! - a mirror whose link failed (the server bounces what was sent to it) loses its occupants,
//!   as if each had gone (333), and they come back by joining again.
//!
//! The room itself never learns any of this: stanzas are translated at the boundary
//! ([`Room::dmuc_inbound`] before, [`Room::dmuc_outbound`] after), so every XEP-0045 rule holds
//! for users behind a mirror exactly as for the others, with their real JIDs.

use std::collections::{BTreeMap, BTreeSet};

use jid::Jid;
use minidom::Element;
use mix_service::channel::{Ctx, Outcome, Send};
use mix_service::stanza::{NS_STANZA, error, error_reply};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::room::{NS_MUC_USER, Room};

/// The join tag (seed 003 §Joining).
pub const NS_DMUC: &str = "http://tridsys.com/protocol/dmuc";
/// Configuration, roster and history between master and mirror.
pub const NS_DMUC0: &str = "urn:xmpp:dmuc:0";

/// The join tag of a stanza: `<dmuc/>` in the seed's join namespace, or in the one of its
/// other payloads (the draft uses two; mixd sends the first).
pub fn dmuc_tag(st: &Element) -> Option<&Element> {
    st.children().find(|c| is_dmuc_tag(c))
}

pub fn is_dmuc_tag(c: &Element) -> bool {
    c.name() == "dmuc" && (c.ns() == NS_DMUC || c.ns() == NS_DMUC0)
}

/// XEP-0106 §4: the characters a JID node cannot hold, and their escapes.
const ESCAPES: [(char, &str); 10] = [
    ('\\', "\\5c"),
    (' ', "\\20"),
    ('"', "\\22"),
    ('&', "\\26"),
    ('\'', "\\27"),
    ('/', "\\2f"),
    (':', "\\3a"),
    ('<', "\\3c"),
    ('>', "\\3e"),
    ('@', "\\40"),
];

/// XEP-0106 escaping of `s` (a whole JID) into a node.
pub fn escape_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match ESCAPES.iter().find(|(ch, _)| *ch == c) {
            Some((_, e)) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

/// The reverse of [`escape_node`]; a backslash that starts no known escape stays as it is
/// (XEP-0106 §4.3).
pub fn unescape_node(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match ESCAPES.iter().find(|(_, e)| tail.starts_with(e)) {
            Some((c, e)) => {
                out.push(*c);
                rest = &tail[e.len()..];
            }
            None => {
                out.push('\\');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The master's view of the mirrors of one room.
#[derive(Debug, Clone, Default)]
pub struct DmucMaster {
    /// Mirror domains allowed to mirror (the service's configuration); empty: DMUC is off.
    pub allowed: Vec<String>,
    /// Users behind a mirror: real full JID → mirror domain.
    sessions: BTreeMap<String, String>,
    /// Mirrors that have the room's configuration and roster.
    known: BTreeSet<String>,
    /// Users behind a mirror who asked something without being in the room (disco before
    /// entering): their answer goes back through the mirror too. Cleared after each stanza.
    asking: BTreeMap<String, String>,
    /// (real full JID, id) of the latest groupchat messages from behind mirrors: a mirror
    /// sends again what a dying link may have swallowed, and what did arrive must not be
    /// archived and shown twice.
    recent: std::collections::VecDeque<(String, String)>,
    recent_set: std::collections::HashSet<(String, String)>,
    /// The user behind a mirror entering with the stanza being handled.
    entering: Option<String>,
    /// When each mirror with users here was last heard from (Unix µs).
    heard: BTreeMap<String, i64>,
    /// Keepalive pings waiting for their answer: mirror → when it went (Unix µs).
    pinged: BTreeMap<String, i64>,
    pings: u64,
}

/// How long a mirror with users in the room may be silent before the room pings it, and how
/// long the answer may take before the link counts as lost (seed 003 §"Connection to master is
/// lost": the master does the same for its side). A dead s2s link takes what is written to it
/// without an error, and a quiet room writes nothing: only a missing answer shows the loss.
pub const PING_INTERVAL_US: i64 = 10_000_000;
pub const PING_TIMEOUT_US: i64 = 5_000_000;

/// How many recent messages from behind mirrors are remembered against repeats.
const RECENT: usize = 4096;

impl DmucMaster {
    pub(crate) fn escaped(&self, real: &str) -> Option<String> {
        self.sessions
            .get(real)
            .or_else(|| self.asking.get(real))
            .map(|m| format!("{}@{m}", escape_node(real)))
    }

    pub fn has_mirrors(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Some user behind a mirror is in the room, asking, or was just lost.
    pub(crate) fn involved(&self) -> bool {
        !(self.sessions.is_empty() && self.asking.is_empty() && self.known.is_empty())
    }
}

/// What the boundary made of an arriving stanza.
pub(crate) enum Inbound {
    /// Not from a mirror: handle as it is.
    Plain,
    /// From a user behind a mirror: handle this translation (from = the user's real JID).
    Translated(Element),
    /// Answered here.
    Done(Box<Outcome>),
    /// A mirror's history request: answered from the archive by the shell.
    History(Box<crate::room::History>),
}

impl Room {
    /// Before the room sees a stanza: one from a mirror becomes one from the user behind it.
    pub(crate) fn dmuc_inbound(&mut self, st: &Element, ctx: &mut Ctx<'_>) -> Inbound {
        if self.dmuc.allowed.is_empty() {
            return Inbound::Plain;
        }
        let Some(from) = st.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return Inbound::Plain;
        };
        let domain = from.domain().to_string();
        let tagged = dmuc_tag(st);
        let allowed = self.dmuc.allowed.contains(&domain);
        if !allowed {
            if tagged.is_some() {
                // Only configured mirrors may speak for other servers' users.
                return Inbound::Done(Box::new(refuse(
                    st,
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "this service does not accept that mirror",
                )));
            }
            return Inbound::Plain;
        }
        // Whatever comes from a mirror shows its link is there (a bounce too: it is handled
        // below).
        if self.dmuc.heard.contains_key(&domain) {
            self.dmuc.heard.insert(domain.clone(), ctx.now_us);
            self.dmuc.pinged.remove(&domain);
        }
        if let Some(t) = tagged
            && t.attr("from") != Some(domain.as_str())
        {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "the dmuc tag names another mirror than the sender",
            )));
        }
        // The mirror itself: answers to what the room sent it, and bounces (its link failed).
        let Some(node) = from.node() else {
            if st.attr("type") == Some("error") {
                return Inbound::Done(Box::new(self.mirror_lost(&domain, false, ctx)));
            }
            // The mirror asks whether the link is back (XEP-0199).
            if st.name() == "iq"
                && st.attr("type") == Some("get")
                && st.has_child("ping", "urn:xmpp:ping")
            {
                let mut out = Outcome::default();
                out.sends
                    .push(Send::One(mix_service::stanza::iq_result(st, None)));
                return Inbound::Done(Box::new(out));
            }
            if st.name() == "iq" && matches!(st.attr("type"), Some("get") | Some("set")) {
                return self.mirror_iq(st, &domain, ctx);
            }
            // Answers to the configuration and roster pushes.
            return Inbound::Done(Box::default());
        };
        let real = unescape_node(node.as_str());
        let Ok(real_jid) = real.parse::<Jid>() else {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "the escaped address is no JID",
            )));
        };
        if real_jid.resource().is_none() || real_jid.domain().as_str() == domain {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "a mirror speaks for a user's full JID on another domain",
            )));
        }
        if st.attr("type") == Some("error") && is_link_failure(st) {
            return Inbound::Done(Box::new(self.mirror_lost(&domain, false, ctx)));
        }
        let to_nick = st
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .and_then(|t| t.resource().map(|r| r.to_string()));
        if st.name() == "presence" && st.attr("type").is_none() {
            let known = self.dmuc.sessions.contains_key(&real);
            if !known && tagged.is_none() {
                return Inbound::Done(Box::new(refuse(
                    st,
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "a join through a mirror carries the dmuc tag",
                )));
            }
            // Seed business rules: no nick changes behind a mirror.
            let bare = real_jid.to_bare().to_string();
            if let (true, Some(nick), Some(o)) = (known, &to_nick, self.occupant(&bare))
                && &o.nick != nick
            {
                return Inbound::Done(Box::new(refuse(
                    st,
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    "users behind a mirror keep their nick",
                )));
            }
            if !known {
                self.dmuc.entering = Some(real.clone());
            }
            self.dmuc.sessions.insert(real.clone(), domain);
        } else if st.name() == "iq" && !self.dmuc.sessions.contains_key(&real) {
            // Questions before entering (disco): answered through the mirror.
            self.dmuc.asking.insert(real.clone(), domain);
        } else if !self.dmuc.sessions.contains_key(&real) {
            // Only users who joined through it may speak through a mirror.
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                "join the room through the mirror first",
            )));
        }
        if st.name() == "message"
            && st.attr("type") == Some("groupchat")
            && let Some(id) = st.attr("id")
        {
            let key = (real.clone(), id.to_owned());
            if !self.dmuc.recent_set.insert(key.clone()) {
                // Sent again after a lost link, but it had arrived: once is enough.
                return Inbound::Done(Box::default());
            }
            if self.dmuc.recent.len() >= RECENT
                && let Some(old) = self.dmuc.recent.pop_front()
            {
                self.dmuc.recent_set.remove(&old);
            }
            self.dmuc.recent.push_back(key);
        }
        let mut t = filtered(st, |c| !is_dmuc_tag(c));
        set_attr(&mut t, "from", &real);
        // The seed's join example carries only the dmuc tag: it is an entry all the same.
        if tagged.is_some() && !t.has_child("x", crate::room::NS_MUC) {
            t.append_child(Element::bare("x", crate::room::NS_MUC));
        }
        Inbound::Translated(t)
    }

    /// After the room answered: what goes to users behind a mirror goes through it, and a
    /// broadcast crosses to each mirror once.
    pub(crate) fn dmuc_outbound(&mut self, out: &mut Outcome, new_mirrors: &[String]) {
        // (Someone asking from behind a mirror, e.g. a self-ping after its mirror lost the
        // room, is answered through it too.)
        if !self.dmuc.has_mirrors() && self.dmuc.asking.is_empty() && new_mirrors.is_empty() {
            return;
        }
        let mut sends = Vec::with_capacity(out.sends.len() + 2 * new_mirrors.len());
        // A new mirror learns the room first (seed: configuration, then roster, then the join).
        for m in new_mirrors {
            sends.push(Send::One(self.dmuc_config(m)));
            sends.push(Send::One(self.dmuc_roster(m)));
        }
        // The configuration changed (XEP-0045 §10.2.1: status 104 to the occupants): mirrors
        // that have the room get it again before the notice, for they decide on it whom to
        // show real JIDs.
        let reconfigured = out.sends.iter().any(|s| match s {
            Send::One(e) => has_status(e, "104"),
            Send::Fanout { stanza, .. } | Send::Shared { stanza, .. } => has_status(stanza, "104"),
        });
        if reconfigured {
            let mirrors: BTreeSet<&String> = self.dmuc.sessions.values().collect();
            for m in mirrors.into_iter().filter(|m| !new_mirrors.contains(m)) {
                sends.push(Send::One(self.dmuc_config(m)));
            }
        }
        // (mirror, stanza without real JIDs) → index in `sends` of the copy already sent.
        let mut sent: BTreeMap<(String, String), usize> = BTreeMap::new();
        // A mirror that has the room already shows a new user of its own the occupants (and
        // history and subject: `Room::finish`) from its copy: the master sends that user only
        // what is its own, so that a join costs the same whatever the room's size.
        let entering = self.dmuc.entering.take().filter(|real| {
            self.dmuc
                .sessions
                .get(real)
                .is_some_and(|m| !new_mirrors.contains(m))
        });
        for s in out.sends.drain(..) {
            let (stanza, to) = match s {
                Send::One(mut el) => {
                    let to = el.attr("to").unwrap_or_default().to_owned();
                    if entering.as_deref() == Some(to.as_str()) && is_others_presence(&el) {
                        continue;
                    }
                    if let Some(esc) = self.dmuc.escaped(&to) {
                        set_attr(&mut el, "to", &esc);
                    }
                    sends.push(Send::One(el));
                    continue;
                }
                Send::Fanout { stanza, to } => (stanza, to),
                Send::Shared { stanza, to } => (stanza, to.to_vec()),
            };
            let mut direct = Vec::with_capacity(to.len());
            let mut mirrors: BTreeSet<String> = BTreeSet::new();
            for r in to {
                match self.dmuc.sessions.get(&r) {
                    Some(m) => {
                        mirrors.insert(m.clone());
                    }
                    None => direct.push(r),
                }
            }
            if !direct.is_empty() {
                sends.push(Send::Fanout {
                    stanza: stanza.clone(),
                    to: direct,
                });
            }
            for m in mirrors {
                // The room sends moderators a richer copy (real JIDs) than the others; the
                // mirror gets one copy, the richest, and filters per local occupant.
                let key = (m.clone(), to_string(&without_jids(&stanza)));
                let mut copy = stanza.clone();
                set_attr(&mut copy, "to", &m);
                match sent.get(&key) {
                    Some(&i) => {
                        if shows_jids(&stanza) {
                            sends[i] = Send::One(copy);
                        }
                    }
                    None => {
                        sent.insert(key, sends.len());
                        sends.push(Send::One(copy));
                    }
                }
            }
        }
        out.sends = sends;
    }

    /// An IQ set from the room to a mirror carrying `payload` (configuration or roster).
    fn dmuc_push(&self, mirror: &str, payload: Element) -> Element {
        let id = format!(
            "dmuc-{}-{}",
            payload.name(),
            self.jid.node().map(|n| n.as_str()).unwrap_or_default()
        );
        let mut iq = elem(
            "iq",
            NS_STANZA,
            &[
                ("from", &self.jid.to_string()),
                ("to", mirror),
                ("type", "set"),
                ("id", &id),
            ],
        );
        iq.append_child(payload);
        iq
    }

    /// The room configuration for a mirror (seed: `<config xmlns='urn:xmpp:dmuc:0'>` with the
    /// `muc#roomconfig` form).
    fn dmuc_config(&self, mirror: &str) -> Element {
        let mut c = Element::bare("config", NS_DMUC0);
        c.append_child(self.config_form());
        self.dmuc_push(mirror, c)
    }

    /// The roster for a mirror (seed: `<roster xmlns='urn:xmpp:dmuc:0'>`, an item per occupant
    /// with its affiliation, real bare JID and nick).
    fn dmuc_roster(&self, mirror: &str) -> Element {
        let mut r = Element::bare("roster", NS_DMUC0);
        for (bare, nick) in self.everyone() {
            r.append_child(elem(
                "item",
                NS_DMUC0,
                &[
                    ("affiliation", self.affiliation(&bare)),
                    ("role", self.role(&bare)),
                    ("jid", &bare),
                    ("name", &nick),
                ],
            ));
        }
        self.dmuc_push(mirror, r)
    }

    /// Mirrors with a user in the room that the room has not told about itself yet.
    pub(crate) fn dmuc_new_mirrors(&mut self) -> Vec<String> {
        let mirrors: BTreeSet<String> = self
            .dmuc
            .sessions
            .iter()
            .filter(|(real, _)| self.is_present(real))
            .map(|(_, m)| m.clone())
            .collect();
        let new: Vec<String> = mirrors
            .into_iter()
            .filter(|m| !self.dmuc.known.contains(m))
            .collect();
        self.dmuc.known.extend(new.iter().cloned());
        new
    }

    /// Sessions that left (the room no longer has them) are forgotten.
    pub(crate) fn dmuc_forget_gone(&mut self) {
        self.dmuc.asking.clear();
        self.dmuc.entering = None;
        let gone: Vec<String> = self
            .dmuc
            .sessions
            .keys()
            .filter(|real| !self.is_present(real))
            .cloned()
            .collect();
        for real in gone {
            self.dmuc.sessions.remove(&real);
        }
        // A mirror without users stops getting broadcasts, so its copy of the room goes stale:
        // the next user it brings makes it a new mirror again.
        let sessions = &self.dmuc.sessions;
        self.dmuc
            .known
            .retain(|m| sessions.values().any(|x| x == m));
    }

    /// Whether this full JID is one of the room's occupant sessions (a look-up per user behind
    /// a mirror, never a walk over the room).
    fn is_present(&self, real: &str) -> bool {
        let bare = real.split('/').next().unwrap_or_default();
        self.occupant(bare)
            .is_some_and(|o| o.sessions.contains_key(real))
    }

    /// An IQ from a mirror itself: the history request (seed 003, "The new mirror SHOULD
    /// request room history"), for rooms it has users in, as they would get it entering.
    fn mirror_iq(&self, st: &Element, mirror: &str, ctx: &Ctx<'_>) -> Inbound {
        let wants_history = st.attr("type") == Some("get")
            && st
                .get_child("room", NS_DMUC0)
                .is_some_and(|r| r.children().any(|c| c.name() == "history"));
        if !wants_history {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "a mirror asks the room for its history and nothing else",
            )));
        }
        if let Some(id) = st.get_child("room", NS_DMUC0).and_then(|r| r.attr("id"))
            && id != self.jid.to_string()
        {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "the request names another room",
            )));
        }
        // The history is for occupants (XEP-0045 §7.2.15): the mirror's users.
        let has_users = self
            .dmuc
            .sessions
            .iter()
            .any(|(real, m)| m == mirror && self.is_present(real));
        if !has_users {
            return Inbound::Done(Box::new(refuse(
                st,
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "the history is for rooms the mirror has users in",
            )));
        }
        Inbound::History(Box::new(self.history_for_mirror(st, mirror, ctx.now_us)))
    }

    /// The channel task's clock, every two seconds or so while users behind a mirror are in the
    /// room: a mirror silent for [`PING_INTERVAL_US`] is pinged (XEP-0199), and one that has not
    /// answered within [`PING_TIMEOUT_US`] is lost, its users gone for everyone (333).
    pub fn dmuc_keepalive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        let now = ctx.now_us;
        let mirrors: BTreeSet<String> = self.dmuc.sessions.values().cloned().collect();
        self.dmuc.heard.retain(|m, _| mirrors.contains(m));
        self.dmuc.pinged.retain(|m, _| mirrors.contains(m));
        for m in mirrors {
            let heard = *self.dmuc.heard.entry(m.clone()).or_insert(now);
            if let Some(&sent) = self.dmuc.pinged.get(&m) {
                if now - sent >= PING_TIMEOUT_US {
                    self.dmuc.pinged.remove(&m);
                    self.dmuc.heard.remove(&m);
                    // (Only late, perhaps: its users hear that they are out, and can enter
                    // again, rather than stay as ghosts.)
                    let lost = self.mirror_lost(&m, true, ctx);
                    out.writes.extend(lost.writes);
                    out.sends.extend(lost.sends);
                }
                continue;
            }
            if now - heard >= PING_INTERVAL_US {
                self.dmuc.pings += 1;
                let id = format!("dmuc-keepalive-{}", self.dmuc.pings);
                let mut iq = elem(
                    "iq",
                    NS_STANZA,
                    &[
                        ("from", &self.jid.to_string()),
                        ("to", &m),
                        ("type", "get"),
                        ("id", &id),
                    ],
                );
                iq.append_child(Element::bare("ping", "urn:xmpp:ping"));
                out.sends.push(Send::One(iq));
                self.dmuc.pinged.insert(m, now);
            }
        }
        out
    }

    /// Seed §"Connection to master is lost": the mirror's link failed, so its users are gone
    /// for everyone else (each as a 333 removal, XEP-0045 §"service-error-kick"); the mirror
    /// is a new one when they come back.
    fn mirror_lost(&mut self, mirror: &str, tell: bool, ctx: &mut Ctx<'_>) -> Outcome {
        let gone: Vec<String> = self
            .dmuc
            .sessions
            .iter()
            .filter(|(_, m)| m.as_str() == mirror)
            .map(|(r, _)| r.clone())
            .collect();
        self.dmuc.known.remove(mirror);
        let mut out = Outcome::default();
        for real in gone {
            let Ok(from) = real.parse::<Jid>() else {
                continue;
            };
            self.dmuc.sessions.remove(&real);
            let more = self.leave(&from, &["333"], None, ctx);
            out.writes.extend(more.writes);
            // A mirror whose traffic bounced is unreachable: its own users' notices stay here.
            // Otherwise they go through it (the session is gone: addressed here).
            let escaped = format!("{}@{mirror}", escape_node(&real));
            for send in more.sends {
                match send {
                    Send::One(mut e) if e.attr("to") == Some(real.as_str()) => {
                        if tell {
                            set_attr(&mut e, "to", &escaped);
                            out.sends.push(Send::One(e));
                        }
                    }
                    other => out.sends.push(other),
                }
            }
        }
        out
    }
}

fn has_status(el: &Element, code: &str) -> bool {
    el.get_child("x", NS_MUC_USER).is_some_and(|x| {
        x.children()
            .any(|c| c.is("status", NS_MUC_USER) && c.attr("code") == Some(code))
    })
}

/// Another occupant's presence (what a room shows a newcomer before its self-presence).
fn is_others_presence(el: &Element) -> bool {
    el.name() == "presence"
        && el.attr("type") != Some("error")
        && !el.get_child("x", NS_MUC_USER).is_some_and(|x| {
            x.children()
                .any(|c| c.is("status", NS_MUC_USER) && c.attr("code") == Some("110"))
        })
}

/// An error the sender's server made because the other side could not be reached (an error
/// from one user's client is that user's: the room handles it as for anyone, 333).
pub(crate) fn is_link_failure(st: &Element) -> bool {
    st.get_child("error", NS_STANZA).is_some_and(|e| {
        e.children().any(|c| {
            matches!(
                c.name(),
                "remote-server-not-found" | "remote-server-timeout"
            )
        })
    })
}

fn refuse(st: &Element, ty: ErrorType, cond: DefinedCondition, text: &str) -> Outcome {
    let mut out = Outcome::default();
    if let Some(mut e) = error_reply(st, error(ty, cond, text)) {
        if st.name() == "presence" {
            e.append_child(Element::bare("x", crate::room::NS_MUC));
        }
        out.sends.push(Send::One(e));
    }
    out
}

/// The stanza with the real JIDs taken out of its `muc#user` items.
fn without_jids(st: &Element) -> Element {
    let mut s = st.clone();
    if let Some(x) = s.get_child_mut("x", NS_MUC_USER) {
        for i in x.children_mut().filter(|c| c.is("item", NS_MUC_USER)) {
            remove_attr(i, "jid");
        }
    }
    s
}

fn shows_jids(st: &Element) -> bool {
    st.get_child("x", NS_MUC_USER).is_some_and(|x| {
        x.children()
            .any(|i| i.is("item", NS_MUC_USER) && i.attr("jid").is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0106_escapes_a_whole_jid_into_a_node_and_back() {
        let real = "wayne@raleigh.example/TransVerse";
        let e = escape_node(real);
        assert_eq!(e, "wayne\\40raleigh.example\\2fTransVerse");
        assert_eq!(unescape_node(&e), real);
        assert_eq!(unescape_node("a\\zz\\5c"), "a\\zz\\");
        let odd = "o'brien & co <x>@d.example/a b:c\\";
        assert_eq!(unescape_node(&escape_node(odd)), odd);
    }
}
