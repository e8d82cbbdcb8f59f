//! Channel state: pubsub nodes (as pubsub-core's changes, applied), MIX participants, and the
//! atomic commit that writes a batch of them together with archive appends.

use std::collections::BTreeMap;

use pubsub_core::{Affiliation, Change, NodeConfig};

use crate::archive::ArchiveRecord;
use crate::{ChannelRecord, NewChannel, Store, StoreError, on_pool};

/// A MIX participant as stored: the id stays after leaving (XEP-0369 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRow {
    pub jid: String,
    pub participant_id: String,
    pub active: bool,
    /// Full JIDs the user joined from directly (no XEP-0405 server in between).
    pub direct_jids: Vec<String>,
    /// XEP-0404 §5 preferences (field var → value).
    pub preferences: BTreeMap<String, String>,
    /// A participant only because it entered through the MUC mirror.
    pub via_muc: bool,
}

/// An invitation the channel issued (XEP-0407 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub token: String,
    /// `mix` (XEP-0407); the MUC kinds come with the invitations issue.
    pub kind: String,
    pub inviter: String,
    pub invitee: String,
    pub created_us: i64,
    pub expires_us: i64,
    pub state: InvitationState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationState {
    Pending,
    Used,
    Cancelled,
}

impl InvitationState {
    pub fn as_str(self) -> &'static str {
        match self {
            InvitationState::Pending => "pending",
            InvitationState::Used => "used",
            InvitationState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Result<InvitationState, StoreError> {
        Ok(match s {
            "pending" => InvitationState::Pending,
            "used" => InvitationState::Used,
            "cancelled" => InvitationState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("invitation state {other}"))),
        })
    }
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create the channel row (fails the batch with `Exists` if the name is taken).
    CreateChannel { channel: NewChannel, now_us: i64 },
    /// Remove the channel, its state and its archive.
    DestroyChannel { channel: String },
    /// A pubsub state change of a channel's node.
    Pubsub { channel: String, change: Change },
    /// Insert or replace a participant row.
    Participant {
        channel: String,
        row: ParticipantRow,
    },
    /// Append to the archive.
    Archive(ArchiveRecord),
    /// Replace an archived message by a tombstone (the body is gone from storage).
    Tombstone {
        channel: String,
        id: String,
        stanza: String,
    },
    /// Register (or with `nick: None`, release) a service-wide nick.
    RegisterNick { jid: String, nick: Option<String> },
    /// Insert or replace an invitation.
    Invitation { channel: String, row: InvitationRow },
    /// List or unlist the channel in the service's disco#items.
    ChannelListed { channel: String, public: bool },
    /// Set (or clear) the channel's 'End of Life' (XEP-0406), Unix microseconds.
    EndOfLife { channel: String, at_us: Option<i64> },
}

/// A channel's state as loaded.
#[derive(Debug, Clone)]
pub struct ChannelState {
    pub record: ChannelRecord,
    /// Replaying these through `pubsub_core::Service::restore` rebuilds the nodes.
    pub pubsub: Vec<Change>,
    pub participants: Vec<ParticipantRow>,
    /// Invitations still pending (used and cancelled ones stay in the table, not in memory).
    pub invitations: Vec<InvitationRow>,
    /// The latest archive timestamp of any of its nodes (0: none): archive times never go
    /// back within a channel, whatever the clock does (see `archive_page`'s time bounds).
    pub last_archived_us: i64,
}

type ItemRow = (String, String, String, Option<String>);

/// Archive rows per INSERT statement: 7 parameters each stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 bound parameters.
const ARCHIVE_ROWS_PER_INSERT: usize = 512;
type InviteSql = (String, String, String, String, i64, i64, String);

