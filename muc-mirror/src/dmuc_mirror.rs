//! Distributed MUC (seed 003), the mirror's side: mixd attached to a server whose users take
//! part in rooms of a remote master. A local user addresses the master room through the mirror
//! domain, the room's JID escaped into a node (XEP-0106): `room\40conference.remote@mirror.local`
//! is `room@conference.remote`. The mirror
//!
//! - joins the master once per local user, from the user's escaped address with
//!   `<dmuc xmlns='http://tridsys.com/protocol/dmuc' from='mirror.local'/>`, and relays what the
//!   user sends (messages, presence changes, leaving) once;
//! - takes each broadcast of the master once (sent to the mirror's domain) and delivers it to
//!   every local occupant, as the room would have: from the room's address on the mirror, a
//!   presence not to the occupant it is about (that one gets its own, with 110, through its
//!   escaped address), real JIDs only where the room shows them (`muc#roomconfig_whois`);
//! - keeps the room's configuration and roster as the master sends them;
//! - refuses nick changes (`not-acceptable`, seed business rules);
//! - when the link to the master fails (the server bounces what went there), tells local
//!   occupants that the remote ones left, lets local occupants keep talking among themselves,
//!   and queues what they say; once the master answers again, it joins every local occupant
//!   again and sends the queue in order, and delivers nothing twice.
//!
//! Pure: stanzas in, stanzas out. The shell pings the master rooms while a link is down
//! ([`MirrorService::probes`]) and hands every stanza for the mirror domain to
//! [`MirrorService::handle`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jid::Jid;
use minidom::Element;
use mix_service::stanza::{NS_STANZA, error, error_reply};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::dmuc::{NS_DMUC, NS_DMUC0, escape_node, is_link_failure, unescape_node};
use crate::room::{NS_MUC, NS_MUC_USER};

/// Local messages kept for the master while its link is down, per room.
const QUEUE_LIMIT: usize = 1000;
/// Messages kept for local history, per room (and what a joiner gets unless it asks for less).
const HISTORY: usize = 20;
/// How often a mirrored room's master is pinged while the link is quiet, and how long an
/// answer may take before the link counts as lost (ms). A dead s2s connection takes what is
/// written to it without an error; only a missing answer shows it.
pub const PING_INTERVAL_MS: u64 = 10_000;
pub const PING_TIMEOUT_MS: u64 = 5_000;

/// The mirror service of one domain.
#[derive(Debug, Default)]
pub struct MirrorService {
    /// The mirror domain, e.g. `mirror.raleigh.example`.
    pub domain: String,
    /// Mirrored rooms by the master room's bare JID.
    rooms: BTreeMap<String, MirrorRoom>,
    /// The wall clock (Unix µs), set by the shell: the stamp of messages kept for history.
    now_us: i64,
}

#[derive(Debug, Default)]
struct MirrorRoom {
    /// Local occupants the master confirmed (their self-presence came): full JID → nick.
    local: BTreeMap<String, String>,
    /// Joins sent to the master and not answered yet: full JID → nick.
    joining: BTreeMap<String, String>,
    /// Remote occupants as the broadcasts showed them: nick → their last presence (as the
    /// master sent it).
    remote: BTreeMap<String, Element>,
    /// Local occupants' presence as the others see it (their self-presence without its
    /// status codes, then what broadcasts showed): nick → presence.
    present: BTreeMap<String, Element>,
    /// Occupants the master showed a joining local user itself (before its self-presence):
    /// the rest it sees from the mirror's copy.
    shown: BTreeMap<String, BTreeSet<String>>,
    /// The room's recent messages as the master showed them (with `<delay/>`), for the history
    /// of local users who join later: the master sends history only to the first user a
    /// mirror brings; the copy starts with it and follows the broadcasts.
    history: VecDeque<Element>,
    /// The subject message, last as it came.
    subject: Option<Element>,
    /// The copy has the master's history (the first local user's subject came).
    seeded: bool,
    /// How many history messages each joining local user asked for (`maxstanzas`).
    wants: BTreeMap<String, usize>,
    /// Roles by nick, from the broadcasts (for whom real JIDs are shown).
    roles: BTreeMap<String, String>,
    /// `muc#roomconfig_whois` is `anyone` (from the configuration the master sent).
    non_anonymous: bool,
    configured: bool,
    /// The link to the master is down: local occupants talk among themselves.
    down: bool,
    /// Local messages to send to the master when the link is back, in order.
    queued: VecDeque<Element>,
    /// (nick, id) of queued messages already delivered locally: the master's reflection of
    /// them is not delivered again.
    delivered: BTreeSet<(String, String)>,
    /// Local occupants joined again after the link came back: their repeated self-presence,
    /// history and subject are not shown again.
    rejoining: BTreeSet<String>,
    /// Local messages sent to the master whose reflection has not come back yet: (sender's
    /// full JID, nick, the message as the user sent it). A link dies silently under what was
    /// written to it last; these are what it may have taken along, and go again.
    unacked: VecDeque<(String, String, Element)>,
    /// The keepalive ping waiting for its answer: (id, when it went, ms).
    ping: Option<(String, u64)>,
    /// When the last keepalive went (ms).
    last_ping_ms: u64,
    pings: u64,
}

