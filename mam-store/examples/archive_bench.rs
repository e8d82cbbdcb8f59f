//! Archive benchmark (the MAM issue, item 9): one channel holding N messages; ingest rate with
//! group commit (one transaction per 256 appends, as channel actors commit), then p50/p99 of
//! the queries clients make: the latest 50, a page deep in the archive by id, a time range,
//! and a full-text search.
//!
//!     cargo run --release -p mam-store --example archive_bench -- 1000000 [DATABASE_URL]
//!
//! Without a URL the database is a fresh SQLite file in a temporary directory. Timings are
//! printed, never asserted (docs/archive-bench.md has the figures and the machine).

use std::time::{Duration, Instant};

use mam_store::{ArchiveQuery, ArchiveRecord, NewChannel, Store, Write};

const CHANNEL: &str = "bench";
const NODE: &str = "urn:xmpp:mix:nodes:messages";
const BATCH: usize = 256;
const RUNS: usize = 200;

/// A deterministic generator (xorshift) so every run archives the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// 4,096 made-up words; word k is used with probability falling off with k (Zipf-like), so
/// there are common and rare words as in real chat.
fn word(rng: &mut Rng) -> String {
    let k = (rng.below(64) * rng.below(64)) as usize;
    format!("w{k:04}")
}

fn body(rng: &mut Rng, i: usize) -> String {
    let n = 5 + rng.below(10) as usize;
    let mut words: Vec<String> = (0..n).map(|_| word(rng)).collect();
    // One message in a hundred mentions the cauldron: the full-text probe.
    if i % 100 == 7 {
        words.push("cauldron".into());
    }
    words.join(" ")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

async fn measure<F, Fut>(name: &str, mut f: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::with_capacity(RUNS);
    let mut rows = 0;
    for run in 0..RUNS {
        let t = Instant::now();
        rows += f(run).await;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "{name:<34} p50 {:>8.3} ms   p99 {:>8.3} ms   ({} runs, {:.1} rows/run)",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        RUNS,
        rows as f64 / RUNS as f64
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}/bench.db", dir.path().display()));
    let store = Store::open(&url).await?;
    println!("backend {}, {n} messages in one channel", store.backend());
    // A database given by URL may hold the channel of an earlier run: start from nothing.
    store
        .commit(&[
            Write::DestroyChannel {
                channel: CHANNEL.to_owned(),
            },
            Write::CreateChannel {
                channel: NewChannel::named(CHANNEL),
                now_us: 0,
            },
        ])
        .await?;

    // Ingest: ids are UUIDv7 as in mixd, one message per millisecond of archive time.
    let t0: i64 = 1_700_000_000_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ids = Vec::with_capacity(n);
    let start = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    let mut in_commit = Duration::ZERO;
    for i in 0..n {
        let id = uuid::Uuid::now_v7().to_string();
        let text = body(&mut rng, i);
        let sender = format!("user{}@example.org", rng.below(500));
        batch.push(Write::Archive(ArchiveRecord {
            channel: CHANNEL.into(),
            node: NODE.into(),
            id: id.clone(),
            ts: t0 + i as i64 * 1000,
            sender: sender.clone(),
            stanza: format!(
                "<message xmlns='jabber:client' from='{CHANNEL}@mix.example.org/p{}' type='groupchat' id='{id}'>\
                 <body>{text}</body><mix xmlns='urn:xmpp:mix:core:1'><nick>n</nick><jid>{sender}</jid></mix>\
                 <stanza-id xmlns='urn:xmpp:sid:0' by='{CHANNEL}@mix.example.org' id='{id}'/></message>",
                rng.below(500)
            ),
            body: Some(text),
        }));
        ids.push(id);
        if batch.len() == BATCH {
            let c = Instant::now();
            store.commit(&batch).await?;
            in_commit += c.elapsed();
            batch.clear();
        }
        if i > 0 && i % 1_000_000 == 0 {
            eprintln!(
                "  {i} archived, {:.0}/s",
                i as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let c = Instant::now();
    store.commit(&batch).await?;
    in_commit += c.elapsed();
    let took = start.elapsed();
    println!(
        "ingest: {n} messages in {:.1} s = {:.0} messages/s (group commit of {BATCH}); \
         the store alone (time inside commit): {:.0} messages/s",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        n as f64 / in_commit.as_secs_f64()
    );

    // What mixd's background indexer does behind the appends (SQLite; PostgreSQL indexes in
    // the insert itself).
    let t = Instant::now();
    let mut indexed = 0;
    loop {
        let k = store.index_fulltext(50_000).await?;
        if k == 0 {
            break;
        }
        indexed += k;
    }
    if indexed > 0 {
        println!(
            "full-text indexing (background): {indexed} messages in {:.1} s = {:.0} messages/s",
            t.elapsed().as_secs_f64(),
            indexed as f64 / t.elapsed().as_secs_f64()
        );
    }

    let q = |max: usize| ArchiveQuery {
        channel: CHANNEL.into(),
        node: NODE.into(),
        max,
        ..ArchiveQuery::default()
    };
    let s = &store;
    measure("latest 50 (RSM before='')", |_| async move {
        let p = s
            .archive_page(&ArchiveQuery {
                backwards: true,
                ..q(50)
            })
            .await
            .expect("query");
        p.rows.len()
    })
    .await;
    // A page far from either end: 10^6 deep, or the middle of smaller archives.
    let deep = n
        .saturating_sub(1_000_000)
        .max(n / 2)
        .min(n.saturating_sub(51));
    let deep_id = ids[deep].clone();
    let deep_id = &deep_id;
    measure(
        &format!("page {} deep, after-id", n - deep),
        |_| async move {
            let p = s
                .archive_page(&ArchiveQuery {
                    after: Some(deep_id.clone()),
                    ..q(50)
                })
                .await
                .expect("query");
            p.rows.len()
        },
    )
    .await;
    let mut rng2 = Rng(42);
    let windows: Vec<i64> = (0..RUNS)
        .map(|_| rng2.below(n.saturating_sub(1000).max(1) as u64) as i64)
        .collect();
    let windows = &windows;
    measure("time range (1 s window), first 50", |run| async move {
        let from = t0 + windows[run] * 1000;
        let p = s
            .archive_page(&ArchiveQuery {
                start: Some(from),
                end: Some(from + 1_000_000),
                ..q(50)
            })
            .await
            .expect("query");
        p.rows.len()
    })
    .await;
    measure("full text 'cauldron', latest 50", |_| async move {
        let p = s
            .archive_page(&ArchiveQuery {
                fulltext: Some("cauldron".into()),
                backwards: true,
                ..q(50)
            })
            .await
            .expect("query");
        p.rows.len()
    })
    .await;
    measure("full text two words, latest 50", |_| async move {
        let p = s
            .archive_page(&ArchiveQuery {
                fulltext: Some("cauldron w0000".into()),
                backwards: true,
                ..q(50)
            })
            .await
            .expect("query");
        p.rows.len()
    })
    .await;
    store.close().await;
    Ok(())
}