impl Store {
    /// Everything about one channel, or None if it does not exist.
    pub async fn load_channel(&self, name: &str) -> Result<Option<ChannelState>, StoreError> {
        let Some(record) = self.channel(name).await? else {
            return Ok(None);
        };
        let nodes: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT node, config FROM pubsub_nodes WHERE channel = $1 ORDER BY node")
            .bind(name).fetch_all(p).await)?;
        let items: Vec<ItemRow> = on_pool!(self, p => sqlx::query_as(
            "SELECT node, item_id, payload, publisher FROM pubsub_items WHERE channel = $1 \
             ORDER BY node, position")
            .bind(name).fetch_all(p).await)?;
        let subs: Vec<(String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT node, jid FROM pubsub_subscriptions WHERE channel = $1")
            .bind(name).fetch_all(p).await)?;
        let affs: Vec<(String, String, String)> = on_pool!(self, p => sqlx::query_as(
            "SELECT node, jid, affiliation FROM pubsub_affiliations WHERE channel = $1")
            .bind(name).fetch_all(p).await)?;
        let parts: Vec<(String, String, bool, String, String, bool)> = on_pool!(self, p => sqlx::query_as(
            "SELECT jid, participant_id, active, direct_jids, preferences, via_muc FROM mix_participants \
             WHERE channel = $1 ORDER BY jid")
            .bind(name).fetch_all(p).await)?;
        let invites: Vec<InviteSql> = on_pool!(self, p => sqlx::query_as(
            "SELECT token, kind, inviter, invitee, created_us, expires_us, state FROM invitations \
             WHERE channel = $1 AND state = 'pending' ORDER BY created_us")
            .bind(name).fetch_all(p).await)?;