impl MirrorService {
    pub fn new(domain: &str) -> MirrorService {
        MirrorService {
            domain: domain.to_owned(),
            rooms: BTreeMap::new(),
            now_us: 0,
        }
    }

    /// The shell's wall clock (Unix µs), before each stanza.
    pub fn set_now(&mut self, unix_us: i64) {
        self.now_us = unix_us;
    }

    /// The room's address on the mirror.
    fn local_room(&self, master: &str) -> String {
        format!("{}@{}", escape_node(master), self.domain)
    }

    /// A local user's address as the master sees it.
    fn escaped_user(&self, full: &str) -> String {
        format!("{}@{}", escape_node(full), self.domain)
    }

    /// Any stanza for the mirror domain; what to send in answer.
    pub fn handle(&mut self, st: &Element) -> Vec<Element> {
        let (Some(from), Some(to)) = (
            st.attr("from").and_then(|f| f.parse::<Jid>().ok()),
            st.attr("to").and_then(|t| t.parse::<Jid>().ok()),
        ) else {
            return Vec::new();
        };
        if let Some(room) = self.master_room_of(&from) {
            return self.master_stanza(st, &room, &to);
        }
        let Some(node) = to.node() else {
            return self.service_iq(st);
        };
        let master = unescape_node(node.as_str());
        match master.parse::<Jid>() {
            Ok(m) if m.node().is_some() && m.resource().is_none() => {}
            _ => {
                return refusal(
                    st,
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "address a room as room\\40service@mirror",
                );
            }
        }
        self.local_stanza(st, &from, &master, to.resource().map(|r| r.as_str()))
    }

    /// The mirror domain itself: disco#info (a conference service that mirrors, seed 003
    /// §"Discovering Server Support") and ping; nothing else.
    fn service_iq(&self, st: &Element) -> Vec<Element> {
        if st.name() != "iq" || st.attr("type") != Some("get") {
            if matches!(st.attr("type"), Some("error") | Some("result")) || st.name() == "presence"
            {
                return Vec::new();
            }
            return refusal(
                st,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "",
            );
        }
        let mut r = elem(
            "iq",
            NS_STANZA,
            &[
                ("from", &self.domain),
                ("to", st.attr("from").unwrap_or_default()),
                ("type", "result"),
            ],
        );
        if let Some(id) = st.attr("id") {
            set_attr(&mut r, "id", id);
        }
        if st.has_child("query", xmpp_parsers::ns::DISCO_INFO) {
            let mut q = Element::bare("query", xmpp_parsers::ns::DISCO_INFO);
            q.append_child(elem(
                "identity",
                xmpp_parsers::ns::DISCO_INFO,
                &[
                    ("category", "conference"),
                    ("type", "text"),
                    ("name", "DMUC mirror"),
                ],
            ));
            for f in [
                xmpp_parsers::ns::DISCO_INFO,
                NS_MUC,
                NS_DMUC,
                "urn:xmpp:ping",
            ] {
                q.append_child(elem("feature", xmpp_parsers::ns::DISCO_INFO, &[("var", f)]));
            }
            r.append_child(q);
        } else if !st.has_child("ping", "urn:xmpp:ping") {
            return refusal(
                st,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "",
            );
        }
        vec![r]
    }

    /// The master room a stanza comes from, if it is from one this mirror mirrors.
    fn master_room_of(&self, from: &Jid) -> Option<String> {
        let bare = from.to_bare().to_string();
        self.rooms.contains_key(&bare).then_some(bare)
    }

