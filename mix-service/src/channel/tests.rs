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
    let Send::Fanout { stanza, to } = &out.sends[0] else {
        panic!("fan-out")
    };
    assert_eq!(to, &["alice@x/a".to_owned(), "bob@y".to_owned()]);
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
