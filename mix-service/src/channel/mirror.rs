//! What the other face (the MUC mirror, XEP-0408 "partially integrated") asks of a channel:
//! the same participants, nicks, presence, subject and rights, driven by calls rather than MIX
//! stanzas. A MUC occupant is a channel participant; its presence is a presence-node item.

use jid::Jid;
use minidom::Element;
use pubsub_core::Actor;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Ctx, Outcome, Participant, Role, Send, fold};
use crate::stanza::{NS_STANZA, error};
use crate::xml::*;

/// The node holding the MUC mirror's own settings (one item).
pub const NODE_MUC: &str = "urn:xmpp:mixd:nodes:muc";

/// The subject node's payload namespace (the early draft's node, seed 002).
pub const NS_SUBJECT: &str = "urn:xmpp:mix:nodes:subject";

/// The current subject: its text, the nick that set it, and when (Unix µs, from the item id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub text: String,
    pub nick: Option<String>,
    pub stamp: Option<i64>,
}

impl Channel {
    /// The nicks reserved with the MUC face (nick → bare JID), which MIX nicks respect too.
    pub fn set_reserved_nicks<'a>(
        &mut self,
        reserved: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        self.reserved_nicks = reserved
            .into_iter()
            .map(|(nick, bare)| (fold(nick), bare.to_owned()))
            .collect();
    }

    /// Participants that exist only through MUC occupancy. Occupants are not kept across a
    /// restart, so on load every one of these is left over (a shutdown or a crash) and goes.
    pub fn via_muc(&self) -> Vec<String> {
        self.participants
            .values()
            .filter(|p| p.via_muc)
            .map(|p| p.jid.clone())
            .collect()
    }

    /// Let `bare` in under `nick` (a MUC join): the checks of a MIX join (ban, allowed list,
    /// nick taken or registered to someone else), then a participant without subscriptions.
    /// Returns whether it was already a participant, and the outcome.
    pub fn admit(
        &mut self,
        bare: &str,
        nick: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<(bool, Outcome), StanzaError> {
        let invited = match self.role(bare) {
            Role::Banned => {
                return Err(error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you are banned from this room",
                ));
            }
            // REQUIREMENTS §12: a MUC-only invitee of a MIX participant cannot carry the
            // token into a MUC join, so a live MIX invitation for this JID admits it here,
            // once, as the token would have (XEP-0407 §4: into the allowed node).
            Role::Anyone => match self.mix_invitation_for(bare, ctx.now_us) {
                Some(row) => Some(row),
                None => {
                    return Err(error(
                        ErrorType::Auth,
                        DefinedCondition::RegistrationRequired,
                        "this room is members-only",
                    ));
                }
            },
            _ => None,
        };
        self.check_nick(bare, nick, ctx)?;
        let mut out = Outcome::default();
        if let Some(row) = invited {
            self.use_invitation(row, ctx, &mut out);
        }
        let existing = self.participants.get(bare).cloned();
        let known = existing.is_some();
        if existing.as_ref().and_then(|p| p.nick.as_deref()) == Some(nick) {
            return Ok((true, out));
        }
        let id = self.stable_id(bare, ctx);
        let mut p = existing.unwrap_or(Participant {
            id,
            jid: bare.to_owned(),
            nick: None,
            direct: Default::default(),
            preferences: Default::default(),
            via_muc: true,
        });
        if let Some(old) = &p.nick {
            self.nicks.remove(&fold(old));
        }
        p.nick = Some(nick.to_owned());
        self.nicks.insert(fold(nick), bare.to_owned());
        self.participants.insert(bare.to_owned(), p);
        self.publish_participant(bare, ctx, &mut out);
        out.writes.extend(self.participant_row(bare, true));
        self.archive_node_changes(&mut out, ctx);
        self.messages_audience = None;
        Ok((known, out))
    }

    /// A participant's nick changes (a MUC nick change): the same rules as setnick.
    pub fn rename(
        &mut self,
        bare: &str,
        nick: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        if !self.participants.contains_key(bare) {
            return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound, ""));
        }
        self.admit(bare, nick, ctx).map(|(_, out)| out)
    }

    /// A participant leaves (the last resource of a MUC occupant that was not a MIX
    /// participant before).
    pub fn depart(&mut self, bare: &str, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        self.remove_participant(bare, ctx, &mut out);
        self.archive_node_changes(&mut out, ctx);
        self.messages_audience = None;
        out
    }

    /// A MUC occupant's client presence as a presence-node item (XEP-0403), so MIX clients
    /// see it; `None` takes it away.
    pub fn client_presence(
        &mut self,
        full: &Jid,
        presence: Option<&Element>,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let mut st = elem(
            "presence",
            NS_STANZA,
            &[("from", &full.to_string()), ("to", &self.jid.to_string())],
        );
        match presence {
            Some(p) => {
                for c in p.children().filter(|c| {
                    matches!(c.name(), "show" | "status" | "priority") && c.ns() == p.ns()
                }) {
                    st.append_child(renamespace(c, &p.ns(), NS_STANZA));
                }
            }
            None => set_attr(&mut st, "type", "unavailable"),
        }
        self.presence(&st, full, ctx)
    }

    /// Every client with presence in the channel: (bare JID, full JID).
    pub fn online(&self) -> Vec<(String, String)> {
        self.presence
            .values()
            .map(|(full, _)| {
                let bare = full.split('/').next().unwrap_or_default().to_owned();
                (bare, full.clone())
            })
            .collect()
    }

    /// The newest presence of one of `bare`'s clients: (full JID, the presence as MIX
    /// subscribers see it, with its show and status).
    pub fn client_of(&self, bare: &str) -> Option<(String, Element)> {
        let prefix = format!("{bare}/");
        self.presence
            .values()
            .rev()
            .find(|(full, _)| full.starts_with(&prefix))
            .map(|(f, p)| (f.clone(), p.clone()))
    }

    /// The stable id `bare` has (or had) here: kept after leaving (XEP-0369 §5.1), so the
    /// presence announcing a ban still carries it (XEP-0421).
    pub fn stable_id_of(&self, bare: &str) -> Option<&str> {
        self.ids.get(bare).map(String::as_str)
    }

    /// Take every client of `bare` out of the presence node (a MUC kick of a MIX
    /// participant: it stays a participant, MM-06).
    pub fn drop_presence(&mut self, bare: &str, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        self.presence_remove_all(bare, ctx, &mut out);
        out
    }

    /// The bare JID of the participant with this stable id.
    pub fn bare_of_id(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }

    /// The bare JID holding `nick` among the participants.
    pub fn nick_holder(&self, nick: &str) -> Option<&str> {
        self.nicks.get(&fold(nick)).map(String::as_str)
    }

    pub fn subject(&self) -> Option<Subject> {
        let item = self.pubsub.node(NODE_SUBJECT)?.items().last()?;
        let p = parse(&item.payload)?;
        Some(Subject {
            text: p.text(),
            nick: p.attr("nick").map(str::to_owned),
            stamp: parse_datetime(&item.id),
        })
    }

    /// Set the subject (a MUC subject change, XEP-0045 §8.1): who may is the subject node's
    /// write right. The item id is the time (like the info and config nodes).
    pub fn set_subject(
        &mut self,
        bare: &str,
        text: &str,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        if self.pubsub.node(NODE_SUBJECT).is_none() {
            return Err(error(ErrorType::Cancel, DefinedCondition::ItemNotFound, ""));
        }
        let (_, write) = self.node_rights(NODE_SUBJECT);
        if !self.has(bare, write) {
            return Err(error(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "you may not change the subject",
            ));
        }
        let nick = self.participants.get(bare).and_then(|p| p.nick.clone());
        let mut payload = Element::bare("subject", NS_SUBJECT);
        if let Some(n) = &nick {
            set_attr(&mut payload, "nick", n);
        }
        payload.append_text(text.to_owned());
        let stamp = datetime(ctx.now_us);
        let mut none = String::new;
        let mut out = Outcome::default();
        let fx = self
            .pubsub
            .publish(
                Actor::service(),
                NODE_SUBJECT,
                Some(&stamp),
                to_string(&payload),
                &mut none,
            )
            .map_err(super::pubsub_error)?;
        out.writes.extend(self.pubsub_writes(fx.changes));
        self.notify(fx.notifications, ctx.ids, &mut out);
        self.archive_node_changes(&mut out, ctx);
        Ok(out)
    }

    /// The MUC mirror's settings, as it stored them.
    pub fn mirror_settings(&self) -> Option<Element> {
        let item = self.pubsub.node(NODE_MUC)?.items().last()?;
        parse(&item.payload)
    }

    /// Store the MUC mirror's settings (creating the node in channels older than it).
    pub fn set_mirror_settings(&mut self, payload: &Element, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        if self.pubsub.node(NODE_MUC).is_none()
            && let Ok(fx) =
                self.pubsub
                    .create_node(Actor::service(), NODE_MUC, super::node_config(NODE_MUC))
        {
            out.writes.extend(self.pubsub_writes(fx.changes));
        }
        let mut none = String::new;
        if let Ok(fx) = self.pubsub.publish(
            Actor::service(),
            NODE_MUC,
            Some("current"),
            to_string(payload),
            &mut none,
        ) {
            out.writes.extend(self.pubsub_writes(fx.changes));
        }
        let _ = ctx;
        out
    }

    /// Submit a form to the info or config node as `by` would through pubsub (XEP-0406
    /// §5): the same rights, checks and notifications. The MUC owner form maps onto these.
    pub fn submit_form(
        &mut self,
        by: &str,
        node: &str,
        form: Element,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        let mut item = Element::bare("item", NS_PUBSUB);
        item.append_child(form);
        let mut op = elem("publish", NS_PUBSUB, &[("node", node)]);
        op.append_child(item);
        let st = elem(
            "iq",
            NS_STANZA,
            &[
                ("type", "set"),
                ("id", "mirror-form"),
                ("from", by),
                ("to", &self.jid.to_string()),
            ],
        );
        let aff = self.affiliation(node, by);
        let mut out = self.publish(&st, &op, node, by, aff, ctx);
        // The IQ answer was for the synthetic request: take it out, an error becomes ours.
        let mut failure = None;
        out.sends.retain(|s| match s {
            Send::One(e) if e.attr("id") == Some("mirror-form") => {
                if e.attr("type") == Some("error") {
                    failure = e
                        .get_child("error", NS_STANZA)
                        .and_then(|x| StanzaError::try_from(x.clone()).ok())
                        .or_else(|| {
                            Some(error(ErrorType::Cancel, DefinedCondition::BadRequest, ""))
                        });
                }
                false
            }
            _ => true,
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Whether the channel is listed (disco#items of the service).
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// List or unlist the channel (MUC `muc#roomconfig_publicroom`).
    pub fn set_public(&mut self, public: bool) -> Option<mam_store::Write> {
        if self.public == public {
            return None;
        }
        self.public = public;
        Some(mam_store::Write::ChannelListed {
            channel: self.name.clone(),
            public,
        })
    }

    /// Lift a ban (MUC affiliation none for an outcast).
    pub fn unban(&mut self, bare: &str, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        if self
            .pubsub
            .node(NODE_BANNED)
            .and_then(|n| n.item(bare))
            .is_some()
            && let Ok(fx) = self
                .pubsub
                .retract(Actor::service(), NODE_BANNED, bare, true)
        {
            out.writes.extend(self.pubsub_writes(fx.changes));
            self.notify(fx.notifications, ctx.ids, &mut out);
        }
        out
    }

    /// Add `bare` to the allowed node, or take it off (MUC membership in a members-only room).
    pub fn set_allowed(&mut self, bare: &str, allowed: bool, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        let Some(node) = self.pubsub.node(NODE_ALLOWED) else {
            return out;
        };
        let present = node.item(bare).is_some();
        let mut none = String::new;
        let fx = match (allowed, present) {
            (true, false) => self
                .pubsub
                .publish(
                    Actor::service(),
                    NODE_ALLOWED,
                    Some(bare),
                    String::new(),
                    &mut none,
                )
                .ok(),
            (false, true) => self
                .pubsub
                .retract(Actor::service(), NODE_ALLOWED, bare, true)
                .ok(),
            _ => None,
        };
        if let Some(fx) = fx {
            out.writes.extend(self.pubsub_writes(fx.changes));
            self.notify(fx.notifications, ctx.ids, &mut out);
        }
        out
    }

    /// Keep an invitation the room issued (a MUC mediated invitation, with its lifetime).
    pub fn record_invitation(&mut self, row: mam_store::InvitationRow) -> mam_store::Write {
        let write = mam_store::Write::Invitation {
            channel: self.name.clone(),
            row: row.clone(),
        };
        self.invitations.insert(row.token.clone(), row);
        write
    }

    /// Pending invitations of a kind (`mix`, `muc`).
    pub fn pending_invitations(&self, kind: &str) -> Vec<mam_store::InvitationRow> {
        let mut v: Vec<_> = self
            .invitations
            .values()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect();
        v.sort_by_key(|r| r.created_us);
        v
    }

    /// Close the pending invitations `which` selects (used, declined, cancelled, lapsed):
    /// they leave memory, and the writes record their new state.
    pub fn close_invitations(
        &mut self,
        which: impl Fn(&mam_store::InvitationRow) -> bool,
        state: mam_store::InvitationState,
    ) -> Vec<(mam_store::InvitationRow, mam_store::Write)> {
        let tokens: Vec<String> = self
            .invitations
            .values()
            .filter(|r| which(r))
            .map(|r| r.token.clone())
            .collect();
        let mut out = Vec::new();
        for t in tokens {
            if let Some(row) = self.invitations.remove(&t) {
                let write = mam_store::Write::Invitation {
                    channel: self.name.clone(),
                    row: mam_store::InvitationRow {
                        state,
                        ..row.clone()
                    },
                };
                out.push((row, write));
            }
        }
        out
    }

    /// The items of the banned node (bare JIDs or domains).
    pub fn banned(&self) -> Vec<String> {
        self.node_items(NODE_BANNED)
    }

    /// The items of the allowed node (bare JIDs or domains).
    pub fn allowed(&self) -> Vec<String> {
        self.node_items(NODE_ALLOWED)
    }

    fn node_items(&self, node: &str) -> Vec<String> {
        self.pubsub
            .node(node)
            .map(|n| n.items().map(|i| i.id.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether anyone but owners and admins is kept out: the allowed node exists (MM-06).
    pub fn members_only(&self) -> bool {
        self.pubsub.node(NODE_ALLOWED).is_some()
    }

    /// The channel's display name (info node), or its localpart.
    pub fn display_name(&self) -> String {
        self.pubsub
            .node(NODE_INFO)
            .and_then(|n| n.items().last())
            .and_then(|i| parse(&i.payload))
            .map(|f| super::disco::info_fields(&f).0)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name.clone())
    }

    /// The channel's description (info node).
    pub fn description(&self) -> String {
        self.pubsub
            .node(NODE_INFO)
            .and_then(|n| n.items().last())
            .and_then(|i| parse(&i.payload))
            .map(|f| super::disco::info_fields(&f).1)
            .unwrap_or_default()
    }

    /// Ban `bare` (MUC affiliation outcast): an item of the banned node, which removes the
    /// participant (XEP-0406 §3.4).
    pub fn ban(&mut self, by: &str, bare: &str, ctx: &mut Ctx<'_>) -> Result<Outcome, StanzaError> {
        let (_, write) = self.node_rights(NODE_BANNED);
        if !self.has(by, write) {
            return Err(error(ErrorType::Auth, DefinedCondition::Forbidden, ""));
        }
        if self.role(bare) >= Role::Admin {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::NotAllowed,
                "owners and administrators cannot be banned",
            ));
        }
        let mut out = Outcome::default();
        let mut none = String::new;
        let fx = self
            .pubsub
            .publish(
                Actor::service(),
                NODE_BANNED,
                Some(bare),
                String::new(),
                &mut none,
            )
            .map_err(super::pubsub_error)?;
        out.writes.extend(self.pubsub_writes(fx.changes));
        self.notify(fx.notifications, ctx.ids, &mut out);
        self.remove_participant(bare, ctx, &mut out);
        self.archive_node_changes(&mut out, ctx);
        self.messages_audience = None;
        Ok(out)
    }
}
