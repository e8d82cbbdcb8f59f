//! Channel state and the archive over time, through mixd's real component links: a crash,
//! retention, and channels leaving memory when idle. The test plays the XMPP server (XEP-0114)
//! itself, so it can push thousands of messages and kill mixd at any moment.
//!
//! "Durable before visible" (ARCHITECTURE step 4, the MAM issue item 6): after `kill -9` under
//! load, every message any recipient received is in the archive after a restart, with the same
//! id, and no id is ever given twice.

use std::collections::HashSet;
use std::time::Duration;

use minidom::Element;
use mixd::xmlstream::StreamEvent;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::harness::{MIX, MUC, Mixd, SECRET};
use crate::scansion::wire::{EventReader, NS_STREAM, handshake_digest, write};

const NS_COMPONENT: &str = "jabber:component:accept";
const NS_SID: &str = "urn:xmpp:sid:0";
const NS_MAM: &str = "urn:xmpp:mam:2";
const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// The server side of mixd's MIX link (the MUC link is accepted and kept open, unused).
struct Links {
    rd: EventReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    _muc: (EventReader<OwnedReadHalf>, OwnedWriteHalf),
}

async fn accept_links(listener: &TcpListener) -> Links {
    let mut mix = None;
    let mut muc = None;
    while mix.is_none() || muc.is_none() {
        let (stream, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
            .await
            .expect("mixd connects within 20 s")
            .expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let (rd, mut wr) = stream.into_split();
        let mut rd = EventReader::new(rd);
        let StreamEvent::Header(h) = rd.next_timed("stream header").await.expect("header") else {
            panic!("expected a stream header");
        };
        let domain = h.attr("to").unwrap_or_default().to_owned();
        let id = format!("{:016x}", rand::random::<u64>());
        write(
            &mut wr,
            format!(
                "<?xml version='1.0'?><stream:stream xmlns='{NS_COMPONENT}' xmlns:stream='{NS_STREAM}' id='{id}' from='{domain}'>"
            )
            .as_bytes(),
        )
        .await
        .expect("header reply");
        let hs = rd.stanza("handshake").await.expect("handshake");
        assert_eq!(hs.text().trim(), handshake_digest(&id, SECRET));
        write(&mut wr, b"<handshake/>").await.expect("handshake ok");
        if domain == MIX {
            mix = Some((rd, wr));
        } else {
            assert_eq!(domain, MUC);
            muc = Some((rd, wr));
        }
    }
    let (rd, wr) = mix.expect("mix link");
    Links {
        rd,
        wr,
        _muc: muc.expect("muc link"),
    }
}

impl Links {
    async fn send(&mut self, xml: &str) {
        self.wr.write_all(xml.as_bytes()).await.expect("send");
    }

    /// The next stanza matching `pred`, skipping others.
    async fn until(&mut self, what: &str, pred: impl Fn(&Element) -> bool) -> Element {
        loop {
            let el = tokio::time::timeout(Duration::from_secs(20), self.rd.stanza(what))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("stanza");
            if std::env::var_os("DURABILITY_DEBUG").is_some() {
                eprintln!("<< {}", crate::scansion::wire::show_compact(&el));
            }
            if pred(&el) {
                return el;
            }
        }
    }

    async fn iq(&mut self, id: &str, xml: &str) -> Element {
        self.send(xml).await;
        self.until(id, |e| e.name() == "iq" && e.attr("id") == Some(id))
            .await
    }

    /// Every archived message id of the channel, in archive order, paging through MAM.
    async fn archive_ids(&mut self, channel: &str, from: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = String::new();
        for page in 0.. {
            let qid = format!("q{page}");
            let rsm = if after.is_empty() {
                "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max></set>".to_owned()
            } else {
                format!(
                    "<set xmlns='http://jabber.org/protocol/rsm'><max>250</max><after>{after}</after></set>"
                )
            };
            self.send(&format!(
                "<iq type='set' id='{qid}' from='{from}' to='{channel}@{MIX}'><query xmlns='{NS_MAM}' queryid='{qid}'>{rsm}</query></iq>"
            ))
            .await;
            loop {
                let el = self.until("MAM results", |_| true).await;
                if el.name() == "iq" && el.attr("id") == Some(qid.as_str()) {
                    assert_eq!(el.attr("type"), Some("result"), "{el:?}");
                    let fin = el.get_child("fin", NS_MAM).expect("fin");
                    let last = fin
                        .get_child("set", NS_RSM)
                        .and_then(|s| s.get_child("last", NS_RSM))
                        .map(|l| l.text());
                    if fin.attr("complete") == Some("true") {
                        return ids;
                    }
                    after = last.expect("a non-final page names its last id");
                    break;
                }
                if let Some(r) = el.get_child("result", NS_MAM)
                    && r.attr("queryid") == Some(qid.as_str())
                {
                    ids.push(r.attr("id").expect("result id").to_owned());
                }
            }
        }
        ids
    }
}

fn stanza_id(el: &Element) -> Option<String> {
    el.get_child("stanza-id", NS_SID)
        .and_then(|s| s.attr("id"))
        .map(str::to_owned)
}

async fn start(
    listener: &TcpListener,
    dir: Option<tempfile::TempDir>,
    extra: &[(&str, &str)],
) -> (Mixd, Links) {
    let server = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
    let mixd = match dir {
        Some(d) => Mixd::start_in(d, &server, extra),
        None => Mixd::start(&server, extra),
    };
    let links = accept_links(listener).await;
    (mixd, links)
}

async fn create_and_join(links: &mut Links, channel: &str, users: usize) {
    let r = links
        .iq(
            "c",
            &format!(
                "<iq type='set' id='c' from='owner@localhost/o' to='{MIX}'><create xmlns='urn:xmpp:mix:core:1' channel='{channel}'/></iq>"
            ),
        )
        .await;
    assert_eq!(r.attr("type"), Some("result"), "create: {r:?}");
    for u in 0..users {
        let id = format!("j{u}");
        let r = links
            .iq(
                &id,
                &format!(
                    "<iq type='set' id='{id}' from='u{u}@localhost' to='{channel}@{MIX}'><join xmlns='urn:xmpp:mix:core:1'>\
                     <subscribe node='urn:xmpp:mix:nodes:messages'/><nick>u{u}</nick></join></iq>"
                ),
            )
            .await;
        assert_eq!(r.attr("type"), Some("result"), "join: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_seen_before_kill_9_is_archived_and_no_id_is_reused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let (mixd, mut links) = start(&listener, None, &[]).await;
    // A fresh name: on PostgreSQL the database outlives one test.
    let channel = format!("crash{:08x}", rand::random::<u32>());
    create_and_join(&mut links, &channel, 3).await;

    // Messages from u1 without pause; every reflection to u0 is what "a recipient received".
    let total = 20_000;
    let mut burst = String::new();
    for i in 0..total {
        burst.push_str(&format!(
            "<message type='groupchat' id='m{i}' from='u1@localhost/r' to='{channel}@{MIX}'><body>message {i}</body></message>"
        ));
    }
    let Links { rd, mut wr, _muc } = links;
    let sender = tokio::spawn(async move {
        // Written in slices so the kill lands in the middle of the stream.
        for chunk in burst.as_bytes().chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                break;
            }
        }
        wr
    });
    let mut rd = rd;
    let mut seen: Vec<String> = Vec::new();
    let kill_after = 1500 + (rand::random::<u64>() % 3000) as usize;
    let mut mixd = Some(mixd);
    let mut dir = None;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), rd.next()).await;
        let ev = match next {
            Ok(Ok(ev)) => ev,
            // The stream ends when mixd dies.
            Ok(Err(_)) => break,
            Err(_) => panic!("no stanza for 20 s; saw {}", seen.len()),
        };
        if let StreamEvent::Stanza(el) = ev
            && el.name() == "message"
            && el.attr("to") == Some("u0@localhost")
            && let Some(id) = stanza_id(&el)
        {
            seen.push(id);
            if seen.len() == kill_after
                && let Some(m) = mixd.take()
            {
                dir = Some(m.kill_hard());
            }
        }
    }
    let _ = sender.await;
    assert!(
        seen.len() >= kill_after,
        "mixd died before the kill ({} seen)",
        seen.len()
    );
    assert!(
        seen.len() < total,
        "the kill came after everything was sent; nothing proven"
    );

    let (_mixd, mut links) = start(&listener, dir, &[]).await;
    let archived = links.archive_ids(&channel, "owner@localhost/o").await;
    let unique: HashSet<&String> = archived.iter().collect();
    assert_eq!(
        unique.len(),
        archived.len(),
        "an id appears twice in the archive"
    );
    let missing: Vec<&String> = seen.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} received messages are not in the archive after kill -9 (first: {:?})",
        missing.len(),
        seen.len(),
        missing.first()
    );
    // The order recipients saw is the archive order.
    let positions: Vec<usize> = seen
        .iter()
        .map(|id| archived.iter().position(|a| a == id).expect("archived"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "archive order differs"
    );

    // After the restart, new messages get new ids.
    links
        .send(&format!(
            "<message type='groupchat' id='after' from='u1@localhost/r' to='{channel}@{MIX}'><body>after</body></message>"
        ))
        .await;
    let echo = links
        .until("the reflection after restart", |e| {
            e.name() == "message" && e.attr("to") == Some("u0@localhost")
        })
        .await;
    let fresh = stanza_id(&echo).expect("stanza-id");
    assert!(
        !unique.contains(&fresh),
        "id {fresh} was given before the crash"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_only_the_newest_entries() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let (_mixd, mut links) = start(
        &listener,
        None,
        &[
            ("MIXD_ARCHIVE_RETENTION_MESSAGES", "5"),
            ("MIXD_ARCHIVE_RETENTION_INTERVAL_SECONDS", "1"),
        ],
    )
    .await;
    let channel = format!("short{:08x}", rand::random::<u32>());
    create_and_join(&mut links, &channel, 1).await;
    let mut sent = Vec::new();
    for i in 0..12 {
        links
            .send(&format!(
                "<message type='groupchat' id='k{i}' from='u0@localhost/r' to='{channel}@{MIX}'><body>keep {i}</body></message>"
            ))
            .await;
        let echo = links
            .until("reflection", |e| {
                e.name() == "message" && e.attr("id").is_some() && stanza_id(e).is_some()
            })
            .await;
        sent.push(stanza_id(&echo).expect("id"));
    }
    let mut archived = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        archived = links.archive_ids(&channel, "u0@localhost/r").await;
        if archived.len() <= 5 {
            break;
        }
    }
    assert_eq!(archived, sent[7..], "the five newest stay, in order");
}

