//! The server's one access policy, applied as a layer around every route it serves (its own,
//! the builtin actuator's and the faces'): [`classify`] says what a request needs from its
//! method and path alone, [`decide`] lets it through or refuses it (401 no or an unknown token,
//! 403 a token whose role does not allow it, or an emergency-stop change from another host
//! without `server.remote_emergency_stop`), and [`guard`] leaves the [`Caller`] on the request
//! for the handlers that record who did it. No handler checks tokens itself.
//!
//! Only `/healthz` and `/readyz` are open. Reads (the pages, `/v1` reads, `/metrics`,
//! assignment and weight) are open to loopback peers without a token unless
//! `server.reads_need_token` is set; any other peer needs a token whose role allows the route
//! ([`crate::tokens::Role::allows`]). A path the policy does not know needs a `read` token, and
//! a method other than GET or HEAD an admin one, so a new route is never open by accident.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::tokens::{Access, Caller, Denied, Tokens};

/// The emergency stop's path: changing it from another host needs `remote_emergency_stop`.
const EMERGENCY: &str = "/v1/emergency-stop";

/// What a request needs, from its method and path alone. Pure.
pub fn classify(method: &Method, path: &str) -> Access {
    if *method != Method::GET && *method != Method::HEAD {
        return Access::Admin;
    }
    match path {
        "/healthz" | "/readyz" => return Access::Open,
        "/metrics" => return Access::Metrics,
        _ => {}
    }
    let segments: Vec<&str> = path.split('/').collect();
    match segments[..] {
        ["", "v1", "rollouts", name, "assignment" | "weight"] if !name.is_empty() => {
            Access::Assignment
        }
        _ => Access::Read,
    }
}

/// The server settings the policy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `server.reads_need_token`.
    pub reads_need_token: bool,
    /// `server.remote_emergency_stop`.
    pub remote_emergency_stop: bool,
}

/// Why a request is refused: a status and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl From<Denied> for Refusal {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(message) => Refusal {
                status: StatusCode::UNAUTHORIZED,
                message,
            },
            Denied::Forbidden(message) => Refusal {
                status: StatusCode::FORBIDDEN,
                message,
            },
        }
    }
}

/// Let a request through (with its caller when it presented a token) or refuse it.
pub fn decide(
    method: &Method,
    path: &str,
    peer: Option<SocketAddr>,
    header: Option<&str>,
    settings: Settings,
    tokens: &Tokens,
) -> Result<Option<Caller>, Refusal> {
    let access = classify(method, path);
    let loopback = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
    let caller = match (access, header) {
        (Access::Open, _) => return Ok(None),
        (Access::Admin, header) => Some(tokens.authorize(header, access)?),
        (_, None) if loopback && !settings.reads_need_token => None,
        (_, header) => Some(tokens.authorize(header, access)?),
    };
    if access == Access::Admin && path == EMERGENCY && !loopback && !settings.remote_emergency_stop
    {
        let who = peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string());
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "emergency stop is accepted from loopback only (you are {who}); set \
                 server.remote_emergency_stop = true to allow other hosts"
            ),
        });
    }
    Ok(caller)
}

/// The layer around every route: [`decide`], then the [`Caller`] as a request extension.
pub async fn guard(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let settings = Settings {
        reads_need_token: shared.config.server.reads_need_token,
        remote_emergency_stop: shared.config.server.remote_emergency_stop,
    };
    let decided = authorization(req.headers()).and_then(|header| {
        decide(
            req.method(),
            req.uri().path(),
            peer,
            header,
            settings,
            &shared.tokens,
        )
    });
    match decided {
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Err(refusal) => refuse(refusal),
    }
}

fn authorization(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str().map_err(|_| Refusal {
                status: StatusCode::UNAUTHORIZED,
                message: "the Authorization header is not readable text".to_string(),
            })
        })
        .transpose()
}

