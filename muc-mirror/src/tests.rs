//! Room rules without sockets or clocks: entering, talking across both faces, rights,
//! administration and configuration.

use jid::BareJid;
use minidom::Element;
use mix_service::channel::{Channel, Ctx, Ids, NickRegistry, Outcome, Send};
use mix_service::xml::*;

use crate::room::*;

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

const ROOM: &str = "coven@muc.x";
const CHAN: &str = "coven@mix.x";
const NS: &str = "jabber:component:accept";

/// A room owned by owner@x, configured (not locked).
fn room() -> Room {
    let mix: BareJid = "mix.x".parse().expect("jid");
    let muc: BareJid = "muc.x".parse().expect("jid");
    let (ch, _) = Channel::create("coven", &mix, "owner@x", true, 1_000_000);
    Room::new(ch, &muc)
}

struct T {
    room: Room,
    n: u64,
}

impl T {
    fn new() -> T {
        T { room: room(), n: 0 }
    }

    /// A configured room whose owner is in, that accepts the DMUC mirror `mirror.b`.
    fn mirrored() -> T {
        let mut t = T::new();
        t.configure(&[]);
        t.room.dmuc.allowed = vec!["mirror.b".into()];
        t.enter("owner@x/o", "owner");
        t
    }

    /// A user behind `mirror.b` enters, from its escaped address, with the seed's join tag.
    fn join_via_mirror(&mut self, escaped: &str, nick: &str) -> RoomOutcome {
        let ns = crate::dmuc::NS_DMUC;
        self.run(&format!(
            "<presence xmlns='{NS}' from='{escaped}' to='{ROOM}/{nick}'><dmuc xmlns='{ns}' from='mirror.b'/></presence>"
        ))
    }

    fn run(&mut self, xml: &str) -> RoomOutcome {
        let now_us = 2_000_000 + self.n as i64 + 1000;
        self.run_at(xml, now_us)
    }

    fn run_at(&mut self, xml: &str, now_us: i64) -> RoomOutcome {
        self.n += 1000;
        let mut ids = Counter(self.n);
        let nicks = NickRegistry::default();
        let mut ctx = Ctx {
            now_us,
            ids: &mut ids,
            nicks: &nicks,
        };
        let st: Element = xml.parse().expect("xml");
        self.room.handle(&st, &mut ctx)
    }

    fn enter(&mut self, full: &str, nick: &str) -> RoomOutcome {
        self.run(&format!(
            "<presence xmlns='{NS}' from='{full}' to='{ROOM}/{nick}'><x xmlns='{NS_MUC}'/></presence>"
        ))
    }

    fn say(&mut self, full: &str, body: &str) -> RoomOutcome {
        self.run(&format!(
            "<message xmlns='{NS}' type='groupchat' id='c1' from='{full}' to='{ROOM}'><body>{body}</body></message>"
        ))
    }

    fn configure(&mut self, fields: &[(&str, &str)]) -> RoomOutcome {
        let f: String = fields
            .iter()
            .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
            .collect();
        self.run(&format!(
            "<iq xmlns='{NS}' type='set' id='cfg' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>\
             <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>{f}</x></query></iq>"
        ))
    }

    fn admin(&mut self, from: &str, item: &str) -> RoomOutcome {
        self.run(&format!(
            "<iq xmlns='{NS}' type='set' id='adm' from='{from}' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>{item}</query></iq>"
        ))
    }
}

/// Every stanza sent, with its recipient(s).
fn sent(out: &Outcome) -> Vec<(Element, Vec<String>)> {
    out.sends
        .iter()
        .map(|s| match s {
            Send::One(e) => (e.clone(), vec![e.attr("to").unwrap_or_default().to_owned()]),
            Send::Fanout { stanza, to } => (stanza.clone(), to.clone()),
            Send::Shared { stanza, to } => (stanza.clone(), to.to_vec()),
        })
        .collect()
}

fn to_whom<'a>(out: &'a [(Element, Vec<String>)], jid: &str) -> Vec<&'a Element> {
    out.iter()
        .filter(|(_, to)| to.iter().any(|t| t == jid))
        .map(|(e, _)| e)
        .collect()
}

fn codes(p: &Element) -> Vec<String> {
    p.get_child("x", NS_MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn condition(out: &RoomOutcome) -> String {
    out.outcome
        .sends
        .iter()
        .find_map(|s| match s {
            Send::One(e) if e.attr("type") == Some("error") => Some(e.clone()),
            _ => None,
        })
        .and_then(|e| {
            e.get_child("error", NS)
                .and_then(|x| x.children().next().map(|c| c.name().to_owned()))
        })
        .expect("an error")
}

#[test]
fn entering_sends_occupants_then_self_then_history_and_subject() {
    let mut t = T::new();
    t.room.created = true;
    let first = t.enter("owner@x/o", "owner");
    let own = to_whom(&sent(&first.outcome), "owner@x/o")[0].clone();
    assert_eq!(
        codes(&own),
        ["110", "100", "201"],
        "MUC-ENT-05: 201 on creation"
    );
    // Locked until configured (XEP-0045 §10.1.1).
    assert_eq!(condition(&t.enter("alice@x/a", "alice")), "item-not-found");
    t.configure(&[]);
    let out = t.enter("alice@x/a", "alice");
    let to_alice = to_whom(&sent(&out.outcome), "alice@x/a")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(to_alice.len(), 2);
    assert_eq!(
        to_alice[0].attr("from"),
        Some("coven@muc.x/owner"),
        "others first"
    );
    assert_eq!(to_alice[1].attr("from"), Some("coven@muc.x/alice"));
    assert_eq!(codes(&to_alice[1]), ["110", "100"]);
    let item = to_alice[0]
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("item", NS_MUC_USER))
        .expect("item");
    assert_eq!(item.attr("affiliation"), Some("owner"));
    assert_eq!(item.attr("role"), Some("moderator"));
    assert_eq!(item.attr("jid"), Some("owner@x/o"), "non-anonymous room");
    // The owner hears the newcomer; history and the subject are for the shell to send.
    assert!(!to_whom(&sent(&out.outcome), "owner@x/o").is_empty());
    let h = &out.history[0];
    assert_eq!((h.to.as_str(), h.max), ("alice@x/a", DEFAULT_HISTORY));
    assert_eq!(
        h.subject.get_child("subject", NS).map(|s| s.text()),
        Some(String::new())
    );
    // The MUC occupant is a channel participant (MM-06).
    assert_eq!(
        t.room
            .channel
            .participant("alice@x")
            .and_then(|p| p.nick.clone()),
        Some("alice".into())
    );
}

#[test]
fn entry_refusals() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    assert_eq!(condition(&t.enter("bob@x/b", "Alice")), "conflict");
    let bare = t.run(&format!(
        "<presence xmlns='{NS}' from='bob@x/b' to='{ROOM}'><x xmlns='{NS_MUC}'/></presence>"
    ));
    assert_eq!(condition(&bare), "jid-malformed");
    t.configure(&[
        ("muc#roomconfig_passwordprotectedroom", "1"),
        ("muc#roomconfig_roomsecret", "toad"),
    ]);
    assert_eq!(condition(&t.enter("bob@x/b", "bob")), "not-authorized");
    let with_password = t.run(&format!(
        "<presence xmlns='{NS}' from='bob@x/b' to='{ROOM}/bob'><x xmlns='{NS_MUC}'><password>toad</password></x></presence>"
    ));
    assert!(
        with_password
            .outcome
            .sends
            .iter()
            .all(|s| !matches!(s, Send::One(e) if e.attr("type") == Some("error")))
    );
    t.configure(&[
        ("muc#roomconfig_passwordprotectedroom", "0"),
        ("muc#roomconfig_membersonly", "1"),
    ]);
    assert_eq!(
        condition(&t.enter("carol@x/c", "carol")),
        "registration-required"
    );
    t.admin("owner@x/o", "<item jid='carol@x' affiliation='member'/>");
    assert!(condition_or_none(&t.enter("carol@x/c", "carol")).is_none());
    t.admin("owner@x/o", "<item jid='dave@x' affiliation='outcast'/>");
    assert_eq!(condition(&t.enter("dave@x/d", "dave")), "forbidden");
    // Making the room members-only sent alice and bob out (322): carol alone is in.
    t.configure(&[
        ("muc#roomconfig_maxusers", "1"),
        ("muc#roomconfig_membersonly", "0"),
    ]);
    assert_eq!(
        condition(&t.enter("erin@x/e", "erin")),
        "service-unavailable"
    );
}

