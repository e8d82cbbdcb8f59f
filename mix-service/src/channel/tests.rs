//! Channel rules without sockets or clocks: join, messages, leave, setnick, rights, pubsub.

use super::*;

struct Counter(u64);

impl Ids for Counter {
    fn archive_id(&mut self, _now: i64) -> String {
        self.0 += 1;
        format!("arch{}", self.0)
    }
    fn participant_id(&mut self) -> String {
        self.0 += 1;
        format!("p{}", self.0)
    }
    fn stanza_id(&mut self) -> String {
        self.0 += 1;
        format!("s{}", self.0)
    }
}

const CH: &str = "coven@mix.x";

fn domain() -> BareJid {
    "mix.x".parse().expect("jid")
}

fn new_channel() -> Channel {
    let (ch, writes) = Channel::create("coven", &domain(), "owner@x", true, 1_000_000);
    assert!(matches!(writes[0], Write::CreateChannel { .. }));
    ch
}

fn st(xml: &str) -> Element {
    xml.parse().expect("xml")
}

fn run(ch: &mut Channel, xml: &str) -> Outcome {
    let mut ids = Counter(0);
    let nicks = NickRegistry::default();
    let mut ctx = Ctx {
        now_us: 2_000_000,
        ids: &mut ids,
        nicks: &nicks,
    };
    ch.handle(&st(xml), &mut ctx)
}

fn join(from: &str, nick: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='{from}' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='{NODE_MESSAGES}'/><subscribe node='{NODE_PARTICIPANTS}'/>\
         <subscribe node='urn:xmpp:mix:nodes:nope'/><nick>{nick}</nick></join></iq>"
    )
}

fn ones(out: &Outcome) -> Vec<&Element> {
    out.sends
        .iter()
        .filter_map(|s| match s {
            Send::One(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn condition(out: &Outcome) -> String {
    let e = ones(out)
        .into_iter()
        .find(|e| e.attr("type") == Some("error"))
        .expect("an error reply");
    e.get_child("error", crate::stanza::NS_STANZA)
        .and_then(|e| e.children().next())
        .map(|c| c.name().to_owned())
        .expect("condition")
}

#[test]
fn join_subscribes_granted_nodes_and_reports_id_and_nick() {
    let mut ch = new_channel();
    let out = run(&mut ch, &join("alice@x/phone", "alice"));
    let result = ones(&out)[0];
    assert_eq!(result.attr("type"), Some("result"));
    let j = result.get_child("join", NS_CORE).expect("join");
    let id = j.attr("id").expect("id");
    assert_eq!(j.attr("jid"), Some(format!("{id}#{CH}").as_str()));
    let subs: Vec<_> = j.children().filter_map(|c| c.attr("node")).collect();
    assert_eq!(
        subs,
        [NODE_MESSAGES, NODE_PARTICIPANTS],
        "only nodes actually subscribed"
    );
    assert_eq!(
        j.get_child("nick", NS_CORE).map(|n| n.text()),
        Some("alice".into())
    );
    assert!(out.writes.iter().any(
        |w| matches!(w, Write::Participant { row, .. } if row.direct_jids == ["alice@x/phone"])
    ));
    assert_eq!(ch.addresses("alice@x"), ["alice@x/phone"]);
}

#[test]
fn a_pam_join_is_reached_at_the_bare_jid() {
    let mut ch = new_channel();
    run(&mut ch, &join("bob@y", "bob"));
    assert_eq!(ch.addresses("bob@y"), ["bob@y"]);
}

#[test]
fn join_refusals() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    assert_eq!(
        condition(&run(&mut ch, &join("bob@x/b", "Alice"))),
        "conflict"
    );
    let nick_less = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='bob@x/b' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='{NODE_MESSAGES}'/></join></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &nick_less)), "not-acceptable");
    let only_missing = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='bob@x/b' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='urn:xmpp:mix:nodes:nope'/><nick>b</nick></join></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &only_missing)), "item-not-found");
    assert!(
        ch.participant("bob@x").is_none(),
        "a failed join leaves nothing"
    );
    let malformed = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='bob@x/b' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe/><nick>b</nick></join></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &malformed)), "bad-request");
}

#[test]
fn messages_are_archived_and_reflected_with_mix_and_stanza_id() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@y", "bob"));
    let out = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='c1' from='alice@x/a' to='{CH}'>\
             <body>hi</body><origin-id xmlns='{NS_SID}' id='o1'/>\
             <stanza-id xmlns='{NS_SID}' id='forged' by='{CH}'/><mix xmlns='{NS_CORE}'><nick>evil</nick></mix></message>"
        ),
    );
    let Some(Write::Archive(rec)) = out.writes.first() else {
        panic!("archived first: {:?}", out.writes)
    };
    assert_eq!(rec.sender, "alice@x");
    assert!(!rec.stanza.contains("forged") && !rec.stanza.contains("evil"));
    let Send::Shared { stanza, to } = &out.sends[0] else {
        panic!("fan-out")
    };
    assert_eq!(&to[..], ["alice@x/a".to_owned(), "bob@y".to_owned()]);
    let pid = ch.participant("alice@x").expect("p").id.clone();
    assert_eq!(stanza.attr("from"), Some(format!("{CH}/{pid}").as_str()));
    assert_eq!(
        stanza.attr("id"),
        Some(rec.id.as_str()),
        "the reflected id is the archive id"
    );
    let sid = stanza.get_child("stanza-id", NS_SID).expect("stanza-id");
    assert_eq!(
        (sid.attr("by"), sid.attr("id")),
        (Some(CH), Some(rec.id.as_str()))
    );
    assert!(stanza.has_child("origin-id", NS_SID));
    let mix = stanza.get_child("mix", NS_CORE).expect("mix");
    assert_eq!(
        mix.get_child("nick", NS_CORE).map(|n| n.text()),
        Some("alice".into())
    );
    assert_eq!(
        mix.get_child("jid", NS_CORE).map(|n| n.text()),
        Some("alice@x".into())
    );
}

#[test]
fn non_participants_and_wrong_types_are_refused_and_not_archived() {
    let mut ch = new_channel();
    let out = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' from='eve@z/e' to='{CH}'><body>x</body></message>"
        ),
    );
    assert_eq!(condition(&out), "forbidden");
    assert!(out.writes.is_empty());
    run(&mut ch, &join("alice@x/a", "alice"));
    let out = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='chat' from='alice@x/a' to='{CH}'><body>x</body></message>"
        ),
    );
    assert_eq!(condition(&out), "bad-request");
}

