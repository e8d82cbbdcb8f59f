//! XEP-0406 §3.6: the channel configuration (FORM_TYPE `urn:xmpp:mix:admin:0`), the rights it
//! grants, and its form (all options, defaults included, ADM-04/05).

use minidom::Element;

use crate::xml::{NS_ADMIN, NS_DATA, elem, text_elem};

/// Who holds a right (the list-single values of XEP-0406 §3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    Anyone,
    Allowed,
    Participants,
    Admins,
    Owners,
    Nobody,
}

impl Rights {
    fn parse(s: &str) -> Option<Rights> {
        Some(match s {
            "anyone" => Rights::Anyone,
            "allowed" => Rights::Allowed,
            "participants" => Rights::Participants,
            "admins" => Rights::Admins,
            "owners" => Rights::Owners,
            "nobody" => Rights::Nobody,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rights::Anyone => "anyone",
            Rights::Allowed => "allowed",
            Rights::Participants => "participants",
            Rights::Admins => "admins",
            Rights::Owners => "owners",
            Rights::Nobody => "nobody",
        }
    }
}

/// XEP-0404 §4: how visible participants' real JIDs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidVisibility {
    Visible,
    /// "JID Maybe Visible": shown only for participants whose preference is 'always'.
    Maybe,
    Hidden,
}

/// The configuration a channel acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixConfig {
    pub last_change_by: Option<String>,
    pub owners: Vec<String>,
    pub admins: Vec<String>,
    pub end_of_life: Option<String>,
    /// 'Nodes Present' values: participants, presence, information, allowed, banned,
    /// jidmap-visible, avatar.
    pub nodes_present: Vec<String>,
    pub messages_subscription: Rights,
    pub presence_subscription: Rights,
    pub participants_subscription: Rights,
    pub information_subscription: Rights,
    pub allowed_subscription: Rights,
    pub banned_subscription: Rights,
    pub configuration_access: Rights,
    pub information_update: Rights,
    pub avatar_update: Rights,
    pub open_presence: bool,
    pub participants_must_provide_presence: bool,
    pub user_message_retraction: bool,
    pub administrator_message_retraction: Rights,
    pub invitation_by_participant: bool,
    pub private_messages: bool,
    pub mandatory_nicks: bool,
    pub jid_visibility: JidVisibility,
}

impl MixConfig {
    /// A new channel's configuration. XEP-0406 lists 'allowed' among the default nodes; an
    /// empty allowed node would shut everyone out of a fresh channel, so mixd creates it only
    /// when the owner lists it (an open channel by default, as every MIX and MUC service does).
    pub fn new(owner: Option<&str>) -> MixConfig {
        MixConfig {
            last_change_by: owner.map(str::to_owned),
            owners: owner.map(|o| vec![o.to_owned()]).unwrap_or_default(),
            admins: Vec::new(),
            end_of_life: None,
            nodes_present: [
                "participants",
                "presence",
                "information",
                "banned",
                "jidmap-visible",
                // XEP-0406 §3.6 lists the avatar nodes among the defaults.
                "avatar",
            ]
            .map(str::to_owned)
            .to_vec(),
            messages_subscription: Rights::Participants,
            presence_subscription: Rights::Participants,
            participants_subscription: Rights::Participants,
            information_subscription: Rights::Participants,
            allowed_subscription: Rights::Admins,
            banned_subscription: Rights::Admins,
            configuration_access: Rights::Owners,
            information_update: Rights::Admins,
            avatar_update: Rights::Admins,
            open_presence: false,
            participants_must_provide_presence: false,
            user_message_retraction: false,
            administrator_message_retraction: Rights::Owners,
            invitation_by_participant: false,
            private_messages: true,
            mandatory_nicks: true,
            jid_visibility: JidVisibility::Visible,
        }
    }

    pub fn has_node(&self, present: &str) -> bool {
        self.nodes_present.iter().any(|n| n == present)
    }

