//! Each operation, and each refusal, with the XEP-0060 condition it maps to.

use super::*;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("gen-{n}")
    }
}

fn svc_with(name: &str, config: NodeConfig) -> Service {
    let mut s = Service::new();
    s.create_node(Actor::service(), name, config)
        .expect("create");
    s
}

fn owner() -> Actor<'static> {
    Actor::entity("owner@example.org", Affiliation::Owner)
}

#[test]
fn create_and_refusals() {
    let mut s = svc_with("n", NodeConfig::default());
    assert_eq!(
        s.create_node(Actor::service(), "n", NodeConfig::default()),
        Err(PubsubError::NodeExists)
    );
    assert_eq!(
        s.create_node(
            Actor::entity(ALICE, Affiliation::Member),
            "m",
            NodeConfig::default()
        ),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        s.create_node(Actor::service(), "", NodeConfig::default()),
        Err(PubsubError::NodeIdRequired)
    );
    assert_eq!(PubsubError::NodeExists.condition().0, "conflict");
}

#[test]
fn publish_generates_ids_overwrites_and_notifies() {
    let mut s = svc_with("n", NodeConfig::default());
    s.subscribe(Actor::entity(BOB, Affiliation::None), "n", BOB)
        .expect("subscribe");
    let mut gen_id = ids();
    let fx = s
        .publish(owner(), "n", None, "<a/>".into(), &mut gen_id)
        .expect("publish");
    assert_eq!(fx.item_id.as_deref(), Some("gen-1"));
    assert_eq!(fx.notifications.len(), 1);
    assert_eq!(fx.notifications[0].recipients, vec![BOB.to_owned()]);
    // The publisher is stamped by the service (PS-07).
    match &fx.notifications[0].event {
        Event::Published(item) => assert_eq!(item.publisher.as_deref(), Some("owner@example.org")),
        other => panic!("unexpected event {other:?}"),
    }
    s.publish(owner(), "n", Some("x"), "<b/>".into(), &mut gen_id)
        .expect("publish x");
    let fx = s
        .publish(owner(), "n", Some("x"), "<c/>".into(), &mut gen_id)
        .expect("republish x");
    assert_eq!(fx.notifications.len(), 1, "an overwrite notifies again");
    let items = s.items(owner(), "n", &Selection::All).expect("items");
    let got: Vec<_> = items
        .iter()
        .map(|i| (i.id.as_str(), i.payload.as_str()))
        .collect();
    assert_eq!(got, vec![("gen-1", "<a/>"), ("x", "<c/>")]);
}

#[test]
fn publish_refusals() {
    let mut s = svc_with("n", NodeConfig::default());
    let mut gen_id = ids();
    let member = Actor::entity(ALICE, Affiliation::Member);
    assert_eq!(
        s.publish(member, "n", None, "<a/>".into(), &mut gen_id),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        s.publish(owner(), "missing", None, "<a/>".into(), &mut gen_id),
        Err(PubsubError::NodeNotFound)
    );
    assert_eq!(
        s.publish(owner(), "n", Some(""), "<a/>".into(), &mut gen_id),
        Err(PubsubError::ItemRequired)
    );
    let big = "x".repeat(NodeConfig::default().max_payload_bytes + 1);
    assert_eq!(
        s.publish(owner(), "n", None, big, &mut gen_id),
        Err(PubsubError::PayloadTooBig)
    );
    assert_eq!(
        PubsubError::PayloadTooBig.condition(),
        ("not-acceptable", "modify", Some("payload-too-big"))
    );
    let outcast = Actor::entity(BOB, Affiliation::Outcast);
    let mut open = svc_with(
        "o",
        NodeConfig {
            publish_model: PublishModel::Open,
            ..NodeConfig::default()
        },
    );
    assert!(
        open.publish(member, "o", None, "<a/>".into(), &mut gen_id)
            .is_ok()
    );
    assert_eq!(
        open.publish(outcast, "o", None, "<a/>".into(), &mut gen_id),
        Err(PubsubError::Forbidden)
    );
}

#[test]
fn service_managed_nodes_refuse_entities_even_owners() {
    let mut s = svc_with(
        "participants",
        NodeConfig {
            publish_model: PublishModel::Service,
            ..NodeConfig::default()
        },
    );
    let mut gen_id = ids();
    assert_eq!(
        s.publish(
            owner(),
            "participants",
            Some("p"),
            "<p/>".into(),
            &mut gen_id
        ),
        Err(PubsubError::Forbidden)
    );
    s.publish(
        Actor::service(),
        "participants",
        Some("p"),
        "<p/>".into(),
        &mut gen_id,
    )
    .expect("the service writes its own node");
    assert_eq!(
        s.retract(owner(), "participants", "p", true),
        Err(PubsubError::Forbidden)
    );
}

