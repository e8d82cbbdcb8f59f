//! XEP-0404 §5: a participant's preferences, given with the join (a form in `<join/>`) or with
//! `<user-preference xmlns='urn:xmpp:mix:anon:0'/>` get/set, and what the channel does with
//! them: JID visibility (a participant whose preference the channel's mode breaks is refused,
//! or removed when the mode changes), private messages and vCard relay (allow/block), presence.

use std::collections::BTreeMap;

use jid::Jid;
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Ctx, JidVisibility, Outcome};
use crate::request::IqType;
use crate::stanza::{error, iq_result};
use crate::xml::*;

pub const JID_VISIBILITY: &str = "JID Visibility";
pub const PRIVATE_MESSAGES: &str = "Private Messages";
pub const VCARD: &str = "vCard";
pub const PRESENCE: &str = "Presence";

/// Every supported preference: (field, label, values, default). §5 table.
const PREFERENCES: [(&str, &str, &[&str], &str); 4] = [
    (
        JID_VISIBILITY,
        "Preference for JID Visibility",
        &["default", "never", "always", "prefer not"],
        "default",
    ),
    (
        PRIVATE_MESSAGES,
        "Private messages from other participants",
        &["allow", "block"],
        "allow",
    ),
    (
        VCARD,
        "vCard retrieval through the channel",
        &["allow", "block"],
        "block",
    ),
    (
        PRESENCE,
        "Share presence with the channel",
        &["share", "not share"],
        "share",
    ),
];

/// The value of `field` for these preferences (the default when unset).
pub fn preference<'a>(prefs: &'a BTreeMap<String, String>, field: &str) -> &'a str {
    prefs.get(field).map(String::as_str).unwrap_or_else(|| {
        PREFERENCES
            .iter()
            .find(|p| p.0 == field)
            .map(|p| p.3)
            .unwrap_or("")
    })
}

fn not_acceptable(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::NotAcceptable, text)
}

/// The submitted preferences merged over `current`. Unknown fields or values are refused
/// rather than silently dropped: the result must tell the truth about what is in force.
pub fn merge(
    current: &BTreeMap<String, String>,
    form: &Element,
) -> Result<BTreeMap<String, String>, StanzaError> {
    let mut next = current.clone();
    for f in form.children().filter(|c| c.is("field", NS_DATA)) {
        let Some(var) = f.attr("var") else { continue };
        if var == "FORM_TYPE" {
            continue;
        }
        let Some(spec) = PREFERENCES.iter().find(|p| p.0 == var) else {
            return Err(not_acceptable(&format!("unknown preference '{var}'")));
        };
        let value = f
            .children()
            .find(|v| v.is("value", NS_DATA))
            .map(|v| v.text())
            .unwrap_or_default();
        // The §5 example's template offers 'Never'; values compare without case.
        let Some(v) = spec.2.iter().find(|v| v.eq_ignore_ascii_case(value.trim())) else {
            return Err(not_acceptable(&format!(
                "'{value}' is not a value of '{var}'"
            )));
        };
        if *v == spec.3 {
            next.remove(var);
        } else {
            next.insert(var.to_owned(), (*v).to_owned());
        }
    }
    Ok(next)
}

/// The form listing every preference with its value (`result`) or as a template (`form`).
pub fn form(prefs: &BTreeMap<String, String>, form_type: &str) -> Element {
    let mut x = elem("x", NS_DATA, &[("type", form_type)]);
    let mut ft = elem(
        "field",
        NS_DATA,
        &[("var", "FORM_TYPE"), ("type", "hidden")],
    );
    ft.append_child(text_elem("value", NS_DATA, NS_ANON));
    x.append_child(ft);
    for (var, label, values, _) in PREFERENCES {
        let mut f = if form_type == "form" {
            elem(
                "field",
                NS_DATA,
                &[("var", var), ("type", "list-single"), ("label", label)],
            )
        } else {
            elem("field", NS_DATA, &[("var", var)])
        };
        f.append_child(text_elem("value", NS_DATA, preference(prefs, var)));
        if form_type == "form" {
            for v in values {
                let mut o = elem("option", NS_DATA, &[("label", v)]);
                o.append_child(text_elem("value", NS_DATA, v));
                f.append_child(o);
            }
        }
        x.append_child(f);
    }
    x
}

/// The submitted preference form of a join, if it carries one.
pub fn in_join(join: &Element) -> Option<&Element> {
    join.children().find(|c| {
        c.is("x", NS_DATA)
            && c.children().any(|f| {
                f.attr("var") == Some("FORM_TYPE")
                    && f.children().any(|v| v.text().trim() == NS_ANON)
            })
    })
}

impl Channel {
    /// Why these preferences cannot hold in this channel as configured, if they cannot.
    pub(super) fn preference_conflict(&self, prefs: &BTreeMap<String, String>) -> Option<String> {
        let vis = preference(prefs, JID_VISIBILITY);
        match self.config.jid_visibility {
            JidVisibility::Visible if vis == "never" => {
                Some("this channel shows JIDs; 'JID Visibility' = 'never' cannot hold".into())
            }
            JidVisibility::Hidden if vis == "always" => {
                Some("this channel hides JIDs; 'JID Visibility' = 'always' cannot hold".into())
            }
            _ if self.config.participants_must_provide_presence
                && preference(prefs, PRESENCE) == "not share" =>
            {
                // §5: where presence is mandatory the preference MUST be 'share'.
                Some("this channel requires presence; 'Presence' must be 'share'".into())
            }
            _ => None,
        }
    }

    pub(super) fn user_preference(
        &mut self,
        st: &Element,
        payload: &Element,
        ty: IqType,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let bare = from.to_bare().to_string();
        let Some(p) = self.participants.get(&bare) else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "you are not a participant of this channel",
                ),
            );
        };
        let current = p.preferences.clone();
        if ty == IqType::Get {
            let mut r = Element::bare("user-preference", NS_ANON);
            r.append_child(form(&current, "form"));
            return Outcome::reply(iq_result(st, Some(r)));
        }
        let Some(submitted) = payload.children().find(|c| c.is("x", NS_DATA)) else {
            return Outcome::error(
                st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "<user-preference/> set needs a form",
                ),
            );
        };
        let next = match merge(&current, submitted) {
            Ok(n) => n,
            Err(e) => return Outcome::error(st, e),
        };
        if let Some(why) = self.preference_conflict(&next) {
            return Outcome::error(st, not_acceptable(&why));
        }
        let mut r = Element::bare("user-preference", NS_ANON);
        r.append_child(form(&next, "result"));
        let mut out = Outcome::reply(iq_result(st, Some(r)));
        let shown = self.shows_jid(&bare);
        if let Some(p) = self.participants.get_mut(&bare) {
            p.preferences = next;
        }
        out.writes.extend(self.participant_row(&bare, true));
        // JID Maybe Visible: a changed preference changes what the participants node shows.
        if self.shows_jid(&bare) != shown {
            self.publish_participant(&bare, ctx, &mut out);
        }
        out
    }
}
