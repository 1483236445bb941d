//! From an HTTP request to an authorization decision: where the token comes from, and how a
//! refusal looks on the wire.

use std::net::SocketAddr;

use axum::http::header::{AUTHORIZATION, COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use tandem_core::{AuthError, Credentials};

/// Gathers a request's credentials. The token is taken from, in order: the `token` query
/// parameter (what y-websocket's `params` and browsers' WebSocket URLs can carry),
/// `Authorization: Bearer`, and the cookie named `token_cookie`.
pub(crate) fn credentials(
    parts: &Parts,
    remote_addr: Option<SocketAddr>,
    token_cookie: Option<&str>,
) -> Credentials {
    let token = parts
        .uri
        .query()
        .and_then(query_token)
        .or_else(|| bearer_token(parts))
        .or_else(|| token_cookie.and_then(|name| cookie(parts, name)));
    Credentials {
        token,
        headers: parts.headers.clone(),
        remote_addr,
    }
}

fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        let value = value.replace('+', " ");
        percent_decode_str(&value)
            .decode_utf8()
            .ok()
            .map(|token| token.into_owned())
    })
}

fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_owned())
        })
}

/// The response to a refused request: 401 with `WWW-Authenticate: Bearer` when the credentials
/// prove nothing, 403 when they do not cover what was asked. The body says why.
pub(crate) fn refusal(error: &AuthError) -> Response {
    match error {
        AuthError::Unauthenticated(reason) => (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
            reason.clone(),
        )
            .into_response(),
        AuthError::Forbidden(reason) => (StatusCode::FORBIDDEN, reason.clone()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_token_comes_from_query_header_or_cookie() {
        let query = parts("/ws/a?x=1&token=abc%2Edef", &[]);
        assert_eq!(
            credentials(&query, None, None).token.as_deref(),
            Some("abc.def")
        );
        let header = parts("/ws/a", &[("authorization", "Bearer  xyz ")]);
        assert_eq!(
            credentials(&header, None, None).token.as_deref(),
            Some("xyz")
        );
        let cookie = parts("/ws/a", &[("cookie", "a=1; tandem=\"c00k1e\"; b=2")]);
        assert_eq!(
            credentials(&cookie, None, Some("tandem")).token.as_deref(),
            Some("c00k1e")
        );
        assert_eq!(credentials(&cookie, None, None).token, None);
        let basic = parts("/ws/a", &[("authorization", "Basic eHl6")]);
        assert_eq!(credentials(&basic, None, None).token, None);
    }
}
