//! A MIX channel (XEP-0369): a pubsub service (pubsub-core) with the standard nodes, its
//! participants, and the rules of XEP-0369/0403/0404/0406/0407.
//!
//! Pure: [`Channel::handle`] takes a stanza, the time and an id source, changes the in-memory
//! state and returns an [`Outcome`]: what to store, then what to send. The shell commits the
//! writes before it sends anything ("durable before visible").

mod config;
mod disco;
mod invite;
mod join;
pub mod mam;
mod message;
pub mod mirror;
mod preferences;
mod presence;
mod private;
mod pubsub;
mod retract;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jid::{BareJid, Jid};
use mam_store::{ChannelState, InvitationRow, ParticipantRow, Write};
use minidom::Element;
use pubsub_core::{
    AccessModel, Actor, Affiliation, Change, Event, NodeConfig, Notification, PublishModel, Service,
};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub use config::{JidVisibility, MixConfig, Rights};
pub use mam::MamRequest;
pub use retract::Lookup;

use crate::stanza::{error, error_reply, iq_result};
use crate::xml::*;

/// Where ids come from (the shell: UUIDv7 and random; tests: counters).
pub trait Ids {
    /// A new archive id (time-ordered, unique, unpredictable).
    fn archive_id(&mut self, now_us: i64) -> String;
    /// A new stable participant id: never contains `#`, `/` or `@` (XEP-0369 §5.1).
    fn participant_id(&mut self) -> String;
    /// A fresh id for a stanza the channel originates.
    fn stanza_id(&mut self) -> String;
}

/// Service-wide registered nicks (XEP-0407 §5), read by every channel.
#[derive(Debug, Default, Clone)]
pub struct NickRegistry {
    by_jid: HashMap<String, String>,
    by_nick: HashMap<String, String>,
}

impl NickRegistry {
    pub fn insert(&mut self, jid: &str, nick: &str) {
        if let Some(old) = self.by_jid.insert(jid.to_owned(), nick.to_owned()) {
            self.by_nick.remove(&fold(&old));
        }
        self.by_nick.insert(fold(nick), jid.to_owned());
    }

    pub fn nick_of(&self, jid: &str) -> Option<&str> {
        self.by_jid.get(jid).map(String::as_str)
    }

    pub fn owner_of(&self, nick: &str) -> Option<&str> {
        self.by_nick.get(&fold(nick)).map(String::as_str)
    }
}

/// Case-insensitive nick comparison (a simplification of the PRECIS nickname profile's
/// case mapping, RFC 8266 §2.2).
pub(crate) fn fold(nick: &str) -> String {
    nick.trim().to_lowercase()
}

/// The inputs a channel needs besides the stanza.
pub struct Ctx<'a> {
    pub now_us: i64,
    pub ids: &'a mut dyn Ids,
    pub nicks: &'a NickRegistry,
}

/// A stanza to send.
#[derive(Debug, Clone)]
pub enum Send {
    One(Element),
    /// The same stanza to many recipients: serialised once, `to` spliced in per recipient.
    Fanout {
        stanza: Element,
        to: Vec<String>,
    },
    /// A fan-out to an audience the channel keeps between stanzas (the messages node's), so
    /// the list is not rebuilt per message.
    Shared {
        stanza: Element,
        to: Arc<[String]>,
    },
}

/// What happened in the channel, for the other face (the MUC mirror renders these for its
/// occupants; the MIX copies are already among the sends).
#[derive(Debug, Clone)]
pub enum ChannelEvent {
    /// A groupchat message (or a retraction) was archived and reflected; `stanza` is the MIX
    /// reflection (from `channel/participant-id`, or the channel for moderation).
    Message { stanza: Element },
    /// A client's presence in the channel: `Some` when available, `None` when gone.
    Presence {
        bare: String,
        full: String,
        presence: Option<Element>,
    },
    /// A participant's item was (re)published: joined, or nick or visibility changed.
    Participant { bare: String, nick: Option<String> },
    /// A participant is no longer one (left, or removed by a ban).
    Left { bare: String },
    /// The channel is gone.
    Destroyed,
}