fn condition_or_none(out: &RoomOutcome) -> Option<String> {
    out.outcome.sends.iter().find_map(|s| match s {
        Send::One(e) if e.attr("type") == Some("error") => e
            .get_child("error", NS)
            .and_then(|x| x.children().next().map(|c| c.name().to_owned())),
        _ => None,
    })
}

#[test]
fn a_muc_message_is_archived_once_and_reaches_both_faces() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    // A MIX participant subscribed to messages.
    t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='bob@x/b' to='{CHAN}'><join xmlns='{NS_CORE}'>\
         <subscribe node='{NODE_MESSAGES}'/><nick>bob</nick></join></iq>"
    ));
    let out = t.say("alice@x/a", "hello");
    let archived = out
        .outcome
        .writes
        .iter()
        .filter(|w| matches!(w, mam_store::Write::Archive(_)))
        .count();
    assert_eq!(archived, 1, "once in the archive");
    let s = sent(&out.outcome);
    let muc = to_whom(&s, "alice@x/a")[0];
    assert_eq!(muc.attr("from"), Some("coven@muc.x/alice"));
    assert_eq!(
        muc.attr("id"),
        Some("c1"),
        "the client's id (muc#stable_id)"
    );
    let sid = muc.get_child("stanza-id", NS_SID).expect("stanza-id");
    assert_eq!(sid.attr("by"), Some(ROOM));
    assert!(muc.get_child("occupant-id", NS_OCCUPANT_ID).is_some());
    assert!(muc.get_child("mix", NS_CORE).is_none());
    let mix = to_whom(&s, "bob@x/b")[0];
    assert!(
        mix.attr("from")
            .is_some_and(|f| f.starts_with("coven@mix.x/"))
    );
    assert_eq!(
        mix.get_child("stanza-id", NS_SID)
            .and_then(|s| s.attr("id")),
        sid.attr("id"),
        "one id for both faces"
    );
    // And the MIX participant's message reaches the MUC occupant.
    let back = t.run(&format!(
        "<message xmlns='{NS}' type='groupchat' id='m2' from='bob@x/b' to='{CHAN}'><body>hi</body></message>"
    ));
    let s = sent(&back.outcome);
    let seen = to_whom(&s, "alice@x/a")[0];
    assert_eq!(seen.attr("from"), Some("coven@muc.x/bob"));
    // Non-occupants cannot speak; PMs of type groupchat are refused.
    assert_eq!(condition(&t.say("eve@x/e", "spam")), "not-acceptable");
    let pm = t.run(&format!(
        "<message xmlns='{NS}' type='groupchat' from='alice@x/a' to='{ROOM}/bob'><body>x</body></message>"
    ));
    assert_eq!(condition(&pm), "bad-request");
}

#[test]
fn private_messages_follow_the_room_policy() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    t.enter("bob@x/b", "bob");
    let pm = |t: &mut T| {
        t.run(&format!(
            "<message xmlns='{NS}' type='chat' id='pm' from='alice@x/a' to='{ROOM}/bob'><body>psst</body></message>"
        ))
    };
    let out = pm(&mut t);
    let s = sent(&out.outcome);
    let got = to_whom(&s, "bob@x/b")[0];
    assert_eq!(got.attr("from"), Some("coven@muc.x/alice"));
    assert!(got.get_child("x", NS_MUC_USER).is_some(), "MUC-PM-01");
    assert!(out.outcome.writes.is_empty(), "PMs are not archived");
    let unknown = t.run(&format!(
        "<message xmlns='{NS}' type='chat' from='alice@x/a' to='{ROOM}/nobody'><body>x</body></message>"
    ));
    assert_eq!(condition(&unknown), "item-not-found", "MUC-PM-02");
    t.configure(&[("muc#roomconfig_allowpm", "moderators")]);
    assert_eq!(condition(&pm(&mut t)), "forbidden");
}

#[test]
fn moderated_rooms_silence_visitors_and_voice_can_be_given() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_moderatedroom", "1")]);
    t.enter("owner@x/o", "owner");
    t.enter("alice@x/a", "alice");
    assert_eq!(condition(&t.say("alice@x/a", "hi")), "forbidden");
    let out = t.admin("owner@x/o", "<item nick='alice' role='participant'/>");
    assert_eq!(
        out.outcome.sends.first().and_then(|s| match s {
            Send::One(e) => e.attr("type").map(str::to_owned),
            _ => None,
        }),
        Some("result".into())
    );
    assert!(condition_or_none(&t.say("alice@x/a", "hi")).is_none());
    // Admins and owners cannot be silenced or kicked; participants cannot moderate.
    assert_eq!(
        condition(&t.admin("owner@x/o", "<item nick='owner' role='visitor'/>")),
        "not-allowed"
    );
    assert_eq!(
        condition(&t.admin("alice@x/a", "<item nick='owner' role='none'/>")),
        "forbidden"
    );
}

#[test]
fn kick_ban_and_membership_revocation_take_occupants_out_with_their_codes() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.enter("alice@x/a", "alice");
    t.enter("bob@x/b", "bob");
    let kick = t.admin(
        "owner@x/o",
        "<item nick='alice' role='none'><reason>spam</reason></item>",
    );
    let s = sent(&kick.outcome);
    let to_alice = to_whom(&s, "alice@x/a")[0];
    assert_eq!(codes(to_alice), ["110", "307"]);
    let to_bob = to_whom(&s, "bob@x/b")[0];
    assert_eq!(to_bob.attr("type"), Some("unavailable"));
    assert_eq!(codes(to_bob), ["307"]);
    assert!(
        t.room.channel.participant("alice@x").is_none(),
        "a MUC-only occupant leaves the channel"
    );
    let ban = t.admin(
        "owner@x/o",
        "<item jid='bob@x' affiliation='outcast'><reason>bye</reason></item>",
    );
    let s = sent(&ban.outcome);
    assert_eq!(codes(to_whom(&s, "bob@x/b")[0]), ["110", "301"]);
    assert_eq!(
        t.room.channel.banned(),
        ["bob@x"],
        "the outcast is the channel's banned node (MM-06)"
    );
    // Members-only: revoking a membership removes the member with 321.
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    t.admin("owner@x/o", "<item jid='carol@x' affiliation='member'/>");
    t.enter("carol@x/c", "carol");
    let revoke = t.admin("owner@x/o", "<item jid='carol@x' affiliation='none'/>");
    assert_eq!(
        codes(to_whom(&sent(&revoke.outcome), "carol@x/c")[0]),
        ["110", "321"]
    );
    // The last owner cannot step down.
    assert_eq!(
        condition(&t.admin("owner@x/o", "<item jid='owner@x' affiliation='none'/>")),
        "conflict"
    );
}

#[test]
fn configuration_maps_onto_the_channel_and_is_announced() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    let out = t.configure(&[
        ("muc#roomconfig_roomname", "The Coven"),
        ("muc#roomconfig_membersonly", "1"),
        ("muc#roomconfig_whois", "moderators"),
    ]);
    assert_eq!(t.room.channel.display_name(), "The Coven");
    assert!(t.room.channel.members_only(), "the allowed node exists");
    assert!(
        t.room.channel.is_hidden(),
        "whois=moderators is a JID-hidden channel"
    );
    let s = sent(&out.outcome);
    let note = to_whom(&s, "owner@x/o")
        .into_iter()
        .find(|e| e.name() == "message")
        .expect("a status message");
    assert_eq!(codes(note), ["104", "173"]);
    // The form shows what is in force.
    let get = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='g' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
    ));
    let form = sent(&get.outcome)[0].0.clone();
    let text = to_string(&form);
    assert!(
        text.contains("The Coven") && text.contains("moderators"),
        "{text}"
    );
    // Bad values are refused; non-owners may not configure.
    assert_eq!(
        condition(&t.configure(&[("muc#roomconfig_whois", "everyone")])),
        "not-acceptable"
    );
    let not_owner = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='g' from='alice@x/a' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'/></iq>"
    ));
    assert_eq!(condition(&not_owner), "forbidden");
}

