//! mixd: MIX channels with a MUC mirror, served to any XMPP server as an external component.
//!
//! The binary's shell: configuration, component links, the router and the admin HTTP API. The
//! protocol lives in the workspace's library crates (ARCHITECTURE.md).

pub mod admin;
pub mod channels;
pub mod config;
pub mod link;
pub mod router;
pub mod xmlstream;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::link::{Link, LinkSpec};
use crate::router::{Arrival, Face, Router};

/// How long shutdown may take in all before the remaining tasks are abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1800);

/// Run mixd until `shutdown` completes: open the store, bring up both component links, route,
/// serve the admin API; then stop reading, finish in-flight work, close the streams.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let store = mam_store::Store::open(&config.database_url)
        .await
        .with_context(|| format!("opening the database {}", redact(&config.database_url)))?;
    tracing::info!(backend = store.backend(), "database ready");

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();

    let domains = mix_service::Domains {
        mix: config.mix.domain.parse().context("mix.domain")?,
        muc: config.muc.domain.parse().context("muc.domain")?,
    };
    let spec = |d: &config::Domain| LinkSpec {
        server: config.server.clone(),
        domain: d.domain.clone(),
        secret: d.secret.clone(),
        max_stanza_bytes: config.max_stanza_bytes,
        reconnect_max: config.reconnect_max,
    };
    let (mix_link, mix_out) = Link::new(spec(&config.mix), config.outbound_queue);
    let (muc_link, muc_out) = Link::new(spec(&config.muc), config.outbound_queue);
    // DMUC mirror role: a third link, for the mirror domain.
    let mirror_link = config
        .dmuc_mirror
        .as_ref()
        .map(|d| Link::new(spec(d), config.outbound_queue));
    let token = CancellationToken::new();

    let admin_state = admin::AdminState {
        links: [
            (config.mix.domain.clone(), mix_link.status.clone()),
            (config.muc.domain.clone(), muc_link.status.clone()),
        ]
        .into_iter()
        .chain(
            config
                .dmuc_mirror
                .iter()
                .zip(mirror_link.iter())
                .map(|(d, (l, _))| (d.domain.clone(), l.status.clone())),
        )
        .collect(),
        store: store.clone(),
        metrics,
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin HTTP API to {addr}"))?;
        tracing::info!(%addr, "admin HTTP API listening");
        let app = admin::admin_router(admin_state);
        let t = token.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { t.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "admin HTTP API failed");
            }
        });
    }

    let (tx, rx) = mpsc::channel::<Arrival>(1024);
    let mut mirror_face = None;
    let mut links = vec![(Face::Mix, mix_link), (Face::Muc, muc_link)];
    if let (Some((link, out)), Some(d)) = (mirror_link, &config.dmuc_mirror) {
        links.push((Face::Mirror, link));
        mirror_face = Some(router::MirrorFace {
            service: muc_mirror::dmuc_mirror::MirrorService::new(&d.domain),
            out,
            started: std::time::Instant::now(),
        });
    }
    for (face, link) in links {
        let (ltx, mut lrx) = mpsc::channel(256);
        let tx = tx.clone();
        // Tag each link's stanzas with the face of the link that carried them.
        tasks.spawn(async move {
            while let Some(inbound) = lrx.recv().await {
                if tx
                    .send(Arrival {
                        link: face,
                        inbound,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        tasks.spawn(link.run(ltx, token.clone()));
    }
    drop(tx);
    let mut nicks = mix_service::channel::NickRegistry::default();
    for (jid, nick) in store
        .registered_nicks()
        .await
        .context("reading registered nicks")?
    {
        nicks.insert(&jid, &nick);
    }
    let mut channels = channels::Channels::new(
        &domains,
        store.clone(),
        mix_out.clone(),
        muc_out.clone(),
        std::sync::Arc::new(std::sync::RwLock::new(nicks)),
    );
    channels.idle = config.channel_idle;
    channels.presence_cap = config.presence_cap;
    channels.dmuc_mirrors = config.dmuc_mirrors.clone();
    let router = Router {
        domains,
        store: store.clone(),
        mix_out,
        muc_out,
        max_stanza_bytes: config.max_stanza_bytes,
        dmuc_master: !config.dmuc_mirrors.is_empty(),
        mirror: mirror_face,
        channels,
    };
    tasks.spawn(router.run(rx, token.clone()));
    tasks.spawn(fulltext_indexer(store.clone(), token.clone()));
    tasks.spawn(retention_sweep(
        store.clone(),
        config.retention,
        config.retention_interval,
        token.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down");
    token.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not finish in time");
        tasks.abort_all();
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Keeps the SQLite full-text index close behind the archive, in large batches (a search
/// catches up whatever is left before it runs).
async fn fulltext_indexer(store: mam_store::Store, stop: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.index_fulltext(20_000).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "full-text indexing failed; next round retries"),
        }
    }
}

/// XEP-0313 §7.1.1 retention, in the background: small transactions, so channel writers
/// interleave with it instead of waiting behind one long delete.
async fn retention_sweep(
    store: mam_store::Store,
    default: mam_store::Retention,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = channels::now_us();
        match store
            .apply_retention(
                default,
                &mix_service::channel::mam::ARCHIVED_NODES,
                now,
                1000,
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(dropped = n, "archive retention applied");
                metrics::counter!("mixd_archive_retention_dropped_total").increment(n);
            }
            Err(e) => tracing::warn!(error = %e, "archive retention failed; next sweep retries"),
        }
    }
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