/// What handling a stanza produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub writes: Vec<Write>,
    pub sends: Vec<Send>,
    /// An archive read the shell runs after the writes, answering with [`mam::results`].
    pub query: Option<MamRequest>,
    /// An archived message the shell reads after the writes, handing it to
    /// [`Channel::resolve`] (retractions need the original's sender).
    pub lookup: Option<Lookup>,
    /// The channel no longer exists: drop it from memory.
    pub destroyed: bool,
    pub events: Vec<ChannelEvent>,
}

impl Outcome {
    pub fn reply(el: Element) -> Outcome {
        Outcome {
            sends: vec![Send::One(el)],
            ..Outcome::default()
        }
    }

    pub fn error(st: &Element, err: StanzaError) -> Outcome {
        match error_reply(st, err) {
            Some(e) => Outcome::reply(e),
            None => Outcome::default(),
        }
    }

    fn send(&mut self, el: Element) {
        self.sends.push(Send::One(el));
    }
}

/// A participant as the channel knows it.
#[derive(Debug, Clone)]
pub struct Participant {
    pub id: String,
    pub jid: String,
    pub nick: Option<String>,
    /// Full JIDs it joined from directly; empty: reached at the bare JID (XEP-0405).
    pub direct: BTreeSet<String>,
    /// XEP-0404 §5 preferences that differ from the defaults.
    pub preferences: BTreeMap<String, String>,
    /// Only a participant because it entered through the MUC mirror (see `admit`).
    pub via_muc: bool,
}

/// Roles in XEP-0406 §3.1 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Banned,
    Anyone,
    Allowed,
    Participant,
    Admin,
    Owner,
}

/// One channel's state.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    /// `name@mix-domain`.
    pub jid: BareJid,
    pubsub: Service,
    config: MixConfig,
    /// Listed in the service's disco#items.
    public: bool,
    participants: BTreeMap<String, Participant>,
    /// Every id ever given, by bare JID (kept after leaving, CORE-20).
    ids: HashMap<String, String>,
    /// Participant id → bare JID, for every id ever given.
    by_id: HashMap<String, String>,
    /// Folded nick → bare JID of the active participant holding it.
    nicks: HashMap<String, String>,
    /// XEP-0403 presence of online clients: encoded-JID item id → (real full JID, presence).
    /// Ephemeral: after a restart, clients' servers resend presence.
    presence: BTreeMap<String, (String, Element)>,
    /// XEP-0404 §4.4: the stand-in resource of each online full JID in a JID-hidden channel,
    /// random and fixed while its presence item exists.
    aliases: HashMap<String, String>,
    /// Pending XEP-0407 invitations by token.
    invitations: HashMap<String, InvitationRow>,
    /// XEP-0403 §3.6 IQs relayed and not yet answered, by the id the channel gave them.
    relays: HashMap<String, private::Relay>,
    /// XEP-0404 §6 private messages switched recently, by (recipient, id), for bounces.
    pm_routes: HashMap<(String, String), private::PmRoute>,
    /// Where messages go (the messages node's subscribers' addresses), kept until a stanza
    /// changes persistent state (every change of subscriptions or participants is a write).
    messages_audience: Option<Arc<[String]>>,
    /// Nicks reserved with the MUC face (XEP-0045 §7.10), folded → bare JID: a MIX nick may
    /// not take one either (the mirror keeps them in its settings and tells the channel).
    reserved_nicks: HashMap<String, String>,
    /// The latest archive time given (Unix µs); see `archive_ts`.
    last_archived_us: i64,
}