#[test]
fn self_ping_nick_change_and_leaving() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    t.enter("bob@x/b", "bob");
    let ping = |t: &mut T, from: &str, nick: &str| {
        t.run(&format!(
            "<iq xmlns='{NS}' type='get' id='sp' from='{from}' to='{ROOM}/{nick}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
    };
    let ok = ping(&mut t, "alice@x/a", "alice");
    assert_eq!(
        sent(&ok.outcome)[0].0.attr("type"),
        Some("result"),
        "XEP-0410"
    );
    assert_eq!(
        condition(&ping(&mut t, "eve@x/e", "alice")),
        "not-acceptable"
    );
    let change = t.run(&format!(
        "<presence xmlns='{NS}' from='bob@x/b' to='{ROOM}/robert'/>"
    ));
    let s = sent(&change.outcome);
    let to_alice = to_whom(&s, "alice@x/a");
    assert_eq!(codes(to_alice[0]), ["303"]);
    assert_eq!(to_alice[1].attr("from"), Some("coven@muc.x/robert"));
    assert_eq!(
        t.room
            .channel
            .participant("bob@x")
            .and_then(|p| p.nick.clone()),
        Some("robert".into()),
        "a nick is one nick on both faces"
    );
    assert_eq!(
        condition(&t.run(&format!(
            "<presence xmlns='{NS}' from='bob@x/b' to='{ROOM}/alice'/>"
        ))),
        "conflict"
    );
    let leave = t.run(&format!(
        "<presence xmlns='{NS}' type='unavailable' from='bob@x/b' to='{ROOM}/robert'/>"
    ));
    let s = sent(&leave.outcome);
    assert_eq!(codes(to_whom(&s, "bob@x/b")[0]), ["110"]);
    assert_eq!(
        to_whom(&s, "alice@x/a")[0].attr("type"),
        Some("unavailable")
    );
    assert_eq!(
        condition(&ping(&mut t, "bob@x/b", "robert")),
        "not-acceptable"
    );
}

#[test]
fn history_is_the_archive_seen_from_the_room_within_its_limits() {
    let t = T::new();
    let h = History {
        to: "alice@x/a".into(),
        max: 20,
        since_us: None,
        maxchars: Some(700),
        subject: Element::bare("message", NS),
        then: Vec::new(),
        reply: None,
    };
    let row = |i: usize| mam_store::ArchiveRow {
        id: format!("a{i}"),
        ts: 1_000_000 * i as i64,
        sender: "bob@x".into(),
        stanza: format!(
            "<message xmlns='jabber:client' from='{CHAN}/p1' type='groupchat' id='a{i}'><body>message {i}</body>\
             <mix xmlns='{NS_CORE}'><nick>bob</nick><jid>bob@x</jid></mix></message>"
        ),
        retracted: i == 2,
    };
    let page = mam_store::ArchivePage {
        rows: (0..5).map(row).collect(),
        complete: true,
    };
    let sent = t.room.history(&h, &page);
    assert!(
        !sent.is_empty() && sent.len() < 4,
        "maxchars keeps the newest whole stanzas"
    );
    let last = sent.last().expect("newest");
    assert_eq!(last.attr("from"), Some("coven@muc.x/bob"));
    assert_eq!(last.attr("to"), Some("alice@x/a"));
    assert_eq!(
        last.get_child("body", NS).map(|b| b.text()),
        Some("message 4".into())
    );
    assert_eq!(
        last.get_child("delay", NS_DELAY)
            .and_then(|d| d.attr("from")),
        Some(ROOM)
    );
    assert!(
        sent.iter()
            .all(|m| m.get_child("body", NS).map(|b| b.text()) != Some("message 2".into())),
        "retracted messages are not replayed"
    );
}

#[test]
fn presence_broadcast_keeps_unlisted_roles_to_themselves() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_presencebroadcast", "moderator")]);
    t.enter("owner@x/o", "owner");
    let out = t.enter("alice@x/a", "alice");
    let s = sent(&out.outcome);
    assert!(
        to_whom(&s, "owner@x/o").is_empty(),
        "a participant's entry is not broadcast"
    );
    let to_alice = to_whom(&s, "alice@x/a");
    assert_eq!(
        to_alice[0].attr("from"),
        Some("coven@muc.x/owner"),
        "moderators are"
    );
    assert_eq!(codes(to_alice[1]), ["110", "100"]);
    let out = t.enter("bob@x/b", "bob");
    assert_eq!(
        to_whom(&sent(&out.outcome), "bob@x/b").len(),
        2,
        "bob sees the owner and himself, not alice"
    );
}

#[test]
fn registering_reserves_a_nick_and_makes_a_member() {
    let mut t = T::new();
    t.configure(&[]);
    // §7.10: no registration for unaffiliated users.
    let refused = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='r' from='alice@x/a' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
    ));
    assert_eq!(condition(&refused), "not-allowed");
    t.admin("owner@x/o", "<item jid='alice@x' affiliation='member'/>");
    t.admin("owner@x/o", "<item jid='bob@x' affiliation='member'/>");
    let form = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='r' from='alice@x/a' to='{ROOM}'><query xmlns='jabber:iq:register'/></iq>"
    ));
    assert!(to_string(&sent(&form.outcome)[0].0).contains("muc#register_roomnick"));
    let register = |t: &mut T, from: &str, nick: &str| {
        t.run(&format!(
            "<iq xmlns='{NS}' type='set' id='r' from='{from}' to='{ROOM}'><query xmlns='jabber:iq:register'>\
             <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query></iq>"
        ))
    };
    let ok = register(&mut t, "alice@x/a", "Hecate");
    assert_eq!(sent(&ok.outcome)[0].0.attr("type"), Some("result"));
    assert_eq!(
        condition(&register(&mut t, "bob@x/b", "hecate")),
        "conflict"
    );
    assert_eq!(
        condition(&t.enter("bob@x/b", "Hecate")),
        "conflict",
        "reserved"
    );
    let mine = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='d' from='alice@x/a' to='{ROOM}'>\
         <query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/></iq>"
    ));
    assert!(to_string(&sent(&mine.outcome)[0].0).contains("name='Hecate'"));
    t.enter("alice@x/a", "Hecate");
    let out = t.enter("bob@x/b", "bob");
    let alice = to_whom(&sent(&out.outcome), "bob@x/b")
        .into_iter()
        .find(|p| p.attr("from") == Some("coven@muc.x/Hecate"))
        .cloned()
        .expect("alice's presence");
    assert!(to_string(&alice).contains("affiliation='member'"));
    // A probe from an occupant gets the other's presence.
    let probe = t.run(&format!(
        "<presence xmlns='{NS}' type='probe' from='bob@x/b' to='{ROOM}/Hecate'/>"
    ));
    assert_eq!(
        sent(&probe.outcome)[0].0.attr("from"),
        Some("coven@muc.x/Hecate")
    );
}

#[test]
fn a_visitor_asks_for_voice_and_a_moderator_grants_it() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_moderatedroom", "1")]);
    t.enter("owner@x/o", "owner");
    t.enter("alice@x/a", "alice");
    let ask = t.run(&format!(
        "<message xmlns='{NS}' from='alice@x/a' to='{ROOM}'><x xmlns='{NS_DATA}' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#role'><value>participant</value></field></x></message>"
    ));
    let s = sent(&ask.outcome);
    let req = to_whom(&s, "owner@x/o")[0];
    assert!(
        to_string(req).contains("alice@x/a"),
        "the request names the user"
    );
    assert!(to_whom(&s, "alice@x/a").is_empty());
    let grant = t.run(&format!(
        "<message xmlns='{NS}' from='owner@x/o' to='{ROOM}'><x xmlns='{NS_DATA}' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#jid'><value>alice@x/a</value></field>\
         <field var='muc#request_allow'><value>true</value></field></x></message>"
    ));
    assert!(!grant.outcome.sends.is_empty(), "the new role is announced");
    assert!(condition_or_none(&t.say("alice@x/a", "thanks")).is_none());
}

#[test]
fn a_service_shutdown_tells_every_occupant() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    t.enter("alice@x/phone", "alice");
    let out = t.room.shutdown();
    let s = sent(&out.outcome);
    for full in ["alice@x/a", "alice@x/phone"] {
        let p = to_whom(&s, full)[0];
        assert_eq!(p.attr("type"), Some("unavailable"));
        assert_eq!(codes(p), ["110", "332"]);
    }
}

