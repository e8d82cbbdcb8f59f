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

use crate::channels::{ChannelMsg, Channels};
use crate::link::{Inbound, Outbound};

/// Which face a domain serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Mix,
    Muc,
    /// The DMUC mirror domain (seed 003): remote rooms mirrored for local users.
    Mirror,
}

impl Face {
    fn label(self) -> &'static str {
        match self {
            Face::Mix => "mix",
            Face::Muc => "muc",
            Face::Mirror => "dmuc",
        }
    }
}

/// The DMUC mirror role: its service and the link of its domain.
pub struct MirrorFace {
    pub service: muc_mirror::dmuc_mirror::MirrorService,
    pub out: Outbound,
    /// The mirror's clock starts here.
    pub started: Instant,
}

/// A stanza as it arrived, with the face of the link that carried it.
#[derive(Debug)]
pub struct Arrival {
    pub link: Face,
    pub inbound: Inbound,
}

/// How often channels past their 'End of Life' are looked for.
const EXPIRY_SWEEP: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything the router needs.
pub struct Router {
    pub domains: Domains,
    pub store: mam_store::Store,
    pub mix_out: Outbound,
    pub muc_out: Outbound,
    pub max_stanza_bytes: usize,
    /// DMUC mirrors are accepted (advertised on the MUC domain).
    pub dmuc_master: bool,
    /// The DMUC mirror role, when configured.
    pub mirror: Option<MirrorFace>,
    /// The MIX face's live channels.
    pub channels: Channels,
}