#[test]
fn transient_nodes_notify_without_storing() {
    let mut s = svc_with(
        "messages",
        NodeConfig {
            persist_items: false,
            ..NodeConfig::default()
        },
    );
    s.subscribe(Actor::service(), "messages", ALICE)
        .expect("sub");
    let fx = s
        .publish(owner(), "messages", None, "<m/>".into(), &mut ids())
        .expect("publish");
    assert!(fx.changes.is_empty(), "nothing to persist");
    assert_eq!(fx.notifications[0].recipients, vec![ALICE.to_owned()]);
    assert!(s.node("messages").expect("node").is_empty());
    assert_eq!(
        s.purge(owner(), "messages"),
        Err(PubsubError::PersistenceUnsupported)
    );
}

#[test]
fn max_items_retracts_the_oldest() {
    let mut s = svc_with(
        "info",
        NodeConfig {
            max_items: Some(1),
            ..NodeConfig::default()
        },
    );
    let mut gen_id = ids();
    s.publish(owner(), "info", Some("t1"), "<a/>".into(), &mut gen_id)
        .expect("first");
    let fx = s
        .publish(owner(), "info", Some("t2"), "<b/>".into(), &mut gen_id)
        .expect("second");
    assert!(fx.changes.contains(&Change::ItemRetracted {
        node: "info".into(),
        id: "t1".into()
    }));
    let node = s.node("info").expect("node");
    assert_eq!(node.len(), 1);
    assert!(node.item("t2").is_some());
}

#[test]
fn retrieval_latest_ids_and_access() {
    let mut s = svc_with(
        "n",
        NodeConfig {
            access_model: AccessModel::Whitelist,
            ..NodeConfig::default()
        },
    );
    let mut gen_id = ids();
    for id in ["a", "b", "c"] {
        s.publish(owner(), "n", Some(id), format!("<{id}/>"), &mut gen_id)
            .expect("publish");
    }
    let member = Actor::entity(ALICE, Affiliation::Member);
    let ids_of = |v: Vec<&Item>| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids_of(s.items(member, "n", &Selection::Latest(2)).expect("latest")),
        ["b", "c"]
    );
    assert_eq!(
        ids_of(
            s.items(
                member,
                "n",
                &Selection::Ids(vec!["c".into(), "zz".into(), "a".into()])
            )
            .expect("ids")
        ),
        ["c", "a"]
    );
    assert_eq!(
        s.items(Actor::entity(BOB, Affiliation::None), "n", &Selection::All)
            .map(|v| v.len()),
        Err(PubsubError::ClosedNode)
    );
    assert_eq!(
        PubsubError::ClosedNode.condition(),
        ("not-allowed", "cancel", Some("closed-node"))
    );
    assert_eq!(
        s.items(
            Actor::entity(BOB, Affiliation::Outcast),
            "n",
            &Selection::All
        )
        .map(|v| v.len()),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        s.items(member, "nope", &Selection::All).map(|v| v.len()),
        Err(PubsubError::NodeNotFound)
    );
    let mut closed = svc_with(
        "presence",
        NodeConfig {
            access_model: AccessModel::Closed,
            ..NodeConfig::default()
        },
    );
    assert_eq!(
        closed
            .items(owner(), "presence", &Selection::All)
            .map(|v| v.len()),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        closed.subscribe(owner(), "presence", "owner@example.org"),
        Err(PubsubError::Forbidden)
    );
}

#[test]
fn retract_rules() {
    let mut s = svc_with(
        "n",
        NodeConfig {
            publish_model: PublishModel::Open,
            notify_retract: false,
            ..NodeConfig::default()
        },
    );
    s.subscribe(Actor::service(), "n", BOB).expect("sub");
    let alice = Actor::entity(ALICE, Affiliation::Member);
    let bob = Actor::entity(BOB, Affiliation::Member);
    let mut gen_id = ids();
    s.publish(alice, "n", Some("mine"), "<a/>".into(), &mut gen_id)
        .expect("publish");
    assert_eq!(
        s.retract(bob, "n", "mine", true),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        s.retract(alice, "n", "other", true),
        Err(PubsubError::ItemNotFound)
    );
    assert_eq!(
        s.retract(alice, "n", "", true),
        Err(PubsubError::ItemRequired)
    );
    let quiet = s.retract(alice, "n", "mine", false).expect("own item");
    assert!(
        quiet.notifications.is_empty(),
        "notify=false and notify_retract off"
    );
    s.publish(alice, "n", Some("again"), "<a/>".into(), &mut gen_id)
        .expect("publish");
    let loud = s
        .retract(owner(), "n", "again", true)
        .expect("owner retracts");
    assert_eq!(
        loud.notifications[0].event,
        Event::Retracted("again".into())
    );
    assert_eq!(loud.notifications[0].recipients, vec![BOB.to_owned()]);
}

