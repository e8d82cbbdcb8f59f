//! Archive retention (XEP-0313 §7.1.1): per-channel rules over a service default, applied by a
//! background sweep in small transactions so writers never wait long. Only the oldest entries
//! of a node's archive are ever dropped, so the archive never has a hole.

use crate::{Store, StoreError, on_pool};

/// How much of an archive to keep; `None` keeps everything on that count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Drop entries older than this many days.
    pub days: Option<i64>,
    /// Keep at most this many entries per node.
    pub messages: Option<i64>,
}

/// A channel's own setting for one rule: the default, keep everything, or a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Default,
    Keep,
    Limit(i64),
}

impl Rule {
    /// As stored: NULL = default, 0 = keep everything.
    fn from_column(v: Option<i64>) -> Rule {
        match v {
            None => Rule::Default,
            Some(n) if n <= 0 => Rule::Keep,
            Some(n) => Rule::Limit(n),
        }
    }

    fn to_column(self) -> Option<i64> {
        match self {
            Rule::Default => None,
            Rule::Keep => Some(0),
            Rule::Limit(n) => Some(n.max(1)),
        }
    }

    fn over(self, default: Option<i64>) -> Option<i64> {
        match self {
            Rule::Default => default,
            Rule::Keep => None,
            Rule::Limit(n) => Some(n),
        }
    }
}

/// A channel's own retention rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelRetention {
    pub days: Rule,
    pub messages: Rule,
}

const DAY_US: i64 = 86_400 * 1_000_000;