/// The standard nodes and how the pubsub engine should treat each.
fn node_config(node: &str) -> NodeConfig {
    let base = NodeConfig {
        access_model: AccessModel::Whitelist,
        publish_model: PublishModel::Publishers,
        notify_retract: true,
        ..NodeConfig::default()
    };
    match node {
        NODE_MESSAGES => NodeConfig {
            persist_items: false,
            publish_model: PublishModel::Service,
            ..base
        },
        NODE_PARTICIPANTS | NODE_JIDMAP => NodeConfig {
            publish_model: PublishModel::Service,
            ..base
        },
        NODE_PRESENCE => NodeConfig {
            access_model: AccessModel::Closed,
            publish_model: PublishModel::Service,
            persist_items: false,
            ..base
        },
        NODE_INFO | NODE_CONFIG | NODE_SUBJECT | NODE_AVATAR_METADATA | mirror::NODE_MUC => {
            NodeConfig {
                max_items: Some(1),
                ..base
            }
        }
        // XEP-0084 §4.2: one data item per published image (a few sizes at most).
        NODE_AVATAR_DATA => NodeConfig {
            max_items: Some(8),
            ..base
        },
        _ => base,
    }
}

/// Node names for the 'Nodes Present' values (XEP-0406 §3.6).
fn present_nodes(config: &MixConfig) -> Vec<&'static str> {
    // The MUC mirror's own settings (moderation, password, ...: no MIX equivalent, MM-06)
    // live in a node nobody reaches through pubsub.
    let mut nodes = vec![NODE_MESSAGES, NODE_CONFIG, NODE_SUBJECT, mirror::NODE_MUC];
    for (value, node) in [
        ("participants", NODE_PARTICIPANTS),
        ("presence", NODE_PRESENCE),
        ("information", NODE_INFO),
        ("allowed", NODE_ALLOWED),
        ("banned", NODE_BANNED),
    ] {
        if config.has_node(value) {
            nodes.push(node);
        }
    }
    // XEP-0404 §3: the jidmap node exists for JID-hidden channels.
    if config.jid_visibility != JidVisibility::Visible {
        nodes.push(NODE_JIDMAP);
    }
    // XEP-0407 §7: the avatar nodes, with XEP-0084 semantics.
    if config.has_node("avatar") {
        nodes.push(NODE_AVATAR_DATA);
        nodes.push(NODE_AVATAR_METADATA);
    }
    nodes
}

impl Channel {
    /// Rebuild a channel from the store. A channel that has no nodes yet (created through the
    /// admin API) gets its standard nodes now: the returned writes must be committed.
    pub fn load(state: ChannelState, domain: &BareJid, now_us: i64) -> (Channel, Vec<Write>) {
        let jid = channel_jid(&state.record.name, domain);
        let mut ch = Channel::empty(&state.record.name, jid);
        ch.public = state.record.public;
        ch.last_archived_us = state.last_archived_us;
        for c in state.pubsub {
            ch.pubsub.restore(c);
        }
        let mut writes = Vec::new();
        if ch.pubsub.node(NODE_CONFIG).is_none() {
            writes = ch.initialise(MixConfig::new(None), now_us, &state.record);
        } else if let Some(form) = ch
            .pubsub
            .node(NODE_CONFIG)
            .and_then(|n| n.items().last())
            .and_then(|i| parse(&i.payload))
        {
            ch.config = MixConfig::from_form(&form);
        }
        for row in state.invitations {
            ch.invitations.insert(row.token.clone(), row);
        }
        for row in state.participants {
            ch.ids.insert(row.jid.clone(), row.participant_id.clone());
            ch.by_id.insert(row.participant_id.clone(), row.jid.clone());
            if row.active {
                let nick = ch.stored_nick(&row.participant_id);
                if let Some(n) = &nick {
                    ch.nicks.insert(fold(n), row.jid.clone());
                }
                ch.participants.insert(
                    row.jid.clone(),
                    Participant {
                        id: row.participant_id,
                        jid: row.jid,
                        nick,
                        direct: row.direct_jids.into_iter().collect(),
                        preferences: row.preferences,
                        via_muc: row.via_muc,
                    },
                );
            }
        }
        (ch, writes)
    }