#[test]
fn subscribe_unsubscribe() {
    let mut s = svc_with("n", NodeConfig::default());
    let alice = Actor::entity(ALICE, Affiliation::None);
    let fx = s.subscribe(alice, "n", ALICE).expect("subscribe");
    assert_eq!(fx.changes.len(), 1);
    let again = s.subscribe(alice, "n", ALICE).expect("again");
    assert!(
        again.changes.is_empty(),
        "a repeat returns the current state"
    );
    assert!(s.node("n").expect("n").is_subscribed(ALICE));
    s.unsubscribe(alice, "n", ALICE).expect("unsubscribe");
    assert_eq!(
        s.unsubscribe(alice, "n", ALICE),
        Err(PubsubError::NotSubscribed)
    );
    assert_eq!(
        PubsubError::NotSubscribed.condition(),
        ("unexpected-request", "cancel", Some("not-subscribed"))
    );
    assert_eq!(
        s.subscribe(Actor::entity(BOB, Affiliation::Outcast), "n", BOB),
        Err(PubsubError::Forbidden)
    );
    let mut unsub = svc_with(
        "u",
        NodeConfig {
            subscribable: false,
            ..NodeConfig::default()
        },
    );
    assert_eq!(
        unsub.subscribe(alice, "u", ALICE),
        Err(PubsubError::SubscriptionsUnsupported)
    );
}

#[test]
fn affiliations_and_the_last_owner() {
    let mut s = svc_with("n", NodeConfig::default());
    s.set_affiliation(Actor::service(), "n", ALICE, Affiliation::Owner)
        .expect("owner");
    s.subscribe(Actor::service(), "n", BOB).expect("sub");
    assert_eq!(
        s.set_affiliation(
            Actor::entity(BOB, Affiliation::Publisher),
            "n",
            BOB,
            Affiliation::Owner
        ),
        Err(PubsubError::Forbidden)
    );
    assert_eq!(
        s.set_affiliation(owner(), "n", ALICE, Affiliation::None),
        Err(PubsubError::LastOwner)
    );
    s.set_affiliation(owner(), "n", BOB, Affiliation::Outcast)
        .expect("ban");
    assert_eq!(s.affiliation("n", BOB), Affiliation::Outcast);
    assert!(
        !s.node("n").expect("n").is_subscribed(BOB),
        "outcasts lose their subscription"
    );
    s.set_affiliation(owner(), "n", BOB, Affiliation::None)
        .expect("unban");
    assert_eq!(s.affiliation("n", BOB), Affiliation::None);
}

#[test]
fn configure_purge_delete() {
    let mut s = svc_with("n", NodeConfig::default());
    s.subscribe(Actor::service(), "n", BOB).expect("sub");
    let mut gen_id = ids();
    for id in ["a", "b", "c"] {
        s.publish(owner(), "n", Some(id), "<x/>".into(), &mut gen_id)
            .expect("publish");
    }
    let member = Actor::entity(BOB, Affiliation::Member);
    let two = NodeConfig {
        max_items: Some(2),
        notify_config: true,
        ..NodeConfig::default()
    };
    assert_eq!(
        s.configure(member, "n", two.clone()),
        Err(PubsubError::Forbidden)
    );
    let fx = s.configure(owner(), "n", two).expect("configure");
    assert!(fx.changes.contains(&Change::ItemRetracted {
        node: "n".into(),
        id: "a".into()
    }));
    assert_eq!(fx.notifications[0].event, Event::Configured);
    assert_eq!(s.purge(member, "n"), Err(PubsubError::Forbidden));
    let fx = s.purge(owner(), "n").expect("purge");
    assert_eq!(fx.notifications[0].event, Event::Purged);
    assert!(s.node("n").expect("n").is_empty());
    assert_eq!(s.delete_node(member, "n"), Err(PubsubError::Forbidden));
    let fx = s.delete_node(owner(), "n").expect("delete");
    assert_eq!(fx.notifications[0].event, Event::Deleted);
    assert_eq!(fx.notifications[0].recipients, vec![BOB.to_owned()]);
    assert!(s.node("n").is_none());
    assert_eq!(s.delete_node(owner(), "n"), Err(PubsubError::NodeNotFound));
}

#[test]
fn restoring_the_changes_rebuilds_the_state() {
    let mut s = Service::new();
    let mut log = Vec::new();
    let mut gen_id = ids();
    let mut record = |fx: Effects| log.extend(fx.changes);
    record(
        s.create_node(
            Actor::service(),
            "n",
            NodeConfig {
                max_items: Some(2),
                ..NodeConfig::default()
            },
        )
        .expect("c"),
    );
    record(s.subscribe(Actor::service(), "n", BOB).expect("s"));
    record(
        s.set_affiliation(Actor::service(), "n", ALICE, Affiliation::Publisher)
            .expect("a"),
    );
    for id in ["a", "b", "c"] {
        record(
            s.publish(owner(), "n", Some(id), format!("<{id}/>"), &mut gen_id)
                .expect("p"),
        );
    }
    record(s.retract(owner(), "n", "b", false).expect("r"));
    let mut copy = Service::new();
    for c in log {
        copy.restore(c);
    }
    let a = s.node("n").expect("n");
    let b = copy.node("n").expect("n");
    assert_eq!(a.items().collect::<Vec<_>>(), b.items().collect::<Vec<_>>());
    assert_eq!(a.subscribers(), b.subscribers());
    assert_eq!(copy.affiliation("n", ALICE), Affiliation::Publisher);
}
