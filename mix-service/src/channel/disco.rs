//! XEP-0369 §6.3–6.5: discovery on a channel, and the info node's form.

use jid::Jid;
use minidom::Element;
use xmpp_parsers::ns::{DISCO_INFO, DISCO_ITEMS};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::{Channel, Outcome, Role, mam};
use crate::stanza::{error, iq_result};
use crate::xml::*;

/// The info node's payload (XEP-0369 §5.3.2), `type='result'`.
pub fn info_form(name: &str, description: &str) -> Element {
    let mut x = elem("x", NS_DATA, &[("type", "result")]);
    let mut ft = elem(
        "field",
        NS_DATA,
        &[("var", "FORM_TYPE"), ("type", "hidden")],
    );
    ft.append_child(text_elem("value", NS_DATA, NS_CORE));
    x.append_child(ft);
    for (var, v) in [("Name", name), ("Description", description)] {
        if !v.is_empty() {
            let mut f = elem("field", NS_DATA, &[("var", var), ("type", "text-single")]);
            f.append_child(text_elem("value", NS_DATA, v));
            x.append_child(f);
        }
    }
    x
}

/// Name, description and contacts of an info form.
pub fn info_fields(form: &Element) -> (String, String, Vec<String>) {
    let mut out = (String::new(), String::new(), Vec::new());
    for f in form.children().filter(|c| c.is("field", NS_DATA)) {
        let values: Vec<String> = f
            .children()
            .filter(|v| v.is("value", NS_DATA))
            .map(|v| v.text())
            .collect();
        match f.attr("var") {
            Some("Name") => out.0 = values.concat(),
            Some("Description") => out.1 = values.concat(),
            Some("Contact") => out.2 = values,
            _ => {}
        }
    }
    out
}

const FEATURES: [&str; 13] = [
    DISCO_INFO,
    NS_CORE,
    NS_PRESENCE,
    NS_ANON,
    NS_MAM,
    "urn:xmpp:mam:2#extended",
    // XEP-0431: the fulltext field of the query form.
    mam::NS_FULLTEXT,
    NS_SID,
    NS_MISC,
    // XEP-0424 §2 / §5: retractions are archived, originals replaced by tombstones.
    NS_RETRACT,
    "urn:xmpp:message-retract:1#tombstone",
    NS_MODERATE,
    xmpp_parsers::ns::PING,
];

impl Channel {
    fn name(&self) -> String {
        self.pubsub
            .node(NODE_INFO)
            .and_then(|n| n.items().last())
            .and_then(|i| parse(&i.payload))
            .map(|f| info_fields(&f).0)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name.clone())
    }

    /// CORE-10: channel info for those who may subscribe (banned users get `forbidden`).
    pub(super) fn disco_info(&self, st: &Element, q: &Element, from: &Jid) -> Outcome {
        let bare = from.to_bare().to_string();
        if self.role(&bare) == Role::Banned {
            return Outcome::error(st, error(ErrorType::Auth, DefinedCondition::Forbidden, ""));
        }
        let mut query = Element::bare("query", DISCO_INFO);
        if let Some(node) = q.attr("node") {
            if node != "mix" {
                return Outcome::error(
                    st,
                    error(
                        ErrorType::Cancel,
                        DefinedCondition::ItemNotFound,
                        "no such node",
                    ),
                );
            }
            set_attr(&mut query, "node", node);
        }
        query.append_child(elem(
            "identity",
            DISCO_INFO,
            &[
                ("category", "conference"),
                ("type", "mix"),
                ("name", &self.name()),
            ],
        ));
        for f in FEATURES {
            query.append_child(elem("feature", DISCO_INFO, &[("var", f)]));
        }
        Outcome::reply(iq_result(st, Some(query)))
    }

    /// CORE-12: the channel's nodes under `node='mix'`, only those the requester may
    /// subscribe to; without the node attribute the query is refused.
    pub(super) fn disco_items(&self, st: &Element, q: &Element, from: &Jid) -> Outcome {
        if q.attr("node") != Some("mix") {
            return Outcome::error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "a MIX channel lists its nodes under node='mix'",
                ),
            );
        }
        let bare = from.to_bare().to_string();
        let mut query = elem("query", DISCO_ITEMS, &[("node", "mix")]);
        let channel = self.jid.to_string();
        for node in self.pubsub.nodes() {
            let (read, _) = self.node_rights(&node.name);
            if self.has(&bare, read) {
                query.append_child(elem(
                    "item",
                    DISCO_ITEMS,
                    &[("jid", &channel), ("node", &node.name)],
                ));
            }
        }
        Outcome::reply(iq_result(st, Some(query)))
    }
}
