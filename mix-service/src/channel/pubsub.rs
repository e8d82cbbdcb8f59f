//! XEP-0060 on the channel JID (REQUIREMENTS §14): items, publish, retract, subscribe, with the
//! MIX rights of PS-10 turned into pubsub affiliations. Service-managed nodes (participants,
//! presence, jidmap, messages) refuse every write through pubsub (CORE-31, PRES-02, ANON-02).

use jid::Jid;
use minidom::Element;
use pubsub_core::{Actor, Affiliation, Selection};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Ctx, MixConfig, Outcome, node_config, present_nodes, pubsub_error};
use crate::request::IqType;
use crate::stanza::{error, iq_result};
use crate::xml::*;

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

fn bad_pubsub(specific: &str, text: &str) -> StanzaError {
    let mut e = bad(text);
    e.other = Some(Element::bare(specific, NS_PUBSUB_ERRORS));
    e
}

impl Channel {
    pub(super) fn pubsub_iq(
        &mut self,
        st: &Element,
        pubsub: &Element,
        ty: IqType,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let mut ops = pubsub.children();
        let (Some(op), None) = (ops.next(), ops.next()) else {
            return Outcome::error(st, bad("one pubsub operation per request"));
        };
        let Some(node) = op.attr("node").filter(|n| !n.is_empty()) else {
            return Outcome::error(st, bad_pubsub("nodeid-required", "node required"));
        };
        let node = node.to_owned();
        let bare = from.to_bare().to_string();
        let aff = self.affiliation(&node, &bare);
        let actor = Actor::entity(&bare, aff);
        match (op.name(), ty) {
            ("items", IqType::Get) => {
                // ADM-07: those who may change info or config get the editable form.
                let editor = aff >= Affiliation::Publisher
                    && matches!(node.as_str(), NODE_INFO | NODE_CONFIG);
                self.items(st, op, &node, actor, editor)
            }
            ("publish", IqType::Set) => {
                let bare = bare.clone();
                self.publish(st, op, &node, &bare, aff, ctx)
            }
            ("retract", IqType::Set) => {
                let Some(id) = op
                    .children()
                    .find(|c| c.name() == "item")
                    .and_then(|i| i.attr("id"))
                else {
                    return Outcome::error(st, bad_pubsub("item-required", "item id required"));
                };
                let notify = matches!(op.attr("notify"), Some("true") | Some("1"));
                let id = id.to_owned();
                match self.pubsub.retract(actor, &node, &id, notify) {
                    Ok(fx) => {
                        let mut out = Outcome::reply(iq_result(st, None));
                        out.writes.extend(self.pubsub_writes(fx.changes));
                        self.notify(fx.notifications, ctx.ids, &mut out);
                        out
                    }
                    Err(e) => Outcome::error(st, pubsub_error(e)),
                }
            }
            ("subscribe" | "unsubscribe", IqType::Set) => {
                // XEP-0060 §6.1.3.1: one may only subscribe oneself.
                let target = op.attr("jid").and_then(|j| j.parse::<Jid>().ok());
                match target {
                    Some(t) if t.to_bare().to_string() == bare => {}
                    _ => {
                        return Outcome::error(
                            st,
                            bad_pubsub("invalid-jid", "the jid must be your own"),
                        );
                    }
                }
                let res = if op.name() == "subscribe" {
                    self.pubsub.subscribe(actor, &node, &bare)
                } else {
                    self.pubsub.unsubscribe(actor, &node, &bare)
                };
                match res {
                    Ok(fx) => {
                        let state = if op.name() == "subscribe" {
                            "subscribed"
                        } else {
                            "none"
                        };
                        let mut ps = Element::bare("pubsub", NS_PUBSUB);
                        ps.append_child(elem(
                            "subscription",
                            NS_PUBSUB,
                            &[("node", &node), ("jid", &bare), ("subscription", state)],
                        ));
                        let mut out = Outcome::reply(iq_result(st, Some(ps)));
                        out.writes.extend(self.pubsub_writes(fx.changes));
                        out
                    }
                    Err(e) => Outcome::error(st, pubsub_error(e)),
                }
            }
            _ => Outcome::error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::FeatureNotImplemented,
                    "pubsub operation not supported on a channel",
                ),
            ),
        }
    }

    fn items(
        &self,
        st: &Element,
        op: &Element,
        node: &str,
        actor: Actor<'_>,
        editor: bool,
    ) -> Outcome {
        let ids: Vec<String> = op
            .children()
            .filter(|c| c.name() == "item")
            .filter_map(|c| c.attr("id").map(str::to_owned))
            .collect();
        let selection = if !ids.is_empty() {
            Selection::Ids(ids)
        } else if let Some(max) = op.attr("max_items") {
            match max.parse::<usize>() {
                Ok(n) => Selection::Latest(n),
                Err(_) => return Outcome::error(st, bad("max_items must be a number")),
            }
        } else {
            Selection::All
        };
        match self.pubsub.items(actor, node, &selection) {
            Ok(items) => {
                let mut list = elem("items", NS_PUBSUB, &[("node", node)]);
                for item in items {
                    let mut i = elem("item", NS_PUBSUB, &[("id", &item.id)]);
                    if let Some(mut p) = parse(&item.payload) {
                        if editor && p.is("x", NS_DATA) {
                            set_attr(&mut p, "type", "form");
                        }
                        i.append_child(p);
                    }
                    list.append_child(i);
                }
                let mut ps = Element::bare("pubsub", NS_PUBSUB);
                ps.append_child(list);
                Outcome::reply(iq_result(st, Some(ps)))
            }
            Err(e) => Outcome::error(st, pubsub_error(e)),
        }
    }

    pub(super) fn publish(
        &mut self,
        st: &Element,
        op: &Element,
        node: &str,
        bare: &str,
        aff: Affiliation,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let mut items = op.children().filter(|c| c.name() == "item");
        let (item, None) = (items.next(), items.next()) else {
            return Outcome::error(st, bad_pubsub("invalid-payload", "one item per publish"));
        };
        let item_id = item.and_then(|i| i.attr("id")).map(str::to_owned);
        let mut payloads = item.into_iter().flat_map(|i| i.children());
        let payload = match (payloads.next(), payloads.next()) {
            (p, None) => p.cloned(),
            _ => {
                return Outcome::error(st, bad_pubsub("invalid-payload", "one payload per item"));
            }
        };
        let actor = Actor::entity(bare, aff);
        let stamp = datetime(ctx.now_us);
        // What is stored, and under which id, depends on the node (XEP-0406 §5).
        let mut new_config = None;
        let (id, stored) = match node {
            NODE_INFO | NODE_CONFIG => {
                let Some(form) = payload.filter(|p| p.is("x", NS_DATA)) else {
                    return Outcome::error(
                        st,
                        bad_pubsub("invalid-payload", "a data form is required"),
                    );
                };
                if aff < Affiliation::Publisher {
                    return Outcome::error(st, pubsub_error(pubsub_core::PubsubError::Forbidden));
                }
                if node == NODE_CONFIG {
                    let mut cfg = self.config.clone();
                    if let Err(text) = cfg.apply(&form) {
                        return Outcome::error(
                            st,
                            error(ErrorType::Modify, DefinedCondition::NotAcceptable, &text),
                        );
                    }
                    cfg.last_change_by = Some(bare.to_owned());
                    if let Some(eol) = &cfg.end_of_life
                        && cfg.end_of_life != self.config.end_of_life
                    {
                        // XEP-0369 §7.3.5: the channel is destroyed then; a time already
                        // past would destroy it on the spot, so it is refused.
                        match parse_datetime(eol) {
                            Some(t) if t > ctx.now_us => {}
                            Some(_) => {
                                return Outcome::error(
                                    st,
                                    error(
                                        ErrorType::Modify,
                                        DefinedCondition::NotAcceptable,
                                        "'End of Life' is in the past",
                                    ),
                                );
                            }
                            None => {
                                return Outcome::error(
                                    st,
                                    error(
                                        ErrorType::Modify,
                                        DefinedCondition::NotAcceptable,
                                        "'End of Life' must be an XEP-0082 dateTime",
                                    ),
                                );
                            }
                        }
                    }
                    let stored = cfg.to_form("result");
                    new_config = Some(cfg);
                    (stamp, to_string(&stored))
                } else {
                    let merged = self.merged_info(&form);
                    (stamp, to_string(&merged))
                }
            }
            NODE_ALLOWED | NODE_BANNED => {
                // XEP-0406 §3.3: items are bare JIDs or domains, no payload.
                let Some(id) = item_id.filter(|i| i.parse::<jid::BareJid>().is_ok()) else {
                    return Outcome::error(
                        st,
                        bad_pubsub(
                            "item-required",
                            "the item id must be a bare JID or a domain",
                        ),
                    );
                };
                (id, String::new())
            }
            _ => {
                let Some(p) = payload else {
                    return Outcome::error(st, bad_pubsub("item-required", "payload required"));
                };
                (item_id.unwrap_or(stamp), to_string(&p))
            }
        };
        let mut gen_id = || ctx.ids.stanza_id();
        let fx = match self
            .pubsub
            .publish(actor, node, Some(&id), stored, &mut gen_id)
        {
            Ok(fx) => fx,
            Err(e) => return Outcome::error(st, pubsub_error(e)),
        };
        let mut ps = Element::bare("pubsub", NS_PUBSUB);
        let mut publish = elem("publish", NS_PUBSUB, &[("node", node)]);
        publish.append_child(elem("item", NS_PUBSUB, &[("id", &id)]));
        ps.append_child(publish);
        let mut out = Outcome::default();
        out.writes.extend(self.pubsub_writes(fx.changes));
        self.notify(fx.notifications, ctx.ids, &mut out);
        if let Some(cfg) = new_config {
            self.reconfigure(cfg, ctx, &mut out);
        }
        if node == NODE_BANNED {
            // XEP-0406 §3.4: banning removes matching participants at once.
            let banned: Vec<String> = self
                .participants
                .keys()
                .filter(|j| *j == &id || j.rsplit_once('@').map(|(_, d)| d) == Some(id.as_str()))
                .cloned()
                .collect();
            for j in banned {
                self.remove_participant(&j, ctx, &mut out);
            }
        }
        out.sends
            .insert(0, super::Send::One(iq_result(st, Some(ps))));
        out
    }

    /// XEP-0406 §5.1: only the submitted info fields change.
    fn merged_info(&self, form: &Element) -> Element {
        let mut name = String::new();
        let mut description = String::new();
        let mut contacts: Vec<String> = Vec::new();
        if let Some(current) = self
            .pubsub
            .node(NODE_INFO)
            .and_then(|n| n.items().last())
            .and_then(|i| parse(&i.payload))
        {
            (name, description, contacts) = super::disco::info_fields(&current);
        }
        for f in form.children().filter(|c| c.is("field", NS_DATA)) {
            let values: Vec<String> = f
                .children()
                .filter(|v| v.is("value", NS_DATA))
                .map(|v| v.text())
                .collect();
            match f.attr("var") {
                Some("Name") => name = values.concat(),
                Some("Description") => description = values.concat(),
                Some("Contact") => contacts = values,
                _ => {}
            }
        }
        let mut x = super::disco::info_form(&name, &description);
        if !contacts.is_empty() {
            let mut c = elem(
                "field",
                NS_DATA,
                &[("var", "Contact"), ("type", "jid-multi")],
            );
            for v in contacts {
                c.append_child(text_elem("value", NS_DATA, &v));
            }
            x.append_child(c);
        }
        x
    }

    /// Apply a new configuration: the node set follows 'Nodes Present' and 'JID Visibility';
    /// 'End of Life' goes to the store, where the expiry sweep finds it.
    fn reconfigure(&mut self, cfg: MixConfig, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        if cfg.end_of_life != self.config.end_of_life {
            out.writes.push(mam_store::Write::EndOfLife {
                channel: self.name.clone(),
                at_us: cfg.end_of_life.as_deref().and_then(parse_datetime),
            });
        }
        let visibility_changed = cfg.jid_visibility != self.config.jid_visibility;
        self.config = cfg;
        let wanted = present_nodes(&self.config);
        let existing: Vec<String> = self.pubsub.nodes().map(|n| n.name.clone()).collect();
        for node in &wanted {
            if !existing.iter().any(|e| e == node)
                && let Ok(fx) = self
                    .pubsub
                    .create_node(Actor::service(), node, node_config(node))
            {
                out.writes.extend(self.pubsub_writes(fx.changes));
            }
        }
        for node in existing {
            if !wanted.contains(&node.as_str())
                && let Ok(fx) = self.pubsub.delete_node(Actor::service(), &node)
            {
                out.writes.extend(self.pubsub_writes(fx.changes));
            }
        }
        if visibility_changed {
            self.visibility_changed(ctx, out);
        }
    }

    /// XEP-0404 §5: participants whose 'JID Visibility' the new mode breaks are removed; the
    /// others' items are rewritten (real JIDs out of, or back into, the participants node, the
    /// jidmap filled) and their clients' presence is re-announced under the new resources.
    fn visibility_changed(&mut self, ctx: &mut Ctx<'_>, out: &mut Outcome) {
        let all: Vec<String> = self.participants.keys().cloned().collect();
        for bare in &all {
            let prefs = self.participants[bare].preferences.clone();
            if self.preference_conflict(&prefs).is_some() {
                self.remove_participant(bare, ctx, out);
            } else {
                self.publish_participant(bare, ctx, out);
            }
        }
        self.presence_reannounce(ctx, out);
    }
}
