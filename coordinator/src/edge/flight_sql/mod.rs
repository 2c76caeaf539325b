//! Arrow Flight SQL on the coordinator's own port, beside its gRPC service, so that ADBC,
//! JDBC and ODBC drivers can run SQL on Tally without knowing its protocol.
//!
//! A statement runs as any job does; `GetFlightInfo` returns when the job has ended, with one
//! endpoint per piece of the answer. The pieces stay where the final stage spooled them: each
//! endpoint names the worker that holds it and carries the ticket that worker signed, so a
//! client streams the answer from the workers, in parallel if it likes, exactly as `tally sql`
//! does. Answers the coordinator made itself (DDL, EXPLAIN) and empty answers are served by
//! the coordinator. Every endpoint and the `FlightInfo` carry the job id as app metadata, and
//! the `tally.job` action returns the job's figures (shuffle bytes per stage).
//!
//! The same interceptors guard it as the gRPC service: the leadership gate and the cluster
//! token (`authorization: Bearer ...`), which the client sends to the workers as well. Clients
//! that log in with a user name and password give the token as the password (`basic_auth`).

mod actions;
mod basic_auth;
mod listing;
mod locations;
mod parameters;
mod prepared;
mod service;
mod statements;

pub(crate) use basic_auth::basic_to_bearer;
pub(crate) use service::TallyFlightSql;
