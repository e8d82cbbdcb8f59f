//! pubsub-core
