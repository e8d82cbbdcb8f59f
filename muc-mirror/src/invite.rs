//! XEP-0045 §7.8.2 mediated invitations and their declines, through the room, with the
//! lifetime and cancellation of seed 000 (`wimba:muc:invite`): an invitation may carry a time
//! to live; when it lapses unanswered, the room tells the invitee and the occupants; the
//! inviter may cancel it; a newcomer learns of the pending ones; destroying the room cancels
//! them. Invitations are kept by the channel, so they survive restarts.

use jid::Jid;
use mam_store::{InvitationRow, InvitationState};
use minidom::Element;
use mix_service::channel::{Ctx, Outcome, Send};
use mix_service::stanza::{NS_STANZA, error};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::room::{NS_MUC_USER, Room, muc_error};

pub const NS_CONFERENCE: &str = "jabber:x:conference";
/// Seed 000's extension for invitation lifetimes and cancellation.
pub const NS_WMI: &str = "wimba:muc:invite";
/// How long an invitation without a time to live holds, and the longest one may ask for.
pub const DEFAULT_TTL_S: i64 = 7 * 24 * 3600;
/// One occupant may send this many invitations per [`INVITE_WINDOW_US`]; more are refused.
pub const INVITE_BURST: usize = 10;
pub const INVITE_WINDOW_US: i64 = 60_000_000;

