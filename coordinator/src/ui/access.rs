//! Who may see the UI: with a cluster token configured, every page, API call and `/metrics`
//! needs it, as every gRPC call does. Scripts and Prometheus send `Authorization: Bearer
//! TOKEN`; a browser logs in once with a form, and the token comes back as an HttpOnly,
//! same-site cookie (hex-encoded, since a token may hold characters a cookie cannot).
//! Without a token the coordinator listens on loopback only, and nothing is asked.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use tally_common::auth::{RequireToken, TokenRefusal};

use super::format::escape;

const COOKIE: &str = "tally_token";

/// `pages` behind the token check, with the log-in form beside them.
pub(crate) fn guard(pages: Router, token: RequireToken, secure_cookie: bool) -> Router {
    if !token.is_required() {
        return pages;
    }
    let check = token.clone();
    let pages = pages.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let token = check.clone();
            async move {
                match authorized(&token, request.headers()) {
                    Ok(()) => next.run(request).await,
                    Err(refusal) => refused(refusal, request.uri().path()),
                }
            }
        },
    ));
    pages.route(
        "/login",
        get(|| async { login_form(StatusCode::OK, None) }).post(move |body: String| {
            let token = token.clone();
            async move { log_in(&token, secure_cookie, &body) }
        }),
    )
}

fn authorized(token: &RequireToken, headers: &HeaderMap) -> Result<(), TokenRefusal> {
    if let Some(presented) = headers.get(header::AUTHORIZATION) {
        return token.check_header(Some(presented.as_bytes()));
    }
    match cookie(headers, COOKIE).and_then(|hex| from_hex(&hex)) {
        Some(secret) => token.check_secret(&secret),
        None => Err(TokenRefusal::Missing),
    }
}

/// A page asks the person to log in; the API and `/metrics` answer as an API does.
fn refused(refusal: TokenRefusal, path: &str) -> Response {
    if path.starts_with("/api/") || path == "/metrics" || path.ends_with("/cancel") {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            refusal.message(),
        )
            .into_response();
    }
    let message = match refusal {
        TokenRefusal::Missing => None,
        TokenRefusal::Wrong => Some(refusal.message()),
    };
    login_form(StatusCode::UNAUTHORIZED, message)
}

fn log_in(token: &RequireToken, secure_cookie: bool, body: &str) -> Response {
    let secret = form_value(body, "token").unwrap_or_default();
    match token.check_secret(&secret) {
        Ok(()) => {
            let secure = if secure_cookie { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{secure}",
                to_hex(secret.trim())
            );
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(refusal) => login_form(StatusCode::UNAUTHORIZED, Some(refusal.message())),
    }
}

fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tally · log in</title>\
         <link rel=\"stylesheet\" href=\"/assets/ui.css\"></head><body><main class=\"login\">\
         <h1>Tally</h1><p>This cluster asks for its token (the one in <code>--token-file</code> \
         or <code>$TALLY_TOKEN</code>).</p>{message}\
         <form method=\"post\" action=\"/login\"><input type=\"password\" name=\"token\" \
         id=\"token\" autocomplete=\"current-password\" autofocus placeholder=\"cluster token\">\
         <button type=\"submit\" id=\"log-in\">Log in</button></form></main></body></html>"
    );
    (status, Html(html)).into_response()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// One field of an `application/x-www-form-urlencoded` body.
fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tally_common::auth::ClusterToken;

    #[test]
    fn the_token_passes_as_a_bearer_header_or_the_log_in_cookie_and_nothing_else_does() {
        let secret = ClusterToken::random();
        let token = RequireToken::new(Some(&secret));
        let mut headers = HeaderMap::new();
        assert_eq!(authorized(&token, &headers), Err(TokenRefusal::Missing));

        let bearer = format!("Bearer {}", secret.expose_secret());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&bearer).unwrap(),
        );
        assert_eq!(authorized(&token, &headers), Ok(()));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(authorized(&token, &headers), Err(TokenRefusal::Wrong));

        let mut browser = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={}", to_hex(secret.expose_secret()));
        browser.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert_eq!(authorized(&token, &browser), Ok(()));
        browser.insert(
            header::COOKIE,
            HeaderValue::from_static("tally_token=6e6f7065"),
        );
        assert_eq!(authorized(&token, &browser), Err(TokenRefusal::Wrong));
    }

    #[test]
    fn the_log_in_form_sets_the_cookie_only_for_the_right_token() {
        let secret = ClusterToken::new("abc+def/0123456789%&=x", "test").unwrap();
        let token = RequireToken::new(Some(&secret));
        let body = "token=abc%2Bdef%2F0123456789%25%26%3Dx";
        assert_eq!(form_value(body, "token").unwrap(), secret.expose_secret());
        let ok = log_in(&token, false, body);
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        let cookie = ok.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        let wrong = log_in(&token, false, "token=wrong-token-wrong-token");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    }
}
