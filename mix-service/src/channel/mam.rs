//! XEP-0313 on the channel JID (CORE-91): the query is parsed here, the shell reads the page
//! from the archive, and [`results`] renders the result messages and the closing IQ result.

use jid::Jid;
use mam_store::{ArchivePage, ArchiveQuery};
use minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{Channel, Outcome, Role};
use crate::stanza::{NS_STANZA, error, iq_result};
use crate::xml::*;

/// Page size when the client gives no `max`, and the largest it may ask for.
pub const DEFAULT_MAX: usize = 50;
pub const MAX_PAGE: usize = 250;

/// The field XEP-0431 adds to the query form.
pub const FULLTEXT_FIELD: &str = "{urn:xmpp:fulltext:0}fulltext";
pub const NS_FULLTEXT: &str = "urn:xmpp:fulltext:0";

/// The nodes whose changes are archived (XEP-0442): what a client may want the history of.
pub const ARCHIVED_NODES: [&str; 5] = [
    NODE_MESSAGES,
    NODE_PARTICIPANTS,
    NODE_INFO,
    NODE_CONFIG,
    NODE_SUBJECT,
];

/// What the shell reads for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MamKind {
    /// A page of results (XEP-0313 §4).
    Page,
    /// The first and last entries (XEP-0313 §6, `<metadata/>`).
    Metadata,
}

/// A MAM query waiting for the archive.
#[derive(Debug, Clone)]
pub struct MamRequest {
    pub kind: MamKind,
    pub iq: Element,
    pub queryid: Option<String>,
    pub query: ArchiveQuery,
    /// `<flip-page/>`: the page in reverse order (XEP-0313 §5.3).
    pub flip: bool,
    /// The channel hides JIDs now: results carry no real JID, whatever was stored before the
    /// channel switched (XEP-0404 §4.3, decided at query time).
    pub hide_jids: bool,
    /// Where the answer goes when not to the requester itself: a DMUC mirror's address for a
    /// user behind it (set by the MUC face).
    pub deliver_to: Option<String>,
}

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

/// The query form (XEP-0313 §4.1.4): every field is optional.
pub fn query_form() -> Element {
    let mut q = Element::bare("query", NS_MAM);
    let mut x = elem("x", NS_DATA, &[("type", "form")]);
    let mut ft = elem(
        "field",
        NS_DATA,
        &[("var", "FORM_TYPE"), ("type", "hidden")],
    );
    ft.append_child(text_elem("value", NS_DATA, NS_MAM));
    x.append_child(ft);
    for (var, ty) in [
        ("with", "jid-single"),
        ("start", "text-single"),
        ("end", "text-single"),
        ("before-id", "text-single"),
        ("after-id", "text-single"),
        ("ids", "list-multi"),
        (FULLTEXT_FIELD, "text-single"),
    ] {
        let mut f = elem("field", NS_DATA, &[("var", var), ("type", ty)]);
        if var == "ids" {
            // XEP-0313 §4.1.4: an open list, never the list of every id.
            let mut v = elem("validate", "http://jabber.org/protocol/xdata-validate", &[]);
            v.append_child(Element::bare(
                "open",
                "http://jabber.org/protocol/xdata-validate",
            ));
            f.append_child(v);
        }
        x.append_child(f);
    }
    q.append_child(x);
    q
}

