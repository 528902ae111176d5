//! Balsa's UDP transport.
//!
//! This crate will hold the mio event-loop thread that owns a node's UDP socket, the wire envelope
//! (magic, protocol version, cluster id, sender id, kind, bincode body), a codec bounded by the
//! datagram limit, the peer table and fault injection for tests. It is generic over the message
//! type and knows nothing of Raft.
//!
//! Status: not built yet.
