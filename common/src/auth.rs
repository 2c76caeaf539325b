//! The cluster token: one shared secret that every gRPC and Flight call carries
//! (`authorization: Bearer <token>`), read from a file or from `TALLY_TOKEN`. Servers check it
//! in an interceptor before any handler runs; clients attach it in an interceptor, so no call
//! site can forget it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The environment variable a token is read from when no token file is given.
pub const TOKEN_ENV: &str = "TALLY_TOKEN";

const HEADER: &str = "authorization";
const SCHEME: &str = "Bearer ";
/// Short tokens are guessable; 16 characters of a random token are about 96 bits.
const MIN_TOKEN_CHARS: usize = 16;

/// `bytes` bytes from the system's secure random generator, as lowercase hex: for tokens and
/// session ids.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .expect("the system random generator works");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the cluster token file {path}: {message}")]
    File { path: String, message: String },
    #[error(
        "the cluster token {origin} is {reason}: use at least {MIN_TOKEN_CHARS} printable ASCII \
         characters without spaces (e.g. `openssl rand -hex 32`)"
    )]
    Invalid {
        origin: String,
        reason: &'static str,
    },
}

/// The shared secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterToken {
    secret: Arc<str>,
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(..)")
    }
}

impl ClusterToken {
    /// A token from its text; surrounding whitespace (a file's final newline) is dropped.
    pub fn new(text: &str, origin: &str) -> Result<Self, TokenError> {
        let secret = text.trim();
        let invalid = |reason| TokenError::Invalid {
            origin: origin.to_string(),
            reason,
        };
        if secret.is_empty() {
            return Err(invalid("empty"));
        }
        if !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid("not printable ASCII"));
        }
        if secret.len() < MIN_TOKEN_CHARS {
            return Err(invalid("too short"));
        }
        Ok(Self {
            secret: secret.into(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::new(&text, &format!("in {}", path.display()))
    }

    /// The token of a process: from `file` when given, else from `TALLY_TOKEN`, else none.
    pub fn resolve(file: Option<&Path>) -> Result<Option<Self>, TokenError> {
        if let Some(path) = file {
            return Self::from_file(path).map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => Self::new(&text, &format!("in ${TOKEN_ENV}")).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// A new random token (64 hex characters), e.g. for an embedded cluster or a test.
    pub fn random() -> Self {
        Self {
            secret: random_hex(32).into(),
        }
    }

    /// The token's text, to write it to a file for another process.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    fn header_value(&self) -> MetadataValue<Ascii> {
        format!("{SCHEME}{}", self.secret)
            .parse()
            .expect("a token is printable ASCII")
    }
}

/// Client side: puts the token on every outgoing call.
#[derive(Clone, Default)]
pub struct AttachToken {
    header: Option<MetadataValue<Ascii>>,
}

impl AttachToken {
    pub fn new(token: Option<&ClusterToken>) -> Self {
        Self {
            header: token.map(ClusterToken::header_value),
        }
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert(HEADER, header.clone());
        }
        Ok(request)
    }
}

/// Server side: refuses every call that does not carry the cluster token. Without a token
/// configured (a loopback-only cluster) every call passes.
#[derive(Clone, Default)]
pub struct RequireToken {
    expected: Option<Arc<Expected>>,
}

/// The token is compared as HMAC tags under a key drawn at start: `hmac::verify` compares in
/// constant time, and neither the token's length nor its prefix leaks through timing.
struct Expected {
    key: hmac::Key,
    tag: hmac::Tag,
}

impl RequireToken {
    pub fn new(token: Option<&ClusterToken>) -> Self {
        let expected = token.map(|token| {
            let key = hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
                .expect("the system random generator works");
            let tag = hmac::sign(&key, token.header_value().as_bytes());
            Arc::new(Expected { key, tag })
        });
        Self { expected }
    }

    pub fn is_required(&self) -> bool {
        self.expected.is_some()
    }
}

/// Why a call was refused: it carried no token, or another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Missing,
    Wrong,
}

impl TokenRefusal {
    pub fn message(self) -> &'static str {
        match self {
            TokenRefusal::Missing => {
                "missing cluster token: this cluster requires its token on every call \
                 (--token-file FILE or the TALLY_TOKEN environment variable)"
            }
            TokenRefusal::Wrong => {
                "wrong cluster token: the token sent does not match this cluster's"
            }
        }
    }
}

impl RequireToken {
    /// Checks an `authorization` header's value (`Bearer TOKEN`), for the gRPC services and
    /// the HTTP pages alike.
    pub fn check_header(&self, presented: Option<&[u8]>) -> Result<(), TokenRefusal> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let presented = presented.ok_or(TokenRefusal::Missing)?;
        hmac::verify(&expected.key, presented, expected.tag.as_ref())
            .map_err(|_| TokenRefusal::Wrong)
    }

    /// Checks a bare token (from the web UI's log-in form).
    pub fn check_secret(&self, secret: &str) -> Result<(), TokenRefusal> {
        self.check_header(Some(format!("{SCHEME}{}", secret.trim()).as_bytes()))
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request.metadata().get(HEADER).map(|value| value.as_bytes());
        match self.check_header(presented) {
            Ok(()) => Ok(request),
            Err(refusal) => Err(Status::unauthenticated(refusal.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_with(check: &mut RequireToken, attach: &mut AttachToken) -> Result<(), Status> {
        let request = attach.call(Request::new(()))?;
        check.call(request).map(|_| ())
    }

    #[test]
    fn the_right_token_passes_and_others_are_refused() {
        let token = ClusterToken::random();
        let mut check = RequireToken::new(Some(&token));
        call_with(&mut check, &mut AttachToken::new(Some(&token))).unwrap();

        let missing = call_with(&mut check, &mut AttachToken::new(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("missing cluster token"));

        let other = ClusterToken::random();
        let wrong = call_with(&mut check, &mut AttachToken::new(Some(&other))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("wrong cluster token"));

        // A prefix of the right token is wrong too.
        let prefix = ClusterToken::new(&token.expose_secret()[..20], "test").unwrap();
        assert!(call_with(&mut check, &mut AttachToken::new(Some(&prefix))).is_err());
    }

    #[test]
    fn without_a_configured_token_every_call_passes() {
        let mut check = RequireToken::new(None);
        assert!(!check.is_required());
        call_with(&mut check, &mut AttachToken::new(None)).unwrap();
    }

    #[test]
    fn tokens_are_read_trimmed_and_weak_ones_refused() {
        let dir = std::env::temp_dir().join(format!("tally-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        let token = ClusterToken::resolve(Some(&path)).unwrap().unwrap();
        assert_eq!(token.expose_secret(), "0123456789abcdef0123");
        assert!(!format!("{token:?}").contains("0123"));

        let err = ClusterToken::new("short", "test").unwrap_err().to_string();
        assert!(err.contains("too short"), "{err}");
        let err = ClusterToken::new("with a space inside it", "test").unwrap_err();
        assert!(err.to_string().contains("printable"), "{err}");
        let err = ClusterToken::from_file(&dir.join("absent")).unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