/// `mixd_channels_live` from the admin API's metrics.
fn live_channels(mixd: &Mixd) -> Option<f64> {
    let (_, body) = mixd.get("/metrics")?;
    body.lines()
        .find(|l| l.starts_with("mixd_channels_live"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// ARCHITECTURE "Life of a message" step 2: an idle channel leaves memory and the next stanza
/// loads it whole (participants, ids, subscriptions); one with a client online stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_channels_leave_memory_and_come_back_whole() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let (mixd, mut links) = start(&listener, None, &[("MIXD_CHANNEL_IDLE_SECONDS", "1")]).await;
    let channel = format!("idle{:08x}", rand::random::<u32>());
    create_and_join(&mut links, &channel, 2).await;
    let say = |text: &str| {
        format!(
            "<message type='groupchat' id='{text}' from='u1@localhost/r' to='{channel}@{MIX}'><body>{text}</body></message>"
        )
    };
    let to_u0 = |e: &Element| e.name() == "message" && e.attr("to") == Some("u0@localhost");
    links.send(&say("before")).await;
    let before = links.until("reflection before", to_u0).await;
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if live_channels(&mixd) == Some(0.0) {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the idle channel stayed in memory: {:?}",
        live_channels(&mixd)
    );
    links.send(&say("after")).await;
    let after = links.until("reflection after reload", to_u0).await;
    assert_eq!(
        before.attr("from"),
        after.attr("from"),
        "same participant id after the reload"
    );
    assert_eq!(live_channels(&mixd), Some(1.0));
    // A client online in the channel keeps it in memory (its presence is not stored).
    links
        .send(&format!(
            "<presence from='u0@localhost/phone' to='{channel}@{MIX}'/>"
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        live_channels(&mixd),
        Some(1.0),
        "evicted with a client online"
    );
}