        let node_names: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
        let mut pubsub = Vec::new();
        for (node, config) in nodes {
            let config: NodeConfig = serde_json::from_str(&config)
                .map_err(|e| StoreError::Corrupt(format!("node {node} config: {e}")))?;
            pubsub.push(Change::NodeCreated { node, config });
        }
        for (node, id, payload, publisher) in items {
            pubsub.push(Change::ItemPublished {
                node,
                item: pubsub_core::Item {
                    id,
                    payload,
                    publisher,
                },
            });
        }
        for (node, jid) in subs {
            pubsub.push(Change::Subscribed { node, jid });
        }
        for (node, jid, a) in affs {
            let affiliation: Affiliation = serde_json::from_value(serde_json::Value::String(a))
                .map_err(|e| StoreError::Corrupt(format!("affiliation on {node}: {e}")))?;
            pubsub.push(Change::AffiliationSet {
                node,
                jid,
                affiliation,
            });
        }
        let mut participants = Vec::with_capacity(parts.len());
        for (jid, participant_id, active, direct, prefs, via_muc) in parts {
            let direct_jids = serde_json::from_str(&direct)
                .map_err(|e| StoreError::Corrupt(format!("participant {jid}: {e}")))?;
            let preferences = serde_json::from_str(&prefs)
                .map_err(|e| StoreError::Corrupt(format!("participant {jid} preferences: {e}")))?;
            participants.push(ParticipantRow {
                jid,
                participant_id,
                active,
                direct_jids,
                preferences,
                via_muc,
            });
        }
        let mut invitations = Vec::with_capacity(invites.len());
        for (token, kind, inviter, invitee, created_us, expires_us, state) in invites {
            invitations.push(InvitationRow {
                token,
                kind,
                inviter,
                invitee,
                created_us,
                expires_us,
                state: InvitationState::parse(&state)?,
            });
        }
        // Per node, so that each is one descent of the (channel, node, ts) index.
        let mut last_archived_us = 0;
        for node in &node_names {
            let last: Option<i64> = on_pool!(self, p => sqlx::query_scalar(
                "SELECT MAX(ts) FROM archive WHERE channel = $1 AND node = $2")
                .bind(name).bind(node).fetch_one(p).await)?;
            last_archived_us = last_archived_us.max(last.unwrap_or(0));
        }
        Ok(Some(ChannelState {
            record,
            pubsub,
            participants,
            invitations,
            last_archived_us,
        }))
    }

    /// Channels whose 'End of Life' has passed.
    pub async fn expired_channels(&self, now_us: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT name FROM channels WHERE end_of_life_us IS NOT NULL AND end_of_life_us <= $1 \
             ORDER BY name")
            .bind(now_us).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Channels holding pending invitations whose time has passed.
    pub async fn channels_with_lapsed_invitations(
        &self,
        now_us: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT DISTINCT channel FROM invitations WHERE state = 'pending' AND expires_us <= $1 \
             ORDER BY channel")
            .bind(now_us).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The channels `jid` (bare) is an active participant of.
    pub async fn channels_of(&self, jid: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT channel FROM mix_participants WHERE jid = $1 AND active = TRUE ORDER BY channel")
            .bind(jid).fetch_all(p).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The service-wide registered nick of `jid` (XEP-0407 §5).
    pub async fn registered_nick(&self, jid: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT nick FROM mix_registered_nicks WHERE jid = $1")
            .bind(jid).fetch_optional(p).await)?;
        Ok(row.map(|r| r.0))
    }

    /// Every registered nick, as (bare JID, nick), to build the in-memory registry at start.
    pub async fn registered_nicks(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(
            on_pool!(self, p => sqlx::query_as("SELECT jid, nick FROM mix_registered_nicks")
            .fetch_all(p).await)?,
        )
    }

    /// Who registered `nick`, if anyone.
    pub async fn nick_owner(&self, nick: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, p => sqlx::query_as(
            "SELECT jid FROM mix_registered_nicks WHERE nick = $1")
            .bind(nick).fetch_optional(p).await)?;
        Ok(row.map(|r| r.0))
    }

    /// Apply a batch of writes in one transaction: all of them or none.
    pub async fn commit(&self, writes: &[Write]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let res: Result<(), sqlx::Error> = on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            let mut i = 0;
            while i < writes.len() {
                // A run of appends to one channel node: one INSERT, the channel and node bound
                // once (every bound value is copied twice on its way to SQLite).
                let first = match &writes[i] {
                    Write::Archive(r) => Some((&r.channel, &r.node)),
                    _ => None,
                };
                let run = writes[i..]
                    .iter()
                    .take(ARCHIVE_ROWS_PER_INSERT)
                    .take_while(|w| matches!(w, Write::Archive(r) if Some((&r.channel, &r.node)) == first))
                    .count();
                if let (true, Some((channel, node))) = (run > 0, first) {
                    let mut b = sqlx::QueryBuilder::new(
                        "INSERT INTO archive (channel, node, id, ts, sender, stanza, body) SELECT ");
                    b.push_bind(channel).push(", ").push_bind(node).push(", v.* FROM (");
                    b.push_values(&writes[i..i + run], |mut row, w| {
                        if let Write::Archive(r) = w {
                            row.push_bind(&r.id).push_bind(r.ts).push_bind(&r.sender)
                                .push_bind(&r.stanza).push_bind(&r.body);
                        }
                    });
                    b.push(") AS v");
                    b.build().execute(&mut *tx).await?;
                    i += run;
                    continue;
                }
                let w = &writes[i];
                i += 1;
                match w {
                    Write::CreateChannel { channel, now_us } => {
                        sqlx::query("INSERT INTO channels (name, display_name, description, public, created_at) \
                                     VALUES ($1, $2, $3, $4, $5)")
                            .bind(&channel.name).bind(&channel.display_name)
                            .bind(&channel.description).bind(channel.public).bind(*now_us)
                            .execute(&mut *tx).await?;
                    }
                    Write::DestroyChannel { channel } => {
                        for sql in [
                            "DELETE FROM pubsub_items WHERE channel = $1",
                            "DELETE FROM pubsub_subscriptions WHERE channel = $1",
                            "DELETE FROM pubsub_affiliations WHERE channel = $1",
                            "DELETE FROM pubsub_nodes WHERE channel = $1",
                            "DELETE FROM mix_participants WHERE channel = $1",
                            "DELETE FROM invitations WHERE channel = $1",
                            "DELETE FROM archive WHERE channel = $1",
                            "DELETE FROM channels WHERE name = $1",
                        ] {
                            sqlx::query(sql).bind(channel).execute(&mut *tx).await?;
                        }
                    }
                    Write::Pubsub { channel, change } => match change {
                        Change::NodeCreated { node, config } | Change::NodeConfigured { node, config } => {
                            let json = serde_json::to_string(config)
                                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                            sqlx::query("INSERT INTO pubsub_nodes (channel, node, config) VALUES ($1, $2, $3) \
                                         ON CONFLICT (channel, node) DO UPDATE SET config = excluded.config")
                                .bind(channel).bind(node).bind(json).execute(&mut *tx).await?;
                        }
                        Change::NodeDeleted { node } => {
                            for sql in [
                                "DELETE FROM pubsub_items WHERE channel = $1 AND node = $2",
                                "DELETE FROM pubsub_subscriptions WHERE channel = $1 AND node = $2",
                                "DELETE FROM pubsub_affiliations WHERE channel = $1 AND node = $2",
                                "DELETE FROM pubsub_nodes WHERE channel = $1 AND node = $2",
                            ] {
                                sqlx::query(sql).bind(channel).bind(node).execute(&mut *tx).await?;
                            }
                        }
                        Change::ItemPublished { node, item } => {
                            sqlx::query("INSERT INTO pubsub_items (channel, node, item_id, position, payload, publisher) \
                                         VALUES ($1, $2, $3, (SELECT COALESCE(MAX(position), 0) + 1 FROM pubsub_items \
                                         WHERE channel = $1 AND node = $2), $4, $5) \
                                         ON CONFLICT (channel, node, item_id) DO UPDATE SET \
                                         position = excluded.position, payload = excluded.payload, \
                                         publisher = excluded.publisher")
                                .bind(channel).bind(node).bind(&item.id).bind(&item.payload)
                                .bind(&item.publisher).execute(&mut *tx).await?;
                        }
                        Change::ItemRetracted { node, id } => {
                            sqlx::query("DELETE FROM pubsub_items WHERE channel = $1 AND node = $2 AND item_id = $3")
                                .bind(channel).bind(node).bind(id).execute(&mut *tx).await?;
                        }
                        Change::NodePurged { node } => {
                            sqlx::query("DELETE FROM pubsub_items WHERE channel = $1 AND node = $2")
                                .bind(channel).bind(node).execute(&mut *tx).await?;
                        }
                        Change::Subscribed { node, jid } => {
                            sqlx::query("INSERT INTO pubsub_subscriptions (channel, node, jid) VALUES ($1, $2, $3) \
                                         ON CONFLICT DO NOTHING")
                                .bind(channel).bind(node).bind(jid).execute(&mut *tx).await?;
                        }
                        Change::Unsubscribed { node, jid } => {
                            sqlx::query("DELETE FROM pubsub_subscriptions WHERE channel = $1 AND node = $2 AND jid = $3")
                                .bind(channel).bind(node).bind(jid).execute(&mut *tx).await?;
                        }
                        Change::AffiliationSet { node, jid, affiliation } => {
                            if *affiliation == Affiliation::None {
                                sqlx::query("DELETE FROM pubsub_affiliations WHERE channel = $1 AND node = $2 AND jid = $3")
                                    .bind(channel).bind(node).bind(jid).execute(&mut *tx).await?;
                            } else {
                                sqlx::query("INSERT INTO pubsub_affiliations (channel, node, jid, affiliation) \
                                             VALUES ($1, $2, $3, $4) ON CONFLICT (channel, node, jid) \
                                             DO UPDATE SET affiliation = excluded.affiliation")
                                    .bind(channel).bind(node).bind(jid).bind(affiliation.as_str())
                                    .execute(&mut *tx).await?;
                            }
                        }
                    },
                    Write::Participant { channel, row } => {
                        let direct = serde_json::to_string(&row.direct_jids)
                            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                        let prefs = serde_json::to_string(&row.preferences)
                            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                        sqlx::query("INSERT INTO mix_participants (channel, jid, participant_id, active, direct_jids, preferences, via_muc) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (channel, jid) DO UPDATE SET \
                                     participant_id = excluded.participant_id, active = excluded.active, \
                                     direct_jids = excluded.direct_jids, preferences = excluded.preferences, \
                                     via_muc = excluded.via_muc")
                            .bind(channel).bind(&row.jid).bind(&row.participant_id).bind(row.active)
                            .bind(direct).bind(prefs).bind(row.via_muc).execute(&mut *tx).await?;
                    }
                    // Appends never get here: runs of them were inserted above, in one
                    // multi-row INSERT each (a statement per row costs a round trip each).
                    Write::Archive(_) => {}
                    Write::Tombstone { channel, id, stanza } => {
                        sqlx::query("UPDATE archive SET stanza = $3, body = NULL, retracted = TRUE \
                                     WHERE channel = $1 AND id = $2")
                            .bind(channel).bind(id).bind(stanza).execute(&mut *tx).await?;
                    }
                    Write::RegisterNick { jid, nick } => {
                        sqlx::query("DELETE FROM mix_registered_nicks WHERE jid = $1")
                            .bind(jid).execute(&mut *tx).await?;
                        if let Some(nick) = nick {
                            sqlx::query("INSERT INTO mix_registered_nicks (jid, nick) VALUES ($1, $2)")
                                .bind(jid).bind(nick).execute(&mut *tx).await?;
                        }
                    }
                    Write::Invitation { channel, row } => {
                        sqlx::query("INSERT INTO invitations (channel, token, kind, inviter, invitee, created_us, expires_us, state) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (channel, token) \
                                     DO UPDATE SET state = excluded.state, expires_us = excluded.expires_us")
                            .bind(channel).bind(&row.token).bind(&row.kind).bind(&row.inviter)
                            .bind(&row.invitee).bind(row.created_us).bind(row.expires_us)
                            .bind(row.state.as_str()).execute(&mut *tx).await?;
                    }
                    Write::ChannelListed { channel, public } => {
                        sqlx::query("UPDATE channels SET public = $2 WHERE name = $1")
                            .bind(channel).bind(*public).execute(&mut *tx).await?;
                    }
                    Write::EndOfLife { channel, at_us } => {
                        sqlx::query("UPDATE channels SET end_of_life_us = $2 WHERE name = $1")
                            .bind(channel).bind(*at_us).execute(&mut *tx).await?;
                    }
                }
            }
            tx.commit().await
        }.await);
        match res {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(e.message().to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb;
    use pubsub_core::{Actor, Item, Service};

    #[tokio::test]
    async fn committed_changes_load_back_into_the_same_pubsub_state() {
        let (store, _dir) = testdb::store().await;
        store
            .commit(&[Write::CreateChannel {
                channel: NewChannel::named("coven"),
                now_us: 7,
            }])
            .await
            .expect("create");
        let mut svc = Service::new();
        let mut changes = Vec::new();
        let mut n = 0;
        let mut gen_id = || {
            n += 1;
            format!("i{n}")
        };
        let cfg = NodeConfig {
            max_items: Some(2),
            ..NodeConfig::default()
        };
        changes.extend(
            svc.create_node(Actor::service(), "info", cfg)
                .expect("node")
                .changes,
        );
        for p in ["<a/>", "<b/>", "<c/>"] {
            changes.extend(
                svc.publish(Actor::service(), "info", None, p.into(), &mut gen_id)
                    .expect("publish")
                    .changes,
            );
        }
        changes.extend(
            svc.subscribe(Actor::service(), "info", "a@x")
                .expect("sub")
                .changes,
        );
        changes.extend(
            svc.set_affiliation(Actor::service(), "info", "o@x", Affiliation::Owner)
                .expect("aff")
                .changes,
        );
        let writes: Vec<Write> = changes
            .into_iter()
            .map(|change| Write::Pubsub {
                channel: "coven".into(),
                change,
            })
            .chain([Write::Participant {
                channel: "coven".into(),
                row: ParticipantRow {
                    jid: "a@x".into(),
                    participant_id: "p1".into(),
                    active: true,
                    direct_jids: vec!["a@x/phone".into()],
                    via_muc: true,
                    preferences: [("vCard".to_owned(), "allow".to_owned())].into(),
                },
            }])
            .collect();
        store.commit(&writes).await.expect("commit");

        let state = store
            .load_channel("coven")
            .await
            .expect("load")
            .expect("exists");
        let mut copy = Service::new();
        for c in state.pubsub {
            copy.restore(c);
        }
        let items: Vec<&Item> = copy.node("info").expect("node").items().collect();
        assert_eq!(
            items.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>(),
            ["<b/>", "<c/>"]
        );
        assert!(copy.node("info").expect("node").is_subscribed("a@x"));
        assert_eq!(copy.affiliation("info", "o@x"), Affiliation::Owner);
        assert_eq!(state.participants.len(), 1);
        assert_eq!(state.participants[0].direct_jids, ["a@x/phone"]);
        assert!(state.participants[0].via_muc);
        assert_eq!(
            state.participants[0]
                .preferences
                .get("vCard")
                .map(String::as_str),
            Some("allow")
        );
        assert!(store.load_channel("nope").await.expect("load").is_none());
    }

    #[tokio::test]
    async fn a_failing_write_rolls_back_the_whole_batch() {
        let (store, _dir) = testdb::store().await;
        let create = Write::CreateChannel {
            channel: NewChannel::named("dup"),
            now_us: 1,
        };
        store
            .commit(std::slice::from_ref(&create))
            .await
            .expect("first");
        let batch = [
            Write::Participant {
                channel: "dup".into(),
                row: ParticipantRow {
                    jid: "a@x".into(),
                    participant_id: "p".into(),
                    active: true,
                    direct_jids: vec![],
                    via_muc: false,
                    preferences: BTreeMap::new(),
                },
            },
            create,
        ];
        assert!(matches!(
            store.commit(&batch).await,
            Err(StoreError::Conflict(_))
        ));
        let state = store
            .load_channel("dup")
            .await
            .expect("load")
            .expect("exists");
        assert!(
            state.participants.is_empty(),
            "nothing of the failed batch stays"
        );
    }

    #[tokio::test]
    async fn invitations_load_while_pending_and_lifetimes_expire_channels() {
        let (store, _dir) = testdb::store().await;
        let row = |token: &str, state| InvitationRow {
            token: token.into(),
            kind: "mix".into(),
            inviter: "o@x".into(),
            invitee: "i@x".into(),
            created_us: 1,
            expires_us: 100,
            state,
        };
        store
            .commit(&[
                Write::CreateChannel {
                    channel: NewChannel::named("c"),
                    now_us: 1,
                },
                Write::CreateChannel {
                    channel: NewChannel::named("d"),
                    now_us: 1,
                },
                Write::Invitation {
                    channel: "c".into(),
                    row: row("t1", InvitationState::Pending),
                },
                Write::Invitation {
                    channel: "c".into(),
                    row: row("t2", InvitationState::Pending),
                },
                Write::EndOfLife {
                    channel: "c".into(),
                    at_us: Some(50),
                },
            ])
            .await
            .expect("commit");
        // Using t2 replaces its state; only t1 is still pending.
        store
            .commit(&[Write::Invitation {
                channel: "c".into(),
                row: row("t2", InvitationState::Used),
            }])
            .await
            .expect("use");
        let state = store.load_channel("c").await.expect("load").expect("c");
        assert_eq!(state.invitations, [row("t1", InvitationState::Pending)]);
        assert!(store.expired_channels(49).await.expect("q").is_empty());
        assert!(
            store
                .channels_with_lapsed_invitations(99)
                .await
                .expect("q")
                .is_empty()
        );
        assert_eq!(
            store
                .channels_with_lapsed_invitations(100)
                .await
                .expect("q"),
            ["c"]
        );
        assert_eq!(store.expired_channels(50).await.expect("q"), ["c"]);
        store
            .commit(&[Write::EndOfLife {
                channel: "c".into(),
                at_us: None,
            }])
            .await
            .expect("clear");
        assert!(
            store
                .expired_channels(i64::MAX)
                .await
                .expect("q")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn registered_nicks_are_unique() {
        let (store, _dir) = testdb::store().await;
        let reg = |jid: &str, nick: &str| Write::RegisterNick {
            jid: jid.into(),
            nick: Some(nick.into()),
        };
        store.commit(&[reg("a@x", "hag")]).await.expect("register");
        assert!(store.commit(&[reg("b@x", "hag")]).await.is_err());
        assert_eq!(
            store.nick_owner("hag").await.expect("q").as_deref(),
            Some("a@x")
        );
        store.commit(&[reg("a@x", "crone")]).await.expect("change");
        assert_eq!(
            store.registered_nick("a@x").await.expect("q").as_deref(),
            Some("crone")
        );
        assert!(store.nick_owner("hag").await.expect("q").is_none());
    }

    #[tokio::test]
    async fn a_channel_loads_with_its_latest_archive_time() {
        let (store, _dir) = testdb::store().await;
        let mut writes = vec![Write::CreateChannel {
            channel: NewChannel::named("c"),
            now_us: 1,
        }];
        for node in ["messages", "info"] {
            writes.push(Write::Pubsub {
                channel: "c".into(),
                change: Change::NodeCreated {
                    node: node.into(),
                    config: NodeConfig::default(),
                },
            });
        }
        for (i, (node, ts)) in [("messages", 50), ("info", 70), ("messages", 60)]
            .into_iter()
            .enumerate()
        {
            writes.push(Write::Archive(crate::ArchiveRecord {
                channel: "c".into(),
                node: node.into(),
                id: format!("a{i}"),
                ts,
                sender: "x@y".into(),
                stanza: "<message/>".into(),
                body: None,
            }));
        }
        store.commit(&writes).await.expect("commit");
        let state = store.load_channel("c").await.expect("load").expect("c");
        assert_eq!(state.last_archived_us, 70, "the latest of every node");
    }
}
