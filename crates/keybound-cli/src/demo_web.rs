//! `keybound serve` development mode: `/demo`, the authorization code flow in a browser. The
//! server plays the client application too (with the demo DPoP key in the data directory): it
//! pushes the request (PAR, with a DPoP proof), the person signs in and consents, and the
//! callback exchanges the code, calls the demo API with a fresh proof, then tries the same
//! token as a thief would (as a bearer token) and shows the refusal. Protocol work is in
//! keybound-client.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use keybound_client::{AuthorizationRequest, ClientAuth, DpopClient, IssuerMetadata};

const CLIENT_ID: &str = "demo-public";
/// Pending sign-ins kept at most (oldest dropped first).
const MAX_PENDING: usize = 256;

pub(crate) struct DemoWeb {
    issuer: String,
    client: DpopClient,
    pending: Mutex<Vec<AuthorizationRequest>>,
}

impl std::fmt::Debug for DemoWeb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoWeb")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The `/demo` routes for `issuer`, acting as the `demo-public` client with `client`.
pub(crate) fn routes(issuer: &str, client: DpopClient) -> axum::Router {
    let state = Arc::new(DemoWeb {
        issuer: issuer.to_owned(),
        client,
        pending: Mutex::new(Vec::new()),
    });
    axum::Router::new()
        .route("/demo", axum::routing::get(home))
        .route("/demo/start", axum::routing::get(start))
        .route("/demo/callback", axum::routing::get(callback))
        .with_state(state)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>keybound demo</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#1d2433}}\
         code,pre{{background:#eef;padding:.1rem .3rem;overflow-wrap:anywhere;white-space:pre-wrap}}\
         .ok{{color:#15803d;font-weight:600}}.no{{color:#b91c1c;font-weight:600}}\
         a.button{{display:inline-block;padding:.6rem 1.2rem;background:#1d4ed8;color:#fff;border-radius:.3rem;text-decoration:none}}</style>\
         </head><body><main>{body}</main></body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn home() -> Response {
    page(
        StatusCode::OK,
        "<h1>keybound: the authorization code flow, sender-constrained</h1>\
         <p>This page is a client application. Signing in sends you to the authorization server's \
         sign-in and consent pages; the code that comes back is bound to the application's DPoP key \
         (<code>dpop_jkt</code>, by a DPoP proof on the pushed request), so only that key can redeem it.</p>\
         <p><a class=\"button\" href=\"/demo/start\">Sign in as alice</a></p>\
         <p>The password is printed by <code>keybound serve</code> at start-up.</p>",
    )
}

async fn metadata(demo: &DemoWeb) -> Result<IssuerMetadata, Response> {
    demo.client.discover(&demo.issuer).await.map_err(|e| {
        page(
            StatusCode::BAD_GATEWAY,
            &format!(
                "<p class=\"no\">discovery failed: {}</p>",
                escape(&e.to_string())
            ),
        )
    })
}

async fn start(State(demo): State<Arc<DemoWeb>>) -> Response {
    let issuer = match metadata(&demo).await {
        Ok(m) => m,
        Err(page) => return page,
    };
    let redirect = format!("{}/demo/callback", demo.issuer);
    let auth = ClientAuth::Public {
        client_id: CLIENT_ID.into(),
    };
    let pushed = async {
        let request = demo
            .client
            .authorization_request(CLIENT_ID, &redirect)?
            .scope("read");
        let pushed = demo
            .client
            .push_authorization_request(&issuer, &auth, &request)
            .await?;
        Ok::<_, keybound_client::ClientError>((request, pushed.authorization_url(&issuer)?))
    };
    match pushed.await {
        Ok((request, url)) => {
            if let Ok(mut pending) = demo.pending.lock() {
                if pending.len() >= MAX_PENDING {
                    pending.remove(0);
                }
                pending.push(request);
            }
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(url.as_str()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => page(
            StatusCode::BAD_GATEWAY,
            &format!(
                "<p class=\"no\">the pushed request failed: {}</p>",
                escape(&e.to_string())
            ),
        ),
    }
}

async fn callback(State(demo): State<Arc<DemoWeb>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request = params.get("state").and_then(|st| {
        let mut pending = demo.pending.lock().ok()?;
        let at = pending.iter().position(|r| r.state() == st)?;
        Some(pending.remove(at))
    });
    let Some(request) = request else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p class=\"no\">Unknown or already used sign-in (state). <a href=\"/demo\">Start again</a>.</p>",
        );
    };
    let issuer = match metadata(&demo).await {
        Ok(m) => m,
        Err(page) => return page,
    };
    let url = format!("{}/demo/callback?{query}", demo.issuer);
    let auth = ClientAuth::Public {
        client_id: CLIENT_ID.into(),
    };
    let outcome = async {
        let code = request.parse_callback(&issuer, &url)?;
        let token = demo
            .client
            .exchange_code(
                &issuer,
                &auth,
                &code,
                request.redirect_uri(),
                request.pkce(),
            )
            .await?;
        let api = format!("{}/api/whoami", demo.issuer);
        let answer = demo
            .client
            .call(reqwest::Method::GET, &api, &token.access_token, None)
            .await?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        let stolen = reqwest::Client::new()
            .get(&api)
            .bearer_auth(&token.access_token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_default();
        Ok::<_, keybound_client::ClientError>((token, status, body, stolen))
    };
    match outcome.await {
        Ok((token, status, body, stolen)) => {
            let mut html = String::from("<h1>Signed in</h1>");
            let _ = write!(
                html,
                "<p class=\"ok\">The code was exchanged with a DPoP proof: token_type {}, bound to jkt <code>{}</code>.</p>\
                 <p>The demo API answered {} with a fresh proof:</p><pre>{}</pre>\
                 <p>The same token sent by a thief without the key (as a bearer token): <span class=\"{}\">{}</span></p>\
                 <p><a href=\"/demo\">Again</a></p>",
                escape(&token.token_type),
                escape(demo.client.thumbprint().as_str()),
                status.as_u16(),
                escape(&body),
                if stolen == 401 { "ok" } else { "no" },
                if stolen == 401 {
                    "401, refused".to_owned()
                } else {
                    format!("{stolen}, NOT refused")
                },
            );
            page(StatusCode::OK, &html)
        }
        Err(e) => page(
            StatusCode::BAD_GATEWAY,
            &format!(
                "<p class=\"no\">{}</p><p><a href=\"/demo\">Start again</a></p>",
                escape(&e.to_string())
            ),
        ),
    }
}