#[test]
fn leave_retracts_the_participant_and_setnick_conflicts() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let setnick = |n: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='n' from='bob@x/b' to='{CH}'>\
             <setnick xmlns='{NS_CORE}'><nick>{n}</nick></setnick></iq>"
        )
    };
    assert_eq!(condition(&run(&mut ch, &setnick("ALICE"))), "conflict");
    let ok = run(&mut ch, &setnick("robert"));
    assert_eq!(ones(&ok)[0].attr("type"), Some("result"));
    let pid = ch.participant("alice@x").expect("alice").id.clone();
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='l' from='alice@x/a' to='{CH}'><leave xmlns='{NS_CORE}'/></iq>"
        ),
    );
    assert!(ch.participant("alice@x").is_none());
    let retract = out.sends.iter().find_map(|s| match s {
        Send::Fanout { stanza, to } if stanza.has_child("event", NS_PUBSUB_EVENT) => {
            Some((stanza, to))
        }
        _ => None,
    });
    let (ev, to) = retract.expect("participants retraction");
    assert_eq!(to, &["bob@x/b".to_owned()]);
    let retracted = ev
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("retract", NS_PUBSUB_EVENT))
        .and_then(|r| r.attr("id"));
    assert_eq!(retracted, Some(pid.as_str()));
    // The id stays with alice (CORE-20).
    run(&mut ch, &join("alice@x/a", "alice"));
    assert_eq!(ch.participant("alice@x").expect("back").id, pid);
}

#[test]
fn service_managed_nodes_refuse_publish_and_bans_remove_participants() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    for node in [NODE_PARTICIPANTS, NODE_MESSAGES, NODE_PRESENCE] {
        let out = run(
            &mut ch,
            &format!(
                "<iq xmlns='jabber:component:accept' type='set' id='p' from='owner@x/o' to='{CH}'>\
                 <pubsub xmlns='{NS_PUBSUB}'><publish node='{node}'><item id='z'><x xmlns='urn:x'/></item></publish></pubsub></iq>"
            ),
        );
        assert_eq!(condition(&out), "forbidden", "{node}");
    }
    let ban = |from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='b' from='{from}' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE_BANNED}'><item id='alice@x'/></publish></pubsub></iq>"
        )
    };
    assert_eq!(condition(&run(&mut ch, &ban("alice@x/a"))), "forbidden");
    let out = run(&mut ch, &ban("owner@x/o"));
    assert_eq!(ones(&out)[0].attr("type"), Some("result"));
    assert!(
        ch.participant("alice@x").is_none(),
        "a ban removes the participant"
    );
    assert_eq!(
        condition(&run(&mut ch, &join("alice@x/a", "alice"))),
        "forbidden"
    );
}

#[test]
fn config_is_owner_only_and_partial() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let set = |from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='c' from='{from}' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE_CONFIG}'><item>\
             <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_ADMIN}</value></field>\
             <field var='Mandatory Nicks'><value>false</value></field></x></item></publish></pubsub></iq>"
        )
    };
    assert_eq!(condition(&run(&mut ch, &set("alice@x/a"))), "forbidden");
    let read = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='r' from='alice@x/a' to='{CH}'>\
         <pubsub xmlns='{NS_PUBSUB}'><items node='{NODE_CONFIG}'/></pubsub></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &read)), "not-allowed");
    run(&mut ch, &set("owner@x/o"));
    assert!(!ch.config().mandatory_nicks);
    assert_eq!(ch.config().owners, ["owner@x"]);
    assert_eq!(ch.config().last_change_by.as_deref(), Some("owner@x"));
}

#[test]
fn presence_is_distributed_from_the_encoded_jid() {
    let mut ch = new_channel();
    let j = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='alice@x/a' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='{NODE_PRESENCE}'/><nick>alice</nick></join></iq>"
    );
    run(&mut ch, &j);
    let pid = ch.participant("alice@x").expect("p").id.clone();
    let out = run(
        &mut ch,
        &format!(
            "<presence xmlns='jabber:component:accept' from='alice@x/a' to='{CH}'><show>away</show></presence>"
        ),
    );
    let Send::Fanout { stanza, to } = &out.sends[0] else {
        panic!("presence fan-out")
    };
    assert_eq!(stanza.attr("from"), Some(format!("{pid}#{CH}/a").as_str()));
    assert_eq!(to, &["alice@x/a".to_owned()]);
    let mix = stanza.get_child("mix", NS_PRESENCE).expect("mix");
    assert_eq!(
        mix.get_child("jid", NS_PRESENCE).map(|j| j.text()),
        Some("alice@x/a".into())
    );
    let off = run(
        &mut ch,
        &format!(
            "<presence xmlns='jabber:component:accept' type='unavailable' from='alice@x/a' to='{CH}'/>"
        ),
    );
    let Send::Fanout { stanza, .. } = &off.sends[0] else {
        panic!("unavailable")
    };
    assert_eq!(stanza.attr("type"), Some("unavailable"));
    let read = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='r' from='alice@x/a' to='{CH}'>\
         <pubsub xmlns='{NS_PUBSUB}'><items node='{NODE_PRESENCE}'/></pubsub></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &read)), "forbidden", "PRES-02");
}

/// The owner publishes a config form with these (field, value) pairs.
fn configure(ch: &mut Channel, fields: &[(&str, &str)]) -> Outcome {
    let fields: String = fields
        .iter()
        .map(|(f, v)| format!("<field var='{f}'><value>{v}</value></field>"))
        .collect();
    run(
        ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='c' from='owner@x/o' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE_CONFIG}'><item>\
             <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_ADMIN}</value></field>\
             {fields}</x></item></publish></pubsub></iq>"
        ),
    )
}

fn fanouts(out: &Outcome) -> Vec<(&Element, &Vec<String>)> {
    out.sends
        .iter()
        .filter_map(|s| match s {
            Send::Fanout { stanza, to } => Some((stanza, to)),
            _ => None,
        })
        .collect()
}