    fn local_stanza(
        &mut self,
        st: &Element,
        from: &Jid,
        master: &str,
        nick: Option<&str>,
    ) -> Vec<Element> {
        let full = from.to_string();
        let escaped = self.escaped_user(&full);
        let local_room = self.local_room(master);
        let room = self.rooms.entry(master.to_owned()).or_default();
        let present = room.local.get(&full).or(room.joining.get(&full)).cloned();
        let mut out = Vec::new();
        match st.name() {
            "presence" => {
                let unavailable = st.attr("type") == Some("unavailable");
                if st.attr("type").is_some() && !unavailable {
                    return out;
                }
                let Some(nick) = nick else {
                    return refusal(
                        st,
                        ErrorType::Modify,
                        DefinedCondition::JidMalformed,
                        "enter a room with a nick",
                    );
                };
                if let Some(p) = &present
                    && p != nick
                    && !unavailable
                {
                    // Seed business rules: no nick changes through a mirror.
                    let mut e = refusal(
                        st,
                        ErrorType::Cancel,
                        DefinedCondition::NotAcceptable,
                        "nicks cannot change through a mirror",
                    );
                    for el in &mut e {
                        el.append_child(Element::bare("x", NS_MUC));
                    }
                    return e;
                }
                let mut p = filtered(st, |c| !c.is("dmuc", NS_DMUC));
                set_attr(&mut p, "from", &escaped);
                set_attr(&mut p, "to", &format!("{master}/{nick}"));
                if unavailable {
                    room.joining.remove(&full);
                    if room.down {
                        // The master does not hear it now; the local occupants do.
                        if let Some(n) = room.local.remove(&full) {
                            out.extend(room.local_leave(&local_room, &full, &n, st));
                        }
                        return out;
                    }
                } else if present.is_none() {
                    room.joining.insert(full.clone(), nick.to_owned());
                    let wants = st
                        .get_child("x", NS_MUC)
                        .and_then(|x| x.get_child("history", NS_MUC))
                        .and_then(|h| h.attr("maxstanzas"))
                        .and_then(|m| m.parse::<usize>().ok())
                        .unwrap_or(HISTORY);
                    room.wants.insert(full.clone(), wants.min(HISTORY));
                    if !p.has_child("x", NS_MUC) {
                        p.append_child(Element::bare("x", NS_MUC));
                    }
                    p.append_child(elem("dmuc", NS_DMUC, &[("from", &self.domain)]));
                    if room.down {
                        // Sent when the link is back (with the others); nothing to say now.
                        room.joining.insert(full, nick.to_owned());
                        return out;
                    }
                }
                out.push(p);
            }
            "message" => {
                let Some(nick_here) = room.local.get(&full).cloned() else {
                    return refusal(
                        st,
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        "only occupants send messages to the room",
                    );
                };
                let mut m = st.clone();
                set_attr(&mut m, "from", &escaped);
                match nick {
                    Some(n) => set_attr(&mut m, "to", &format!("{master}/{n}")),
                    None => set_attr(&mut m, "to", master),
                }
                let groupchat = st.attr("type") == Some("groupchat") && nick.is_none();
                if room.down && groupchat {
                    let domain = self.domain.clone();
                    return room.said_while_down(
                        &local_room,
                        &full,
                        &nick_here,
                        master,
                        &domain,
                        st,
                    );
                }
                if groupchat {
                    // Its reflection from the master acknowledges it (matched by id).
                    let id = match st.attr("id") {
                        Some(id) => id.to_owned(),
                        None => {
                            room.pings += 1;
                            format!("dmuc-m{}-{}", room.pings, room.unacked.len())
                        }
                    };
                    set_attr(&mut m, "id", &id);
                    let mut said = st.clone();
                    set_attr(&mut said, "id", &id);
                    if room.unacked.len() >= QUEUE_LIMIT {
                        room.unacked.pop_front();
                    }
                    room.unacked.push_back((full.clone(), nick_here, said));
                }
                out.push(m);
            }
            "iq" => {
                // Room disco and the like, also before entering: the master answers through
                // the mirror.
                let mut q = st.clone();
                set_attr(&mut q, "from", &escaped);
                set_attr(
                    &mut q,
                    "to",
                    &match nick {
                        Some(n) => format!("{master}/{n}"),
                        None => master.to_owned(),
                    },
                );
                out.push(q);
            }
            _ => {}
        }
        out
    }