impl Store {
    /// Set a channel's own rules; false when there is no such channel.
    pub async fn set_retention(
        &self,
        channel: &str,
        r: ChannelRetention,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE channels SET retention_days = $2, retention_messages = $3 WHERE name = $1")
            .bind(channel).bind(r.days.to_column()).bind(r.messages.to_column())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// A channel's own rules, if the channel exists.
    pub async fn retention(&self, channel: &str) -> Result<Option<ChannelRetention>, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT retention_days, retention_messages FROM channels WHERE name = $1")
            .bind(channel).fetch_optional(p).await)?;
        Ok(row.map(|(d, m)| ChannelRetention {
            days: Rule::from_column(d),
            messages: Rule::from_column(m),
        }))
    }

    /// One sweep over every channel's `nodes`: drops what the rules (the channel's own, else
    /// `default`) no longer keep, at most `batch` rows per transaction. Returns rows dropped.
    pub async fn apply_retention(
        &self,
        default: Retention,
        nodes: &[&str],
        now_us: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let channels: Vec<(String, Option<i64>, Option<i64>)> = on_pool!(self, p => sqlx::query_as(
            "SELECT name, retention_days, retention_messages FROM channels ORDER BY name")
            .fetch_all(p).await)?;
        let mut dropped = 0;
        for (channel, d, m) in channels {
            let days = Rule::from_column(d).over(default.days);
            let messages = Rule::from_column(m).over(default.messages);
            for node in nodes {
                if let Some(days) = days {
                    let cutoff = now_us.saturating_sub(days.saturating_mul(DAY_US));
                    dropped += self.drop_older(&channel, node, cutoff, batch).await?;
                }
                if let Some(keep) = messages {
                    dropped += self.drop_beyond(&channel, node, keep, batch).await?;
                }
            }
        }
        Ok(dropped)
    }

    /// Drop the prefix of the archive (in archive order) up to the first entry that is not
    /// older than `cutoff`: an entry stamped old after a younger one stays (no holes).
    async fn drop_older(
        &self,
        channel: &str,
        node: &str,
        cutoff: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut dropped = 0;
        loop {
            let head: Vec<(i64, i64)> = on_pool!(self, p => sqlx::query_as(
                "SELECT seq, ts FROM archive WHERE channel = $1 AND node = $2 ORDER BY seq LIMIT $3")
                .bind(channel).bind(node).bind(batch).fetch_all(p).await)?;
            let old = head.iter().take_while(|(_, ts)| *ts < cutoff).count();
            let Some(&(last, _)) = old.checked_sub(1).and_then(|i| head.get(i)) else {
                return Ok(dropped);
            };
            dropped += self.drop_through(channel, node, last).await?;
            if old < head.len() || head.len() < batch as usize {
                return Ok(dropped);
            }
        }
    }

    /// Keep the newest `keep` entries.
    async fn drop_beyond(
        &self,
        channel: &str,
        node: &str,
        keep: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let boundary: Option<(i64,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT seq FROM archive WHERE channel = $1 AND node = $2 ORDER BY seq DESC LIMIT 1 OFFSET $3")
            .bind(channel).bind(node).bind(keep).fetch_optional(p).await)?;
        let Some((boundary,)) = boundary else {
            return Ok(0);
        };
        let mut dropped = 0;
        loop {
            let next: Option<(i64,)> = on_pool!(self, p => sqlx::query_as(
                "SELECT seq FROM archive WHERE channel = $1 AND node = $2 AND seq <= $3 \
                 ORDER BY seq LIMIT 1 OFFSET $4")
                .bind(channel).bind(node).bind(boundary).bind(batch - 1).fetch_optional(p).await)?;
            match next {
                Some((upto,)) if upto < boundary => {
                    dropped += self.drop_through(channel, node, upto).await?;
                }
                _ => return Ok(dropped + self.drop_through(channel, node, boundary).await?),
            }
        }
    }

    /// One transaction: every entry of the node up to and including `seq`.
    async fn drop_through(&self, channel: &str, node: &str, seq: i64) -> Result<u64, StoreError> {
        Ok(on_pool!(self, p => sqlx::query(
            "DELETE FROM archive WHERE channel = $1 AND node = $2 AND seq <= $3")
            .bind(channel).bind(node).bind(seq).execute(p).await.map(|r| r.rows_affected()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArchiveQuery, ArchiveRecord, NewChannel, Write, testdb};

    const NODE: &str = "urn:xmpp:mix:nodes:messages";

    async fn fill(store: &Store, channel: &str, stamps: &[i64]) {
        let mut w = vec![Write::CreateChannel {
            channel: NewChannel::named(channel),
            now_us: 0,
        }];
        for (i, ts) in stamps.iter().enumerate() {
            w.push(Write::Archive(ArchiveRecord {
                channel: channel.into(),
                node: NODE.into(),
                id: format!("{channel}-{i}"),
                ts: *ts,
                sender: "a@x".into(),
                stanza: "<message/>".into(),
                body: Some(format!("word{i}")),
            }));
        }
        store.commit(&w).await.expect("fill");
    }

    async fn left(store: &Store, channel: &str) -> Vec<String> {
        store
            .archive_page(&ArchiveQuery {
                channel: channel.into(),
                node: NODE.into(),
                max: 1000,
                ..ArchiveQuery::default()
            })
            .await
            .expect("page")
            .rows
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    #[tokio::test]
    async fn counts_and_ages_drop_only_the_oldest_with_channel_overrides() {
        let (store, _d) = testdb::store().await;
        let day = DAY_US;
        // "a": ten entries a day apart, but entry 3 carries a young stamp (a clock that jumped).
        let mut stamps: Vec<i64> = (0..10).map(|i| i * day).collect();
        stamps[3] = 20 * day;
        fill(&store, "a", &stamps).await;
        fill(&store, "b", &(0..10).map(|i| i * day).collect::<Vec<_>>()).await;
        fill(&store, "c", &(0..10).map(|i| i * day).collect::<Vec<_>>()).await;
        store
            .set_retention(
                "b",
                ChannelRetention {
                    days: Rule::Default,
                    messages: Rule::Limit(3),
                },
            )
            .await
            .expect("b");
        store
            .set_retention(
                "c",
                ChannelRetention {
                    days: Rule::Keep,
                    messages: Rule::Keep,
                },
            )
            .await
            .expect("c");
        let default = Retention {
            days: Some(5),
            messages: None,
        };
        // Now = day 12: older than 5 days means before day 7.
        let dropped = store
            .apply_retention(default, &[NODE], 12 * day, 2)
            .await
            .expect("sweep");
        assert_eq!(
            left(&store, "a").await,
            ["a-3", "a-4", "a-5", "a-6", "a-7", "a-8", "a-9"],
            "0-2 go; 4-6 are old but follow a younger entry: no hole"
        );
        assert_eq!(left(&store, "b").await, ["b-7", "b-8", "b-9"]);
        assert_eq!(
            left(&store, "c").await.len(),
            10,
            "keep everything overrides the default"
        );
        assert_eq!(dropped, 3 + 7);
        // Full text forgets what retention dropped.
        let found = store
            .archive_page(&ArchiveQuery {
                channel: "a".into(),
                node: NODE.into(),
                fulltext: Some("word1".into()),
                max: 10,
                ..ArchiveQuery::default()
            })
            .await
            .expect("search");
        assert!(found.rows.is_empty());
        assert_eq!(
            store.retention("b").await.expect("q"),
            Some(ChannelRetention {
                days: Rule::Default,
                messages: Rule::Limit(3)
            })
        );
        assert!(
            !store
                .set_retention(
                    "nope",
                    ChannelRetention {
                        days: Rule::Keep,
                        messages: Rule::Keep
                    }
                )
                .await
                .expect("q")
        );
        // A second sweep finds nothing more to do.
        assert_eq!(
            store
                .apply_retention(default, &[NODE], 12 * day, 2)
                .await
                .expect("again"),
            0
        );
    }
}