#[test]
fn editors_get_the_config_form_to_fill_in_readers_the_result() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let read = |from: &str, node: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='get' id='r' from='{from}' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><items node='{node}'/></pubsub></iq>"
        )
    };
    let form_type = |out: &Outcome| {
        ones(out)[0]
            .get_child("pubsub", NS_PUBSUB)
            .and_then(|p| p.get_child("items", NS_PUBSUB))
            .and_then(|i| i.get_child("item", NS_PUBSUB))
            .and_then(|i| i.get_child("x", NS_DATA))
            .and_then(|x| x.attr("type"))
            .map(str::to_owned)
    };
    // ADM-07.
    assert_eq!(
        form_type(&run(&mut ch, &read("owner@x/o", NODE_CONFIG))).as_deref(),
        Some("form")
    );
    assert_eq!(
        form_type(&run(&mut ch, &read("owner@x/o", NODE_INFO))).as_deref(),
        Some("form")
    );
    assert_eq!(
        form_type(&run(&mut ch, &read("alice@x/a", NODE_INFO))).as_deref(),
        Some("result")
    );
}

#[test]
fn invitations_admit_the_invitee_once_and_add_it_to_allowed() {
    let mut ch = new_channel();
    configure(
        &mut ch,
        &[(
            "Nodes Present",
            "participants</value><value>presence</value><value>information</value><value>allowed</value><value>banned",
        )],
    );
    assert!(ch.pubsub.node(NODE_ALLOWED).is_some());
    assert_eq!(
        condition(&run(&mut ch, &join("carol@x/c", "carol"))),
        "forbidden"
    );
    run(&mut ch, &join("alice@x/a", "alice"));
    let invite = |from: &str, invitee: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='get' id='i' from='{from}' to='{CH}'>\
             <invite xmlns='{NS_MISC}'><invitee>{invitee}</invitee></invite></iq>"
        )
    };
    // A participant may not invite unless the channel says so; the owner may.
    assert_eq!(
        condition(&run(&mut ch, &invite("alice@x/a", "carol@x"))),
        "forbidden"
    );
    let out = run(&mut ch, &invite("owner@x/o", "carol@x/desk"));
    let inv = ones(&out)[0]
        .get_child("invite", NS_MISC)
        .and_then(|i| i.get_child("invitation", NS_MISC))
        .expect("invitation")
        .clone();
    let text = |n: &str| {
        inv.get_child(n, NS_MISC)
            .map(|e| e.text())
            .unwrap_or_default()
    };
    assert_eq!(text("inviter"), "owner@x");
    assert_eq!(text("invitee"), "carol@x");
    assert_eq!(text("channel"), CH);
    assert!(
        out.writes
            .iter()
            .any(|w| matches!(w, Write::Invitation { .. }))
    );
    let with_invitation = |from: &str, inv: &Element| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='j' from='{from}' to='{CH}'>\
             <join xmlns='{NS_CORE}'><subscribe node='{NODE_MESSAGES}'/><nick>n{}</nick>{}</join></iq>",
            from.len(),
            to_string(inv)
        )
    };
    // Somebody else cannot use carol's invitation; a forged token does nothing.
    assert_eq!(
        condition(&run(&mut ch, &with_invitation("dave@x/d", &inv))),
        "forbidden"
    );
    let mut forged = inv.clone();
    forged.remove_child("token", NS_MISC);
    forged.append_child(text_elem("token", NS_MISC, "guess"));
    assert_eq!(
        condition(&run(&mut ch, &with_invitation("carol@x/c", &forged))),
        "forbidden"
    );
    let out = run(&mut ch, &with_invitation("carol@x/c", &inv));
    assert_eq!(ones(&out)[0].attr("type"), Some("result"));
    assert!(ch.participant("carol@x").is_some());
    assert!(ch.listed(NODE_ALLOWED, "carol@x"), "§4: added to allowed");
    assert!(out.writes.iter().any(|w| matches!(
        w,
        Write::Invitation { row, .. } if row.state == mam_store::InvitationState::Used
    )));
    // Used up: leaving and coming back with it again is a plain join (allowed now), but the
    // token itself no longer validates.
    run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='l' from='carol@x/c' to='{CH}'>\
             <leave xmlns='{NS_CORE}'/></iq>"
        ),
    );
    assert_eq!(
        condition(&run(&mut ch, &with_invitation("carol@x/c", &inv))),
        "forbidden"
    );
}

#[test]
fn participants_invite_only_where_the_channel_allows_it_and_bans_win() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    configure(
        &mut ch,
        &[(
            "Participation Addition by Invitation from Participant",
            "true",
        )],
    );
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='get' id='i' from='alice@x/a' to='{CH}'>\
             <invite xmlns='{NS_MISC}'><invitee>bob@x</invitee></invite></iq>"
        ),
    );
    assert_eq!(ones(&out)[0].attr("type"), Some("result"));
    run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='b' from='owner@x/o' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE_BANNED}'><item id='mallory@x'/></publish></pubsub></iq>"
        ),
    );
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='get' id='i' from='alice@x/a' to='{CH}'>\
             <invite xmlns='{NS_MISC}'><invitee>mallory@x</invitee></invite></iq>"
        ),
    );
    assert_eq!(condition(&out), "forbidden");
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='get' id='i' from='alice@x/a' to='{CH}'>\
             <invite xmlns='{NS_MISC}'/></iq>"
        ),
    );
    assert_eq!(condition(&out), "bad-request");
}

fn archived(ch: &Channel, out: &Outcome) -> mam_store::ArchiveRow {
    let _ = ch;
    out.writes
        .iter()
        .find_map(|w| match w {
            Write::Archive(r) => Some(mam_store::ArchiveRow {
                id: r.id.clone(),
                ts: r.ts,
                sender: r.sender.clone(),
                stanza: r.stanza.clone(),
                retracted: false,
            }),
            _ => None,
        })
        .expect("archived")
}

fn resolve(ch: &mut Channel, out: Outcome, found: Option<mam_store::ArchiveRow>) -> Outcome {
    let lookup = out.lookup.expect("a lookup");
    let mut ids = Counter(100);
    let nicks = NickRegistry::default();
    let mut ctx = Ctx {
        now_us: 3_000_000,
        ids: &mut ids,
        nicks: &nicks,
    };
    ch.resolve(lookup, found, &mut ctx)
}

