//! The archive: appends (through [`crate::Write::Archive`], committed in batches) and
//! keyset-paged queries in archive order (never by timestamp alone, never with OFFSET/COUNT).

use crate::{Store, StoreError, on_pool};

/// One archived stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRecord {
    pub channel: String,
    /// The node it belongs to (`urn:xmpp:mix:nodes:messages` for messages).
    pub node: String,
    /// The archive id (UUIDv7 text), also the reflected `stanza-id`.
    pub id: String,
    /// Unix microseconds.
    pub ts: i64,
    /// Bare JID of the sender.
    pub sender: String,
    /// The stanza as archived (without 'to'), serialised.
    pub stanza: String,
    pub body: Option<String>,
}

/// A query over one channel node's archive (XEP-0313 filters and XEP-0059 paging).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub channel: String,
    pub node: String,
    /// Only after this archive id (RSM `after`, MAM `after-id`).
    pub after: Option<String>,
    /// Only before this archive id (RSM `before`, MAM `before-id`).
    pub before: Option<String>,
    /// Page from the end backwards (RSM `before`, empty or not).
    pub backwards: bool,
    /// Unix microseconds, inclusive.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Bare JID of the sender.
    pub with: Option<String>,
    pub max: usize,
}

/// One row of a result page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    pub id: String,
    pub ts: i64,
    pub sender: String,
    pub stanza: String,
    pub retracted: bool,
}

/// A page in archive order, and whether it reaches the end in the direction of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivePage {
    pub rows: Vec<ArchiveRow>,
    pub complete: bool,
}

type Row = (i64, String, i64, String, String, bool);

impl Store {
    async fn archive_seq(&self, q: &ArchiveQuery, id: &str) -> Result<i64, StoreError> {
        let row: Option<(i64,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT seq FROM archive WHERE channel = $1 AND node = $2 AND id = $3")
            .bind(&q.channel).bind(&q.node).bind(id).fetch_optional(p).await)?;
        row.map(|r| r.0)
            .ok_or_else(|| StoreError::UnknownId(id.to_owned()))
    }

    /// One page of the archive. `UnknownId` when `after`/`before` names no archived stanza.
    pub async fn archive_page(&self, q: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let after = match &q.after {
            Some(id) => Some(self.archive_seq(q, id).await?),
            None => None,
        };
        let before = match &q.before {
            Some(id) => Some(self.archive_seq(q, id).await?),
            None => None,
        };
        let limit = i64::try_from(q.max.saturating_add(1)).unwrap_or(i64::MAX);
        let mut rows: Vec<Row> = on_pool!(self, p => {
            let mut b = sqlx::QueryBuilder::new(
                "SELECT seq, id, ts, sender, stanza, retracted FROM archive WHERE channel = ");
            b.push_bind(&q.channel).push(" AND node = ").push_bind(&q.node);
            if let Some(s) = after {
                b.push(" AND seq > ").push_bind(s);
            }
            if let Some(s) = before {
                b.push(" AND seq < ").push_bind(s);
            }
            if let Some(t) = q.start {
                b.push(" AND ts >= ").push_bind(t);
            }
            if let Some(t) = q.end {
                b.push(" AND ts <= ").push_bind(t);
            }
            if let Some(w) = &q.with {
                b.push(" AND sender = ").push_bind(w);
            }
            b.push(if q.backwards { " ORDER BY seq DESC LIMIT " } else { " ORDER BY seq ASC LIMIT " });
            b.push_bind(limit);
            b.build_query_as::<Row>().fetch_all(p).await
        })?;
        let complete = rows.len() <= q.max;
        rows.truncate(q.max);
        if q.backwards {
            rows.reverse();
        }
        Ok(ArchivePage {
            rows: rows
                .into_iter()
                .map(|(_, id, ts, sender, stanza, retracted)| ArchiveRow {
                    id,
                    ts,
                    sender,
                    stanza,
                    retracted,
                })
                .collect(),
            complete,
        })
    }

