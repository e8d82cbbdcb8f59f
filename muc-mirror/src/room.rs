//! A channel seen as a XEP-0045 room on the mirror domain (XEP-0408 "partially integrated").
//!
//! The room owns the channel: stanzas for either face come here. MIX stanzas go to the
//! channel, and what happened (its [`ChannelEvent`]s) is shown to MUC occupants; MUC stanzas
//! become channel operations (a MUC occupant is a channel participant, its presence a
//! presence-node item, its messages the channel's messages), shown to MIX participants by the
//! channel itself. One archive, one subject, one set of rights, one nick per user.

use std::collections::BTreeMap;

use jid::{BareJid, Jid};
use minidom::Element;
use mix_service::channel::{Channel, ChannelEvent, Ctx, Outcome, Role, Send};
use mix_service::stanza::{NS_STANZA, error, error_reply, iq_result};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::settings::Settings;

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const FORM_REQUEST: &str = "http://jabber.org/protocol/muc#request";

/// History sent on entering when the client does not ask (XEP-0045 §7.2.15 leaves it to the
/// service; Prosody sends 20).
pub const DEFAULT_HISTORY: usize = 20;
/// The most history a client can ask for.
pub const MAX_HISTORY: usize = 250;
/// The most characters of history in one answer to a DMUC mirror (its messages together).
pub const MIRROR_HISTORY_CHARS: usize = 100_000;

/// One user in the room: one nick, any number of clients (XEP-0045 §7.2.10).
#[derive(Debug, Clone)]
pub struct Occupant {
    pub nick: String,
    pub bare: String,
    /// Full JID → the presence it last sent (jabber:client children only).
    pub sessions: BTreeMap<String, Element>,
    /// Its role while it is in (XEP-0045 §5.1: a role lasts the visit; a room that stops
    /// being moderated does not give voice to its visitors). None: derived each time.
    pub role: Option<&'static str>,
}

/// History the shell reads from the archive for a newcomer, then the subject after it
/// (XEP-0045 §7.2.2 order: presences, self-presence, history, subject).
#[derive(Debug, Clone)]
pub struct History {
    /// The newcomer's full JID.
    pub to: String,
    /// Most recent messages to send; 0 for none.
    pub max: usize,
    /// Only messages at or after this time (Unix µs).
    pub since_us: Option<i64>,
    /// At most this many characters of stanzas in all.
    pub maxchars: Option<usize>,
    /// The subject message, sent after the history.
    pub subject: Element,
    /// Sent after the subject: live notices such as pending invitations (seed 000).
    pub then: Vec<Element>,
    /// A DMUC mirror's history request (seed 003, `urn:xmpp:dmuc:0`): the answer, an IQ
    /// result whose `<history/>` gets the messages and then the subject, instead of sending
    /// them one by one.
    pub reply: Option<Element>,
}

/// How long a relayed IQ waits for its answer, and how many may wait.
const RELAY_TIMEOUT_US: i64 = 120 * 1_000_000;
const MAX_RELAYS: usize = 4096;

/// An IQ passed on to an occupant (MUC-IQ-01).
#[derive(Debug, Clone)]
struct MucRelay {
    requester: String,
    id: String,
    addressed: String,
    target: String,
    sent_us: i64,
}

/// One occupant's presence as announced to the room.
struct Announce<'a> {
    bare: &'a str,
    nick: &'a str,
    source: Option<&'a Element>,
    full: Option<&'a str>,
    unavailable: bool,
    codes: &'a [&'a str],
}

/// What a stanza produced, for the shell: the channel's outcome plus history to read.
#[derive(Debug, Default)]
pub struct RoomOutcome {
    pub outcome: Outcome,
    pub history: Vec<History>,
}

impl From<Outcome> for RoomOutcome {
    fn from(outcome: Outcome) -> Self {
        RoomOutcome {
            outcome,
            history: Vec::new(),
        }
    }
}

/// The bare JID of whoever is entering a room of `muc_domain` with this stanza, if it is an
/// entry (available presence to `room/nick` with `<x xmlns='…muc'/>`).
pub fn is_entering(st: &Element, muc_domain: &BareJid) -> Option<String> {
    let to = st.attr("to")?.parse::<Jid>().ok()?;
    let from = st.attr("from")?.parse::<Jid>().ok()?;
    (st.name() == "presence"
        && st.attr("type").is_none()
        && st.has_child("x", NS_MUC)
        && to.domain() == muc_domain.domain()
        && to.resource().is_some())
    .then(|| from.to_bare().to_string())
}

/// A room's state at one moment, to put back when a change fails half way.
pub(crate) struct Snapshot {
    channel: Channel,
    occupants: BTreeMap<String, Occupant>,
    mix_nicks: BTreeMap<String, String>,
    settings: Settings,
    created: bool,
}

/// The room: the channel and its MUC occupants.
pub struct Room {
    pub channel: Channel,
    /// `name@muc-domain`.
    pub jid: BareJid,
    /// Occupants that entered through the MUC face, by bare JID.
    occupants: BTreeMap<String, Occupant>,
    /// Nicks of MIX participants with presence, as last shown to MUC occupants.
    mix_nicks: BTreeMap<String, String>,
    /// A room created by entering it (status 201 for its creator).
    pub created: bool,
    /// What MIX has no word for (moderation, password, ...), kept by the channel.
    pub(crate) settings: Settings,
    /// IQs passed on to occupants and not answered yet, by the id the room gave them.
    relays: std::collections::HashMap<String, MucRelay>,
    /// The service's cap for very large rooms: above this many occupants, only moderators'
    /// presence is broadcast, whatever the room's own setting.
    pub presence_cap: Option<usize>,
    /// When each inviter last invited, for the flood limit (seed 000 invitations are cheap to
    /// send and each one reaches a stranger).
    pub(crate) invite_times: std::collections::HashMap<String, std::collections::VecDeque<i64>>,
    /// Distributed MUC: the mirrors of this room (seed 003).
    pub dmuc: crate::dmuc::DmucMaster,
}

/// MUC-ENT-13: an empty or whitespace-only nick is refused. A nick is otherwise taken as sent
/// (no trimming: the occupant JID must be the one the client asked for, or it would need 210).
fn blank_nick(st: &Element, nick: &str) -> Option<Outcome> {
    nick.trim().is_empty().then(|| {
        muc_error(
            st,
            error(
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "a nick cannot be empty or blank",
            ),
        )
    })
}

pub(crate) fn muc_error(st: &Element, err: StanzaError) -> Outcome {
    // XEP-0045 §7.2.6: presence errors carry the <x xmlns='…muc'/> back.
    let mut out = Outcome::default();
    if let Some(mut e) = error_reply(st, err) {
        // RFC 6120 §8.3.2 'by': the room generated the error (XEP-0045 examples show it).
        let room = st
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .map(|t| t.to_bare().to_string());
        if let (Some(room), Some(x)) = (room, e.get_child_mut("error", NS_STANZA)) {
            set_attr(x, "by", &room);
        }
        if st.name() == "presence" && st.has_child("x", NS_MUC) {
            e.append_child(Element::bare("x", NS_MUC));
        }
        out.sends.push(Send::One(e));
    }
    out
}

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

impl Room {
    pub fn new(channel: Channel, muc_domain: &BareJid) -> Room {
        let jid = format!("{}@{muc_domain}", channel.name)
            .parse()
            .unwrap_or_else(|_| muc_domain.clone());
        let settings = Settings::from_element(channel.mirror_settings().as_ref());
        let mut room = Room {
            channel,
            jid,
            occupants: BTreeMap::new(),
            mix_nicks: BTreeMap::new(),
            created: false,
            settings,
            presence_cap: None,
            relays: std::collections::HashMap::new(),
            invite_times: std::collections::HashMap::new(),
            dmuc: Default::default(),
        };
        room.share_reserved_nicks();
        room
    }

    /// Show the other face what an outcome of the channel's own (a MIX service request, an
    /// expiry, a retraction decided after reading the archive) did.
    pub fn after(&mut self, mut out: Outcome) -> RoomOutcome {
        self.show_events(&mut out);
        out.into()
    }

