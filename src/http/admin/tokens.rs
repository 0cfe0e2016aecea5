//! Access tokens (seed 004): `/v1/access-tokens`, the caller's own.

use super::opt_ts;
use super::prelude::*;
use super::ts;
use crate::core::model::{AccessToken, Millis};
use crate::core::verify::CredentialKind;

pub(super) fn routes(r: &mut Routes) {
    use Object::Tokens;
    r.guarded(Get, "/v1/access-tokens", "ListTokens", (Tokens, Verb::Read), list);
    r.guarded(Post, "/v1/access-tokens", "CreateToken", (Tokens, Verb::Create), create);
    r.guarded(Delete, "/v1/access-tokens", "RevokeAllTokens", (Tokens, Verb::Delete), revoke_all);
    r.guarded(Get, "/v1/access-tokens/{id}", "GetToken", (Tokens, Verb::Read), get);
    r.guarded(Delete, "/v1/access-tokens/{id}", "RevokeToken", (Tokens, Verb::Delete), revoke);
}

async fn list(cx: Cx, Query(q): Query<api::TokenListQuery>) -> Result<Resp, Resp> {
    let user = &*cx.caller_user()?.user;
    let include_revoked = q.include_revoked;
    let limit = q.limit.map_or(50, |l| l as usize);
    let token_type = q.token_type.as_deref().filter(|t| !t.is_empty());
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(at, id)| Some((at.parse::<u64>().ok()?, id.to_owned())))
                .ok_or_else(|| validation(&["query", "cursor"], "not a cursor this API returned", "value_error"))?,
        ),
    };
    let tokens: Vec<(AccessToken, Millis)> = cx
        .shared
        .engine
        .tokens(user)
        .into_iter()
        .filter(|(t, _)| include_revoked || t.revoked_at.is_none())
        .filter(|(t, _)| token_type.is_none_or(|ty| t.token_type == ty))
        .collect();
    // Tokens are in (createdAt, id) order; the cursor is the last position seen.
    let start = cursor
        .map_or(0, |(at, id)| tokens.partition_point(|(t, _)| (t.created_at, t.id.as_str()) <= (at, id.as_str())));
    let end = (start + limit).min(tokens.len());
    let page = &tokens[start..end];
    let next = (end < tokens.len()).then(|| page.last().map(|(t, _)| format!("{}.{}", t.created_at, t.id))).flatten();
    let items: Vec<api::AccessToken> = page.iter().map(|(t, used)| token_body(t, *used)).collect();
    Ok(json_response(StatusCode::OK, &api::TokenPage { items, next_cursor: next }))
}

async fn create(cx: Cx, mut b: Fields) -> Result<Resp, Resp> {
    b.only(&["name", "expiresInDays", "tokenType"])?;
    let name = b.required_str("name")?;
    let days = b.opt_u32("expiresInDays")?.flatten();
    let token_type = b.opt_str("tokenType")?.flatten().unwrap_or_else(|| "personal".to_owned());
    if name.is_empty() || name.chars().count() > 255 {
        return Err(validation(&["body", "name"], "must be 1 to 255 characters", "string_length"));
    }
    let me = cx.caller_user()?;
    // An access token acts with its user's whole role: only a credential
    // holding that whole role may make one.
    let lacks = me.role.grant().excess_over(&me.grant);
    if !lacks.is_empty() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "exceeds_grant",
            &format!(
                "an access token carries the whole {} role; this credential's grant lacks: {}",
                me.role,
                lacks.join(", ")
            ),
        ));
    }
    let user = &*me.user;
    let (token, plaintext) = cx.shared.engine.create_token(user, &name, &token_type, days).map_err(engine_error)?;
    Ok(json_response(StatusCode::CREATED, &api::CreatedToken { plaintext, token: token_body(&token, 0) }))
}

async fn revoke_all(cx: Cx, Query(q): Query<api::RevokeAllQuery>) -> Result<Resp, Resp> {
    let exclude = q.exclude_current;
    let me = cx.caller_user()?;
    let user = &*me.user;
    let keep = (me.kind == CredentialKind::AccessToken && exclude).then_some(&*me.credential_id);
    let n = cx.shared.engine.revoke_all_tokens(user, keep).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &api::RevokedCount { revoked_count: n as u64 }))
}

impl Cx {
    fn own_token(&self, id: &str) -> Result<(AccessToken, Millis), Resp> {
        let user = &*self.caller_user()?.user;
        match self.shared.engine.token(id) {
            Ok((t, used)) if t.user_id == user => Ok((t, used)),
            Ok(_) => Err(not_found("token")),
            Err(e) => Err(engine_error(e)),
        }
    }
}

async fn get(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    let (t, used) = cx.own_token(&id)?;
    Ok(json_response(StatusCode::OK, &token_body(&t, used)))
}

async fn revoke(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.own_token(&id)?;
    cx.shared.engine.revoke_token(&id).map_err(engine_error)?;
    Ok(no_content())
}

fn token_body(t: &AccessToken, last_used: Millis) -> api::AccessToken {
    api::AccessToken {
        created_at: ts(t.created_at),
        expires_at: opt_ts(t.expires_at),
        id: t.id.clone(),
        last_used_at: opt_ts(Some(last_used)),
        name: t.name.clone(),
        revoked_at: opt_ts(t.revoked_at),
        token_prefix: t.token_prefix.clone(),
        token_type: t.token_type.clone(),
    }
}
