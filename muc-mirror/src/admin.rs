//! XEP-0045 administration over the channel: roles (§8: kick, voice), affiliations (§9, §10:
//! members, admins, owners, outcasts; lists and deltas) and the owner's room configuration
//! (§10.1-10.2, `muc#roomconfig`), mapped onto the channel (REQUIREMENTS MM-06): owners and
//! admins are the channel's, members its allowed node (or the mirror's list in an open room),
//! outcasts its banned node; what MIX has no word for is kept in the mirror's settings.

use jid::Jid;
use minidom::Element;
use mix_service::channel::{Ctx, Outcome, Role, Send};
use mix_service::stanza::{error, iq_result};
use mix_service::xml::*;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::room::{NS_MUC_ADMIN, NS_MUC_OWNER, NS_MUC_USER, Occupant, Room, muc_error};
use crate::settings::ALL_ROLES;

pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

fn bad(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::BadRequest, text)
}

fn forbidden(text: &str) -> StanzaError {
    error(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

fn not_allowed(text: &str) -> StanzaError {
    error(ErrorType::Cancel, DefinedCondition::NotAllowed, text)
}

/// Affiliations in rank order (XEP-0045 §5.2).
fn rank(aff: &str) -> u8 {
    match aff {
        "owner" => 4,
        "admin" => 3,
        "member" => 2,
        "none" => 1,
        _ => 0,
    }
}

fn merge(out: &mut Outcome, more: Outcome) {
    out.writes.extend(more.writes);
    out.sends.extend(more.sends);
    out.events.extend(more.events);
}

impl Room {
    /// `muc#admin` sets: role changes by nick, affiliation changes by JID (all or none are
    /// checked before any applies, XEP-0045 §9.2).
    pub(crate) fn admin_set(
        &mut self,
        st: &Element,
        q: &Element,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let actor = from.to_bare().to_string();
        let items: Vec<Element> = q
            .children()
            .filter(|c| c.is("item", NS_MUC_ADMIN))
            .cloned()
            .collect();
        if items.is_empty() {
            return muc_error(st, bad("no item"));
        }
        // Check every item first.
        for item in &items {
            if let Err(e) = self.check_admin_item(&actor, item) {
                return muc_error(st, e);
            }
        }
        // §9.2 (MUC-ADM-05): the batch applies whole or not at all, including the checks
        // only applying can make.
        let applied = self.all_or_nothing(|room| {
            let mut out = Outcome::default();
            for item in &items {
                let reason = item
                    .children()
                    .find(|c| c.name() == "reason")
                    .map(|r| r.text());
                let more = match (item.attr("role"), item.attr("affiliation")) {
                    (Some(role), _) => room.set_role(&actor, item, role, reason.as_deref(), ctx),
                    (None, Some(aff)) => {
                        room.set_affiliation(&actor, item, aff, reason.as_deref(), ctx)
                    }
                    _ => Err(bad("an item needs a role or an affiliation")),
                }?;
                merge(&mut out, more);
            }
            Ok(out)
        });
        match applied {
            Ok(mut out) => {
                out.sends.insert(0, Send::One(iq_result(st, None)));
                out
            }
            Err(e) => muc_error(st, e),
        }
    }

    /// Run `change`; if it fails, the room (both faces) is left exactly as it was, so that
    /// what memory holds never differs from what was written.
    pub(crate) fn all_or_nothing<T>(
        &mut self,
        change: impl FnOnce(&mut Room) -> Result<T, StanzaError>,
    ) -> Result<T, StanzaError> {
        let saved = self.snapshot();
        let r = change(self);
        if r.is_err() {
            self.restore(saved);
        }
        r
    }

    /// Who may do what (XEP-0045 §8 and §9; MUC-ADM rules): moderators change roles of
    /// those below them; admins change affiliations up to member; owners all; nobody acts
    /// on a higher or equal affiliation except owners on admins and owners.
    fn check_admin_item(&self, actor: &str, item: &Element) -> Result<(), StanzaError> {
        let actor_aff = self.affiliation(actor);
        if item.attr("role").is_some() && item.attr("affiliation").is_some() {
            // §17.4 rule 4: one change per item.
            return Err(bad("an item changes a role or an affiliation, not both"));
        }
        if let Some(role) = item.attr("role") {
            if !self.is_moderator(actor) {
                return Err(forbidden("only moderators change roles"));
            }
            let nick = item
                .attr("nick")
                .ok_or_else(|| bad("a role change names a nick"))?;
            let target = self.bare_of_nick(nick).ok_or_else(|| {
                error(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such occupant",
                )
            })?;
            if !matches!(role, "none" | "visitor" | "participant" | "moderator") {
                return Err(bad("unknown role"));
            }
            if role == "moderator" && rank(actor_aff) < rank("admin") {
                return Err(forbidden("only admins and owners grant moderation"));
            }
            // Kicking or silencing an admin or owner is not allowed (§8.2, §8.4).
            if rank(self.affiliation(&target)) >= rank("admin") && role != "moderator" {
                return Err(not_allowed("cannot change the role of an admin or owner"));
            }
            return Ok(());
        }
        let aff = item
            .attr("affiliation")
            .ok_or_else(|| bad("item without role or affiliation"))?;
        if !matches!(aff, "owner" | "admin" | "member" | "none" | "outcast") {
            return Err(bad("unknown affiliation"));
        }
        let target = self
            .item_target(item)
            .ok_or_else(|| bad("an affiliation change names a JID (or an occupant's nick)"))?;
        if rank(actor_aff) < rank("admin") {
            return Err(forbidden("only admins and owners change affiliations"));
        }
        let current = self.affiliation(&target);
        if aff == "outcast" {
            // §9.1: nobody bans himself (conflict), nor an admin or owner (not-allowed).
            if target == actor {
                return Err(error(
                    ErrorType::Cancel,
                    DefinedCondition::Conflict,
                    "you cannot ban yourself",
                ));
            }
            if rank(current) >= rank("admin") {
                return Err(not_allowed("admins and owners cannot be banned"));
            }
        }
        let touches_high = rank(aff) >= rank("admin") || rank(current) >= rank("admin");
        if touches_high && actor_aff != "owner" {
            return Err(forbidden("only owners change admins and owners"));
        }
        if current == "owner" && aff != "owner" && self.channel.config().owners.len() <= 1 {
            // §10.6: the last owner cannot step down.
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::Conflict,
                "a room must keep an owner",
            ));
        }
        Ok(())
    }

    /// Whom an affiliation item names: its JID, or the occupant with its nick (clients such
    /// as Prosody's own tests send only the nick).
    fn item_target(&self, item: &Element) -> Option<String> {
        match item.attr("jid") {
            Some(j) => j.parse::<Jid>().ok().map(|j| j.to_bare().to_string()),
            None => item.attr("nick").and_then(|n| self.bare_of_nick(n)),
        }
    }

    fn bare_of_nick(&self, nick: &str) -> Option<String> {
        self.everyone()
            .into_iter()
            .find(|(_, n)| n == nick)
            .map(|(b, _)| b)
    }

    fn set_role(
        &mut self,
        actor: &str,
        item: &Element,
        role: &str,
        reason: Option<&str>,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        let nick = item.attr("nick").unwrap_or_default();
        let target = self.bare_of_nick(nick).unwrap_or_default();
        let mut out = Outcome::default();
        match role {
            "none" => match self.occupant(&target).cloned() {
                Some(o) => self.remove_occupant(&o, &["307"], reason, actor, ctx, &mut out),
                None => {
                    // A MIX participant shown as an occupant: its clients leave the channel's
                    // presence; it stays a participant (MM-06: no MIX kick).
                    let o = Occupant {
                        nick: nick.to_owned(),
                        bare: target.clone(),
                        sessions: Default::default(),
                        role: None,
                    };
                    let mut gone = self.channel.drop_presence(&target, ctx);
                    gone.events.clear();
                    merge(&mut out, gone);
                    self.forget_mix_occupant(&target);
                    self.remove_occupant(&o, &["307"], reason, actor, ctx, &mut out);
                }
            },
            "visitor" => {
                self.set_occupant_role(&target, "visitor");
                self.settings.voiced.remove(&target);
                self.settings.voiceless.insert(target.clone());
                self.save_settings(ctx, &mut out);
                self.announce_change(&target, actor, reason, &mut out);
            }
            "participant" => {
                self.set_occupant_role(&target, "participant");
                self.settings.voiceless.remove(&target);
                self.settings.voiced.insert(target.clone());
                self.save_settings(ctx, &mut out);
                self.announce_change(&target, actor, reason, &mut out);
            }
            _ => {
                // Moderation comes with the admin affiliation here (owners and admins are
                // the channel's moderators); a moderator role alone is not kept.
                if !self.is_moderator(&target) {
                    return Err(not_allowed("make the user an admin to make it a moderator"));
                }
            }
        }
        Ok(out)
    }

    fn set_affiliation(
        &mut self,
        actor: &str,
        item: &Element,
        aff: &str,
        reason: Option<&str>,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        let target = self.item_target(item).unwrap_or_default();
        let mut out = Outcome::default();
        if aff == "outcast" {
            if let Some(r) = reason {
                // §9.1: the reason stays with the outcast list.
                self.settings
                    .outcast_reasons
                    .insert(target.clone(), r.to_owned());
            }
            // MUC-ADM-04: a ban ends the membership, the reserved nick and any voice.
            self.settings.reserved.remove(&target);
            self.settings.members.remove(&target);
            self.settings.voiced.remove(&target);
            self.save_settings(ctx, &mut out);
            let present = self.everyone().iter().any(|(b, _)| b == &target);
            let mut more = self.channel.ban(actor, &target, ctx)?;
            self.show(&mut more);
            merge(&mut out, more);
            if !present {
                // §9.1 / §5.2.2: the occupants learn of an absent user's ban by message.
                self.notice(&target, &["301"], reason, &mut out);
            }
            return Ok(out);
        }
        // Leave the lists the user is on, then join the one asked for.
        let mut owners = self.channel.config().owners.clone();
        let mut admins = self.channel.config().admins.clone();
        owners.retain(|j| j != &target);
        admins.retain(|j| j != &target);
        match aff {
            "owner" => owners.push(target.clone()),
            "admin" => admins.push(target.clone()),
            _ => {}
        }
        if owners != self.channel.config().owners || admins != self.channel.config().admins {
            let mut form = elem("x", NS_DATA, &[("type", "submit")]);
            form.append_child(field_values("FORM_TYPE", &[NS_ADMIN.to_owned()]));
            form.append_child(field_values("Owner", &owners));
            form.append_child(field_values("Administrator", &admins));
            let more = self.channel.submit_form(actor, NODE_CONFIG, form, ctx)?;
            merge(&mut out, more);
        }
        if self.channel.role(&target) == Role::Banned {
            let more = self.channel.unban(&target, ctx);
            merge(&mut out, more);
        }
        let member = aff == "member";
        if self.channel.members_only() {
            let more = self.channel.set_allowed(&target, member, ctx);
            merge(&mut out, more);
        } else if member {
            self.settings.members.insert(target.clone());
            self.save_settings(ctx, &mut out);
        } else if self.settings.members.remove(&target) {
            self.save_settings(ctx, &mut out);
        }
        if aff != "outcast" {
            self.settings.outcast_reasons.remove(&target);
        }
        // §9.3: an item with a nick reserves it for the user; losing the affiliation frees it.
        match (aff, item.attr("nick")) {
            ("none", _) => {
                self.settings.reserved.remove(&target);
            }
            (_, Some(n)) if item.attr("jid").is_some() && !n.is_empty() => {
                // §7.10: one registrant per nick.
                if self.reserved_by(n).is_some_and(|b| b != target) {
                    return Err(error(
                        ErrorType::Cancel,
                        DefinedCondition::Conflict,
                        "that nick is reserved by someone else in this room",
                    ));
                }
                self.settings.reserved.insert(target.clone(), n.to_owned());
                self.evict_squatter(&target, n, ctx, &mut out);
            }
            _ => {}
        }
        self.save_settings(ctx, &mut out);
        // A new affiliation gives the role it implies (a member has voice, §5.1).
        let role = self.default_role(&target);
        self.set_occupant_role(&target, role);
        // §9.4/§9.6: losing membership of a members-only room takes the user out (321).
        if self.channel.members_only()
            && rank(aff) < rank("member")
            && let Some(o) = self.occupant(&target).cloned()
        {
            self.remove_occupant(&o, &["321"], reason, actor, ctx, &mut out);
        } else if self.everyone().iter().any(|(b, _)| b == &target) {
            // §9.3 / §10.6: a present user's new affiliation is announced in its presence
            // (110 to itself), with the actor.
            self.announce_change(&target, actor, reason, &mut out);
        } else {
            // §5.2.2: an absent user's change is told to the occupants in a message.
            self.notice(&target, &[], reason, &mut out);
        }
        Ok(out)
    }

    /// An absent user's affiliation changed: a message from the room to the moderators (it
    /// names a real JID, which only moderators see in every kind of room).
    pub(crate) fn notice(
        &self,
        target: &str,
        codes: &[&str],
        reason: Option<&str>,
        out: &mut Outcome,
    ) {
        let to: Vec<String> = self
            .audience()
            .into_iter()
            .filter(|f| f.split('/').next().is_some_and(|b| self.is_moderator(b)))
            .collect();
        if to.is_empty() {
            return;
        }
        let mut m = elem(
            "message",
            mix_service::stanza::NS_STANZA,
            &[("from", &self.jid.to_string())],
        );
        let mut x = Element::bare("x", NS_MUC_USER);
        for c in codes {
            x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
        }
        let mut item = elem(
            "item",
            NS_MUC_USER,
            &[("jid", target), ("affiliation", self.affiliation(target))],
        );
        if let Some(r) = reason {
            item.append_child(text_elem("reason", NS_MUC_USER, r));
        }
        x.append_child(item);
        m.append_child(x);
        out.sends.push(Send::Fanout { stanza: m, to });
    }

    /// The `<actor/>` of a change someone made to someone else: its nick, and for
    /// moderators its JID.
    fn actor_element(&self, actor: &str, target: &str, with_jid: bool) -> Option<Element> {
        // "" is the room itself (an eviction, a user's own deregistration): no actor.
        let _ = target;
        if actor.is_empty() {
            return None;
        }
        let o = self.occupant(actor)?;
        let mut a = elem("actor", NS_MUC_USER, &[("nick", &o.nick)]);
        if with_jid && let Some(full) = o.sessions.keys().next_back() {
            set_attr(&mut a, "jid", full);
        }
        Some(a)
    }

    /// A present user's presence again after its affiliation or role changed: to everyone,
    /// with the actor and reason in the item, and 110 for its own clients.
    pub(crate) fn announce_change(
        &self,
        target: &str,
        actor: &str,
        reason: Option<&str>,
        out: &mut Outcome,
    ) {
        let Some(nick) = self
            .everyone()
            .into_iter()
            .find(|(b, _)| b == target)
            .map(|(_, n)| n)
        else {
            return;
        };
        let (source, full, own): (Option<Element>, Option<String>, Vec<String>) =
            match self.occupant(target) {
                Some(o) => {
                    let last = o.sessions.iter().next_back();
                    (
                        last.map(|(_, p)| p.clone()),
                        last.map(|(f, _)| f.clone()),
                        o.sessions.keys().cloned().collect(),
                    )
                }
                None => match self.channel.client_of(target) {
                    Some((f, p)) => (Some(p), Some(f), Vec::new()),
                    None => (None, None, Vec::new()),
                },
            };
        let mods: Vec<String> = self
            .audience()
            .into_iter()
            .filter(|f| f.split('/').next().is_some_and(|b| self.is_moderator(b)))
            .collect();
        for to in self.audience() {
            let with_jid = self.non_anonymous() || mods.contains(&to);
            let mut p = self.occupant_presence(
                target,
                &nick,
                source.as_ref(),
                full.as_deref(),
                with_jid,
                false,
            );
            if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                if let Some(item) = x.get_child_mut("item", NS_MUC_USER) {
                    // The actor's JID goes to moderators, unless one changed oneself.
                    let own_act = actor == target;
                    if let Some(a) =
                        self.actor_element(actor, target, mods.contains(&to) && !own_act)
                    {
                        item.append_child(a);
                    }
                    if let Some(r) = reason {
                        item.append_child(text_elem("reason", NS_MUC_USER, r));
                    }
                }
                if own.contains(&to) {
                    x.append_child(elem("status", NS_MUC_USER, &[("code", "110")]));
                }
            }
            set_attr(&mut p, "to", &to);
            out.sends.push(Send::One(p));
        }
    }

    /// A nick just reserved for `owner`: whoever else is in under it leaves (307), as a
    /// reserved nick is its registrant's alone (XEP-0045 §7.10; Prosody does the same).
    pub(crate) fn evict_squatter(
        &mut self,
        owner: &str,
        nick: &str,
        ctx: &mut Ctx<'_>,
        out: &mut Outcome,
    ) {
        let squatter = self
            .everyone()
            .into_iter()
            .find(|(b, n)| b != owner && n.to_lowercase() == nick.to_lowercase())
            .map(|(b, _)| b);
        if let Some(o) = squatter.and_then(|b| self.occupant(&b).cloned()) {
            // The room does this, not the admin: no <actor/>.
            self.remove_occupant(
                &o,
                &["307"],
                Some("This nickname is reserved"),
                "",
                ctx,
                out,
            );
        }
    }

    /// Take an occupant out with these status codes (307 kick, 321 membership, ...).
    pub(crate) fn remove_occupant(
        &mut self,
        target: &Occupant,
        codes: &[&str],
        reason: Option<&str>,
        actor: &str,
        ctx: &mut Ctx<'_>,
        out: &mut Outcome,
    ) {
        let actor_el = self.actor_element(actor, &target.bare, false);
        let add = |p: &mut Element, with_self: bool| {
            if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                if let Some(item) = x.get_child_mut("item", NS_MUC_USER) {
                    if let Some(a) = &actor_el {
                        item.append_child(a.clone());
                    }
                    if let Some(r) = reason {
                        item.append_child(text_elem("reason", NS_MUC_USER, r));
                    }
                }
                if with_self {
                    x.append_child(elem("status", NS_MUC_USER, &[("code", "110")]));
                }
                for c in codes {
                    x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
                }
            }
        };
        for full in target.sessions.keys() {
            let mut p =
                self.occupant_presence(&target.bare, &target.nick, None, Some(full), true, true);
            add(&mut p, true);
            set_attr(&mut p, "to", full);
            out.sends.push(Send::One(p));
            if let Ok(j) = full.parse::<Jid>() {
                let gone = self.channel.client_presence(&j, None, ctx);
                out.writes.extend(gone.writes);
                out.sends.extend(gone.sends);
            }
        }
        self.forget_occupant(&target.bare);
        // The others: the real JID (and the actor's) for those who may see JIDs.
        let full = target.sessions.keys().next_back().cloned();
        for to in self.audience() {
            let moderator = to.split('/').next().is_some_and(|b| self.is_moderator(b));
            let with_jid = self.non_anonymous() || moderator;
            let mut p = self.occupant_presence(
                &target.bare,
                &target.nick,
                None,
                full.as_deref(),
                with_jid,
                true,
            );
            add(&mut p, false);
            if moderator
                && let (Some(item), Some(a)) = (
                    p.get_child_mut("x", NS_MUC_USER)
                        .and_then(|x| x.get_child_mut("item", NS_MUC_USER)),
                    self.actor_element(actor, &target.bare, true),
                )
            {
                if let Some(old) = item.get_child_mut("actor", NS_MUC_USER) {
                    *old = a;
                }
            }
            set_attr(&mut p, "to", &to);
            out.sends.push(Send::One(p));
        }
        if self
            .channel
            .participant(&target.bare)
            .is_some_and(|p| p.via_muc)
        {
            let more = self.channel.depart(&target.bare, ctx);
            out.writes.extend(more.writes);
            out.sends.extend(more.sends);
        }
    }

    /// The member, admin, owner or outcast list (XEP-0045 §9.5, §10.5, §10.8, §9.2).
    pub(crate) fn admin_get(&self, st: &Element, q: &Element, from: &Jid) -> Outcome {
        let actor = from.to_bare().to_string();
        let Some(item) = q.children().find(|c| c.is("item", NS_MUC_ADMIN)) else {
            return muc_error(st, bad("ask for a list"));
        };
        let cfg = self.channel.config();
        let (value, list): (&str, Vec<String>) = match (item.attr("affiliation"), item.attr("role"))
        {
            (Some("owner"), _) => ("owner", cfg.owners.clone()),
            (Some("admin"), _) => ("admin", cfg.admins.clone()),
            (Some("outcast"), _) => ("outcast", self.channel.banned()),
            (Some("member"), _) => (
                "member",
                if self.channel.members_only() {
                    self.channel.allowed()
                } else {
                    self.settings.members.iter().cloned().collect()
                },
            ),
            (None, Some(role @ ("moderator" | "participant" | "visitor"))) => {
                return self.role_list(st, role, &actor);
            }
            _ => return muc_error(st, bad("unknown list")),
        };
        // §9.5: members may read the member list of a non-anonymous room; other lists are
        // for admins and owners.
        let allowed = match value {
            "member" | "owner" => {
                rank(self.affiliation(&actor)) >= rank("admin")
                    || (self.non_anonymous() && rank(self.affiliation(&actor)) >= rank("member"))
            }
            _ => rank(self.affiliation(&actor)) >= rank("admin"),
        };
        if !allowed {
            return muc_error(st, forbidden("you may not read that list"));
        }
        let mut query = Element::bare("query", NS_MUC_ADMIN);
        // A user is on one list: the member list does not repeat owners and admins who are
        // also in the allowed node (or registered with an open room).
        let list = list.into_iter().filter(|j| self.affiliation(j) == value);
        for j in list {
            let mut i = elem("item", NS_MUC_ADMIN, &[("jid", &j)]);
            set_attr(&mut i, "affiliation", self.affiliation(&j));
            if value == "outcast"
                && let Some(r) = self.settings.outcast_reasons.get(&j)
            {
                i.append_child(text_elem("reason", NS_MUC_ADMIN, r));
            }
            // §9.5: the nick of a list item is the one reserved with the room.
            if let Some(n) = self.reserved_nick(&j) {
                set_attr(&mut i, "nick", n);
            }
            query.append_child(i);
        }
        Outcome::reply(iq_result(st, Some(query)))
    }

    /// §8.5, §8.8: a role list (for moderators) names occupants by nick and full JID.
    fn role_list(&self, st: &Element, role: &str, actor: &str) -> Outcome {
        if !self.is_moderator(actor) {
            return muc_error(st, forbidden("you may not read that list"));
        }
        let mut query = Element::bare("query", NS_MUC_ADMIN);
        for (bare, nick) in self.everyone() {
            if self.role(&bare) != role {
                continue;
            }
            let full = match self.occupant(&bare) {
                Some(o) => o.sessions.keys().next_back().cloned(),
                None => self.channel.client_of(&bare).map(|(f, _)| f),
            };
            query.append_child(elem(
                "item",
                NS_MUC_ADMIN,
                &[
                    ("affiliation", self.affiliation(&bare)),
                    ("jid", full.as_deref().unwrap_or(&bare)),
                    ("nick", &nick),
                    ("role", role),
                ],
            ));
        }
        Outcome::reply(iq_result(st, Some(query)))
    }

    /// `muc#owner`: the configuration form, submitting it (or accepting the defaults of an
    /// instant room), and destroying the room.
    pub(crate) fn owner(
        &mut self,
        st: &Element,
        q: &Element,
        get: bool,
        from: &Jid,
        ctx: &mut Ctx<'_>,
    ) -> Outcome {
        let actor = from.to_bare().to_string();
        if self.channel.role(&actor) != Role::Owner {
            return muc_error(st, forbidden("only owners configure this room"));
        }
        if let Some(d) = q.children().find(|c| c.is("destroy", NS_MUC_OWNER)) {
            return self.destroy(st, d, from);
        }
        if get {
            let mut query = Element::bare("query", NS_MUC_OWNER);
            query.append_child(self.config_form());
            return Outcome::reply(iq_result(st, Some(query)));
        }
        let Some(form) = q.children().find(|c| c.is("x", NS_DATA)) else {
            return muc_error(st, bad("a configuration form is required"));
        };
        match form.attr("type") {
            Some("cancel") if self.settings.locked => {
                // §10.1.3: cancelling the initial configuration destroys the room (the owner
                // gets its unavailable presence); a room nobody configured must not linger.
                self.destroy(st, &Element::bare("destroy", NS_MUC_OWNER), from)
            }
            // §10.2: cancelling a later configuration changes nothing.
            Some("cancel") => Outcome::reply(iq_result(st, None)),
            Some("submit") => match self.all_or_nothing(|room| room.configure(&actor, form, ctx)) {
                Ok(mut out) => {
                    out.sends.insert(0, Send::One(iq_result(st, None)));
                    out
                }
                Err(e) => muc_error(st, e),
            },
            _ => muc_error(st, bad("the form must be submitted or cancelled")),
        }
    }

    fn destroy(&mut self, st: &Element, d: &Element, from: &Jid) -> Outcome {
        let mut out = self.channel.destroy(st, from);
        // The occupants hear why, and where to go (XEP-0045 §10.9).
        let mut destroy = Element::bare("destroy", NS_MUC_USER);
        if let Some(j) = d.attr("jid") {
            set_attr(&mut destroy, "jid", j);
        }
        if let Some(r) = d.children().find(|c| c.name() == "reason") {
            destroy.append_child(text_elem("reason", NS_MUC_USER, &r.text()));
        }
        self.destroyed(destroy, &mut out);
        out.events
            .retain(|e| !matches!(e, mix_service::channel::ChannelEvent::Destroyed));
        // §10.9: the occupants hear of it, then the owner gets the IQ result.
        if !out.sends.is_empty() {
            let result = out.sends.remove(0);
            out.sends.push(result);
        }
        out
    }

    /// The room is gone: every pending invitee is told (seed 000) and every occupant session
    /// gets one unavailable presence with `<destroy/>` (XEP-0045 §10.9: affiliation and role
    /// none, even without an alternate venue or reason).
    pub(crate) fn destroyed(&mut self, destroy: Element, out: &mut Outcome) {
        self.cancel_all_invitations(out);
        for o in self.take_occupants() {
            for full in o.sessions.keys() {
                let mut p =
                    crate::room::out_of_room(&format!("{}/{}", self.jid, o.nick), full, &[]);
                if let Some(x) = p.get_child_mut("x", NS_MUC_USER) {
                    x.append_child(destroy.clone());
                }
                out.sends.push(Send::One(p));
            }
        }
    }

    /// The room configuration as a `muc#roomconfig` form (XEP-0045 §15.5.3).
    pub(crate) fn config_form(&self) -> Element {
        let cfg = self.channel.config();
        let s = &self.settings;
        let mut x = elem("x", NS_DATA, &[("type", "form")]);
        x.append_child(hidden("FORM_TYPE", NS_ROOMCONFIG));
        let b = |v: bool| if v { "1" } else { "0" }.to_owned();
        let fields: Vec<ConfigField> = vec![
            (
                "muc#roomconfig_roomname",
                "text-single",
                "Name",
                vec![self.channel.display_name()],
                &[],
            ),
            (
                "muc#roomconfig_roomdesc",
                "text-single",
                "Description",
                vec![self.channel.description()],
                &[],
            ),
            (
                "muc#roomconfig_persistentroom",
                "boolean",
                "Persistent (always: channels live until destroyed)",
                vec!["1".into()],
                &[],
            ),
            (
                "muc#roomconfig_publicroom",
                "boolean",
                "Listed in the room directory",
                vec![b(self.channel.is_public())],
                &[],
            ),
            (
                "muc#roomconfig_membersonly",
                "boolean",
                "Members only",
                vec![b(self.channel.members_only())],
                &[],
            ),
            (
                "muc#roomconfig_moderatedroom",
                "boolean",
                "Moderated",
                vec![b(s.moderated)],
                &[],
            ),
            (
                "muc#roomconfig_passwordprotectedroom",
                "boolean",
                "Password protected",
                vec![b(s.password.is_some())],
                &[],
            ),
            (
                "muc#roomconfig_roomsecret",
                "text-private",
                "Password",
                vec![s.password.clone().unwrap_or_default()],
                &[],
            ),
            (
                "muc#roomconfig_whois",
                "list-single",
                "Who may see real JIDs",
                vec![
                    if self.non_anonymous() {
                        "anyone"
                    } else {
                        "moderators"
                    }
                    .into(),
                ],
                &["moderators", "anyone"],
            ),
            (
                "muc#roomconfig_maxusers",
                "list-single",
                "Maximum occupants",
                vec![
                    s.max_users
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "none".into()),
                ],
                &["10", "20", "30", "50", "100", "1000", "none"],
            ),
            (
                "muc#roomconfig_presencebroadcast",
                "list-multi",
                "Roles whose presence is broadcast",
                s.presence_broadcast.clone(),
                &ALL_ROLES,
            ),
            (
                "muc#roomconfig_allowpm",
                "list-single",
                "Who may send private messages",
                vec![s.allow_pm.clone()],
                &["anyone", "participants", "moderators", "none"],
            ),
            (
                "muc#roomconfig_allowinvites",
                "boolean",
                "Occupants may invite",
                vec![b(cfg.invitation_by_participant)],
                &[],
            ),
            (
                "muc#roomconfig_changesubject",
                "boolean",
                "Occupants may change the subject",
                vec![b(s.change_subject)],
                &[],
            ),
            (
                "muc#roomconfig_enablelogging",
                "boolean",
                "Archived (always: the channel's archive)",
                vec!["1".into()],
                &[],
            ),
            (
                "muc#roomconfig_roomowners",
                "jid-multi",
                "Owners",
                cfg.owners.clone(),
                &[],
            ),
            (
                "muc#roomconfig_roomadmins",
                "jid-multi",
                "Administrators",
                cfg.admins.clone(),
                &[],
            ),
        ];
        for (var, ty, label, values, options) in fields {
            let mut f = elem(
                "field",
                NS_DATA,
                &[("var", var), ("type", ty), ("label", label)],
            );
            for v in values {
                f.append_child(text_elem("value", NS_DATA, &v));
            }
            for o in options {
                let mut opt = elem("option", NS_DATA, &[("label", o)]);
                opt.append_child(text_elem("value", NS_DATA, o));
                f.append_child(opt);
            }
            x.append_child(f);
        }
        x
    }

    /// Apply a submitted `muc#roomconfig` form: only the fields present change (XEP-0004);
    /// unknown fields are ignored (§15.5.3), bad values refused (not-acceptable).
    fn configure(
        &mut self,
        actor: &str,
        form: &Element,
        ctx: &mut Ctx<'_>,
    ) -> Result<Outcome, StanzaError> {
        let values = |var: &str| -> Option<Vec<String>> {
            form.children()
                .find(|f| f.is("field", NS_DATA) && f.attr("var") == Some(var))
                .map(|f| {
                    f.children()
                        .filter(|v| v.is("value", NS_DATA))
                        .map(|v| v.text().trim().to_owned())
                        .collect()
                })
        };
        let one = |var: &str| values(var).map(|v| v.into_iter().next().unwrap_or_default());
        let boolean = |var: &str| -> Result<Option<bool>, StanzaError> {
            match one(var).as_deref() {
                None => Ok(None),
                Some("1" | "true") => Ok(Some(true)),
                Some("0" | "false" | "") => Ok(Some(false)),
                Some(_) => Err(not_acceptable(&format!("'{var}' is a boolean"))),
            }
        };
        // A channel lives until destroyed (XEP-0369: no temporary channels) and keeps one
        // archive for both faces: neither can be switched off from the room. Refused before
        // anything is applied.
        if boolean("muc#roomconfig_persistentroom")? == Some(false) {
            return Err(not_acceptable(
                "rooms here are channels, which are always persistent",
            ));
        }
        if boolean("muc#roomconfig_enablelogging")? == Some(false) {
            return Err(not_acceptable(
                "the channel's archive cannot be switched off (its retention can be set)",
            ));
        }
        let was_anonymous = !self.non_anonymous();
        let before = self.config_form();
        let mut out = Outcome::default();
        // Channel configuration (XEP-0406 form): only what changes.
        let cfg = self.channel.config().clone();
        let mut mix_form = elem("x", NS_DATA, &[("type", "submit")]);
        mix_form.append_child(field_values("FORM_TYPE", &[NS_ADMIN.to_owned()]));
        let mut mix_changes = 0;
        if let Some(owners) = values("muc#roomconfig_roomowners") {
            let owners = bare_jids(&owners)?;
            if owners.is_empty() {
                return Err(error(
                    ErrorType::Cancel,
                    DefinedCondition::Conflict,
                    "a room must keep an owner",
                ));
            }
            mix_form.append_child(field_values("Owner", &owners));
            mix_changes += 1;
        }
        if let Some(admins) = values("muc#roomconfig_roomadmins") {
            mix_form.append_child(field_values("Administrator", &bare_jids(&admins)?));
            mix_changes += 1;
        }
        if let Some(members_only) = boolean("muc#roomconfig_membersonly")?
            && members_only != self.channel.members_only()
        {
            let mut nodes = cfg.nodes_present.clone();
            nodes.retain(|n| n != "allowed");
            if members_only {
                nodes.push("allowed".into());
            }
            mix_form.append_child(field_values("Nodes Present", &nodes));
            mix_changes += 1;
        }
        if let Some(whois) = one("muc#roomconfig_whois") {
            let vis = match whois.as_str() {
                "anyone" => "jid-mandatory-visible",
                "moderators" => "jid-hidden",
                _ => {
                    return Err(not_acceptable(
                        "'muc#roomconfig_whois' is anyone or moderators",
                    ));
                }
            };
            mix_form.append_child(field_values("JID Visibility", &[vis.to_owned()]));
            mix_changes += 1;
        }
        if let Some(invites) = boolean("muc#roomconfig_allowinvites")? {
            mix_form.append_child(field_values(
                "Participation Addition by Invitation from Participant",
                &[if invites { "true" } else { "false" }.to_owned()],
            ));
            mix_changes += 1;
        }
        if let Some(pm) = one("muc#roomconfig_allowpm") {
            if !matches!(
                pm.as_str(),
                "anyone" | "participants" | "moderators" | "none"
            ) {
                return Err(not_acceptable("'muc#roomconfig_allowpm' has no such value"));
            }
            mix_form.append_child(field_values(
                "Private Messages",
                &[if pm == "none" { "false" } else { "true" }.to_owned()],
            ));
            mix_changes += 1;
            self.settings.allow_pm = pm;
        }
        let was_members_only = self.channel.members_only();
        let allowed_before = self.channel.allowed();
        if mix_changes > 0 {
            let more = self
                .channel
                .submit_form(actor, NODE_CONFIG, mix_form, ctx)?;
            merge(&mut out, more);
        }
        // A room that became members-only keeps the members it had as an open room.
        if !was_members_only && self.channel.members_only() {
            for m in std::mem::take(&mut self.settings.members) {
                let more = self.channel.set_allowed(&m, true, ctx);
                merge(&mut out, more);
            }
            // §9.6 (322): those who are not members leave a room that became members-only.
            let outsiders: Vec<Occupant> = self
                .occupant_list()
                .into_iter()
                .filter(|o| self.affiliation(&o.bare) == "none")
                .collect();
            for o in outsiders {
                self.remove_occupant(&o, &["322"], None, "", ctx, &mut out);
            }
        }
        // And a room opened up keeps them as members (affiliations outlive the setting).
        if was_members_only && !self.channel.members_only() {
            self.settings.members.extend(allowed_before);
        }
        // Name and description: the info node.
        let name = one("muc#roomconfig_roomname");
        let desc = one("muc#roomconfig_roomdesc");
        if name.is_some() || desc.is_some() {
            let mut info = elem("x", NS_DATA, &[("type", "submit")]);
            info.append_child(field_values("FORM_TYPE", &[NS_CORE.to_owned()]));
            if let Some(n) = name {
                info.append_child(field_values("Name", &[n]));
            }
            if let Some(d) = desc {
                info.append_child(field_values("Description", &[d]));
            }
            let more = self.channel.submit_form(actor, NODE_INFO, info, ctx)?;
            merge(&mut out, more);
        }
        if let Some(public) = boolean("muc#roomconfig_publicroom")? {
            out.writes.extend(self.channel.set_public(public));
        }
        // The mirror's own settings.
        if let Some(m) = boolean("muc#roomconfig_moderatedroom")? {
            self.settings.moderated = m;
        }
        if let Some(p) = boolean("muc#roomconfig_passwordprotectedroom")? {
            if !p {
                self.settings.password = None;
            } else {
                let secret = one("muc#roomconfig_roomsecret").unwrap_or_default();
                if secret.is_empty() && self.settings.password.is_none() {
                    return Err(not_acceptable("a password-protected room needs a password"));
                }
                if !secret.is_empty() {
                    self.settings.password = Some(secret);
                }
            }
        } else if let Some(secret) = one("muc#roomconfig_roomsecret").filter(|s| !s.is_empty()) {
            self.settings.password = Some(secret);
        }
        if let Some(max) = one("muc#roomconfig_maxusers") {
            self.settings.max_users = match max.as_str() {
                "" | "none" | "0" => None,
                n => Some(
                    n.parse()
                        .map_err(|_| not_acceptable("'muc#roomconfig_maxusers' is a number"))?,
                ),
            };
        }
        if let Some(pb) = values("muc#roomconfig_presencebroadcast") {
            if pb.iter().any(|r| !ALL_ROLES.contains(&r.as_str())) {
                return Err(not_acceptable(
                    "'muc#roomconfig_presencebroadcast' lists roles",
                ));
            }
            self.settings.presence_broadcast = pb;
        }
        if let Some(c) = boolean("muc#roomconfig_changesubject")? {
            self.settings.change_subject = c;
        }
        self.settings.locked = false;
        self.save_settings(ctx, &mut out);
        // §10.2.1: occupants hear that the configuration changed (104), and whether the room
        // became non-anonymous (172) or semi-anonymous (173). Accepting an instant room's
        // defaults changes nothing and says nothing.
        if self.config_form() == before {
            return Ok(out);
        }
        let mut codes = vec!["104"];
        match (was_anonymous, !self.non_anonymous()) {
            (true, false) => codes.push("172"),
            (false, true) => codes.push("173"),
            _ => {}
        }
        let to = self.audience();
        if !to.is_empty() {
            let mut m = elem(
                "message",
                mix_service::stanza::NS_STANZA,
                &[("from", &self.jid.to_string()), ("type", "groupchat")],
            );
            let mut x = Element::bare("x", NS_MUC_USER);
            for c in codes {
                x.append_child(elem("status", NS_MUC_USER, &[("code", c)]));
            }
            m.append_child(x);
            out.sends.push(Send::Fanout { stanza: m, to });
        }
        Ok(out)
    }
}

/// A form field: var, type, label, values, options.
type ConfigField = (
    &'static str,
    &'static str,
    &'static str,
    Vec<String>,
    &'static [&'static str],
);

fn not_acceptable(text: &str) -> StanzaError {
    error(ErrorType::Modify, DefinedCondition::NotAcceptable, text)
}

fn hidden(var: &str, value: &str) -> Element {
    let mut f = elem("field", NS_DATA, &[("var", var), ("type", "hidden")]);
    f.append_child(text_elem("value", NS_DATA, value));
    f
}

fn field_values(var: &str, values: &[String]) -> Element {
    let mut f = elem("field", NS_DATA, &[("var", var)]);
    for v in values {
        f.append_child(text_elem("value", NS_DATA, v));
    }
    f
}

fn bare_jids(values: &[String]) -> Result<Vec<String>, StanzaError> {
    values
        .iter()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<Jid>()
                .map(|j| j.to_bare().to_string())
                .map_err(|_| not_acceptable(&format!("'{v}' is not a JID")))
        })
        .collect()
}
