//! The pages a person sees at the authorization endpoint: sign in, consent, and errors.
//! Server-rendered HTML, no scripts, no build step; every value is escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2433}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:.5rem;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #8a94a6;border-radius:.3rem}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem;border-radius:.3rem;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#1d4ed8;margin-left:.5rem}.error{color:#b91c1c;font-weight:600}\
ul{padding-left:1.2rem}code{background:#eef;padding:0 .2rem}";

/// A complete page with the security headers every authorization page carries.
pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · keybound</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The sign-in page. `request` and `csrf` travel in hidden fields.
pub(crate) fn login(client_id: &str, request: &str, csrf: &str, error: Option<&str>) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let body = format!(
        "<h1>Sign in</h1><p>to continue to <strong>{client}</strong></p>{error}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape(client_id),
        request = escape(request),
        csrf = escape(csrf),
    );
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    page(status, "Sign in", &body)
}

/// The consent page: who asks for what, for which signed-in user.
pub(crate) fn consent(
    client_id: &str,
    subject: &str,
    scopes: &[&str],
    request: &str,
    csrf: &str,
) -> Response {
    let scopes = if scopes.is_empty() {
        "<li>no specific permissions</li>".to_owned()
    } else {
        scopes
            .iter()
            .map(|s| format!("<li><code>{}</code></li>", escape(s)))
            .collect()
    };
    let body = format!(
        "<h1>Allow {client}?</h1><p>Signed in as <strong>{subject}</strong>.</p>\
         <p><strong>{client}</strong> asks for:</p><ul>{scopes}</ul>\
         <p>Its tokens will be bound to a key only it holds.</p>\
         <form method=\"post\" action=\"/consent\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button>\
         </form>",
        client = escape(client_id),
        subject = escape(subject),
        request = escape(request),
        csrf = escape(csrf),
    );
    page(StatusCode::OK, &format!("Allow {client_id}"), &body)
}

/// A request that cannot be sent back to the client (unknown client, bad redirect URI, expired
/// form): explained to the person, never redirected.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>This sign-in request cannot continue</h1><p class=\"error\" role=\"alert\">{}</p>\
         <p>Go back to the application and start again.</p>",
        escape(message)
    );
    page(status, "Request refused", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