    /// The form as stored in the config node (`type='result'`) or offered for editing
    /// (`type='form'`).
    pub fn to_form(&self, form_type: &str) -> Element {
        let mut x = elem("x", NS_DATA, &[("type", form_type)]);
        x.append_child(field("FORM_TYPE", "hidden", &[NS_ADMIN]));
        x.append_child(field(
            "Last Change Made By",
            "jid-single",
            &opt(&self.last_change_by),
        ));
        x.append_child(field("Owner", "jid-multi", &strs(&self.owners)));
        x.append_child(field("Administrator", "jid-multi", &strs(&self.admins)));
        x.append_child(field("End of Life", "text-single", &opt(&self.end_of_life)));
        x.append_child(field(
            "Nodes Present",
            "list-multi",
            &strs(&self.nodes_present),
        ));
        for (name, r) in [
            ("Messages Node Subscription", self.messages_subscription),
            ("Presence Node Subscription", self.presence_subscription),
            (
                "Participants Node Subscription",
                self.participants_subscription,
            ),
            (
                "Information Node Subscription",
                self.information_subscription,
            ),
            ("Allowed Node Subscription", self.allowed_subscription),
            ("Banned Node Subscription", self.banned_subscription),
            ("Configuration Node Access", self.configuration_access),
            ("Information Node Update Rights", self.information_update),
            ("Avatar Nodes Update Rights", self.avatar_update),
        ] {
            x.append_child(field(name, "list-single", &[r.as_str()]));
        }
        for (name, b) in [
            ("Open Presence", self.open_presence),
            (
                "Participants Must Provide Presence",
                self.participants_must_provide_presence,
            ),
            ("User Message Retraction", self.user_message_retraction),
        ] {
            x.append_child(field(name, "boolean", &[bool_str(b)]));
        }
        x.append_child(field(
            "Administrator Message Retraction Rights",
            "list-single",
            &[self.administrator_message_retraction.as_str()],
        ));
        for (name, b) in [
            (
                "Participation Addition by Invitation from Participant",
                self.invitation_by_participant,
            ),
            ("Private Messages", self.private_messages),
            ("Mandatory Nicks", self.mandatory_nicks),
        ] {
            x.append_child(field(name, "boolean", &[bool_str(b)]));
        }
        let vis = match self.jid_visibility {
            JidVisibility::Visible => "jid-mandatory-visible",
            JidVisibility::Maybe => "jid-optionally-visible",
            JidVisibility::Hidden => "jid-hidden",
        };
        x.append_child(field("JID Visibility", "list-single", &[vis]));
        x
    }

    /// Apply a submitted form: only the fields present change (XEP-0406 §5.2). Errors name the
    /// field that cannot be used.
    pub fn apply(&mut self, form: &Element) -> Result<(), String> {
        let mut next = self.clone();
        for f in form.children().filter(|c| c.is("field", NS_DATA)) {
            let Some(var) = f.attr("var") else { continue };
            let values: Vec<String> = f
                .children()
                .filter(|c| c.is("value", NS_DATA))
                .map(|v| v.text().trim().to_owned())
                .collect();
            let one = values.first().map(String::as_str).unwrap_or("");
            let rights = || Rights::parse(one).ok_or_else(|| format!("bad value for '{var}'"));
            let boolean = || match one {
                "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(format!("bad boolean for '{var}'")),
            };
            match var {
                "FORM_TYPE" | "Last Change Made By" => {}
                "Owner" => next.owners = bare_jids(&values, var)?,
                "Administrator" => next.admins = bare_jids(&values, var)?,
                "End of Life" => {
                    next.end_of_life = (!one.is_empty()).then(|| one.to_owned());
                }
                "Nodes Present" => next.nodes_present = values,
                "Messages Node Subscription" => next.messages_subscription = rights()?,
                "Presence Node Subscription" => next.presence_subscription = rights()?,
                "Participants Node Subscription" => next.participants_subscription = rights()?,
                "Information Node Subscription" => next.information_subscription = rights()?,
                "Allowed Node Subscription" => next.allowed_subscription = rights()?,
                "Banned Node Subscription" => next.banned_subscription = rights()?,
                "Configuration Node Access" => next.configuration_access = rights()?,
                "Information Node Update Rights" => next.information_update = rights()?,
                "Avatar Nodes Update Rights" => next.avatar_update = rights()?,
                "Open Presence" => next.open_presence = boolean()?,
                "Participants Must Provide Presence" => {
                    next.participants_must_provide_presence = boolean()?
                }
                "User Message Retraction" | "Allow User Message Retraction" => {
                    next.user_message_retraction = boolean()?
                }
                "Administrator Message Retraction Rights" => {
                    next.administrator_message_retraction = rights()?
                }
                "Participation Addition by Invitation from Participant" => {
                    next.invitation_by_participant = boolean()?
                }
                "Private Messages" => next.private_messages = boolean()?,
                "No Private Messages" => next.private_messages = !boolean()?,
                "Mandatory Nicks" => next.mandatory_nicks = boolean()?,
                "JID Visibility" => {
                    next.jid_visibility = match one.to_ascii_lowercase().as_str() {
                        "jid-hidden" | "hidden" => JidVisibility::Hidden,
                        "jid-optionally-visible" | "maybe" => JidVisibility::Maybe,
                        "jid-mandatory-visible" | "visible" => JidVisibility::Visible,
                        _ => return Err(format!("bad value for '{var}'")),
                    }
                }
                _ => return Err(format!("unknown field '{var}'")),
            }
        }
        // XEP-0406 §3.1: there must always be an owner.
        if next.owners.is_empty() && !self.owners.is_empty() {
            return Err("a channel must keep at least one owner".into());
        }
        *self = next;
        Ok(())
    }

