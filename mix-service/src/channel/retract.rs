//! Retraction of archived messages, in each form clients send (REQUIREMENTS RET-02: one archive
//! operation behind all of them):
//! - XEP-0407 §6: `<retract xmlns='urn:xmpp:mix:misc:0' id='MAM-ID'/>` in a body-less message;
//! - XEP-0424: `<retract xmlns='urn:xmpp:message-retract:1' id='STANZA-ID'/>` (with a fallback
//!   body), and its v0.3 form `<apply-to xmlns='urn:xmpp:fasten:0'><retract .../></apply-to>`;
//! - XEP-0425: `<moderate xmlns='urn:xmpp:message-moderate:1' id='STANZA-ID'>` IQs (and the v0.2
//!   `<apply-to><moderate xmlns='urn:xmpp:message-moderate:0'/></apply-to>` form).
//!
//! In mixd the channel's stanza-id is the archive id, so every form names the same row. Who
//! sent the original is in the archive, not in memory: the channel asks the shell to read it
//! ([`Lookup`]) and decides in [`Channel::resolve`].

use jid::Jid;
use mam_store::{ArchiveRecord, ArchiveRow, Write};
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Ctx, Outcome, Send};
use crate::stanza::{NS_STANZA, error, error_reply, iq_result};
use crate::xml::*;

/// Which form the request came in: the reflected retraction carries that form and the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// XEP-0407 §6.
    Mix,
    /// XEP-0424 v0.4+.
    Retract1,
    /// XEP-0424 v0.3 (fastening).
    Retract0,
    /// XEP-0425 v0.3.
    Moderate1,
    /// XEP-0425 v0.2 (fastening).
    Moderate0,
}

impl Form {
    fn moderation(self) -> bool {
        matches!(self, Form::Moderate1 | Form::Moderate0)
    }
}

/// A retraction waiting for the original message to be read from the archive.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The archive id of the message to retract.
    pub id: String,
    request: Element,
    by: String,
    form: Form,
    reason: Option<String>,
}

fn message_form(st: &Element) -> Option<Result<(String, Form), StanzaError>> {
    let id_of = |e: &Element| {
        e.attr("id")
            .filter(|i| !i.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| bad("the retraction names no message id"))
    };
    if let Some(r) = st.get_child("retract", NS_RETRACT) {
        return Some(id_of(r).map(|id| (id, Form::Retract1)));
    }
    if let Some(a) = st.get_child("apply-to", NS_FASTEN)
        && a.has_child("retract", NS_RETRACT0)
    {
        return Some(id_of(a).map(|id| (id, Form::Retract0)));
    }
    if let Some(r) = st.get_child("retract", NS_MISC) {
        // XEP-0407 §6: "A retract message MUST NOT have a body".
        if st.children().any(|c| c.name() == "body") {
            return Some(Err(bad("a MIX retraction carries no body")));
        }
        return Some(id_of(r).map(|id| (id, Form::Mix)));
    }
    None
}

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

impl Channel {
    /// A participant's retraction message: checked once the original is read. `None` when
    /// the message asks for no retraction.
    pub(super) fn retraction(&self, st: &Element, bare: &str) -> Option<Outcome> {
        Some(match message_form(st)? {
            Ok((id, form)) => Outcome {
                lookup: Some(Lookup {
                    id,
                    request: st.clone(),
                    by: bare.to_owned(),
                    form,
                    reason: None,
                }),
                ..Outcome::default()
            },
            Err(e) => Outcome::error(st, e),
        })
    }

    /// XEP-0425 §4: a moderator's request to retract someone's message.
    pub(super) fn moderate(&self, st: &Element, payload: &Element, from: &Jid) -> Outcome {
        let (moderate, form) = if payload.is("moderate", NS_MODERATE) {
            (payload, Form::Moderate1)
        } else {
            match payload.get_child("moderate", NS_MODERATE0) {
                Some(m) => (m, Form::Moderate0),
                None => {
                    return Outcome::error(
                        st,
                        error(
                            ErrorType::Cancel,
                            DefinedCondition::FeatureNotImplemented,
                            "only moderation is fastened to messages here",
                        ),
                    );
                }
            }
        };
        let retract_ns = if form == Form::Moderate1 {
            NS_RETRACT
        } else {
            NS_RETRACT0
        };
        if !moderate.has_child("retract", retract_ns) {
            return Outcome::error(st, bad("moderation without <retract/>"));
        }
        let Some(id) = payload.attr("id").filter(|i| !i.is_empty()) else {
            return Outcome::error(st, bad("moderation names no message id"));
        };
        let bare = from.to_bare().to_string();
        if !self.has(&bare, self.config.administrator_message_retraction) {
            return Outcome::error(
                st,
                error(
                    ErrorType::Auth,
                    DefinedCondition::Forbidden,
                    "you may not retract others' messages in this channel",
                ),
            );
        }
        Outcome {
            lookup: Some(Lookup {
                id: id.to_owned(),
                request: st.clone(),
                by: bare,
                form,
                reason: moderate
                    .children()
                    .find(|c| c.name() == "reason")
                    .map(|r| r.text()),
            }),
            ..Outcome::default()
        }
    }

