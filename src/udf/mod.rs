//! The Kapacitor side: the UDF wire protocol and its sessions.
//!
//! - [`codec`]: varint-length-prefixed prost frames (no I/O).
//! - the handler seam a session drives is the engine's: [`crate::alert::handler`].
//! - [`session`]: one connection's conversation (reader, processor, writer).
//! - [`snapshot`]: the snapshot header this agent gives Kapacitor.
//! - [`server`]: the stream and batch sockets; one session per connection.
//! - [`stdio`]: the `prog =` relay to the running agent's socket.

pub mod codec;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod stdio;