#[test]
fn retraction_needs_the_rights_the_config_gives_and_leaves_a_tombstone() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let sent = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='m1' from='alice@x/a' to='{CH}'>\
             <body>oops</body><origin-id xmlns='{NS_SID}' id='o1'/></message>"
        ),
    );
    let original = archived(&ch, &sent);
    let retract = |from: &str, body: &str| {
        format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='r1' from='{from}' to='{CH}'>\
             <retract xmlns='{NS_RETRACT}' id='{}'/>{body}</message>",
            original.id
        )
    };
    // 'User Message Retraction' is off by default (XEP-0406).
    let out = run(&mut ch, &retract("alice@x/a", "<body>retracted</body>"));
    let refused = resolve(&mut ch, out, Some(original.clone()));
    assert_eq!(condition(&refused), "forbidden");
    assert!(refused.writes.is_empty());
    configure(&mut ch, &[("User Message Retraction", "true")]);
    // Someone else's message stays someone else's.
    let out = run(&mut ch, &retract("bob@x/b", ""));
    assert_eq!(
        condition(&resolve(&mut ch, out, Some(original.clone()))),
        "forbidden"
    );
    // Unknown ids, and ids already retracted, are item-not-found.
    let out = run(&mut ch, &retract("alice@x/a", ""));
    assert_eq!(condition(&resolve(&mut ch, out, None)), "item-not-found");

    let out = run(&mut ch, &retract("alice@x/a", "<body>retracted</body>"));
    let done = resolve(&mut ch, out, Some(original.clone()));
    let tomb = done
        .writes
        .iter()
        .find_map(|w| match w {
            Write::Tombstone { id, stanza, .. } => Some((id.clone(), st(stanza))),
            _ => None,
        })
        .expect("tombstone");
    assert_eq!(tomb.0, original.id);
    assert!(
        tomb.1.get_child("body", NS_CLIENT).is_none(),
        "the body is gone"
    );
    assert!(tomb.1.get_child("origin-id", NS_SID).is_some());
    let retraction = archived(&ch, &done);
    let r1 = tomb
        .1
        .get_child("retracted", NS_RETRACT)
        .expect("0424 tombstone");
    assert_eq!(r1.attr("id"), Some(retraction.id.as_str()));
    assert_eq!(
        tomb.1
            .get_child("retracted", NS_MISC)
            .and_then(|r| r.attr("by")),
        Some("alice@x")
    );
    // Reflected to every messages subscriber, in both forms.
    let (msg, to) = fanouts(&done)[0];
    assert_eq!(to.len(), 2);
    assert_eq!(
        msg.get_child("retract", NS_RETRACT)
            .and_then(|r| r.attr("id")),
        Some(original.id.as_str())
    );
    assert_eq!(
        msg.get_child("retract", NS_MISC).and_then(|r| r.attr("id")),
        Some(original.id.as_str())
    );
    assert!(
        st(&retraction.stanza)
            .get_child("retract", NS_RETRACT)
            .is_some()
    );
    // A retraction is not retracted in turn.
    let out = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='r2' from='alice@x/a' to='{CH}'>\
             <retract xmlns='{NS_MISC}' id='{}'/></message>",
            retraction.id
        ),
    );
    assert_eq!(
        condition(&resolve(&mut ch, out, Some(retraction))),
        "not-acceptable"
    );
}

#[test]
fn mix_retractions_carry_no_body_and_moderation_is_for_admins() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let sent = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='m1' from='alice@x/a' to='{CH}'>\
             <body>spam</body></message>"
        ),
    );
    let original = archived(&ch, &sent);
    let with_body = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='r' from='alice@x/a' to='{CH}'>\
             <retract xmlns='{NS_MISC}' id='{}'/><body>x</body></message>",
            original.id
        ),
    );
    assert_eq!(condition(&with_body), "bad-request");
    assert!(with_body.lookup.is_none());
    let moderate = |from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='mod' from='{from}' to='{CH}'>\
             <moderate xmlns='{NS_MODERATE}' id='{}'><retract xmlns='{NS_RETRACT}'/>\
             <reason>spam</reason></moderate></iq>",
            original.id
        )
    };
    assert_eq!(
        condition(&run(&mut ch, &moderate("alice@x/a"))),
        "forbidden"
    );
    let out = run(&mut ch, &moderate("owner@x/o"));
    let done = resolve(&mut ch, out, Some(original));
    let (msg, _) = fanouts(&done)[0];
    assert_eq!(msg.attr("from"), Some(CH), "XEP-0425: from the channel");
    let r = msg.get_child("retract", NS_RETRACT).expect("retract");
    assert!(r.get_child("moderated", NS_MODERATE).is_some());
    assert_eq!(
        r.get_child("reason", NS_RETRACT)
            .map(|e| e.text())
            .as_deref(),
        Some("spam")
    );
    // The IQ result comes after the broadcast.
    assert!(matches!(done.sends.last(), Some(Send::One(e)) if e.attr("type") == Some("result")));
}

#[test]
fn private_messages_are_switched_to_the_real_jid_and_never_archived() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let bob = ch.participant("bob@x").expect("bob").id.clone();
    let alice = ch.participant("alice@x").expect("alice").id.clone();
    let pm = |from: &str, to: &str, ty: &str| {
        format!(
            "<message xmlns='jabber:component:accept' type='{ty}' id='pm' from='{from}' to='{to}'>\
             <body>psst</body><stanza-id xmlns='{NS_SID}' id='forged' by='{CH}'/></message>"
        )
    };
    let out = run(&mut ch, &pm("alice@x/a", &format!("{bob}#{CH}"), "chat"));
    assert!(out.writes.is_empty(), "ANON-04: not archived");
    let m = ones(&out)[0];
    assert_eq!(m.attr("to"), Some("bob@x"));
    assert_eq!(m.attr("from"), Some(format!("{alice}#{CH}/a").as_str()));
    assert!(
        m.get_child("stanza-id", NS_SID).is_none(),
        "forged id stripped"
    );
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("alice@x/a", &format!("{bob}#{CH}"), "groupchat")
        )),
        "bad-request"
    );
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("eve@x/e", &format!("{bob}#{CH}"), "chat")
        )),
        "forbidden"
    );
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("alice@x/a", &format!("nobody#{CH}"), "chat")
        )),
        "item-not-found"
    );
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("alice@x/a", &format!("{bob}#{CH}/offline"), "chat")
        )),
        "recipient-unavailable"
    );
    // Bob blocks private messages (XEP-0404 §5).
    let prefs = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='p' from='bob@x/b' to='{CH}'>\
             <user-preference xmlns='{NS_ANON}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
             <field var='Private Messages'><value>block</value></field></x></user-preference></iq>"
        ),
    );
    let fields: Vec<_> = ones(&prefs)[0]
        .get_child("user-preference", NS_ANON)
        .and_then(|u| u.get_child("x", NS_DATA))
        .expect("form")
        .children()
        .filter_map(|f| f.attr("var"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        fields,
        [
            "FORM_TYPE",
            "JID Visibility",
            "Private Messages",
            "vCard",
            "Presence"
        ],
        "all preferences are listed"
    );
    assert!(prefs.writes.iter().any(|w| matches!(
        w,
        Write::Participant { row, .. } if row.preferences.get("Private Messages").map(String::as_str) == Some("block")
    )));
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("alice@x/a", &format!("{bob}#{CH}"), "chat")
        )),
        "not-allowed"
    );
    configure(&mut ch, &[("Private Messages", "false")]);
    assert_eq!(
        condition(&run(
            &mut ch,
            &pm("bob@x/b", &format!("{alice}#{CH}"), "chat")
        )),
        "not-allowed"
    );
}

