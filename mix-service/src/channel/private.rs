//! Traffic between participants switched through the channel, addressed to encoded JIDs
//! `ID#channel@mix[/resource]`:
//! - XEP-0404 §6 private messages: rewritten with the sender's encoded JID, never archived,
//!   never groupchat (ANON-04), refused where the channel or the recipient disallows them;
//! - XEP-0403 §3.6 IQ relay: requests forwarded to the target's real JID, answers routed back
//!   (vCard requests only where the target allows them, XEP-0404 §5).

use jid::Jid;
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::preferences::{PRIVATE_MESSAGES, VCARD, preference};
use super::{Channel, Ctx, Outcome};
use crate::stanza::error;
use crate::xml::*;

/// How long a relayed IQ waits for its answer before the channel forgets it.
const RELAY_TIMEOUT_US: i64 = 120 * 1_000_000;
/// Pending relays kept per channel at most (a flood cannot grow memory without bound).
const MAX_RELAYS: usize = 4096;

/// A private message the channel switched, kept a while so that a bounce (an error from the
/// recipient's side) finds its way back to the sender.
#[derive(Debug, Clone)]
pub struct PmRoute {
    sender: String,
    addressed: String,
    sent_us: i64,
}

/// A relayed IQ waiting for its answer.
#[derive(Debug, Clone)]
pub struct Relay {
    /// The requester's real full JID and its id.
    requester: String,
    id: String,
    /// The encoded JID the requester addressed: the answer comes from it.
    addressed: String,
    /// The real JID the request went to: only it may answer, even after its presence item is
    /// gone (every request gets its answer, RFC 6120 §8.2.3).
    target: String,
    sent_us: i64,
}

fn refuse(ty: ErrorType, cond: DefinedCondition, text: &str) -> StanzaError {
    error(ty, cond, text)
}

impl Channel {
    /// The participant and real JID behind an encoded JID: the client's full JID when a
    /// resource is named (from its presence item), else the bare JID.
    fn decode(&self, to: &Jid) -> Result<(String, String), StanzaError> {
        let unknown = || {
            refuse(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such participant in this channel",
            )
        };
        let node = to.node().map(|n| n.as_str()).unwrap_or_default();
        let id = node.split_once('#').map(|(id, _)| id).ok_or_else(unknown)?;
        let bare = self.by_id.get(id).cloned().ok_or_else(unknown)?;
        if !self.participants.contains_key(&bare) {
            return Err(unknown());
        }
        let Some(res) = to.resource() else {
            return Ok((bare.clone(), bare));
        };
        match self.presence.get(&to.to_string()) {
            Some((full, _)) => Ok((bare, full.clone())),
            None => Err(refuse(
                ErrorType::Wait,
                DefinedCondition::RecipientUnavailable,
                &format!("{} is not online here", res.as_str()),
            )),
        }
    }

    /// The sender's encoded JID as others see it.
    fn encoded_sender(&self, from: &Jid) -> Option<String> {
        let bare = from.to_bare().to_string();
        let id = self.participants.get(&bare)?.id.clone();
        let channel = self.jid.to_string();
        Some(match self.shown_resource(from) {
            Some(res) => format!("{id}#{channel}/{res}"),
            None => format!("{id}#{channel}"),
        })
    }

    /// Drop relays and private-message routes older than their timeout.
    pub(super) fn forget_unanswered(&mut self, now_us: i64) {
        self.relays
            .retain(|_, r| now_us - r.sent_us < RELAY_TIMEOUT_US);
        self.pm_routes
            .retain(|_, r| now_us - r.sent_us < RELAY_TIMEOUT_US);
    }