    fn master_stanza(&mut self, st: &Element, master: &str, to: &Jid) -> Vec<Element> {
        let local_room = self.local_room(master);
        let domain = self.domain.clone();
        let Some(room) = self.rooms.get_mut(master) else {
            return Vec::new();
        };
        let from_nick = st
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .and_then(|f| f.resource().map(|r| r.to_string()));
        let shown_from = match &from_nick {
            Some(n) => format!("{local_room}/{n}"),
            None => local_room.clone(),
        };
        // The link is there (something came through it).
        let mut out = Vec::new();
        if st.attr("type") == Some("error") && is_link_failure(st) {
            // (What the server bounced is among the unacknowledged: it goes again later.)
            room.ping = None;
            return room.link_lost(&local_room, master, &domain);
        }
        // The link is there: something came through it.
        room.ping = None;
        if room.down {
            out.extend(room.link_back(master, &domain));
        }
        match to.node() {
            None => {
                // To the mirror itself: configuration, roster, or a broadcast.
                if st.name() == "iq" {
                    return out.into_iter().chain(room.master_iq(st, &domain)).collect();
                }
                if st.name() == "presence"
                    && let Some(n) = &from_nick
                {
                    let rejoined = room
                        .local
                        .iter()
                        .any(|(f, ln)| ln == n && room.rejoining.contains(f));
                    if rejoined {
                        // A local occupant joined the master again after a lost link: the
                        // other local occupants never saw it leave.
                        return out;
                    }
                    room.note_presence(n, st);
                }
                if let ("message", Some(n), Some(id)) = (st.name(), &from_nick, st.attr("id")) {
                    room.unacked
                        .retain(|(_, nick, m)| !(nick == n && m.attr("id") == Some(id)));
                    if room.delivered.remove(&(n.clone(), id.to_owned())) {
                        // Delivered here while the link was down.
                        return out;
                    }
                }
                if st.name() == "message" && st.attr("type") == Some("groupchat") {
                    let now = self.now_us;
                    room.keep(st, &shown_from, &local_room, now);
                }
                for (full, nick) in &room.local {
                    if st.name() == "presence" && from_nick.as_deref() == Some(nick.as_str()) {
                        // Its own presence comes to it with 110, through its own address.
                        continue;
                    }
                    let mut d = st.clone();
                    set_attr(&mut d, "from", &shown_from);
                    set_attr(&mut d, "to", full);
                    if !room.non_anonymous
                        && room.roles.get(nick).map(String::as_str) != Some("moderator")
                    {
                        strip_jids(&mut d);
                    }
                    out.push(d);
                }
            }
            Some(node) => {
                // To one local user.
                let user = unescape_node(node.as_str());
                let rejoining = room.rejoining.contains(&user);
                let mut serve_copy = false;
                let is_self = st.attr("type") != Some("error")
                    && st.get_child("x", NS_MUC_USER).is_some_and(|x| {
                        x.children()
                            .any(|c| c.is("status", NS_MUC_USER) && c.attr("code") == Some("110"))
                    });
                if st.name() == "presence" {
                    if let (Some(n), true) = (&from_nick, is_self) {
                        if st.attr("type") == Some("unavailable") {
                            room.local.remove(&user);
                            room.joining.remove(&user);
                            room.rejoining.remove(&user);
                            room.present.remove(n);
                            if room.local.is_empty() {
                                // The master stops broadcasting here: the copy goes stale.
                                room.remote.clear();
                                room.present.clear();
                                room.roles.clear();
                                room.history.clear();
                                room.subject = None;
                                room.seeded = false;
                            }
                        } else {
                            room.joining.remove(&user);
                            let entering = !room.local.contains_key(&user) || rejoining;
                            room.local.insert(user.clone(), n.clone());
                            let mut seen_by_others = st.clone();
                            strip_status(&mut seen_by_others);
                            room.present.insert(n.clone(), seen_by_others);
                            // The master shows a joiner the others only when the room is new to
                            // this mirror (dmuc::Room::dmuc_outbound); otherwise the mirror
                            // does, from its copy, before the self-presence (XEP-0045 §7.2.3
                            // order). Back after a lost link, a user sees again only the remote
                            // occupants (it never saw the local ones go).
                            let shown = room.shown.remove(&user).unwrap_or_default();
                            serve_copy = entering && !rejoining && room.seeded;
                            if entering {
                                let locals = if rejoining { None } else { Some(&room.present) };
                                for (nick, p) in
                                    room.remote.iter().chain(locals.into_iter().flatten())
                                {
                                    if nick == n || shown.contains(nick) {
                                        continue;
                                    }
                                    let mut d = p.clone();
                                    set_attr(&mut d, "from", &format!("{local_room}/{nick}"));
                                    set_attr(&mut d, "to", &user);
                                    if !room.non_anonymous {
                                        strip_jids(&mut d);
                                    }
                                    out.push(d);
                                }
                            }
                            if rejoining {
                                // Back after a lost link: it never left, as far as it knows.
                                return out;
                            }
                        }
                    } else if st.attr("type") == Some("error") {
                        room.joining.remove(&user);
                    } else if let Some(n) = &from_nick {
                        // The occupants a joiner is shown one by one are remote occupants too.
                        room.note_presence(n, st);
                        if !room.local.contains_key(&user) || rejoining {
                            room.shown
                                .entry(user.clone())
                                .or_default()
                                .insert(n.clone());
                        }
                        if rejoining && room.local.values().any(|l| l == n) {
                            // A local occupant it never saw go.
                            return out;
                        }
                    }
                }
                if rejoining && st.name() == "message" {
                    // Its history and the subject again: it has them. The subject is last
                    // (XEP-0045 §7.2.2), so the rejoin is over with it.
                    if st.has_child("subject", NS_STANZA) {
                        room.rejoining.remove(&user);
                        return out;
                    }
                    if st.has_child("delay", "urn:xmpp:delay") {
                        return out;
                    }
                }
                // The first user a mirror brings gets the master's history and subject: they
                // start the mirror's copy.
                if st.name() == "message" && !room.seeded && st.attr("type") == Some("groupchat") {
                    if st.has_child("subject", NS_STANZA) {
                        room.seeded = true;
                    }
                    let now = self.now_us;
                    room.keep(st, &shown_from, &local_room, now);
                }
                let mut d = st.clone();
                set_attr(&mut d, "from", &shown_from);
                set_attr(&mut d, "to", &user);
                out.push(d);
                if serve_copy {
                    // Later users get history and subject from the copy (XEP-0045 §7.2.2:
                    // after the self-presence, history, then the subject).
                    let wants = room.wants.remove(&user).unwrap_or(HISTORY);
                    let skip = room.history.len().saturating_sub(wants);
                    let subject = room.subject.clone().unwrap_or_else(|| {
                        let mut m = elem(
                            "message",
                            NS_STANZA,
                            &[("from", &local_room), ("type", "groupchat")],
                        );
                        m.append_child(Element::bare("subject", NS_STANZA));
                        m
                    });
                    for m in room
                        .history
                        .iter()
                        .skip(skip)
                        .chain(std::iter::once(&subject))
                    {
                        let mut d = m.clone();
                        set_attr(&mut d, "to", &user);
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// The shell's clock, every second or two (`now_ms`: any monotonic milliseconds): each
    /// mirrored room with local occupants pings its master when the link has been quiet for
    /// [`PING_INTERVAL_MS`] (or at once while it is down), and a ping left unanswered for
    /// [`PING_TIMEOUT_MS`] means the link is lost. Any stanza from the master answers.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Element> {
        let domain = self.domain.clone();
        let mut out = Vec::new();
        let masters: Vec<String> = self.rooms.keys().cloned().collect();
        for master in masters {
            let local_room = self.local_room(&master);
            let Some(room) = self.rooms.get_mut(&master) else {
                continue;
            };
            if room.local.is_empty() && room.joining.is_empty() {
                continue;
            }
            if let Some((_, sent)) = &room.ping {
                if now_ms.saturating_sub(*sent) < PING_TIMEOUT_MS {
                    continue;
                }
                room.ping = None;
                out.extend(room.link_lost(&local_room, &master, &domain));
            }
            if room.down || now_ms.saturating_sub(room.last_ping_ms) >= PING_INTERVAL_MS {
                room.pings += 1;
                let id = format!("dmuc-ping-{}", room.pings);
                let mut iq = elem(
                    "iq",
                    NS_STANZA,
                    &[
                        ("from", &domain),
                        ("to", &master),
                        ("type", "get"),
                        ("id", &id),
                    ],
                );
                iq.append_child(Element::bare("ping", "urn:xmpp:ping"));
                out.push(iq);
                room.ping = Some((id, now_ms));
                room.last_ping_ms = now_ms;
            }
        }
        out
    }

    /// Local occupants of a mirrored room (for tests and the admin view).
    pub fn local_occupants(&self, master: &str) -> Vec<(String, String)> {
        self.rooms
            .get(master)
            .map(|r| {
                r.local
                    .iter()
                    .map(|(f, n)| (f.clone(), n.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl MirrorRoom {
    /// A groupchat message from the master, into the copy: the subject replaces the last one; a
    /// message with a body is kept as history, shown from the room's address on the mirror, with
    /// the `<delay/>` it came with or one stamped now.
    fn keep(&mut self, st: &Element, shown_from: &str, local_room: &str, now_us: i64) {
        let mut m = filtered(st, |c| !c.is("delay", "urn:xmpp:delay"));
        remove_attr(&mut m, "to");
        set_attr(&mut m, "from", shown_from);
        if st.has_child("subject", NS_STANZA) && !st.has_child("body", NS_STANZA) {
            self.subject = Some(m);
            return;
        }
        if !st.has_child("body", NS_STANZA) {
            return;
        }
        let stamp = st
            .get_child("delay", "urn:xmpp:delay")
            .and_then(|d| d.attr("stamp"))
            .map(str::to_owned)
            .unwrap_or_else(|| datetime(now_us));
        m.append_child(elem(
            "delay",
            "urn:xmpp:delay",
            &[("from", local_room), ("stamp", &stamp)],
        ));
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(m);
    }

    fn note_presence(&mut self, nick: &str, st: &Element) {
        if st.attr("type") == Some("unavailable") {
            self.remote.remove(nick);
            self.present.remove(nick);
            self.roles.remove(nick);
            return;
        }
        if let Some(role) = st
            .get_child("x", NS_MUC_USER)
            .and_then(|x| x.get_child("item", NS_MUC_USER))
            .and_then(|i| i.attr("role"))
        {
            self.roles.insert(nick.to_owned(), role.to_owned());
        }
        if self.local.values().any(|n| n == nick) {
            self.present.insert(nick.to_owned(), st.clone());
        } else {
            self.remote.insert(nick.to_owned(), st.clone());
        }
    }

    /// Configuration and roster from the master (seed: the mirror MUST answer).
    fn master_iq(&mut self, st: &Element, domain: &str) -> Vec<Element> {
        if !matches!(st.attr("type"), Some("set") | Some("get")) {
            return Vec::new();
        }
        if let Some(c) = st.get_child("config", NS_DMUC0) {
            self.non_anonymous = c
                .get_child("x", "jabber:x:data")
                .into_iter()
                .flat_map(|x| x.children())
                .find(|f| f.attr("var") == Some("muc#roomconfig_whois"))
                .and_then(|f| f.children().find(|v| v.name() == "value"))
                .is_some_and(|v| v.text() == "anyone");
            self.configured = true;
        } else if st.get_child("roster", NS_DMUC0).is_none() {
            return refusal(
                st,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "",
            );
        }
        let mut r = elem(
            "iq",
            NS_STANZA,
            &[
                ("from", domain),
                ("to", st.attr("from").unwrap_or_default()),
                ("type", "result"),
            ],
        );
        if let Some(id) = st.attr("id") {
            set_attr(&mut r, "id", id);
        }
        vec![r]
    }

    /// A local occupant's groupchat message while the master is unreachable (`said` as the
    /// user sent it): the local occupants keep talking among themselves, the master hears it
    /// later, in order (seed §"Connection to master is lost").
    fn said_while_down(
        &mut self,
        local_room: &str,
        user: &str,
        nick: &str,
        master: &str,
        domain: &str,
        said: &Element,
    ) -> Vec<Element> {
        let id = said
            .attr("id")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("dmuc-{}-{}", self.queued.len(), self.delivered.len()));
        let mut shown = said.clone();
        set_attr(&mut shown, "id", &id);
        set_attr(&mut shown, "from", &format!("{local_room}/{nick}"));
        let mut out = Vec::new();
        for to in self.local.keys() {
            let mut d = shown.clone();
            set_attr(&mut d, "to", to);
            out.push(d);
        }
        self.delivered.insert((nick.to_owned(), id.clone()));
        if self.queued.len() < QUEUE_LIMIT {
            let mut m = said.clone();
            set_attr(&mut m, "id", &id);
            set_attr(&mut m, "from", &format!("{}@{domain}", escape_node(user)));
            set_attr(&mut m, "to", master);
            self.queued.push_back(m);
        }
        out
    }

    /// Seed §"Connection to master is lost": the local occupants see the remote ones leave.
    fn link_lost(&mut self, local_room: &str, master: &str, domain: &str) -> Vec<Element> {
        if self.down {
            return Vec::new();
        }
        self.down = true;
        let mut out = Vec::new();
        // What the dead link may have swallowed: the local occupants hear it now, the master
        // when the link is back (and the master's copy, if it had it, is not delivered twice).
        for (user, nick, said) in std::mem::take(&mut self.unacked) {
            out.extend(self.said_while_down(local_room, &user, &nick, master, domain, &said));
        }
        for (nick, _) in std::mem::take(&mut self.remote) {
            for full in self.local.keys() {
                let mut p = elem(
                    "presence",
                    NS_STANZA,
                    &[
                        ("from", &format!("{local_room}/{nick}")),
                        ("to", full),
                        ("type", "unavailable"),
                    ],
                );
                let mut x = Element::bare("x", NS_MUC_USER);
                x.append_child(elem(
                    "item",
                    NS_MUC_USER,
                    &[("affiliation", "none"), ("role", "none")],
                ));
                // 333: gone because of a technical problem (XEP-0045 §"service-error-kick").
                x.append_child(elem("status", NS_MUC_USER, &[("code", "333")]));
                p.append_child(x);
                out.push(p);
            }
            self.roles.remove(&nick);
        }
        out
    }

    /// The link is back: every local occupant joins again (the master forgot them), then what
    /// they said meanwhile goes, in order.
    fn link_back(&mut self, master: &str, domain: &str) -> Vec<Element> {
        self.down = false;
        let mut out = Vec::new();
        for (full, nick) in self.local.iter().chain(self.joining.iter()) {
            let mut p = elem(
                "presence",
                NS_STANZA,
                &[
                    ("from", &format!("{}@{domain}", escape_node(full))),
                    ("to", &format!("{master}/{nick}")),
                ],
            );
            p.append_child(Element::bare("x", NS_MUC));
            p.append_child(elem("dmuc", NS_DMUC, &[("from", domain)]));
            out.push(p);
            self.rejoining.insert(full.clone());
        }
        out.extend(self.queued.drain(..));
        out
    }

    /// A local occupant leaves while the master is unreachable: the others see it go.
    fn local_leave(&self, local_room: &str, full: &str, nick: &str, st: &Element) -> Vec<Element> {
        let mut out = Vec::new();
        for to in self.local.keys().map(String::as_str).chain([full]) {
            let mut p = filtered(st, |c| !c.is("x", NS_MUC));
            set_attr(&mut p, "from", &format!("{local_room}/{nick}"));
            set_attr(&mut p, "to", to);
            let mut x = Element::bare("x", NS_MUC_USER);
            x.append_child(elem(
                "item",
                NS_MUC_USER,
                &[("affiliation", "none"), ("role", "none")],
            ));
            if to == full {
                x.append_child(elem("status", NS_MUC_USER, &[("code", "110")]));
            }
            p.append_child(x);
            out.push(p);
        }
        out
    }
}

/// A self-presence as the others see it: without its status codes (110 and the like).
fn strip_status(st: &mut Element) {
    if let Some(x) = st.get_child_mut("x", NS_MUC_USER) {
        let kept = filtered(x, |c| !c.is("status", NS_MUC_USER));
        *x = kept;
    }
}

fn strip_jids(st: &mut Element) {
    if let Some(x) = st.get_child_mut("x", NS_MUC_USER) {
        for i in x.children_mut().filter(|c| c.is("item", NS_MUC_USER)) {
            remove_attr(i, "jid");
        }
    }
}

fn refusal(st: &Element, ty: ErrorType, cond: DefinedCondition, text: &str) -> Vec<Element> {
    error_reply(st, error(ty, cond, text)).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "jabber:component:accept";
    const MASTER: &str = "room@conference.a";
    const LROOM: &str = "room\\40conference.a@mirror.b";
    const WAYNE: &str = "wayne@b/phone";
    const WAYNE_ESC: &str = "wayne\\40b\\2fphone@mirror.b";
    const KEITH: &str = "keith@b/pc";
    const KEITH_ESC: &str = "keith\\40b\\2fpc@mirror.b";

    fn el(xml: &str) -> Element {
        xml.parse().expect("xml")
    }

    fn to_of(out: &[Element]) -> Vec<&str> {
        out.iter()
            .map(|e| e.attr("to").unwrap_or_default())
            .collect()
    }

    fn self_presence(esc: &str, nick: &str) -> Element {
        el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/{nick}' to='{esc}'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant'/><status code='110'/></x></presence>"
        ))
    }

    fn joined(m: &mut MirrorService, full: &str, esc: &str, nick: &str) {
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{full}' to='{LROOM}/{nick}'><x xmlns='{NS_MUC}'/></presence>"
        )));
        assert_eq!(to_of(&out), [format!("{MASTER}/{nick}")]);
        assert_eq!(out[0].attr("from"), Some(esc));
        assert_eq!(
            out[0]
                .get_child("dmuc", NS_DMUC)
                .and_then(|d| d.attr("from")),
            Some("mirror.b")
        );
        let out = m.handle(&self_presence(esc, nick));
        assert!(to_of(&out).iter().all(|t| *t == full));
        let own = out.last().expect("self-presence");
        assert_eq!(own.attr("from"), Some(format!("{LROOM}/{nick}").as_str()));
        // The others come first, from the mirror's copy, once the room is not new to it.
        for p in &out[..out.len() - 1] {
            assert_ne!(p.attr("from"), own.attr("from"));
        }
    }

    #[test]
    fn local_users_reach_the_master_once_and_broadcasts_reach_every_local_user() {
        let mut m = MirrorService::new("mirror.b");
        joined(&mut m, WAYNE, WAYNE_ESC, "wayne");
        // The first user the mirror brings gets the master's history and subject.
        for xml in [
            format!(
                "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='{WAYNE_ESC}'><body>earlier</body>\
                 <delay xmlns='urn:xmpp:delay' from='{MASTER}' stamp='2026-11-22T01:00:00Z'/></message>"
            ),
            format!(
                "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='{WAYNE_ESC}'><subject>plans</subject></message>"
            ),
        ] {
            assert_eq!(to_of(&m.handle(&el(&xml))), [WAYNE]);
        }
        // The master's configuration and roster are answered.
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='c1' from='{MASTER}' to='mirror.b'><config xmlns='{NS_DMUC0}'>\
             <x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_whois'><value>moderators</value></field></x>\
             </config></iq>"
        )));
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(out[0].attr("id"), Some("c1"));
        // keith, the second local user: the master sends him only his own presence, the
        // mirror shows him wayne from its copy.
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{KEITH}' to='{LROOM}/keith'><x xmlns='{NS_MUC}'/></presence>"
        )));
        let out = m.handle(&self_presence(KEITH_ESC, "keith"));
        let froms: Vec<_> = out
            .iter()
            .map(|e| e.attr("from").unwrap_or_default())
            .collect();
        // Occupants, self-presence, history, subject (XEP-0045 §7.2.2), all from the copy but
        // the self-presence.
        assert_eq!(
            froms,
            [
                format!("{LROOM}/wayne"),
                format!("{LROOM}/keith"),
                format!("{LROOM}/scott"),
                format!("{LROOM}/scott")
            ]
        );
        assert!(to_of(&out).iter().all(|t| *t == KEITH));
        assert!(!to_string(&out[0]).contains("code='110'"));
        assert!(to_string(&out[2]).contains("earlier"));
        assert!(to_string(&out[2]).contains("stamp='2026-11-22T01:00:00Z'"));
        assert!(to_string(&out[3]).contains("<subject>plans</subject>"));
        // keith's presence, broadcast once to the mirror, reaches wayne, not keith; real
        // JIDs are for moderators only in this room.
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/keith' to='mirror.b'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant' jid='{KEITH}'/></x></presence>"
        )));
        assert_eq!(to_of(&out), [WAYNE]);
        assert!(!to_string(&out[0]).contains("jid="), "semi-anonymous");
        // One message from the master reaches both.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='m1' from='{MASTER}/scott' to='mirror.b'><body>hi</body></message>"
        )));
        assert_eq!(to_of(&out), [KEITH, WAYNE]);
        assert!(
            out.iter()
                .all(|e| e.attr("from") == Some(&*format!("{LROOM}/scott")))
        );
        // What a local user says goes to the master once, as that user.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='w1' from='{WAYNE}' to='{LROOM}'><body>yo</body></message>"
        )));
        assert_eq!(to_of(&out), [MASTER]);
        assert_eq!(out[0].attr("from"), Some(WAYNE_ESC));
        // Seed business rules: no nick change through the mirror.
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{WAYNE}' to='{LROOM}/bruce'/>"
        )));
        assert_eq!(out[0].attr("type"), Some("error"));
        assert!(to_string(&out[0]).contains("not-acceptable"));
    }

    #[test]
    fn a_lost_master_link_leaves_local_users_talking_and_nothing_is_lost_or_doubled() {
        let mut m = MirrorService::new("mirror.b");
        joined(&mut m, WAYNE, WAYNE_ESC, "wayne");
        joined(&mut m, KEITH, KEITH_ESC, "keith");
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/scott' to='mirror.b'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='owner' role='moderator'/></x></presence>"
        )));
        // wayne speaks; then the link dies silently: a keepalive goes unanswered.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='b1' from='{WAYNE}' to='{LROOM}'><body>anyone?</body></message>"
        )));
        assert_eq!(to_of(&out), [MASTER]);
        assert!(m.tick(1_000).is_empty(), "quiet for less than the interval");
        let ping = m.tick(PING_INTERVAL_MS);
        assert_eq!(to_of(&ping), [MASTER]);
        assert!(ping[0].has_child("ping", "urn:xmpp:ping"));
        let out = m.tick(PING_INTERVAL_MS + PING_TIMEOUT_MS);
        // Scott leaves for both; what wayne said (unacknowledged, maybe lost with the link)
        // reaches keith and wayne now, the master later; a ping goes again at once.
        let kinds: Vec<_> = out
            .iter()
            .map(|e| (e.name(), e.attr("to").unwrap_or_default()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("message", KEITH),
                ("message", WAYNE),
                ("presence", KEITH),
                ("presence", WAYNE),
                ("iq", MASTER)
            ]
        );
        assert!(
            out[..2]
                .iter()
                .all(|p| p.attr("from") == Some(&*format!("{LROOM}/wayne")))
        );
        assert!(
            out[2..4]
                .iter()
                .all(|p| p.attr("type") == Some("unavailable"))
        );
        // Local users keep talking: delivered here, queued for the master.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='q1' from='{WAYNE}' to='{LROOM}'><body>still here?</body></message>"
        )));
        assert_eq!(to_of(&out), [KEITH, WAYNE]);
        // The master answers again: both join again, then the queue goes, in order.
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='result' id='dmuc-probe' from='{MASTER}' to='mirror.b'/>"
        )));
        let names: Vec<_> = out
            .iter()
            .map(|e| (e.name(), e.attr("to").unwrap_or_default()))
            .collect();
        assert_eq!(
            names,
            [
                ("presence", "room@conference.a/keith"),
                ("presence", "room@conference.a/wayne"),
                ("message", MASTER),
                ("message", MASTER)
            ]
        );
        assert_eq!(out[2].attr("id"), Some("b1"));
        assert_eq!(out[3].attr("id"), Some("q1"));
        assert!(out[2..].iter().all(|q| q.attr("from") == Some(WAYNE_ESC)));
        // Their repeated self-presence, history and subject are not shown again...
        assert!(m.handle(&self_presence(WAYNE_ESC, "wayne")).is_empty());
        let hist = el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='{WAYNE_ESC}'><body>old</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>"
        ));
        assert!(m.handle(&hist).is_empty());
        assert!(m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{MASTER}' to='{WAYNE_ESC}'><subject/></message>"
        ))).is_empty());
        // ...nor the master's reflection of what they said meanwhile; new traffic flows.
        let echo = el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='q1' from='{MASTER}/wayne' to='mirror.b'><body>still here?</body></message>"
        ));
        assert!(m.handle(&echo).is_empty());
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='n1' from='{MASTER}/scott' to='mirror.b'><body>back</body></message>"
        )));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut m = MirrorService::new("mirror.b");
        // Not a room address.
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{WAYNE}' to='nonsense@mirror.b/w'><x xmlns='{NS_MUC}'/></presence>"
        )));
        assert!(to_string(&out[0]).contains("item-not-found"));
        // A configuration for a room nobody here asked to mirror.
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='c' from='other@conference.a' to='mirror.b'><config xmlns='{NS_DMUC0}'/></iq>"
        )));
        assert!(to_string(&out[0]).contains("service-unavailable"));
        // Messages from someone not in the room.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{WAYNE}' to='{LROOM}'><body>x</body></message>"
        )));
        assert!(to_string(&out[0]).contains("not-acceptable"));
    }
}