    /// A new channel created by `owner` (XEP-0369 §7.3.2): the channel row and its nodes.
    pub fn create(
        name: &str,
        domain: &BareJid,
        owner: &str,
        public: bool,
        now_us: i64,
    ) -> (Channel, Vec<Write>) {
        let mut ch = Channel::empty(name, channel_jid(name, domain));
        ch.public = public;
        let record = mam_store::NewChannel {
            public,
            ..mam_store::NewChannel::named(name)
        };
        let mut writes = vec![Write::CreateChannel {
            channel: record,
            now_us,
        }];
        let rec = mam_store::ChannelRecord {
            name: name.to_owned(),
            display_name: String::new(),
            description: String::new(),
            public,
            created_at: now_us,
        };
        writes.extend(ch.initialise(MixConfig::new(Some(owner)), now_us, &rec));
        (ch, writes)
    }

    fn empty(name: &str, jid: BareJid) -> Channel {
        Channel {
            name: name.to_owned(),
            jid,
            pubsub: Service::new(),
            config: MixConfig::new(None),
            public: true,
            participants: BTreeMap::new(),
            ids: HashMap::new(),
            by_id: HashMap::new(),
            nicks: HashMap::new(),
            presence: BTreeMap::new(),
            aliases: HashMap::new(),
            invitations: HashMap::new(),
            relays: HashMap::new(),
            pm_routes: HashMap::new(),
            messages_audience: None,
            reserved_nicks: HashMap::new(),
            last_archived_us: 0,
        }
    }

    fn initialise(
        &mut self,
        config: MixConfig,
        now_us: i64,
        record: &mam_store::ChannelRecord,
    ) -> Vec<Write> {
        self.config = config;
        let mut changes = Vec::new();
        for node in present_nodes(&self.config) {
            if let Ok(fx) = self
                .pubsub
                .create_node(Actor::service(), node, node_config(node))
            {
                changes.extend(fx.changes);
            }
        }
        let stamp = datetime(now_us);
        let form = self.config.to_form("result");
        changes.extend(self.service_publish(NODE_CONFIG, &stamp, &form));
        let info = disco::info_form(&record.display_name, &record.description);
        changes.extend(self.service_publish(NODE_INFO, &stamp, &info));
        self.pubsub_writes(changes)
    }

    /// Publish as the service itself; only the state changes are returned.
    fn service_publish(&mut self, node: &str, id: &str, payload: &Element) -> Vec<Change> {
        let mut none = String::new;
        self.pubsub
            .publish(
                Actor::service(),
                node,
                Some(id),
                to_string(payload),
                &mut none,
            )
            .map(|fx| fx.changes)
            .unwrap_or_default()
    }

    fn pubsub_writes(&self, changes: Vec<Change>) -> Vec<Write> {
        changes
            .into_iter()
            // Presence items are ephemeral (ARCHITECTURE "State").
            .filter(|c| !matches!(c, Change::ItemPublished { node, .. } | Change::ItemRetracted { node, .. } if node == NODE_PRESENCE))
            .map(|change| Write::Pubsub {
                channel: self.name.clone(),
                change,
            })
            .collect()
    }

    fn stored_nick(&self, id: &str) -> Option<String> {
        let item = self.pubsub.node(NODE_PARTICIPANTS)?.item(id)?;
        let p = parse(&item.payload)?;
        p.get_child("nick", NS_CORE).map(|n| n.text())
    }

    /// Nothing ephemeral is held: no client's presence, no relayed IQ or private message
    /// waiting for its answer. Such a channel can leave memory; loading it rebuilds it whole.
    pub fn is_idle(&mut self, now_us: i64) -> bool {
        self.forget_unanswered(now_us);
        self.presence.is_empty() && self.relays.is_empty() && self.pm_routes.is_empty()
    }

    pub fn config(&self) -> &MixConfig {
        &self.config
    }

