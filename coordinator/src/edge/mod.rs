//! The coordinator's edge: starting the server, the gRPC service, the leadership gate in
//! front of it, and the conversions between wire messages and the coordinator's own types.

pub(crate) mod convert;
pub(crate) mod role;
pub(crate) mod server;
pub(crate) mod service;
