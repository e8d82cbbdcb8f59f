//! XEP-0369 §7.1: join, leave, setnick, update-subscription.

use jid::Jid;
use minidom::Element;
use pubsub_core::Actor;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use mam_store::Write;

use super::{Channel, Ctx, Outcome, Participant, Role, fold, preferences, pubsub_error};
use crate::stanza::{error, iq_result};
use crate::xml::*;

/// Longest nick accepted (bytes); beyond it the join or setnick is `not-acceptable`.
const MAX_NICK: usize = 128;

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

/// XEP-0369 §7.1.4: nick text, trimmed; `None` for absent or empty.
fn nick_of(payload: &Element) -> Option<String> {
    payload
        .children()
        .find(|c| c.name() == "nick")
        .map(|n| n.text().trim().to_owned())
        .filter(|n| !n.is_empty())
}

impl Channel {
    /// The nick `bare` may use: `Err(conflict)` when another participant holds it or it is
    /// registered to someone else (XEP-0407 §5: a registered nick is never given to another).
    pub(super) fn check_nick(
        &self,
        bare: &str,
        nick: &str,
        ctx: &Ctx<'_>,
    ) -> Result<(), StanzaError> {
        if nick.len() > MAX_NICK || nick.chars().any(char::is_control) {
            return Err(error(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                "nick is too long or has control characters",
            ));
        }
        let folded = fold(nick);
        let taken = self.nicks.get(&folded).is_some_and(|j| j != bare)
            || self.reserved_nicks.get(&folded).is_some_and(|j| j != bare)
            || ctx.nicks.owner_of(nick).is_some_and(|j| j != bare);
        if taken {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::Conflict,
                "that nick is in use in this channel",
            ));
        }
        Ok(())
    }

    fn participant_payload(&self, p: &Participant) -> Element {
        let mut e = Element::bare("participant", NS_CORE);
        if let Some(n) = &p.nick {
            e.append_child(text_elem("nick", NS_CORE, n));
        }
        // XEP-0404 §3: a JID-hidden channel keeps the real JID out of the participants node.
        if self.shows_jid(&p.jid) {
            e.append_child(text_elem("jid", NS_CORE, &p.jid));
        }
        e
    }

    /// Write the participant's item (participants node, and jidmap when hidden) and notify.
    pub(super) fn publish_participant(&mut self, bare: &str, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        let Some(p) = self.participants.get(bare).cloned() else {
            return;
        };
        out.events.push(super::ChannelEvent::Participant {
            bare: bare.to_owned(),
            nick: p.nick.clone(),
        });
        let payload = to_string(&self.participant_payload(&p));
        let mut none = String::new;
        if let Ok(fx) = self.pubsub.publish(
            Actor::service(),
            NODE_PARTICIPANTS,
            Some(&p.id),
            payload,
            &mut none,
        ) {
            out.writes.extend(self.pubsub_writes(fx.changes));
            self.notify(fx.notifications, ctx.ids, out);
        }
        if self.is_hidden() {
            let mut m = Element::bare("participant", NS_ANON);
            m.append_child(text_elem("jid", NS_ANON, &p.jid));
            if let Ok(fx) = self.pubsub.publish(
                Actor::service(),
                NODE_JIDMAP,
                Some(&p.id),
                to_string(&m),
                &mut none,
            ) {
                out.writes.extend(self.pubsub_writes(fx.changes));
                self.notify(fx.notifications, ctx.ids, out);
            }
        }
    }

    /// Subscribe `bare` to `node` if the node exists and the MIX rights let it read (PS-10).
    fn subscribe_node(&mut self, bare: &str, node: &str) -> Result<Vec<Write>, StanzaError> {
        if self.pubsub.node(node).is_none() {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                &format!("no node {node}"),
            ));
        }
        let (read, _) = self.node_rights(node);
        if !self.has(bare, read) {
            return Err(error(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                &format!("not allowed to subscribe to {node}"),
            ));
        }
        self.pubsub
            .subscribe(Actor::service(), node, bare)
            .map(|fx| self.pubsub_writes(fx.changes))
            .map_err(pubsub_error)
    }

    /// The stable id of `bare` in this channel, given now if it has none (XEP-0369 §5.1:
    /// unique, kept after leaving, never reused).
    pub(super) fn stable_id(&mut self, bare: &str, ctx: &mut Ctx<'_>) -> String {
        if let Some(id) = self.ids.get(bare) {
            return id.clone();
        }
        let mut id = ctx.ids.participant_id();
        while self.by_id.contains_key(&id) || id.contains(['#', '/', '@']) {
            id = ctx.ids.participant_id();
        }
        self.ids.insert(bare.to_owned(), id.clone());
        self.by_id.insert(id.clone(), bare.to_owned());
        id
    }

    /// XEP-0407 §5: a nick newly registered with the service becomes the participant's nick
    /// here. "A channel MUST NOT use a registered nick for any other participant": another
    /// participant holding it here is renamed (the nick with its participant id appended).
    pub fn nick_registered(&mut self, bare: &str, nick: &str, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        if let Some(holder) = self.nicks.get(&fold(nick)).cloned()
            && holder != bare
        {
            let id = self.participants.get(&holder).map(|p| p.id.clone());
            let renamed = id.map(|id| format!("{nick}-{id}"));
            self.nicks.remove(&fold(nick));
            if let Some(r) = &renamed {
                self.nicks.insert(fold(r), holder.clone());
            }
            if let Some(p) = self.participants.get_mut(&holder) {
                p.nick = renamed;
            }
            self.publish_participant(&holder, ctx, &mut out);
        }
        if let Some(current) = self.participants.get(bare).cloned()
            && current.nick.as_deref() != Some(nick)
        {
            if let Some(old) = &current.nick {
                self.nicks.remove(&fold(old));
            }
            self.nicks.insert(fold(nick), bare.to_owned());
            if let Some(p) = self.participants.get_mut(bare) {
                p.nick = Some(nick.to_owned());
            }
            self.publish_participant(bare, ctx, &mut out);
        }
        self.archive_node_changes(&mut out, ctx);
        out
    }

    /// XEP-0369 §7.1.2 (and XEP-0405 §5.1 when it arrives from the bare JID).
    pub(super) fn join(
        &mut self,
        st: &Element,
        payload: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        // The result answers in the namespace asked (XEP-0407 §4 and XEP-0404 §5 show joins
        // in their own namespaces).
        let ns = payload.ns();
        let role = self.role(&bare);
        let invitation = match self.check_invitation(payload, &bare, ctx.now_us) {
            Some(Ok(row)) => Some(row),
            Some(Err(e)) => return Outcome::error(st, e),
            None => None,
        };
        // XEP-0406 §3.4: banned first; then the allowed list, unless an invitation lets the
        // invitee in (XEP-0407 §4).
        if role == Role::Banned {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you are banned from this channel",
                ),
            );
        }
        if role < Role::Allowed && invitation.is_none() {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you are not allowed to join this channel",
                ),
            );
        }
        let mut requested = Vec::new();
        for c in payload.children() {
            match c.name() {
                "subscribe" => match c.attr("node") {
                    Some(n) if !n.is_empty() => requested.push(n.to_owned()),
                    // slixmpp 1.17's xep_0369 wraps the <subscribe node/> list in one more
                    // <subscribe/>: read the nested ones rather than refuse every slixmpp join.
                    None if c.children().next().is_some()
                        && c.children().all(|n| {
                            n.name() == "subscribe" && n.attr("node").is_some_and(|v| !v.is_empty())
                        }) =>
                    {
                        requested.extend(
                            c.children()
                                .filter_map(|n| n.attr("node"))
                                .map(str::to_owned),
                        );
                    }
                    _ => return Outcome::error(st, bad("<subscribe/> without a node")),
                },
                "nick" | "invitation" | "x" => {}
                other => {
                    return Outcome::error(st, bad(&format!("unexpected <{other}/> in join")));
                }
            }
        }
        let existing = self.participants.get(&bare).cloned();
        let pref_form = preferences::in_join(payload);
        let prefs = match pref_form {
            Some(f) => {
                let current = existing
                    .as_ref()
                    .map(|p| p.preferences.clone())
                    .unwrap_or_default();
                match preferences::merge(&current, f) {
                    Ok(p) => p,
                    Err(e) => return Outcome::error(st, e),
                }
            }
            None => existing
                .as_ref()
                .map(|p| p.preferences.clone())
                .unwrap_or_default(),
        };
        if let Some(why) = self.preference_conflict(&prefs) {
            return Outcome::error(
                st,
                error(ErrorType::Modify, DefinedCondition::NotAcceptable, &why),
            );
        }
        // The nick: the one asked for, else the one registered with the service, else the one
        // already held (a repeated join), else refused where nicks are mandatory (§7.1.2).
        let nick = nick_of(payload)
            .or_else(|| ctx.nicks.nick_of(&bare).map(str::to_owned))
            .or_else(|| existing.as_ref().and_then(|p| p.nick.clone()));
        match &nick {
            Some(n) => {
                if let Err(e) = self.check_nick(&bare, n, ctx) {
                    return Outcome::error(st, e);
                }
            }
            None if self.config.mandatory_nicks => {
                return Outcome::error(
                    st,
                    error(
                        ErrorType::Modify,
                        DefinedCondition::NotAcceptable,
                        "this channel requires a nick: add <nick/> to the join",
                    ),
                );
            }
            None => {}
        }

        // §7.1.2: subscriptions first, then the participant item, then the result.
        let mut out = Outcome::default();
        let was_participant = existing.is_some();
        let id = self.stable_id(&bare, ctx);
        let mut participant = existing.unwrap_or(Participant {
            id: id.clone(),
            jid: bare.clone(),
            nick: None,
            direct: Default::default(),
            preferences: Default::default(),
            via_muc: false,
        });
        // A MIX join makes a participant of its own, whatever brought it in first.
        participant.via_muc = false;
        participant.preferences = prefs.clone();
        if let Some(old) = &participant.nick {
            self.nicks.remove(&fold(old));
        }
        participant.nick = nick.clone();
        if from.resource().is_some() {
            participant.direct.insert(from.to_string());
        }
        if let Some(n) = &nick {
            self.nicks.insert(fold(n), bare.clone());
        }
        self.participants.insert(bare.clone(), participant);

        let mut granted = Vec::new();
        let mut first_failure: Option<StanzaError> = None;
        for node in &requested {
            match self.subscribe_node(&bare, node) {
                Ok(writes) => {
                    out.writes.extend(writes);
                    granted.push(node.clone());
                }
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        }
        if !requested.is_empty() && granted.is_empty() {
            // §7.1.2: nothing could be subscribed: the join fails, and nothing of it stays.
            if !was_participant {
                self.participants.remove(&bare);
                if let Some(n) = &nick {
                    self.nicks.remove(&fold(n));
                }
            }
            let err = first_failure
                .unwrap_or_else(|| error(ErrorType::Cancel, DefinedCondition::Forbidden, ""));
            return Outcome::error(st, err);
        }
        if let Some(row) = invitation {
            self.use_invitation(row, ctx, &mut out);
        }
        self.publish_participant(&bare, ctx, &mut out);
        out.writes.extend(self.participant_row(&bare, true));

        let channel = self.jid.to_string();
        let mut result = elem(
            "join",
            &ns,
            &[("id", &id), ("jid", &format!("{id}#{channel}"))],
        );
        for node in &granted {
            result.append_child(elem("subscribe", &ns, &[("node", node)]));
        }
        if let Some(n) = &nick {
            result.append_child(text_elem("nick", &ns, n));
        }
        // XEP-0404 §5: asked about preferences, the result lists all of them.
        if pref_form.is_some() || ns == NS_ANON {
            result.append_child(preferences::form(&prefs, "result"));
        }
        out.send(iq_result(st, Some(result)));
        // XEP-0403 §3.3: a new presence subscriber gets the current presence of everyone.
        if granted.iter().any(|n| n == NODE_PRESENCE) {
            self.presence_snapshot(&self.addresses(&bare), &mut out);
        }
        out
    }

    /// XEP-0369 §7.1.5.
    pub(super) fn leave(
        &mut self,
        st: &Element,
        payload: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        if !self.participants.contains_key(&bare) {
            return Outcome::error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "you are not a participant of this channel",
                ),
            );
        }
        let mut out = Outcome::default();
        self.remove_participant(&bare, ctx, &mut out);
        out.send(iq_result(st, Some(Element::bare("leave", payload.ns()))));
        out
    }

    /// Remove a participant everywhere (leave, or a ban, XEP-0406 §3.4): subscriptions, the
    /// participant and jidmap items (notified as retractions), presence (unavailable sent).
    pub(super) fn remove_participant(&mut self, bare: &str, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        let Some(p) = self.participants.get(bare).cloned() else {
            return;
        };
        self.presence_remove_all(bare, ctx, out);
        let nodes: Vec<String> = self
            .pubsub
            .nodes()
            .filter(|n| n.is_subscribed(bare))
            .map(|n| n.name.clone())
            .collect();
        for node in nodes {
            if let Ok(fx) = self.pubsub.unsubscribe(Actor::service(), &node, bare) {
                out.writes.extend(self.pubsub_writes(fx.changes));
            }
        }
        for node in [NODE_PARTICIPANTS, NODE_JIDMAP] {
            if self.pubsub.node(node).and_then(|n| n.item(&p.id)).is_some()
                && let Ok(fx) = self.pubsub.retract(Actor::service(), node, &p.id, true)
            {
                out.writes.extend(self.pubsub_writes(fx.changes));
                // The leaver is unsubscribed already; it learns from the IQ result.
                self.notify(fx.notifications, ctx.ids, out);
            }
        }
        if let Some(n) = &p.nick {
            self.nicks.remove(&fold(n));
        }
        self.participants.remove(bare);
        out.writes.extend(self.participant_row(bare, false));
        out.events.push(super::ChannelEvent::Left {
            bare: bare.to_owned(),
        });
    }

    /// XEP-0369 §7.1.6.
    pub(super) fn setnick(
        &mut self,
        st: &Element,
        payload: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        let Some(current) = self.participants.get(&bare).cloned() else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    "only participants have a nick",
                ),
            );
        };
        if !payload.children().any(|c| c.name() == "nick") {
            return Outcome::error(st, bad("setnick needs a <nick/>"));
        }
        // An empty nick asks the channel to assign one: the registered nick, else a unique one
        // derived from the participant id.
        let nick = match nick_of(payload) {
            Some(n) => n,
            None => ctx
                .nicks
                .nick_of(&bare)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("user-{}", &current.id)),
        };
        if let Err(e) = self.check_nick(&bare, &nick, ctx) {
            return Outcome::error(st, e);
        }
        let mut out = Outcome::default();
        if current.nick.as_deref() != Some(nick.as_str()) {
            if let Some(old) = &current.nick {
                self.nicks.remove(&fold(old));
            }
            self.nicks.insert(fold(&nick), bare.clone());
            if let Some(p) = self.participants.get_mut(&bare) {
                p.nick = Some(nick.clone());
            }
            self.publish_participant(&bare, ctx, &mut out);
        }
        let mut result = Element::bare("setnick", payload.ns());
        result.append_child(text_elem("nick", &payload.ns(), &nick));
        out.send(iq_result(st, Some(result)));
        out
    }

    /// XEP-0369 §7.1.3.
    pub(super) fn update_subscription(
        &mut self,
        st: &Element,
        payload: &Element,
        from: &Jid,
        _ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        if !self.participants.contains_key(&bare) {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "only participants manage subscriptions",
                ),
            );
        }
        let ns = payload.ns();
        let mut out = Outcome::default();
        let mut result = elem("update-subscription", &ns, &[("jid", &bare)]);
        let mut first_failure = None;
        for c in payload.children() {
            let Some(node) = c.attr("node").filter(|n| !n.is_empty()) else {
                return Outcome::error(st, bad("subscribe/unsubscribe without a node"));
            };
            match c.name() {
                "subscribe" => match self.subscribe_node(&bare, node) {
                    Ok(writes) => {
                        out.writes.extend(writes);
                        result.append_child(elem("subscribe", &ns, &[("node", node)]));
                    }
                    Err(e) => {
                        first_failure.get_or_insert(e);
                    }
                },
                "unsubscribe" => {
                    if let Ok(fx) = self.pubsub.unsubscribe(Actor::service(), node, &bare) {
                        out.writes.extend(self.pubsub_writes(fx.changes));
                    }
                    result.append_child(elem("unsubscribe", &ns, &[("node", node)]));
                }
                other => {
                    return Outcome::error(st, bad(&format!("unexpected <{other}/>")));
                }
            }
        }
        if result.children().next().is_none()
            && let Some(e) = first_failure
        {
            return Outcome::error(st, e);
        }
        out.send(iq_result(st, Some(result)));
        out
    }
}