    /// The service is going away (XEP-0045 §9.6 of the codes: 332): every MUC occupant is
    /// told it is out of the room. MIX participants stay participants.
    pub fn shutdown(&mut self) -> RoomOutcome {
        let mut out = Outcome::default();
        for o in std::mem::take(&mut self.occupants).into_values() {
            for full in o.sessions.keys() {
                let mut p = self.occupant_presence(&o.bare, &o.nick, None, Some(full), true, true);
                set_attr(&mut p, "to", full);
                if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                    for c in ["110", "332"] {
                        x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
                    }
                }
                out.sends.push(Send::One(p));
            }
        }
        out.into()
    }

    /// Nothing ephemeral held by either face: no MUC occupant, and the channel idle too.
    pub fn is_idle(&mut self, now_us: i64) -> bool {
        self.relays
            .retain(|_, r| now_us - r.sent_us < RELAY_TIMEOUT_US);
        self.occupants.is_empty() && self.relays.is_empty() && self.channel.is_idle(now_us)
    }

    /// The newcomer's history: the archive page (newest last) as occupants see it, with the
    /// room's delay, within the character budget (whole stanzas only, the newest kept).
    pub fn history(&self, h: &History, page: &mam_store::ArchivePage) -> Vec<Element> {
        let mut out: Vec<Element> = Vec::new();
        let mut chars = 0usize;
        for row in page.rows.iter().rev() {
            let Some(stored) = parse(&row.stanza) else {
                continue;
            };
            if row.retracted {
                // XEP-0424 §6: a retracted message is not distributed again.
                continue;
            }
            let mut m = renamespace(&self.muc_view(&stored), NS_CLIENT, NS_STANZA);
            set_attr(&mut m, "to", &h.to);
            m.append_child(elem(
                "delay",
                NS_DELAY,
                &[
                    ("from", &self.jid.to_string()),
                    ("stamp", &datetime(row.ts)),
                ],
            ));
            if let Some(limit) = h.maxchars {
                chars += to_string(&m).len();
                if chars > limit {
                    break;
                }
            }
            out.push(m);
        }
        out.reverse();
        out
    }

    /// Any stanza for this channel, on either face.
    pub fn handle(&mut self, st: &Element, ctx: &mut Ctx<'_>) -> RoomOutcome {
        // Users behind a DMUC mirror are seen by their real JIDs (crate::dmuc).
        let translated;
        let st = match self.dmuc_inbound(st, ctx) {
            crate::dmuc::Inbound::Plain => st,
            crate::dmuc::Inbound::Translated(t) => {
                translated = t;
                &translated
            }
            crate::dmuc::Inbound::Done(out) => return self.finish((*out).into()),
            crate::dmuc::Inbound::History(h) => {
                return RoomOutcome {
                    outcome: Outcome::default(),
                    history: vec![*h],
                };
            }
        };
        let r = self.handle_translated(st, ctx);
        self.finish(r)
    }

    /// Every outcome on its way out: what is for users behind a DMUC mirror goes through it,
    /// broadcasts once per mirror (crate::dmuc). The shell calls this for outcomes that did not
    /// come from [`Room::handle`].
    pub fn finish(&mut self, mut r: RoomOutcome) -> RoomOutcome {
        // Nothing to do (and nothing per stanza) unless someone is behind a mirror.
        if self.dmuc.allowed.is_empty() || !self.dmuc.involved() {
            return r;
        }
        let new = self.dmuc_new_mirrors();
        self.dmuc_outbound(&mut r.outcome, &new);
        // A mirror gives its users history and subject from its copy of the room, which it
        // fills by asking (crate::dmuc_mirror, seed 003 "history request"); what follows them
        // (pending invitations) still comes from here.
        let mut history = Vec::with_capacity(r.history.len());
        for h in r.history.drain(..) {
            match self.dmuc.escaped(&h.to) {
                Some(esc) => r.outcome.sends.extend(h.then.into_iter().map(|mut el| {
                    set_attr(&mut el, "to", &esc);
                    Send::One(el)
                })),
                None => history.push(h),
            }
        }
        r.history = history;
        // An archive query's answer (XEP-0313) goes back through the mirror too.
        if let Some(req) = &mut r.outcome.query
            && let Some(esc) = req.iq.attr("from").and_then(|f| self.dmuc.escaped(f))
        {
            req.deliver_to = Some(esc);
        }
        self.dmuc_forget_gone();
        r
    }

    fn handle_translated(&mut self, st: &Element, ctx: &mut Ctx<'_>) -> RoomOutcome {
        // Owners and admins are made by configuration (either face) as well as by muc#admin;
        // whoever gains or loses the standing while in the room is shown with its new
        // affiliation and role (XEP-0045 §10.2, MUC-OWN-05).
        let before = self
            .may_change_affiliations(st)
            .then(|| self.occupant_affiliations());
        let mut r = self.handle_stanza(st, ctx);
        if let Some(before) = before {
            for (bare, aff) in before {
                if self.occupants.contains_key(&bare) && self.affiliation(&bare) != aff {
                    self.announce_change(&bare, "", None, &mut r.outcome);
                }
            }
        }
        r
    }

    /// IQ sets that configure the room (MUC owner form, MIX config node or admin commands).
    fn may_change_affiliations(&self, st: &Element) -> bool {
        st.name() == "iq"
            && st.attr("type") == Some("set")
            && st.children().any(|c| {
                c.is("query", NS_MUC_OWNER)
                    || c.is("pubsub", xmpp_parsers::ns::PUBSUB)
                    || c.ns() == mix_service::xml::NS_ADMIN
            })
    }

    fn occupant_affiliations(&self) -> Vec<(String, &'static str)> {
        self.occupants
            .keys()
            .map(|b| (b.clone(), self.affiliation(b)))
            .collect()
    }

    fn handle_stanza(&mut self, st: &Element, ctx: &mut Ctx<'_>) -> RoomOutcome {
        let to = st.attr("to").and_then(|t| t.parse::<Jid>().ok());
        let muc = to.as_ref().is_some_and(|t| t.domain() == self.jid.domain());
        if !muc {
            if let Some(out) = self.mix_private_to_occupant(st) {
                return out.into();
            }
            let mut out = self.channel.handle(st, ctx);
            self.show_events(&mut out);
            return out.into();
        }
        let Some(from) = st.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return RoomOutcome::default();
        };
        let nick = to
            .as_ref()
            .and_then(|t| t.resource())
            .map(|r| r.as_str().to_owned());
        match (st.name(), nick) {
            ("presence", Some(nick)) => self.presence(st, &from, &nick, ctx),
            ("presence", None) => {
                // Unavailable (or an error) to the room's bare JID from a client in it:
                // it leaves all the same.
                if matches!(st.attr("type"), Some("unavailable") | Some("error"))
                    && self.occupant_of(&from).is_some()
                {
                    let codes: &[&str] = if st.attr("type") == Some("error") {
                        &["333"]
                    } else {
                        &[]
                    };
                    let said = (codes.is_empty()).then_some(st);
                    return self.leave(&from, codes, said, ctx).into();
                }
                if st.attr("type").is_none() && st.has_child("x", NS_MUC) {
                    // XEP-0045 §7.2.1: entering needs a nick.
                    muc_error(
                        st,
                        error(
                            ErrorType::Modify,
                            DefinedCondition::JidMalformed,
                            "a nick is required to enter",
                        ),
                    )
                    .into()
                } else {
                    RoomOutcome::default()
                }
            }
            ("message", None) => self.room_message(st, &from, ctx),
            ("message", Some(nick)) => self.private_message(st, &from, &nick).into(),
            ("iq", None) => self.room_iq(st, &from, ctx),
            ("iq", Some(nick)) => self.occupant_iq(st, &from, &nick, ctx).into(),
            _ => RoomOutcome::default(),
        }
    }

    // ---- who is who -------------------------------------------------------------------

    pub(crate) fn occupant(&self, bare: &str) -> Option<&Occupant> {
        self.occupants.get(bare)
    }

    /// A role set for the visit. A moderator by affiliation keeps no role of its own: it is
    /// derived, so that losing the affiliation (however it goes) ends it.
    pub(crate) fn set_occupant_role(&mut self, bare: &str, role: &'static str) {
        let derived = role == "moderator" && self.is_moderator(bare);
        if let Some(o) = self.occupants.get_mut(bare) {
            o.role = (!derived).then_some(role);
        }
    }

    pub(crate) fn forget_mix_occupant(&mut self, bare: &str) {
        self.mix_nicks.remove(bare);
    }

    pub(crate) fn forget_occupant(&mut self, bare: &str) {
        self.occupants.remove(bare);
    }

    /// The MUC occupants (a copy).
    pub(crate) fn occupant_list(&self) -> Vec<Occupant> {
        self.occupants.values().cloned().collect()
    }

    fn share_reserved_nicks(&mut self) {
        let reserved = &self.settings.reserved;
        self.channel
            .set_reserved_nicks(reserved.iter().map(|(b, n)| (n.as_str(), b.as_str())));
    }

    /// Just loaded: participants that were there only as MUC occupants before a shutdown or a
    /// crash are not occupants any more (occupancy is not stored), so they leave the channel.
    pub fn reconcile(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        for bare in self.channel.via_muc() {
            if !self.occupants.contains_key(&bare) {
                let more = self.channel.depart(&bare, ctx);
                out.writes.extend(more.writes);
                out.sends.extend(more.sends);
            }
        }
        out
    }

    /// Everything a failed change could have touched (see `all_or_nothing`).
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            channel: self.channel.clone(),
            occupants: self.occupants.clone(),
            mix_nicks: self.mix_nicks.clone(),
            settings: self.settings.clone(),
            created: self.created,
        }
    }

    pub(crate) fn restore(&mut self, s: Snapshot) {
        self.channel = s.channel;
        self.occupants = s.occupants;
        self.mix_nicks = s.mix_nicks;
        self.settings = s.settings;
        self.created = s.created;
    }

    pub(crate) fn take_occupants(&mut self) -> Vec<Occupant> {
        std::mem::take(&mut self.occupants).into_values().collect()
    }

    pub(crate) fn show(&mut self, out: &mut Outcome) {
        self.show_events(out);
    }

    pub(crate) fn save_settings(&mut self, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        self.share_reserved_nicks();
        let more = self
            .channel
            .set_mirror_settings(&self.settings.to_element(), ctx);
        out.writes.extend(more.writes);
    }

    /// An occupant's presence again, to everyone, after its role or affiliation changed.
    pub(crate) fn announce(&self, bare: &str, out: &mut Outcome) {
        let Some(nick) = self
            .everyone()
            .into_iter()
            .find(|(b, _)| b == bare)
            .map(|(_, n)| n)
        else {
            return;
        };
        let (source, full) = match self.occupants.get(bare) {
            Some(o) => o
                .sessions
                .iter()
                .next_back()
                .map(|(f, p)| (Some(p.clone()), Some(f.clone())))
                .unwrap_or((None, None)),
            None => (None, None),
        };
        self.broadcast_presence(
            Announce {
                bare,
                nick: &nick,
                source: source.as_ref(),
                full: full.as_deref(),
                unavailable: false,
                codes: &[],
            },
            &[],
            out,
        );
    }

    pub(crate) fn occupant_of(&self, full: &Jid) -> Option<&Occupant> {
        let bare = full.to_bare().to_string();
        self.occupants
            .get(&bare)
            .filter(|o| o.sessions.contains_key(&full.to_string()))
    }

    /// Everyone shown as an occupant: MUC occupants, and MIX participants with presence.
    pub(crate) fn everyone(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .occupants
            .values()
            .map(|o| (o.bare.clone(), o.nick.clone()))
            .collect();
        for (bare, nick) in &self.mix_nicks {
            if !self.occupants.contains_key(bare) {
                all.push((bare.clone(), nick.clone()));
            }
        }
        all
    }

    /// How many are in the room (both faces), without listing them.
    pub(crate) fn occupant_count(&self) -> usize {
        self.occupants.len()
            + self
                .mix_nicks
                .keys()
                .filter(|b| !self.occupants.contains_key(*b))
                .count()
    }

    /// Those whose presence a newcomer receives: everyone, or where only moderators' presence
    /// is broadcast, just the moderators (found from the channel's owners and admins, so a
    /// join into a 10,000-occupant room does not walk the other 9,999).
    fn shown_to_newcomers(&self) -> Vec<(String, String)> {
        let only_moderators = self.over_presence_cap()
            || self
                .settings
                .presence_broadcast
                .iter()
                .all(|r| r == "moderator");
        if !only_moderators {
            return self.everyone();
        }
        let cfg = self.channel.config();
        cfg.owners
            .iter()
            .chain(cfg.admins.iter())
            .filter_map(|b| {
                self.occupants
                    .get(b)
                    .map(|o| o.nick.clone())
                    .or_else(|| self.mix_nicks.get(b).cloned())
                    .map(|n| (b.clone(), n))
            })
            .collect()
    }

    /// Every MUC client's full JID (where room traffic goes).
    pub(crate) fn audience(&self) -> Vec<String> {
        self.occupants
            .values()
            .flat_map(|o| o.sessions.keys().cloned())
            .collect()
    }

    /// Moderators' and others' clients apart (semi-anonymous rooms show JIDs to moderators).
    fn audiences(&self) -> (Vec<String>, Vec<String>) {
        let mut mods = Vec::new();
        let mut rest = Vec::new();
        for o in self.occupants.values() {
            let target = if self.is_moderator(&o.bare) {
                &mut mods
            } else {
                &mut rest
            };
            target.extend(o.sessions.keys().cloned());
        }
        (mods, rest)
    }

    /// Whether `bare`'s presence goes to the other occupants (presencebroadcast).
    fn broadcasts(&self, bare: &str) -> bool {
        let role = self.role(bare);
        if self.over_presence_cap() {
            return role == "moderator";
        }
        self.settings.presence_broadcast.iter().any(|r| r == role)
    }

    fn over_presence_cap(&self) -> bool {
        self.presence_cap
            .is_some_and(|cap| self.occupant_count() > cap)
    }

    pub(crate) fn is_moderator(&self, bare: &str) -> bool {
        self.channel.role(bare) >= Role::Admin
    }

    /// XEP-0045 affiliation of a user, from the channel's roles (MM-06).
    pub(crate) fn affiliation(&self, bare: &str) -> &'static str {
        match self.channel.role(bare) {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Banned => "outcast",
            _ if self.channel.members_only()
                && self.channel.allowed().iter().any(|j| j == bare) =>
            {
                "member"
            }
            _ if !self.channel.members_only() && self.settings.members.contains(bare) => "member",
            _ => "none",
        }
    }

    /// XEP-0045 §5.1: moderators are the channel's owners and admins; in a moderated room
    /// only members and those given voice speak; anyone whose voice was revoked is a visitor.
    /// Voice given or taken is kept across visits: §5.1 lets roles persist and says they
    /// SHOULD in moderated rooms.
    pub(crate) fn role(&self, bare: &str) -> &'static str {
        if self.is_moderator(bare) {
            return "moderator";
        }
        if let Some(r) = self.occupants.get(bare).and_then(|o| o.role) {
            return r;
        }
        self.default_role(bare)
    }

    /// The role a user gets on entering (or after an affiliation change).
    pub(crate) fn default_role(&self, bare: &str) -> &'static str {
        if self.is_moderator(bare) {
            "moderator"
        } else if self.settings.voiceless.contains(bare)
            || (self.settings.moderated
                && !self.settings.voiced.contains(bare)
                && self.affiliation(bare) != "member")
        {
            "visitor"
        } else {
            "participant"
        }
    }

    fn occupant_id(&self, bare: &str) -> Option<String> {
        self.channel.stable_id_of(bare).map(str::to_owned)
    }

    fn nick_jid(&self, nick: &str) -> String {
        format!("{}/{nick}", self.jid)
    }

    /// Non-anonymous unless the channel hides JIDs (XEP-0404 → semi-anonymous).
    pub(crate) fn non_anonymous(&self) -> bool {
        !self.channel.is_hidden()
    }

    // ---- presence -----------------------------------------------------------------------

    /// An occupant's presence as the room shows it: from `room/nick`, its show/status, one
    /// `<x muc#user><item/></x>`, the occupant id; `with_jid` adds the real JID.
    pub(crate) fn occupant_presence(
        &self,
        bare: &str,
        nick: &str,
        source: Option<&Element>,
        full: Option<&str>,
        with_jid: bool,
        unavailable: bool,
    ) -> Element {
        let mut p = elem("presence", NS_STANZA, &[("from", &self.nick_jid(nick))]);
        if unavailable {
            set_attr(&mut p, "type", "unavailable");
        }
        if let Some(src) = source {
            // Extensions pass through (XEP-0045 §17.3); what the room itself sets, and the
            // MIX presence's real JID, do not.
            for c in src.children().filter(|c| {
                !(c.is("x", NS_MUC)
                    || c.is("x", NS_MUC_USER)
                    || c.is("occupant-id", NS_OCCUPANT_ID)
                    || c.is("mix", NS_PRESENCE))
            }) {
                p.append_child(renamespace(c, &src.ns(), NS_STANZA));
            }
        }
        let mut x = Element::bare("x", NS_MUC_USER);
        let role = if unavailable { "none" } else { self.role(bare) };
        let mut item = elem(
            "item",
            NS_MUC_USER,
            &[("affiliation", self.affiliation(bare)), ("role", role)],
        );
        if with_jid && let Some(f) = full {
            set_attr(&mut item, "jid", f);
        }
        x.append_child(item);
        p.append_child(x);
        if let Some(id) = self.occupant_id(bare) {
            p.append_child(elem("occupant-id", NS_OCCUPANT_ID, &[("id", &id)]));
        }
        p
    }

    /// The presence of one occupant to everyone in the room (two renderings when only
    /// moderators may see JIDs).
    fn broadcast_presence(&self, a: Announce<'_>, except: &[String], out: &mut Outcome) {
        let Announce {
            bare,
            nick,
            source,
            full,
            unavailable,
            codes,
        } = a;
        // `muc#roomconfig_presencebroadcast`: the presence of other roles stays with their
        // owners (what keeps joins linear in very large rooms). Removals (kick, ban, nick
        // changes) are still told, or the others would keep a ghost.
        if !self.broadcasts(bare) && codes.is_empty() {
            return;
        }
        let with_codes = |mut p: Element| {
            if !codes.is_empty()
                && let Some(x) = p.get_child_mut("x", NS_MUC_USER)
            {
                for c in codes {
                    x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
                }
            }
            p
        };
        let (mods, rest) = self.audiences();
        let keep = |v: Vec<String>| -> Vec<String> {
            v.into_iter().filter(|t| !except.contains(t)).collect()
        };
        let (mods, rest) = (keep(mods), keep(rest));
        if self.non_anonymous() {
            let to: Vec<String> = mods.into_iter().chain(rest).collect();
            if !to.is_empty() {
                let p =
                    with_codes(self.occupant_presence(bare, nick, source, full, true, unavailable));
                out.sends.push(Send::Fanout { stanza: p, to });
            }
        } else {
            if !mods.is_empty() {
                let p =
                    with_codes(self.occupant_presence(bare, nick, source, full, true, unavailable));
                out.sends.push(Send::Fanout {
                    stanza: p,
                    to: mods,
                });
            }
            if !rest.is_empty() {
                let p = with_codes(self.occupant_presence(
                    bare,
                    nick,
                    source,
                    full,
                    false,
                    unavailable,
                ));
                out.sends.push(Send::Fanout {
                    stanza: p,
                    to: rest,
                });
            }
        }
    }

    fn presence(&mut self, st: &Element, from: &Jid, nick: &str, ctx: &mut Ctx<'_>) -> RoomOutcome {
        let bare = from.to_bare().to_string();
        let full = from.to_string();
        let known = self.occupant_of(from).is_some();
        match st.attr("type") {
            None if known => {
                let current = self.occupants[&bare].nick.clone();
                if current != nick {
                    return self.change_nick(st, from, nick, ctx).into();
                }
                // XEP-0045 §7.2.1 / MUC-ENT-10: a join from a joined client is a resync.
                if st.has_child("x", NS_MUC) {
                    return self.enter(st, from, nick, ctx);
                }
                self.update_presence(st, from, ctx).into()
            }
            None if st.has_child("x", NS_MUC) => self.enter(st, from, nick, ctx),
            None => {
                // MUC-ENT-11: presence without <x/> from a non-occupant: tell it it is not in.
                let p = out_of_room(&self.nick_jid(nick), &full, &["110", "307", "333"]);
                Outcome::reply(p).into()
            }
            Some("unavailable") if known => self.leave(from, &[], Some(st), ctx).into(),
            // MUC-ERR: an error from a client removes it (status 333).
            Some("error") if known => self.leave(from, &["333"], None, ctx).into(),
            // MUC-ENT-01: a probe is never a join; an occupant learns another's presence.
            Some("probe") => self.probe(st, from, nick).into(),
            _ => RoomOutcome::default(),
        }
    }

    fn enter(&mut self, st: &Element, from: &Jid, nick: &str, ctx: &mut Ctx<'_>) -> RoomOutcome {
        let bare = from.to_bare().to_string();
        let full = from.to_string();
        if let Some(refused) = blank_nick(st, nick) {
            return refused.into();
        }
        let owner = self.channel.role(&bare) == Role::Owner;
        let staff = self.channel.role(&bare) >= Role::Admin;
        if self.settings.locked && !owner {
            // XEP-0045 §10.1.1: a new room is locked until its owner configures it.
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "this room is locked until its owner configures it",
                ),
            )
            .into();
        }
        if let Some(secret) = &self.settings.password {
            let given = st
                .get_child("x", NS_MUC)
                .and_then(|x| x.children().find(|c| c.name() == "password"))
                .map(|p| p.text());
            if given.as_deref() != Some(secret.as_str()) && self.occupant_of(from).is_none() {
                // XEP-0045 §7.2.5.
                return muc_error(
                    st,
                    error(
                        ErrorType::Auth,
                        DefinedCondition::NotAuthorized,
                        "a password is required to enter this room",
                    ),
                )
                .into();
            }
        }
        if let Some(max) = self.settings.max_users
            && !staff
            && !self.occupants.contains_key(&bare)
            && self.occupant_count() >= max
        {
            // XEP-0045 §7.2.9: full (admins and owners may still enter).
            return muc_error(
                st,
                error(
                    ErrorType::Wait,
                    DefinedCondition::ServiceUnavailable,
                    "this room is full",
                ),
            )
            .into();
        }
        // One nick per user: another client of an occupant uses the same one, and so does a
        // user whose MIX client is present in the channel (occupants see one person, once).
        let present_as = self
            .occupants
            .get(&bare)
            .map(|o| o.nick.as_str())
            .or(self.mix_nicks.get(&bare).map(String::as_str));
        if present_as.is_some_and(|n| n != nick) {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    "your other clients use another nick in this room",
                ),
            )
            .into();
        }
        if self.reserved_by(nick).is_some_and(|b| b != bare) {
            // §7.10: a nick registered with the room is its registrant's.
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::Conflict,
                    "that nick is reserved in this room",
                ),
            )
            .into();
        }
        let (_, mut out) = match self.channel.admit(&bare, nick, ctx) {
            Ok(r) => r,
            Err(e) => return muc_error(st, e).into(),
        };
        let resync = self.occupant_of(from).is_some();
        let first_session = !self.occupants.contains_key(&bare);
        let occupant = self.occupants.entry(bare.clone()).or_insert(Occupant {
            nick: nick.to_owned(),
            bare: bare.clone(),
            sessions: BTreeMap::new(),
            role: None,
        });
        occupant.sessions.insert(full.clone(), st.clone());
        if first_session {
            let role = self.default_role(&bare);
            self.set_occupant_role(&bare, role);
        }
        // The occupant's client as a presence-node item, for MIX clients (MM-06).
        let mixed = self.channel.client_presence(from, Some(st), ctx);
        out.writes.extend(mixed.writes);
        out.sends.extend(mixed.sends);
        // (1) everyone already in, to the newcomer (MUC-ENT-03).
        let is_mod = self.is_moderator(&bare);
        for (other, other_nick) in self.shown_to_newcomers() {
            if other == bare || !self.broadcasts(&other) {
                continue;
            }
            let (source, other_full) = match self.occupants.get(&other) {
                Some(o) => {
                    let (f, p) = o
                        .sessions
                        .iter()
                        .next_back()
                        .map(|(f, p)| (f.clone(), p.clone()))
                        .unzip();
                    (p, f)
                }
                None => match self.channel.client_of(&other) {
                    Some((f, p)) => (Some(p), Some(f)),
                    None => (None, None),
                },
            };
            let p = self.occupant_presence(
                &other,
                &other_nick,
                source.as_ref(),
                other_full.as_deref(),
                self.non_anonymous() || is_mod,
                false,
            );
            let mut p = p;
            set_attr(&mut p, "to", &full);
            out.sends.push(Send::One(p));
        }
        // (2) the newcomer to everyone else, then to itself with its status codes.
        if first_session || !resync {
            self.broadcast_presence(
                Announce {
                    bare: &bare,
                    nick,
                    source: Some(st),
                    full: Some(&full),
                    unavailable: false,
                    codes: &[],
                },
                std::slice::from_ref(&full),
                &mut out,
            );
        }
        let mut own = self.occupant_presence(&bare, nick, Some(st), Some(&full), true, false);
        set_attr(&mut own, "to", &full);
        if let Some(id) = st.attr("id") {
            set_attr(&mut own, "id", id);
        }
        // 201 is the creator's: if the creator's own entry failed, nobody else gets it.
        let creating = self.created && self.channel.role(&bare) == Role::Owner;
        if let Some(x) = own.get_child_mut("x", NS_MUC_USER) {
            let mut codes = vec!["110"];
            if self.non_anonymous() {
                codes.push("100");
            }
            if creating {
                codes.push("201");
            }
            for c in codes {
                x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
            }
        }
        if creating {
            // §10.1.1: locked until configured (an instant room is one configuration).
            self.settings.locked = true;
            self.save_settings(ctx, &mut out);
        }
        self.created = false;
        out.sends.push(Send::One(own));
        // (3) history and (4) the subject: read and sent by the shell, in that order.
        let history = self.history_request(st, &full, ctx.now_us);
        // The invitee came: its invitations are used.
        for (_, w) in self.channel.close_invitations(
            |r| r.kind == "muc" && r.invitee == bare,
            mam_store::InvitationState::Used,
        ) {
            out.writes.push(w);
        }
        let mut r = RoomOutcome::from(out);
        r.history.push(history);
        r
    }

    fn history_request(&self, st: &Element, full: &str, now_us: i64) -> History {
        let h = st
            .get_child("x", NS_MUC)
            .and_then(|x| x.children().find(|c| c.name() == "history"));
        let (max, since_us, maxchars) = history_limits(h, now_us);
        History {
            to: full.to_owned(),
            max,
            since_us,
            maxchars,
            subject: self.subject_message(full),
            then: self.pending_push(full).into_iter().collect(),
            reply: None,
        }
    }

    /// A DMUC mirror's history request (seed 003: `<room xmlns='urn:xmpp:dmuc:0'>` with the
    /// `<history/>` of XEP-0045 and its limits): the messages a newcomer would get, and the
    /// subject after them, in one IQ result.
    pub(crate) fn history_for_mirror(&self, st: &Element, mirror: &str, now_us: i64) -> History {
        let h = st
            .get_child("room", crate::dmuc::NS_DMUC0)
            .and_then(|r| r.children().find(|c| c.name() == "history"));
        let (max, since_us, maxchars) = history_limits(h, now_us);
        // One stanza carries it all: kept well under the stanza size limits servers apply on
        // the way (mixd's 256 KiB by default, Prosody's s2s 512 KiB), whatever was asked.
        let maxchars = Some(maxchars.map_or(MIRROR_HISTORY_CHARS, |c| c.min(MIRROR_HISTORY_CHARS)));
        let mut reply = iq_result(st, None);
        set_attr(&mut reply, "from", &self.jid.to_string());
        History {
            to: mirror.to_owned(),
            max,
            since_us,
            maxchars,
            subject: self.subject_message(mirror),
            then: Vec::new(),
            reply: Some(reply),
        }
    }

    /// MUC-HIST-03: the subject (an empty one when unset), from the room or its setter.
    pub fn subject_message(&self, to: &str) -> Element {
        let subject = self.channel.subject();
        let from = match subject.as_ref().and_then(|s| s.nick.clone()) {
            Some(n) => self.nick_jid(&n),
            None => self.jid.to_string(),
        };
        let mut m = elem(
            "message",
            NS_STANZA,
            &[("from", &from), ("to", to), ("type", "groupchat")],
        );
        m.append_child(text_elem(
            "subject",
            NS_STANZA,
            &subject.as_ref().map(|s| s.text.clone()).unwrap_or_default(),
        ));
        if let Some(t) = subject.as_ref().and_then(|s| s.stamp) {
            m.append_child(elem(
                "delay",
                NS_DELAY,
                &[("from", &self.jid.to_string()), ("stamp", &datetime(t))],
            ));
        }
        m
    }

    fn update_presence(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> Outcome {
        let bare = from.to_bare().to_string();
        let full = from.to_string();
        let Some(o) = self.occupants.get_mut(&bare) else {
            return Outcome::default();
        };
        o.sessions.insert(full.clone(), st.clone());
        let nick = o.nick.clone();
        let mut out = self.channel.client_presence(from, Some(st), ctx);
        out.events.clear();
        self.broadcast_presence(
            Announce {
                bare: &bare,
                nick: &nick,
                source: Some(st),
                full: Some(&full),
                unavailable: false,
                codes: &[],
            },
            &[],
            &mut out,
        );
        out
    }

    /// `unavailable`: the client's own unavailable presence, whose status the others see.
    pub(crate) fn leave(
        &mut self,
        from: &Jid,
        codes: &[&str],
        unavailable: Option<&Element>,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        let full = from.to_string();
        let mut out = self.channel.client_presence(from, None, ctx);
        out.events.clear();
        let Some(o) = self.occupants.get_mut(&bare) else {
            return out;
        };
        o.sessions.remove(&full);
        let nick = o.nick.clone();
        let gone = o.sessions.is_empty();
        // §10.1.3: an owner who leaves a room before configuring it takes the room along.
        let abandoned = gone
            && self.settings.locked
            && !self
                .occupants
                .keys()
                .any(|b| b != &bare && self.channel.role(b) == Role::Owner);
        // The leaving client hears itself leave (110), the others hear it once the user's
        // last client is gone (XEP-0045 §7.14).
        let said = unavailable.cloned();
        let mut own = self.occupant_presence(&bare, &nick, said.as_ref(), Some(&full), true, true);
        set_attr(&mut own, "to", &full);
        if let Some(x) = own.get_child_mut("x", NS_MUC_USER) {
            for c in std::iter::once(&"110").chain(codes) {
                x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
            }
            if abandoned {
                x.append_child(Element::bare("destroy", NS_MUC_USER));
            }
        }
        out.sends.push(Send::One(own));
        if gone {
            self.occupants.remove(&bare);
            // Still present through a MIX client: to the others the user has not left, its
            // presence is now the MIX client's.
            let mix_client = self
                .mix_nicks
                .contains_key(&bare)
                .then(|| self.channel.client_of(&bare))
                .flatten();
            let (source, from_full, unavailable) = match &mix_client {
                Some((f, p)) => (Some(p), f.as_str(), false),
                None => (said.as_ref(), full.as_str(), true),
            };
            self.broadcast_presence(
                Announce {
                    bare: &bare,
                    nick: &nick,
                    source,
                    full: Some(from_full),
                    unavailable,
                    codes: if unavailable { codes } else { &[] },
                },
                &[],
                &mut out,
            );
            if self.channel.participant(&bare).is_some_and(|p| p.via_muc) {
                let more = self.channel.depart(&bare, ctx);
                out.writes.extend(more.writes);
                out.sends.extend(more.sends);
            }
        }
        if abandoned {
            self.destroyed(Element::bare("destroy", NS_MUC_USER), &mut out);
            out.writes.push(mam_store::Write::DestroyChannel {
                channel: self.channel.name.clone(),
            });
            out.destroyed = true;
        }
        out
    }

    /// XEP-0045 §7.6: unavailable from the old nick with 303 and the new nick, then available
    /// from the new one.
    fn change_nick(&mut self, st: &Element, from: &Jid, nick: &str, ctx: &mut Ctx<'_>) -> Outcome {
        if let Some(refused) = blank_nick(st, nick) {
            return refused;
        }
        let bare = from.to_bare().to_string();
        let old = self.occupants[&bare].nick.clone();
        if self.reserved_by(nick).is_some_and(|b| b != bare) {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::Conflict,
                    "that nick is reserved in this room",
                ),
            );
        }
        let mut out = match self.channel.rename(&bare, nick, ctx) {
            Ok(o) => o,
            Err(e) => return muc_error(st, e),
        };
        out.events.clear();
        let full = from.to_string();
        let sessions: Vec<String> = self.occupants[&bare].sessions.keys().cloned().collect();
        let (mods, rest) = self.audiences();
        for to in mods.iter().chain(rest.iter()) {
            let mut p = self.occupant_presence(
                &bare,
                &old,
                None,
                Some(&full),
                self.non_anonymous() || mods.contains(to),
                true,
            );
            // The role is unchanged by a nick change (the unavailable says 'none' otherwise).
            if let Some(item) = p
                .get_child_mut("x", NS_MUC_USER)
                .and_then(|x| x.get_child_mut("item", NS_MUC_USER))
            {
                set_attr(item, "role", self.role(&bare));
                set_attr(item, "nick", nick);
            }
            if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                x.append_child(elem("status", NS_MUC_USER, &[("code", "303")]));
                if sessions.contains(to) {
                    x.append_child(elem("status", NS_MUC_USER, &[("code", "110")]));
                }
            }
            set_attr(&mut p, "to", to);
            out.sends.push(Send::One(p));
        }
        if let Some(o) = self.occupants.get_mut(&bare) {
            o.nick = nick.to_owned();
            o.sessions.insert(full.clone(), st.clone());
        }
        for to in mods.iter().chain(rest.iter()) {
            let mut p = self.occupant_presence(
                &bare,
                nick,
                Some(st),
                Some(&full),
                self.non_anonymous() || mods.contains(to),
                false,
            );
            if sessions.contains(to)
                && let Some(x) = p.get_child_mut("x", NS_MUC_USER)
            {
                x.append_child(elem("status", NS_MUC_USER, &[("code", "110")]));
            }
            set_attr(&mut p, "to", to);
            out.sends.push(Send::One(p));
        }
        out
    }

    // ---- messages -----------------------------------------------------------------------

    fn room_message(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> RoomOutcome {
        let ty = st.attr("type");
        if matches!(ty, Some("error")) {
            // XEP-0045 §18.1.2 (333): a client that bounces the room's messages is gone.
            if self.occupant_of(from).is_some() {
                return self.leave(from, &["333"], None, ctx).into();
            }
            return RoomOutcome::default();
        }
        if ty != Some("groupchat") {
            if let Some(form) = st.get_child("x", NS_DATA).filter(|x| {
                x.children().any(|f| {
                    f.attr("var") == Some("FORM_TYPE")
                        && f.children().any(|v| v.text().trim() == FORM_REQUEST)
                })
            }) {
                return self.voice_request(st, form, from, ctx).into();
            }
            if let Some(x) = st.get_child("x", NS_MUC_USER).filter(|x| {
                x.children()
                    .any(|c| c.is("invite", NS_MUC_USER) || c.is("decline", NS_MUC_USER))
            }) {
                let x = x.clone();
                return self.invitations(st, &x, from, ctx).into();
            }
            // Mediated invitations come with the invitations issue.
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::FeatureNotImplemented,
                    "only groupchat messages are handled by this room so far",
                ),
            )
            .into();
        }
        let Some(occupant) = self.occupant_of(from).cloned() else {
            // MUC-MSG-02: non-occupants get not-acceptable.
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "only occupants may speak in this room",
                ),
            )
            .into();
        };
        // Seed 000: cancelling a pending invitation (any <x/> holding a <cancel-invite/>).
        if let Some(cancel) = st
            .children()
            .filter(|c| c.name() == "x")
            .flat_map(|x| x.children())
            .find(|c| c.name() == "cancel-invite")
        {
            let cancel = cancel.clone();
            return self.cancel_invitation(st, &cancel, from, ctx).into();
        }
        if self.role(&occupant.bare) == "visitor" {
            // MUC-MSG-02: a visitor has no voice.
            return muc_error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you have no voice in this room",
                ),
            )
            .into();
        }
        // XEP-0045 §8.1: a message with a body or a thread besides the subject is not a
        // subject change (it is an ordinary message).
        let has_body = st
            .children()
            .any(|c| c.name() == "body" || c.name() == "thread");
        if let (Some(subject), false) = (st.children().find(|c| c.name() == "subject"), has_body) {
            // XEP-0045 §8.1: a subject change (a message with a body is not one), by
            // moderators, or by anyone with voice where the room allows it.
            if !self.settings.change_subject && !self.is_moderator(&occupant.bare) {
                return muc_error(
                    st,
                    error(
                        ErrorType::Auth,
                        DefinedCondition::Forbidden,
                        "only moderators change the subject of this room",
                    ),
                )
                .into();
            }
            return match self
                .channel
                .set_subject(&occupant.bare, &subject.text(), ctx)
            {
                Ok(mut out) => {
                    let mut m = elem(
                        "message",
                        NS_STANZA,
                        &[
                            ("from", &self.nick_jid(&occupant.nick)),
                            ("type", "groupchat"),
                        ],
                    );
                    if let Some(id) = st.attr("id") {
                        set_attr(&mut m, "id", id);
                    }
                    m.append_child(text_elem("subject", NS_STANZA, &subject.text()));
                    if let Some(id) = self.occupant_id(&occupant.bare) {
                        // XEP-0421 §4: on every message the room sends for an occupant.
                        m.append_child(elem("occupant-id", NS_OCCUPANT_ID, &[("id", &id)]));
                    }
                    let to = self.audience();
                    out.sends.push(Send::Fanout { stanza: m, to });
                    out.into()
                }
                Err(e) => muc_error(st, e).into(),
            };
        }
        // The channel archives and reflects it to MIX participants; the room shows it to
        // occupants with the client's own id (MUC-MSG-01, muc#stable_id).
        let mut as_mix = st.clone();
        set_attr(&mut as_mix, "to", &self.channel.jid.to_string());
        // Client-supplied muc#user data is never reflected (MUC-MSG-03).
        let as_mix = filtered(&as_mix, |c| !c.is("x", NS_MUC_USER));
        let mut out = self.channel.handle(&as_mix, ctx);
        if let Some(id) = st.attr("id") {
            for e in &mut out.events {
                if let ChannelEvent::Message { stanza } = e {
                    set_attr(stanza, CLIENT_ID_ATTR, id);
                }
            }
        }
        self.show_events(&mut out);
        out.into()
    }

    /// XEP-0045 §7.13 / §8.6: a visitor asks for voice (the form goes to the moderators), or a
    /// moderator answers such a request (voice is granted when it approves).
    fn voice_request(
        &mut self,
        st: &Element,
        form: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let value = |var: &str| {
            form.children()
                .find(|f| f.attr("var") == Some(var))
                .and_then(|f| f.children().find(|v| v.name() == "value"))
                .map(|v| v.text().trim().to_owned())
        };
        let bare = from.to_bare().to_string();
        if let Some(allow) = value("muc#request_allow") {
            // A moderator's answer.
            if !self.is_moderator(&bare) {
                return muc_error(st, error(ErrorType::Auth, DefinedCondition::Forbidden, ""));
            }
            let mut out = Outcome::default();
            if matches!(allow.as_str(), "1" | "true")
                && let Some(target) = value("muc#jid")
                    .and_then(|j| j.parse::<Jid>().ok())
                    .map(|j| j.to_bare().to_string())
            {
                self.settings.voiceless.remove(&target);
                self.settings.voiced.insert(target.clone());
                self.set_occupant_role(&target, "participant");
                self.save_settings(ctx, &mut out);
                self.announce(&target, &mut out);
            }
            return out;
        }
        let Some(occupant) = self.occupant_of(from).cloned() else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "not an occupant",
                ),
            );
        };
        let moderators: Vec<String> = self
            .occupants
            .values()
            .filter(|o| self.is_moderator(&o.bare))
            .flat_map(|o| o.sessions.keys().cloned())
            .collect();
        let mut out = Outcome::default();
        if moderators.is_empty() {
            return out;
        }
        let mut x = elem("x", NS_DATA, &[("type", "form")]);
        let field = |var: &str, ty: &str, label: &str, value: &str| {
            let mut f = elem(
                "field",
                NS_DATA,
                &[("var", var), ("type", ty), ("label", label)],
            );
            f.append_child(text_elem("value", NS_DATA, value));
            f
        };
        x.append_child(text_elem("title", NS_DATA, "Voice request"));
        x.append_child(field("FORM_TYPE", "hidden", "", FORM_REQUEST));
        x.append_child(field(
            "muc#role",
            "list-single",
            "Requested role",
            "participant",
        ));
        x.append_child(field("muc#jid", "jid-single", "User ID", &from.to_string()));
        x.append_child(field(
            "muc#roomnick",
            "text-single",
            "Room Nickname",
            &occupant.nick,
        ));
        x.append_child(field(
            "muc#request_allow",
            "boolean",
            "Grant voice to this person?",
            "false",
        ));
        let mut m = elem("message", NS_STANZA, &[("from", &self.jid.to_string())]);
        m.append_child(x);
        out.sends.push(Send::Fanout {
            stanza: m,
            to: moderators,
        });
        out
    }

    /// A MIX participant's private message (XEP-0404 §6) to a MUC occupant: the occupant's
    /// client speaks MUC, so it arrives as a MUC private message from `room/nick`, where the
    /// answer can go.
    fn mix_private_to_occupant(&self, st: &Element) -> Option<Outcome> {
        if st.name() != "message" || matches!(st.attr("type"), Some("groupchat" | "error")) {
            return None;
        }
        let to = st.attr("to")?.parse::<Jid>().ok()?;
        let id = to.node()?.as_str().split_once('#')?.0.to_owned();
        let target = self.channel.bare_of_id(&id)?.to_owned();
        let occupant = self.occupants.get(&target)?;
        let from = st.attr("from")?.parse::<Jid>().ok()?;
        let sender = self
            .channel
            .participant(&from.to_bare().to_string())
            .and_then(|p| p.nick.clone())?;
        if !self.channel.config().private_messages {
            return None;
        }
        let mut pm = filtered(st, |c| !c.is("x", NS_MUC_USER));
        set_attr(&mut pm, "from", &self.nick_jid(&sender));
        pm.append_child(Element::bare("x", NS_MUC_USER));
        let mut out = Outcome::default();
        out.sends.push(Send::Fanout {
            stanza: pm,
            to: occupant.sessions.keys().cloned().collect(),
        });
        Some(out)
    }

    /// MUC-PM-01/02: a private message to `room/nick`.
    fn private_message(&mut self, st: &Element, from: &Jid, nick: &str) -> Outcome {
        if matches!(st.attr("type"), Some("error")) {
            return Outcome::default();
        }
        if st.attr("type") == Some("groupchat") {
            return muc_error(st, bad("a private message is not groupchat"));
        }
        // A MUC occupant, or a MIX participant shown as one (it has presence here).
        let sender = self.occupant_of(from).cloned().or_else(|| {
            let bare = from.to_bare().to_string();
            self.mix_nicks.get(&bare).map(|nick| Occupant {
                nick: nick.clone(),
                bare: bare.clone(),
                sessions: BTreeMap::new(),
                role: None,
            })
        });
        let Some(sender) = sender else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "only occupants send private messages",
                ),
            );
        };
        let pm_allowed = match self.settings.allow_pm.as_str() {
            "none" => false,
            "moderators" => self.is_moderator(&sender.bare),
            "participants" => self.role(&sender.bare) != "visitor",
            _ => true,
        };
        if !self.channel.config().private_messages || !pm_allowed {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::Forbidden,
                    "private messages are disabled in this room",
                ),
            );
        }
        let target = self
            .everyone()
            .into_iter()
            .find(|(_, n)| n == nick)
            .map(|(b, _)| b);
        let Some(target) = target else {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such occupant",
                ),
            );
        };
        let to: Vec<String> = match self.occupants.get(&target) {
            Some(o) => o.sessions.keys().cloned().collect(),
            None => vec![target.clone()],
        };
        let mut pm = filtered(st, |c| !c.is("x", NS_MUC_USER));
        set_attr(&mut pm, "from", &self.nick_jid(&sender.nick));
        pm.append_child(Element::bare("x", NS_MUC_USER));
        let mut out = Outcome::default();
        out.sends.push(Send::Fanout { stanza: pm, to });
        out
    }

    /// A channel message as occupants see it: from `room/nick`, the room's stanza-id and the
    /// occupant id, no `<mix/>` (MUC-MSG-04/05).
    pub fn muc_view(&self, mix: &Element) -> Element {
        let channel = self.channel.jid.to_string();
        let from = mix.attr("from").unwrap_or_default();
        let pid = from.strip_prefix(&format!("{channel}/")).map(str::to_owned);
        let nick = mix
            .get_child("mix", NS_CORE)
            .and_then(|m| m.get_child("nick", NS_CORE))
            .map(|n| n.text());
        let room_from = match (&pid, nick) {
            (Some(_), Some(n)) => self.nick_jid(&n),
            (Some(p), None) => self.nick_jid(p),
            _ => self.jid.to_string(),
        };
        let id = mix
            .attr(CLIENT_ID_ATTR)
            .or(mix.attr("id"))
            .unwrap_or_default()
            .to_owned();
        let archive_id = mix.attr("id").unwrap_or_default().to_owned();
        let mut m = elem(
            "message",
            &mix.ns(),
            &[("from", &room_from), ("type", "groupchat"), ("id", &id)],
        );
        // What the room itself says (MUC-BR-01: a sender's own muc#user <x/> could claim any
        // real JID) is the room's to add, never the sender's.
        for c in mix.children().filter(|c| {
            !(c.is("mix", NS_CORE)
                || c.is("stanza-id", NS_SID)
                || c.is("occupant-id", NS_OCCUPANT_ID)
                || c.is("x", NS_MUC_USER))
        }) {
            m.append_child(c.clone());
        }
        // A moderation names its moderator by channel address: the room names it by nick.
        let chan_prefix = format!("{channel}/");
        for r in m.children_mut().filter(|c| c.is("retract", NS_RETRACT)) {
            for md in r.children_mut().filter(|c| c.is("moderated", NS_MODERATE)) {
                let by = md
                    .attr("by")
                    .and_then(|b| b.strip_prefix(&chan_prefix))
                    .and_then(|id| self.channel.bare_of_id(id))
                    .and_then(|b| self.channel.participant(b))
                    .and_then(|p| p.nick.clone());
                match by {
                    Some(n) => set_attr(md, "by", &self.nick_jid(&n)),
                    None => set_attr(md, "by", &self.jid.to_string()),
                }
            }
        }
        m.append_child(elem(
            "stanza-id",
            NS_SID,
            &[("id", &archive_id), ("by", &self.jid.to_string())],
        ));
        if let Some(p) = pid {
            m.append_child(elem("occupant-id", NS_OCCUPANT_ID, &[("id", &p)]));
        }
        m
    }

    /// An archived message in the room's MAM results (MAM-A-02): the occupant view, plus the
    /// sender's real JID in `<x muc#user><item/>` for those who may see JIDs.
    pub fn muc_archive_view(&self, stored: &Element, requester: &str) -> Element {
        let mut m = self.muc_view(stored);
        let jid = stored
            .get_child("mix", NS_CORE)
            .and_then(|x| x.get_child("jid", NS_CORE))
            .map(|j| j.text());
        if let Some(jid) = jid
            && (self.non_anonymous() || self.is_moderator(requester))
        {
            let mut x = Element::bare("x", NS_MUC_USER);
            x.append_child(elem("item", NS_MUC_USER, &[("jid", &jid)]));
            m.append_child(x);
        }
        m
    }

    /// Show what happened in the channel to the MUC occupants.
    fn show_events(&mut self, out: &mut Outcome) {
        let events = std::mem::take(&mut out.events);
        for ev in &events {
            match ev {
                ChannelEvent::Message { stanza } => {
                    let to = self.audience();
                    if !to.is_empty() {
                        out.sends.push(Send::Fanout {
                            stanza: self.muc_view(stanza),
                            to,
                        });
                    }
                }
                ChannelEvent::Presence {
                    bare,
                    full,
                    presence,
                } if !self.occupants.contains_key(bare) => {
                    // A MIX participant's client: one occupant per user.
                    let Some(nick) = self.channel.participant(bare).and_then(|p| p.nick.clone())
                    else {
                        continue;
                    };
                    let still = self.channel.online().iter().any(|(b, _)| b == bare);
                    match presence {
                        Some(p) => {
                            self.mix_nicks.insert(bare.clone(), nick.clone());
                            self.broadcast_presence(
                                Announce {
                                    bare,
                                    nick: &nick,
                                    source: Some(p),
                                    full: Some(full),
                                    unavailable: false,
                                    codes: &[],
                                },
                                &[],
                                out,
                            );
                        }
                        None if !still => {
                            self.mix_nicks.remove(bare);
                            self.broadcast_presence(
                                Announce {
                                    bare,
                                    nick: &nick,
                                    source: None,
                                    full: Some(full),
                                    unavailable: true,
                                    codes: &[],
                                },
                                &[],
                                out,
                            );
                        }
                        None => {}
                    }
                }
                ChannelEvent::Participant { bare, nick } => {
                    // A MIX participant's nick changed while it is shown as an occupant.
                    if let (Some(old), Some(new)) = (self.mix_nicks.get(bare).cloned(), nick)
                        && &old != new
                        && !self.occupants.contains_key(bare)
                    {
                        // XEP-0045 §7.6: unavailable from the old nick with the new one and
                        // 303 (the role stays), then available from the new nick.
                        let client = self.channel.client_of(bare);
                        let (full, source) = client
                            .map(|(f, p)| (Some(f), Some(p)))
                            .unwrap_or((None, None));
                        let (mods, rest) = self.audiences();
                        for to in mods.iter().chain(rest.iter()) {
                            let with_jid = self.non_anonymous() || mods.contains(to);
                            let mut p = self.occupant_presence(
                                bare,
                                &old,
                                None,
                                full.as_deref(),
                                with_jid,
                                true,
                            );
                            if let Some(item) = p
                                .get_child_mut("x", NS_MUC_USER)
                                .and_then(|x| x.get_child_mut("item", NS_MUC_USER))
                            {
                                set_attr(item, "role", self.role(bare));
                                set_attr(item, "nick", new);
                            }
                            if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                                x.append_child(elem("status", NS_MUC_USER, &[("code", "303")]));
                            }
                            set_attr(&mut p, "to", to);
                            out.sends.push(Send::One(p));
                        }
                        self.mix_nicks.insert(bare.clone(), new.clone());
                        self.broadcast_presence(
                            Announce {
                                bare,
                                nick: new,
                                source: source.as_ref(),
                                full: full.as_deref(),
                                unavailable: false,
                                codes: &[],
                            },
                            &[],
                            out,
                        );
                    }
                }
                ChannelEvent::Left { bare } => {
                    // Why the user is out: banned (301), no longer allowed in a members-only
                    // room (321), or its own leave from a MIX client (no code: nobody kicked it).
                    let banned = self.channel.role(bare) == Role::Banned;
                    let code: &[&str] = match self.channel.role(bare) {
                        Role::Banned => &["301"],
                        Role::Anyone => &["321"],
                        _ => &[],
                    };
                    if let Some(o) = self.occupants.remove(bare) {
                        // Removed from the channel (a ban, or a leave from MIX): out of the room.
                        for full in o.sessions.keys() {
                            let mut p =
                                self.occupant_presence(bare, &o.nick, None, Some(full), true, true);
                            set_attr(&mut p, "to", full);
                            if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                                for c in std::iter::once(&"110").chain(code) {
                                    x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
                                }
                            }
                            out.sends.push(Send::One(p));
                        }
                        self.broadcast_presence(
                            Announce {
                                bare,
                                nick: &o.nick,
                                source: None,
                                full: None,
                                unavailable: true,
                                codes: code,
                            },
                            &[],
                            out,
                        );
                    } else if let Some(nick) = self.mix_nicks.remove(bare) {
                        self.broadcast_presence(
                            Announce {
                                bare,
                                nick: &nick,
                                source: None,
                                full: None,
                                unavailable: true,
                                codes: if banned { code } else { &[] },
                            },
                            &[],
                            out,
                        );
                    }
                }
                ChannelEvent::Destroyed => {
                    self.destroyed(Element::bare("destroy", NS_MUC_USER), out);
                }
                _ => {}
            }
        }
        out.events = events;
    }

    // ---- IQs ----------------------------------------------------------------------------

    fn room_iq(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> RoomOutcome {
        if matches!(st.attr("type"), Some("result") | Some("error")) {
            return RoomOutcome::default();
        }
        let (ty, payload) = match mix_service::request::iq_payload(st) {
            Ok(p) => p,
            Err(e) => return muc_error(st, e).into(),
        };
        use mix_service::request::IqType::{Get, Set};
        let ns = payload.ns();
        match (ns.as_str(), payload.name(), ty) {
            (xmpp_parsers::ns::DISCO_INFO, "query", Get) => {
                self.disco_info(st, payload, from).into()
            }
            (xmpp_parsers::ns::DISCO_ITEMS, "query", Get) => {
                // MUC-DISCO-04: the occupant list is private.
                Outcome::reply(iq_result(
                    st,
                    Some(Element::bare("query", xmpp_parsers::ns::DISCO_ITEMS)),
                ))
                .into()
            }
            (NS_PING, "ping", Get) => Outcome::reply(iq_result(st, None)).into(),
            // One archive: the channel answers, the shell shows it from the room.
            (NS_MAM, _, _) => {
                let mut out = self.channel.handle(st, ctx);
                self.show_events(&mut out);
                out.into()
            }
            (NS_MUC_ADMIN, "query", Set) => self.admin_set(st, payload, from, ctx).into(),
            (NS_MUC_ADMIN, "query", Get) => self.admin_get(st, payload, from).into(),
            (crate::register::NS_REGISTER, "query", _) => {
                self.register(st, payload, ty == Get, from, ctx).into()
            }
            (NS_MUC_OWNER, "query", _) => self.owner(st, payload, ty == Get, from, ctx).into(),
            // XEP-0425 moderation on the room: the channel decides, the shell reads the
            // original, both faces see the outcome.
            (NS_MODERATE, _, Set) | (NS_FASTEN, _, Set) => {
                let mut as_mix = st.clone();
                set_attr(&mut as_mix, "to", &self.channel.jid.to_string());
                let mut out = self.channel.handle(&as_mix, ctx);
                // The answer goes back from the room the client asked.
                for s in &mut out.sends {
                    if let Send::One(e) = s
                        && e.attr("id") == st.attr("id")
                    {
                        set_attr(e, "from", &self.jid.to_string());
                    }
                }
                self.show_events(&mut out);
                out.into()
            }
            _ => muc_error(
                st,
                error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, ""),
            )
            .into(),
        }
    }

    /// XEP-0410 self-ping and IQs to an occupant JID.
    fn occupant_iq(&mut self, st: &Element, from: &Jid, nick: &str, ctx: &mut Ctx<'_>) -> Outcome {
        if matches!(st.attr("type"), Some("result") | Some("error")) {
            return self.relay_answer(st, from);
        }
        let own = self.occupant_of(from).is_some_and(|o| o.nick == nick);
        let is_ping = st.children().any(|c| c.is("ping", NS_PING));
        if is_ping && own {
            // XEP-0410 §4: the room answers for a joined client.
            return Outcome::reply(iq_result(st, None));
        }
        if self.occupant_of(from).is_none() {
            // XEP-0410 §4 / MUC-DISCO-05: not (or no longer) in the room.
            let cond = if is_ping {
                DefinedCondition::NotAcceptable
            } else {
                DefinedCondition::BadRequest
            };
            return muc_error(
                st,
                error(ErrorType::Cancel, cond, "you are not in this room"),
            );
        }
        self.relay_request(st, from, nick, ctx)
    }

    /// MUC-IQ-01 (XEP-0045 §7.5 end, §17.3): an IQ to another occupant is passed on from the
    /// sender's room JID, neither real JID shown; its answer comes back the same way. vCard
    /// requests go to the account (the vCard lives on the user's server).
    fn relay_request(
        &mut self,
        st: &Element,
        from: &Jid,
        nick: &str,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let now_us = ctx.now_us;
        let sender = match self.occupant_of(from) {
            Some(o) => o.nick.clone(),
            None => return Outcome::default(),
        };
        let Some(target) = self
            .everyone()
            .into_iter()
            .find(|(_, n)| n == nick)
            .map(|(b, _)| b)
        else {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such occupant",
                ),
            );
        };
        let vcard = st.children().any(|c| c.is("vCard", "vcard-temp"));
        let real = if vcard {
            target.clone()
        } else {
            match self.occupants.get(&target) {
                Some(o) => o
                    .sessions
                    .keys()
                    .next_back()
                    .cloned()
                    .unwrap_or(target.clone()),
                None => self
                    .channel
                    .client_of(&target)
                    .map(|(f, _)| f)
                    .unwrap_or(target.clone()),
            }
        };
        self.relays
            .retain(|_, r| now_us - r.sent_us < RELAY_TIMEOUT_US);
        if self.relays.len() >= MAX_RELAYS {
            return muc_error(
                st,
                error(ErrorType::Wait, DefinedCondition::ResourceConstraint, ""),
            );
        }
        let id = ctx.ids.stanza_id();
        self.relays.insert(
            id.clone(),
            MucRelay {
                requester: from.to_string(),
                id: st.attr("id").unwrap_or_default().to_owned(),
                addressed: self.nick_jid(nick),
                target: real.clone(),
                sent_us: now_us,
            },
        );
        let mut fwd = st.clone();
        set_attr(&mut fwd, "from", &self.nick_jid(&sender));
        set_attr(&mut fwd, "to", &real);
        set_attr(&mut fwd, "id", &id);
        Outcome::reply(fwd)
    }

    fn relay_answer(&mut self, st: &Element, from: &Jid) -> Outcome {
        let Some(id) = st.attr("id") else {
            return Outcome::default();
        };
        let Some(relay) = self.relays.get(id) else {
            return Outcome::default();
        };
        if from.to_string() != relay.target && from.to_bare().to_string() != relay.target {
            return Outcome::default();
        }
        let Some(relay) = self.relays.remove(id) else {
            return Outcome::default();
        };
        let mut back = st.clone();
        set_attr(&mut back, "from", &relay.addressed);
        set_attr(&mut back, "to", &relay.requester);
        set_attr(&mut back, "id", &relay.id);
        Outcome::reply(back)
    }

    fn disco_info(&self, st: &Element, q: &Element, _from: &Jid) -> Outcome {
        if q.attr("node") == Some("x-roomuser-item") {
            return self.reserved_item(st, _from);
        }
        if q.attr("node").is_some() {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::FeatureNotImplemented,
                    "",
                ),
            );
        }
        let mut query = Element::bare("query", xmpp_parsers::ns::DISCO_INFO);
        query.append_child(elem(
            "identity",
            xmpp_parsers::ns::DISCO_INFO,
            &[
                ("category", "conference"),
                ("type", "text"),
                ("name", &self.channel.display_name()),
            ],
        ));
        let mut features = vec![
            xmpp_parsers::ns::DISCO_INFO,
            NS_MUC,
            "http://jabber.org/protocol/muc#stable_id",
            "http://jabber.org/protocol/muc#self-ping-optimization",
            "muc_persistent",
            NS_MAM,
            "urn:xmpp:mam:2#extended",
            NS_OCCUPANT_ID,
            NS_SID,
        ];
        features.push(if self.settings.password.is_some() {
            "muc_passwordprotected"
        } else {
            "muc_unsecured"
        });
        features.push(if self.settings.moderated {
            "muc_moderated"
        } else {
            "muc_unmoderated"
        });
        features.push(if self.channel.is_public() {
            "muc_public"
        } else {
            "muc_hidden"
        });
        features.push(if self.channel.members_only() {
            "muc_membersonly"
        } else {
            "muc_open"
        });
        features.push(if self.non_anonymous() {
            "muc_nonanonymous"
        } else {
            "muc_semianonymous"
        });
        features.sort_unstable();
        for f in features {
            query.append_child(elem("feature", xmpp_parsers::ns::DISCO_INFO, &[("var", f)]));
        }
        let mut x = elem("x", NS_DATA, &[("type", "result")]);
        let field = |var: &str, value: &str| {
            let mut f = elem("field", NS_DATA, &[("var", var)]);
            f.append_child(text_elem("value", NS_DATA, value));
            f
        };
        let mut ft = elem(
            "field",
            NS_DATA,
            &[("var", "FORM_TYPE"), ("type", "hidden")],
        );
        ft.append_child(text_elem(
            "value",
            NS_DATA,
            "http://jabber.org/protocol/muc#roominfo",
        ));
        x.append_child(ft);
        x.append_child(field(
            "muc#roominfo_description",
            &self.channel.description(),
        ));
        x.append_child(field(
            "muc#roominfo_subject",
            &self.channel.subject().map(|s| s.text).unwrap_or_default(),
        ));
        x.append_child(field(
            "muc#roominfo_occupants",
            &self.occupant_count().to_string(),
        ));
        x.append_child(field(
            "muc#roomconfig_roomname",
            &self.channel.display_name(),
        ));
        query.append_child(x);
        Outcome::reply(iq_result(st, Some(query)))
    }
}