fn parse_query(
    channel: &str,
    node: &str,
    q: &Element,
) -> Result<(ArchiveQuery, bool), StanzaError> {
    let mut aq = ArchiveQuery {
        channel: channel.to_owned(),
        node: node.to_owned(),
        max: DEFAULT_MAX,
        ..ArchiveQuery::default()
    };
    if let Some(x) = q.get_child("x", NS_DATA) {
        for f in x.children().filter(|c| c.is("field", NS_DATA)) {
            let values: Vec<String> = f
                .children()
                .filter(|v| v.is("value", NS_DATA))
                .map(|v| v.text().trim().to_owned())
                .collect();
            let value = values.first().cloned().unwrap_or_default();
            let time = || parse_datetime(&value).ok_or_else(|| bad("bad dateTime"));
            match f.attr("var").unwrap_or("") {
                "FORM_TYPE" => {
                    if value != NS_MAM {
                        return Err(bad("FORM_TYPE must be urn:xmpp:mam:2"));
                    }
                }
                "start" => aq.start = Some(time()?),
                "end" => aq.end = Some(time()?),
                "with" => {
                    let j: Jid = value.parse().map_err(|_| bad("with is not a JID"))?;
                    aq.with = Some(j.to_bare().to_string());
                }
                "after-id" => aq.after = Some(value),
                "ids" => {
                    if values.len() > MAX_PAGE {
                        return Err(error(
                            ErrorType::Modify,
                            DefinedCondition::PolicyViolation,
                            &format!("at most {MAX_PAGE} ids per query"),
                        ));
                    }
                    aq.ids = values.into_iter().filter(|v| !v.is_empty()).collect();
                }
                FULLTEXT_FIELD => aq.fulltext = Some(value).filter(|v| !v.is_empty()),
                "before-id" => {
                    aq.before = Some(value);
                    aq.backwards = true;
                }
                other => {
                    // XEP-0313 §5.1.1: an unknown field is feature-not-implemented.
                    return Err(error(
                        ErrorType::Cancel,
                        DefinedCondition::FeatureNotImplemented,
                        &format!("unsupported field '{other}'"),
                    ));
                }
            }
        }
    }
    if let Some(set) = q.get_child("set", NS_RSM) {
        for c in set.children() {
            let text = c.text();
            match c.name() {
                "max" => {
                    let max: usize = text
                        .trim()
                        .parse()
                        .map_err(|_| bad("max must be a number"))?;
                    if max > MAX_PAGE {
                        return Err(error(
                            ErrorType::Modify,
                            DefinedCondition::PolicyViolation,
                            &format!("max is limited to {MAX_PAGE}"),
                        ));
                    }
                    aq.max = max;
                }
                "after" => aq.after = Some(text),
                "before" => {
                    // XEP-0059 §2.5: an empty <before/> asks for the last page.
                    if !text.is_empty() {
                        aq.before = Some(text);
                    }
                    aq.backwards = true;
                }
                _ => {}
            }
        }
    }
    let flip = q.get_child("flip-page", NS_MAM).is_some();
    Ok((aq, flip))
}

impl Channel {
    /// Which node a query or metadata request reads, if the requester may read it now
    /// (access at query time, MAM-A-01/03; XEP-0442 for the other nodes).
    fn archive_access(&self, q: &Element, from: &Jid) -> Result<String, StanzaError> {
        let node = q.attr("node").unwrap_or(NODE_MESSAGES);
        if !ARCHIVED_NODES.contains(&node) {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "that node's history is not archived",
            ));
        }
        if self.pubsub.node(node).is_none() {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "this channel has no such node",
            ));
        }
        let bare = from.to_bare().to_string();
        let (read, _) = self.node_rights(node);
        if self.role(&bare) == Role::Banned
            || !(self.has(&bare, read) || self.role(&bare) >= Role::Admin)
        {
            let text = if node == NODE_MESSAGES {
                "only participants may read this channel's archive"
            } else {
                "you may not read this node's archive"
            };
            return Err(error(ErrorType::Auth, DefinedCondition::Forbidden, text));
        }
        Ok(node.to_owned())
    }

    /// XEP-0313 §6: the first and last entries.
    pub(super) fn mam_metadata(&self, st: &Element, q: &Element, from: &Jid) -> Outcome {
        match self.archive_access(q, from) {
            Ok(node) => Outcome {
                query: Some(MamRequest {
                    kind: MamKind::Metadata,
                    iq: st.clone(),
                    queryid: None,
                    query: ArchiveQuery {
                        channel: self.name.clone(),
                        node,
                        ..ArchiveQuery::default()
                    },
                    flip: false,
                    hide_jids: self.is_hidden(),
                    deliver_to: None,
                }),
                ..Outcome::default()
            },
            Err(e) => Outcome::error(st, e),
        }
    }

    pub(super) fn mam_query(&self, st: &Element, q: &Element, from: &Jid) -> Outcome {
        let node = match self.archive_access(q, from) {
            Ok(n) => n,
            Err(e) => return Outcome::error(st, e),
        };
        match parse_query(&self.name, &node, q) {
            Ok((query, flip)) => Outcome {
                query: Some(MamRequest {
                    kind: MamKind::Page,
                    iq: st.clone(),
                    queryid: q.attr("queryid").map(str::to_owned),
                    query,
                    flip,
                    hide_jids: self.is_hidden(),
                    deliver_to: None,
                }),
                ..Outcome::default()
            },
            Err(e) => Outcome::error(st, e),
        }
    }
}

