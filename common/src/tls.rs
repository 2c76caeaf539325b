//! TLS (rustls, through tonic) from PEM files: a server presents `--tls-cert`/`--tls-key`;
//! a client trusts the certificates signed by `--tls-ca` (a self-signed certificate is its own
//! CA). Coordinators and workers are both servers and clients of each other, so they need all
//! three; the CLI needs only the CA.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS {what} {path}: {message}")]
    File {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("{0}")]
    Incomplete(String),
}

/// The PEM files as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.cert.is_none() && self.key.is_none() && self.ca.is_none()
    }
}

/// Loaded TLS material. `identity` is what this process serves with, `ca` what it trusts.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    identity: Option<Identity>,
    ca: Certificate,
}

impl ClusterTls {
    /// For a process that only calls (the CLI, the client library): the CA is required.
    pub fn client(files: &TlsFiles) -> Result<Option<Self>, TlsError> {
        if files.is_empty() {
            return Ok(None);
        }
        let Some(ca) = &files.ca else {
            return Err(TlsError::Incomplete(
                "TLS needs --tls-ca: the certificate (or its CA) that the servers present"
                    .to_string(),
            ));
        };
        let identity = match (&files.cert, &files.key) {
            (Some(cert), Some(key)) => Some(identity(cert, key)?),
            _ => None,
        };
        Ok(Some(Self {
            identity,
            ca: Certificate::from_pem(read(ca, "CA certificate")?),
        }))
    }

    /// For a process that serves and calls (coordinator, worker): all three files.
    pub fn server(files: &TlsFiles) -> Result<Option<Self>, TlsError> {
        if files.is_empty() {
            return Ok(None);
        }
        let (Some(cert), Some(key), Some(ca)) = (&files.cert, &files.key, &files.ca) else {
            return Err(TlsError::Incomplete(
                "a TLS server needs --tls-cert, --tls-key and --tls-ca (it also calls the \
                 other servers, and trusts what the CA signed)"
                    .to_string(),
            ));
        };
        Ok(Some(Self {
            identity: Some(identity(cert, key)?),
            ca: Certificate::from_pem(read(ca, "CA certificate")?),
        }))
    }

    /// From PEM text already in memory (tests, embedded clusters).
    pub fn from_pem(cert: &str, key: &str, ca: &str) -> Self {
        Self {
            identity: Some(Identity::from_pem(cert, key)),
            ca: Certificate::from_pem(ca),
        }
    }

    pub(crate) fn server_config(&self) -> Option<ServerTlsConfig> {
        self.identity
            .clone()
            .map(|identity| ServerTlsConfig::new().identity(identity))
    }

    pub(crate) fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(self.ca.clone())
    }

    pub(crate) fn serves(&self) -> bool {
        self.identity.is_some()
    }
}

fn identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    Ok(Identity::from_pem(
        read(cert, "certificate")?,
        read(key, "private key")?,
    ))
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        what,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