impl Room {
    /// A message to the room carrying `<invite/>`s or a `<decline/>`.
    pub(crate) fn invitations(
        &mut self,
        st: &Element,
        x: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        if let Some(decline) = x.children().find(|c| c.is("decline", NS_MUC_USER)) {
            let mut out = self.decline(st, decline, from);
            let bare = from.to_bare().to_string();
            for (_, w) in self.channel.close_invitations(
                |r| r.kind == "muc" && r.invitee == bare,
                InvitationState::Cancelled,
            ) {
                out.writes.push(w);
            }
            return out;
        }
        let Some(inviter) = self.occupant_of(from).cloned() else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "only occupants invite",
                ),
            );
        };
        // §7.8.2: in a members-only room, inviting takes the right to (allowinvites, or an
        // admin); an open room admits anyone, so anyone may tell others about it.
        let may_invite = self.is_moderator(&inviter.bare)
            || self.channel.config().invitation_by_participant
            || !self.channel.members_only();
        if !may_invite {
            return muc_error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "this room does not let occupants invite",
                ),
            );
        }
        let invites: Vec<&Element> = x
            .children()
            .filter(|c| c.is("invite", NS_MUC_USER))
            .collect();
        // Every invitation is checked before any is sent: a bad one refuses the message.
        let mut ttls = Vec::with_capacity(invites.len());
        for invite in &invites {
            match attr_any_ns(invite, "ttl").map(|t| t.trim().parse::<i64>()) {
                None => ttls.push(None),
                Some(Ok(t)) if t > 0 => ttls.push(Some(t)),
                Some(_) => {
                    return muc_error(
                        st,
                        error(
                            ErrorType::Modify,
                            DefinedCondition::BadRequest,
                            "ttl is a number of seconds above zero",
                        ),
                    );
                }
            }
        }
        // Flood limit, per inviter: a sliding window of recent invitations.
        let times = self.invite_times.entry(inviter.bare.clone()).or_default();
        while times
            .front()
            .is_some_and(|t| *t <= ctx.now_us - INVITE_WINDOW_US)
        {
            times.pop_front();
        }
        if times.len() + invites.len() > INVITE_BURST {
            return muc_error(
                st,
                error(
                    ErrorType::Wait,
                    DefinedCondition::PolicyViolation,
                    "too many invitations: wait a minute before inviting more",
                ),
            );
        }
        times.extend(std::iter::repeat_n(ctx.now_us, invites.len()));
        let mut out = Outcome::default();
        let room = self.jid.to_string();
        let from_nick = format!("{room}/{}", inviter.nick);
        for (invite, ttl) in invites.into_iter().zip(ttls) {
            let Some(invitee) = invite.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
                return muc_error(
                    st,
                    error(
                        ErrorType::Modify,
                        DefinedCondition::JidMalformed,
                        "invite to whom?",
                    ),
                );
            };
            // A members-only room makes the invitee a member (an open room never does).
            if self.channel.members_only() {
                let more = self
                    .channel
                    .set_allowed(&invitee.to_bare().to_string(), true, ctx);
                out.writes.extend(more.writes);
                out.sends.extend(more.sends);
            }
            let reason = invite
                .children()
                .find(|c| c.name() == "reason")
                .map(|r| r.text())
                .unwrap_or_default();
            let mut m = elem(
                "message",
                NS_STANZA,
                &[("from", &room), ("to", &invitee.to_string())],
            );
            if let Some(id) = st.attr("id") {
                set_attr(&mut m, "id", id);
            }
            // Seed 000: a time to live (else the default), kept with the invitation.
            // A client's ttl is capped: nothing from the network lingers for ever.
            let lifetime = ttl.unwrap_or(DEFAULT_TTL_S).min(DEFAULT_TTL_S);
            out.writes.push(
                self.channel.record_invitation(InvitationRow {
                    token: ctx.ids.stanza_id(),
                    kind: "muc".into(),
                    inviter: from.to_string(),
                    invitee: invitee.to_bare().to_string(),
                    created_us: ctx.now_us,
                    expires_us: ctx
                        .now_us
                        .saturating_add(lifetime.saturating_mul(1_000_000)),
                    state: InvitationState::Pending,
                }),
            );
            let mut ux = Element::bare("x", NS_MUC_USER);
            let mut inv = elem("invite", NS_MUC_USER, &[("from", &from_nick)]);
            if ttl.is_some() {
                set_attr_ns(&mut inv, NS_WMI, "ttl", &lifetime.to_string());
                set_attr_ns(&mut inv, NS_WMI, "timestamp", &datetime(ctx.now_us));
            }
            inv.append_child(text_elem("reason", NS_MUC_USER, &reason));
            // MUC-INV-02: a <continue/> (XEP-0045 §7.8.2) goes along.
            if let Some(c) = invite.children().find(|c| c.is("continue", NS_MUC_USER)) {
                inv.append_child(c.clone());
            }
            ux.append_child(inv);
            if let Some(p) = &self.settings.password {
                ux.append_child(text_elem("password", NS_MUC_USER, p));
            }
            m.append_child(ux);
            m.append_child(text_elem(
                "body",
                NS_STANZA,
                &format!("{from_nick} invited you to the room {room}"),
            ));
            // XEP-0249 alongside, for clients that only read direct invitations.
            m.append_child(elem("x", NS_CONFERENCE, &[("jid", &room)]));
            // REQUIREMENTS §12: a MIX client can take the same invitation to the channel; it
            // carries a token, so it also opens a members-only channel to the invitee. It
            // names the inviter's real JID, which a semi-anonymous room keeps from strangers
            // (XEP-0045 §7.2.4): there, the MUC invitation alone goes.
            if self.non_anonymous() {
                let (mix, write) = self.channel.issue_invitation(
                    &inviter.bare,
                    &invitee.to_bare().to_string(),
                    ctx,
                );
                out.writes.push(write);
                m.append_child(mix);
            }
            out.sends.push(Send::One(m));
        }
        out
    }

    /// Seed 000: the inviter (or a moderator) cancels a pending invitation; the invitee and
    /// the occupants are told.
    pub(crate) fn cancel_invitation(
        &mut self,
        st: &Element,
        cancel: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let _ = ctx;
        let Some(canceller) = self.occupant_of(from).cloned() else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "not an occupant",
                ),
            );
        };
        let Some(invitee) = cancel
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .map(|j| j.to_bare().to_string())
        else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                    "cancel whose invitation?",
                ),
            );
        };
        let moderator = self.is_moderator(&canceller.bare);
        let bare = canceller.bare.clone();
        let closed = self.channel.close_invitations(
            |r| {
                r.kind == "muc"
                    && r.invitee == invitee
                    && (moderator || r.inviter.split('/').next() == Some(bare.as_str()))
            },
            InvitationState::Cancelled,
        );
        if closed.is_empty() {
            let someone_elses = self
                .channel
                .pending_invitations("muc")
                .iter()
                .any(|r| r.invitee == invitee);
            if someone_elses {
                return muc_error(
                    st,
                    error(
                        ErrorType::Auth,
                        DefinedCondition::Forbidden,
                        "only the inviter or a moderator cancels an invitation",
                    ),
                );
            }
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no pending invitation of yours for that user",
                ),
            );
        }
        let reason = cancel
            .children()
            .find(|c| c.name() == "reason")
            .map(|r| r.text());
        let mut out = Outcome::default();
        let room = self.jid.to_string();
        for (row, write) in closed {
            out.writes.push(write);
            // Seed 000 shows type='groupchat', but a server refuses a groupchat message to a
            // bare JID (RFC 6121 §8.5.2.1.1) and the invitee is no occupant: a normal message.
            let mut m = elem(
                "message",
                NS_STANZA,
                &[("from", &room), ("to", &row.invitee)],
            );
            let mut x = Element::bare("x", NS_WMI);
            let mut c = elem(
                "cancel-invite",
                NS_WMI,
                &[("from", &self.inviter_as_seen(&row))],
            );
            if let Some(r) = &reason {
                c.append_child(text_elem("reason", NS_WMI, r));
            }
            x.append_child(c);
            m.append_child(x);
            out.sends.push(Send::One(m));
        }
        // The occupants see it as the canceller's groupchat (seed 000).
        let to = self.audience();
        if !to.is_empty() {
            let mut m = elem(
                "message",
                NS_STANZA,
                &[
                    ("from", &format!("{room}/{}", canceller.nick)),
                    ("type", "groupchat"),
                ],
            );
            let mut x = Element::bare("x", NS_WMI);
            let mut c = elem("cancel-invite", NS_WMI, &[("to", &invitee)]);
            if let Some(r) = &reason {
                c.append_child(text_elem("reason", NS_WMI, r));
            }
            x.append_child(c);
            m.append_child(x);
            out.sends.push(Send::Fanout { stanza: m, to });
        }
        out
    }

    /// Seed 000: invitations whose time has passed lapse: the invitee gets a cancel-invite
    /// with `<timeout/>`, the occupants a notice naming the inviter (MIX invitations lapse
    /// silently: nothing was announced for them).
    pub fn lapse_invitations(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let now = ctx.now_us;
        let closed = self
            .channel
            .close_invitations(|r| r.expires_us <= now, InvitationState::Cancelled);
        let mut out = Outcome::default();
        for (row, write) in closed {
            out.writes.push(write);
            if row.kind == "muc" {
                let to = self.audience();
                self.announce_cancel(&row, true, &to, &mut out);
            }
        }
        out
    }

    /// Every pending MUC invitation is cancelled (the room is going away, seed 000).
    pub(crate) fn cancel_all_invitations(&mut self, out: &mut Outcome) {
        let closed = self
            .channel
            .close_invitations(|r| r.kind == "muc", InvitationState::Cancelled);
        for (row, write) in closed {
            out.writes.push(write);
            // Only the invitee: the occupants are about to hear the room is gone.
            self.announce_cancel(&row, false, &[], out);
        }
    }

    /// The invitee gets a cancel-invite, and the occupants `to` a notice naming the inviter.
    fn announce_cancel(
        &self,
        row: &InvitationRow,
        timeout: bool,
        to: &[String],
        out: &mut Outcome,
    ) {
        let room = self.jid.to_string();
        let mut m = elem(
            "message",
            NS_STANZA,
            &[("from", &room), ("to", &row.invitee)],
        );
        let mut x = Element::bare("x", NS_WMI);
        let mut c = elem(
            "cancel-invite",
            NS_WMI,
            &[("from", &self.inviter_as_seen(row))],
        );
        if timeout {
            c.append_child(Element::bare("timeout", NS_WMI));
        }
        x.append_child(c);
        m.append_child(x);
        out.sends.push(Send::One(m));
        if to.is_empty() {
            return;
        }
        let mut n = elem(
            "message",
            NS_STANZA,
            &[("from", &room), ("type", "groupchat")],
        );
        let mut ux = Element::bare("x", NS_MUC_USER);
        ux.append_child(self.inviter_item(&row.inviter));
        let mut c = elem("cancel-invite", NS_WMI, &[("to", &row.invitee)]);
        if timeout {
            c.append_child(Element::bare("timeout", NS_WMI));
        }
        ux.append_child(c);
        n.append_child(ux);
        out.sends.push(Send::Fanout {
            stanza: n,
            to: to.to_vec(),
        });
    }

    /// Seed 000: the inviter as the occupants see it, an `<item/>` (its real JID only where
    /// occupants see real JIDs).
    fn inviter_item(&self, inviter: &str) -> Element {
        let bare = inviter.split('/').next().unwrap_or_default();
        let mut item = elem(
            "item",
            NS_MUC_USER,
            &[("affiliation", self.affiliation(bare))],
        );
        if let Some(o) = self.occupant(bare) {
            set_attr(&mut item, "nick", &o.nick);
            set_attr(&mut item, "role", self.role(bare));
        }
        if self.non_anonymous() {
            set_attr(&mut item, "jid", inviter);
        }
        item
    }

    /// Who the invitee is told cancelled: the seed shows the inviter's real JID, but the
    /// invitation itself came from the inviter's occupant JID (seed 004), and a semi-anonymous
    /// room must not reveal more to a stranger than it did then; once the inviter has left, the
    /// room speaks for them.
    fn inviter_as_seen(&self, row: &InvitationRow) -> String {
        let bare = row.inviter.split('/').next().unwrap_or_default();
        match self.occupant(bare) {
            Some(o) => format!("{}/{}", self.jid, o.nick),
            None => self.jid.to_string(),
        }
    }

    /// Seed 000: a newcomer learns of the pending invitations, one `<x/>` per inviter.
    pub(crate) fn pending_push(&self, to: &str) -> Option<Element> {
        let pending = self.channel.pending_invitations("muc");
        if pending.is_empty() {
            return None;
        }
        let mut m = elem(
            "message",
            NS_STANZA,
            &[
                ("from", &self.jid.to_string()),
                ("to", to),
                ("type", "groupchat"),
            ],
        );
        let mut inviters: Vec<&str> = pending.iter().map(|r| r.inviter.as_str()).collect();
        inviters.sort_unstable();
        inviters.dedup();
        for inviter in inviters {
            let mut ux = Element::bare("x", NS_MUC_USER);
            ux.append_child(self.inviter_item(inviter));
            for r in pending.iter().filter(|r| r.inviter == inviter) {
                let mut inv = elem("invite", NS_MUC_USER, &[("to", &r.invitee)]);
                set_attr_ns(&mut inv, NS_WMI, "timestamp", &datetime(r.created_us));
                set_attr_ns(
                    &mut inv,
                    NS_WMI,
                    "ttl",
                    &((r.expires_us - r.created_us) / 1_000_000).to_string(),
                );
                ux.append_child(inv);
            }
            m.append_child(ux);
        }
        Some(m)
    }

    /// §7.8.2: a decline goes to the inviter, from the room.
    fn decline(&self, st: &Element, decline: &Element, from: &Jid) -> Outcome {
        let Some(to) = self.decline_to(decline.attr("to"), &from.to_bare().to_string()) else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                    "decline to whom?",
                ),
            );
        };
        let mut m = elem(
            "message",
            NS_STANZA,
            &[("from", &self.jid.to_string()), ("to", &to)],
        );
        let mut ux = Element::bare("x", NS_MUC_USER);
        let mut d = elem(
            "decline",
            NS_MUC_USER,
            &[("from", &from.to_bare().to_string())],
        );
        if let Some(r) = decline.children().find(|c| c.name() == "reason") {
            d.append_child(text_elem("reason", NS_MUC_USER, &r.text()));
        }
        ux.append_child(d);
        m.append_child(ux);
        Outcome::reply(m)
    }

    /// Where a decline goes. The invitation came from the inviter's occupant JID (seed 004),
    /// so that is what the invitee answers to, or to nobody in particular: the room resolves
    /// either to the inviter's real JID from the pending invitation (or the occupant's
    /// session), which the invitee never learnt in a semi-anonymous room.
    fn decline_to(&self, to: Option<&str>, decliner: &str) -> Option<String> {
        let to = match to {
            Some(t) => Some(t.parse::<Jid>().ok()?),
            None => None,
        };
        let inviter_bare = match &to {
            Some(j) if j.to_bare() == self.jid => match j.resource() {
                Some(nick) => Some(
                    self.everyone()
                        .into_iter()
                        .find(|(_, n)| n == nick.as_str())
                        .map(|(b, _)| b)?,
                ),
                None => None,
            },
            Some(j) => return Some(j.to_string()),
            None => None,
        };
        let pending = self.channel.pending_invitations("muc");
        let row = pending.iter().rev().find(|r| {
            r.invitee == decliner
                && inviter_bare
                    .as_deref()
                    .is_none_or(|b| r.inviter.split('/').next() == Some(b))
        });
        if let Some(r) = row {
            return Some(r.inviter.clone());
        }
        let bare = inviter_bare?;
        match self.occupant(&bare) {
            Some(o) => o.sessions.keys().next_back().cloned(),
            None => Some(bare),
        }
    }
}
