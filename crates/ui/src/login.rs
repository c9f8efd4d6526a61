//! Signing in to the UI on a master started with `--acl`: a browser cannot add an
//! `Authorization` header to page loads, so the sign-in form puts the token's secret in an
//! `HttpOnly`, `SameSite=Strict` cookie ([`meseta_acl::TOKEN_COOKIE`]) that the master's access
//! edge reads as that header. `SameSite=Strict` keeps other sites' forms from acting with it.
//! The form checks the token with one public read made with it before setting the cookie.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use crate::pages::{layout, respond};
use crate::Ui;

/// `GET /ui/login` parameters: where to go once signed in, and why the master asked.
#[derive(Deserialize, Default)]
pub(crate) struct LoginParams {
    #[serde(default)]
    next: String,
    #[serde(default)]
    reason: String,
}

/// The sign-in form.
#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

/// Only the UI's own pages are places to go back to (no open redirect).
fn next_page(next: &str) -> &str {
    let ok = (next == "/ui" || next.starts_with("/ui/"))
        && !next.starts_with("/ui/login")
        && !next.contains("//")
        && !next.contains('\\');
    if ok {
        next
    } else {
        "/ui"
    }
}

fn form(status: StatusCode, next: &str, message: &str) -> Response {
    respond(
        status,
        layout(
            "Sign in",
            "",
            html! {
                @if !message.is_empty() {
                    p.notice role="alert" { (message) }
                }
                p { "This cluster checks access: sign in with an ACL token (" code { "meseta acl token create" } ")." }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next_page(next));
                    label for="token" { "Token" }
                    input #token type="password" name="token" autocomplete="current-password" required;
                    button type="submit" { "Sign in" }
                }
            },
        ),
    )
}

/// `GET /ui/login`.
pub(crate) async fn page(Query(p): Query<LoginParams>) -> Response {
    let message = match p.reason.as_str() {
        "" | "a token is required" => String::new(),
        r => format!("The master refused the token: {r}."),
    };
    form(StatusCode::OK, &p.next, &message)
}

/// A token secret as a cookie value: printable ASCII without separators.
fn cookie_value(token: &str) -> Option<&str> {
    let t = token.trim();
    let ok = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'));
    ok.then_some(t)
}

/// `POST /ui/login`: checks the token, then sets the cookie and goes back.
pub(crate) async fn submit(State(ui): State<Ui>, Form(f): Form<LoginForm>) -> Response {
    let Some(token) = cookie_value(&f.token) else {
        return form(
            StatusCode::UNPROCESSABLE_ENTITY,
            &f.next,
            "A token is printable text without spaces, quotes, commas or semicolons.",
        );
    };
    let Ok(auth) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return form(StatusCode::UNPROCESSABLE_ENTITY, &f.next, "Not a token.");
    };
    let reader = ui.source.reader(Some(auth));
    if let Err(e) = reader.get("/v2/info").await {
        let status = match e.refusal() {
            Some(_) => StatusCode::UNAUTHORIZED,
            None => StatusCode::BAD_GATEWAY,
        };
        let message = match e.refusal() {
            Some(_) => {
                "The master does not know this token (unknown, revoked or expired).".to_string()
            }
            None => format!("The master did not answer: {e}"),
        };
        return form(status, &f.next, &message);
    }
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict",
        meseta_acl::TOKEN_COOKIE
    );
    match HeaderValue::from_str(&cookie) {
        Ok(c) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, c),
                (
                    header::LOCATION,
                    HeaderValue::from_str(next_page(&f.next))
                        .unwrap_or_else(|_| HeaderValue::from_static("/ui")),
                ),
            ],
        )
            .into_response(),
        Err(_) => form(StatusCode::UNPROCESSABLE_ENTITY, &f.next, "Not a token."),
    }
}

/// The `Set-Cookie` value that forgets the sign-in cookie.
const SIGNED_OUT: &str = "meseta_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";

/// `GET /ui/logout`: forgets the cookie.
pub(crate) async fn logout() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, HeaderValue::from_static(SIGNED_OUT)),
            (header::LOCATION, HeaderValue::from_static("/ui/login")),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ui_pages_are_places_to_go_back_to() {
        assert_eq!(
            next_page("/ui/services/team-a/web"),
            "/ui/services/team-a/web"
        );
        assert_eq!(next_page("/ui"), "/ui");
        assert_eq!(next_page("https://elsewhere.example/"), "/ui");
        assert_eq!(next_page("//elsewhere.example/ui/"), "/ui");
        assert_eq!(next_page("/ui//elsewhere.example"), "/ui");
        assert_eq!(next_page("/uix"), "/ui");
        assert_eq!(next_page("/ui/login?next=/ui"), "/ui");
        assert_eq!(next_page(""), "/ui");
    }

    #[test]
    fn signing_out_forgets_the_sign_in_cookie() {
        assert!(SIGNED_OUT.starts_with(&format!("{}=;", meseta_acl::TOKEN_COOKIE)));
    }

    #[test]
    fn cookie_values_carry_no_separators() {
        assert_eq!(cookie_value(" abc-123_x "), Some("abc-123_x"));
        assert_eq!(cookie_value("a;b"), None);
        assert_eq!(cookie_value("a b"), None);
        assert_eq!(cookie_value(""), None);
    }
}