    /// One archived stanza by id (for retraction rights).
    pub async fn archived(
        &self,
        channel: &str,
        id: &str,
    ) -> Result<Option<ArchiveRow>, StoreError> {
        let row: Option<Row> = on_pool!(self, p => sqlx::query_as(
            "SELECT seq, id, ts, sender, stanza, retracted FROM archive WHERE channel = $1 AND id = $2")
            .bind(channel).bind(id).fetch_optional(p).await)?;
        Ok(
            row.map(|(_, id, ts, sender, stanza, retracted)| ArchiveRow {
                id,
                ts,
                sender,
                stanza,
                retracted,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NewChannel, Write, testdb};

    const NODE: &str = "urn:xmpp:mix:nodes:messages";

    async fn filled(n: usize) -> (Store, tempfile::TempDir) {
        let (store, dir) = testdb::store().await;
        let mut writes = vec![Write::CreateChannel {
            channel: NewChannel::named("c"),
            now_us: 0,
        }];
        for i in 0..n {
            writes.push(Write::Archive(ArchiveRecord {
                channel: "c".into(),
                node: NODE.into(),
                id: format!("id{i:03}"),
                // Equal timestamps: order must come from the archive, not the clock.
                ts: 1000 + (i as i64 / 2),
                sender: if i % 2 == 0 { "a@x" } else { "b@x" }.into(),
                stanza: format!("<message>{i}</message>"),
                body: Some(format!("{i}")),
            }));
        }
        store.commit(&writes).await.expect("fill");
        (store, dir)
    }

    fn q(max: usize) -> ArchiveQuery {
        ArchiveQuery {
            channel: "c".into(),
            node: NODE.into(),
            max,
            ..ArchiveQuery::default()
        }
    }

    fn ids(p: &ArchivePage) -> Vec<&str> {
        p.rows.iter().map(|r| r.id.as_str()).collect()
    }

    #[tokio::test]
    async fn pages_forward_and_backward_in_archive_order() {
        let (store, _d) = filled(7).await;
        let first = store.archive_page(&q(3)).await.expect("first");
        assert_eq!(ids(&first), ["id000", "id001", "id002"]);
        assert!(!first.complete);
        let next = store
            .archive_page(&ArchiveQuery {
                after: Some("id005".into()),
                ..q(3)
            })
            .await
            .expect("after");
        assert_eq!(ids(&next), ["id006"]);
        assert!(next.complete);
        let last = store
            .archive_page(&ArchiveQuery {
                backwards: true,
                ..q(2)
            })
            .await
            .expect("last page");
        assert_eq!(ids(&last), ["id005", "id006"]);
        assert!(!last.complete);
        let earlier = store
            .archive_page(&ArchiveQuery {
                backwards: true,
                before: Some("id002".into()),
                ..q(5)
            })
            .await
            .expect("before");
        assert_eq!(ids(&earlier), ["id000", "id001"]);
        assert!(earlier.complete);
    }

    #[tokio::test]
    async fn filters_and_unknown_ids() {
        let (store, _d) = filled(6).await;
        let with = store
            .archive_page(&ArchiveQuery {
                with: Some("b@x".into()),
                ..q(10)
            })
            .await
            .expect("with");
        assert_eq!(ids(&with), ["id001", "id003", "id005"]);
        let range = store
            .archive_page(&ArchiveQuery {
                start: Some(1001),
                end: Some(1001),
                ..q(10)
            })
            .await
            .expect("range");
        assert_eq!(ids(&range), ["id002", "id003"]);
        assert!(matches!(
            store
                .archive_page(&ArchiveQuery {
                    after: Some("nope".into()),
                    ..q(10)
                })
                .await,
            Err(StoreError::UnknownId(_))
        ));
        let one = store
            .archived("c", "id004")
            .await
            .expect("by id")
            .expect("found");
        assert_eq!(one.sender, "a@x");
    }
}
