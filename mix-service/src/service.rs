//! Requests to the MIX service JID itself: channel create and destroy (XEP-0369 §7.3) and nick
//! registration (XEP-0407 §5).

use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::request::{IqType, iq_payload};
use crate::stanza::{error, iq_result};
use crate::xml::*;

/// A MIX operation on the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceOp {
    /// `<create channel?/>`; None asks for an ad-hoc channel (§7.3.3).
    Create(Option<String>),
    /// `<destroy channel/>`.
    Destroy(String),
    /// `<register><nick?/></register>`; None asks the service to assign one.
    Register(Option<String>),
}

/// Longest channel name accepted.
pub const MAX_CHANNEL_NAME: usize = 64;

/// Whether `name` can be a channel's localpart: non-empty, short, and free of the characters
/// that make encoded JIDs ambiguous (`#`, XEP-0369 §5.1) or are not allowed in a localpart.
pub fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "#@/\"&'<>:".contains(c))
        && format!("{name}@x").parse::<jid::BareJid>().is_ok()
}

/// Recognise a MIX service operation; None for everything else (disco, ping, ...).
pub fn service_op(iq: &Element) -> Option<Result<ServiceOp, StanzaError>> {
    let (ty, payload) = iq_payload(iq).ok()?;
    let ns = payload.ns();
    let bad = |t: &str| error(ErrorType::Modify, DefinedCondition::BadRequest, t);
    match (ns.as_str(), payload.name(), ty) {
        (NS_CORE | NS_CORE0, "create", IqType::Set) => Some(match payload.attr("channel") {
            None => Ok(ServiceOp::Create(None)),
            Some(c) if valid_channel_name(c) => Ok(ServiceOp::Create(Some(c.to_lowercase()))),
            Some(_) => Err(error(
                ErrorType::Modify,
                DefinedCondition::JidMalformed,
                "not a valid channel name",
            )),
        }),
        (NS_CORE | NS_CORE0, "destroy", IqType::Set) => Some(match payload.attr("channel") {
            Some(c) if !c.is_empty() => Ok(ServiceOp::Destroy(c.to_lowercase())),
            _ => Err(bad("destroy needs a channel")),
        }),
        (NS_MISC, "register", IqType::Set) => {
            let nick = payload
                .get_child("nick", NS_MISC)
                .map(|n| n.text().trim().to_owned())
                .filter(|n| !n.is_empty());
            Some(match nick {
                Some(n) if n.len() > 128 || n.chars().any(char::is_control) => Err(error(
                    ErrorType::Modify,
                    DefinedCondition::NotAcceptable,
                    "nick is too long or has control characters",
                )),
                n => Ok(ServiceOp::Register(n)),
            })
        }
        _ => None,
    }
}

/// §7.3.2: the result names the channel created.
pub fn create_result(iq: &Element, channel: &str) -> Element {
    let ns = iq
        .children()
        .next()
        .map(|p| p.ns())
        .unwrap_or_else(|| NS_CORE.to_owned());
    iq_result(iq, Some(elem("create", &ns, &[("channel", channel)])))
}

/// XEP-0407 §5: the result carries the nick registered.
pub fn register_result(iq: &Element, nick: &str) -> Element {
    let mut r = Element::bare("register", NS_MISC);
    r.append_child(text_elem("nick", NS_MISC, nick));
    iq_result(iq, Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(xml: &str) -> Option<Result<ServiceOp, StanzaError>> {
        let iq: Element = xml.parse().expect("xml");
        service_op(&iq)
    }

    #[test]
    fn recognises_create_destroy_register() {
        let head = "<iq xmlns='jabber:component:accept' type='set' id='1' from='a@x/r' to='mix.x'>";
        assert_eq!(
            op(&format!(
                "{head}<create xmlns='{NS_CORE}' channel='Coven'/></iq>"
            )),
            Some(Ok(ServiceOp::Create(Some("coven".into()))))
        );
        assert_eq!(
            op(&format!("{head}<create xmlns='{NS_CORE}'/></iq>")),
            Some(Ok(ServiceOp::Create(None)))
        );
        assert!(matches!(
            op(&format!(
                "{head}<create xmlns='{NS_CORE}' channel='a#b'/></iq>"
            )),
            Some(Err(_))
        ));
        assert_eq!(
            op(&format!(
                "{head}<destroy xmlns='{NS_CORE}' channel='coven'/></iq>"
            )),
            Some(Ok(ServiceOp::Destroy("coven".into())))
        );
        assert_eq!(
            op(&format!(
                "{head}<register xmlns='{NS_MISC}'><nick>hag</nick></register></iq>"
            )),
            Some(Ok(ServiceOp::Register(Some("hag".into()))))
        );
        assert_eq!(
            op(&format!("{head}<ping xmlns='urn:xmpp:ping'/></iq>")),
            None
        );
    }

    #[test]
    fn channel_names() {
        for ok in ["coven", "a.b-c_d", "ünïcode"] {
            assert!(valid_channel_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a#b", "a@b", "a/b", &"x".repeat(65)] {
            assert!(!valid_channel_name(bad), "{bad}");
        }
    }
}
