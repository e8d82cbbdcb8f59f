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
//! - keeps what the room's configuration and roster say about who sees real JIDs (`whois`,
//!   roles), as the master sends them, and a copy of its
//!   history and subject: it asks the master for them (seed 003's history request) when it
//!   becomes a mirror of the room and when a lost link comes back, then follows the broadcasts;
//!   every local user who enters gets occupants, history (with XEP-0045's limits) and subject
//!   from the copy, the master sending that user only its own presence;
//! - refuses nick changes (`not-acceptable`, seed business rules);
//! - when the link to the master fails (the server bounces what went there), tells local
//!   occupants that the remote ones left, lets local occupants keep talking among themselves,
//!   and queues what they say; once the master answers again, it joins every local occupant
//!   again, sends the queue in order, gives local occupants what the remote ones said meanwhile
//!   (from the history it asks for again), and delivers nothing twice.
//!
//! Pure: stanzas in, stanzas out. The shell hands every stanza for the mirror domain to
//! [`MirrorService::handle`] and calls [`MirrorService::tick`] every second or two (keepalive).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use jid::Jid;
use minidom::Element;
use mix_service::stanza::{NS_STANZA, error, error_reply};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::dmuc::{NS_DMUC, NS_DMUC0, escape_node, is_dmuc_tag, is_link_failure, unescape_node};
use crate::room::{DEFAULT_HISTORY, MAX_HISTORY, NS_MUC, NS_MUC_USER, history_limits, out_of_room};

