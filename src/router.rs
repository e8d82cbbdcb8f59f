//! The router: by `to`, which face (MIX or MUC mirror), and then the service itself or one
//! channel. Protocol decisions are the protocol crates'; the router reads what they need from the
//! store and sends what they answer.

use std::time::Instant;

use jid::Jid;
use minidom::Element;
use mix_service::Domains;
use mix_service::request::{ServiceAnswer, service_iq};
use mix_service::stanza::{deserves_answer, error, error_reply};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::link::{Inbound, Outbound};

/// Which face a domain serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Mix,
    Muc,
}

impl Face {
    fn label(self) -> &'static str {
        match self {
            Face::Mix => "mix",
            Face::Muc => "muc",
        }
    }
}

/// A stanza as it arrived, with the face of the link that carried it.
#[derive(Debug)]
pub struct Arrival {
    pub link: Face,
    pub inbound: Inbound,
}

/// Everything the router needs.
pub struct Router {
    pub domains: Domains,
    pub store: mam_store::Store,
    pub mix_out: Outbound,
    pub muc_out: Outbound,
    pub max_stanza_bytes: usize,
}

impl Router {
    /// Handle arrivals until shutdown; then finish what the links had already handed over, and
    /// drop the outbound handles so the links can flush and close their streams.
    pub async fn run(self, mut rx: mpsc::Receiver<Arrival>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                a = rx.recv() => match a {
                    Some(a) => self.handle(a).await,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        while let Ok(a) = rx.try_recv() {
            self.handle(a).await;
        }
    }

    async fn handle(&self, a: Arrival) {
        match a.inbound {
            Inbound::Oversized { head, bytes } => {
                count_in(a.link, &head);
                tracing::warn!(bytes, from = head.attr("from"), "oversized stanza refused");
                // RFC 6120 §8.3.3.12: the stanza breaks a local policy (the size limit).
                let text = format!(
                    "stanza of {bytes} bytes exceeds the limit of {}",
                    self.max_stanza_bytes
                );
                self.reply_error(
                    a.link,
                    &head,
                    error(ErrorType::Modify, DefinedCondition::PolicyViolation, &text),
                )
                .await;
            }
            Inbound::Stanza(st) => {
                count_in(a.link, &st);
                self.stanza(a.link, st).await;
            }
        }
    }

    async fn stanza(&self, link: Face, st: Element) {
        if !deserves_answer(&st) {
            // Results, errors, headlines and presence other than available presence: nothing the
            // service entity or a channel does with them yet, and none may be answered with an
            // error (RFC 6120 §8.2.3, §8.3.1).
            return;
        }
        let kind = st.name();
        if !matches!(kind, "iq" | "message" | "presence") {
            tracing::debug!(kind, "ignoring a non-stanza element");
            return;
        }
        if st
            .attr("from")
            .and_then(|f| f.parse::<Jid>().ok())
            .is_none()
        {
            tracing::warn!(kind, "stanza without a valid from; dropped");
            return;
        }
        let Some(to) = st.attr("to").and_then(|t| t.parse::<Jid>().ok()) else {
            self.reply_error(
                link,
                &st,
                error(
                    ErrorType::Modify,
                    DefinedCondition::JidMalformed,
                    "invalid to address",
                ),
            )
            .await;
            return;
        };
        let face = if to.domain() == self.domains.mix.domain() {
            Face::Mix
        } else if to.domain() == self.domains.muc.domain() {
            Face::Muc
        } else {
            tracing::warn!(to = %to, "stanza for a domain mixd does not serve");
            metrics::counter!("mixd_misrouted_total", "link" => link.label()).increment(1);
            return;
        };
        if face != link {
            // ejabberd with global_routes can hand a domain's traffic to any component link.
            tracing::warn!(to = %to, link = link.label(), "stanza arrived on the other domain's link");
            metrics::counter!("mixd_misrouted_total", "link" => link.label()).increment(1);
        }
        match to.node() {
            None => self.to_service(face, &st).await,
            Some(node) => self.to_channel(face, node.as_str(), &st).await,
        }
    }

    async fn to_service(&self, face: Face, st: &Element) {
        if st.name() != "iq" {
            // Messages to the service itself carry no meaning; presence is not answered.
            if st.name() == "message" {
                self.reply_error(
                    face,
                    st,
                    error(ErrorType::Cancel, DefinedCondition::ServiceUnavailable, ""),
                )
                .await;
            }
            return;
        }
        let domains = &self.domains;
        let answer = service_iq(st, || match face {
            Face::Mix => mix_service::disco::mix_service_info(domains),
            Face::Muc => muc_mirror::disco::muc_service_info(domains),
        });
        match answer {
            None => {}
            Some(ServiceAnswer::Reply(r)) => self.send(face, &r).await,
            Some(ServiceAnswer::ListChannels(req)) => {
                match self.timed(self.store.channels_page(&req)).await {
                    Ok(page) => {
                        let domain = match face {
                            Face::Mix => &self.domains.mix,
                            Face::Muc => &self.domains.muc,
                        };
                        self.send(face, &mix_service::disco::items_reply(st, domain, &page))
                            .await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "listing channels failed");
                        self.reply_error(
                            face,
                            st,
                            error(ErrorType::Wait, DefinedCondition::InternalServerError, ""),
                        )
                        .await;
                    }
                }
            }
        }
    }

    async fn to_channel(&self, face: Face, name: &str, st: &Element) {
        let exists = match self.timed(self.store.channel(name)).await {
            Ok(c) => c.is_some(),
            Err(e) => {
                tracing::error!(error = %e, "reading a channel failed");
                return self
                    .reply_error(
                        face,
                        st,
                        error(ErrorType::Wait, DefinedCondition::InternalServerError, ""),
                    )
                    .await;
            }
        };
        let err = if !exists {
            let what = match face {
                Face::Mix => "no such channel",
                Face::Muc => "no such room",
            };
            error(ErrorType::Cancel, DefinedCondition::ItemNotFound, what)
        } else {
            // The channel exists but its own protocol is not served yet (issues 3 and 5).
            error(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "channel protocol not available yet",
            )
        };
        self.reply_error(face, st, err).await;
    }

    async fn timed<T>(&self, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let r = f.await;
        metrics::histogram!("mixd_db_seconds").record(start.elapsed().as_secs_f64());
        r
    }

    async fn reply_error(&self, face: Face, st: &Element, err: StanzaError) {
        let condition = format!("{:?}", err.defined_condition);
        if let Some(reply) = error_reply(st, err) {
            metrics::counter!("mixd_errors_sent_total", "condition" => condition).increment(1);
            self.send(face, &reply).await;
        }
    }

    /// Send through the link of `face`: a component sends only from its own domain.
    async fn send(&self, face: Face, st: &Element) {
        let out = match face {
            Face::Mix => &self.mix_out,
            Face::Muc => &self.muc_out,
        };
        metrics::counter!("mixd_stanzas_out_total", "domain" => face.label(), "kind" => st.name().to_owned())
            .increment(1);
        out.send(st).await;
    }
}

fn count_in(link: Face, st: &Element) {
    let kind = match st.name() {
        "iq" => "iq",
        "message" => "message",
        "presence" => "presence",
        _ => "other",
    };
    metrics::counter!("mixd_stanzas_in_total", "domain" => link.label(), "kind" => kind)
        .increment(1);
}
