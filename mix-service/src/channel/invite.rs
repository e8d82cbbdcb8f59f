//! XEP-0407 §4: MIX invitations. An administrator (or a participant, when 'Participation
//! Addition by Invitation from Participant' is on) asks the channel for an invitation; the
//! invitee joins with it, and the channel adds the invitee to the allowed node as part of the
//! join. Tokens are random and stored, so an invitation can expire, be used once, or be
//! withdrawn.

use jid::{BareJid, Jid};
use mam_store::{InvitationRow, InvitationState, Write};
use minidom::Element;
use pubsub_core::Actor;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Ctx, Outcome, Role};
use crate::stanza::{error, iq_result};
use crate::xml::*;

/// How long an invitation admits its invitee.
pub const INVITATION_TTL_US: i64 = 7 * 24 * 3600 * 1_000_000;

fn forbidden(text: &str) -> StanzaError {
    error(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

fn child_text(e: &Element, name: &str) -> Option<String> {
    e.children()
        .find(|c| c.name() == name)
        .map(|c| c.text().trim().to_owned())
}

impl Channel {
    /// §4: admins always; participants when the channel lets them.
    pub(super) fn may_invite(&self, bare: &str) -> bool {
        let role = self.role(bare);
        role >= Role::Admin || (role == Role::Participant && self.config.invitation_by_participant)
    }

    pub(super) fn invite(
        &mut self,
        st: &Element,
        payload: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        // Rights before anything else: a refused inviter learns nothing more.
        let inviter = from.to_bare().to_string();
        if !self.may_invite(&inviter) {
            return Outcome::error(
                st,
                forbidden(
                    "only administrators (or participants, where the channel allows it) invite",
                ),
            );
        }
        let Some(invitee) = child_text(payload, "invitee") else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "<invite/> needs an <invitee/>",
                ),
            );
        };
        let Ok(invitee) = invitee.parse::<Jid>().map(|j| j.to_bare()) else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                    "the invitee is not a JID",
                ),
            );
        };
        let invitee = invitee.to_string();
        if self.role(&invitee) == Role::Banned {
            return Outcome::error(st, forbidden("the invitee is banned from this channel"));
        }
        let (invitation, write) = self.issue_invitation(&inviter, &invitee, ctx);
        let mut result = Element::bare("invite", NS_MISC);
        result.append_child(invitation);
        let mut out = Outcome::reply(iq_result(st, Some(result)));
        out.writes.push(write);
        out
    }

    /// A new invitation of `invitee` by `inviter` (rights checked by the caller): the
    /// `<invitation/>` to hand over, and the write that stores it.
    pub fn issue_invitation(
        &mut self,
        inviter: &str,
        invitee: &str,
        ctx: &mut Ctx<'_>,
    ) -> (Element, Write) {
        let row = InvitationRow {
            token: ctx.ids.stanza_id(),
            kind: "mix".into(),
            inviter: inviter.to_owned(),
            invitee: invitee.to_owned(),
            created_us: ctx.now_us,
            expires_us: ctx.now_us.saturating_add(INVITATION_TTL_US),
            state: InvitationState::Pending,
        };
        // Expired invitations leave memory as new ones come.
        self.invitations.retain(|_, r| r.expires_us > ctx.now_us);
        let el = self.invitation_element(&row);
        let write = Write::Invitation {
            channel: self.name.clone(),
            row: row.clone(),
        };
        self.invitations.insert(row.token.clone(), row);
        (el, write)
    }

    fn invitation_element(&self, row: &InvitationRow) -> Element {
        let mut inv = Element::bare("invitation", NS_MISC);
        inv.append_child(text_elem("inviter", NS_MISC, &row.inviter));
        inv.append_child(text_elem("invitee", NS_MISC, &row.invitee));
        inv.append_child(text_elem("channel", NS_MISC, &self.jid.to_string()));
        inv.append_child(text_elem("token", NS_MISC, &row.token));
        inv
    }

    /// The invitation inside a join, checked against what the channel issued: the token, and
    /// that inviter, invitee (the joining bare JID) and channel are the ones it was issued for,
    /// that it has not expired, and that the inviter may still invite.
    pub(super) fn check_invitation(
        &self,
        join: &Element,
        bare: &str,
        now_us: i64,
    ) -> Option<Result<InvitationRow, StanzaError>> {
        let inv = join.children().find(|c| c.name() == "invitation")?;
        let invalid = || forbidden("the invitation is not valid for you in this channel");
        let Some(row) = child_text(inv, "token").and_then(|t| self.invitations.get(&t)) else {
            return Some(Err(invalid()));
        };
        let same = |name: &str, want: &str| {
            child_text(inv, name)
                .is_none_or(|v| v.parse::<BareJid>().is_ok_and(|j| j.to_string() == want))
        };
        if row.invitee != bare
            || !same("inviter", &row.inviter)
            || !same("invitee", &row.invitee)
            || !same("channel", &self.jid.to_string())
        {
            return Some(Err(invalid()));
        }
        if row.expires_us <= now_us {
            return Some(Err(forbidden("the invitation has expired")));
        }
        if !self.may_invite(&row.inviter) {
            return Some(Err(forbidden(
                "the inviter may no longer invite to this channel",
            )));
        }
        Some(Ok(row.clone()))
    }

    /// A MIX invitation of `bare` that would admit it now (not expired, the inviter still
    /// allowed to invite), the newest first.
    pub(super) fn mix_invitation_for(&self, bare: &str, now_us: i64) -> Option<InvitationRow> {
        self.invitations
            .values()
            .filter(|r| {
                r.kind == "mix"
                    && r.invitee == bare
                    && r.state == InvitationState::Pending
                    && r.expires_us > now_us
                    && self.may_invite(&r.inviter)
            })
            .max_by_key(|r| r.created_us)
            .cloned()
    }

    /// A join admitted by `row`: the invitation is used up, and the invitee is added to the
    /// allowed node if the channel has one and does not list it yet (§4 MUST).
    pub(super) fn use_invitation(
        &mut self,
        row: InvitationRow,
        ctx: &mut Ctx<'_>,
        out: &mut Outcome,
    ) {
        self.invitations.remove(&row.token);
        let invitee = row.invitee.clone();
        out.writes.push(Write::Invitation {
            channel: self.name.clone(),
            row: InvitationRow {
                state: InvitationState::Used,
                ..row
            },
        });
        if self.pubsub.node(NODE_ALLOWED).is_some() && !self.listed(NODE_ALLOWED, &invitee) {
            let mut none = String::new;
            if let Ok(fx) = self.pubsub.publish(
                Actor::service(),
                NODE_ALLOWED,
                Some(&invitee),
                String::new(),
                &mut none,
            ) {
                out.writes.extend(self.pubsub_writes(fx.changes));
                self.notify(fx.notifications, ctx.ids, out);
            }
        }
    }
}
