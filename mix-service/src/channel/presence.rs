//! XEP-0403 MIX-PRESENCE: one presence item per online client, distributed as ordinary
//! presence from the encoded JID `ID#channel@mix/resource`, never through pubsub.

use jid::Jid;
use minidom::Element;

use super::{Channel, Ctx, Outcome, Role, Send};
use crate::stanza::NS_STANZA;
use crate::xml::*;

/// Presence children a client may share; everything else stays with the client.
const SHARED: [&str; 3] = ["show", "status", "priority"];

impl Channel {
    fn presence_subscribers(&self) -> Vec<String> {
        let subs = self
            .pubsub
            .node(NODE_PRESENCE)
            .map(|n| n.subscribers())
            .unwrap_or_default();
        self.audience(&subs)
    }

    /// The resource others see for a client: its own, or in a JID-hidden channel its random
    /// stand-in while it is online (XEP-0404 §4.4). `None`: hidden and not online.
    pub(super) fn shown_resource(&self, full: &Jid) -> Option<String> {
        let res = full.resource()?;
        if self.is_hidden() {
            self.aliases.get(&full.to_string()).cloned()
        } else {
            Some(res.as_str().to_owned())
        }
    }

    pub(super) fn presence(&mut self, st: &Element, from: &Jid, ctx: &mut Ctx<'_>) -> Outcome {
        let bare = from.to_bare().to_string();
        let ty = st.attr("type");
        let Some(resource) = from.resource() else {
            // XEP-0405 §6.3: available presence from the bare JID asks for the full state.
            if ty.is_none() && self.participants.contains_key(&bare) {
                let mut out = Outcome::default();
                self.presence_snapshot(&[bare], &mut out);
                return out;
            }
            return Outcome::default();
        };
        if self.pubsub.node(NODE_PRESENCE).is_none() {
            return Outcome::default();
        }
        // XEP-0406 'Open Presence': off (the default), only participants register presence;
        // on, anyone not banned (and allowed, where there is an allowed node) may, under a
        // stable id of its own. Presence is never answered with an error here (subscription
        // handshakes from rosters arrive too, PRES-12).
        let mut out = Outcome::default();
        let (id, nick) = match self.participants.get(&bare) {
            Some(p) => (p.id.clone(), p.nick.clone()),
            None if self.config.open_presence
                && self.role(&bare) >= Role::Allowed
                && !self.is_hidden() =>
            {
                let known = self.ids.contains_key(&bare);
                let id = self.stable_id(&bare, ctx);
                if !known {
                    out.writes.extend(self.participant_row(&bare, false));
                }
                (id, None)
            }
            None => return out,
        };
        let channel = self.jid.to_string();
        // XEP-0404 §4.4: a JID-hidden channel must not leak the real resource.
        let res = if self.is_hidden() {
            let full = from.to_string();
            match self.aliases.get(&full) {
                Some(a) => a.clone(),
                None if ty.is_none() => {
                    let mut a = ctx.ids.stanza_id();
                    a.truncate(16);
                    self.aliases.insert(full, a.clone());
                    a
                }
                None => return Outcome::default(),
            }
        } else {
            resource.as_str().to_owned()
        };
        let item = format!("{id}#{channel}/{res}");
        match ty {
            None => {
                let mut pres = elem("presence", NS_STANZA, &[("from", &item)]);
                for c in st
                    .children()
                    .filter(|c| SHARED.contains(&c.name()) && c.ns() == st.ns())
                {
                    pres.append_child(c.clone());
                }
                let mut mix = Element::bare("mix", NS_PRESENCE);
                if self.shows_jid(&bare) {
                    mix.append_child(text_elem("jid", NS_PRESENCE, &from.to_string()));
                }
                if let Some(n) = &nick {
                    mix.append_child(text_elem("nick", NS_PRESENCE, n));
                }
                pres.append_child(mix);
                self.presence.insert(item, (from.to_string(), pres.clone()));
                out.events.push(super::ChannelEvent::Presence {
                    bare: bare.clone(),
                    full: from.to_string(),
                    presence: Some(pres.clone()),
                });
                let to = self.presence_subscribers();
                if !to.is_empty() {
                    out.sends.push(Send::Fanout { stanza: pres, to });
                }
            }
            Some("unavailable") if self.presence.remove(&item).is_some() => {
                self.aliases.remove(&from.to_string());
                out.events.push(super::ChannelEvent::Presence {
                    bare: bare.clone(),
                    full: from.to_string(),
                    presence: None,
                });
                self.unavailable(&item, &mut out);
            }
            // subscribe, subscribed, probe, unsubscribe...: roster bookkeeping of the user's
            // server (XEP-0405 §5.1); nothing for the channel to do or answer.
            _ => {}
        }
        out
    }