#[test]
fn iq_relay_goes_to_the_real_jid_and_the_answer_comes_back() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let bob = ch.participant("bob@x").expect("bob").id.clone();
    let alice = ch.participant("alice@x").expect("alice").id.clone();
    run(
        &mut ch,
        &format!("<presence xmlns='jabber:component:accept' from='bob@x/b' to='{CH}'/>"),
    );
    let ping = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='ping1' from='alice@x/a' to='{bob}#{CH}/b'>\
         <ping xmlns='urn:xmpp:ping'/></iq>"
    );
    let out = run(&mut ch, &ping);
    let fwd = ones(&out)[0].clone();
    assert_eq!(fwd.attr("to"), Some("bob@x/b"));
    assert_eq!(fwd.attr("from"), Some(format!("{alice}#{CH}/a").as_str()));
    let relay_id = fwd.attr("id").expect("id").to_owned();
    assert_ne!(relay_id, "ping1");
    // Only the target may answer; the answer returns under the original id.
    let answer = |from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='result' id='{relay_id}' from='{from}' to='{alice}#{CH}/a'/>"
        )
    };
    assert!(run(&mut ch, &answer("eve@x/e")).sends.is_empty());
    let back = run(&mut ch, &answer("bob@x/b"));
    let r = ones(&back)[0];
    assert_eq!(r.attr("to"), Some("alice@x/a"));
    assert_eq!(r.attr("id"), Some("ping1"));
    assert_eq!(r.attr("from"), Some(format!("{bob}#{CH}/b").as_str()));
    assert!(
        run(&mut ch, &answer("bob@x/b")).sends.is_empty(),
        "answered once"
    );
    // vCards only where the target allows them (XEP-0404 §5 default: block).
    let vcard = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='v' from='alice@x/a' to='{bob}#{CH}'>\
         <vCard xmlns='vcard-temp'/></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &vcard)), "forbidden");
    let outsider = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='o' from='eve@x/e' to='{bob}#{CH}/b'>\
         <ping xmlns='urn:xmpp:ping'/></iq>"
    );
    assert_eq!(condition(&run(&mut ch, &outsider)), "forbidden");
}

#[test]
fn switching_to_jid_hidden_rewrites_participants_and_removes_conflicting_preferences() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let always = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='carol@x/c' to='{CH}'>\
         <join xmlns='{NS_ANON}'><subscribe node='{NODE_MESSAGES}'/><nick>carol</nick>\
         <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
         <field var='JID Visibility'><value>always</value></field></x></join></iq>"
    );
    let joined = run(&mut ch, &always);
    let j = ones(&joined)[0]
        .get_child("join", NS_ANON)
        .expect("join result");
    assert!(
        j.get_child("x", NS_DATA).is_some(),
        "the result lists the preferences"
    );
    let never = always.replace("always", "never").replace("carol", "dave");
    assert_eq!(condition(&run(&mut ch, &never)), "not-acceptable");

    let out = configure(&mut ch, &[("JID Visibility", "jid-hidden")]);
    assert!(ch.is_hidden());
    assert!(
        ch.participant("carol@x").is_none(),
        "'always' cannot hold in a hidden channel"
    );
    let alice = ch.participant("alice@x").expect("alice").id.clone();
    let item = ch
        .pubsub
        .node(NODE_PARTICIPANTS)
        .and_then(|n| n.item(&alice))
        .and_then(|i| parse(&i.payload))
        .expect("alice's item");
    assert!(item.get_child("jid", NS_CORE).is_none(), "ANON-02");
    assert!(
        ch.pubsub
            .node(NODE_JIDMAP)
            .and_then(|n| n.item(&alice))
            .is_some()
    );
    assert!(out.writes.iter().any(
        |w| matches!(w, Write::Participant { row, .. } if row.jid == "carol@x" && !row.active)
    ));
}

#[test]
fn end_of_life_must_be_a_future_datetime_and_expires_the_channel() {
    let mut ch = new_channel();
    assert_eq!(
        condition(&configure(&mut ch, &[("End of Life", "yesterday")])),
        "not-acceptable"
    );
    assert_eq!(
        condition(&configure(
            &mut ch,
            &[("End of Life", "1970-01-01T00:00:01Z")]
        )),
        "not-acceptable"
    );
    let out = configure(&mut ch, &[("End of Life", "1970-01-01T00:00:10Z")]);
    assert!(out.writes.iter().any(|w| matches!(
        w,
        Write::EndOfLife {
            at_us: Some(10_000_000),
            ..
        }
    )));
    assert!(!ch.expire(9_999_999).destroyed);
    let gone = ch.expire(10_000_000);
    assert!(gone.destroyed);
    assert!(matches!(gone.writes[0], Write::DestroyChannel { .. }));
}

