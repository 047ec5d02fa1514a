//! Managed mode: flnode's own WireGuard interface.
//!
//! * [`names`]: the interface's name and the backend a user asks for;
//! * [`key`]: WireGuard keys (a node's X25519 key, `flproto::x25519`);
//! * [`device`]: what flnode asks of a WireGuard device, with two
//!   implementations, the kernel's over generic netlink (`kernel`) and
//!   wireguard-go over its control socket (`userspace`, `uapi`);
//! * [`plan`] and [`reconcile`]: pure decisions: which peers get an entry
//!   and which addresses, and the changes that get the device there;
//! * [`link`]: the network interface itself over rtnetlink (MTU,
//!   addresses, routes); [`interface`]: creating or adopting it at start
//!   and removing it at the end; [`manager`]: the task that keeps its peer
//!   table in step with the allow-list and the peers' states.

pub mod device;
pub mod interface;
pub mod kernel;
pub mod key;
pub mod link;
pub mod manager;
pub mod names;
pub mod plan;
pub mod reconcile;
pub mod uapi;
pub mod userspace;

pub use names::{BackendChoice, InterfaceName};
