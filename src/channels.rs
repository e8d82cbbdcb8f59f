//! Channel actors (ARCHITECTURE "Life of a message" step 2): each live channel is owned by one
//! task with a bounded inbox. A task takes what is waiting (up to a batch), lets the pure
//! channel handle each stanza, commits every write of the batch in one transaction, and only
//! then sends: durable before visible, one commit per batch (group commit).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jid::Jid;
use minidom::Element;
use mix_service::channel::{Channel, Ctx, Ids, Lookup, NickRegistry, Send, mam};
use mix_service::stanza::{error, error_reply};
use muc_mirror::room::{Room, RoomOutcome};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::link::Outbound;

/// Stanzas a channel task takes per commit.
const BATCH: usize = 256;
/// A channel's inbox; the router waits when it is full (back-pressure, not memory growth).
const INBOX: usize = 1024;

/// What the router hands a channel task.
#[derive(Debug)]
pub enum ChannelMsg {
    Stanza(Element),
    /// `<destroy/>` sent to the service, for this channel.
    Destroy(Element),
    /// A nick newly registered with the service (XEP-0407 §5) by one of the participants.
    NickRegistered {
        jid: String,
        nick: String,
    },
    /// The expiry sweep found the channel's 'End of Life' passed.
    Expire,
    /// mixd is stopping: MUC occupants are told (status 332).
    Shutdown,
    /// Some pending invitations have lapsed.
    InvitationsDue,
    /// The channel was just loaded from the store.
    Loaded,
    /// The task's clock while users behind a DMUC mirror are in the room (keepalive).
    DmucKeepalive,
}

/// How often a room with users behind a DMUC mirror looks after its mirrors' keepalive.
const DMUC_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Real ids: UUIDv7 for the archive (time-ordered), random for participants and stanzas.
pub struct RealIds;