#[test]
fn a_registered_nick_replaces_the_channel_nick_and_nobody_else_keeps_it() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let mut ids = Counter(0);
    let nicks = NickRegistry::default();
    let mut ctx = Ctx {
        now_us: 2_000_000,
        ids: &mut ids,
        nicks: &nicks,
    };
    let out = ch.nick_registered("alice@x", "witch", &mut ctx);
    assert_eq!(
        ch.participant("alice@x").and_then(|p| p.nick.as_deref()),
        Some("witch")
    );
    assert!(
        !fanouts(&out).is_empty(),
        "participants node subscribers are told"
    );
    // MISC-05: nobody else keeps a registered nick: bob is renamed, alice gets it.
    let bob_id = ch.participant("bob@x").expect("bob").id.clone();
    let out = ch.nick_registered("alice@x", "Bob", &mut ctx);
    assert_eq!(
        ch.participant("alice@x").and_then(|p| p.nick.as_deref()),
        Some("Bob")
    );
    assert_eq!(
        ch.participant("bob@x").and_then(|p| p.nick.clone()),
        Some(format!("Bob-{bob_id}"))
    );
    assert_eq!(
        fanouts(&out).len(),
        2,
        "both participant items are republished"
    );
}

#[test]
fn avatar_nodes_follow_nodes_present_and_the_update_rights() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    // XEP-0406 §3.6: the avatar nodes are among the default nodes; the owner can drop them.
    assert!(ch.pubsub.node(NODE_AVATAR_METADATA).is_some());
    configure(
        &mut ch,
        &[(
            "Nodes Present",
            "participants</value><value>presence</value><value>information</value><value>banned",
        )],
    );
    assert!(ch.pubsub.node(NODE_AVATAR_METADATA).is_none());
    assert!(ch.pubsub.node(NODE_AVATAR_DATA).is_none());
    configure(
        &mut ch,
        &[(
            "Nodes Present",
            "participants</value><value>presence</value><value>information</value><value>banned</value><value>avatar",
        )],
    );
    let publish = |from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='a' from='{from}' to='{CH}'>\
             <pubsub xmlns='{NS_PUBSUB}'><publish node='{NODE_AVATAR_METADATA}'><item id='abc'>\
             <metadata xmlns='urn:xmpp:avatar:metadata'/></item></publish></pubsub></iq>"
        )
    };
    assert_eq!(condition(&run(&mut ch, &publish("alice@x/a"))), "forbidden");
    let ok = run(&mut ch, &publish("owner@x/o"));
    assert_eq!(ones(&ok)[0].attr("type"), Some("result"));
    let read = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='r' from='alice@x/a' to='{CH}'>\
         <pubsub xmlns='{NS_PUBSUB}'><items node='{NODE_AVATAR_METADATA}'/></pubsub></iq>"
    );
    assert_eq!(ones(&run(&mut ch, &read))[0].attr("type"), Some("result"));
}

#[test]
fn the_kept_message_audience_follows_joins_leaves_and_subscriptions() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let say = format!(
        "<message xmlns='jabber:component:accept' type='groupchat' id='m' from='alice@x/a' to='{CH}'><body>hi</body></message>"
    );
    let audience = |out: &Outcome| match &out.sends[0] {
        Send::Shared { to, .. } => to.to_vec(),
        other => panic!("not a shared fan-out: {other:?}"),
    };
    assert_eq!(audience(&run(&mut ch, &say)), ["alice@x/a"]);
    run(&mut ch, &join("bob@y", "bob"));
    assert_eq!(audience(&run(&mut ch, &say)), ["alice@x/a", "bob@y"]);
    run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='u' from='bob@y' to='{CH}'>\
             <update-subscription xmlns='{NS_CORE}'><unsubscribe node='{NODE_MESSAGES}'/></update-subscription></iq>"
        ),
    );
    assert_eq!(audience(&run(&mut ch, &say)), ["alice@x/a"]);
    run(&mut ch, &join("alice@x/laptop", "alice"));
    assert_eq!(
        audience(&run(&mut ch, &say)),
        ["alice@x/a", "alice@x/laptop"]
    );
}

#[test]
fn a_loaded_channel_probes_participants_unless_they_keep_presence_to_themselves() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@y", "bob"));
    run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='p' from='bob@y' to='{CH}'>\
             <user-preference xmlns='{NS_ANON}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
             <field var='Presence'><value>not share</value></field></x></user-preference></iq>"
        ),
    );
    let probes = ch.startup_probes();
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].attr("type"), Some("probe"));
    assert_eq!(probes[0].attr("to"), Some("alice@x"));
    assert_eq!(probes[0].attr("from"), Some(CH));
}

#[test]
fn open_presence_lets_outsiders_register_and_mandatory_presence_gates_messages() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let j = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='bob@x/b' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='{NODE_PRESENCE}'/><nick>bob</nick></join></iq>"
    );
    run(&mut ch, &j);
    let outsider = format!("<presence xmlns='jabber:component:accept' from='eve@x/e' to='{CH}'/>");
    assert!(
        run(&mut ch, &outsider).sends.is_empty(),
        "'Open Presence' off: ignored"
    );
    configure(&mut ch, &[("Open Presence", "true")]);
    let out = run(&mut ch, &outsider);
    let (pres, to) = fanouts(&out)[0];
    assert_eq!(to, &["bob@x/b".to_owned()]);
    let from = pres.attr("from").expect("from");
    assert!(from.ends_with(&format!("#{CH}/e")), "{from}");
    assert!(
        ch.participant("eve@x").is_none(),
        "presence does not make a participant"
    );
    assert!(
        out.writes.iter().any(
            |w| matches!(w, Write::Participant { row, .. } if row.jid == "eve@x" && !row.active)
        ),
        "the stable id is kept"
    );

    configure(&mut ch, &[("Participants Must Provide Presence", "true")]);
    let say = format!(
        "<message xmlns='jabber:component:accept' type='groupchat' id='m' from='alice@x/a' to='{CH}'><body>hi</body></message>"
    );
    assert_eq!(condition(&run(&mut ch, &say)), "not-acceptable");
    run(
        &mut ch,
        &format!("<presence xmlns='jabber:component:accept' from='alice@x/a' to='{CH}'/>"),
    );
    assert!(matches!(run(&mut ch, &say).sends[0], Send::Shared { .. }));
}

fn mam_request(out: &Outcome) -> &MamRequest {
    out.query.as_ref().expect("a query for the shell")
}

