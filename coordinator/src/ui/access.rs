//! Who may see the UI: with a cluster token configured, every page, API call and `/metrics`
//! needs it, as every gRPC call does. Scripts and Prometheus send `Authorization: Bearer
//! TOKEN`; a browser logs in once with a form, and gets a session: a random id (32 bytes from
//! the system's generator, hex) in an HttpOnly, same-site cookie, kept here in the
//! coordinator's memory with its expiry. The token itself never reaches the browser's storage.
//! Logging out ends the session; so does the coordinator stopping (sessions are not shared
//! with another coordinator). Without a token the coordinator listens on loopback only, and
//! nothing is asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tally_common::auth::{RequireToken, TokenRefusal, random_hex};

use super::format::escape;

const COOKIE: &str = "tally_session";
/// How long a log-in lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Most live sessions: beyond it, a log-in ends the session closest to expiring. Only
/// holders of the token open sessions; the bound keeps a script that logs in over and over
/// from growing the coordinator's memory.
const MAX_SESSIONS: usize = 10_000;

/// The browsers logged in: session id to when it expires.
pub(crate) struct Sessions {
    ttl: Duration,
    max: usize,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub(crate) fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            max: MAX_SESSIONS,
            live: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.live.lock().expect("sessions poisoned")
    }

    /// A new session for a browser that presented the token; expired ones are dropped.
    fn open(&self) -> String {
        let now = Instant::now();
        let id = random_hex(32);
        let mut live = self.lock();
        live.retain(|_, expires| *expires > now);
        while live.len() >= self.max {
            let Some(oldest) = live
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(id.clone(), now + self.ttl);
        id
    }

    /// Whether `id` names a session that has not expired (an expired one is dropped).
    fn check(&self, id: &str) -> bool {
        let mut live = self.lock();
        match live.get(id) {
            Some(expires) if *expires > Instant::now() => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    fn close(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// `pages` behind the token check, with the log-in form and log-out beside them.
pub(crate) fn guard(
    pages: Router,
    token: RequireToken,
    sessions: Arc<Sessions>,
    secure_cookie: bool,
) -> Router {
    if !token.is_required() {
        return pages;
    }
    let check = (token.clone(), sessions.clone());
    let pages = pages.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let (token, sessions) = check.clone();
            async move {
                match authorized(&token, &sessions, request.headers()) {
                    Ok(()) => next.run(request).await,
                    Err(refusal) => refused(refusal, request.uri().path()),
                }
            }
        },
    ));
    let leaving = sessions.clone();
    pages
        .route(
            "/login",
            get(|| async { login_form(StatusCode::OK, None) }).post(move |body: String| {
                let (token, sessions) = (token.clone(), sessions.clone());
                async move { log_in(&token, &sessions, secure_cookie, &body) }
            }),
        )
        .route(
            "/logout",
            post(move |headers: HeaderMap| {
                let sessions = leaving.clone();
                async move { log_out(&sessions, secure_cookie, &headers) }
            }),
        )
}

fn authorized(
    token: &RequireToken,
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<(), TokenRefusal> {
    if let Some(presented) = headers.get(header::AUTHORIZATION) {
        return token.check_header(Some(presented.as_bytes()));
    }
    match cookie(headers, COOKIE) {
        Some(id) if sessions.check(&id) => Ok(()),
        // Unknown or expired: the person logs in again.
        _ => Err(TokenRefusal::Missing),
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

fn session_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

fn log_in(token: &RequireToken, sessions: &Sessions, secure_cookie: bool, body: &str) -> Response {
    let secret = form_value(body, "token").unwrap_or_default();
    match token.check_secret(&secret) {
        Ok(()) => {
            let cookie = session_cookie(&sessions.open(), sessions.ttl, secure_cookie);
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Err(refusal) => login_form(StatusCode::UNAUTHORIZED, Some(refusal.message())),
    }
}

/// Ends the browser's session here and asks the browser to forget its cookie.
fn log_out(sessions: &Sessions, secure_cookie: bool, headers: &HeaderMap) -> Response {
    if let Some(id) = cookie(headers, COOKIE) {
        sessions.close(&id);
    }
    let cookie = session_cookie("", Duration::ZERO, secure_cookie);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use tally_common::auth::ClusterToken;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    /// The session id a log-in response sets.
    fn session_of(response: &Response) -> String {
        let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let value = cookie.split(';').next().unwrap();
        value.strip_prefix("tally_session=").unwrap().to_string()
    }

    #[test]
    fn the_token_passes_as_a_bearer_header_and_a_session_as_its_cookie() {
        let secret = ClusterToken::random();
        let token = RequireToken::new(Some(&secret));
        let sessions = Sessions::new(SESSION_TTL);
        let mut headers = HeaderMap::new();
        assert_eq!(
            authorized(&token, &sessions, &headers),
            Err(TokenRefusal::Missing)
        );

        let bearer = format!("Bearer {}", secret.expose_secret());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&bearer).unwrap(),
        );
        assert_eq!(authorized(&token, &sessions, &headers), Ok(()));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert_eq!(
            authorized(&token, &sessions, &headers),
            Err(TokenRefusal::Wrong)
        );

        // A session opened by logging in passes; the token itself in the cookie does not.
        let body = format!("token={}", secret.expose_secret());
        let id = session_of(&log_in(&token, &sessions, false, &body));
        let browser = with_cookie(&format!("other=1; tally_session={id}"));
        assert_eq!(authorized(&token, &sessions, &browser), Ok(()));
        for forged in [
            format!("tally_session={}", secret.expose_secret()),
            format!("tally_token={}", secret.expose_secret()),
            format!("tally_session={}", random_hex(32)),
        ] {
            assert_eq!(
                authorized(&token, &sessions, &with_cookie(&forged)),
                Err(TokenRefusal::Missing),
                "{forged}"
            );
        }
    }

    #[test]
    fn logging_in_sets_a_random_session_not_the_token_and_logging_out_ends_it() {
        let secret = ClusterToken::new("abc+def/0123456789%&=x", "test").unwrap();
        let token = RequireToken::new(Some(&secret));
        let sessions = Sessions::new(SESSION_TTL);
        let body = "token=abc%2Bdef%2F0123456789%25%26%3Dx";
        assert_eq!(form_value(body, "token").unwrap(), secret.expose_secret());
        let ok = log_in(&token, &sessions, true, body);
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);
        let cookie = ok.headers()[header::SET_COOKIE].to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"] {
            assert!(cookie.contains(part), "{part} missing from {cookie}");
        }
        let id = session_of(&ok);
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        let token_hex: String = secret
            .expose_secret()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!cookie.contains(secret.expose_secret()) && !cookie.contains(&token_hex));
        // Each log-in gets its own session.
        let other = session_of(&log_in(&token, &sessions, true, body));
        assert_ne!(id, other);

        let browser = with_cookie(&format!("tally_session={id}"));
        let out = log_out(&sessions, true, &browser);
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        let cleared = out.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cleared.starts_with("tally_session=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        assert_eq!(
            authorized(&token, &sessions, &browser),
            Err(TokenRefusal::Missing)
        );
        // The other browser's session lives on.
        let still = with_cookie(&format!("tally_session={other}"));
        assert_eq!(authorized(&token, &sessions, &still), Ok(()));

        let wrong = log_in(&token, &sessions, false, "token=wrong-token-wrong-token");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    }

    #[test]
    fn a_session_ends_when_it_expires() {
        let secret = ClusterToken::random();
        let token = RequireToken::new(Some(&secret));
        let sessions = Sessions::new(Duration::from_millis(30));
        let body = format!("token={}", secret.expose_secret());
        let id = session_of(&log_in(&token, &sessions, false, &body));
        let browser = with_cookie(&format!("tally_session={id}"));
        assert_eq!(authorized(&token, &sessions, &browser), Ok(()));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            authorized(&token, &sessions, &browser),
            Err(TokenRefusal::Missing)
        );
        assert!(sessions.lock().is_empty(), "the expired session is dropped");
    }

    #[test]
    fn logging_in_beyond_the_cap_ends_the_oldest_session() {
        let sessions = Sessions {
            ttl: SESSION_TTL,
            max: 3,
            live: Mutex::default(),
        };
        let first = sessions.open();
        std::thread::sleep(Duration::from_millis(2));
        let opened: Vec<String> = (0..3).map(|_| sessions.open()).collect();
        assert_eq!(sessions.lock().len(), 3);
        assert!(!sessions.check(&first), "the oldest session made room");
        assert!(opened.iter().all(|id| sessions.check(id)));
    }
}
