//! Discovery of the MUC mirror domain.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::ns;

use mix_service::Domains;

pub use mix_service::disco::FORM_MIX_MIRROR;

/// disco#info of the MUC domain: identity `conference/text`, the MUC feature, and the XEP-0408
/// form naming the MIX domain. MIX is never advertised here (MM-02). With `dmuc`, the
/// service accepts DMUC mirrors (seed 003 §"Discovering Server Support").
pub fn muc_service_info(domains: &Domains, dmuc: bool) -> DiscoInfoResult {
    let mut features: std::collections::BTreeSet<String> =
        [ns::MUC, ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING]
            .into_iter()
            .map(String::from)
            .collect();
    if dmuc {
        features.insert(crate::dmuc::NS_DMUC.to_owned());
    }
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("conference", "text", "en", "Channels (MUC)")],
        features,
        extensions: vec![DataForm::new(
            DataFormType::Result_,
            FORM_MIX_MIRROR,
            vec![
                Field::new("mix-mirror", FieldType::JidSingle).with_value(&domains.mix.to_string()),
            ],
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muc_info_names_mix_and_never_advertises_it() {
        let d = Domains {
            mix: "mix.example.org".parse().expect("jid"),
            muc: "muc.example.org".parse().expect("jid"),
        };
        let info = muc_service_info(&d, false);
        assert_eq!(info.identities[0].type_, "text");
        assert!(info.features.contains(ns::MUC));
        assert!(
            info.features.iter().all(|f| !f.starts_with("urn:xmpp:mix")),
            "MM-02"
        );
        assert_eq!(info.extensions[0].form_type(), Some(FORM_MIX_MIRROR));
        assert_eq!(
            info.extensions[0].fields[1].values,
            vec!["mix.example.org".to_string()]
        );
    }
}
