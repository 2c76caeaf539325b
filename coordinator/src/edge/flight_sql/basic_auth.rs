//! The cluster token for Flight SQL clients that log in with a user name and a password (JDBC
//! and ODBC drivers, ADBC's `username`/`password`): HTTP Basic credentials whose password is
//! the cluster token stand for the token itself, whatever the user name. The handshake then
//! answers with the `authorization: Bearer ...` header such clients send on every later call,
//! to the coordinator and to the workers alike.

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

const HEADER: &str = "authorization";

/// Base64 with or without its `=` padding: Go's Flight client (under the ADBC driver) leaves
/// it out, Java's and C++'s put it in.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Rewrites `authorization: Basic base64(user:password)` to `authorization: Bearer password`,
/// for the token check that follows. Other requests pass unchanged.
pub(crate) fn basic_to_bearer<T>(mut request: Request<T>) -> Result<Request<T>, Status> {
    let Some(value) = request.metadata().get(HEADER) else {
        return Ok(request);
    };
    let Some(encoded) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Basic ")
            .or_else(|| v.strip_prefix("basic "))
    }) else {
        return Ok(request);
    };
    let malformed =
        || Status::unauthenticated("malformed Basic credentials: expected base64 of user:password");
    let decoded = BASE64.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (_user, password) = decoded.split_once(':').ok_or_else(malformed)?;
    let bearer: MetadataValue<_> = format!("Bearer {password}")
        .parse()
        .map_err(|_| malformed())?;
    request.metadata_mut().insert(HEADER, bearer);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    use super::*;

    fn with_header(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert(HEADER, value.parse().unwrap());
        request
    }

    #[test]
    fn basic_credentials_become_the_bearer_token_and_others_pass_unchanged() {
        let basic = format!("Basic {}", STANDARD.encode("anyone:0123456789abcdef"));
        let request = basic_to_bearer(with_header(&basic)).unwrap();
        assert_eq!(
            request.metadata().get(HEADER).unwrap(),
            "Bearer 0123456789abcdef"
        );

        let unpadded = format!(
            "Basic {}",
            STANDARD_NO_PAD.encode("analyst:wrong-token-of-20")
        );
        let request = basic_to_bearer(with_header(&unpadded)).unwrap();
        assert_eq!(
            request.metadata().get(HEADER).unwrap(),
            "Bearer wrong-token-of-20"
        );

        let request = basic_to_bearer(with_header("Bearer abc")).unwrap();
        assert_eq!(request.metadata().get(HEADER).unwrap(), "Bearer abc");
        assert!(
            basic_to_bearer(Request::new(()))
                .unwrap()
                .metadata()
                .is_empty()
        );

        let err = basic_to_bearer(with_header("Basic !!!")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
    }
}
