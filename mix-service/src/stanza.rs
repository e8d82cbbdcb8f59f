//! Answers to stanzas: results and errors, addressed back to the sender.
//!
//! RFC 6120 §8.3.1: an error reply swaps `from` and `to`, keeps `id`, and carries `type='error'`
//! and one `<error/>`; an error is never answered with an error (§8.3.1, rule 3).

use minidom::Element;
use rxml::xml_ncname;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub use xmpp_parsers::ns::DEFAULT_NS as NS_STANZA;

/// A stanza error with English text.
pub fn error(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    if text.is_empty() {
        StanzaError {
            type_,
            by: None,
            defined_condition: condition,
            texts: Default::default(),
            other: None,
        }
    } else {
        StanzaError::new(type_, condition, "en", text)
    }
}

/// Whether `stanza` may be answered with an error at all.
///
/// RFC 6120 §8.2.3: IQ results and errors are never answered. §8.3.1: an error is never answered
/// with an error. RFC 6121 §8.5.2.1.1: headline messages are not bounced. Presence other than
/// available presence (unavailable, probes, subscriptions) gets no error either.
pub fn deserves_answer(stanza: &Element) -> bool {
    let ty = stanza.attr("type");
    match stanza.name() {
        // An IQ of unknown type is a malformed request, answered with bad-request.
        "iq" => !matches!(ty, Some("result") | Some("error")),
        "message" => !matches!(ty, Some("error") | Some("headline")),
        "presence" => ty.is_none(),
        _ => false,
    }
}

/// The error reply to `stanza`, or None if it gets no answer ([`deserves_answer`]) or has no
/// sender.
///
/// The reply carries no copy of the original payload: RFC 6120 §8.3.1 allows that, and it keeps
/// an oversized or hostile payload from being echoed.
pub fn error_reply(stanza: &Element, err: StanzaError) -> Option<Element> {
    if !deserves_answer(stanza) {
        return None;
    }
    let from = stanza.attr("from")?;
    let mut reply = Element::builder(stanza.name(), NS_STANZA)
        .attr(xml_ncname!("type").to_owned(), "error")
        .attr(xml_ncname!("to").to_owned(), from)
        .build();
    if let Some(to) = stanza.attr("to") {
        set(&mut reply, xml_ncname!("from"), to);
    }
    if let Some(id) = stanza.attr("id") {
        set(&mut reply, xml_ncname!("id"), id);
    }
    reply.append_child(err.into());
    Some(reply)
}

/// The `type='result'` reply to an IQ get/set.
pub fn iq_result(iq: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::builder("iq", NS_STANZA)
        .attr(xml_ncname!("type").to_owned(), "result")
        .build();
    if let Some(from) = iq.attr("from") {
        set(&mut reply, xml_ncname!("to"), from);
    }
    if let Some(to) = iq.attr("to") {
        set(&mut reply, xml_ncname!("from"), to);
    }
    set(
        &mut reply,
        xml_ncname!("id"),
        iq.attr("id").unwrap_or_default(),
    );
    if let Some(p) = payload {
        reply.append_child(p);
    }
    reply
}

fn set(el: &mut Element, name: &rxml::NcNameStr, value: &str) {
    el.set_attr(rxml::Namespace::NONE, name.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn error_reply_swaps_addresses_and_keeps_id() {
        let iq = parse(
            "<iq xmlns='jabber:component:accept' type='get' id='q1' from='a@localhost/r' to='mix.localhost'><foo xmlns='urn:x'/></iq>",
        );
        let r = error_reply(
            &iq,
            error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, ""),
        )
        .expect("reply");
        assert_eq!(r.attr("type"), Some("error"));
        assert_eq!(r.attr("to"), Some("a@localhost/r"));
        assert_eq!(r.attr("from"), Some("mix.localhost"));
        assert_eq!(r.attr("id"), Some("q1"));
        let e = r.get_child("error", NS_STANZA).expect("error child");
        assert_eq!(e.attr("type"), Some("cancel"));
        assert!(e.has_child("service-unavailable", "urn:ietf:params:xml:ns:xmpp-stanzas"));
        assert!(!r.has_child("foo", "urn:x"), "payload is not echoed");
    }

    #[test]
    fn errors_are_never_answered() {
        let e = parse("<message xmlns='jabber:component:accept' type='error' from='a@b' to='c'/>");
        assert!(
            error_reply(
                &e,
                error(ErrorType::Cancel, DefinedCondition::BadRequest, "")
            )
            .is_none()
        );
    }

    #[test]
    fn results_headlines_and_unavailable_presence_are_never_answered() {
        let e = || error(ErrorType::Modify, DefinedCondition::PolicyViolation, "");
        for xml in [
            "<iq xmlns='jabber:component:accept' type='result' id='1' from='a@b/c' to='m'/>",
            "<message xmlns='jabber:component:accept' type='headline' from='a@b/c' to='m'/>",
            "<presence xmlns='jabber:component:accept' type='unavailable' from='a@b/c' to='m'/>",
            "<presence xmlns='jabber:component:accept' type='probe' from='a@b/c' to='m'/>",
        ] {
            assert!(error_reply(&parse(xml), e()).is_none(), "{xml}");
        }
        for xml in [
            "<iq xmlns='jabber:component:accept' type='set' id='1' from='a@b/c' to='m'/>",
            "<message xmlns='jabber:component:accept' from='a@b/c' to='m'/>",
            "<presence xmlns='jabber:component:accept' from='a@b/c' to='m'/>",
        ] {
            assert!(error_reply(&parse(xml), e()).is_some(), "{xml}");
        }
    }

    #[test]
    fn no_sender_no_reply() {
        let m = parse("<message xmlns='jabber:component:accept' to='c'/>");
        assert!(
            error_reply(
                &m,
                error(ErrorType::Cancel, DefinedCondition::BadRequest, "")
            )
            .is_none()
        );
    }
}