    fn refuse(lookup: &Lookup, err: StanzaError) -> Outcome {
        Outcome::error(&lookup.request, err)
    }

    /// Decide a retraction now that the original (`found`) is read: tombstone it, archive the
    /// retraction (XEP-0424 §5: it MUST be stored), and send it to the messages subscribers.
    pub fn resolve(
        &mut self,
        lookup: Lookup,
        found: Option<ArchiveRow>,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let Some(original) = found.filter(|r| !r.retracted) else {
            return Channel::refuse(
                &lookup,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such message in this channel's archive",
                ),
            );
        };
        let Some(orig) = parse(&original.stanza).filter(|o| o.name() == "message") else {
            return Channel::refuse(
                &lookup,
                error(ErrorType::Cancel, DefinedCondition::ItemNotFound, ""),
            );
        };
        if orig
            .children()
            .any(|c| c.name() == "retract" || c.name() == "apply-to")
        {
            // A retraction is not retracted (XEP-0424 §6: only messaging payloads).
            return Channel::refuse(
                &lookup,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    "that message is itself a retraction",
                ),
            );
        }
        // XEP-0407 §6: one's own messages when 'User Message Retraction' is on; anyone's for
        // the 'Administrator Message Retraction Rights' group. Moderation checked the latter.
        let own = original.sender == lookup.by;
        let admin = self.has(&lookup.by, self.config.administrator_message_retraction);
        let allowed = if lookup.form.moderation() {
            admin
        } else {
            admin || (own && self.config.user_message_retraction)
        };
        if !allowed {
            let text = if own {
                "this channel does not let senders retract their messages"
            } else {
                "you may only retract your own messages"
            };
            return Channel::refuse(
                &lookup,
                error(ErrorType::Auth, DefinedCondition::Forbidden, text),
            );
        }

        // Someone else's message: whatever form was asked for, it goes out as moderation
        // (XEP-0424 §6: clients apply a plain retraction only from the original sender).
        let moderation = lookup.form.moderation() || !own;
        let channel = self.jid.to_string();
        let retraction_id = ctx.ids.archive_id(ctx.now_us);
        let stamp = datetime(ctx.now_us);
        let actor_id = self.ids.get(&lookup.by).cloned();
        // Who retracted, as others may see it: the bare JID unless the channel hides it.
        let by_shown = match (&actor_id, self.shows_jid(&lookup.by)) {
            (_, true) => lookup.by.clone(),
            (Some(id), false) => format!("{id}#{channel}"),
            (None, false) => channel.clone(),
        };
        let moderated = |ns: &str| {
            let mut m = elem(
                "moderated",
                ns,
                &[("by", &moderator_addr(&actor_id, &channel))],
            );
            if let Some(id) = &actor_id {
                m.append_child(elem("occupant-id", NS_OCCUPANT_ID, &[("id", id)]));
            }
            m
        };
        let moderator_addr = moderator_addr(&actor_id, &channel);

        let mut reflected = if moderation {
            // XEP-0425 §4.1: from the channel itself.
            elem(
                "message",
                NS_STANZA,
                &[
                    ("from", &channel),
                    ("type", "groupchat"),
                    ("id", &retraction_id),
                ],
            )
        } else {
            let mut m = elem(
                "message",
                NS_STANZA,
                &[
                    ("from", &moderator_addr),
                    ("type", "groupchat"),
                    ("id", &retraction_id),
                ],
            );
            for c in lookup
                .request
                .children()
                .filter(|c| !super::message::forged(c, &channel))
            {
                m.append_child(c.clone());
            }
            m
        };
        // Every form, so each client finds the one it reads (RET-02).
        if !reflected.has_child("retract", NS_RETRACT) {
            let mut r = elem("retract", NS_RETRACT, &[("id", &lookup.id)]);
            if moderation {
                r.append_child(moderated(NS_MODERATE));
                if let Some(reason) = &lookup.reason {
                    r.append_child(text_elem("reason", NS_RETRACT, reason));
                }
            }
            reflected.append_child(r);
        }
        if lookup.form == Form::Moderate0 {
            let mut a = elem("apply-to", NS_FASTEN, &[("id", &lookup.id)]);
            let mut m = elem("moderated", NS_MODERATE0, &[("by", &moderator_addr)]);
            m.append_child(Element::bare("retract", NS_RETRACT0));
            if let Some(reason) = &lookup.reason {
                m.append_child(text_elem("reason", NS_MODERATE0, reason));
            }
            a.append_child(m);
            reflected.append_child(a);
        }
        if !reflected.has_child("retract", NS_MISC) {
            reflected.append_child(elem("retract", NS_MISC, &[("id", &lookup.id)]));
        }
        if !moderation {
            let mut mix = Element::bare("mix", NS_CORE);
            if let Some(n) = self
                .participants
                .get(&lookup.by)
                .and_then(|p| p.nick.clone())
            {
                mix.append_child(text_elem("nick", NS_CORE, &n));
            }
            if self.shows_jid(&lookup.by) {
                mix.append_child(text_elem("jid", NS_CORE, &lookup.by));
            }
            reflected.append_child(mix);
        }
        reflected.append_child(elem(
            "stanza-id",
            NS_SID,
            &[("id", &retraction_id), ("by", &channel)],
        ));

        // The tombstone: the original's addressing and ids, its content gone (XEP-0424 §5,
        // XEP-0407 §6), with both forms of <retracted/>.
        let mut tomb = filtered(&orig, |c| {
            c.is("stanza-id", NS_SID)
                || c.is("origin-id", NS_SID)
                || c.is("mix", NS_CORE)
                || c.is("occupant-id", NS_OCCUPANT_ID)
        });
        let mut r1 = elem(
            "retracted",
            NS_RETRACT,
            &[("id", &retraction_id), ("stamp", &stamp)],
        );
        if moderation {
            // XEP-0425 §5: the tombstone says who moderated, with the occupant id.
            r1.append_child(moderated(NS_MODERATE));
            if let Some(reason) = &lookup.reason {
                r1.append_child(text_elem("reason", NS_RETRACT, reason));
            }
        }
        tomb.append_child(r1);
        tomb.append_child(elem(
            "retracted",
            NS_MISC,
            &[("by", &by_shown), ("time", &stamp)],
        ));

        let mut out = Outcome::default();
        out.writes.push(Write::Tombstone {
            channel: self.name.clone(),
            id: original.id.clone(),
            stanza: to_string(&tomb),
        });
        out.writes.push(Write::Archive(ArchiveRecord {
            channel: self.name.clone(),
            node: NODE_MESSAGES.to_owned(),
            id: retraction_id,
            ts: self.archive_ts(ctx.now_us),
            sender: lookup.by.clone(),
            stanza: to_string(&renamespace(&reflected, NS_STANZA, NS_CLIENT)),
            // A retraction's fallback text is not something to find in a search.
            body: None,
        }));
        let subscribers = self
            .pubsub
            .node(NODE_MESSAGES)
            .map(|n| n.subscribers())
            .unwrap_or_default();
        let to = self.audience(&subscribers);
        out.events.push(super::ChannelEvent::Message {
            stanza: reflected.clone(),
        });
        if !to.is_empty() {
            out.sends.push(Send::Fanout {
                stanza: reflected,
                to,
            });
        }
        // XEP-0425 §4.1: the IQ result after the broadcast.
        if lookup.request.name() == "iq" {
            out.send(iq_result(&lookup.request, None));
        }
        out
    }
}

/// The retracting participant's address in the channel, or the channel's own.
fn moderator_addr(actor_id: &Option<String>, channel: &str) -> String {
    match actor_id {
        Some(id) => format!("{channel}/{id}"),
        None => channel.to_owned(),
    }
}

impl Lookup {
    /// The error the request gets when the archive could not be read.
    pub fn failed(&self) -> Option<Element> {
        error_reply(
            &self.request,
            error(ErrorType::Wait, DefinedCondition::InternalServerError, ""),
        )
    }
}