    pub fn participant(&self, bare: &str) -> Option<&Participant> {
        self.participants.get(bare)
    }

    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// JIDs are not shown to everyone: the channel is JID Hidden or JID Maybe Visible
    /// (XEP-0404 §2): the jidmap node exists, resources are stand-ins, MAM hides JIDs.
    pub fn is_hidden(&self) -> bool {
        self.config.jid_visibility != JidVisibility::Visible
    }

    /// Whether `bare`'s real JID is shown to other participants (XEP-0404 §2 and §5).
    pub fn shows_jid(&self, bare: &str) -> bool {
        match self.config.jid_visibility {
            JidVisibility::Visible => true,
            JidVisibility::Hidden => false,
            JidVisibility::Maybe => self.participants.get(bare).is_some_and(|p| {
                preferences::preference(&p.preferences, preferences::JID_VISIBILITY) == "always"
            }),
        }
    }

    /// XEP-0406 §3.1: the requester's role.
    pub fn role(&self, bare: &str) -> Role {
        if self.config.owners.iter().any(|o| o == bare) {
            return Role::Owner;
        }
        if self.config.admins.iter().any(|a| a == bare) {
            return Role::Admin;
        }
        if self.listed(NODE_BANNED, bare) {
            return Role::Banned;
        }
        if self.participants.contains_key(bare) {
            return Role::Participant;
        }
        // §3.3: without an allowed node, everyone is allowed.
        if self.pubsub.node(NODE_ALLOWED).is_none() || self.listed(NODE_ALLOWED, bare) {
            return Role::Allowed;
        }
        Role::Anyone
    }

    /// Whether a bare JID or its domain is an item of the allowed/banned node (§3.3, §3.4).
    fn listed(&self, node: &str, bare: &str) -> bool {
        let Some(n) = self.pubsub.node(node) else {
            return false;
        };
        let domain = bare.rsplit_once('@').map(|(_, d)| d).unwrap_or(bare);
        n.item(bare).is_some() || n.item(domain).is_some()
    }

    pub fn has(&self, bare: &str, rights: Rights) -> bool {
        let role = self.role(bare);
        match rights {
            Rights::Anyone => role > Role::Banned,
            Rights::Allowed => role >= Role::Allowed,
            Rights::Participants => role >= Role::Participant,
            Rights::Admins => role >= Role::Admin,
            Rights::Owners => role == Role::Owner,
            Rights::Nobody => false,
        }
    }

    /// PS-10: who may read (subscribe to) and who may write each node.
    fn node_rights(&self, node: &str) -> (Rights, Rights) {
        let c = &self.config;
        match node {
            NODE_PARTICIPANTS => (c.participants_subscription, Rights::Nobody),
            NODE_INFO => (c.information_subscription, c.information_update),
            NODE_MESSAGES => (c.messages_subscription, Rights::Nobody),
            NODE_PRESENCE => (c.presence_subscription, Rights::Nobody),
            NODE_CONFIG => (c.configuration_access, Rights::Owners),
            NODE_ALLOWED => (c.allowed_subscription, Rights::Admins),
            NODE_BANNED => (c.banned_subscription, Rights::Admins),
            NODE_JIDMAP => (Rights::Admins, Rights::Nobody),
            NODE_SUBJECT => (Rights::Participants, Rights::Participants),
            mirror::NODE_MUC => (Rights::Nobody, Rights::Nobody),
            NODE_AVATAR_DATA | NODE_AVATAR_METADATA => {
                (c.information_subscription, c.avatar_update)
            }
            _ => (Rights::Participants, Rights::Admins),
        }
    }

    /// The pubsub affiliation that the MIX roles give `bare` on `node`.
    fn affiliation(&self, node: &str, bare: &str) -> Affiliation {
        if self.role(bare) == Role::Banned {
            return Affiliation::Outcast;
        }
        let (read, write) = self.node_rights(node);
        if self.has(bare, write) {
            Affiliation::Publisher
        } else if self.has(bare, read) {
            Affiliation::Member
        } else {
            Affiliation::None
        }
    }

