//! A generic XEP-0060 publish-subscribe engine with no I/O.
//!
//! A [`Service`] holds nodes; a node has a [`NodeConfig`], items with ids, subscriptions and
//! affiliations. Every operation takes the requester (an [`Actor`]: who, with which
//! affiliation) and returns either a typed [`PubsubError`] (mapped to the XEP-0060 error
//! condition) or [`Effects`]: the [`Change`]s to persist and the [`Notification`]s to send.
//!
//! Who holds which affiliation is the caller's business: a plain pubsub service reads the stored
//! ones ([`Service::affiliation`]); a MIX channel derives them from its roles and configuration
//! (XEP-0406) and passes them in. The engine enforces the rules given an affiliation. Payloads are
//! opaque (serialised XML): the engine never looks inside an item.

mod error;
mod node;

use std::collections::BTreeMap;

pub use error::PubsubError;
pub use node::{AccessModel, Affiliation, Item, Node, NodeConfig, PublishModel};

/// A subscriber or affiliated entity, as text (a bare or full JID: the engine does not parse).
pub type EntityId = String;

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// None for the service itself, which the rules never refuse (service-managed nodes).
    pub jid: Option<&'a str>,
    pub affiliation: Affiliation,
}

impl<'a> Actor<'a> {
    /// The service acting on its own behalf (a join writing the participants node, say).
    pub fn service() -> Actor<'static> {
        Actor {
            jid: None,
            affiliation: Affiliation::Owner,
        }
    }

    pub fn entity(jid: &'a str, affiliation: Affiliation) -> Actor<'a> {
        Actor {
            jid: Some(jid),
            affiliation,
        }
    }

    fn is_service(&self) -> bool {
        self.jid.is_none()
    }
}

/// Which items a retrieval asks for (XEP-0060 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    /// `max_items`: the N most recent.
    Latest(usize),
    /// Specific item ids; unknown ones are skipped (§6.5.8: return what exists).
    Ids(Vec<String>),
}

/// A state change the caller must persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    NodeCreated {
        node: String,
        config: NodeConfig,
    },
    NodeDeleted {
        node: String,
    },
    NodeConfigured {
        node: String,
        config: NodeConfig,
    },
    ItemPublished {
        node: String,
        item: Item,
    },
    ItemRetracted {
        node: String,
        id: String,
    },
    NodePurged {
        node: String,
    },
    Subscribed {
        node: String,
        jid: EntityId,
    },
    Unsubscribed {
        node: String,
        jid: EntityId,
    },
    AffiliationSet {
        node: String,
        jid: EntityId,
        affiliation: Affiliation,
    },
}

/// What subscribers of a node are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// §7.1.2.1: an item was published (the payload is included: MIX nodes deliver payloads).
    Published(Item),
    /// §7.2.2.1: an item was retracted.
    Retracted(String),
    /// §8.5.2: all items were purged.
    Purged,
    /// §8.4.2: the node was deleted.
    Deleted,
    /// §8.2.5: the configuration changed.
    Configured,
}

/// One event, rendered once and sent to every recipient ("serialise once").
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub node: String,
    pub event: Event,
    pub recipients: Vec<EntityId>,
}

/// The outcome of a successful operation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub changes: Vec<Change>,
    pub notifications: Vec<Notification>,
    /// The id of the item a publish stored (generated when the publisher gave none, §7.1.1).
    pub item_id: Option<String>,
}

impl Effects {
    fn change(c: Change) -> Effects {
        Effects {
            changes: vec![c],
            ..Effects::default()
        }
    }

    /// Append another operation's effects, keeping their order.
    pub fn extend(&mut self, other: Effects) {
        self.changes.extend(other.changes);
        self.notifications.extend(other.notifications);
        if other.item_id.is_some() {
            self.item_id = other.item_id;
        }
    }
}

/// A pubsub service: its nodes by name.
#[derive(Debug, Default, Clone)]
pub struct Service {
    nodes: BTreeMap<String, Node>,
}