#[test]
fn node_changes_are_archived_for_mam_by_node() {
    let mut ch = new_channel();
    let out = run(&mut ch, &join("alice@x/a", "alice"));
    let archived: Vec<_> = out
        .writes
        .iter()
        .filter_map(|w| match w {
            Write::Archive(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].node, NODE_PARTICIPANTS);
    let ev = st(&archived[0].stanza);
    let item = ev
        .get_child("event", NS_PUBSUB_EVENT)
        .and_then(|e| e.get_child("items", NS_PUBSUB_EVENT))
        .and_then(|i| i.get_child("item", NS_PUBSUB_EVENT))
        .expect("shaped like the event notification (XEP-0442)");
    assert!(item.get_child("participant", NS_CORE).is_some());

    let query = |node: &str, from: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='q' from='{from}' to='{CH}'>\
             <query xmlns='{NS_MAM}' node='{node}'/></iq>"
        )
    };
    let out = run(&mut ch, &query(NODE_PARTICIPANTS, "alice@x/a"));
    assert_eq!(mam_request(&out).query.node, NODE_PARTICIPANTS);
    // Config history only for those who may read the config node (owners by default).
    assert_eq!(
        condition(&run(&mut ch, &query(NODE_CONFIG, "alice@x/a"))),
        "forbidden"
    );
    assert!(
        run(&mut ch, &query(NODE_CONFIG, "owner@x/o"))
            .query
            .is_some()
    );
    assert_eq!(
        condition(&run(&mut ch, &query(NODE_PRESENCE, "alice@x/a"))),
        "feature-not-implemented"
    );
    assert_eq!(
        condition(&run(&mut ch, &query(NODE_ALLOWED, "owner@x/o"))),
        "feature-not-implemented"
    );
    assert_eq!(
        condition(&run(&mut ch, &query(NODE_MESSAGES, "eve@x/e"))),
        "forbidden"
    );
}

#[test]
fn mam_form_fields_ids_fulltext_and_metadata() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let form = |fields: &str| {
        format!(
            "<iq xmlns='jabber:component:accept' type='set' id='q' from='alice@x/a' to='{CH}'>\
             <query xmlns='{NS_MAM}' queryid='f'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{NS_MAM}</value></field>{fields}</x></query></iq>"
        )
    };
    let out = run(
        &mut ch,
        &form(
            "<field var='ids'><value>a</value><value>b</value></field>\
               <field var='{urn:xmpp:fulltext:0}fulltext'><value>cauldron bubble</value></field>",
        ),
    );
    let q = &mam_request(&out).query;
    assert_eq!(q.ids, ["a", "b"]);
    assert_eq!(q.fulltext.as_deref(), Some("cauldron bubble"));
    let many: String = (0..=mam::MAX_PAGE)
        .map(|i| format!("<value>{i}</value>"))
        .collect();
    assert_eq!(
        condition(&run(
            &mut ch,
            &form(&format!("<field var='ids'>{many}</field>"))
        )),
        "policy-violation"
    );
    let get = format!(
        "<iq xmlns='jabber:component:accept' type='get' id='g' from='alice@x/a' to='{CH}'>\
         <query xmlns='{NS_MAM}'/></iq>"
    );
    let vars: Vec<String> = ones(&run(&mut ch, &get))[0]
        .get_child("query", NS_MAM)
        .and_then(|q| q.get_child("x", NS_DATA))
        .expect("form")
        .children()
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect();
    assert!(vars.iter().any(|v| v == "ids"));
    assert!(vars.iter().any(|v| v == mam::FULLTEXT_FIELD), "MAM-Q-12");
    let meta = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='get' id='m' from='alice@x/a' to='{CH}'>\
             <metadata xmlns='{NS_MAM}'/></iq>"
        ),
    );
    let req = mam_request(&meta);
    assert_eq!(req.kind, mam::MamKind::Metadata);
    let empty = mam::metadata(req, None);
    assert!(
        empty
            .get_child("metadata", NS_MAM)
            .expect("m")
            .children()
            .next()
            .is_none()
    );
    let bounds = mam_store::ArchiveBounds {
        first: ("one".into(), 1_000_000),
        last: ("two".into(), 2_000_000),
    };
    let full = mam::metadata(req, Some(&bounds));
    let m = full.get_child("metadata", NS_MAM).expect("m");
    assert_eq!(
        m.get_child("start", NS_MAM).and_then(|s| s.attr("id")),
        Some("one")
    );
    assert_eq!(
        m.get_child("end", NS_MAM).and_then(|s| s.attr("id")),
        Some("two")
    );
}

#[test]
fn results_of_a_now_hidden_channel_carry_no_real_jid() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    configure(&mut ch, &[("JID Visibility", "jid-hidden")]);
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='q' from='owner@x/o' to='{CH}'>\
             <query xmlns='{NS_MAM}'/></iq>"
        ),
    );
    let req = mam_request(&out);
    assert!(req.hide_jids);
    let page = mam_store::ArchivePage {
        rows: vec![mam_store::ArchiveRow {
            id: "a1".into(),
            ts: 1,
            sender: "alice@x".into(),
            stanza: format!(
                "<message xmlns='jabber:client' from='{CH}/p1' type='groupchat'><body>hi</body>\
                 <mix xmlns='{NS_CORE}'><nick>alice</nick><jid>alice@x</jid></mix></message>"
            ),
            retracted: false,
        }],
        complete: true,
    };
    let results = mam::results(req, &page);
    let text = to_string(&results[0]);
    assert!(!text.contains("alice@x"), "{text}");
    assert!(text.contains("<nick>alice</nick>"));
}

#[test]
fn an_admin_retracting_another_s_message_is_sent_as_moderation() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("owner@x/o", "owner"));
    let sent = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='m1' from='alice@x/a' to='{CH}'><body>spam</body></message>"
        ),
    );
    let original = archived(&ch, &sent);
    let out = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='r' from='owner@x/o' to='{CH}'>\
             <retract xmlns='{NS_RETRACT}' id='{}'/><body>fallback</body></message>",
            original.id
        ),
    );
    let done = resolve(&mut ch, out, Some(original));
    let (msg, _) = fanouts(&done)[0];
    // XEP-0424 §6: clients apply a plain retraction only from the sender.
    assert_eq!(msg.attr("from"), Some(CH));
    let owner_id = ch.participant("owner@x").expect("owner").id.clone();
    let m = msg
        .get_child("retract", NS_RETRACT)
        .and_then(|r| r.get_child("moderated", NS_MODERATE))
        .expect("moderated");
    assert_eq!(
        m.get_child("occupant-id", NS_OCCUPANT_ID)
            .and_then(|o| o.attr("id")),
        Some(owner_id.as_str())
    );
    let tomb = done
        .writes
        .iter()
        .find_map(|w| match w {
            Write::Tombstone { stanza, .. } => Some(st(stanza)),
            _ => None,
        })
        .expect("tombstone");
    assert!(
        tomb.get_child("retracted", NS_RETRACT)
            .and_then(|r| r.get_child("moderated", NS_MODERATE))
            .and_then(|m| m.get_child("occupant-id", NS_OCCUPANT_ID))
            .is_some(),
        "XEP-0425: the tombstone names the moderator's occupant id"
    );
}

