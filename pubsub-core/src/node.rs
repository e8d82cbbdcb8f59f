//! A node: configuration, items in publication order, subscriptions and affiliations.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::{Actor, PubsubError, Selection};

/// XEP-0060 §4.1 affiliations, ordered by rank (`Outcast` lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Publisher,
    Owner,
}

impl Affiliation {
    /// The XEP-0060 name.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Publisher => "publisher",
            Affiliation::Owner => "owner",
        }
    }
}

/// XEP-0060 §4.5 access models, the subset a MIX channel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone but an outcast may read and subscribe.
    Open,
    /// Members (and higher) only; others get `closed-node`.
    Whitelist,
    /// Nobody through pubsub: the node is the service's own (MIX presence, XEP-0403 §3).
    Closed,
}

/// XEP-0060 `pubsub#publish_model`, plus the service-managed case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishModel {
    /// Publishers and owners.
    Publishers,
    /// Subscribers, publishers and owners.
    Subscribers,
    /// Anyone but an outcast.
    Open,
    /// Only the service itself (MIX participants, presence, jidmap, messages nodes).
    Service,
}

/// A node's configuration (`pubsub#node_config`, the fields the engine acts on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    pub access_model: AccessModel,
    pub publish_model: PublishModel,
    /// `pubsub#max_items`; None = no limit.
    pub max_items: Option<usize>,
    /// `pubsub#persist_items`: a transient node only notifies (the MIX messages node).
    pub persist_items: bool,
    /// `pubsub#deliver_notifications`.
    pub deliver_notifications: bool,
    /// `pubsub#notify_retract`: retractions notify even when the retract did not ask.
    pub notify_retract: bool,
    /// `pubsub#notify_config`.
    pub notify_config: bool,
    /// Whether entities may subscribe through pubsub at all.
    pub subscribable: bool,
    /// `pubsub#max_payload_size` in bytes.
    pub max_payload_bytes: usize,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            access_model: AccessModel::Open,
            publish_model: PublishModel::Publishers,
            max_items: None,
            persist_items: true,
            deliver_notifications: true,
            notify_retract: true,
            notify_config: false,
            subscribable: true,
            max_payload_bytes: 64 * 1024,
        }
    }
}

/// A published item; `payload` is opaque to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub payload: String,
    /// Stamped by the service (PS-07), never taken from the publisher.
    pub publisher: Option<String>,
}

/// One node's state.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub config: NodeConfig,
    items: BTreeMap<u64, Item>,
    positions: HashMap<String, u64>,
    next: u64,
    pub(crate) subscriptions: BTreeSet<String>,
    pub(crate) affiliations: BTreeMap<String, Affiliation>,
}

impl Node {
    pub(crate) fn new(name: &str, config: NodeConfig) -> Node {
        Node {
            name: name.to_owned(),
            config,
            items: BTreeMap::new(),
            positions: HashMap::new(),
            next: 0,
            subscriptions: BTreeSet::new(),
            affiliations: BTreeMap::new(),
        }
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.positions.get(id).and_then(|p| self.items.get(p))
    }

    /// Items oldest first.
    pub fn items(&self) -> impl DoubleEndedIterator<Item = &Item> + ExactSizeIterator {
        self.items.values()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_subscribed(&self, jid: &str) -> bool {
        self.subscriptions.contains(jid)
    }

    /// Subscribers in a stable order.
    pub fn subscribers(&self) -> Vec<String> {
        self.subscriptions.iter().cloned().collect()
    }

    pub fn affiliations(&self) -> impl Iterator<Item = (&str, Affiliation)> {
        self.affiliations.iter().map(|(j, a)| (j.as_str(), *a))
    }

    /// Store an item (a republished id moves to the newest place, §7.1.2); return the ids
    /// dropped to respect `max_items`.
    pub(crate) fn put(&mut self, item: Item) -> Vec<String> {
        if let Some(p) = self.positions.remove(&item.id) {
            self.items.remove(&p);
        }
        let p = self.next;
        self.next += 1;
        self.positions.insert(item.id.clone(), p);
        self.items.insert(p, item);
        self.trim()
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Item> {
        let p = self.positions.remove(id)?;
        self.items.remove(&p)
    }

    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.positions.clear();
    }

    /// Drop the oldest items beyond `max_items` ("retract-oldest", PS-08).
    pub(crate) fn trim(&mut self) -> Vec<String> {
        let mut dropped = Vec::new();
        if let Some(max) = self.config.max_items {
            while self.items.len() > max {
                if let Some((_, item)) = self.items.pop_first() {
                    self.positions.remove(&item.id);
                    dropped.push(item.id);
                }
            }
        }
        dropped
    }

    pub(crate) fn select(&self, selection: &Selection) -> Vec<&Item> {
        match selection {
            Selection::All => self.items.values().collect(),
            Selection::Latest(n) => {
                let skip = self.items.len().saturating_sub(*n);
                self.items.values().skip(skip).collect()
            }
            Selection::Ids(ids) => ids.iter().filter_map(|id| self.item(id)).collect(),
        }
    }

    /// §6.5.9 / §6.1.3: may `actor` read (or subscribe to) this node?
    pub(crate) fn may_read(&self, actor: Actor<'_>) -> Result<(), PubsubError> {
        if actor.jid.is_none() {
            return Ok(());
        }
        if actor.affiliation == Affiliation::Outcast {
            return Err(PubsubError::Forbidden);
        }
        match self.config.access_model {
            AccessModel::Open => Ok(()),
            AccessModel::Whitelist if actor.affiliation >= Affiliation::Member => Ok(()),
            AccessModel::Whitelist => Err(PubsubError::ClosedNode),
            AccessModel::Closed => Err(PubsubError::Forbidden),
        }
    }

    /// §7.1.3.1: may `actor` publish here?
    pub(crate) fn may_publish(&self, actor: Actor<'_>) -> Result<(), PubsubError> {
        let Some(jid) = actor.jid else {
            return Ok(());
        };
        if actor.affiliation == Affiliation::Outcast {
            return Err(PubsubError::Forbidden);
        }
        let ok = match self.config.publish_model {
            PublishModel::Service => false,
            PublishModel::Publishers => actor.affiliation >= Affiliation::Publisher,
            PublishModel::Subscribers => {
                actor.affiliation >= Affiliation::Publisher || self.subscriptions.contains(jid)
            }
            PublishModel::Open => true,
        };
        if ok {
            Ok(())
        } else {
            Err(PubsubError::Forbidden)
        }
    }
}