impl Ids for RealIds {
    fn archive_id(&mut self, _now_us: i64) -> String {
        uuid::Uuid::now_v7().to_string()
    }
    fn participant_id(&mut self) -> String {
        // 64 random bits in hex: never '#', '/' or '@' (XEP-0369 §5.1).
        format!("{:016x}", rand::random::<u64>())
    }
    fn stanza_id(&mut self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// Largest buffer a fan-out is cut into. The link queue counts buffers, so this bounds what a
/// full queue holds (queue length × this), while one buffer still carries many deliveries.
const FANOUT_CHUNK: usize = 64 * 1024;

/// Serialise once, splice `to` per recipient (ARCHITECTURE "Serialise once"); the copies are
/// laid end to end in buffers of about [`FANOUT_CHUNK`] bytes, so a fan-out to 10,000
/// participants is a few dozen queue items rather than 10,000.
pub fn fanout_bytes(stanza: &Element, to: &[String]) -> Vec<Bytes> {
    const HOLE: &str = "mixd-to-hole-b3c1";
    let mut st = stanza.clone();
    mix_service::xml::set_attr(&mut st, "to", HOLE);
    let bytes = crate::xmlstream::to_bytes(&st);
    let Some(at) = memchr::memmem::find(&bytes, HOLE.as_bytes()) else {
        return Vec::new();
    };
    let (head, tail) = (&bytes[..at], &bytes[at + HOLE.len()..]);
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    for jid in to {
        // Escaping only lengthens: jid.len() is a lower bound, enough to decide the cut.
        let one = head.len() + jid.len() + tail.len();
        if !buf.is_empty() && buf.len() + one > FANOUT_CHUNK {
            out.push(Bytes::from(std::mem::take(&mut buf)));
        }
        if buf.capacity() == 0 {
            buf.reserve(FANOUT_CHUNK.max(one));
        }
        buf.extend_from_slice(head);
        crate::xmlstream::escape_into(&mut buf, jid);
        buf.extend_from_slice(tail);
    }
    if !buf.is_empty() {
        out.push(Bytes::from(buf));
    }
    out
}

/// The live channels, each serving both faces (MIX and the MUC mirror).
pub struct Channels {
    pub domain: jid::BareJid,
    /// The MUC mirror's domain: the same channels as rooms.
    pub muc_domain: jid::BareJid,
    pub store: mam_store::Store,
    pub out: Outbound,
    pub muc_out: Outbound,
    pub nicks: Arc<RwLock<NickRegistry>>,
    /// How long a channel with nothing ephemeral stays in memory without traffic
    /// (ARCHITECTURE "Life of a message" step 2: idle channels are dropped and reloaded).
    pub idle: std::time::Duration,
    /// Rooms above this many occupants broadcast only moderators' presence.
    pub presence_cap: Option<usize>,
    /// DMUC: mirror domains allowed to mirror rooms.
    pub dmuc_mirrors: Vec<String>,
    actors: HashMap<String, Actor>,
    tasks: JoinSet<()>,
}

/// A live channel task: its inbox, and a signal that closes when the task has ended.
struct Actor {
    tx: mpsc::Sender<ChannelMsg>,
    ended: tokio::sync::oneshot::Receiver<()>,
}

impl Channels {
    pub fn new(
        domains: &mix_service::Domains,
        store: mam_store::Store,
        out: Outbound,
        muc_out: Outbound,
        nicks: Arc<RwLock<NickRegistry>>,
    ) -> Channels {
        Channels {
            domain: domains.mix.clone(),
            muc_domain: domains.muc.clone(),
            store,
            out,
            muc_out,
            nicks,
            idle: std::time::Duration::from_secs(600),
            presence_cap: None,
            dmuc_mirrors: Vec::new(),
            actors: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Hand a message to the channel's task, starting it if needed.
    pub async fn deliver(&mut self, name: &str, mut msg: ChannelMsg) {
        // Reap finished tasks (destroyed or missing channels) so the set does not grow.
        while self.tasks.try_join_next().is_some() {}
        for _ in 0..2 {
            let tx = match self.actors.get(name) {
                Some(a) => a.tx.clone(),
                None => {
                    let (tx, rx) = mpsc::channel(INBOX);
                    let (ended_tx, ended) = tokio::sync::oneshot::channel();
                    let task = Task {
                        name: name.to_owned(),
                        domain: self.domain.clone(),
                        muc_domain: self.muc_domain.clone(),
                        store: self.store.clone(),
                        out: self.out.clone(),
                        muc_out: self.muc_out.clone(),
                        nicks: self.nicks.clone(),
                        idle: self.idle,
                        presence_cap: self.presence_cap,
                        dmuc_mirrors: self.dmuc_mirrors.clone(),
                    };
                    self.tasks.spawn(task.run(rx, ended_tx));
                    self.actors.insert(
                        name.to_owned(),
                        Actor {
                            tx: tx.clone(),
                            ended,
                        },
                    );
                    tx
                }
            };
            match tx.send(msg).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(m)) => {
                    // The task closed its inbox (idle, destroyed, or never existed). It may
                    // still be committing what it had: wait for it to end before a new task
                    // loads the channel, so the new one reads everything the old one wrote.
                    if let Some(old) = self.actors.remove(name) {
                        let _ = old.ended.await;
                    }
                    msg = m;
                }
            }
        }
    }

    /// Stop taking stanzas; wait until every task has committed and sent what it holds.
    pub async fn shutdown(mut self) {
        for actor in self.actors.values() {
            // A full inbox at shutdown is not waited for: the notice is a courtesy.
            let _ = actor.tx.try_send(ChannelMsg::Shutdown);
        }
        self.actors.clear();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Counts channel tasks in `mixd_channels_live` while it exists.
struct LiveGauge;

impl LiveGauge {
    fn new() -> LiveGauge {
        metrics::gauge!("mixd_channels_live").increment(1.0);
        LiveGauge
    }
}

impl Drop for LiveGauge {
    fn drop(&mut self) {
        metrics::gauge!("mixd_channels_live").decrement(1.0);
    }
}

struct Task {
    name: String,
    domain: jid::BareJid,
    muc_domain: jid::BareJid,
    store: mam_store::Store,
    out: Outbound,
    muc_out: Outbound,
    nicks: Arc<RwLock<NickRegistry>>,
    idle: std::time::Duration,
    presence_cap: Option<usize>,
    dmuc_mirrors: Vec<String>,
}

impl Task {
    /// The link of the face a stanza comes from: its 'from' names the domain.
    fn link_for(&self, el: &Element) -> (&Outbound, &'static str) {
        let muc = el
            .attr("from")
            .and_then(|f| f.parse::<jid::Jid>().ok())
            .is_some_and(|f| f.domain() == self.muc_domain.domain());
        if muc {
            (&self.muc_out, "muc")
        } else {
            (&self.out, "mix")
        }
    }

    async fn send_el(&self, el: &Element) {
        let (out, domain) = self.link_for(el);
        metrics::counter!("mixd_stanzas_out_total", "domain" => domain, "kind" => el.name().to_owned())
            .increment(1);
        out.send(el).await;
    }

    async fn refuse(
        &self,
        msg: &ChannelMsg,
        condition: DefinedCondition,
        ty: ErrorType,
        text: &str,
    ) {
        let st = match msg {
            ChannelMsg::Stanza(st) | ChannelMsg::Destroy(st) => st,
            ChannelMsg::NickRegistered { .. }
            | ChannelMsg::Expire
            | ChannelMsg::Shutdown
            | ChannelMsg::InvitationsDue
            | ChannelMsg::Loaded
            | ChannelMsg::DmucKeepalive => {
                return;
            }
        };
        if let Some(reply) = error_reply(st, error(ty, condition, text)) {
            self.send_el(&reply).await;
        }
    }

    /// Close the inbox first (nothing more comes), then answer whatever the router had already
    /// queued with this error.
    async fn close_refusing(
        &self,
        rx: &mut mpsc::Receiver<ChannelMsg>,
        condition: DefinedCondition,
        ty: ErrorType,
        text: &str,
    ) {
        rx.close();
        while let Some(m) = rx.recv().await {
            self.refuse(&m, condition.clone(), ty.clone(), text).await;
        }
    }

    /// `_ended` is dropped when the task returns: that is the signal [`Channels::deliver`]
    /// waits for before starting a channel's next task.
    async fn run(
        self,
        mut rx: mpsc::Receiver<ChannelMsg>,
        _ended: tokio::sync::oneshot::Sender<()>,
    ) {
        let _live = LiveGauge::new();
        let state = match self.store.load_channel(&self.name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(channel = %self.name, error = %e, "loading a channel failed");
                self.close_refusing(
                    &mut rx,
                    DefinedCondition::InternalServerError,
                    ErrorType::Wait,
                    "",
                )
                .await;
                return;
            }
        };
        let mut batch = Vec::with_capacity(BATCH);
        let mut room = match state {
            Some(state) => {
                let (channel, init) = Channel::load(state, &self.domain, now_us());
                if let Err(e) = self.store.commit(&init).await {
                    tracing::error!(channel = %self.name, error = %e, "initialising channel nodes failed");
                    return;
                }
                for probe in channel.startup_probes() {
                    self.send_el(&probe).await;
                }
                let mut room = Room::new(channel, &self.muc_domain);
                room.presence_cap = self.presence_cap;
                room.dmuc.allowed = self.dmuc_mirrors.clone();
                batch.push(ChannelMsg::Loaded);
                room
            }
            None => match self.create_by_entering(&mut rx).await {
                Some((room, first)) => {
                    batch.push(first);
                    room
                }
                None => return,
            },
        };
        let mut ids = RealIds;
        let mut keepalive = Instant::now();
        loop {
            let mirrored = room.dmuc.has_mirrors();
            let wait = if mirrored { DMUC_KEEPALIVE } else { self.idle };
            let waiting = if batch.is_empty() {
                tokio::time::timeout(wait, rx.recv_many(&mut batch, BATCH)).await
            } else {
                Ok(batch.len())
            };
            match waiting {
                Ok(0) => return,
                Ok(_) => {}
                Err(_) if mirrored => {}
                Err(_) => {
                    // Idle: nothing in memory that the store cannot rebuild (no presence, no
                    // relayed IQ or private message waiting for an answer), so the channel
                    // leaves memory. Closing stops new stanzas; those already queued are still
                    // handled below, then recv_many returns 0.
                    if room.is_idle(now_us()) {
                        tracing::debug!(channel = %self.name, "idle; leaving memory");
                        rx.close();
                    }
                    continue;
                }
            }
            // Users behind a DMUC mirror: the room checks on the mirror's link now and then,
            // busy or not (a quiet room would never notice a dead one), after what has come
            // (an answer to its last ping may be among it).
            if mirrored && keepalive.elapsed() >= DMUC_KEEPALIVE {
                keepalive = Instant::now();
                batch.push(ChannelMsg::DmucKeepalive);
            }
            if batch.is_empty() {
                continue;
            }
            let mut outcomes: Vec<(RoomOutcome, ChannelMsg)> = Vec::with_capacity(batch.len());
            {
                let registry = match self.nicks.read() {
                    Ok(r) => r,
                    Err(poisoned) => poisoned.into_inner(),
                };
                let mut ctx = Ctx {
                    now_us: now_us(),
                    ids: &mut ids,
                    nicks: &registry,
                };
                for msg in batch.drain(..) {
                    let out = match &msg {
                        ChannelMsg::Stanza(st) => room.handle(st, &mut ctx),
                        ChannelMsg::Destroy(iq) => {
                            match iq.attr("from").and_then(|f| f.parse::<Jid>().ok()) {
                                Some(from) => {
                                    let out = room.channel.destroy(iq, &from);
                                    room.after(out)
                                }
                                None => RoomOutcome::default(),
                            }
                        }
                        ChannelMsg::NickRegistered { jid, nick } => {
                            let out = room.channel.nick_registered(jid, nick, &mut ctx);
                            room.after(out)
                        }
                        ChannelMsg::Expire => {
                            let out = room.channel.expire(ctx.now_us);
                            room.after(out)
                        }
                        ChannelMsg::Shutdown => room.shutdown(),
                        ChannelMsg::InvitationsDue => {
                            let out = room.lapse_invitations(&mut ctx);
                            out.into()
                        }
                        ChannelMsg::Loaded => {
                            let out = room.reconcile(&mut ctx);
                            room.after(out)
                        }
                        ChannelMsg::DmucKeepalive => room.dmuc_keepalive(&mut ctx).into(),
                    };
                    // What did not come through `handle` still goes out through the
                    // room's boundary (DMUC mirrors).
                    let out = match &msg {
                        ChannelMsg::Stanza(_) => out,
                        _ => room.finish(out),
                    };
                    outcomes.push((out, msg));
                }
            }
            let writes: Vec<_> = outcomes
                .iter_mut()
                .flat_map(|(o, _)| o.outcome.writes.drain(..))
                .collect();
            let start = Instant::now();
            let committed = self.store.commit(&writes).await;
            metrics::histogram!("mixd_db_seconds").record(start.elapsed().as_secs_f64());
            if let Err(e) = committed {
                // Nothing of the batch is stored, so nothing of it may be seen: answer every
                // stanza with an error and reload the channel from what is stored.
                tracing::error!(channel = %self.name, error = %e, "commit failed; batch refused");
                for (_, msg) in &outcomes {
                    self.refuse(
                        msg,
                        DefinedCondition::InternalServerError,
                        ErrorType::Wait,
                        "storage failed",
                    )
                    .await;
                }
                return;
            }
            let mut destroyed = false;
            let mut lookups = Vec::new();
            // DMUC mirrors' history requests are answered after everything the batch sends:
            // the answer reads the archive with the whole batch in it, so a message of the
            // batch must reach the mirror before the answer that holds it.
            let mut answers = Vec::new();
            for (
                RoomOutcome {
                    outcome: out,
                    history,
                },
                _,
            ) in outcomes
            {
                self.send_all(out.sends).await;
                if let Some(req) = out.query {
                    self.answer_query(&req, &room).await;
                }
                for h in history {
                    if h.reply.is_some() {
                        answers.push(h);
                    } else {
                        self.send_history(&h, &room).await;
                    }
                }
                lookups.extend(out.lookup);
                destroyed |= out.destroyed;
            }
            for h in answers {
                self.send_history(&h, &room).await;
            }
            // Retractions read the original after the batch is stored (it may be in it).
            for lookup in lookups {
                if destroyed {
                    break;
                }
                if !self.resolve(&mut room, lookup, &mut ids).await {
                    return;
                }
            }
            if destroyed {
                tracing::info!(channel = %self.name, "channel destroyed");
                self.close_refusing(
                    &mut rx,
                    DefinedCondition::ItemNotFound,
                    ErrorType::Cancel,
                    "no such channel",
                )
                .await;
                return;
            }
        }
    }

    async fn send_all(&self, sends: Vec<Send>) {
        for send in sends {
            match send {
                Send::One(el) => self.send_el(&el).await,
                Send::Fanout { stanza, to } => self.fan_out(&stanza, &to).await,
                Send::Shared { stanza, to } => self.fan_out(&stanza, &to).await,
            }
        }
    }

    async fn fan_out(&self, stanza: &Element, to: &[String]) {
        let (out, domain) = self.link_for(stanza);
        metrics::counter!("mixd_stanzas_out_total", "domain" => domain, "kind" => stanza.name().to_owned())
            .increment(to.len() as u64);
        for b in fanout_bytes(stanza, to) {
            out.send_bytes(b).await;
        }
    }

    /// Read the message a retraction names, let the channel decide, store, then send.
    /// `false` when storage failed and the task must end (the channel reloads on next use).
    async fn resolve(&self, room: &mut Room, lookup: Lookup, ids: &mut RealIds) -> bool {
        let found = match self.store.archived(&self.name, &lookup.id).await {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(channel = %self.name, error = %e, "reading the archive failed");
                if let Some(reply) = lookup.failed() {
                    self.send_el(&reply).await;
                }
                return true;
            }
        };
        let out = {
            let registry = match self.nicks.read() {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            let mut ctx = Ctx {
                now_us: now_us(),
                ids,
                nicks: &registry,
            };
            let out = room.channel.resolve(lookup.clone(), found, &mut ctx);
            // Through the room's boundary, like every outcome (DMUC mirrors).
            let out = room.after(out);
            room.finish(out).outcome
        };
        if let Err(e) = self.store.commit(&out.writes).await {
            tracing::error!(channel = %self.name, error = %e, "commit failed; retraction refused");
            if let Some(reply) = lookup.failed() {
                self.send_el(&reply).await;
            }
            return false;
        }
        self.send_all(out.sends).await;
        true
    }

    /// XEP-0045 §7.2.15: the newcomer's history from the archive (the same as MAM, with the
    /// room's `<delay/>`), then the subject.
    async fn send_history(&self, h: &muc_mirror::room::History, room: &Room) {
        let mut messages = Vec::new();
        if h.max > 0 {
            let q = mam_store::ArchiveQuery {
                channel: self.name.clone(),
                node: mix_service::xml::NODE_MESSAGES.to_owned(),
                backwards: true,
                start: h.since_us,
                max: h.max,
                ..mam_store::ArchiveQuery::default()
            };
            match self.store.archive_page(&q).await {
                Ok(page) => messages = room.history(h, &page),
                Err(e) => {
                    tracing::warn!(channel = %self.name, error = %e, "reading history failed")
                }
            }
        }
        // A DMUC mirror asked: everything in one answer (seed 003), the subject last.
        if let Some(reply) = &h.reply {
            let mut iq = reply.clone();
            let mut history = Element::bare("history", muc_mirror::room::NS_MUC);
            for el in messages.into_iter().chain([h.subject.clone()]) {
                // Stanzas inside a payload are the client's (seed: xmlns='jabber:client').
                let mut el = mix_service::xml::renamespace(
                    &el,
                    mix_service::stanza::NS_STANZA,
                    mix_service::xml::NS_CLIENT,
                );
                mix_service::xml::remove_attr(&mut el, "to");
                history.append_child(el);
            }
            iq.append_child(history);
            self.send_el(&iq).await;
            return;
        }
        for el in &messages {
            self.send_el(el).await;
        }
        self.send_el(&h.subject).await;
        for el in &h.then {
            self.send_el(el).await;
        }
    }

    /// A MUC join to a room that does not exist creates it, the joiner its owner (XEP-0045
    /// §10.1.1); anything else is refused. Returns the new room and the join to handle.
    async fn create_by_entering(
        &self,
        rx: &mut mpsc::Receiver<ChannelMsg>,
    ) -> Option<(Room, ChannelMsg)> {
        let first = rx.recv().await?;
        let join = match &first {
            // Rooms are made on the master, never through a DMUC mirror (seed 003:
            // administration happens on the master only).
            ChannelMsg::Stanza(st) if muc_mirror::dmuc::dmuc_tag(st).is_some() => None,
            ChannelMsg::Stanza(st) => muc_mirror::room::is_entering(st, &self.muc_domain),
            _ => None,
        };
        let Some(owner) = join.filter(|_| mix_service::service::valid_channel_name(&self.name))
        else {
            self.refuse(
                &first,
                DefinedCondition::ItemNotFound,
                ErrorType::Cancel,
                "no such channel",
            )
            .await;
            self.close_refusing(
                rx,
                DefinedCondition::ItemNotFound,
                ErrorType::Cancel,
                "no such channel",
            )
            .await;
            return None;
        };
        let (channel, writes) = Channel::create(&self.name, &self.domain, &owner, true, now_us());
        if let Err(e) = self.store.commit(&writes).await {
            tracing::error!(channel = %self.name, error = %e, "creating a room failed");
            self.refuse(
                &first,
                DefinedCondition::InternalServerError,
                ErrorType::Wait,
                "",
            )
            .await;
            return None;
        }
        tracing::info!(channel = %self.name, %owner, "room created by entering it");
        let mut room = Room::new(channel, &self.muc_domain);
        room.created = true;
        room.presence_cap = self.presence_cap;
        room.dmuc.allowed = self.dmuc_mirrors.clone();
        Some((room, first))
    }

    async fn answer_query(&self, req: &mam::MamRequest, room: &Room) {
        let muc = req
            .iq
            .attr("to")
            .and_then(|t| t.parse::<jid::Jid>().ok())
            .is_some_and(|t| t.domain() == self.muc_domain.domain());
        if req.kind == mam::MamKind::Metadata {
            let q = &req.query;
            match self.store.archive_bounds(&q.channel, &q.node).await {
                Ok(b) => self.send_answer(req, mam::metadata(req, b.as_ref())).await,
                Err(e) => {
                    tracing::error!(channel = %self.name, error = %e, "archive metadata failed");
                    if let Some(reply) = error_reply(
                        &req.iq,
                        error(ErrorType::Wait, DefinedCondition::InternalServerError, ""),
                    ) {
                        self.send_answer(req, reply).await;
                    }
                }
            }
            return;
        }
        match self.store.archive_page(&req.query).await {
            Ok(page) => {
                let requester = req
                    .iq
                    .attr("from")
                    .and_then(|f| f.parse::<jid::Jid>().ok())
                    .map(|f| f.to_bare().to_string())
                    .unwrap_or_default();
                let results = if muc {
                    mam::results_with(req, &page, |m| Some(room.muc_archive_view(&m, &requester)))
                } else {
                    mam::results(req, &page)
                };
                for el in results {
                    self.send_answer(req, el).await;
                }
            }
            Err(mam_store::StoreError::UnknownId(_)) => {
                if let Some(e) = mam::unknown_id(req) {
                    self.send_answer(req, e).await;
                }
            }
            Err(e) => {
                tracing::error!(channel = %self.name, error = %e, "archive query failed");
                if let Some(reply) = error_reply(
                    &req.iq,
                    error(ErrorType::Wait, DefinedCondition::InternalServerError, ""),
                ) {
                    self.send_answer(req, reply).await;
                }
            }
        }
    }

    /// What answers an archive query goes to the requester, or where the room said (a DMUC
    /// mirror's address for a user behind it).
    async fn send_answer(&self, req: &mam::MamRequest, mut el: Element) {
        if let Some(to) = &req.deliver_to {
            mix_service::xml::set_attr(&mut el, "to", to);
        }
        self.send_el(&el).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stanzas laid end to end in the buffers, in order.
    fn stanzas(bufs: &[Bytes]) -> Vec<Element> {
        let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let wrapped = format!(
            "<r xmlns='jabber:component:accept'>{}</r>",
            std::str::from_utf8(&all).expect("utf8")
        );
        let r: Element = wrapped.parse().expect("xml");
        r.children().cloned().collect()
    }

    #[test]
    fn fanout_splices_each_recipient_into_one_serialisation() {
        let st: Element = "<message xmlns='jabber:component:accept' from='c@mix/1' type='groupchat'><body>a&amp;b</body></message>"
            .parse()
            .expect("xml");
        let out = fanout_bytes(&st, &["a@x/r".into(), "b&c@x".into()]);
        assert_eq!(out.len(), 1, "a small fan-out is one buffer");
        let parsed = stanzas(&out);
        assert_eq!(parsed.len(), 2);
        for (p, to) in parsed.iter().zip(["a@x/r", "b&c@x"]) {
            assert_eq!(p.attr("to"), Some(to));
            assert_eq!(
                p.get_child("body", "jabber:component:accept")
                    .map(|b| b.text()),
                Some("a&b".into())
            );
        }
    }

    #[test]
    fn a_large_fanout_is_cut_into_bounded_buffers_without_splitting_a_stanza() {
        let st: Element = "<message xmlns='jabber:component:accept' from='c@mix/1' type='groupchat'><body>hello</body></message>"
            .parse()
            .expect("xml");
        let to: Vec<String> = (0..5000).map(|i| format!("user{i}@example.org")).collect();
        let out = fanout_bytes(&st, &to);
        assert!(out.len() > 1);
        assert!(out.iter().all(|b| b.len() <= FANOUT_CHUNK));
        // Each buffer holds whole stanzas: it parses on its own.
        for b in &out {
            assert!(!stanzas(std::slice::from_ref(b)).is_empty());
        }
        let parsed = stanzas(&out);
        assert_eq!(parsed.len(), 5000);
        assert_eq!(parsed[4999].attr("to"), Some("user4999@example.org"));
    }
}