#[test]
fn a_mix_private_message_reaches_a_muc_occupant_from_the_room() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='bob@x/b' to='{CHAN}'><join xmlns='{NS_CORE}'>\
         <subscribe node='{NODE_MESSAGES}'/><nick>bob</nick></join></iq>"
    ));
    let alice_id = t
        .room
        .channel
        .participant("alice@x")
        .expect("alice")
        .id
        .clone();
    let out = t.run(&format!(
        "<message xmlns='{NS}' type='chat' id='pm' from='bob@x/b' to='{alice_id}#{CHAN}'><body>hi</body></message>"
    ));
    let s = sent(&out.outcome);
    let got = to_whom(&s, "alice@x/a")[0];
    assert_eq!(got.attr("from"), Some("coven@muc.x/bob"));
    assert!(got.get_child("x", NS_MUC_USER).is_some());
}

#[test]
fn mediated_invitations_reach_the_invitee_and_make_members_of_members_only_rooms() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    t.enter("owner@x/o", "owner");
    let out = t.run(&format!(
        "<message xmlns='{NS}' id='inv1' from='owner@x/o' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
         <invite to='juliet@x'><reason>join us</reason></invite></x></message>"
    ));
    let m = sent(&out.outcome)
        .into_iter()
        .find(|(_, to)| to == &["juliet@x".to_owned()])
        .map(|(e, _)| e)
        .expect("the invitation");
    assert_eq!(m.attr("from"), Some(ROOM));
    assert_eq!(m.attr("id"), Some("inv1"));
    let inv = m
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("invite", NS_MUC_USER))
        .expect("invite");
    assert_eq!(inv.attr("from"), Some("coven@muc.x/owner"));
    assert_eq!(
        m.get_child("body", NS).map(|b| b.text()),
        Some("coven@muc.x/owner invited you to the room coven@muc.x".into())
    );
    assert_eq!(
        m.get_child("x", "jabber:x:conference")
            .and_then(|x| x.attr("jid")),
        Some(ROOM)
    );
    assert!(
        t.room.channel.allowed().contains(&"juliet@x".to_owned()),
        "now a member"
    );
    assert!(condition_or_none(&t.enter("juliet@x/j", "juliet")).is_none());
    // Without allowinvites, a plain member may not invite in a members-only room.
    let refused = t.run(&format!(
        "<message xmlns='{NS}' from='juliet@x/j' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
         <invite to='mallory@x'/></x></message>"
    ));
    assert_eq!(condition(&refused), "forbidden");
    // A decline is relayed to the inviter.
    let decline = t.run(&format!(
        "<message xmlns='{NS}' from='romeo@x/r' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
         <decline to='owner@x'><reason>busy</reason></decline></x></message>"
    ));
    let d = &sent(&decline.outcome)[0].0;
    assert_eq!(d.attr("to"), Some("owner@x"));
    assert!(to_string(d).contains("from='romeo@x'"));
    // The invitee answers the occupant JID the invitation came from, or nobody in particular:
    // the room finds the inviter's real JID (the invitee never saw it).
    for to in ["to='coven@muc.x/owner'", ""] {
        t.run(&format!(
            "<message xmlns='{NS}' from='owner@x/o' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
             <invite to='nurse@x'/></x></message>"
        ));
        let decline = t.run(&format!(
            "<message xmlns='{NS}' from='nurse@x/n' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
             <decline {to}/></x></message>"
        ));
        let d = &sent(&decline.outcome)[0].0;
        assert_eq!(d.attr("to"), Some("owner@x/o"), "decline {to:?}");
        assert!(t.room.channel.pending_invitations("muc").is_empty());
    }
}

#[test]
fn a_room_made_members_only_removes_non_members_with_322() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.enter("alice@x/a", "alice");
    t.admin("owner@x/o", "<item jid='bob@x' affiliation='member'/>");
    t.enter("bob@x/b", "bob");
    let out = t.configure(&[("muc#roomconfig_membersonly", "1")]);
    let s = sent(&out.outcome);
    let to_alice = to_whom(&s, "alice@x/a");
    assert!(
        to_alice.iter().any(|p| codes(p) == ["110", "322"]),
        "alice is out: {to_alice:?}"
    );
    assert!(
        to_whom(&s, "bob@x/b")
            .iter()
            .all(|p| !codes(p).contains(&"322".to_owned())
                || p.attr("from") != Some("coven@muc.x/bob")),
        "members stay"
    );
    assert!(t.room.channel.allowed().contains(&"bob@x".to_owned()));
}

#[test]
fn room_mam_shows_real_jids_only_to_those_who_may_see_them() {
    let mut t = T::new();
    t.configure(&[]);
    let stored: Element = format!(
        "<message xmlns='jabber:client' from='{CHAN}/p1' type='groupchat' id='a1' mixd-client-id='c9'>\
         <body>hi</body><mix xmlns='{NS_CORE}'><nick>bob</nick><jid>bob@x</jid></mix></message>"
    )
    .parse()
    .expect("xml");
    let seen = t.room.muc_archive_view(&stored, "alice@x");
    assert_eq!(
        seen.attr("id"),
        Some("c9"),
        "the sender's own id (muc#stable_id)"
    );
    assert_eq!(seen.attr("from"), Some("coven@muc.x/bob"));
    assert!(
        to_string(&seen).contains("jid='bob@x'"),
        "non-anonymous room"
    );
    assert!(!to_string(&seen).contains("mixd-client-id"));
    t.configure(&[("muc#roomconfig_whois", "moderators")]);
    assert!(!to_string(&t.room.muc_archive_view(&stored, "alice@x")).contains("bob@x"));
    assert!(to_string(&t.room.muc_archive_view(&stored, "owner@x")).contains("jid='bob@x'"));
}

#[test]
fn above_the_presence_cap_only_moderators_are_broadcast() {
    let mut t = T::new();
    t.room.presence_cap = Some(3);
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.enter("alice@x/a", "alice");
    // Three occupants with bob: at the cap, still broadcast.
    let out = t.enter("bob@x/b", "bob");
    assert!(!to_whom(&sent(&out.outcome), "alice@x/a").is_empty());
    // Four: above it, a newcomer is not announced and sees only the moderators.
    let out = t.enter("carol@x/c", "carol");
    let s = sent(&out.outcome);
    assert!(to_whom(&s, "alice@x/a").is_empty());
    let seen: Vec<_> = to_whom(&s, "carol@x/c")
        .iter()
        .filter_map(|p| p.attr("from").map(str::to_owned))
        .collect();
    assert!(seen.contains(&"coven@muc.x/owner".to_owned()));
    assert!(!seen.contains(&"coven@muc.x/alice".to_owned()));
}

#[test]
fn ban_rules_and_one_change_per_item() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_roomadmins", "carol@x")]);
    t.enter("owner@x/o", "owner");
    t.enter("carol@x/c", "carol");
    t.enter("bob@x/b", "bob");
    assert_eq!(
        condition(&t.admin("carol@x/c", "<item jid='owner@x' affiliation='outcast'/>")),
        "not-allowed",
        "XEP-0045 §9.1: admins and owners cannot be banned"
    );
    assert_eq!(
        condition(&t.admin("carol@x/c", "<item jid='carol@x' affiliation='outcast'/>")),
        "conflict",
        "§9.1: nor can one ban oneself"
    );
    assert_eq!(
        condition(&t.admin(
            "owner@x/o",
            "<item nick='bob' role='participant' affiliation='member'/>"
        )),
        "bad-request",
        "§17.4: a role or an affiliation"
    );
}

#[test]
fn persistence_and_the_archive_cannot_be_switched_off() {
    let mut t = T::new();
    assert_eq!(
        condition(&t.configure(&[("muc#roomconfig_persistentroom", "0")])),
        "not-acceptable"
    );
    assert_eq!(
        condition(&t.configure(&[("muc#roomconfig_enablelogging", "0")])),
        "not-acceptable"
    );
    // Submitting the values in force is fine.
    let ok = t.configure(&[
        ("muc#roomconfig_persistentroom", "1"),
        ("muc#roomconfig_enablelogging", "1"),
    ]);
    assert!(condition_or_none(&ok).is_none());
}

