//! What a stanza addressed to a service domain asks for, and the answer it gets.
//!
//! RFC 6120 §8.2.3: an IQ get or set holds exactly one payload, and is always answered. §8.4:
//! a payload namespace the entity does not understand gets `service-unavailable`.

use minidom::Element;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::ns;
use xmpp_parsers::rsm::SetQuery;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::disco;
use crate::stanza::{error, error_reply, iq_result};

/// An IQ request's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
}

/// The single payload of an IQ get/set, or the `bad-request` it deserves.
pub fn iq_payload(iq: &Element) -> Result<(IqType, &Element), StanzaError> {
    let ty = match iq.attr("type") {
        Some("get") => IqType::Get,
        Some("set") => IqType::Set,
        _ => {
            return Err(error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "IQ type must be get, set, result or error",
            ));
        }
    };
    if iq.attr("id").is_none() {
        return Err(error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "IQ without id",
        ));
    }
    let mut children = iq.children();
    match (children.next(), children.next()) {
        (Some(p), None) => Ok((ty, p)),
        _ => Err(error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "an IQ get or set holds exactly one payload (RFC 6120 §8.2.3)",
        )),
    }
}

/// What the shell must do to answer an IQ to a service domain.
#[derive(Debug)]
pub enum ServiceAnswer {
    /// Send this now.
    Reply(Element),
    /// Read this page of public channels, then call [`disco::items_reply`].
    ListChannels(mam_store::PageRequest),
}

/// Answer an IQ get/set addressed to a service domain itself; `info` is that domain's disco#info.
///
/// Returns None for IQs that get no answer (results and errors).
pub fn service_iq(iq: &Element, info: impl FnOnce() -> DiscoInfoResult) -> Option<ServiceAnswer> {
    if matches!(iq.attr("type"), Some("result") | Some("error")) {
        return None;
    }
    let fail = |e| error_reply(iq, e).map(ServiceAnswer::Reply);
    let (ty, payload) = match iq_payload(iq) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match (payload.ns().as_str(), payload.name(), ty) {
        (ns::DISCO_INFO, "query", IqType::Get) => match payload.attr("node") {
            // XEP-0030 §3.1: no node-level info is served on the service entity.
            Some(_) => fail(error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such node",
            )),
            None => Some(ServiceAnswer::Reply(iq_result(iq, Some(info().into())))),
        },
        (ns::DISCO_ITEMS, "query", IqType::Get) => {
            if payload.attr("node").is_some() {
                return fail(error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                ));
            }
            let rsm = match payload.get_child("set", ns::RSM) {
                None => None,
                Some(set) => match SetQuery::try_from(set.clone()) {
                    Ok(q) => Some(q),
                    Err(_) => {
                        return fail(error(
                            ErrorType::Modify,
                            DefinedCondition::BadRequest,
                            "malformed result set (XEP-0059)",
                        ));
                    }
                },
            };
            match disco::page_request(rsm.as_ref()) {
                Ok(req) => Some(ServiceAnswer::ListChannels(req)),
                Err(e) => fail(e),
            }
        }
        // XEP-0199 §4.2: a service answers a ping with an empty result.
        (ns::PING, "ping", IqType::Get) => Some(ServiceAnswer::Reply(iq_result(iq, None))),
        (ns::DISCO_INFO | ns::DISCO_ITEMS | ns::PING, _, _) => fail(error(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            "only get is supported for this payload",
        )),
        _ => fail(error(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Domains;

    fn domains() -> Domains {
        Domains {
            mix: "mix.localhost".parse().expect("jid"),
            muc: "muc.localhost".parse().expect("jid"),
        }
    }

    fn ask(xml: &str) -> Option<ServiceAnswer> {
        let iq: Element = xml.parse().expect("xml");
        service_iq(&iq, || disco::mix_service_info(&domains()))
    }

    fn condition(a: Option<ServiceAnswer>) -> String {
        let Some(ServiceAnswer::Reply(r)) = a else {
            panic!("expected a reply, got {a:?}")
        };
        assert_eq!(r.attr("type"), Some("error"), "{r:?}");
        let e = r
            .get_child("error", crate::stanza::NS_STANZA)
            .expect("error");
        e.children()
            .find(|c| c.name() != "text")
            .map(|c| format!("{}/{}", e.attr("type").unwrap_or_default(), c.name()))
            .unwrap_or_default()
    }

    const H: &str =
        "xmlns='jabber:component:accept' from='u@localhost/r' to='mix.localhost' id='1'";

    #[test]
    fn unknown_namespace_is_service_unavailable() {
        let a = ask(&format!(
            "<iq {H} type='get'><query xmlns='jabber:iq:version'/></iq>"
        ));
        assert_eq!(condition(a), "cancel/service-unavailable");
        let a = ask(&format!("<iq {H} type='set'><x xmlns='urn:unknown'/></iq>"));
        assert_eq!(condition(a), "cancel/service-unavailable");
    }

    #[test]
    fn disco_set_is_feature_not_implemented() {
        let a = ask(&format!(
            "<iq {H} type='set'><query xmlns='{}'/></iq>",
            ns::DISCO_INFO
        ));
        assert_eq!(condition(a), "cancel/feature-not-implemented");
    }

    #[test]
    fn payload_count_is_bad_request() {
        assert_eq!(
            condition(ask(&format!("<iq {H} type='get'/>"))),
            "modify/bad-request"
        );
        let two = format!(
            "<iq {H} type='get'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>"
        );
        assert_eq!(condition(ask(&two)), "modify/bad-request");
        let bad_type = format!("<iq {H} type='fetch'><ping xmlns='urn:xmpp:ping'/></iq>");
        assert_eq!(condition(ask(&bad_type)), "modify/bad-request");
    }

    #[test]
    fn results_and_errors_get_nothing() {
        assert!(ask(&format!("<iq {H} type='result'/>")).is_none());
        assert!(ask(&format!("<iq {H} type='error'><error type='cancel'/></iq>")).is_none());
    }

    #[test]
    fn info_node_is_item_not_found() {
        let a = ask(&format!(
            "<iq {H} type='get'><query xmlns='{}' node='x'/></iq>",
            ns::DISCO_INFO
        ));
        assert_eq!(condition(a), "cancel/item-not-found");
    }

    #[test]
    fn ping_is_answered() {
        let Some(ServiceAnswer::Reply(r)) = ask(&format!(
            "<iq {H} type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
        )) else {
            panic!()
        };
        assert_eq!(r.attr("type"), Some("result"));
        assert_eq!(r.children().count(), 0);
    }

    #[test]
    fn items_with_rsm_ask_for_a_page() {
        let a = ask(&format!(
            "<iq {H} type='get'><query xmlns='{}'><set xmlns='{}'><max>5</max><after>b</after></set></query></iq>",
            ns::DISCO_ITEMS,
            ns::RSM
        ));
        let Some(ServiceAnswer::ListChannels(req)) = a else {
            panic!("{a:?}")
        };
        assert_eq!((req.max, req.after.as_deref()), (5, Some("b")));
    }
}
