//! The coordinator's edge: starting the server, the gRPC service and Flight SQL beside it,
//! the leadership gate in front of them, and the conversions between wire messages and the
//! coordinator's own types.

pub(crate) mod convert;
pub(crate) mod flight_sql;
pub(crate) mod role;
pub(crate) mod server;
pub(crate) mod service;
