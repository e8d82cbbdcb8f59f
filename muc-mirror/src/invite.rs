//! XEP-0045 §7.8.2 mediated invitations and their declines, through the room.

use jid::Jid;
use minidom::Element;
use mix_service::channel::{Ctx, Outcome, Send};
use mix_service::stanza::{NS_STANZA, error};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::room::{NS_MUC_USER, Room, muc_error};

pub const NS_CONFERENCE: &str = "jabber:x:conference";

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
            return self.decline(st, decline, from);
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
        let mut out = Outcome::default();
        let room = self.jid.to_string();
        let from_nick = format!("{room}/{}", inviter.nick);
        for invite in invites {
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
            let mut ux = Element::bare("x", NS_MUC_USER);
            let mut inv = elem("invite", NS_MUC_USER, &[("from", &from_nick)]);
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
            // carries a token, so it also opens a members-only channel to the invitee.
            let (mix, write) =
                self.channel
                    .issue_invitation(&inviter.bare, &invitee.to_bare().to_string(), ctx);
            out.writes.push(write);
            m.append_child(mix);
            out.sends.push(Send::One(m));
        }
        out
    }

    /// §7.8.2: a decline goes to the inviter, from the room.
    fn decline(&self, st: &Element, decline: &Element, from: &Jid) -> Outcome {
        let Some(to) = decline.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
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
            &[("from", &self.jid.to_string()), ("to", &to.to_string())],
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
}
