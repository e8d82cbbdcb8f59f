//! mixd-load: plays the XMPP server over the component protocol (XEP-0114) and measures one
//! channel of N participants with M senders: deliveries per second and reflection latency.
//!
//! It starts the mixd binary itself (attached to this tool as its "server"), creates a channel,
//! joins N synthetic participants through the MIX protocol (as a XEP-0405 server would: joins
//! from bare JIDs, so each reflection is one delivery), then has M of them send messages as fast
//! as the link takes them, with the send time in the origin-id. Every reflection is counted;
//! latency is measured on the copies addressed to one probe participant.
//!
//!     cargo build --release --bin mixd --bin mixd-load
//!     target/release/mixd-load --mixd target/release/mixd --participants 1000 --senders 10 --messages 2000

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
struct Args {
    /// The mixd binary to measure.
    #[arg(long, default_value = "target/release/mixd")]
    mixd: String,
    /// Participants in the channel (N).
    #[arg(long, default_value_t = 1000)]
    participants: usize,
    /// Participants that send (M).
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 2000)]
    messages: usize,
    /// Messages per second, paced; 0 sends them all at once (an open-loop burst, where the
    /// latencies measure the queue behind the whole burst).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Join and talk through the MUC mirror (XEP-0045 presence and groupchat) instead of MIX.
    #[arg(long)]
    muc: bool,
    /// With --muc: the roles whose presence is broadcast (muc#roomconfig_presencebroadcast),
    /// e.g. "moderator" for very large rooms.
    #[arg(long, default_value = "moderator participant visitor")]
    broadcast: String,
}

/// CPU seconds (user + system) the process has used, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

const SECRET: &str = "load-secret";
const MIX: &str = "mix.load";
const MUC: &str = "muc.load";

/// Accept one component stream and complete its handshake; returns the stream and its domain.
async fn accept(listener: &TcpListener) -> Result<(TcpStream, String)> {
    let (mut s, _) = listener.accept().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("mixd closed during the stream header");
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(start) = text.find("<stream:stream")
            && text[start..].contains('>')
        {
            break text.to_string();
        }
    };
    let to = attr(&header, "to").context("stream header without to")?;
    let id = "loadstream";
    s.write_all(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
             xmlns:stream='http://etherx.jabber.org/streams' from='{to}' id='{id}'>"
        )
        .as_bytes(),
    )
    .await?;
    let expected: String = Sha1::digest(format!("{id}{SECRET}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut seen = String::new();
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("mixd closed during the handshake");
        }
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        if seen.contains("</handshake>") {
            break;
        }
    }
    if !seen.contains(&expected) {
        bail!("wrong handshake from mixd");
    }
    s.write_all(b"<handshake/>").await?;
    Ok((s, to))
}

fn attr(text: &str, name: &str) -> Option<String> {
    for q in ['\'', '"'] {
        let pat = format!("{name}={q}");
        if let Some(i) = text.find(&pat) {
            let rest = &text[i + pat.len()..];
            return rest.find(q).map(|e| rest[..e].to_owned());
        }
    }
    None
}

/// Read until `count` occurrences of `needle` have been seen.
async fn wait_for(s: &mut TcpStream, needle: &str, count: usize) -> Result<()> {
    let mut seen = 0;
    let mut carry = String::new();
    let mut chunk = vec![0u8; 1 << 16];
    while seen < count {
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut chunk))
            .await
            .context("timed out waiting for mixd")??;
        if n == 0 {
            bail!("mixd closed the stream");
        }
        carry.push_str(&String::from_utf8_lossy(&chunk[..n]));
        seen += carry.matches(needle).count();
        carry = tail(&carry, needle.len());
    }
    Ok(())
}