/// XEP-0045 §7.2.15: the limits of a `<history/>` request (none: the default): how many
/// stanzas, since when (Unix µs), how many characters.
pub(crate) fn history_limits(
    h: Option<&Element>,
    now_us: i64,
) -> (usize, Option<i64>, Option<usize>) {
    let num = |name: &str| {
        h.and_then(|h| h.attr(name))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let mut max = num("maxstanzas")
        .map(|n| n.clamp(0, MAX_HISTORY as i64) as usize)
        .unwrap_or(DEFAULT_HISTORY);
    let maxchars = num("maxchars").map(|n| n.max(0) as usize);
    if maxchars == Some(0) {
        max = 0;
    }
    let mut since_us = h.and_then(|h| h.attr("since")).and_then(parse_datetime);
    if let Some(s) = num("seconds") {
        // Any number a client sends is taken, none overflows.
        let t = now_us.saturating_sub(s.max(0).saturating_mul(1_000_000));
        since_us = Some(since_us.map_or(t, |x| x.max(t)));
    }
    (max, since_us, maxchars)
}

/// An occupant is out (left, removed, the room gone): an unavailable presence from its room JID
/// with `<item affiliation='none' role='none'/>` and these status codes (XEP-0045 §7.14, §9).
pub(crate) fn out_of_room(from: &str, to: &str, codes: &[&str]) -> Element {
    let mut p = elem(
        "presence",
        NS_STANZA,
        &[("from", from), ("to", to), ("type", "unavailable")],
    );
    let mut x = Element::bare("x", NS_MUC_USER);
    x.append_child(elem(
        "item",
        NS_MUC_USER,
        &[("affiliation", "none"), ("role", "none")],
    ));
    for c in codes {
        x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
    }
    p.append_child(x);
    p
}