impl Router {
    /// Handle arrivals until shutdown; then finish what the links had already handed over, and
    /// drop the outbound handles so the links can flush and close their streams.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Arrival>, shutdown: CancellationToken) {
        let mut sweep = tokio::time::interval(EXPIRY_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                a = rx.recv() => match a {
                    Some(a) => self.handle(a).await,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    self.expire_channels().await;
                    self.probe_masters().await;
                }
            }
        }
        while let Ok(a) = rx.try_recv() {
            self.handle(a).await;
        }
        self.channels.shutdown().await;
    }

    /// XEP-0369 §7.3.5: destroy channels whose 'End of Life' has passed. Each channel's own
    /// task re-checks its configuration before destroying.
    async fn expire_channels(&mut self) {
        match self.store.expired_channels(crate::channels::now_us()).await {
            Ok(names) => {
                for name in names {
                    tracing::info!(channel = %name, "end of life reached");
                    self.channels.deliver(&name, ChannelMsg::Expire).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading channel lifetimes failed"),
        }
        // Seed 000: invitations with a time to live lapse.
        match self
            .store
            .channels_with_lapsed_invitations(crate::channels::now_us())
            .await
        {
            Ok(names) => {
                for name in names {
                    self.channels
                        .deliver(&name, ChannelMsg::InvitationsDue)
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading invitations failed"),
        }
    }

    async fn handle(&mut self, a: Arrival) {
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

    /// DMUC mirror: keepalive pings to master rooms; an unanswered one means a lost link.
    async fn probe_masters(&mut self) {
        if let Some(m) = &mut self.mirror {
            let now_ms = m.started.elapsed().as_millis() as u64;
            m.service.set_now(crate::channels::now_us());
            for p in m.service.tick(now_ms) {
                tracing::debug!(to = p.attr("to"), kind = p.name(), "dmuc mirror keepalive");
                m.out.send(&p).await;
            }
        }
    }

    /// Everything for the mirror domain, answers and errors included (a bounce is how a lost
    /// master link shows, an answer how it comes back).
    async fn for_mirror(&mut self, st: &Element) -> bool {
        let Some(m) = &mut self.mirror else {
            return false;
        };
        let mine = st
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .is_some_and(|t| t.domain().as_str() == m.service.domain);
        if !mine {
            return false;
        }
        tracing::debug!(
            from = st.attr("from"),
            to = st.attr("to"),
            kind = st.name(),
            ty = st.attr("type"),
            "dmuc mirror in"
        );
        m.service.set_now(crate::channels::now_us());
        for el in m.service.handle(st) {
            metrics::counter!("mixd_stanzas_out_total", "domain" => "dmuc", "kind" => el.name().to_owned())
                .increment(1);
            m.out.send(&el).await;
        }
        true
    }

    async fn stanza(&mut self, link: Face, st: Element) {
        if matches!(st.name(), "iq" | "message" | "presence") && self.for_mirror(&st).await {
            return;
        }
        // Errors and IQ results are never answered (RFC 6120 §8.3.1). The only ones mixd asked
        // for are addressed to an encoded JID: answers to IQs a channel relayed (XEP-0403
        // §3.6) and bounces of private messages it switched (XEP-0404 §6); the rest are
        // dropped here. Other presence types and headlines still matter to
        // channels (XEP-0403 unavailable presence), so the service and channels filter further.
        let answer = matches!(st.attr("type"), Some("error"))
            || (st.name() == "iq" && st.attr("type") == Some("result"));
        // Bounces of what a room sent come back to the room (a client gone: status 333).
        let to_room = st
            .attr("to")
            .and_then(|t| t.parse::<Jid>().ok())
            .is_some_and(|t| t.domain() == self.domains.muc.domain() && t.node().is_some());
        if answer && !to_room && !(matches!(st.name(), "iq" | "message") && to_encoded_jid(&st)) {
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
            None if deserves_answer(&st) => self.for_service(face, &st).await,
            None => {}
            Some(node) => {
                // XEP-0403 §3.1: `ID#channel` addresses a participant's client in a channel.
                let node = node.as_str();
                let name = node
                    .rsplit_once('#')
                    .map(|(_, c)| c)
                    .unwrap_or(node)
                    .to_owned();
                self.for_channel(face, &name, st).await
            }
        }
    }

    async fn for_service(&mut self, face: Face, st: &Element) {
        if face == Face::Mix
            && st.name() == "iq"
            && let Some(op) = mix_service::service::service_op(st)
        {
            return self.mix_service_op(st, op).await;
        }
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
        // (The mirror domain never gets here: `for_mirror` takes all of it.)
        let answer = service_iq(st, || match face {
            Face::Mix => mix_service::disco::mix_service_info(domains),
            Face::Muc | Face::Mirror => {
                muc_mirror::disco::muc_service_info(domains, self.dmuc_master)
            }
        });
        match answer {
            None => {}
            Some(ServiceAnswer::Reply(r)) => self.send(face, &r).await,
            Some(ServiceAnswer::ListChannels(req)) => {
                match self.timed(self.store.channels_page(&req)).await {
                    Ok(page) => {
                        let domain = match face {
                            Face::Mix => &self.domains.mix,
                            Face::Muc | Face::Mirror => &self.domains.muc,
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

    /// XEP-0369 §7.3 create/destroy and XEP-0407 §5 nick registration on the MIX service.
    async fn mix_service_op(
        &mut self,
        st: &Element,
        op: Result<mix_service::service::ServiceOp, StanzaError>,
    ) {
        use mix_service::service::{ServiceOp, create_result, register_result};
        let op = match op {
            Ok(op) => op,
            Err(e) => return self.reply_error(Face::Mix, st, e).await,
        };
        let Some(from) = st.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        let bare = from.to_bare().to_string();
        match op {
            ServiceOp::Create(name) => {
                // An ad-hoc channel (§7.3.3) gets a name nobody can guess; it is not listed.
                let public = name.is_some();
                let name =
                    name.unwrap_or_else(|| format!("adhoc-{:012x}", rand::random::<u64>() >> 16));
                let (_, writes) = mix_service::channel::Channel::create(
                    &name,
                    &self.domains.mix,
                    &bare,
                    public,
                    crate::channels::now_us(),
                );
                match self.timed(self.store.commit(&writes)).await {
                    Ok(()) => {
                        tracing::info!(channel = %name, owner = %bare, "channel created");
                        self.send(Face::Mix, &create_result(st, &name)).await
                    }
                    Err(e) => {
                        self.refuse_write(
                            st,
                            e,
                            "creating a channel",
                            "a channel of that name exists",
                        )
                        .await
                    }
                }
            }
            ServiceOp::Destroy(name) => {
                self.channels
                    .deliver(&name, ChannelMsg::Destroy(st.clone()))
                    .await
            }
            ServiceOp::Register(nick) => {
                let nick = nick.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let taken = {
                    let reg = match self.channels.nicks.read() {
                        Ok(r) => r,
                        Err(p) => p.into_inner(),
                    };
                    reg.owner_of(&nick).is_some_and(|o| o != bare)
                };
                if taken {
                    // XEP-0407 §5: a taken nick with no alternative offered is a conflict.
                    return self
                        .reply_error(
                            Face::Mix,
                            st,
                            error(
                                ErrorType::Cancel,
                                DefinedCondition::Conflict,
                                "that nick is registered to someone else",
                            ),
                        )
                        .await;
                }
                let write = mam_store::Write::RegisterNick {
                    jid: bare.clone(),
                    nick: Some(nick.clone()),
                };
                match self
                    .timed(self.store.commit(std::slice::from_ref(&write)))
                    .await
                {
                    Ok(()) => {
                        if let Ok(mut reg) = self.channels.nicks.write() {
                            reg.insert(&bare, &nick);
                        }
                        self.send(Face::Mix, &register_result(st, &nick)).await;
                        // §5: "MUST update participants nodes" of the channels it is in.
                        match self.store.channels_of(&bare).await {
                            Ok(names) => {
                                for name in names {
                                    let msg = ChannelMsg::NickRegistered {
                                        jid: bare.clone(),
                                        nick: nick.clone(),
                                    };
                                    self.channels.deliver(&name, msg).await;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "finding the registrant's channels failed")
                            }
                        }
                    }
                    Err(e) => {
                        self.refuse_write(
                            st,
                            e,
                            "registering a nick",
                            "that nick is registered to someone else",
                        )
                        .await
                    }
                }
            }
        }
    }

    /// A service write that failed: a uniqueness conflict is the requester's `conflict`
    /// (XEP-0369 §7.3.2, XEP-0407 §5), anything else the service's fault.
    async fn refuse_write(
        &self,
        st: &Element,
        e: mam_store::StoreError,
        doing: &str,
        conflict: &str,
    ) {
        let err = match e {
            mam_store::StoreError::Conflict(_) => {
                error(ErrorType::Cancel, DefinedCondition::Conflict, conflict)
            }
            e => {
                tracing::error!(error = %e, "{doing} failed");
                error(ErrorType::Wait, DefinedCondition::InternalServerError, "")
            }
        };
        self.reply_error(Face::Mix, st, err).await
    }

    /// A channel's stanza, on either face: its task serves MIX and the MUC mirror alike
    /// (XEP-0408: one channel, two faces).
    async fn for_channel(&mut self, _face: Face, name: &str, st: Element) {
        self.channels.deliver(name, ChannelMsg::Stanza(st)).await
    }

    async fn timed<T>(&self, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let r = f.await;
        metrics::histogram!("mixd_db_seconds").record(start.elapsed().as_secs_f64());
        r
    }

    async fn reply_error(&self, face: Face, st: &Element, mut err: StanzaError) {
        let condition = format!("{:?}", err.defined_condition);
        // RFC 6120 §8.3.2: 'by' names the entity that found the error: the addressed
        // service, room or channel (without a resource, which may be the malformed part).
        if err.by.is_none()
            && let Some(by) = st
                .attr("to")
                .and_then(|t| t.split('/').next())
                .and_then(|t| t.parse::<Jid>().ok())
        {
            err.by = Some(by);
        }
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
            Face::Mirror => match &self.mirror {
                Some(m) => &m.out,
                None => return,
            },
        };
        metrics::counter!("mixd_stanzas_out_total", "domain" => face.label(), "kind" => st.name().to_owned())
            .increment(1);
        out.send(st).await;
    }
}

/// Whether `to` is a participant's encoded JID `ID#channel@domain[/res]` (XEP-0403 §3.1).
fn to_encoded_jid(st: &Element) -> bool {
    st.attr("to")
        .and_then(|t| t.parse::<Jid>().ok())
        .and_then(|t| t.node().map(|n| n.as_str().contains('#')))
        .unwrap_or(false)
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
