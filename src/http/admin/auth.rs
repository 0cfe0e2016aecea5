//! Sessions (seed 003): login (`POST /v1/auth/token`), and revoking JWTs,
//! one by its `jti` or every one of a user.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;

use super::prelude::*;
use crate::authz::Reach;
use crate::core::secret;
use crate::core::verify::{CredentialKind, DenyCode};
use crate::engine::{EngineError, now_us};
use crate::http::Shared;
use crate::http::{Peer, RequestId};

pub(super) fn routes(r: &mut Routes) {
    use Object::Sessions;
    r.open(Post, super::LOGIN_PATH, "Login", login);
    r.guarded(Delete, "/v1/auth/sessions/{id}", "RevokeSession", (Sessions, Verb::Delete), revoke_session);
    r.guarded(Delete, "/v1/users/{id}/sessions", "RevokeUserSessions", (Sessions, Verb::Delete), revoke_user_sessions);
}

/// `POST /v1/auth/token`: Basic credentials (or an API key as the username,
/// no password) exchanged for a JWT. Runs on the admin runtime like every
/// admin call (argon2 is slow on purpose), and is audited here by id.
async fn login(
    State(shared): State<Arc<Shared>>,
    Peer(peer): Peer,
    rid: Option<Extension<RequestId>>,
    headers: HeaderMap,
) -> Resp {
    let request_id = rid.map(|Extension(id)| id.as_str().to_owned()).unwrap_or_default();
    let bad = |msg: &str| error(StatusCode::BAD_REQUEST, "bad_request", msg);
    let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return bad("username and password not specified: send Authorization: Basic base64(username:password)");
    };
    let Some((scheme, encoded)) = auth.split_once(' ') else {
        return bad("malformed Authorization header");
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return bad("use Basic authentication to get a token");
    }
    let Some(decoded) =
        base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok().and_then(|b| String::from_utf8(b).ok())
    else {
        return bad("malformed Basic credentials: expected base64 of username:password");
    };
    let (username, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    if username.is_empty() {
        return bad("username is not specified");
    }
    let with_key = password.is_empty() && secret::parse(username).is_some();
    if password.is_empty() && !with_key {
        return bad("password is not specified");
    }
    let mut keys = vec![format!("ip:{}", peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()))];
    if !with_key {
        keys.push(format!("user:{username}"));
    }
    let now = now_us();
    if let Err(ms) = shared.admin.login.take(&keys, now) {
        let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many failed logins; retry later");
        super::guard::set_retry_after(&mut resp, ms);
        return resp;
    }
    let engine = shared.engine.clone();
    // Audited by id, never by name: the user a password login names, or the
    // key used as the username (a secret, never written down). A login that
    // names no known user or key is counted and sampled, not stored.
    let named: Option<(String, String)> = if with_key {
        secret::parse(username).and_then(|h| shared.audit.owner_of(&h))
    } else {
        shared.engine.index().usernames.get(username).and_then(|id| {
            let team = shared.engine.index().users.get(id.as_str())?.team.id.to_string();
            Some((team, format!("user:{}", id.as_str())))
        })
    };
    let (username, password) = (username.to_owned(), password.to_owned());
    let result = tokio::task::spawn_blocking(move || {
        if with_key { engine.login_with_key(&username, peer) } else { engine.login(&username, &password) }
    })
    .await;
    // The new token says who logged in: its signature and claims only, so
    // that reading it spends nothing (a token exchanged from a key is counted
    // as that key on every verification).
    let who = match &result {
        Ok(Ok(token)) => shared.engine.jwt().verify(token, now_us() / 1_000_000).ok().and_then(|c| {
            let team = shared.engine.index().users.get(c.sub.as_str())?.team.id.to_string();
            Some((team, format!("user:{}", c.sub)))
        }),
        _ => None,
    };
    let resp = match result {
        Ok(Ok(token)) => {
            shared.admin.login.undo(&keys, now);
            json_response(StatusCode::OK, &api::LoginResponse { token })
        }
        Ok(Err(EngineError::BadCredentials)) => {
            error(StatusCode::UNAUTHORIZED, "invalid_credentials", "username and/or password is invalid")
        }
        Ok(Err(e)) => engine_error(e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "login task failed"),
    };
    let Some((named_team, target)) = named else {
        let code = Some(DenyCode::NotFound);
        shared.audit.unattributed(&shared.metrics, crate::metrics::DenySource::Login, code, false, now_us());
        return resp;
    };
    let (team, actor) = who.unwrap_or_else(|| (named_team, "unknown".to_owned()));
    let event = crate::audit::AuditEvent {
        at: now_us(),
        team,
        actor,
        action: "Login".to_owned(),
        target,
        outcome: if resp.status().is_success() { "success" } else { "failure" }.to_owned(),
        detail: resp.status().as_u16().to_string(),
        request_id,
    };
    if let Err(e) = shared.audit.record(&event) {
        tracing::warn!(error = %e, "audit: cannot record a login");
    }
    resp
}

/// `DELETE /v1/auth/sessions/{jti}`: revokes one JWT. Anyone may revoke
/// the JWT they call with; another one needs a team-wide reach
/// (Administrator) or the admin token. A member's revocation applies to
/// its own team's JWTs only (a jti names no team); it is kept for the
/// longest lifetime a token may have.
async fn revoke_session(cx: Cx, Id(jti): Id) -> Result<Resp, Resp> {
    if let Some(u) = cx.member() {
        let own = u.kind == CredentialKind::Jwt && *u.credential_id == *jti;
        if !own && cx.reach() != Some(Reach::Team) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("a {} may revoke only the session it calls with", u.role),
            ));
        }
    }
    let s = cx.shared.engine.jwt();
    let s = s.settings();
    let exp = (now_us() / 1_000_000).saturating_add(s.max_lifetime_secs).saturating_add(s.leeway_secs);
    cx.shared.engine.revoke_jti(&jti, cx.team(), exp).map_err(engine_error)?;
    Ok(no_content())
}

/// `DELETE /v1/users/{id}/sessions`: revokes every JWT issued to the user.
async fn revoke_user_sessions(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.user_for(&id)?;
    cx.shared.engine.revoke_user_jwts(&id).map_err(engine_error)?;
    Ok(no_content())
}
