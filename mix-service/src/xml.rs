//! Small element-building helpers over minidom (whose attribute API wants validated names).

use minidom::Element;
use rxml::{Namespace, NcName};

pub const NS_CORE: &str = "urn:xmpp:mix:core:1";
pub const NS_CORE0: &str = "urn:xmpp:mix:core:0";
pub const NS_PRESENCE: &str = "urn:xmpp:mix:presence:0";
pub const NS_ANON: &str = "urn:xmpp:mix:anon:0";
pub const NS_ADMIN: &str = "urn:xmpp:mix:admin:0";
pub const NS_MISC: &str = "urn:xmpp:mix:misc:0";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const NS_DATA: &str = "jabber:x:data";
pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const NS_CLIENT: &str = "jabber:client";
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";
/// The 2019-2022 forms of XEP-0424/0425 (v0.2/0.3), still sent by deployed clients.
pub const NS_FASTEN: &str = "urn:xmpp:fasten:0";
pub const NS_RETRACT0: &str = "urn:xmpp:message-retract:0";
pub const NS_MODERATE0: &str = "urn:xmpp:message-moderate:0";
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// An attribute of archived messages: the id their sender gave (kept for the MUC face).
pub const CLIENT_ID_ATTR: &str = "mixd-client-id";

pub const NODE_MESSAGES: &str = "urn:xmpp:mix:nodes:messages";
pub const NODE_PARTICIPANTS: &str = "urn:xmpp:mix:nodes:participants";
pub const NODE_PRESENCE: &str = "urn:xmpp:mix:nodes:presence";
pub const NODE_INFO: &str = "urn:xmpp:mix:nodes:info";
pub const NODE_CONFIG: &str = "urn:xmpp:mix:nodes:config";
pub const NODE_ALLOWED: &str = "urn:xmpp:mix:nodes:allowed";
pub const NODE_BANNED: &str = "urn:xmpp:mix:nodes:banned";
pub const NODE_JIDMAP: &str = "urn:xmpp:mix:nodes:jidmap";
/// The early draft's subject node (seed 002): the subject both faces share.
pub const NODE_SUBJECT: &str = "urn:xmpp:mix:nodes:subject";
/// XEP-0407 §7 / XEP-0084 avatar nodes.
pub const NODE_AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const NODE_AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";

/// Set (or replace) an attribute without a namespace. `name` is always one of our constants;
/// an invalid one is skipped rather than panicking.
pub fn set_attr(el: &mut Element, name: &str, value: &str) {
    if let Ok(n) = NcName::try_from(name) {
        el.attrs_mut().insert(Namespace::NONE, n, value.to_owned());
    }
}

pub fn remove_attr(el: &mut Element, name: &str) {
    el.attrs_mut().remove(&Namespace::NONE, name);
}

/// `<name xmlns=ns a=v ...>`.
pub fn elem(name: &str, ns: &str, attrs: &[(&str, &str)]) -> Element {
    let mut e = Element::bare(name, ns);
    for (k, v) in attrs {
        set_attr(&mut e, k, v);
    }
    e
}

/// `<name xmlns=ns>text</name>`.
pub fn text_elem(name: &str, ns: &str, text: &str) -> Element {
    let mut e = Element::bare(name, ns);
    e.append_text(text);
    e
}

/// Copy `el` with every element in namespace `from` moved to `to` (the component stream's
/// `jabber:component:accept` versus `jabber:client` for stanzas embedded in others).
pub fn renamespace(el: &Element, from: &str, to: &str) -> Element {
    let ns = if el.ns() == from {
        to.to_owned()
    } else {
        el.ns()
    };
    let mut out = Element::bare(el.name(), ns);
    for ((ans, name), v) in el.attrs().iter() {
        out.attrs_mut().insert(ans.clone(), name.clone(), v.clone());
    }
    for node in el.nodes() {
        match node {
            minidom::Node::Element(c) => {
                out.append_child(renamespace(c, from, to));
            }
            minidom::Node::Text(t) => out.append_text(t.clone()),
        }
    }
    out
}

/// Set an attribute in a namespace (`wmi:ttl` in seed 000's invitations).
pub fn set_attr_ns(el: &mut Element, ns: &str, name: &str, value: &str) {
    if let Ok(n) = NcName::try_from(name) {
        el.attrs_mut()
            .insert(Namespace::from(ns.to_owned()), n, value.to_owned());
    }
}

/// An attribute by local name, in whatever namespace.
pub fn attr_any_ns<'a>(el: &'a Element, name: &str) -> Option<&'a str> {
    el.attrs()
        .iter()
        .find(|((_, n), _)| n.as_str() == name)
        .map(|(_, v)| v.as_str())
}

/// Copy `el` with its attributes and only the child elements `keep` accepts.
pub fn filtered(el: &Element, keep: impl Fn(&Element) -> bool) -> Element {
    let mut out = Element::bare(el.name(), el.ns());
    for ((ans, name), v) in el.attrs().iter() {
        out.attrs_mut().insert(ans.clone(), name.clone(), v.clone());
    }
    for c in el.children().filter(|c| keep(c)) {
        out.append_child(c.clone());
    }
    out
}

/// Parse a stored payload; None for anything unreadable (never panics on stored data).
pub fn parse(xml: &str) -> Option<Element> {
    xml.parse().ok()
}

/// Serialise an element to a string (for storage).
pub fn to_string(el: &Element) -> String {
    String::from(el)
}

/// RFC 3339 UTC time with microseconds, from Unix microseconds.
pub fn datetime(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parse an XEP-0082 dateTime into Unix microseconds.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let dt = chrono_like(s)?;
    Some(dt)
}

fn chrono_like(s: &str) -> Option<i64> {
    // YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest = &frac[digits.len()..];
        let mut padded = digits.clone();
        padded.truncate(6);
        while padded.len() < 6 {
            padded.push('0');
        }
        micros = padded.parse().ok()?;
    }
    let offset = match rest {
        "Z" => 0,
        _ if rest.len() == 6 => {
            let sign = match &rest[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
                + rest.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset) * 1_000_000 + micros)
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip() {
        let t = 1_700_000_000_123_456;
        let s = datetime(t);
        assert_eq!(s, "2023-11-14T22:13:20.123456Z");
        assert_eq!(parse_datetime(&s), Some(t));
        assert_eq!(
            parse_datetime("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(parse_datetime("2023-13-14T23:13:20Z"), None);
    }

    #[test]
    fn renamespace_moves_only_the_stream_namespace() {
        let m: Element = "<message xmlns='jabber:component:accept' id='1'><body>hi</body><x xmlns='urn:x'/></message>"
            .parse()
            .expect("xml");
        let c = renamespace(&m, "jabber:component:accept", NS_CLIENT);
        assert_eq!(c.ns(), NS_CLIENT);
        assert!(c.has_child("body", NS_CLIENT));
        assert!(c.has_child("x", "urn:x"));
        assert_eq!(c.attr("id"), Some("1"));
    }
}