    /// Where a bare JID is reached: its bare JID (joined through its server, XEP-0405) or the
    /// full JIDs it joined from directly (a server without MIX-PAM refuses groupchat to bare
    /// JIDs, RFC 6121 §8.5.2).
    pub fn addresses(&self, bare: &str) -> Vec<String> {
        match self.participants.get(bare) {
            Some(p) if !p.direct.is_empty() => p.direct.iter().cloned().collect(),
            _ => vec![bare.to_owned()],
        }
    }

    fn audience(&self, subscribers: &[String]) -> Vec<String> {
        subscribers.iter().flat_map(|s| self.addresses(s)).collect()
    }

    /// The messages node's audience, from the cache when nothing changed since it was built.
    fn messages_audience(&mut self) -> Arc<[String]> {
        if let Some(a) = &self.messages_audience {
            return a.clone();
        }
        let subscribers = self
            .pubsub
            .node(NODE_MESSAGES)
            .map(|n| n.subscribers())
            .unwrap_or_default();
        let a: Arc<[String]> = self.audience(&subscribers).into();
        self.messages_audience = Some(a.clone());
        a
    }

    /// Render pubsub notifications as event messages from the channel (XEP-0060 §7.1.2.1).
    fn notify(&self, notifications: Vec<Notification>, ids: &mut dyn Ids, out: &mut Outcome) {
        for n in notifications {
            if n.recipients.is_empty() || n.node == NODE_PRESENCE {
                continue;
            }
            let mut items = elem("items", NS_PUBSUB_EVENT, &[("node", &n.node)]);
            match &n.event {
                Event::Published(item) => {
                    let mut i = elem("item", NS_PUBSUB_EVENT, &[("id", &item.id)]);
                    if let Some(p) = parse(&item.payload) {
                        i.append_child(p);
                    }
                    items.append_child(i);
                }
                Event::Retracted(id) => {
                    items.append_child(elem("retract", NS_PUBSUB_EVENT, &[("id", id)]));
                }
                Event::Purged | Event::Deleted | Event::Configured => continue,
            }
            let mut event = Element::bare("event", NS_PUBSUB_EVENT);
            event.append_child(items);
            let id = ids.stanza_id();
            let mut msg = elem(
                "message",
                crate::stanza::NS_STANZA,
                &[("from", &self.jid.to_string()), ("id", &id)],
            );
            msg.append_child(event);
            out.sends.push(Send::Fanout {
                stanza: msg,
                to: self.audience(&n.recipients),
            });
        }
    }

    /// XEP-0442: the item changes of the archived nodes (participants, info, config, subject)
    /// go to the archive too, shaped like the node's event notification, so a client can page
    /// through a node's history with MAM `<query node='...'/>`.
    /// The time an archive entry gets: now, but never before the channel's last one, so that
    /// archive time follows archive order within a channel even when the clock steps back.
    /// Time filters lean on that: a time bound becomes a bound on the archive order
    /// (mam_store `archive_page`), which keeps them exact and fast at any archive size.
    pub(crate) fn archive_ts(&mut self, now_us: i64) -> i64 {
        self.last_archived_us = self.last_archived_us.max(now_us);
        self.last_archived_us
    }

