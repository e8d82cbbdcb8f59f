//! XEP-0369 §7.1.7: a participant's groupchat message, archived and reflected.

use jid::Jid;
use mam_store::{ArchiveRecord, Write};
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{Channel, Ctx, Outcome, Send};
use crate::stanza::{NS_STANZA, error};
use crate::xml::*;

/// Children a sender may not forge: the channel sets them (XEP-0359 §3, XEP-0369 §7.1.7).
pub(super) fn forged(c: &Element, channel: &str) -> bool {
    (c.is("stanza-id", NS_SID) && c.attr("by") == Some(channel))
        || c.is("mix", NS_CORE)
        || c.is("mix", NS_CORE0)
        || c.is("occupant-id", NS_OCCUPANT_ID)
}

impl Channel {
    pub(super) fn message(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> Outcome {
        match st.attr("type") {
            Some("groupchat") => {}
            Some("error") | Some("headline") => return Outcome::default(),
            _ => {
                // CORE-85: only groupchat is distributed through the messages node.
                return Outcome::error(
                    st,
                    error(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "messages to a channel must be of type groupchat",
                    ),
                );
            }
        }
        let bare = from.to_bare().to_string();
        // §7.1.7 / §9: a message from anyone but a participant gets an error message back.
        let Some(p) = self.participants.get(&bare).cloned() else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you are not a participant of this channel",
                ),
            );
        };
        // XEP-0406 'Participants Must Provide Presence': a participant with no client online
        // in the channel's presence node is not heard until it shares presence.
        if self.config.participants_must_provide_presence && !self.is_online(&bare) {
            return Outcome::error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "this channel requires presence: send your presence to the channel first",
                ),
            );
        }
        if let Some(out) = self.retraction(st, &bare) {
            return out;
        }
        let channel = self.jid.to_string();
        let id = ctx.ids.archive_id(ctx.now_us);

        // The stanza as the channel distributes it: from the participant's channel address,
        // the archive id as its id (§7.1.7), <mix/> and <stanza-id/> set by the channel.
        let mut reflected = elem(
            "message",
            NS_STANZA,
            &[
                ("from", &format!("{channel}/{}", p.id)),
                ("type", "groupchat"),
                ("id", &id),
            ],
        );
        for c in st.children().filter(|c| !forged(c, &channel)) {
            reflected.append_child(c.clone());
        }
        let mut mix = Element::bare("mix", NS_CORE);
        if let Some(n) = &p.nick {
            mix.append_child(text_elem("nick", NS_CORE, n));
        }
        if self.shows_jid(&bare) {
            mix.append_child(text_elem("jid", NS_CORE, &bare));
        }
        reflected.append_child(mix);
        reflected.append_child(elem("stanza-id", NS_SID, &[("id", &id), ("by", &channel)]));

        let body = st.children().find(|c| c.name() == "body").map(|b| b.text());
        let mut archived = renamespace(&reflected, NS_STANZA, NS_CLIENT);
        // The sender's own id, for the MUC face (muc#stable_id: history and room MAM show the
        // id the client sent); MIX results never show it (see `mam::results`).
        if let Some(cid) = st.attr("id") {
            set_attr(&mut archived, CLIENT_ID_ATTR, cid);
        }
        let mut out = Outcome::default();
        out.writes.push(Write::Archive(ArchiveRecord {
            channel: self.name.clone(),
            node: NODE_MESSAGES.to_owned(),
            id,
            ts: self.archive_ts(ctx.now_us),
            sender: bare,
            stanza: to_string(&archived),
            body,
        }));
        // §7.1.7: one copy per messages-node subscriber, the sender included.
        out.events.push(super::ChannelEvent::Message {
            stanza: reflected.clone(),
        });
        let to = self.messages_audience();
        if !to.is_empty() {
            out.sends.push(Send::Shared {
                stanza: reflected,
                to,
            });
        }
        out
    }
}