    /// XEP-0404 §6.
    pub(super) fn private_message(
        &mut self,
        st: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        match st.attr("type") {
            Some("error") => return self.private_bounce(st, from),
            Some("groupchat") => {
                return Outcome::error(
                    st,
                    refuse(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "a private message is never of type groupchat",
                    ),
                );
            }
            _ => {}
        }
        let Some(sender) = self.encoded_sender(from) else {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "only participants send private messages through the channel",
                ),
            );
        };
        if !self.config.private_messages {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    "this channel does not switch private messages",
                ),
            );
        }
        let Some(to) = st.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            return Outcome::default();
        };
        let (target, real) = match self.decode(&to) {
            Ok(t) => t,
            Err(e) => return Outcome::error(st, e),
        };
        let prefs = &self.participants[&target].preferences;
        if preference(prefs, PRIVATE_MESSAGES) == "block" {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    "the recipient does not take private messages",
                ),
            );
        }
        let channel = self.jid.to_string();
        // Whatever the channel would stamp on a groupchat message has no place here.
        let mut pm = filtered(st, |c| {
            !super::message::forged(c, &channel) && !c.is("stanza-id", NS_SID)
        });
        set_attr(&mut pm, "from", &sender);
        set_attr(&mut pm, "to", &real);
        if let Some(id) = st.attr("id") {
            let now = ctx.now_us;
            self.pm_routes
                .retain(|_, r| now - r.sent_us < RELAY_TIMEOUT_US);
            if self.pm_routes.len() < MAX_RELAYS {
                self.pm_routes.insert(
                    (real.clone(), id.to_owned()),
                    PmRoute {
                        sender: from.to_string(),
                        addressed: to.to_string(),
                        sent_us: now,
                    },
                );
            }
        }
        Outcome::reply(pm)
    }

    /// A private message bounced by the recipient's side: the error goes back to the sender,
    /// from the encoded JID it wrote to (RFC 6120 §8.3: errors reach whoever sent).
    fn private_bounce(&mut self, st: &Element, from: &Jid) -> Outcome {
        let Some(id) = st.attr("id") else {
            return Outcome::default();
        };
        let key = |jid: String| (jid, id.to_owned());
        let route = self
            .pm_routes
            .remove(&key(from.to_string()))
            .or_else(|| self.pm_routes.remove(&key(from.to_bare().to_string())));
        let Some(route) = route else {
            return Outcome::default();
        };
        let mut back = st.clone();
        set_attr(&mut back, "from", &route.addressed);
        set_attr(&mut back, "to", &route.sender);
        Outcome::reply(back)
    }

    /// XEP-0403 §3.6: requests to an encoded JID go to the real JID; answers come back.
    pub(super) fn relay_iq(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> Outcome {
        match st.attr("type") {
            Some("result") | Some("error") => return self.relay_answer(st, from),
            Some("get") | Some("set") => {}
            _ => {
                return Outcome::error(
                    st,
                    refuse(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "bad IQ type",
                    ),
                );
            }
        }
        let Some(sender) = self.encoded_sender(from) else {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "only participants reach others through the channel",
                ),
            );
        };
        let Some(to) = st.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            return Outcome::default();
        };
        let (target, mut real) = match self.decode(&to) {
            Ok(t) => t,
            Err(e) => return Outcome::error(st, e),
        };
        let vcard = st
            .children()
            .any(|c| c.is("vCard", "vcard-temp") || c.ns() == "urn:ietf:params:xml:ns:vcard-4.0");
        if vcard {
            // XEP-0403 §3.6.1: a vCard lives with the account, on the user's server.
            real = target.clone();
        }
        if vcard && preference(&self.participants[&target].preferences, VCARD) != "allow" {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "the participant does not share a vCard through the channel",
                ),
            );
        }
        let now = ctx.now_us;
        self.relays
            .retain(|_, r| now - r.sent_us < RELAY_TIMEOUT_US);
        if self.relays.len() >= MAX_RELAYS {
            return Outcome::error(
                st,
                refuse(
                    ErrorType::Wait,
                    DefinedCondition::ResourceConstraint,
                    "too many relayed requests waiting",
                ),
            );
        }
        let id = ctx.ids.stanza_id();
        self.relays.insert(
            id.clone(),
            Relay {
                requester: from.to_string(),
                id: st.attr("id").unwrap_or_default().to_owned(),
                addressed: to.to_string(),
                target: real.clone(),
                sent_us: now,
            },
        );
        let mut fwd = st.clone();
        set_attr(&mut fwd, "from", &sender);
        set_attr(&mut fwd, "to", &real);
        set_attr(&mut fwd, "id", &id);
        Outcome::reply(fwd)
    }

    fn relay_answer(&mut self, st: &Element, from: &Jid) -> Outcome {
        let Some(id) = st.attr("id") else {
            return Outcome::default();
        };
        // Only the entity the request went to may answer it: that full JID, or for a request
        // to a bare JID, the account (its server, or one of its clients). Checked against where
        // the request went, not against the presence items now: the client may have left the
        // channel's presence (or its server may bounce the request) before the answer.
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
}