    pub(crate) fn archive_node_changes(&mut self, out: &mut Outcome, ctx: &mut Ctx<'_>) {
        let channel = self.jid.to_string();
        let ts = self.archive_ts(ctx.now_us);
        let mut records = Vec::new();
        for w in &out.writes {
            let Write::Pubsub { change, .. } = w else {
                continue;
            };
            let (node, body, publisher) = match change {
                Change::ItemPublished { node, item } => {
                    let mut i = elem("item", NS_PUBSUB_EVENT, &[("id", &item.id)]);
                    if let Some(p) = parse(&item.payload) {
                        i.append_child(p);
                    }
                    (node, i, item.publisher.clone())
                }
                Change::ItemRetracted { node, id } => {
                    (node, elem("retract", NS_PUBSUB_EVENT, &[("id", id)]), None)
                }
                _ => continue,
            };
            if node == NODE_MESSAGES || !mam::ARCHIVED_NODES.contains(&node.as_str()) {
                continue;
            }
            let id = ctx.ids.archive_id(ctx.now_us);
            let mut items = elem("items", NS_PUBSUB_EVENT, &[("node", node)]);
            items.append_child(body);
            let mut event = Element::bare("event", NS_PUBSUB_EVENT);
            event.append_child(items);
            let mut msg = elem("message", NS_CLIENT, &[("from", &channel), ("id", &id)]);
            msg.append_child(event);
            records.push(Write::Archive(mam_store::ArchiveRecord {
                channel: self.name.clone(),
                node: node.clone(),
                id,
                ts,
                sender: publisher.unwrap_or_else(|| channel.clone()),
                stanza: to_string(&msg),
                body: None,
            }));
        }
        out.writes.extend(records);
    }

    /// Handle one stanza addressed to this channel (`chan@mix`, `chan@mix/x` or
    /// `ID#chan@mix[/res]`).
    pub fn handle(&mut self, st: &Element, ctx: &mut Ctx<'_>) -> Outcome {
        let Some(from) = st.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return Outcome::default();
        };
        let encoded = st
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .and_then(|t| t.node().map(|n| n.as_str().contains('#')))
            .unwrap_or(false);
        let mut out = match st.name() {
            "iq" if encoded => self.relay_iq(st, &from, ctx),
            "iq" => self.iq(st, &from, ctx),
            "message" if encoded => self.private_message(st, &from, ctx),
            "message" => self.message(st, &from, ctx),
            "presence" => self.presence(st, &from, ctx),
            _ => Outcome::default(),
        };
        if out
            .writes
            .iter()
            .any(|w| !matches!(w, Write::Archive(_) | Write::Tombstone { .. }))
        {
            self.messages_audience = None;
        }
        self.archive_node_changes(&mut out, ctx);
        out
    }

    fn iq(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> Outcome {
        if matches!(st.attr("type"), Some("result") | Some("error")) {
            return Outcome::default();
        }
        let (ty, payload) = match crate::request::iq_payload(st) {
            Ok(p) => p,
            Err(e) => return Outcome::error(st, e),
        };
        use crate::request::IqType::{Get, Set};
        let ns = payload.ns();
        match (ns.as_str(), payload.name(), ty) {
            (NS_CORE | NS_CORE0 | NS_MISC | NS_ANON, "join", Set) => {
                self.join(st, payload, from, ctx)
            }
            // XEP-0407 §4 shows a get; a set asks the same.
            (NS_MISC, "invite", _) => self.invite(st, payload, from, ctx),
            (NS_ANON, "user-preference", _) => self.user_preference(st, payload, ty, from, ctx),
            (NS_MODERATE, "moderate", Set) | (NS_FASTEN, "apply-to", Set) => {
                self.moderate(st, payload, from)
            }
            (NS_CORE | NS_CORE0, "leave", Set) => self.leave(st, payload, from, ctx),
            (NS_CORE | NS_CORE0, "setnick", Set) => self.setnick(st, payload, from, ctx),
            (NS_CORE | NS_CORE0, "update-subscription", Set) => {
                self.update_subscription(st, payload, from, ctx)
            }
            (NS_PUBSUB, "pubsub", _) => self.pubsub_iq(st, payload, ty, from, ctx),
            (xmpp_parsers::ns::DISCO_INFO, "query", Get) => self.disco_info(st, payload, from),
            (xmpp_parsers::ns::DISCO_ITEMS, "query", Get) => self.disco_items(st, payload, from),
            (NS_MAM, "query", Set) => self.mam_query(st, payload, from),
            (NS_MAM, "query", Get) => Outcome::reply(iq_result(st, Some(mam::query_form()))),
            (NS_MAM, "metadata", Get) => self.mam_metadata(st, payload, from),
            (xmpp_parsers::ns::PING, "ping", Get) => Outcome::reply(iq_result(st, None)),
            (NS_CORE | NS_CORE0 | NS_PUBSUB | NS_MAM | NS_MISC | NS_ANON | NS_MODERATE, _, _) => {
                Outcome::error(
                    st,
                    error(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        "",
                    ),
                )
            }
            _ => Outcome::error(
                st,
                error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, ""),
            ),
        }
    }

    /// XEP-0369 §7.3.4: destroy (owners only).
    pub fn destroy(&mut self, st: &Element, from: &Jid) -> Outcome {
        let bare = from.to_bare().to_string();
        if self.role(&bare) != Role::Owner {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "only an owner may destroy the channel",
                ),
            );
        }
        let mut out = Outcome::reply(iq_result(st, None));
        out.writes.push(Write::DestroyChannel {
            channel: self.name.clone(),
        });
        out.destroyed = true;
        out.events.push(ChannelEvent::Destroyed);
        out
    }

    /// XEP-0369 §7.3.5: the 'End of Life' has come. `now_us` is checked against the
    /// configuration in force, in case it changed after the sweep read the store.
    pub fn expire(&mut self, now_us: i64) -> Outcome {
        let due = self
            .config
            .end_of_life
            .as_deref()
            .and_then(parse_datetime)
            .is_some_and(|t| t <= now_us);
        if !due {
            return Outcome::default();
        }
        Outcome {
            writes: vec![Write::DestroyChannel {
                channel: self.name.clone(),
            }],
            destroyed: true,
            events: vec![ChannelEvent::Destroyed],
            ..Outcome::default()
        }
    }

    fn participant_row(&self, bare: &str, active: bool) -> Option<Write> {
        let id = self.ids.get(bare)?;
        let direct = self
            .participants
            .get(bare)
            .map(|p| p.direct.iter().cloned().collect())
            .unwrap_or_default();
        let preferences = self
            .participants
            .get(bare)
            .map(|p| p.preferences.clone())
            .unwrap_or_default();
        let via_muc = self.participants.get(bare).is_some_and(|p| p.via_muc);
        Some(Write::Participant {
            channel: self.name.clone(),
            row: ParticipantRow {
                jid: bare.to_owned(),
                participant_id: id.clone(),
                active,
                direct_jids: direct,
                preferences,
                via_muc,
            },
        })
    }
}