/// A refusal as JSON `{"error": "..."}`, like every other API error, with the challenge on 401.
fn refuse(refusal: Refusal) -> Response {
    let body = serde_json::json!({ "error": refusal.message });
    let mut resp = (refusal.status, axum::Json(body)).into_response();
    if refusal.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"canaryd\""),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{hex, sha256};

    #[test]
    fn every_route_is_classified_and_unknown_ones_are_not_open() {
        let get = Method::GET;
        let cases = [
            (&get, "/healthz", Access::Open),
            (&get, "/readyz", Access::Open),
            (&Method::HEAD, "/healthz", Access::Open),
            (&get, "/metrics", Access::Metrics),
            (&get, "/v1/rollouts/web/assignment", Access::Assignment),
            (&get, "/v1/rollouts/web/weight", Access::Assignment),
            (&get, "/v1/rollouts//weight", Access::Read),
            (&get, "/v1/rollouts/web/weight/x", Access::Read),
            (&get, "/", Access::Read),
            (&get, "/rollouts/web", Access::Read),
            (&get, "/v1/rollouts", Access::Read),
            (&get, "/v1/rollouts/web/history", Access::Read),
            (&get, "/v1/emergency-stop", Access::Read),
            (&get, "/healthz/", Access::Read),
            (&get, "/metrics/../v1/rollouts", Access::Read),
            (&get, "/no/such/page", Access::Read),
            (&Method::POST, "/v1/rollouts/web/pause", Access::Admin),
            (&Method::POST, "/healthz", Access::Admin),
            (&Method::DELETE, "/v1/emergency-stop", Access::Admin),
            (&Method::PUT, "/metrics", Access::Admin),
        ];
        for (method, path, want) in cases {
            assert_eq!(classify(method, path), want, "{method} {path}");
        }
    }

    fn tokens(tag: &str) -> (Tokens, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("canaryd-access-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens");
        let line =
            |name: &str, role: &str| format!("{name} {role} {}\n", hex(&sha256(name.as_bytes())));
        let text = ["alice admin", "graf read", "shop app", "prom metrics"]
            .map(|l| {
                let (n, r) = l.split_once(' ').unwrap();
                line(n, r)
            })
            .concat();
        std::fs::write(&path, text).unwrap();
        (Tokens::load(Some(&path)).unwrap(), dir)
    }

    #[test]
    fn one_policy_answers_for_every_route_peer_and_role() {
        let (tokens, dir) = tokens("table");
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let open = Settings {
            reads_need_token: false,
            remote_emergency_stop: false,
        };
        let locked = Settings {
            reads_need_token: true,
            ..open
        };
        let get = Method::GET;
        let post = Method::POST;
        // (method, path, peer, token, settings, status: 200 = through)
        type Case<'a> = (
            &'a Method,
            &'a str,
            SocketAddr,
            Option<&'a str>,
            Settings,
            u16,
        );
        let cases: &[Case] = &[
            (&get, "/healthz", remote, None, locked, 200),
            (&get, "/readyz", remote, None, locked, 200),
            (&get, "/", local, None, open, 200),
            (&get, "/", local, None, locked, 401),
            (&get, "/", remote, None, open, 401),
            (&get, "/metrics", remote, None, open, 401),
            (&get, "/metrics", local, None, locked, 401),
            (&get, "/metrics", remote, Some("prom"), locked, 200),
            (&get, "/metrics", remote, Some("graf"), locked, 200),
            (&get, "/metrics", remote, Some("shop"), locked, 403),
            (&get, "/v1/rollouts/web/assignment", remote, None, open, 401),
            (
                &get,
                "/v1/rollouts/web/assignment",
                remote,
                Some("shop"),
                locked,
                200,
            ),
            (
                &get,
                "/v1/rollouts/web/weight",
                remote,
                Some("shop"),
                locked,
                200,
            ),
            (
                &get,
                "/v1/rollouts/web/weight",
                remote,
                Some("prom"),
                locked,
                403,
            ),
            (&get, "/v1/rollouts/web", remote, Some("shop"), locked, 403),
            (&get, "/rollouts/web", remote, Some("prom"), locked, 403),
            (&get, "/rollouts/web", remote, Some("graf"), locked, 200),
            (&get, "/v1/rollouts", local, Some("nobody"), open, 401),
            (&post, "/v1/rollouts/web/pause", local, None, open, 401),
            (
                &post,
                "/v1/rollouts/web/pause",
                local,
                Some("graf"),
                open,
                403,
            ),
            (
                &post,
                "/v1/rollouts/web/pause",
                remote,
                Some("alice"),
                locked,
                200,
            ),
            (
                &post,
                "/v1/emergency-stop",
                remote,
                Some("alice"),
                open,
                403,
            ),
            (&post, "/v1/emergency-stop", local, Some("alice"), open, 200),
        ];
        for &(method, path, peer, token, settings, want) in cases {
            let header = token.map(|t| format!("Bearer {t}"));
            let got = decide(
                method,
                path,
                Some(peer),
                header.as_deref(),
                settings,
                &tokens,
            )
            .map_or_else(|r| r.status.as_u16(), |_| 200);
            assert_eq!(got, want, "{method} {path} from {peer} with {token:?}");
        }
        // No peer address known: treated as another host, never as loopback.
        let none = decide(&get, "/", None, None, open, &tokens).unwrap_err();
        assert_eq!(none.status, StatusCode::UNAUTHORIZED);
        // The caller is known to the handlers that record who did it.
        let caller = decide(
            &post,
            "/v1/rollouts/web/pause",
            Some(local),
            Some("Bearer alice"),
            open,
            &tokens,
        )
        .unwrap()
        .unwrap();
        assert_eq!(caller.name, "alice");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
