//! The room settings that MIX has no word for (REQUIREMENTS MM-06: moderation and voice,
//! passwords, occupant limits, the lock of a new room, who may change the subject, whose
//! presence is broadcast, who may send private messages, members of an open room). They are
//! kept by the channel in a node no pubsub client reaches, so they survive restarts.

use std::collections::{BTreeMap, BTreeSet};

use minidom::Element;
use mix_service::xml::{elem, set_attr, text_elem};

pub const NS_SETTINGS: &str = "urn:xmpp:mixd:muc:0";

/// The roles whose presence every occupant sees by default.
pub const ALL_ROLES: [&str; 3] = ["moderator", "participant", "visitor"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `muc#roomconfig_moderatedroom`: only those with voice speak.
    pub moderated: bool,
    /// `muc#roomconfig_roomsecret`, when `passwordprotectedroom` is on.
    pub password: Option<String>,
    /// `muc#roomconfig_maxusers` (None: no limit).
    pub max_users: Option<usize>,
    /// A room created by entering waits for its owner's configuration (XEP-0045 §10.1.1).
    pub locked: bool,
    /// `muc#roomconfig_changesubject`: occupants (not only moderators) may change it.
    pub change_subject: bool,
    /// `muc#roomconfig_presencebroadcast`.
    pub presence_broadcast: Vec<String>,
    /// `muc#roomconfig_allowpm`: anyone, participants, moderators or none.
    pub allow_pm: String,
    /// Bare JIDs given voice in a moderated room.
    pub voiced: BTreeSet<String>,
    /// Bare JIDs whose voice was revoked.
    pub voiceless: BTreeSet<String>,
    /// Members of an open room (a members-only room keeps them in its allowed node).
    pub members: BTreeSet<String>,
    /// Nicks reserved by registration with the room (XEP-0045 §7.10), by bare JID.
    pub reserved: BTreeMap<String, String>,
    /// Why each outcast was banned (XEP-0045 §9.1: shown in the outcast list).
    pub outcast_reasons: BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            moderated: false,
            password: None,
            max_users: None,
            locked: false,
            change_subject: true,
            presence_broadcast: ALL_ROLES.map(str::to_owned).to_vec(),
            allow_pm: "anyone".into(),
            voiced: BTreeSet::new(),
            voiceless: BTreeSet::new(),
            members: BTreeSet::new(),
            reserved: BTreeMap::new(),
            outcast_reasons: BTreeMap::new(),
        }
    }
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

impl Settings {
    pub fn from_element(e: Option<&Element>) -> Settings {
        let mut s = Settings::default();
        let Some(e) = e.filter(|e| e.is("muc", NS_SETTINGS)) else {
            return s;
        };
        let on = |name: &str, default: bool| {
            e.attr(name)
                .map(|v| v == "1" || v == "true")
                .unwrap_or(default)
        };
        s.moderated = on("moderated", false);
        s.locked = on("locked", false);
        s.change_subject = on("changesubject", true);
        s.max_users = e.attr("maxusers").and_then(|v| v.parse().ok());
        if let Some(pb) = e.attr("presencebroadcast") {
            s.presence_broadcast = pb.split_whitespace().map(str::to_owned).collect();
        }
        if let Some(pm) = e.attr("allowpm") {
            s.allow_pm = pm.to_owned();
        }
        for c in e.children() {
            let text = c.text();
            match c.name() {
                "password" => s.password = Some(text),
                "voiced" => {
                    s.voiced.insert(text);
                }
                "voiceless" => {
                    s.voiceless.insert(text);
                }
                "member" => {
                    s.members.insert(text);
                }
                "reserved" => {
                    if let Some(j) = c.attr("jid") {
                        s.reserved.insert(j.to_owned(), text);
                    }
                }
                "outcast" => {
                    if let Some(j) = c.attr("jid") {
                        s.outcast_reasons.insert(j.to_owned(), text);
                    }
                }
                _ => {}
            }
        }
        s
    }

    pub fn to_element(&self) -> Element {
        let mut e = elem(
            "muc",
            NS_SETTINGS,
            &[
                ("moderated", flag(self.moderated)),
                ("locked", flag(self.locked)),
                ("changesubject", flag(self.change_subject)),
                ("allowpm", &self.allow_pm),
                ("presencebroadcast", &self.presence_broadcast.join(" ")),
            ],
        );
        if let Some(m) = self.max_users {
            set_attr(&mut e, "maxusers", &m.to_string());
        }
        if let Some(p) = &self.password {
            e.append_child(text_elem("password", NS_SETTINGS, p));
        }
        for (name, map) in [
            ("reserved", &self.reserved),
            ("outcast", &self.outcast_reasons),
        ] {
            for (jid, text) in map {
                let mut r = text_elem(name, NS_SETTINGS, text);
                set_attr(&mut r, "jid", jid);
                e.append_child(r);
            }
        }
        for (name, set) in [
            ("voiced", &self.voiced),
            ("voiceless", &self.voiceless),
            ("member", &self.members),
        ] {
            for j in set {
                e.append_child(text_elem(name, NS_SETTINGS, j));
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_round_trip() {
        let mut s = Settings {
            moderated: true,
            password: Some("cauldron".into()),
            max_users: Some(30),
            locked: true,
            change_subject: false,
            presence_broadcast: vec!["moderator".into()],
            allow_pm: "moderators".into(),
            ..Settings::default()
        };
        s.voiced.insert("a@x".into());
        s.voiceless.insert("b@x".into());
        s.members.insert("c@x".into());
        s.reserved.insert("d@x".into(), "dee".into());
        s.outcast_reasons.insert("e@x".into(), "spam".into());
        let e = s.to_element();
        assert_eq!(Settings::from_element(Some(&e)), s);
        assert_eq!(Settings::from_element(None), Settings::default());
    }
}