/// The result messages (before) and the IQ result with `<fin/>` (last), XEP-0313 §4.2.
pub fn results(req: &MamRequest, page: &ArchivePage) -> Vec<Element> {
    results_with(req, page, |mut m| {
        remove_attr(&mut m, CLIENT_ID_ATTR);
        Some(m)
    })
}

/// As [`results`], each archived stanza passed through `view` first (the MUC mirror shows
/// the same archive from the room's JID; `None` leaves a row out).
pub fn results_with(
    req: &MamRequest,
    page: &ArchivePage,
    view: impl Fn(Element) -> Option<Element>,
) -> Vec<Element> {
    let to = req.iq.attr("from").unwrap_or_default();
    let from = req.iq.attr("to").unwrap_or_default();
    let mut out = Vec::with_capacity(page.rows.len() + 1);
    let rows: Vec<_> = if req.flip {
        page.rows.iter().rev().collect()
    } else {
        page.rows.iter().collect()
    };
    for row in &rows {
        let Some(mut archived) = parse(&row.stanza) else {
            continue;
        };
        if req.hide_jids {
            hide_jids(&mut archived);
        }
        let Some(archived) = view(archived) else {
            continue;
        };
        let mut result = elem("result", NS_MAM, &[("id", &row.id)]);
        if let Some(q) = &req.queryid {
            set_attr(&mut result, "queryid", q);
        }
        let mut fwd = Element::bare("forwarded", NS_FORWARD);
        fwd.append_child(elem("delay", NS_DELAY, &[("stamp", &datetime(row.ts))]));
        fwd.append_child(archived);
        result.append_child(fwd);
        let mut msg = elem("message", NS_STANZA, &[("to", to), ("from", from)]);
        msg.append_child(result);
        out.push(msg);
    }
    let mut fin = Element::bare("fin", NS_MAM);
    if page.complete {
        set_attr(&mut fin, "complete", "true");
    }
    let mut set = Element::bare("set", NS_RSM);
    if let (Some(first), Some(last)) = (page.rows.first(), page.rows.last()) {
        set.append_child(text_elem("first", NS_RSM, &first.id));
        set.append_child(text_elem("last", NS_RSM, &last.id));
    }
    fin.append_child(set);
    out.push(iq_result(&req.iq, Some(fin)));
    out
}

/// Drop real JIDs from an archived message's `<mix/>` and from archived participant items
/// (XEP-0369 §7.1.7 / XEP-0404 §4.3).
fn hide_jids(el: &mut Element) {
    for c in el.children_mut() {
        if c.is("mix", NS_CORE) || c.is("participant", NS_CORE) {
            while c.remove_child("jid", NS_CORE).is_some() {}
        } else {
            hide_jids(c);
        }
    }
}

/// The metadata answer: `<start/>` and `<end/>`, or an empty `<metadata/>` for an empty
/// archive (XEP-0313 §6).
pub fn metadata(req: &MamRequest, bounds: Option<&mam_store::ArchiveBounds>) -> Element {
    let mut m = Element::bare("metadata", NS_MAM);
    if let Some(b) = bounds {
        m.append_child(elem(
            "start",
            NS_MAM,
            &[("id", &b.first.0), ("timestamp", &datetime(b.first.1))],
        ));
        m.append_child(elem(
            "end",
            NS_MAM,
            &[("id", &b.last.0), ("timestamp", &datetime(b.last.1))],
        ));
    }
    iq_result(&req.iq, Some(m))
}

/// The error for a query naming an id the archive does not hold (XEP-0313 §5.1.2).
pub fn unknown_id(req: &MamRequest) -> Option<Element> {
    crate::stanza::error_reply(
        &req.iq,
        error(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "no archived message has that id",
        ),
    )
}