#[test]
fn iqs_to_occupants_are_relayed_without_real_jids() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", "alice");
    t.enter("bob@x/b", "bob");
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='v1' from='alice@x/a' to='{ROOM}/bob'><query xmlns='jabber:iq:version'/></iq>"
    ));
    let fwd = sent(&out.outcome)[0].0.clone();
    assert_eq!(fwd.attr("to"), Some("bob@x/b"));
    assert_eq!(fwd.attr("from"), Some("coven@muc.x/alice"));
    let id = fwd.attr("id").expect("id").to_owned();
    assert_ne!(id, "v1");
    let answer = |from: &str| {
        format!("<iq xmlns='{NS}' type='result' id='{id}' from='{from}' to='{ROOM}/alice'/>")
    };
    assert!(
        t.run(&answer("eve@x/e")).outcome.sends.is_empty(),
        "only the target answers"
    );
    let back = t.run(&answer("bob@x/b"));
    let r = sent(&back.outcome)[0].0.clone();
    assert_eq!(r.attr("to"), Some("alice@x/a"));
    assert_eq!(r.attr("from"), Some("coven@muc.x/bob"));
    assert_eq!(r.attr("id"), Some("v1"));
}

#[test]
fn a_mediated_invitation_carries_a_mix_invitation_for_the_channel() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    let out = t.run(&format!(
        "<message xmlns='{NS}' from='owner@x/o' to='{ROOM}'><x xmlns='{NS_MUC_USER}'>\
         <invite to='juliet@x'><continue thread='t1'/></invite></x></message>"
    ));
    let m = sent(&out.outcome)
        .into_iter()
        .find(|(_, to)| to == &["juliet@x".to_owned()])
        .map(|(e, _)| e)
        .expect("the invitation");
    assert!(to_string(&m).contains("thread='t1'"), "<continue/> kept");
    let inv = m
        .get_child("invitation", NS_MISC)
        .expect("a MIX invitation (REQUIREMENTS §12)")
        .clone();
    assert_eq!(
        inv.get_child("channel", NS_MISC).map(|c| c.text()),
        Some(CHAN.into())
    );
    // A MIX client joins the channel with it.
    let join = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='juliet@x/j' to='{CHAN}'><join xmlns='{NS_CORE}'>\
         <subscribe node='{NODE_MESSAGES}'/><nick>juliet</nick>{}</join></iq>",
        to_string(&inv)
    ));
    assert_eq!(sent(&join.outcome)[0].0.attr("type"), Some("result"));
}

#[test]
fn invitations_live_for_their_ttl_can_be_cancelled_and_are_shown_to_newcomers() {
    use crate::invite::{INVITE_BURST, NS_WMI};
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    let invite = |t: &mut T, to: &str, ttl: &str| {
        t.run(&format!(
            "<message xmlns='{NS}' from='owner@x/o' to='{ROOM}'>\
             <x xmlns='{NS_MUC_USER}' xmlns:wmi='{NS_WMI}'><invite to='{to}' wmi:ttl='{ttl}'/></x></message>"
        ))
    };
    let out = invite(&mut t, "hag@x", "30");
    let m = sent(&out.outcome)
        .into_iter()
        .find(|(_, to)| to == &["hag@x".to_owned()])
        .map(|(e, _)| e)
        .expect("invitation");
    let inv = m
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("invite", NS_MUC_USER))
        .expect("invite");
    assert_eq!(
        attr_any_ns(inv, "ttl"),
        Some("30"),
        "seed 000: the ttl goes along"
    );
    assert!(attr_any_ns(inv, "timestamp").is_some());
    // A newcomer learns of the pending invitation, after the subject.
    let out = t.enter("alice@x/a", "alice");
    let push = &out.history[0].then;
    assert_eq!(push.len(), 1);
    assert!(to_string(&push[0]).contains("to='hag@x'"));
    // The inviter cancels it: the invitee and the occupants are told.
    let out = t.run(&format!(
        "<message xmlns='{NS}' type='groupchat' from='owner@x/o' to='{ROOM}'>\
         <x xmlns='{NS_WMI}'><cancel-invite to='hag@x'><reason>bah!</reason></cancel-invite></x></message>"
    ));
    let s = sent(&out.outcome);
    let to_hag = to_whom(&s, "hag@x")[0];
    assert!(to_string(to_hag).contains("cancel-invite"));
    assert!(to_string(to_hag).contains("bah!"));
    assert_eq!(
        to_whom(&s, "alice@x/a")[0].attr("from"),
        Some("coven@muc.x/owner")
    );
    assert!(t.room.channel.pending_invitations("muc").is_empty());
    // A lapsed invitation: cancel-invite with <timeout/> to the invitee, a notice to occupants.
    invite(&mut t, "cat@x", "1");
    let mut ids = Counter(9_000_000);
    let nicks = NickRegistry::default();
    let mut ctx = Ctx {
        now_us: 10_000_000_000,
        ids: &mut ids,
        nicks: &nicks,
    };
    let out = t.room.lapse_invitations(&mut ctx);
    let s = sent(&out);
    let to_cat = to_whom(&s, "cat@x")[0];
    assert!(
        to_cat
            .get_child("x", NS_WMI)
            .and_then(|x| x.get_child("cancel-invite", NS_WMI))
            .and_then(|c| c.get_child("timeout", NS_WMI))
            .is_some()
    );
    assert!(
        !to_whom(&s, "alice@x/a").is_empty(),
        "the occupants hear of it"
    );
    assert!(out.writes.iter().any(|w| matches!(w, mam_store::Write::Invitation { row, .. } if row.state == mam_store::InvitationState::Cancelled)));
    // An invitee who enters uses the invitation.
    invite(&mut t, "dog@x", "600");
    let out = t.enter("dog@x/d", "dog");
    assert!(out.outcome.writes.iter().any(|w| matches!(w, mam_store::Write::Invitation { row, .. } if row.state == mam_store::InvitationState::Used)));
    assert!(t.room.channel.pending_invitations("muc").is_empty());
    // Bad input: a ttl that is not a positive integer, cancelling what does not exist or what
    // someone else sent, a flood of invitations.
    for bad in ["abc", "0", "-5", "1.5", ""] {
        let out = invite(&mut t, "eve@x", bad);
        assert_eq!(condition(&out), "bad-request", "ttl {bad:?}");
    }
    let cancel = |t: &mut T, from: &str, to: &str| {
        t.run(&format!(
            "<message xmlns='{NS}' type='groupchat' from='{from}' to='{ROOM}'>\
             <x xmlns:wmi='{NS_WMI}'><cancel-invite to='{to}'/></x></message>"
        ))
    };
    let out = cancel(&mut t, "owner@x/o", "nobody@x");
    assert_eq!(condition(&out), "item-not-found");
    invite(&mut t, "fox@x", "600");
    let out = cancel(&mut t, "alice@x/a", "fox@x");
    assert_eq!(condition(&out), "forbidden");
    // The seed's loose spelling (cancel-invite in no namespace of its own) is accepted.
    let out = cancel(&mut t, "owner@x/o", "fox@x");
    assert!(to_string(to_whom(&sent(&out.outcome), "fox@x")[0]).contains("cancel-invite"));
    let mut refused = None;
    for i in 0..12 {
        let out = invite(&mut t, &format!("p{i}@x"), "600");
        if !sent(&out.outcome)
            .iter()
            .any(|(_, to)| to == &[format!("p{i}@x")])
        {
            refused = Some((i, condition(&out)));
            break;
        }
    }
    let (i, cond) = refused.expect("a flood is cut off");
    assert_eq!(cond, "policy-violation");
    assert!(i <= INVITE_BURST, "refused after {i} invitations");
}

#[test]
fn cancelling_the_first_configuration_or_leaving_before_it_destroys_the_room() {
    // §10.1.3 / MUC-OWN-04.
    for how in ["cancel", "leave"] {
        let mut t = T::new();
        t.room.created = true;
        t.enter("owner@x/o", "owner");
        let out = if how == "cancel" {
            t.run(&format!(
                "<iq xmlns='{NS}' type='set' id='c' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>\
                 <x xmlns='{NS_DATA}' type='cancel'/></query></iq>"
            ))
        } else {
            t.run(&format!(
                "<presence xmlns='{NS}' type='unavailable' from='owner@x/o' to='{ROOM}/owner'/>"
            ))
        };
        assert!(out.outcome.destroyed, "{how}");
        assert!(
            out.outcome
                .writes
                .iter()
                .any(|w| matches!(w, mam_store::Write::DestroyChannel { .. }))
        );
        let own = to_whom(&sent(&out.outcome), "owner@x/o")[0].clone();
        assert_eq!(own.attr("type"), Some("unavailable"));
        assert!(
            own.get_child("x", NS_MUC_USER)
                .and_then(|x| x.get_child("destroy", NS_MUC_USER))
                .is_some(),
            "{how}"
        );
    }
    // A configured room is not destroyed by a cancelled form.
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='c' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>\
         <x xmlns='{NS_DATA}' type='cancel'/></query></iq>"
    ));
    assert!(!out.outcome.destroyed);
}