    fn unavailable(&self, item: &str, out: &mut Outcome) {
        let to = self.presence_subscribers();
        if !to.is_empty() {
            out.sends.push(Send::Fanout {
                stanza: elem(
                    "presence",
                    NS_STANZA,
                    &[("from", item), ("type", "unavailable")],
                ),
                to,
            });
        }
    }

    /// Every current presence item, sent to `to` (XEP-0403 §3.3, XEP-0405 §6.3).
    pub(super) fn presence_snapshot(&self, to: &[String], out: &mut Outcome) {
        if to.is_empty() {
            return;
        }
        for (_, pres) in self.presence.values() {
            out.sends.push(Send::Fanout {
                stanza: pres.clone(),
                to: to.to_vec(),
            });
        }
    }

    /// Whether any client of `bare` has a presence item.
    pub(super) fn is_online(&self, bare: &str) -> bool {
        let prefix = format!("{bare}/");
        self.presence
            .values()
            .any(|(full, _)| full.starts_with(&prefix))
    }

    /// XEP-0403 §3.7 (PRES-08): a channel that starts (here: is loaded into memory) has no
    /// presence items; it probes each participant's bare JID, and the answers from the users'
    /// servers rebuild the node. Not to those whose preference is 'Presence' = 'not share'
    /// (XEP-0404 §5).
    pub fn startup_probes(&self) -> Vec<Element> {
        if self.pubsub.node(NODE_PRESENCE).is_none() {
            return Vec::new();
        }
        let channel = self.jid.to_string();
        self.participants
            .values()
            .filter(|p| {
                super::preferences::preference(&p.preferences, super::preferences::PRESENCE)
                    != "not share"
            })
            .map(|p| {
                elem(
                    "presence",
                    NS_STANZA,
                    &[("from", &channel), ("to", &p.jid), ("type", "probe")],
                )
            })
            .collect()
    }

    /// After a change of 'JID Visibility': every online client goes offline under its old
    /// encoded JID and comes back under the new one, with or without its real JID.
    pub(super) fn presence_reannounce(&mut self, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        let items = std::mem::take(&mut self.presence);
        self.aliases.clear();
        for (item, (full, pres)) in items {
            self.unavailable(&item, out);
            let Ok(from) = full.parse::<Jid>() else {
                continue;
            };
            let mut again = filtered(&pres, |c| !c.is("mix", NS_PRESENCE));
            set_attr(&mut again, "from", &full);
            let more = self.presence(&again, &from, ctx);
            out.sends.extend(more.sends);
        }
    }

    /// XEP-0403 §3.5: a leaving participant's clients go offline.
    pub(super) fn presence_remove_all(
        &mut self,
        bare: &str,
        _ctx: &mut Ctx<'_>,
        out: &mut Outcome,
    ) {
        let prefix = format!("{bare}/");
        let gone: Vec<String> = self
            .presence
            .iter()
            .filter(|(_, (full, _))| full.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for item in gone {
            if let Some((full, _)) = self.presence.remove(&item) {
                self.aliases.remove(&full);
                out.events.push(super::ChannelEvent::Presence {
                    bare: bare.to_owned(),
                    full,
                    presence: None,
                });
            }
            self.unavailable(&item, out);
        }
    }
}