/// The last `n` characters (a needle split across two reads is still found).
fn tail(s: &str, n: usize) -> String {
    let from = s.char_indices().rev().nth(n).map(|(i, _)| i).unwrap_or(0);
    s[from..].to_owned()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let n = args.participants.max(1);
    let m = args.senders.clamp(1, n);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let data = tempfile_dir()?;
    let mut child = tokio::process::Command::new(&args.mixd)
        .env("MIXD_SERVER", format!("127.0.0.1:{port}"))
        .env("MIXD_SECRET", SECRET)
        .env("MIXD_MIX_DOMAIN", MIX)
        .env("MIXD_MUC_DOMAIN", MUC)
        .env("MIXD_DATA_DIR", &data)
        .env("MIXD_HTTP", "off")
        .env("MIXD_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", args.mixd))?;
    let (a, da) = accept(&listener).await?;
    let (b, _db) = accept(&listener).await?;
    let (mut mix, mut muc) = if da == MIX { (a, b) } else { (b, a) };

    mix.write_all(
        format!(
            "<iq type='set' id='c' from='owner@load' to='{MIX}'>\
             <create xmlns='urn:xmpp:mix:core:1' channel='bench'/></iq>"
        )
        .as_bytes(),
    )
    .await?;
    wait_for(&mut mix, "type='result'", 1)
        .await
        .or_else(|_| Ok::<_, anyhow::Error>(()))?;

    if args.muc {
        let roles: String = args
            .broadcast
            .split_whitespace()
            .map(|r| format!("<value>{r}</value>"))
            .collect();
        muc.write_all(
            format!(
                "<iq type='set' id='cfg' from='owner@load/o' to='bench@{MUC}'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_presencebroadcast'>{roles}</field></x></query></iq>"
            )
            .as_bytes(),
        )
        .await?;
        wait_for(&mut muc, "id='cfg'", 1).await?;
    }
    let t = Instant::now();
    let mut joins = String::new();
    for i in 0..n {
        if args.muc {
            joins.push_str(&format!(
                "<presence from='u{i}@load/r' to='bench@{MUC}/u{i}'>\
                 <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
            ));
        } else {
            joins.push_str(&format!(
                "<iq type='set' id='j{i}' from='u{i}@load' to='bench@{MIX}'><join xmlns='urn:xmpp:mix:core:1'>\
                 <subscribe node='urn:xmpp:mix:nodes:messages'/><nick>u{i}</nick></join></iq>"
            ));
        }
    }
    // Joins and messages go through the face under test.
    let link = if args.muc { muc } else { mix };
    let joined_marker = if args.muc { "<subject" } else { "<join " };
    let (mut rd, wr) = link.into_split();
    let mut wr = BufWriter::new(wr);
    wr.write_all(joins.as_bytes()).await?;
    wr.flush().await?;
    // Each join answers with one result.
    let mut joined = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    let mut carry = String::new();
    while joined < n {
        let k = tokio::time::timeout(Duration::from_secs(120), rd.read(&mut chunk)).await??;
        if k == 0 {
            bail!("mixd closed the stream during joins");
        }
        carry.push_str(&String::from_utf8_lossy(&chunk[..k]));
        // MUC: the subject ends each entry (XEP-0045 §7.2.2 order).
        joined += carry.matches(joined_marker).count();
        carry = tail(&carry, 8);
    }
    eprintln!("{n} participants joined in {:.2?}", t.elapsed());
    let to_room = if args.muc {
        format!("bench@{MUC}")
    } else {
        format!("bench@{MIX}")
    };

    let total = args.messages;
    let expected = total * n;
    let pid = child.id().unwrap_or(0);
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let rate = args.rate;
    let sender = tokio::spawn(async move {
        for i in 0..total {
            if rate > 0 {
                // Paced: message i leaves at i/rate seconds; flush what is due, then wait.
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    wr.flush().await?;
                    tokio::time::sleep(wait).await;
                }
            }
            let s = i % m;
            let sent = start.elapsed().as_nanos();
            let msg = format!(
                "<message type='groupchat' id='m{i}' from='u{s}@load/r' to='{to_room}'>\
                 <body>load message {i} with some text to make it typical in size</body>\
                 <origin-id xmlns='urn:xmpp:sid:0' id='t{sent}'/></message>"
            );
            wr.write_all(msg.as_bytes()).await?;
        }
        wr.flush().await?;
        Ok::<_, anyhow::Error>(wr)
    });

    // Count deliveries; take latency from the copies for the probe participant u0. Byte
    // searches only: the tool must stay cheaper than what it measures.
    let end_tag = memchr::memmem::Finder::new(b"</message>");
    // The probe participant: its bare JID (MIX, joined through its server) or its client
    // (MUC occupants are reached at their full JIDs).
    let probe_to = if args.muc {
        "to='u0@load/r'"
    } else {
        "to='u0@load'"
    };
    let probe = memchr::memmem::Finder::new(probe_to.as_bytes());
    let stamp = memchr::memmem::Finder::new(b"id='t");
    let mut delivered = 0usize;
    let mut latencies = Vec::with_capacity(total);
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 21);
    while delivered < expected {
        let k = tokio::time::timeout(Duration::from_secs(60), rd.read(&mut chunk))
            .await
            .context("deliveries stopped")??;
        if k == 0 {
            bail!("mixd closed the stream");
        }
        let now = start.elapsed().as_nanos();
        pending.extend_from_slice(&chunk[..k]);
        let mut consumed = 0;
        for end in end_tag.find_iter(&pending) {
            let msg = &pending[consumed..end];
            delivered += 1;
            if probe.find(msg).is_some()
                && let Some(at) = stamp.find(msg)
            {
                let digits: Vec<u8> = msg[at + 5..]
                    .iter()
                    .copied()
                    .take_while(u8::is_ascii_digit)
                    .collect();
                if let Some(sent) = std::str::from_utf8(&digits)
                    .ok()
                    .and_then(|d| d.parse::<u128>().ok())
                {
                    latencies.push((now.saturating_sub(sent)) as f64 / 1e6);
                }
            }
            consumed = end + b"</message>".len();
        }
        pending.drain(..consumed);
    }
    let elapsed = start.elapsed();
    let _ = sender.await;
    let cpu = match (cpu_before, cpu_seconds(pid)) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => f64::NAN,
    };
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "participants={n} senders={m} messages={total} rate={} deliveries={delivered} elapsed={:.3}s \
         deliveries/s={:.0} messages/s={:.0} latency_ms p50={:.2} p99={:.2} (from {} samples) \
         mixd_cpu={cpu:.2}s deliveries_per_mixd_cpu_second={:.0}",
        if rate == 0 {
            "burst".to_owned()
        } else {
            rate.to_string()
        },
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.len(),
        delivered as f64 / cpu
    );
    child.kill().await.ok();
    std::fs::remove_dir_all(&data).ok();
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mixd-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