#[test]
fn status_201_is_the_creators_only() {
    let mut t = T::new();
    t.room.created = true;
    // The creator's entry fails (blank nick): the next one in is no creator.
    assert_eq!(condition(&t.enter("owner@x/o", " ")), "jid-malformed");
    t.configure(&[]);
    let out = t.enter("bob@x/b", "bob");
    let own = to_whom(&sent(&out.outcome), "bob@x/b")
        .last()
        .copied()
        .cloned()
        .expect("own");
    assert!(!codes(&own).contains(&"201".to_owned()));
}

#[test]
fn a_blank_nick_is_refused_on_entry_and_on_change_and_others_are_taken_as_sent() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("alice@x/a", " al ");
    let out = t.run(&format!(
        "<presence xmlns='{NS}' from='alice@x/a' to='{ROOM}/   '/>"
    ));
    assert_eq!(condition(&out), "jid-malformed", "MUC-ENT-13");
    assert!(t.room.occupant("alice@x").is_some_and(|o| o.nick == " al "));
}

#[test]
fn a_probe_shows_an_absent_members_jid_only_where_occupants_see_jids() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_whois", "moderators")]);
    t.enter("owner@x/o", "owner");
    t.admin(
        "owner@x/o",
        "<item jid='alice@x' affiliation='member' nick='Alice'/>",
    );
    t.enter("mallory@x/m", "mallory");
    let probe = |t: &mut T, from: &str| {
        let out = t.run(&format!(
            "<presence xmlns='{NS}' type='probe' from='{from}' to='{ROOM}/Alice'/>"
        ));
        let p = to_whom(&sent(&out.outcome), from)[0].clone();
        p.get_child("x", NS_MUC_USER)
            .and_then(|x| x.get_child("item", NS_MUC_USER))
            .and_then(|i| i.attr("jid").map(str::to_owned))
    };
    assert_eq!(probe(&mut t, "mallory@x/m"), None, "§7.2.4: semi-anonymous");
    assert_eq!(probe(&mut t, "owner@x/o").as_deref(), Some("alice@x"));
}

#[test]
fn an_owner_who_deregisters_stays_owner_and_in_the_room() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    t.enter("owner@x/o", "owner");
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='r' from='owner@x/o' to='{ROOM}'><query xmlns='jabber:iq:register'><remove/></query></iq>"
    ));
    let s = sent(&out.outcome);
    assert_eq!(s.len(), 1, "only the result: {s:?}");
    assert_eq!(s[0].0.attr("type"), Some("result"));
    assert!(t.room.occupant("owner@x").is_some());
    assert_eq!(t.room.affiliation("owner@x"), "owner");
}

#[test]
fn history_seconds_of_any_size_are_taken_without_overflow() {
    let mut t = T::new();
    t.configure(&[]);
    let out = t.run(&format!(
        "<presence xmlns='{NS}' from='alice@x/a' to='{ROOM}/alice'><x xmlns='{NS_MUC}'>\
         <history seconds='9223372036854775807' maxstanzas='9223372036854775807'/></x></presence>"
    ));
    assert!(out.history[0].since_us.is_some());
}

#[test]
fn a_senders_own_muc_user_payload_never_reaches_the_room() {
    let t = T::new();
    let m: Element = format!(
        "<message xmlns='{NS}' from='{CHAN}/p1' type='groupchat' id='a1'><body>hi</body>\
         <x xmlns='{NS_MUC_USER}'><item jid='admin@x/forged' affiliation='owner'/></x>\
         <mix xmlns='{NS_CORE}'><nick>bob</nick></mix></message>"
    )
    .parse()
    .expect("xml");
    let v = t.room.muc_view(&m);
    assert!(v.get_child("x", NS_MUC_USER).is_none(), "MUC-BR-01");
    assert!(v.get_child("body", NS).is_some());
}

#[test]
fn a_mix_invitation_admits_its_muc_only_invitee_once() {
    // REQUIREMENTS §12: the MIX inviter's client sends the invitee a XEP-0249 invitation to
    // the room; the MUC join cannot carry the token, the live invitation admits it instead.
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    assert_eq!(
        condition(&t.enter("carol@x/c", "carol")),
        "registration-required"
    );
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='i1' from='owner@x/o' to='{CHAN}'>\
         <invite xmlns='{NS_MISC}'><invitee>carol@x</invitee></invite></iq>"
    ));
    assert!(to_string(&sent(&out.outcome)[0].0).contains("<token>"));
    assert!(condition_or_none(&t.enter("carol@x/c", "carol")).is_none());
    assert!(t.room.channel.allowed().contains(&"carol@x".to_owned()));
    // Used once: it admits nobody else, and is gone.
    assert_eq!(
        condition(&t.enter("dave@x/d", "dave")),
        "registration-required"
    );
    assert!(t.room.channel.pending_invitations("mix").is_empty());
}

#[test]
fn a_refused_admin_batch_or_configuration_changes_nothing() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.enter("bob@x/b", "bob");
    t.enter("carol@x/c", "carol");
    // §9.2: the second item fails only when applied; the first must not stay applied.
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='adm' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>\
         <item nick='bob' role='visitor'/><item nick='carol' role='moderator'/></query></iq>"
    ));
    let refused = condition_or_none(&out);
    assert!(refused.is_some(), "{:?}", sent(&out.outcome));
    assert!(out.outcome.writes.is_empty());
    assert_eq!(t.room.role("bob@x"), "participant", "bob keeps his voice");
    assert!(condition_or_none(&t.say("bob@x/b", "still here")).is_none());
    // A configuration refused for one field leaves every other field as it was.
    let out = t.configure(&[
        ("muc#roomconfig_membersonly", "1"),
        ("muc#roomconfig_maxusers", "lots"),
    ]);
    assert_eq!(condition(&out), "not-acceptable");
    assert!(!t.room.channel.members_only());
    assert!(t.room.occupant("carol@x").is_some());
    assert!(condition_or_none(&t.enter("eve@x/e", "eve")).is_none());
}

#[test]
fn members_stay_members_across_members_only_switches_and_a_ban_ends_everything() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    t.admin(
        "owner@x/o",
        "<item jid='bob@x' affiliation='member' nick='Bob'/>",
    );
    t.configure(&[("muc#roomconfig_membersonly", "0")]);
    assert_eq!(t.room.affiliation("bob@x"), "member");
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    assert_eq!(t.room.affiliation("bob@x"), "member");
    // MUC-ADM-04: banned, bob loses his reserved nick too.
    t.admin("owner@x/o", "<item jid='bob@x' affiliation='outcast'/>");
    assert_eq!(t.room.reserved_by("Bob"), None);
    assert!(
        condition_or_none(&t.enter("eve@x/e", "Bob")).is_some_and(|c| c == "registration-required")
    );
}

#[test]
fn participants_only_through_the_room_do_not_outlive_a_restart() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("bob@x/b", "bob");
    t.enter("carol@x/c", "carol");
    assert!(
        t.room
            .channel
            .participant("bob@x")
            .is_some_and(|p| p.via_muc)
    );
    // carol joins the channel through MIX as well: a participant of her own now.
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='carol@x/c' to='{CHAN}'>\
         <join xmlns='{NS_CORE}'><subscribe node='urn:xmpp:mix:nodes:messages'/><nick>carol</nick></join></iq>"
    ));
    assert!(condition_or_none(&out).is_none());
    assert!(
        t.room
            .channel
            .participant("carol@x")
            .is_some_and(|p| !p.via_muc)
    );
    // A restart: occupancy is not stored, the channel is.
    let _ = t.room.take_occupants();
    let mut ids = Counter(5_000_000);
    let nicks = NickRegistry::default();
    let mut ctx = Ctx {
        now_us: 9_000_000,
        ids: &mut ids,
        nicks: &nicks,
    };
    let out = t.room.reconcile(&mut ctx);
    assert!(out.writes.iter().any(
        |w| matches!(w, mam_store::Write::Participant { row, .. } if row.jid == "bob@x" && !row.active)
    ));
    assert!(t.room.channel.participant("bob@x").is_none(), "bob is gone");
    assert!(
        t.room.channel.participant("carol@x").is_some(),
        "carol stays"
    );
}