    /// Read a stored config form back.
    pub fn from_form(form: &Element) -> MixConfig {
        let mut c = MixConfig::new(None);
        // Stored forms were produced by `to_form`; a field we no longer know is skipped.
        let _ = c.apply(form);
        c.last_change_by = form
            .children()
            .find(|f| f.attr("var") == Some("Last Change Made By"))
            .and_then(|f| f.children().next().map(|v| v.text()))
            .filter(|s| !s.is_empty());
        c
    }
}

fn bare_jids(values: &[String], var: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        match v.parse::<jid::BareJid>() {
            Ok(j) => out.push(j.to_string()),
            Err(_) => return Err(format!("'{v}' in '{var}' is not a bare JID")),
        }
    }
    Ok(out)
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

fn field(var: &str, type_: &str, values: &[&str]) -> Element {
    let mut f = elem("field", NS_DATA, &[("var", var), ("type", type_)]);
    for v in values {
        f.append_child(text_elem("value", NS_DATA, v));
    }
    f
}

fn opt(o: &Option<String>) -> Vec<&str> {
    o.iter().map(String::as_str).collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_round_trips_and_partial_updates_keep_the_rest() {
        let mut c = MixConfig::new(Some("owner@x"));
        c.admins.push("admin@x".into());
        let back = MixConfig::from_form(&c.to_form("result"));
        assert_eq!(back, c);
        let submit: Element = format!(
            "<x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_ADMIN}</value></field>\
             <field var='Mandatory Nicks'><value>0</value></field></x>"
        )
        .parse()
        .expect("xml");
        c.apply(&submit).expect("apply");
        assert!(!c.mandatory_nicks);
        assert_eq!(c.admins, ["admin@x"], "fields not submitted stay");
    }

    #[test]
    fn the_last_owner_stays_and_bad_values_are_refused() {
        let mut c = MixConfig::new(Some("owner@x"));
        let form = |f: &str| -> Element {
            format!("<x xmlns='{NS_DATA}' type='submit'>{f}</x>")
                .parse()
                .expect("xml")
        };
        assert!(c.apply(&form("<field var='Owner'/>")).is_err());
        assert!(
            c.apply(&form(
                "<field var='Messages Node Subscription'><value>everyone</value></field>"
            ))
            .is_err()
        );
        assert!(
            c.apply(&form(
                "<field var='Owner'><value>not a jid@@</value></field>"
            ))
            .is_err()
        );
        assert_eq!(
            c,
            MixConfig::new(Some("owner@x")),
            "a refused form changes nothing"
        );
    }
}
