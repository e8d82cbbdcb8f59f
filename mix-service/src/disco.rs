//! Service discovery (XEP-0030) of the two service domains, with the XEP-0128 forms that tie
//! the MIX domain and its MUC mirror together (XEP-0408).

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::ns;
use xmpp_parsers::rsm::{First, SetQuery, SetResult};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::Domains;
use crate::stanza::{error, iq_result};

pub const NS_MIX_CORE: &str = "urn:xmpp:mix:core:1";
/// XEP-0408 §4.1: the MIX service names its MUC mirror in this form.
pub const FORM_MUC_MIRROR: &str = "urn:xmpp:mix:muc:0#muc-mirror";
/// XEP-0408 §4.2: the MUC service names its MIX mirror in this form.
pub const FORM_MIX_MIRROR: &str = "urn:xmpp:mix:muc:0#mix-mirror";
/// The early MIX draft's form (seed 002, ProtoXEP 0.0.1 §"Discovering a MIX service").
pub const FORM_SERVICEINFO_0: &str = "urn:xmpp:mix:0#serviceinfo";
pub const FIELD_MUC_MIRROR_0: &str = "urn:xmpp:mix:nodes:muc_mirror";

/// Channels in one disco#items page when the requester does not say (XEP-0059 §2.1 lets the
/// responder choose), and the most it may ask for.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 500;

/// disco#info of the MIX domain: identity `conference/mix`, only features that work, and both
/// dialects of the mirror form (REQUIREMENTS.md §16.2). MUC is never advertised here (MM-01).
pub fn mix_service_info(domains: &Domains) -> DiscoInfoResult {
    let muc = domains.muc.to_string();
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("conference", "mix", "en", "Channels (MIX)")],
        features: [
            NS_MIX_CORE,
            "urn:xmpp:mix:core:1#create-channel",
            "urn:xmpp:mix:core:1#searchable",
            "urn:xmpp:mix:misc:0#nick-register",
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        extensions: vec![
            DataForm::new(
                DataFormType::Result_,
                FORM_MUC_MIRROR,
                vec![Field::new("muc-mirror", FieldType::JidSingle).with_value(&muc)],
            ),
            DataForm::new(
                DataFormType::Result_,
                FORM_SERVICEINFO_0,
                vec![
                    Field::new(FIELD_MUC_MIRROR_0, FieldType::TextSingle).with_value(&muc),
                    Field::new("muc-mirror", FieldType::JidSingle).with_value(&muc),
                ],
            ),
        ],
    }
}

/// What page of channels an RSM request (or its absence) asks for.
pub fn page_request(rsm: Option<&SetQuery>) -> Result<mam_store::PageRequest, StanzaError> {
    let Some(q) = rsm else {
        return Ok(mam_store::PageRequest {
            max: DEFAULT_PAGE,
            ..Default::default()
        });
    };
    if q.index.is_some() {
        // XEP-0059 §2.4: page-by-index is optional; we page by name only.
        return Err(error(
            ErrorType::Cancel,
            DefinedCondition::FeatureNotImplemented,
            "paging by index is not supported; use after/before",
        ));
    }
    if q.after.is_some() && q.before.is_some() {
        return Err(error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "after and before together",
        ));
    }
    Ok(mam_store::PageRequest {
        after: q.after.clone(),
        before: q.before.clone(),
        max: q.max.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE),
        include_hidden: false,
    })
}

/// The disco#items result listing `page` as channels of `domain` (the same channel names serve
/// both faces), with the XEP-0059 `<set/>`.
pub fn items_reply(iq: &Element, domain: &jid::BareJid, page: &mam_store::ChannelPage) -> Element {
    let items = page
        .items
        .iter()
        .filter_map(|c| {
            let jid = jid::BareJid::new(&format!("{}@{}", c.name, domain)).ok()?;
            Some(Item {
                jid: jid.into(),
                node: None,
                name: (!c.display_name.is_empty()).then(|| c.display_name.clone()),
            })
        })
        .collect();
    let rsm = SetResult {
        first: page.items.first().map(|c| First {
            index: Some(page.first_index as usize),
            item: c.name.clone(),
        }),
        last: page.items.last().map(|c| c.name.clone()),
        count: Some(page.count as usize),
    };
    let result = DiscoItemsResult {
        node: None,
        items,
        rsm: Some(rsm),
    };
    iq_result(iq, Some(result.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Domains {
        Domains {
            mix: "mix.example.org".parse().expect("jid"),
            muc: "muc.example.org".parse().expect("jid"),
        }
    }

    #[test]
    fn mix_info_has_identity_feature_and_both_forms() {
        let info = mix_service_info(&domains());
        assert_eq!(info.identities[0].category, "conference");
        assert_eq!(info.identities[0].type_, "mix");
        assert!(info.features.contains(NS_MIX_CORE));
        assert!(
            !info.features.contains(ns::MUC),
            "MM-01: no MUC on the MIX domain"
        );
        let forms: Vec<_> = info.extensions.iter().map(|f| f.form_type()).collect();
        assert_eq!(forms, vec![Some(FORM_MUC_MIRROR), Some(FORM_SERVICEINFO_0)]);
        let el: Element = info.into();
        let xml = String::from_utf8(crate_to_bytes(&el)).expect("utf8");
        assert!(xml.contains("muc.example.org"));
        assert!(xml.contains(FIELD_MUC_MIRROR_0));
    }

    fn crate_to_bytes(el: &Element) -> Vec<u8> {
        let mut v = Vec::new();
        el.write_to(&mut v).expect("write");
        v
    }

    #[test]
    fn rsm_index_and_both_directions_are_refused() {
        let q = SetQuery {
            max: None,
            after: None,
            before: None,
            index: Some(3),
        };
        assert_eq!(
            page_request(Some(&q)).expect_err("index").defined_condition,
            DefinedCondition::FeatureNotImplemented
        );
        let q = SetQuery {
            max: None,
            after: Some("a".into()),
            before: Some("b".into()),
            index: None,
        };
        assert_eq!(
            page_request(Some(&q)).expect_err("both").defined_condition,
            DefinedCondition::BadRequest
        );
        let q = SetQuery {
            max: Some(100_000),
            after: None,
            before: None,
            index: None,
        };
        assert_eq!(page_request(Some(&q)).expect("capped").max, MAX_PAGE);
    }
}