impl Service {
    pub fn new() -> Service {
        Service::default()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The stored affiliation of `jid` on a node (None when not set or no such node).
    pub fn affiliation(&self, node: &str, jid: &str) -> Affiliation {
        self.nodes
            .get(node)
            .and_then(|n| n.affiliations.get(jid).copied())
            .unwrap_or(Affiliation::None)
    }

    fn existing(&self, node: &str) -> Result<&Node, PubsubError> {
        self.nodes.get(node).ok_or(PubsubError::NodeNotFound)
    }

    fn existing_mut(&mut self, node: &str) -> Result<&mut Node, PubsubError> {
        self.nodes.get_mut(node).ok_or(PubsubError::NodeNotFound)
    }

    /// §8.1: create a node. Only the service creates nodes here (a MIX channel's node set is the
    /// channel's, not its users'); an entity needs `Owner`.
    pub fn create_node(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        config: NodeConfig,
    ) -> Result<Effects, PubsubError> {
        if name.is_empty() {
            return Err(PubsubError::NodeIdRequired);
        }
        if !actor.is_service() && actor.affiliation != Affiliation::Owner {
            return Err(PubsubError::Forbidden);
        }
        if self.nodes.contains_key(name) {
            return Err(PubsubError::NodeExists);
        }
        self.nodes
            .insert(name.to_owned(), Node::new(name, config.clone()));
        Ok(Effects::change(Change::NodeCreated {
            node: name.to_owned(),
            config,
        }))
    }

    /// §8.4: delete a node; its subscribers are told.
    pub fn delete_node(&mut self, actor: Actor<'_>, name: &str) -> Result<Effects, PubsubError> {
        let node = self.existing(name)?;
        require_owner(actor)?;
        let recipients = node.subscribers();
        self.nodes.remove(name);
        let mut fx = Effects::change(Change::NodeDeleted {
            node: name.to_owned(),
        });
        fx.notifications.push(Notification {
            node: name.to_owned(),
            event: Event::Deleted,
            recipients,
        });
        Ok(fx)
    }

    /// §8.2: replace a node's configuration. Shrinking `max_items` drops the oldest items.
    pub fn configure(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        config: NodeConfig,
    ) -> Result<Effects, PubsubError> {
        require_owner(actor)?;
        let node = self.existing_mut(name)?;
        node.config = config.clone();
        let mut fx = Effects::change(Change::NodeConfigured {
            node: name.to_owned(),
            config,
        });
        for id in node.trim() {
            fx.changes.push(Change::ItemRetracted {
                node: name.to_owned(),
                id,
            });
        }
        if node.config.notify_config {
            fx.notifications.push(Notification {
                node: name.to_owned(),
                event: Event::Configured,
                recipients: node.subscribers(),
            });
        }
        Ok(fx)
    }

    /// §7.1: publish `payload` under `id` (or a fresh id from `new_id`). Republishing an id
    /// overwrites the item and notifies again; a full node drops its oldest item (§7.1.2, PS-08).
    pub fn publish(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        id: Option<&str>,
        payload: String,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<Effects, PubsubError> {
        let node = self.existing_mut(name)?;
        node.may_publish(actor)?;
        if payload.len() > node.config.max_payload_bytes {
            return Err(PubsubError::PayloadTooBig);
        }
        let id = match id {
            Some("") => return Err(PubsubError::ItemRequired),
            Some(id) => id.to_owned(),
            None => new_id(),
        };
        let item = Item {
            id: id.clone(),
            payload,
            publisher: actor.jid.map(str::to_owned),
        };
        let mut fx = Effects {
            item_id: Some(id),
            ..Effects::default()
        };
        if node.config.persist_items {
            let dropped = node.put(item.clone());
            fx.changes.push(Change::ItemPublished {
                node: name.to_owned(),
                item: item.clone(),
            });
            for old in dropped {
                fx.changes.push(Change::ItemRetracted {
                    node: name.to_owned(),
                    id: old,
                });
            }
        }
        if node.config.deliver_notifications {
            fx.notifications.push(Notification {
                node: name.to_owned(),
                event: Event::Published(item),
                recipients: node.subscribers(),
            });
        }
        Ok(fx)
    }

    /// §7.2: retract an item. The owner, a publisher, or the entity that published it may.
    pub fn retract(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        id: &str,
        notify: bool,
    ) -> Result<Effects, PubsubError> {
        if id.is_empty() {
            return Err(PubsubError::ItemRequired);
        }
        let node = self.existing_mut(name)?;
        let Some(item) = node.item(id) else {
            return Err(PubsubError::ItemNotFound);
        };
        let own = actor.jid.is_some() && item.publisher.as_deref() == actor.jid;
        if !actor.is_service() {
            if node.config.publish_model == PublishModel::Service {
                return Err(PubsubError::Forbidden);
            }
            if actor.affiliation == Affiliation::Outcast
                || !(own || actor.affiliation >= Affiliation::Publisher)
            {
                return Err(PubsubError::Forbidden);
            }
        }
        node.remove(id);
        let mut fx = Effects::change(Change::ItemRetracted {
            node: name.to_owned(),
            id: id.to_owned(),
        });
        if notify || node.config.notify_retract {
            fx.notifications.push(Notification {
                node: name.to_owned(),
                event: Event::Retracted(id.to_owned()),
                recipients: node.subscribers(),
            });
        }
        Ok(fx)
    }

    /// §8.5: purge every item (owner only).
    pub fn purge(&mut self, actor: Actor<'_>, name: &str) -> Result<Effects, PubsubError> {
        require_owner(actor)?;
        let node = self.existing_mut(name)?;
        if !node.config.persist_items {
            // §8.5.3.4: nothing is stored, so there is nothing to purge.
            return Err(PubsubError::PersistenceUnsupported);
        }
        node.clear();
        let mut fx = Effects::change(Change::NodePurged {
            node: name.to_owned(),
        });
        fx.notifications.push(Notification {
            node: name.to_owned(),
            event: Event::Purged,
            recipients: node.subscribers(),
        });
        Ok(fx)
    }

    /// §6.5: retrieve items, oldest first.
    pub fn items(
        &self,
        actor: Actor<'_>,
        name: &str,
        selection: &Selection,
    ) -> Result<Vec<&Item>, PubsubError> {
        let node = self.existing(name)?;
        node.may_read(actor)?;
        Ok(node.select(selection))
    }

    /// §6.1: subscribe `jid`. Subscribing again returns the current state (no multi-subscribe).
    pub fn subscribe(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        jid: &str,
    ) -> Result<Effects, PubsubError> {
        let node = self.existing_mut(name)?;
        node.may_read(actor)?;
        if !node.config.subscribable && !actor.is_service() {
            return Err(PubsubError::SubscriptionsUnsupported);
        }
        if !node.subscriptions.insert(jid.to_owned()) {
            return Ok(Effects::default());
        }
        Ok(Effects::change(Change::Subscribed {
            node: name.to_owned(),
            jid: jid.to_owned(),
        }))
    }

    /// §6.2: unsubscribe `jid`.
    pub fn unsubscribe(
        &mut self,
        _actor: Actor<'_>,
        name: &str,
        jid: &str,
    ) -> Result<Effects, PubsubError> {
        let node = self.existing_mut(name)?;
        if !node.subscriptions.remove(jid) {
            return Err(PubsubError::NotSubscribed);
        }
        Ok(Effects::change(Change::Unsubscribed {
            node: name.to_owned(),
            jid: jid.to_owned(),
        }))
    }

    /// §8.9: set an affiliation (owner only). `None` removes it; the last owner stays (§8.9.2.4).
    pub fn set_affiliation(
        &mut self,
        actor: Actor<'_>,
        name: &str,
        jid: &str,
        affiliation: Affiliation,
    ) -> Result<Effects, PubsubError> {
        require_owner(actor)?;
        let node = self.existing_mut(name)?;
        let owners = node
            .affiliations
            .values()
            .filter(|a| **a == Affiliation::Owner)
            .count();
        if node.affiliations.get(jid) == Some(&Affiliation::Owner)
            && affiliation != Affiliation::Owner
            && owners == 1
        {
            return Err(PubsubError::LastOwner);
        }
        if affiliation == Affiliation::None {
            node.affiliations.remove(jid);
        } else {
            node.affiliations.insert(jid.to_owned(), affiliation);
        }
        if affiliation == Affiliation::Outcast {
            // §8.9.2.4 (outcast): an outcast's subscriptions end.
            node.subscriptions.remove(jid);
        }
        Ok(Effects::change(Change::AffiliationSet {
            node: name.to_owned(),
            jid: jid.to_owned(),
            affiliation,
        }))
    }

    /// Rebuild state from what was persisted (the inverse of applying [`Change`]s).
    pub fn restore(&mut self, change: Change) {
        match change {
            Change::NodeCreated { node, config } => {
                self.nodes.insert(node.clone(), Node::new(&node, config));
            }
            Change::NodeDeleted { node } => {
                self.nodes.remove(&node);
            }
            Change::NodeConfigured { node, config } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.config = config;
                }
            }
            Change::ItemPublished { node, item } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.put(item);
                }
            }
            Change::ItemRetracted { node, id } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.remove(&id);
                }
            }
            Change::NodePurged { node } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.clear();
                }
            }
            Change::Subscribed { node, jid } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.subscriptions.insert(jid);
                }
            }
            Change::Unsubscribed { node, jid } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.subscriptions.remove(&jid);
                }
            }
            Change::AffiliationSet {
                node,
                jid,
                affiliation,
            } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    if affiliation == Affiliation::None {
                        n.affiliations.remove(&jid);
                    } else {
                        n.affiliations.insert(jid, affiliation);
                    }
                }
            }
        }
    }
}

fn require_owner(actor: Actor<'_>) -> Result<(), PubsubError> {
    if actor.is_service() || actor.affiliation == Affiliation::Owner {
        Ok(())
    } else {
        Err(PubsubError::Forbidden)
    }
}

#[cfg(test)]
mod tests;