#[test]
fn bounced_private_messages_go_back_and_vcards_go_to_the_account() {
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    run(&mut ch, &join("bob@x/b", "bob"));
    let bob = ch.participant("bob@x").expect("bob").id.clone();
    run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='chat' id='pm1' from='alice@x/a' to='{bob}#{CH}'><body>hi</body></message>"
        ),
    );
    let bounce = run(
        &mut ch,
        &format!(
            "<message xmlns='jabber:component:accept' type='error' id='pm1' from='bob@x' to='someone#{CH}/a'>\
             <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        ),
    );
    let back = ones(&bounce)[0];
    assert_eq!(back.attr("to"), Some("alice@x/a"));
    assert_eq!(back.attr("from"), Some(format!("{bob}#{CH}").as_str()));
    assert!(
        run(
            &mut ch,
            &format!(
                "<message xmlns='jabber:component:accept' type='error' id='pm1' from='bob@x' to='x#{CH}'/>"
            )
        )
        .sends
        .is_empty(),
        "one bounce, one error; unknown ones are dropped"
    );
    // Bob allows vCards; a request to his client goes to his account.
    run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='p' from='bob@x/b' to='{CH}'>\
             <user-preference xmlns='{NS_ANON}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
             <field var='vCard'><value>allow</value></field></x></user-preference></iq>"
        ),
    );
    run(
        &mut ch,
        &format!("<presence xmlns='jabber:component:accept' from='bob@x/b' to='{CH}'/>"),
    );
    let out = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='get' id='v' from='alice@x/a' to='{bob}#{CH}/b'><vCard xmlns='vcard-temp'/></iq>"
        ),
    );
    assert_eq!(ones(&out)[0].attr("to"), Some("bob@x"));
}

#[test]
fn jid_maybe_visible_shows_only_those_who_always_want_it() {
    let mut ch = new_channel();
    configure(&mut ch, &[("JID Visibility", "jid-optionally-visible")]);
    assert!(ch.is_hidden());
    assert!(ch.pubsub.node(NODE_JIDMAP).is_some());
    run(&mut ch, &join("alice@x/a", "alice"));
    let always = format!(
        "<iq xmlns='jabber:component:accept' type='set' id='j' from='carol@x/c' to='{CH}'>\
         <join xmlns='{NS_CORE}'><subscribe node='{NODE_MESSAGES}'/><nick>carol</nick>\
         <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
         <field var='JID Visibility'><value>always</value></field></x></join></iq>"
    );
    assert_eq!(ones(&run(&mut ch, &always))[0].attr("type"), Some("result"));
    assert!(!ch.shows_jid("alice@x"));
    assert!(ch.shows_jid("carol@x"));
    let item = |ch: &Channel, who: &str| {
        let id = ch.participant(who).expect("p").id.clone();
        ch.pubsub
            .node(NODE_PARTICIPANTS)
            .and_then(|n| n.item(&id))
            .and_then(|i| parse(&i.payload))
            .expect("item")
    };
    assert!(item(&ch, "alice@x").get_child("jid", NS_CORE).is_none());
    assert!(item(&ch, "carol@x").get_child("jid", NS_CORE).is_some());
    let say = |from: &str| {
        format!(
            "<message xmlns='jabber:component:accept' type='groupchat' id='m' from='{from}' to='{CH}'><body>hi</body></message>"
        )
    };
    let shown = |out: &Outcome| match &out.sends[0] {
        Send::Shared { stanza, .. } => stanza
            .get_child("mix", NS_CORE)
            .and_then(|m| m.get_child("jid", NS_CORE))
            .is_some(),
        other => panic!("{other:?}"),
    };
    assert!(!shown(&run(&mut ch, &say("alice@x/a"))));
    assert!(shown(&run(&mut ch, &say("carol@x/c"))));
    // Alice changes her mind: her item now shows her JID.
    let prefs = run(
        &mut ch,
        &format!(
            "<iq xmlns='jabber:component:accept' type='set' id='p' from='alice@x/a' to='{CH}'>\
             <user-preference xmlns='{NS_ANON}'><x xmlns='{NS_DATA}' type='submit'>\
             <field var='FORM_TYPE'><value>{NS_ANON}</value></field>\
             <field var='JID Visibility'><value>always</value></field></x></user-preference></iq>"
        ),
    );
    assert!(!fanouts(&prefs).is_empty());
    assert!(item(&ch, "alice@x").get_child("jid", NS_CORE).is_some());
}

#[test]
fn archive_time_never_goes_back_within_a_channel() {
    // Time filters become bounds on the archive order (mam_store::archive_page), which is
    // exact only if archive time follows archive order, whatever the clock does.
    let mut ch = new_channel();
    run(&mut ch, &join("alice@x/a", "alice"));
    let say = |ch: &mut Channel, now_us: i64| {
        let mut ids = Counter(now_us as u64);
        let nicks = NickRegistry::default();
        let mut ctx = Ctx {
            now_us,
            ids: &mut ids,
            nicks: &nicks,
        };
        let out = ch.handle(
            &st(&format!(
                "<message xmlns='jabber:component:accept' type='groupchat' from='alice@x/a' to='{CH}'><body>hi</body></message>"
            )),
            &mut ctx,
        );
        out.writes
            .iter()
            .find_map(|w| match w {
                Write::Archive(r) => Some(r.ts),
                _ => None,
            })
            .expect("archived")
    };
    assert_eq!(say(&mut ch, 5_000_000), 5_000_000);
    assert_eq!(say(&mut ch, 4_000_000), 5_000_000, "the clock stepped back");
    assert_eq!(say(&mut ch, 6_000_000), 6_000_000);
}