/// `name@domain` (channel names are validated before a channel exists).
pub fn channel_jid(name: &str, domain: &BareJid) -> BareJid {
    format!("{name}@{domain}")
        .parse()
        .unwrap_or_else(|_| domain.clone())
}

/// A pubsub error as a stanza error, with its pubsub#errors condition.
pub(crate) fn pubsub_error(e: pubsub_core::PubsubError) -> StanzaError {
    let (cond, ty, specific) = e.condition();
    let condition = match cond {
        "item-not-found" => DefinedCondition::ItemNotFound,
        "forbidden" => DefinedCondition::Forbidden,
        "not-allowed" => DefinedCondition::NotAllowed,
        "conflict" => DefinedCondition::Conflict,
        "not-acceptable" => DefinedCondition::NotAcceptable,
        "unexpected-request" => DefinedCondition::UnexpectedRequest,
        "feature-not-implemented" => DefinedCondition::FeatureNotImplemented,
        _ => DefinedCondition::BadRequest,
    };
    let type_ = match ty {
        "auth" => ErrorType::Auth,
        "modify" => ErrorType::Modify,
        "wait" => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    let mut err = error(type_, condition, "");
    if let Some(s) = specific {
        err.other = Some(Element::bare(s, NS_PUBSUB_ERRORS));
    }
    err
}

#[cfg(test)]
mod tests;