#[test]
fn a_user_present_through_mix_enters_the_room_under_the_same_nick() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='bob@x/b' to='{CHAN}'>\
         <join xmlns='{NS_CORE}'><subscribe node='urn:xmpp:mix:nodes:presence'/><nick>bob</nick></join></iq>"
    ));
    assert!(condition_or_none(&out).is_none());
    t.run(&format!(
        "<presence xmlns='{NS}' from='bob@x/b' to='{CHAN}'/>"
    ));
    assert!(
        t.room
            .everyone()
            .iter()
            .any(|(b, n)| b == "bob@x" && n == "bob")
    );
    // Another nick would show one person twice (and leave a ghost behind).
    assert_eq!(condition(&t.enter("bob@x/muc", "robert")), "not-acceptable");
    assert!(condition_or_none(&t.enter("bob@x/muc", "bob")).is_none());
    // Leaving the room from the MUC client: the others still see bob, through MIX.
    let out = t.run(&format!(
        "<presence xmlns='{NS}' type='unavailable' from='bob@x/muc' to='{ROOM}/bob'/>"
    ));
    let s = sent(&out.outcome);
    let to_owner = to_whom(&s, "owner@x/o");
    assert_eq!(to_owner.len(), 1);
    assert_eq!(
        to_owner[0].attr("type"),
        None,
        "still available: {:?}",
        to_owner[0]
    );
    assert_eq!(to_owner[0].attr("from"), Some("coven@muc.x/bob"));
    assert!(t.room.channel.participant("bob@x").is_some());
}

#[test]
fn admins_made_or_unmade_by_configuration_are_shown_with_their_new_standing() {
    let mut t = T::new();
    t.configure(&[("muc#roomconfig_roomadmins", "adm@x")]);
    t.enter("owner@x/o", "owner");
    t.enter("adm@x/a", "adm");
    assert_eq!(t.room.role("adm@x"), "moderator");
    // MUC-OWN-05: an admin lost through configuration is broadcast.
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='cfg' from='owner@x/o' to='{ROOM}'><query xmlns='{NS_MUC_OWNER}'>\
         <x xmlns='{NS_DATA}' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
         <field var='muc#roomconfig_roomadmins'/></x></query></iq>"
    ));
    assert!(condition_or_none(&out).is_none());
    assert_eq!(t.room.role("adm@x"), "participant");
    let to_owner = to_whom(&sent(&out.outcome), "owner@x/o")
        .into_iter()
        .filter(|e| e.name() == "presence")
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(to_owner.len(), 1, "{to_owner:?}");
    let item = to_owner[0]
        .get_child("x", NS_MUC_USER)
        .and_then(|x| x.get_child("item", NS_MUC_USER))
        .expect("item");
    assert_eq!(
        (item.attr("affiliation"), item.attr("role")),
        (Some("none"), Some("participant"))
    );
}

#[test]
fn a_nick_reserved_with_the_room_is_the_registrants_on_both_faces() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.admin(
        "owner@x/o",
        "<item jid='bob@x' affiliation='member' nick='Bob'/>",
    );
    // A MIX join may not take it.
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='set' id='j' from='eve@x/e' to='{CHAN}'>\
         <join xmlns='{NS_CORE}'><subscribe node='urn:xmpp:mix:nodes:messages'/><nick>bob</nick></join></iq>"
    ));
    assert_eq!(condition(&out), "conflict");
    // Nor may a second reservation, and the refused batch changes nothing.
    let out = t.admin(
        "owner@x/o",
        "<item jid='eve@x' affiliation='member' nick='Bob'/>",
    );
    assert_eq!(condition(&out), "conflict");
    assert_eq!(t.room.affiliation("eve@x"), "none");
    assert_eq!(t.room.reserved_by("Bob"), Some("bob@x"));
}

#[test]
fn role_lists_name_occupants_by_nick_and_full_jid_for_moderators_only() {
    let mut t = T::new();
    t.configure(&[]);
    t.enter("owner@x/o", "owner");
    t.enter("bob@x/b", "bob");
    let list = |t: &mut T, from: &str| {
        t.run(&format!(
            "<iq xmlns='{NS}' type='get' id='l' from='{from}' to='{ROOM}'><query xmlns='{NS_MUC_ADMIN}'>\
             <item role='participant'/></query></iq>"
        ))
    };
    let out = list(&mut t, "owner@x/o");
    let res = &sent(&out.outcome)[0].0;
    let items: Vec<_> = res
        .get_child("query", NS_MUC_ADMIN)
        .expect("query")
        .children()
        .map(|i| (i.attr("nick"), i.attr("jid"), i.attr("role")))
        .collect();
    assert_eq!(items, [(Some("bob"), Some("bob@x/b"), Some("participant"))]);
    assert_eq!(condition(&list(&mut t, "bob@x/b")), "forbidden");
}