/// Local messages kept for the master while its link is down, per room.
const QUEUE_LIMIT: usize = 1000;
/// Messages kept for local history, per room: as many as a user may ask for.
const COPY: usize = MAX_HISTORY;
/// How often a mirrored room's master is pinged while the link is quiet, and how long an
/// answer may take before the link counts as lost (ms). A dead s2s connection takes what is
/// written to it without an error; only a missing answer shows it.
pub const PING_INTERVAL_MS: u64 = 10_000;
pub const PING_TIMEOUT_MS: u64 = 5_000;
/// How long a mirrored room that nobody here is in (one a local user only asked something,
/// or left) is remembered: long enough for answers on their way (µs).
const FORGET_US: i64 = 120_000_000;
/// How long the answer to a history request may take; then those waiting for it get what the
/// copy has (an answer too big for the link, or one whose id does not match, never comes).
pub const HISTORY_TIMEOUT_MS: u64 = 30_000;

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
    /// The room's recent messages (their time, Unix µs; the message as local users get it,
    /// with `<delay/>`): the history of local users who enter. The master sends no history
    /// to users behind a mirror; the copy starts with its answer to the mirror's history
    /// request (seed 003) and follows the broadcasts.
    history: VecDeque<(i64, Element)>,
    /// The subject message, last as it came.
    subject: Option<Element>,
    /// The copy has the master's answer.
    seeded: bool,
    /// The history request waiting for its answer (its id), and since when (ms, from the first
    /// tick after it went). Broadcasts that come meanwhile are in the answer (the master
    /// answers after sending what it handled with the request): they wait in `meanwhile`.
    asked: Option<String>,
    asked_ms: Option<u64>,
    /// The answer replaces a copy that missed what was said while the link was down: the
    /// remote occupants' messages in it that the copy lacked go to the local occupants.
    refill: bool,
    /// Groupchat messages delivered live while the answer was on its way (as the copy keeps
    /// them): the answer has them too, so they are not delivered again with it; if the
    /// answer never comes, they go into the copy.
    meanwhile: Vec<(i64, Element)>,
    /// Local users who entered before the copy was there: their history and subject wait
    /// for the answer, and what the room sends them meanwhile waits in `held` (then comes
    /// after, as live traffic does; what is held is not shown again as history).
    waiting: BTreeSet<String>,
    held: BTreeMap<String, Vec<Element>>,
    /// The history each joining local user asked for (XEP-0045 §7.2.15: stanzas, since, chars).
    wants: BTreeMap<String, (usize, Option<i64>, Option<usize>)>,
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
    /// Local occupants joined again after the link came back: their repeated self-presence
    /// (and the occupants shown before it) are not shown again.
    rejoining: BTreeSet<String>,
    /// Local messages sent to the master whose reflection has not come back yet: (sender's
    /// full JID, nick, the message as the user sent it). A link dies silently under what was
    /// written to it last; these are what it may have taken along, and go again.
    unacked: VecDeque<(String, String, Element)>,
    /// When a stanza last came for this room, either way (Unix µs).
    touched_us: i64,
    /// The keepalive ping waiting for its answer: (id, when it went, ms).
    ping: Option<(String, u64)>,
    /// When the last keepalive went, or the master was last heard from at a tick (ms).
    last_ping_ms: u64,
    /// The master was heard from since the last tick: no keepalive needed yet.
    heard: bool,
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
        let mut r = mix_service::stanza::iq_result(st, None);
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
        room.touched_us = self.now_us;
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
                let mut p = filtered(st, |c| !is_dmuc_tag(c));
                set_attr(&mut p, "from", &escaped);
                set_attr(&mut p, "to", &format!("{master}/{nick}"));
                if unavailable {
                    if room.joining.remove(&full).is_some() {
                        room.wants.remove(&full);
                        room.shown.remove(&full);
                    }
                    if room.down {
                        // The master does not hear it now; the local occupants do.
                        if let Some(n) = room.local.remove(&full) {
                            out.extend(room.local_leave(&local_room, &full, &n, st));
                        }
                        return out;
                    }
                } else if present.is_none() {
                    room.joining.insert(full.clone(), nick.to_owned());
                    let h = st
                        .get_child("x", NS_MUC)
                        .and_then(|x| x.get_child("history", NS_MUC));
                    room.wants
                        .insert(full.clone(), history_limits(h, self.now_us));
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
        let now_us = self.now_us;
        let Some(room) = self.rooms.get_mut(master) else {
            return Vec::new();
        };
        room.touched_us = now_us;
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
        room.heard = true;
        if room.down {
            out.extend(room.link_back(master, &domain));
        }
        match to.node() {
            None => {
                // To the mirror itself: configuration, roster, or a broadcast.
                if st.name() == "iq" {
                    let now = self.now_us;
                    out.extend(room.master_iq(st, master, &domain, &local_room, now));
                    return out;
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
                let message = st.name() == "message";
                if message && st.attr("type") == Some("groupchat") {
                    let now = self.now_us;
                    if room.asked.is_none() {
                        room.keep(st, &shown_from, &local_room, now);
                    } else {
                        match copied(st, &shown_from, &local_room, now) {
                            Some((Some(ts), m)) if room.meanwhile.len() < COPY => {
                                room.meanwhile.push((ts, m));
                            }
                            // A subject change: the answer has it or a later one.
                            Some((None, m)) => room.subject = Some(m),
                            _ => {}
                        }
                    }
                }
                // As local users see it, made once: with real JIDs, and without for those who
                // may not see them.
                let mut shown = st.clone();
                set_attr(&mut shown, "from", &shown_from);
                localize(&mut shown, master, &local_room);
                let mut hidden = shown.clone();
                strip_jids(&mut hidden);
                for (full, nick) in &room.local {
                    if st.name() == "presence" && from_nick.as_deref() == Some(nick.as_str()) {
                        // Its own presence comes to it with 110, through its own address.
                        continue;
                    }
                    let sees_jids = room.non_anonymous
                        || room.roles.get(nick).map(String::as_str) == Some("moderator");
                    let mut d = if sees_jids {
                        shown.clone()
                    } else {
                        hidden.clone()
                    };
                    set_attr(&mut d, "to", full);
                    if message && room.waiting.contains(full) {
                        // After its history and subject, when they come.
                        hold(&mut room.held, full, d);
                        continue;
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
                            room.waiting.remove(&user);
                            room.held.remove(&user);
                            room.wants.remove(&user);
                            if room.local.is_empty() {
                                // The master stops broadcasting here: the copy goes stale.
                                room.remote.clear();
                                room.present.clear();
                                room.roles.clear();
                                room.history.clear();
                                room.subject = None;
                                room.seeded = false;
                                room.asked = None;
                                room.refill = false;
                            }
                        } else {
                            room.joining.remove(&user);
                            let entering = !room.local.contains_key(&user) || rejoining;
                            room.local.insert(user.clone(), n.clone());
                            let mut seen_by_others = st.clone();
                            strip_status(&mut seen_by_others);
                            room.present.insert(n.clone(), seen_by_others);
                            // Its own role decides whether it sees real JIDs.
                            if let Some(role) = st
                                .get_child("x", NS_MUC_USER)
                                .and_then(|x| x.get_child("item", NS_MUC_USER))
                                .and_then(|i| i.attr("role"))
                            {
                                room.roles.insert(n.clone(), role.to_owned());
                            }
                            // The master shows a joiner the others only when the room is new to
                            // this mirror (dmuc::Room::dmuc_outbound); otherwise the mirror
                            // does, from its copy, before the self-presence (XEP-0045 §7.2.3
                            // order). Back after a lost link, a user sees again only the remote
                            // occupants (it never saw the local ones go).
                            let shown = room.shown.remove(&user).unwrap_or_default();
                            if entering && !rejoining {
                                if room.seeded && room.asked.is_none() {
                                    serve_copy = true;
                                } else {
                                    room.waiting.insert(user.clone());
                                    if room.asked.is_none() {
                                        out.push(room.history_request(master, &domain));
                                    }
                                }
                            }
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
                                room.rejoining.remove(&user);
                                return out;
                            }
                        }
                    } else if st.attr("type") == Some("error") {
                        // Refused: nothing of its entry is kept.
                        room.joining.remove(&user);
                        room.wants.remove(&user);
                        room.shown.remove(&user);
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
                let mut d = st.clone();
                set_attr(&mut d, "from", &shown_from);
                set_attr(&mut d, "to", &user);
                localize(&mut d, master, &local_room);
                let archived = st.has_child("result", "urn:xmpp:mam:2");
                if st.name() == "message" && !archived && room.waiting.contains(&user) {
                    // After its history and subject (XEP-0045 §7.2.2), when they come. (Archive
                    // results go at once: the IQ that ends them does.)
                    hold(&mut room.held, &user, d);
                    return out;
                }
                out.push(d);
                if serve_copy {
                    // History and subject from the copy (XEP-0045 §7.2.2: after the
                    // self-presence, history, then the subject).
                    out.extend(room.serve(&user, &local_room));
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
        // Rooms nobody here is in are forgotten after a while: any local user can name any
        // room, and its entry must not outlive the question.
        let now_us = self.now_us;
        self.rooms.retain(|_, r| {
            !(r.local.is_empty()
                && r.joining.is_empty()
                && r.queued.is_empty()
                && now_us.saturating_sub(r.touched_us) >= FORGET_US)
        });
        let domain = self.domain.clone();
        let mut out = Vec::new();
        let masters: Vec<String> = self.rooms.keys().cloned().collect();
        for master in masters {
            let local_room = self.local_room(&master);
            let Some(room) = self.rooms.get_mut(&master) else {
                continue;
            };
            // (What users who have left said while the link was down still waits for it.)
            if room.local.is_empty() && room.joining.is_empty() && room.queued.is_empty() {
                continue;
            }
            if std::mem::take(&mut room.heard) && !room.down {
                room.last_ping_ms = now_ms;
            }
            if room.asked.is_some() {
                let since = *room.asked_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= HISTORY_TIMEOUT_MS {
                    out.extend(room.history_unanswered(&local_room, false));
                }
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
        if let Some((ts, m)) = copied(st, shown_from, local_room, now_us) {
            match ts {
                Some(ts) => {
                    if self.history.len() >= COPY {
                        self.history.pop_front();
                    }
                    self.history.push_back((ts, m));
                }
                None => self.subject = Some(m),
            }
        }
    }

    /// The history request (seed 003): as much as a local user may ask for.
    fn history_request(&mut self, master: &str, domain: &str) -> Element {
        self.pings += 1;
        let id = format!("dmuc-history-{}", self.pings);
        let mut iq = elem(
            "iq",
            NS_STANZA,
            &[
                ("from", domain),
                ("to", master),
                ("type", "get"),
                ("id", &id),
            ],
        );
        let mut r = elem("room", NS_DMUC0, &[("id", master)]);
        r.append_child(elem(
            "history",
            NS_MUC,
            &[("maxstanzas", &COPY.to_string())],
        ));
        iq.append_child(r);
        self.asked = Some(id);
        self.asked_ms = None;
        iq
    }

    /// The answer did not come (refused, timed out, or lost with the link): the copy takes
    /// what came live meanwhile, and those waiting get what it has. Unless the link was lost,
    /// the copy counts as there from now on (later users do not wait for it); after a lost
    /// link the question is asked again anyway, and a copy that never had an answer is filled
    /// by that one without handing its backlog to anyone.
    fn history_unanswered(&mut self, local_room: &str, link_lost: bool) -> Vec<Element> {
        if !link_lost {
            self.seeded = true;
        }
        self.asked = None;
        self.asked_ms = None;
        self.refill = false;
        for entry in std::mem::take(&mut self.meanwhile) {
            if self.history.len() >= COPY {
                self.history.pop_front();
            }
            self.history.push_back(entry);
        }
        let mut out = Vec::new();
        for user in std::mem::take(&mut self.waiting) {
            out.extend(self.serve(&user, local_room));
        }
        out
    }

    /// The master's answer to the history request: the copy, then the users waiting for it.
    fn history_answer(&mut self, st: &Element, local_room: &str, now_us: i64) -> Vec<Element> {
        if st.attr("type") != Some("result") {
            return self.history_unanswered(local_room, false);
        }
        self.asked = None;
        self.asked_ms = None;
        let mut out = Vec::new();
        {
            let before: BTreeSet<String> = self
                .history
                .iter()
                .chain(self.meanwhile.iter())
                .filter_map(|(_, m)| key(m))
                .collect();
            self.meanwhile.clear();
            self.history.clear();
            let items = st
                .get_child("history", NS_MUC)
                .into_iter()
                .flat_map(|h| h.children())
                .filter(|m| m.name() == "message");
            for m in items {
                let m = renamespace(m, &m.ns(), NS_STANZA);
                let nick = m
                    .attr("from")
                    .and_then(|f| f.parse::<Jid>().ok())
                    .and_then(|f| f.resource().map(|r| r.to_string()));
                let shown_from = match &nick {
                    Some(n) => format!("{local_room}/{n}"),
                    None => local_room.to_owned(),
                };
                let Some((ts, kept)) = copied(&m, &shown_from, local_room, now_us) else {
                    continue;
                };
                let Some(ts) = ts else {
                    self.subject = Some(kept);
                    continue;
                };
                // Said by a remote occupant while the link was down: the local occupants
                // never had it (what local occupants said, they saw then).
                let local = nick
                    .as_deref()
                    .is_some_and(|n| self.local.values().any(|l| l == n));
                if self.refill && !local && key(&kept).is_none_or(|k| !before.contains(&k)) {
                    for to in self.local.keys().filter(|u| !self.waiting.contains(*u)) {
                        let mut d = kept.clone();
                        set_attr(&mut d, "to", to);
                        out.push(d);
                    }
                }
                if self.history.len() >= COPY {
                    self.history.pop_front();
                }
                self.history.push_back((ts, kept));
            }
        }
        self.seeded = true;
        self.refill = false;
        for user in std::mem::take(&mut self.waiting) {
            out.extend(self.serve(&user, local_room));
        }
        out
    }

    /// History and subject for a local user who entered, from the copy, within the limits it
    /// asked for (XEP-0045 §7.2.15; whole stanzas, the newest kept), then what the master sent
    /// it meanwhile.
    fn serve(&mut self, user: &str, local_room: &str) -> Vec<Element> {
        self.waiting.remove(user);
        let (max, since_us, maxchars) =
            self.wants
                .remove(user)
                .unwrap_or((DEFAULT_HISTORY, None, None));
        let held = self.held.remove(user).unwrap_or_default();
        let live: BTreeSet<String> = held.iter().filter_map(key).collect();
        let mut out = Vec::new();
        let mut chars = 0usize;
        for (ts, m) in self.history.iter().rev() {
            if out.len() >= max || since_us.is_some_and(|s| *ts < s) {
                break;
            }
            if key(m).is_some_and(|k| live.contains(&k)) {
                // It comes live, after the subject.
                continue;
            }
            let mut d = m.clone();
            set_attr(&mut d, "to", user);
            if let Some(limit) = maxchars {
                chars += to_string(&d).len();
                if chars > limit {
                    break;
                }
            }
            out.push(d);
        }
        out.reverse();
        let mut subject = self.subject.clone().unwrap_or_else(|| {
            let mut m = elem(
                "message",
                NS_STANZA,
                &[("from", local_room), ("type", "groupchat")],
            );
            m.append_child(Element::bare("subject", NS_STANZA));
            m
        });
        set_attr(&mut subject, "to", user);
        out.push(subject);
        out.extend(held);
        out
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
        // (One still entering is local too: the room shows the others its arrival before it
        // gets its own presence.)
        if self
            .local
            .values()
            .chain(self.joining.values())
            .any(|n| n == nick)
        {
            self.present.insert(nick.to_owned(), st.clone());
        } else {
            self.remote.insert(nick.to_owned(), st.clone());
        }
    }

    /// Configuration and roster from the master (seed: the mirror MUST answer), and the
    /// answer to the history request.
    fn master_iq(
        &mut self,
        st: &Element,
        master: &str,
        domain: &str,
        local_room: &str,
        now_us: i64,
    ) -> Vec<Element> {
        if !matches!(st.attr("type"), Some("set") | Some("get")) {
            if self.asked.is_some() && st.attr("id") == self.asked.as_deref() {
                return self.history_answer(st, local_room, now_us);
            }
            return Vec::new();
        }
        let mut out = Vec::new();
        if st.attr("type") == Some("get") && st.has_child("ping", "urn:xmpp:ping") {
            // The master's keepalive (crate::dmuc::PING_INTERVAL_US).
            return vec![mix_service::stanza::iq_result(st, None)];
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
        } else if let Some(roster) = st.get_child("roster", NS_DMUC0) {
            // Who is a moderator (and so sees real JIDs) is known from the roster on, before
            // any presence says it.
            for item in roster.children().filter(|c| c.name() == "item") {
                if let (Some(nick), Some(role)) = (item.attr("name"), item.attr("role")) {
                    self.roles.insert(nick.to_owned(), role.to_owned());
                }
            }
            // Seed 003: the new mirror SHOULD request room history (after the roster).
            if self.asked.is_none() {
                out.push(self.history_request(master, domain));
            }
        } else {
            return refusal(
                st,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "",
            );
        }
        let r = mix_service::stanza::iq_result(st, None);
        // The answer first, then the history request.
        out.insert(0, r);
        out
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
        // The answer to a history request may be lost with the link: those waiting for it get
        // what the copy has (the link's return asks again).
        if self.asked.is_some() {
            out.extend(self.history_unanswered(local_room, true));
        }
        // What the dead link may have swallowed: the local occupants hear it now, the master
        // when the link is back (and the master's copy, if it had it, is not delivered twice).
        for (user, nick, said) in std::mem::take(&mut self.unacked) {
            out.extend(self.said_while_down(local_room, &user, &nick, master, domain, &said));
        }
        for (nick, _) in std::mem::take(&mut self.remote) {
            for full in self.local.keys() {
                // 333: gone because of a technical problem (XEP-0045 §"service-error-kick").
                out.push(out_of_room(&format!("{local_room}/{nick}"), full, &["333"]));
            }
            self.roles.remove(&nick);
        }
        out
    }

    /// The link is back: every local occupant joins again (the master forgot them), then what
    /// they said meanwhile goes, in order, then the history is asked again: what the remote
    /// occupants said meanwhile reaches the local ones and the copy.
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
            // (One that was still entering when the link went enters for the first time.)
            if self.local.contains_key(full) {
                self.rejoining.insert(full.clone());
            }
        }
        out.extend(self.queued.drain(..));
        if !self.local.is_empty() {
            self.refill = self.seeded;
            out.push(self.history_request(master, domain));
        }
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

/// A groupchat message from the master as the copy keeps it: shown from the room's address
/// on the mirror (`shown_from`), with the `<delay/>` it came with or one stamped now, and its
/// time; a subject change (no body) with no time; nothing else is kept.
fn copied(
    st: &Element,
    shown_from: &str,
    local_room: &str,
    now_us: i64,
) -> Option<(Option<i64>, Element)> {
    let mut m = filtered(st, |c| !c.is("delay", "urn:xmpp:delay"));
    if let Some(master) = st.attr("from").and_then(|f| f.parse::<Jid>().ok()) {
        localize(&mut m, &master.to_bare().to_string(), local_room);
    }
    remove_attr(&mut m, "to");
    set_attr(&mut m, "from", shown_from);
    if !st.has_child("body", NS_STANZA) {
        return st.has_child("subject", NS_STANZA).then_some((None, m));
    }
    // The stamp as the master wrote it, when it is one.
    let (ts, stamp) = st
        .get_child("delay", "urn:xmpp:delay")
        .and_then(|d| d.attr("stamp"))
        .and_then(|s| Some((parse_datetime(s)?, s.to_owned())))
        .unwrap_or_else(|| (now_us, datetime(now_us)));
    m.append_child(elem(
        "delay",
        "urn:xmpp:delay",
        &[("from", local_room), ("stamp", &stamp)],
    ));
    Some((Some(ts), m))
}

/// Keeps a stanza for a local user waiting for its history (bounded: beyond the queue limit,
/// the oldest go).
fn hold(held: &mut BTreeMap<String, Vec<Element>>, user: &str, st: Element) {
    let q = held.entry(user.to_owned()).or_default();
    if q.len() >= QUEUE_LIMIT {
        q.remove(0);
    }
    q.push(st);
}

/// A message for a local user, as from the room's address on the mirror: the room's
/// `<stanza-id by/>` (XEP-0359: a client trusts only ids by the room it is in), and the
/// archived message of an archive result (XEP-0313).
fn localize(d: &mut Element, master: &str, local_room: &str) {
    if d.name() != "message" {
        return;
    }
    for sid in d
        .children_mut()
        .filter(|c| c.name() == "stanza-id" && c.attr("by") == Some(master))
    {
        set_attr(sid, "by", local_room);
    }
    let Some(m) = d
        .get_child_mut("result", "urn:xmpp:mam:2")
        .and_then(|r| r.get_child_mut("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.children_mut().find(|c| c.name() == "message"))
    else {
        return;
    };
    let shown = m
        .attr("from")
        .and_then(|f| f.parse::<Jid>().ok())
        .filter(|f| f.to_bare().to_string() == master)
        .map(|f| match f.resource() {
            Some(n) => format!("{local_room}/{n}"),
            None => local_room.to_owned(),
        });
    if let Some(shown) = shown {
        set_attr(m, "from", &shown);
    }
}

/// What tells one archived message from another: the room's `<stanza-id/>`.
fn key(m: &Element) -> Option<String> {
    m.children()
        .find(|c| c.name() == "stanza-id")
        .and_then(|c| c.attr("id"))
        .map(str::to_owned)
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

    /// A local user enters through the mirror; what the master's self-presence made the
    /// mirror send (to the user, and a history request when its copy is not there yet).
    fn joined(m: &mut MirrorService, full: &str, esc: &str, nick: &str) -> Vec<Element> {
        joined_asking(m, full, esc, nick, "")
    }

    fn joined_asking(
        m: &mut MirrorService,
        full: &str,
        esc: &str,
        nick: &str,
        history: &str,
    ) -> Vec<Element> {
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{full}' to='{LROOM}/{nick}'><x xmlns='{NS_MUC}'>{history}</x></presence>"
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
        let own = out
            .iter()
            .find(|p| p.name() == "presence" && to_string(p).contains("code='110'"))
            .expect("self-presence");
        assert_eq!(own.attr("from"), Some(format!("{LROOM}/{nick}").as_str()));
        assert!(
            out.iter()
                .all(|e| e.attr("to") == Some(full) || is_history_request(e))
        );
        out
    }

    fn is_history_request(e: &Element) -> bool {
        e.name() == "iq"
            && e.attr("to") == Some(MASTER)
            && e.attr("from") == Some("mirror.b")
            && e.get_child("room", NS_DMUC0)
                .is_some_and(|r| r.attr("id") == Some(MASTER) && r.has_child("history", NS_MUC))
    }

    /// The master answers the history request among `out` with these messages.
    fn answer(m: &mut MirrorService, out: &[Element], messages: &str) -> Vec<Element> {
        let ask = out
            .iter()
            .find(|e| is_history_request(e))
            .expect("a history request");
        let id = ask.attr("id").unwrap_or_default();
        m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='result' id='{id}' from='{MASTER}' to='mirror.b'>\
             <history xmlns='{NS_MUC}'>{messages}</history></iq>"
        )))
    }

    fn archived(nick: &str, sid: &str, body: &str, stamp: &str) -> String {
        format!(
            "<message xmlns='jabber:client' type='groupchat' from='{MASTER}/{nick}'><body>{body}</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='{MASTER}' id='{sid}'/>\
             <delay xmlns='urn:xmpp:delay' from='{MASTER}' stamp='{stamp}'/></message>"
        )
    }

    fn bodies(out: &[Element], to: &str) -> Vec<String> {
        out.iter()
            .filter(|e| e.attr("to") == Some(to))
            .filter_map(|e| e.get_child("body", NS_STANZA).map(|b| b.text()))
            .collect()
    }

    #[test]
    fn local_users_reach_the_master_once_and_broadcasts_reach_every_local_user() {
        let mut m = MirrorService::new("mirror.b");
        m.set_now(parse_datetime("2026-11-22T01:00:30Z").expect("time"));
        // The master's configuration and roster are answered; after the roster, the mirror
        // asks for the history it keeps (seed 003).
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='c1' from='{MASTER}' to='mirror.b'><config xmlns='{NS_DMUC0}'>\
             <x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_whois'><value>moderators</value></field></x>\
             </config></iq>"
        )));
        assert!(
            to_string(&out[0]).contains("service-unavailable"),
            "not a room this mirror mirrors yet"
        );
        let first = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{WAYNE}' to='{LROOM}/wayne'><x xmlns='{NS_MUC}'/></presence>"
        )));
        assert_eq!(to_of(&first), ["room@conference.a/wayne"]);
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='c1' from='{MASTER}' to='mirror.b'><config xmlns='{NS_DMUC0}'>\
             <x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_whois'><value>moderators</value></field></x>\
             </config></iq>"
        )));
        assert_eq!(out[0].attr("type"), Some("result"));
        assert_eq!(out[0].attr("id"), Some("c1"));
        let out = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='r1' from='{MASTER}' to='mirror.b'><roster xmlns='{NS_DMUC0}'>\
             <item affiliation='owner' role='moderator' jid='scott@a' name='scott'/></roster></iq>"
        )));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].attr("id"), Some("r1"));
        assert!(is_history_request(&out[1]));
        let asked = out;
        // wayne's self-presence: his history waits for the answer; so does a message the
        // master broadcasts meanwhile (live for him: it comes after his history and subject,
        // and not in the history again, though the answer has it too).
        let out = m.handle(&self_presence(WAYNE_ESC, "wayne"));
        assert_eq!(to_of(&out), [WAYNE]);
        let meanwhile = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='mirror.b'><body>early</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='{MASTER}' id='s2'/></message>"
        )));
        assert!(meanwhile.is_empty(), "{meanwhile:?}");
        let out = answer(
            &mut m,
            &asked,
            &format!(
                "{}{}<message xmlns='jabber:client' type='groupchat' from='{MASTER}/scott'><subject>plans</subject></message>",
                archived("scott", "s1", "earlier", "2026-11-22T01:00:00Z"),
                archived("scott", "s2", "early", "2026-11-22T01:00:20Z"),
            ),
        );
        assert_eq!(to_of(&out), [WAYNE, WAYNE, WAYNE]);
        assert_eq!(bodies(&out, WAYNE), ["earlier", "early"]);
        assert!(to_string(&out[1]).contains("<subject>plans</subject>"));
        assert!(!to_string(&out[2]).contains("urn:xmpp:delay"), "live");
        assert!(
            out.iter()
                .all(|e| e.attr("from") == Some(&*format!("{LROOM}/scott")))
        );
        assert!(to_string(&out[0]).contains("stamp='2026-11-22T01:00:00Z'"));
        // keith, the second local user: the master sends him only his own presence, the
        // mirror shows him wayne, the history he asked for and the subject from its copy.
        let out = joined_asking(
            &mut m,
            KEITH,
            KEITH_ESC,
            "keith",
            &format!("<history xmlns='{NS_MUC}' maxstanzas='1'/>"),
        );
        let froms: Vec<_> = out
            .iter()
            .map(|e| e.attr("from").unwrap_or_default())
            .collect();
        // Occupants, self-presence, history, subject (XEP-0045 §7.2.2).
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
        assert_eq!(bodies(&out, KEITH), ["early"]);
        assert!(to_string(&out[3]).contains("<subject>plans</subject>"));
        // XEP-0045 §7.2.15 limits from the copy: seconds, and maxchars (whole stanzas).
        let dave = "dave@b/d";
        let dave_esc = "dave\\40b\\2fd@mirror.b";
        let out = joined_asking(
            &mut m,
            dave,
            dave_esc,
            "dave",
            &format!("<history xmlns='{NS_MUC}' seconds='15'/>"),
        );
        assert_eq!(bodies(&out, dave), ["early"]);
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/dave' to='{dave_esc}' type='unavailable'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='none'/><status code='110'/></x></presence>"
        )));
        let out = joined_asking(
            &mut m,
            dave,
            dave_esc,
            "dave",
            &format!("<history xmlns='{NS_MUC}' maxchars='10'/>"),
        );
        assert!(bodies(&out, dave).is_empty());
        assert!(to_string(out.last().expect("subject")).contains("<subject>plans</subject>"));
        // keith's presence, broadcast once to the mirror, reaches wayne (and dave), not keith;
        // real JIDs are for moderators only in this room.
        let out = m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/keith' to='mirror.b'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant' jid='{KEITH}'/></x></presence>"
        )));
        assert_eq!(to_of(&out), [dave, WAYNE]);
        assert!(!to_string(&out[0]).contains("jid="), "semi-anonymous");
        // One message from the master reaches every local occupant, and the copy.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='m1' from='{MASTER}/scott' to='mirror.b'><body>hi</body></message>"
        )));
        assert_eq!(to_of(&out), [dave, KEITH, WAYNE]);
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
        let out = joined(&mut m, WAYNE, WAYNE_ESC, "wayne");
        answer(
            &mut m,
            &out,
            &archived("scott", "s1", "before", "2026-11-22T01:00:00Z"),
        );
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
        assert!(m.tick(1_000).is_empty(), "heard from just now");
        assert!(
            m.tick(PING_INTERVAL_MS).is_empty(),
            "quiet for less than the interval"
        );
        let ping = m.tick(1_000 + PING_INTERVAL_MS);
        assert_eq!(to_of(&ping), [MASTER]);
        assert!(ping[0].has_child("ping", "urn:xmpp:ping"));
        let out = m.tick(1_000 + PING_INTERVAL_MS + PING_TIMEOUT_MS);
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
        // The master answers again: both join again, the queue goes, in order, and the
        // history is asked again.
        let back = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='result' id='dmuc-probe' from='{MASTER}' to='mirror.b'/>"
        )));
        let names: Vec<_> = back
            .iter()
            .map(|e| (e.name(), e.attr("to").unwrap_or_default()))
            .collect();
        assert_eq!(
            names,
            [
                ("presence", "room@conference.a/keith"),
                ("presence", "room@conference.a/wayne"),
                ("message", MASTER),
                ("message", MASTER),
                ("iq", MASTER)
            ]
        );
        assert_eq!(back[2].attr("id"), Some("b1"));
        assert_eq!(back[3].attr("id"), Some("q1"));
        assert!(back[2..4].iter().all(|q| q.attr("from") == Some(WAYNE_ESC)));
        // Their repeated self-presence is not shown again...
        assert!(m.handle(&self_presence(WAYNE_ESC, "wayne")).is_empty());
        // ...nor the master's reflection of what they said meanwhile.
        let echo = el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='q1' from='{MASTER}/wayne' to='mirror.b'><body>still here?</body></message>"
        ));
        assert!(m.handle(&echo).is_empty());
        // Live again before the answer comes: delivered now (and in the answer too).
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='n0' from='{MASTER}/scott' to='mirror.b'><body>between</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='{MASTER}' id='s4'/></message>"
        )));
        assert_eq!(to_of(&out), [KEITH, WAYNE]);
        // What scott said while the link was down comes with the history, once, to both;
        // what they had already (and what they said themselves) does not come again.
        let out = answer(
            &mut m,
            &back,
            &format!(
                "{}{}{}{}",
                archived("scott", "s1", "before", "2026-11-22T01:00:00Z"),
                archived("scott", "s2", "missed", "2026-11-22T01:01:00Z"),
                archived("wayne", "s3", "still here?", "2026-11-22T01:02:00Z"),
                archived("scott", "s4", "between", "2026-11-22T01:03:00Z"),
            ),
        );
        assert_eq!(bodies(&out, WAYNE), ["missed"]);
        assert_eq!(bodies(&out, KEITH), ["missed"]);
        assert_eq!(out.len(), 2);
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='groupchat' id='n1' from='{MASTER}/scott' to='mirror.b'><body>back</body></message>"
        )));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn real_jids_reach_local_moderators_as_the_roster_says() {
        let mut m = MirrorService::new("mirror.b");
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{WAYNE}' to='{LROOM}/wayne'><x xmlns='{NS_MUC}'/></presence>"
        )));
        m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='c1' from='{MASTER}' to='mirror.b'><config xmlns='{NS_DMUC0}'>\
             <x xmlns='jabber:x:data' type='form'><field var='muc#roomconfig_whois'><value>moderators</value></field></x>\
             </config></iq>"
        )));
        m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='set' id='r1' from='{MASTER}' to='mirror.b'><roster xmlns='{NS_DMUC0}'>\
             <item affiliation='admin' role='moderator' jid='wayne@b' name='wayne'/></roster></iq>"
        )));
        let scott = el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/scott' to='mirror.b'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant' jid='scott@a/s'/></x></presence>"
        ));
        let out = m.handle(&scott);
        assert!(out.is_empty(), "wayne is not in yet");
        let own = |role: &str| {
            el(&format!(
                "<presence xmlns='{NS}' from='{MASTER}/wayne' to='{WAYNE_ESC}'><x xmlns='{NS_MUC_USER}'>\
                 <item affiliation='admin' role='{role}'/><status code='110'/></x></presence>"
            ))
        };
        m.handle(&own("moderator"));
        let out = m.handle(&scott);
        assert_eq!(to_of(&out), [WAYNE]);
        assert!(
            to_string(&out[0]).contains("jid='scott@a/s'"),
            "a moderator sees it"
        );
        // Made a participant (its own presence says so): no more real JIDs.
        m.handle(&own("participant"));
        let out = m.handle(&scott);
        assert!(!to_string(&out[0]).contains("jid="), "{out:?}");
    }

    #[test]
    fn waiting_for_history_loses_and_repeats_nothing() {
        let mut m = MirrorService::new("mirror.b");
        // wayne enters; the answer to the mirror's request never comes (too big for the
        // link, say). Meanwhile a message and a configuration notice (no body) come live.
        let asked = joined(&mut m, WAYNE, WAYNE_ESC, "wayne");
        assert!(asked.iter().any(is_history_request));
        let live = |body: &str, sid: &str| {
            el(&format!(
                "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='mirror.b'><body>{body}</body>\
                 <stanza-id xmlns='urn:xmpp:sid:0' by='{MASTER}' id='{sid}'/></message>"
            ))
        };
        assert!(m.handle(&live("one", "s1")).is_empty(), "after his subject");
        let notice = el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{MASTER}' to='mirror.b'><x xmlns='{NS_MUC_USER}'><status code='104'/></x></message>"
        ));
        assert!(m.handle(&notice).is_empty());
        let subject = el(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{MASTER}/scott' to='mirror.b'><subject>news</subject></message>"
        ));
        assert!(m.handle(&subject).is_empty());
        assert!(m.tick(1_000).is_empty());
        let out = m.tick(1_000 + HISTORY_TIMEOUT_MS);
        let to_wayne: Vec<_> = out.iter().filter(|e| e.attr("to") == Some(WAYNE)).collect();
        assert_eq!(to_wayne.len(), 4, "{out:?}");
        assert!(to_string(to_wayne[0]).contains("<subject>news</subject>"));
        assert_eq!(bodies(&out, WAYNE), ["one"]);
        assert!(to_string(to_wayne[2]).contains("code='104'"));
        assert!(
            to_string(to_wayne[3]).contains("<subject>news</subject>"),
            "live"
        );
        // keith enters later: "one" and the subject are in the copy (from the live traffic).
        let out = joined(&mut m, KEITH, KEITH_ESC, "keith");
        assert_eq!(bodies(&out, KEITH), ["one"]);
        assert!(to_string(out.last().expect("subject")).contains("<subject>news</subject>"));
        assert!(!out.iter().any(is_history_request));
        // keith is shown to wayne by the master before his own presence comes (he is
        // local, not a remote occupant)...
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{WAYNE}' to='{LROOM}/wayne'><x xmlns='{NS_MUC}'/></presence>"
        )));
        let dave = "dave@b/d";
        let dave_esc = "dave\\40b\\2fd@mirror.b";
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{dave}' to='{LROOM}/dave'><x xmlns='{NS_MUC}'/></presence>"
        )));
        m.handle(&el(&format!(
            "<presence xmlns='{NS}' from='{MASTER}/dave' to='mirror.b'><x xmlns='{NS_MUC_USER}'>\
             <item affiliation='none' role='participant'/></x></presence>"
        )));
        m.handle(&self_presence(dave_esc, "dave"));
        // ...so when the link is lost, nobody hears that dave (local) left; scott (remote) did.
        let out = m.handle(&el(&format!(
            "<message xmlns='{NS}' type='error' from='{MASTER}' to='mirror.b'><error type='cancel'>\
             <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )));
        let left: Vec<_> = out
            .iter()
            .filter(|e| e.attr("type") == Some("unavailable"))
            .map(|e| e.attr("from").unwrap_or_default())
            .collect();
        assert!(!left.iter().any(|f| f.ends_with("/dave")), "{left:?}");
    }

    #[test]
    fn a_link_lost_before_the_first_answer_pushes_no_backlog() {
        let mut m = MirrorService::new("mirror.b");
        let out = joined_asking(
            &mut m,
            WAYNE,
            WAYNE_ESC,
            "wayne",
            &format!("<history xmlns='{NS_MUC}' maxstanzas='0'/>"),
        );
        assert!(out.iter().any(is_history_request));
        let lost = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='error' from='{MASTER}' to='mirror.b'><error type='cancel'>\
             <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )));
        assert!(
            lost.iter()
                .any(|e| e.attr("to") == Some(WAYNE) && to_string(e).contains("<subject"))
        );
        let back = m.handle(&el(&format!(
            "<iq xmlns='{NS}' type='result' id='x' from='{MASTER}' to='mirror.b'/>"
        )));
        let out = answer(
            &mut m,
            &back,
            &format!(
                "{}{}",
                archived("scott", "s1", "old", "2026-11-22T01:00:00Z"),
                archived("scott", "s2", "older", "2026-11-22T01:00:01Z")
            ),
        );
        assert!(bodies(&out, WAYNE).is_empty(), "{out:?}");
    }

    #[test]
    fn rooms_nobody_here_is_in_are_forgotten() {
        let mut m = MirrorService::new("mirror.b");
        m.set_now(1_000_000);
        for i in 0..100 {
            let out = m.handle(&el(&format!(
                "<iq xmlns='{NS}' type='get' id='d{i}' from='{WAYNE}' to='r{i}\\40conference.a@mirror.b'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            )));
            assert_eq!(out.len(), 1, "relayed to the master");
        }
        joined(&mut m, KEITH, KEITH_ESC, "keith");
        assert_eq!(m.rooms.len(), 101);
        m.set_now(1_000_000 + FORGET_US);
        m.tick(1_000);
        assert_eq!(m.rooms.len(), 1, "only the room keith is in");
        assert_eq!(m.local_occupants(MASTER).len(), 1);
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
