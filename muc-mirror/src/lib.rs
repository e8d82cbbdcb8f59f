//! The XEP-0045 face of mixd's channels: each channel is also a MUC room on the mirror domain.
//!
//! The service entity's discovery (XEP-0030, XEP-0408 form) and rooms ([`room::Room`]): a
//! channel and its MUC occupants, one actor for both faces.

mod admin;
pub mod disco;
pub mod dmuc;
pub mod dmuc_mirror;
mod invite;
mod register;
pub mod room;
pub mod settings;

#[cfg(test)]
mod tests;