#[test]
fn dmuc_master_sends_users_behind_a_mirror_through_it_and_broadcasts_once_per_mirror() {
    use crate::dmuc::{NS_DMUC, NS_DMUC0};
    let mut t = T::mirrored();
    let wayne = "wayne\\40b.example\\2fphone@mirror.b";
    let keith = "keith\\40b.example\\2fpc@mirror.b";
    let join = |t: &mut T, from: &str, nick: &str| {
        t.run(&format!(
            "<presence xmlns='{NS}' from='{from}' to='{ROOM}/{nick}'><dmuc xmlns='{NS_DMUC}' from='mirror.b'/></presence>"
        ))
    };
    // A new mirror learns the configuration, then the roster, then the join goes on.
    let out = join(&mut t, wayne, "wayne");
    let s = sent(&out.outcome);
    assert!(s[0].0.get_child("config", NS_DMUC0).is_some(), "{s:?}");
    assert_eq!(s[0].1, ["mirror.b"]);
    assert!(s[1].0.get_child("roster", NS_DMUC0).is_some());
    let own = to_whom(&s, wayne);
    assert!(
        own.iter().any(|p| codes(p).contains(&"110".to_owned())),
        "self-presence via the mirror"
    );
    assert!(
        to_whom(&s, "wayne@b.example/phone").is_empty(),
        "never around the mirror"
    );
    assert!(
        out.history.is_empty(),
        "users behind a mirror get history from the mirror's copy"
    );
    // Seed 003: the mirror asks for the history it keeps, with XEP-0045's limits.
    let ask = |t: &mut T, from: &str, ty: &str, room: &str| {
        t.run(&format!(
            "<iq xmlns='{NS}' type='{ty}' id='h1' from='{from}' to='{ROOM}/wayne'>\
             <room xmlns='{NS_DMUC0}' id='{room}'><history xmlns='{NS_MUC}' maxstanzas='7'/></room></iq>"
        ))
    };
    let out = ask(&mut t, "mirror.b", "get", ROOM);
    assert_eq!(out.history.len(), 1);
    let h = &out.history[0];
    assert_eq!((h.to.as_str(), h.max), ("mirror.b", 7));
    // One stanza carries the answer: capped well under servers' stanza size limits.
    assert_eq!(h.maxchars, Some(crate::room::MIRROR_HISTORY_CHARS));
    let reply = h.reply.as_ref().expect("answered in one IQ result");
    assert_eq!(
        (reply.attr("type"), reply.attr("id"), reply.attr("to")),
        (Some("result"), Some("h1"), Some("mirror.b"))
    );
    // Bad requests: another room named, a set, a mirror with nobody in the room.
    assert_eq!(
        condition(&ask(&mut t, "mirror.b", "get", "other@muc.x")),
        "bad-request"
    );
    assert_eq!(
        condition(&ask(&mut t, "mirror.b", "set", ROOM)),
        "feature-not-implemented"
    );
    t.room.dmuc.allowed.push("mirror.c".into());
    assert_eq!(
        condition(&ask(&mut t, "mirror.c", "get", ROOM)),
        "forbidden"
    );
    t.room.dmuc.allowed.pop();
    // The room knows wayne by his real JID.
    assert!(t.room.occupant("wayne@b.example").is_some());
    // A second user: no second configuration; his presence reaches the mirror once.
    let out = join(&mut t, keith, "keith");
    let s = sent(&out.outcome);
    assert!(
        s.iter()
            .all(|(e, _)| e.get_child("config", NS_DMUC0).is_none())
    );
    assert_eq!(to_whom(&s, "mirror.b").len(), 1, "{s:?}");
    // The mirror has the room: keith gets only his own presence from the master (the mirror
    // shows him the others from its copy).
    let to_keith = to_whom(&s, keith);
    assert_eq!(to_keith.len(), 1, "{to_keith:?}");
    assert!(codes(to_keith[0]).contains(&"110".to_owned()));
    assert!(
        out.history.is_empty(),
        "history and subject from the mirror's copy too"
    );
    // A message reaches both through one copy to the mirror.
    let out = t.say("owner@x/o", "hello");
    let s = sent(&out.outcome);
    let to_mirror = to_whom(&s, "mirror.b");
    assert_eq!(to_mirror.len(), 1);
    assert_eq!(to_mirror[0].name(), "message");
    assert!(to_whom(&s, wayne).is_empty() && to_whom(&s, keith).is_empty());
    // Seed business rules: no nick change behind a mirror.
    let out = t.run(&format!(
        "<presence xmlns='{NS}' from='{wayne}' to='{ROOM}/bruce'/>"
    ));
    assert_eq!(condition(&out), "not-acceptable");
    // Messages from behind the mirror are the real user's.
    let out = t.run(&format!(
        "<message xmlns='{NS}' type='groupchat' from='{keith}' to='{ROOM}'><body>hi</body></message>"
    ));
    let s = sent(&out.outcome);
    assert_eq!(
        to_whom(&s, "owner@x/o")[0].attr("from"),
        Some("coven@muc.x/keith")
    );
    // A mirror that is not configured is refused.
    let out = t.run(&format!(
        "<presence xmlns='{NS}' from='eve\\40c.example\\2fe@mirror.c' to='{ROOM}/eve'><dmuc xmlns='{NS_DMUC}' from='mirror.c'/></presence>"
    ));
    assert_eq!(condition(&out), "forbidden");
    // The mirror's link fails: its users are gone for everyone else (333).
    let out = t.run(&format!(
        "<message xmlns='{NS}' type='error' from='mirror.b' to='{ROOM}'><error type='cancel'>\
         <remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let s = sent(&out.outcome);
    let gone: Vec<_> = to_whom(&s, "owner@x/o")
        .into_iter()
        .filter(|p| p.attr("type") == Some("unavailable"))
        .map(|p| (p.attr("from").unwrap_or_default().to_owned(), codes(p)))
        .collect();
    assert_eq!(gone.len(), 2, "{s:?}");
    assert!(gone.iter().all(|(_, c)| c.contains(&"333".to_owned())));
    assert!(t.room.occupant("wayne@b.example").is_none());
    assert!(
        to_whom(&s, "mirror.b").is_empty(),
        "nothing for the lost mirror"
    );
}

#[test]
fn dmuc_master_takes_a_message_sent_again_after_a_lost_link_once() {
    let mut t = T::mirrored();
    let wayne = "wayne\\40b.example\\2fphone@mirror.b";
    t.join_via_mirror(wayne, "wayne");
    let say = format!(
        "<message xmlns='{NS}' type='groupchat' id='w1' from='{wayne}' to='{ROOM}'><body>hi</body></message>"
    );
    let first = t.run(&say);
    assert!(
        first
            .outcome
            .writes
            .iter()
            .any(|w| matches!(w, mam_store::Write::Archive(_)))
    );
    let again = t.run(&say);
    assert!(again.outcome.writes.is_empty() && again.outcome.sends.is_empty());
}

#[test]
fn dmuc_master_pings_a_silent_mirror_and_loses_its_users_when_it_does_not_answer() {
    use crate::dmuc::{PING_INTERVAL_US, PING_TIMEOUT_US};
    let mut t = T::mirrored();
    let wayne = "wayne\\40b.example\\2fphone@mirror.b";
    t.join_via_mirror(wayne, "wayne");
    let nicks = NickRegistry::default();
    let tick = |t: &mut T, now_us: i64| {
        let mut ids = Counter(7_000_000);
        let mut ctx = Ctx {
            now_us,
            ids: &mut ids,
            nicks: &nicks,
        };
        t.room.dmuc_keepalive(&mut ctx)
    };
    let start = 3_000_000;
    assert!(tick(&mut t, start).sends.is_empty(), "heard from just now");
    // Silent for the interval: a ping from the room to the mirror.
    let out = tick(&mut t, start + PING_INTERVAL_US);
    let s = sent(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].1, ["mirror.b"]);
    assert!(s[0].0.has_child("ping", "urn:xmpp:ping"));
    let id = s[0].0.attr("id").unwrap_or_default().to_owned();
    // Answered: nothing happens, and the next ping waits for the next silence.
    t.run_at(
        &format!("<iq xmlns='{NS}' type='result' id='{id}' from='mirror.b' to='{ROOM}'/>"),
        start + PING_INTERVAL_US + 1,
    );
    assert!(
        tick(&mut t, start + PING_INTERVAL_US + PING_TIMEOUT_US)
            .sends
            .is_empty()
    );
    assert!(t.room.occupant("wayne@b.example").is_some());
    // Much later, silent again: pinged, no answer, and wayne is gone for the owner (333).
    let later = start + 10 * PING_INTERVAL_US;
    assert_eq!(sent(&tick(&mut t, later)).len(), 1);
    assert!(tick(&mut t, later + PING_TIMEOUT_US - 1).sends.is_empty());
    let out = tick(&mut t, later + PING_TIMEOUT_US);
    let s = sent(&out);
    let gone = to_whom(&s, "owner@x/o");
    assert_eq!(gone.len(), 1, "{s:?}");
    assert_eq!(gone[0].attr("type"), Some("unavailable"));
    assert!(codes(gone[0]).contains(&"333".to_owned()));
    assert!(t.room.occupant("wayne@b.example").is_none());
    // Perhaps the mirror is only slow: wayne hears through it that he is out (333), and can
    // enter again instead of staying as a ghost.
    let own = to_whom(&s, wayne);
    assert_eq!(own.len(), 1, "{s:?}");
    assert_eq!(own[0].attr("type"), Some("unavailable"));
    assert!(codes(own[0]).contains(&"333".to_owned()));
    assert!(to_whom(&s, "wayne@b.example/phone").is_empty());
}

#[test]
fn dmuc_master_sends_mirrors_the_new_configuration_before_the_change_notice() {
    use crate::dmuc::NS_DMUC0;
    let mut t = T::mirrored();
    let wayne = "wayne\\40b.example\\2fphone@mirror.b";
    t.join_via_mirror(wayne, "wayne");
    let out = t.configure(&[("muc#roomconfig_whois", "moderators")]);
    let s = sent(&out.outcome);
    let to_mirror = to_whom(&s, "mirror.b");
    assert_eq!(to_mirror.len(), 2, "{s:?}");
    let config = to_mirror[0]
        .get_child("config", NS_DMUC0)
        .expect("the configuration first");
    assert!(to_string(config).contains("<value>moderators</value>"));
    assert!(codes(to_mirror[1]).contains(&"104".to_owned()));
    // A change nobody behind a mirror sees sends nothing more.
    let out = t.run(&format!(
        "<message xmlns='{NS}' type='groupchat' from='owner@x/o' to='{ROOM}'><body>hi</body></message>"
    ));
    let s = sent(&out.outcome);
    assert!(
        to_whom(&s, "mirror.b")
            .iter()
            .all(|e| e.get_child("config", NS_DMUC0).is_none())
    );
}

#[test]
fn dmuc_master_takes_the_join_tag_in_either_namespace_of_the_seed() {
    use crate::dmuc::NS_DMUC0;
    let mut t = T::mirrored();
    let out = t.run(&format!(
        "<presence xmlns='{NS}' from='bruce\\40b.example\\2fb@mirror.b' to='{ROOM}/bruce'><dmuc xmlns='{NS_DMUC0}' from='mirror.b'/></presence>"
    ));
    assert!(t.room.occupant("bruce@b.example").is_some());
    let s = sent(&out.outcome);
    assert!(
        to_whom(&s, "bruce\\40b.example\\2fb@mirror.b")
            .iter()
            .any(|p| codes(p).contains(&"110".to_owned()))
    );
}

#[test]
fn dmuc_self_ping_from_behind_a_mirror_when_not_in_the_room_is_not_acceptable() {
    let mut t = T::mirrored();
    let out = t.run(&format!(
        "<iq xmlns='{NS}' type='get' id='sp' from='carol\\40b.example\\2fc@mirror.b' to='{ROOM}/carol'><ping xmlns='urn:xmpp:ping'/></iq>"
    ));
    let s = sent(&out.outcome);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].1, ["carol\\40b.example\\2fc@mirror.b"]);
    assert_eq!(condition(&out), "not-acceptable");
}
