//! How every Tally process connects and serves: with the cluster token on each call, over TLS
//! when it is configured, and never listening beyond loopback without a token. Every channel
//! and server in Tally is made here, so none can skip a check.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Server};

use crate::MAX_MESSAGE_BYTES;
use crate::auth::{AttachToken, ClusterToken, RequireToken, TOKEN_ENV, TokenError};
use crate::tls::{ClusterTls, TlsError, TlsFiles};

/// A channel whose calls carry the cluster token.
pub type AuthChannel = InterceptedService<Channel, AttachToken>;

/// How long a channel waits for a connection before the call fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a channel pings its peer, and how long it waits for the answer before it
/// closes the connection and fails the calls on it.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A generated gRPC client of one of Tally's services, with the message limits every
/// service sets on both ends.
pub trait ServiceClient: Sized {
    fn with_channel(channel: AuthChannel) -> Self;
}

macro_rules! service_clients {
    ($($client:path),* $(,)?) => {$(
        impl ServiceClient for $client {
            fn with_channel(channel: AuthChannel) -> Self {
                Self::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            }
        }
    )*};
}

service_clients!(
    tally_proto::coordinator::coordinator_service_client::CoordinatorServiceClient<AuthChannel>,
    tally_proto::worker::worker_service_client::WorkerServiceClient<AuthChannel>,
    arrow_flight::flight_service_client::FlightServiceClient<AuthChannel>,
);

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error(
        "refusing to listen on {addr} without a cluster token: any host that reaches it could \
         run SQL and read the data. Give a token (--token-file FILE or ${TOKEN_ENV}) or bind to \
         127.0.0.1"
    )]
    NoTokenBeyondLoopback { addr: SocketAddr },
    #[error("bad address {endpoint}: {message}")]
    Endpoint { endpoint: String, message: String },
    #[error("TLS setup: {0}")]
    Transport(String),
}

/// The token and TLS settings of one process; the default has neither (loopback only).
#[derive(Debug, Clone, Default)]
pub struct ClusterSecurity {
    pub token: Option<ClusterToken>,
    pub tls: Option<ClusterTls>,
}

impl ClusterSecurity {
    pub fn new(token: Option<ClusterToken>, tls: Option<ClusterTls>) -> Self {
        Self { token, tls }
    }

    /// A coordinator's or worker's settings from the command line's files.
    pub fn for_server(
        token_file: Option<&std::path::Path>,
        tls: &TlsFiles,
    ) -> Result<Self, SecurityError> {
        Ok(Self {
            token: ClusterToken::resolve(token_file)?,
            tls: ClusterTls::server(tls)?,
        })
    }

    /// A client's settings from the command line's files.
    pub fn for_client(
        token_file: Option<&std::path::Path>,
        tls: &TlsFiles,
    ) -> Result<Self, SecurityError> {
        Ok(Self {
            token: ClusterToken::resolve(token_file)?,
            tls: ClusterTls::client(tls)?,
        })
    }

    /// `host:port` as a URL: https when TLS is on. A full URL is kept as it is.
    pub fn url(&self, endpoint: &str) -> String {
        if endpoint.contains("://") {
            endpoint.to_string()
        } else if self.tls.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        }
    }

    /// An endpoint to connect to, with TLS when it is on.
    pub fn endpoint(&self, endpoint: &str) -> Result<Endpoint, SecurityError> {
        let bad = |message: String| SecurityError::Endpoint {
            endpoint: endpoint.to_string(),
            message,
        };
        // HTTP/2 pings find a connection whose peer was cut off: without them a call on it
        // waits for TCP to give up (minutes), and the job waits with it.
        let mut result = Endpoint::from_shared(self.url(endpoint))
            .map_err(|e| bad(e.to_string()))?
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            result = result
                .tls_config(tls.client_config())
                .map_err(|e| bad(crate::root_cause(&e)))?;
        }
        Ok(result)
    }

    /// A channel that connects on first use.
    pub fn lazy_channel(
        &self,
        endpoint: &str,
        connect_timeout: Duration,
    ) -> Result<AuthChannel, SecurityError> {
        let channel = self
            .endpoint(endpoint)?
            .connect_timeout(connect_timeout)
            .connect_lazy();
        Ok(self.authed(channel))
    }

    /// A client of a Tally service at `endpoint` that connects on first use.
    pub fn lazy_client<C: ServiceClient>(&self, endpoint: &str) -> Result<C, SecurityError> {
        Ok(C::with_channel(
            self.lazy_channel(endpoint, CONNECT_TIMEOUT)?,
        ))
    }

    /// A client of a Tally service at `endpoint`, connected now so that an address that does
    /// not answer fails here; the error is the innermost cause ("Connection refused").
    pub async fn connect_client<C: ServiceClient>(&self, endpoint: &str) -> Result<C, String> {
        let channel = self
            .endpoint(endpoint)
            .map_err(|e| e.to_string())?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| crate::root_cause(&e))?;
        Ok(C::with_channel(self.authed(channel)))
    }

    /// Adds the token to a connected channel's calls.
    pub fn authed(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, AttachToken::new(self.token.as_ref()))
    }

    /// A service that refuses calls without the cluster token.
    pub fn guard<S>(&self, service: S) -> InterceptedService<S, RequireToken> {
        InterceptedService::new(service, RequireToken::new(self.token.as_ref()))
    }

    /// A server builder that serves TLS when it is on.
    pub fn server(&self) -> Result<Server, SecurityError> {
        let builder = Server::builder();
        match self.tls.as_ref().and_then(ClusterTls::server_config) {
            Some(config) => builder
                .tls_config(config)
                .map_err(|e| SecurityError::Transport(crate::root_cause(&e))),
            None => Ok(builder),
        }
    }

    /// Refuses a listening address beyond loopback when there is no token to check, and a
    /// TLS setup that cannot serve.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), SecurityError> {
        if self.token.is_none() && !addr.ip().is_loopback() {
            return Err(SecurityError::NoTokenBeyondLoopback { addr });
        }
        if let Some(tls) = &self.tls
            && !tls.serves()
        {
            return Err(TlsError::Incomplete(
                "a TLS server needs --tls-cert and --tls-key".to_string(),
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let open = ClusterSecurity::default();
        open.check_listen("127.0.0.1:0".parse().unwrap()).unwrap();
        open.check_listen("[::1]:0".parse().unwrap()).unwrap();
        let err = open
            .check_listen("0.0.0.0:50050".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing to listen on 0.0.0.0:50050"), "{err}");
        assert!(err.contains("--token-file"), "{err}");

        let guarded = ClusterSecurity::new(Some(ClusterToken::random()), None);
        guarded
            .check_listen("0.0.0.0:50050".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn urls_use_https_with_tls() {
        let plain = ClusterSecurity::default();
        assert_eq!(plain.url("h:1"), "http://h:1");
        assert_eq!(plain.url("https://h:1"), "https://h:1");
    }
}
