//! Channels: the rows both faces (MIX and MUC) share.

use crate::{Store, StoreError, on_pool};

/// A channel as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRecord {
    /// The localpart, the same on the MIX and the MUC domain.
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub public: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

/// What is needed to create a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChannel {
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub public: bool,
}

impl NewChannel {
    /// A public channel with no display name or description.
    pub fn named(name: &str) -> NewChannel {
        NewChannel {
            name: name.to_owned(),
            display_name: String::new(),
            description: String::new(),
            public: true,
        }
    }
}

/// A page of channels in name order (XEP-0059 semantics: `after`/`before` are names, an empty
/// `before` asks for the last page).
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub before: Option<String>,
    pub max: usize,
    /// Include channels that are not public (an operator's view).
    pub include_hidden: bool,
}

/// One page and where it stands in the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPage {
    pub items: Vec<ChannelRecord>,
    /// How many channels the whole list holds.
    pub count: u64,
    /// How many come before the first item of the page.
    pub first_index: u64,
}

type Row = (String, String, String, bool, i64);

fn record((name, display_name, description, public, created_at): Row) -> ChannelRecord {
    ChannelRecord {
        name,
        display_name,
        description,
        public,
        created_at,
    }
}

impl Store {
    /// Create a channel; `Exists` if the name is taken.
    pub async fn create_channel(&self, ch: &NewChannel, now_us: i64) -> Result<(), StoreError> {
        let res = on_pool!(self, p => sqlx::query(
            "INSERT INTO channels (name, display_name, description, public, created_at) \
             VALUES ($1, $2, $3, $4, $5)")
            .bind(&ch.name)
            .bind(&ch.display_name)
            .bind(&ch.description)
            .bind(ch.public)
            .bind(now_us)
            .execute(p)
            .await
            .map(|_| ()));
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Exists(ch.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One channel by name.
    pub async fn channel(&self, name: &str) -> Result<Option<ChannelRecord>, StoreError> {
        const SQL: &str = "SELECT name, display_name, description, public, created_at \
                           FROM channels WHERE name = $1";
        let row: Option<Row> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await)?;
        Ok(row.map(record))
    }

    /// A page of channels in name order, keyset-paged (no OFFSET).
    pub async fn channels_page(&self, req: &PageRequest) -> Result<ChannelPage, StoreError> {
        let max = i64::try_from(req.max).unwrap_or(i64::MAX);
        let all = req.include_hidden;
        let mut rows: Vec<Row> = match (&req.after, &req.before) {
            (_, Some(before)) if before.is_empty() => on_pool!(self, p => sqlx::query_as(
                "SELECT name, display_name, description, public, created_at FROM channels \
                 WHERE (public OR $1) ORDER BY name DESC LIMIT $2")
                .bind(all).bind(max).fetch_all(p).await)?,
            (_, Some(before)) => on_pool!(self, p => sqlx::query_as(
                "SELECT name, display_name, description, public, created_at FROM channels \
                 WHERE (public OR $1) AND name < $2 ORDER BY name DESC LIMIT $3")
                .bind(all).bind(before).bind(max).fetch_all(p).await)?,
            (Some(after), None) => on_pool!(self, p => sqlx::query_as(
                "SELECT name, display_name, description, public, created_at FROM channels \
                 WHERE (public OR $1) AND name > $2 ORDER BY name LIMIT $3")
                .bind(all).bind(after).bind(max).fetch_all(p).await)?,
            (None, None) => on_pool!(self, p => sqlx::query_as(
                "SELECT name, display_name, description, public, created_at FROM channels \
                 WHERE (public OR $1) ORDER BY name LIMIT $2")
                .bind(all).bind(max).fetch_all(p).await)?,
        };
        if req.before.is_some() {
            rows.reverse();
        }
        let (count,): (i64,) = on_pool!(self, p => sqlx::query_as(
            "SELECT COUNT(*) FROM channels WHERE (public OR $1)")
            .bind(all).fetch_one(p).await)?;
        let first_index: i64 = match rows.first() {
            None => 0,
            Some(first) => {
                let (n,): (i64,) = on_pool!(self, p => sqlx::query_as(
                    "SELECT COUNT(*) FROM channels WHERE (public OR $1) AND name < $2")
                    .bind(all).bind(&first.0).fetch_one(p).await)?;
                n
            }
        };
        Ok(ChannelPage {
            items: rows.into_iter().map(record).collect(),
            count: count as u64,
            first_index: first_index as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb;

    async fn with_channels(names: &[(&str, bool)]) -> (Store, tempfile::TempDir) {
        let (s, d) = testdb::store().await;
        for (n, public) in names {
            let mut c = NewChannel::named(n);
            c.public = *public;
            s.create_channel(&c, 1).await.expect("create");
        }
        (s, d)
    }

    fn names(p: &ChannelPage) -> Vec<&str> {
        p.items.iter().map(|c| c.name.as_str()).collect()
    }

    #[tokio::test]
    async fn create_twice_is_exists() {
        let (s, _d) = with_channels(&[("coven", true)]).await;
        assert!(matches!(
            s.create_channel(&NewChannel::named("coven"), 2).await,
            Err(StoreError::Exists(_))
        ));
    }

    #[tokio::test]
    async fn paging_forwards_backwards_and_hidden() {
        let (s, _d) = with_channels(&[
            ("a", true),
            ("b", true),
            ("c", false),
            ("d", true),
            ("e", true),
        ])
        .await;
        let req = |after: Option<&str>, before: Option<&str>, max| PageRequest {
            after: after.map(Into::into),
            before: before.map(Into::into),
            max,
            include_hidden: false,
        };
        let p = s.channels_page(&req(None, None, 2)).await.expect("page");
        assert_eq!((names(&p), p.count, p.first_index), (vec!["a", "b"], 4, 0));
        let p = s
            .channels_page(&req(Some("b"), None, 2))
            .await
            .expect("page");
        assert_eq!(
            (names(&p), p.first_index),
            (vec!["d", "e"], 2),
            "c is hidden"
        );
        let p = s
            .channels_page(&req(Some("e"), None, 2))
            .await
            .expect("page");
        assert!(p.items.is_empty());
        let p = s
            .channels_page(&req(None, Some(""), 3))
            .await
            .expect("last page");
        assert_eq!((names(&p), p.first_index), (vec!["b", "d", "e"], 1));
        let p = s
            .channels_page(&req(None, Some("d"), 5))
            .await
            .expect("before d");
        assert_eq!(names(&p), vec!["a", "b"]);
        let mut all = req(None, None, 10);
        all.include_hidden = true;
        let p = s.channels_page(&all).await.expect("operator view");
        assert_eq!(p.count, 5);
    }
}
