//! XEP-0045 §7.10 registering with a room (membership and a reserved nick), §7.12 discovering
//! one's reserved nick (`x-roomuser-item`), and presence probes to occupants.

use jid::Jid;
use minidom::Element;
use mix_service::channel::{Ctx, Outcome, Send};
use mix_service::stanza::{error, iq_result};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::room::{Room, muc_error};

pub const NS_REGISTER: &str = "jabber:iq:register";
pub const FORM_REGISTER: &str = "http://jabber.org/protocol/muc#register";

impl Room {
    /// The nick `bare` reserved by registering, if any.
    pub(crate) fn reserved_nick(&self, bare: &str) -> Option<&str> {
        self.settings.reserved.get(bare).map(String::as_str)
    }

    /// Who reserved `nick` (compared without case), if anyone.
    pub(crate) fn reserved_by(&self, nick: &str) -> Option<&str> {
        let folded = nick.to_lowercase();
        self.settings
            .reserved
            .iter()
            .find(|(_, n)| n.to_lowercase() == folded)
            .map(|(b, _)| b.as_str())
    }

    pub(crate) fn register(
        &mut self,
        st: &Element,
        q: &Element,
        get: bool,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        // §7.10: this room does not take registrations from unaffiliated users (membership
        // comes from an admin or an invitation); members, admins and owners reserve nicks.
        if self.affiliation(&bare) == "none" || self.affiliation(&bare) == "outcast" {
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::NotAllowed,
                    "only members register with this room",
                ),
            );
        }
        if get {
            let mut query = Element::bare("query", NS_REGISTER);
            if let Some(nick) = self.reserved_nick(&bare) {
                // §7.10: already registered.
                query.append_child(Element::bare("registered", NS_REGISTER));
                query.append_child(text_elem("username", NS_REGISTER, nick));
            } else {
                let mut x = elem("x", NS_DATA, &[("type", "form")]);
                let mut ft = elem(
                    "field",
                    NS_DATA,
                    &[("var", "FORM_TYPE"), ("type", "hidden")],
                );
                ft.append_child(text_elem("value", NS_DATA, FORM_REGISTER));
                x.append_child(ft);
                let mut nick = elem(
                    "field",
                    NS_DATA,
                    &[
                        ("var", "muc#register_roomnick"),
                        ("type", "text-single"),
                        ("label", "Nickname"),
                    ],
                );
                nick.append_child(Element::bare("required", NS_DATA));
                x.append_child(nick);
                query.append_child(x);
            }
            return Outcome::reply(iq_result(st, Some(query)));
        }
        if self.channel.role(&bare) == mix_service::channel::Role::Banned {
            return muc_error(st, error(ErrorType::Auth, DefinedCondition::Forbidden, ""));
        }
        if q.has_child("remove", NS_REGISTER) {
            return self.deregister(st, &bare, ctx);
        }
        let nick = q
            .get_child("x", NS_DATA)
            .and_then(|x| {
                x.children()
                    .find(|f| f.attr("var") == Some("muc#register_roomnick"))
            })
            .or_else(|| q.get_child("username", NS_REGISTER))
            .map(|f| {
                f.children()
                    .find(|v| v.name() == "value")
                    .map(|v| v.text())
                    .unwrap_or_else(|| f.text())
            })
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        let Some(nick) = nick else {
            return muc_error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "a nick is required",
                ),
            );
        };
        let taken = self.reserved_by(&nick).is_some_and(|b| b != bare)
            || self.channel.nick_holder(&nick).is_some_and(|b| b != bare)
            || self
                .everyone()
                .iter()
                .any(|(b, n)| b != &bare && n.to_lowercase() == nick.to_lowercase());
        if taken {
            // §7.10: the nick is reserved or in use by someone else.
            return muc_error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::Conflict,
                    "that nick is taken",
                ),
            );
        }
        let mut out = Outcome::default();
        self.settings.reserved.insert(bare.clone(), nick);
        if self.channel.members_only() {
            let more = self.channel.set_allowed(&bare, true, ctx);
            out.writes.extend(more.writes);
            out.sends.extend(more.sends);
        } else {
            self.settings.members.insert(bare.clone());
        }
        self.save_settings(ctx, &mut out);
        self.announce_change(&bare, "", None, &mut out);
        out.sends.push(Send::One(iq_result(st, None)));
        out
    }

    /// §7.11 (Prosody's `<remove/>`): give up the registration, and with it membership; in a
    /// members-only room that takes the user out (321).
    fn deregister(&mut self, st: &Element, bare: &str, ctx: &mut Ctx<'_>) -> Outcome {
        let mut out = Outcome::default();
        self.settings.reserved.remove(bare);
        if matches!(self.affiliation(bare), "owner" | "admin") {
            // Deregistering gives up a membership; an owner's or admin's standing (§9.4,
            // §10.3) is not a registration and stays, with nothing to announce.
            self.save_settings(ctx, &mut out);
            out.sends.push(Send::One(iq_result(st, None)));
            return out;
        }
        self.settings.members.remove(bare);
        if self.channel.members_only() {
            let more = self.channel.set_allowed(bare, false, ctx);
            out.writes.extend(more.writes);
            out.sends.extend(more.sends);
            if let Some(o) = self.occupant(bare).cloned() {
                self.remove_occupant(&o, &["321"], None, "", ctx, &mut out);
            }
        } else if self.everyone().iter().any(|(b, _)| b == bare) {
            self.announce_change(bare, "", None, &mut out);
        } else {
            // §5.2.2: the moderators learn of an absent user's change.
            self.notice(bare, &[], None, &mut out);
        }
        self.save_settings(ctx, &mut out);
        // The result after the presences it caused (as XEP-0045 §9.4 shows for revocation).
        out.sends.push(Send::One(iq_result(st, None)));
        out
    }

    /// §7.12: `<query node='x-roomuser-item'/>`: the reserved nick as an identity, or an
    /// empty result.
    pub(crate) fn reserved_item(&self, st: &Element, from: &Jid) -> Outcome {
        let bare = from.to_bare().to_string();
        let mut query = elem(
            "query",
            xmpp_parsers::ns::DISCO_INFO,
            &[("node", "x-roomuser-item")],
        );
        // Only a nick reserved with the room: the nick one happens to use is not one.
        let nick = self.reserved_nick(&bare).map(str::to_owned);
        if let Some(n) = nick {
            query.append_child(elem(
                "identity",
                xmpp_parsers::ns::DISCO_INFO,
                &[("category", "conference"), ("type", "text"), ("name", &n)],
            ));
        }
        Outcome::reply(iq_result(st, Some(query)))
    }

    /// A presence probe to `room/nick` from an occupant: that occupant's presence back; for a
    /// member who is not in, its affiliation in an unavailable presence.
    pub(crate) fn probe(&self, st: &Element, from: &Jid, nick: &str) -> Outcome {
        let mut out = Outcome::default();
        if self.occupant_of(from).is_none() {
            // A probe gets no error through the generic path (it is not a request that
            // deserves an answer there), but a room tells a stranger it is not in.
            let mut e = elem(
                "presence",
                mix_service::stanza::NS_STANZA,
                &[
                    ("from", st.attr("to").unwrap_or_default()),
                    ("to", &from.to_string()),
                    ("type", "error"),
                ],
            );
            let err = error(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                "only occupants probe occupants",
            );
            let mut el: Element = err.into();
            set_attr(&mut el, "by", &self.jid.to_string());
            e.append_child(el);
            out.sends.push(Send::One(e));
            return out;
        }
        // XEP-0045 §7.2.4: a semi-anonymous room shows real JIDs to moderators only.
        let with_jid = self.non_anonymous() || self.is_moderator(&from.to_bare().to_string());
        let Some((bare, _)) = self.everyone().into_iter().find(|(_, n)| n == nick) else {
            if let Some(bare) = self.reserved_by(nick) {
                // An absent member: its affiliation and reserved nick, unavailable.
                let mut p = self.occupant_presence(bare, nick, None, Some(bare), with_jid, true);
                if let Some(item) = p
                    .get_child_mut("x", crate::room::NS_MUC_USER)
                    .and_then(|x| x.get_child_mut("item", crate::room::NS_MUC_USER))
                {
                    set_attr(item, "nick", nick);
                }
                set_attr(&mut p, "to", &from.to_string());
                out.sends.push(Send::One(p));
            }
            return out;
        };
        let (source, full) = match self.occupant(&bare) {
            Some(o) => o
                .sessions
                .iter()
                .next_back()
                .map(|(f, p)| (Some(p.clone()), Some(f.clone())))
                .unwrap_or((None, None)),
            None => match self.channel.client_of(&bare) {
                Some((f, p)) => (Some(p), Some(f)),
                None => (None, None),
            },
        };
        let mut p = self.occupant_presence(
            &bare,
            nick,
            source.as_ref(),
            full.as_deref(),
            with_jid,
            false,
        );
        set_attr(&mut p, "to", &from.to_string());
        out.sends.push(Send::One(p));
        out
    }
}
