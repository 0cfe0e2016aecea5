//! API keys (seeds 001 and 002): `/v1/keys`.

use super::extract::{ImportBody, entry_error, links, paging};
use super::guard::Caller;
use super::prelude::*;
use super::{opt_ts, ts};
use crate::authz::{Owner, Reach};
use crate::core::model::{ApiKey, Millis, RateLimit, Refill, Role, Usage};
use crate::engine::{EngineError, ImportKey, KeyUpdate, NewKey, now_us, remaining_at};

pub(super) fn routes(r: &mut Routes) {
    use Object::Keys;
    r.guarded(Get, "/v1/keys", "ListKeys", (Keys, Verb::Read), list);
    r.guarded(Post, "/v1/keys", "CreateKey", (Keys, Verb::Create), create);
    r.guarded(Post, "/v1/keys/import", "ImportKeys", (Keys, Verb::Create), import);
    r.guarded(Get, "/v1/keys/{id}", "GetKey", (Keys, Verb::Read), get);
    r.guarded(Patch, "/v1/keys/{id}", "UpdateKey", (Keys, Verb::Update), update);
    r.guarded(Delete, "/v1/keys/{id}", "DeleteKey", (Keys, Verb::Delete), delete);
}

/// The settings a key is created with and updated by (`POST` adds `userId`
/// and `prefix`, `PATCH` adds `enabled`).
const KEY_SETTINGS: &[&str] = &[
    "name",
    "expiresIn",
    "remaining",
    "refillAmount",
    "refillInterval",
    "rateLimitEnabled",
    "rateLimitTimeWindow",
    "rateLimitMax",
    "permissions",
    "metadata",
    "whitelistedIPs",
];

impl Cx {
    /// The owner of key `k`; an owner gone from the index ranks highest, so
    /// that only those who may act on anyone may act on the key.
    fn key_owner<'k>(&self, k: &'k ApiKey) -> Owner<'k> {
        let role = self.shared.engine.index().users.get(&k.user_id).map_or(Role::Administrator, |u| u.role());
        Owner { team: &k.team_id, user: Some((&k.user_id, role)) }
    }

    /// Key `id`, if the caller may do what the route does to it.
    fn key_for(&self, id: &str) -> Result<(ApiKey, Usage), Resp> {
        let (k, u) = match self.shared.engine.key(id) {
            Ok((k, u)) if self.sees(&k.team_id) => (k, u),
            Ok(_) => return Err(not_found("key")),
            Err(e) => return Err(engine_error(e)),
        };
        self.authorize(self.key_owner(&k))?;
        Ok((k, u))
    }
}

async fn list(cx: Cx, Query(q): Query<api::KeyListQuery>) -> Result<Resp, Resp> {
    let active = q.status.as_deref() != Some("inactive");
    let (limit, offset, cursor) = paging(q.limit, q.offset, q.starting_after.as_deref(), q.ending_before.as_deref())?;
    let team = cx.target_team(q.team_id.clone(), "query")?;
    // Who reaches only their own keys lists only those.
    let only = match (cx.member(), cx.reach()) {
        (Some(u), Some(Reach::Own)) => Some(u.user.clone()),
        _ => None,
    };
    let now = now_us() / 1000;
    // Cursors are key ids, and keys are in id order: a page after (or before)
    // an id is well defined however many keys were added or removed since.
    let page =
        cx.shared.engine.keys_page(&team, only.as_deref(), active, now, cursor, offset, limit).map_err(engine_error)?;
    let base = {
        let mut s = format!("/v1/keys?status={}&limit={limit}", if active { "active" } else { "inactive" });
        if cx.team().is_none() {
            s.push_str(&format!("&teamId={team}"));
        }
        s
    };
    let (next_url, previous_url) = links(&base, &page, |(k, _)| &k.id);
    let data: Vec<api::ApiKey> = page.items.iter().map(|(k, u)| key_body(k, u, None)).collect();
    Ok(json_response(
        StatusCode::OK,
        &api::KeyList { count: data.len() as u64, data, next_url, previous_url, status: 200, total: page.total as u64 },
    ))
}

async fn create(cx: Cx, mut b: Fields) -> Result<Resp, Resp> {
    b.only_with(KEY_SETTINGS, &["userId", "prefix"])?;
    let new = cx.new_key(&mut b)?;
    let (key, plaintext) = cx.shared.engine.create_key(new).map_err(engine_error)?;
    let (key, usage) = cx.shared.engine.key(&key.id).map_err(engine_error)?;
    Ok(json_response(StatusCode::CREATED, &key_body(&key, &usage, Some(&plaintext))))
}

/// `POST /v1/keys/import`: up to [`api::MAX_IMPORT_KEYS`] keys in one atomic,
/// durable write. Each entry is read and checked against the caller exactly
/// as `POST /v1/keys` reads its body ([`Cx::new_key`]); an entry may add
/// `hash` and `start` to adopt a key issued elsewhere. The first refused
/// entry is the answer, naming it (`keys[3].expiresIn`); nothing is written.
async fn import(cx: Cx, ImportBody(entries): ImportBody) -> Result<Resp, Resp> {
    let mut batch = Vec::with_capacity(entries.len());
    for (i, mut b) in entries.into_iter().enumerate() {
        let entry = b.only_with(KEY_SETTINGS, &["userId", "prefix", "hash", "start"]).and_then(|()| {
            let hash = b.opt_str("hash")?.flatten();
            let start = b.opt_str("start")?.flatten();
            Ok(ImportKey { key: cx.new_key(&mut b)?, hash, start })
        });
        match entry {
            Ok(e) => batch.push(e),
            Err(resp) => return Err(entry_error(i, resp).await),
        }
    }
    let imported = match cx.shared.engine.import_keys(batch) {
        Ok(v) => v,
        Err(EngineError::Entry { index, error }) => return Err(entry_error(index, engine_error(*error)).await),
        Err(e) => return Err(engine_error(e)),
    };
    let team_id =
        imported.first().map(|(k, _)| k.team_id.clone()).filter(|t| imported.iter().all(|(k, _)| &k.team_id == t));
    let keys: Vec<api::ImportedKey> = imported
        .into_iter()
        .map(|(k, secret)| api::ImportedKey { id: k.id, key: secret, start: k.start, user_id: k.user_id })
        .collect();
    Ok(json_response(StatusCode::CREATED, &api::KeyImportResult { count: keys.len() as u64, keys, team_id }))
}

impl Cx {
    /// A key creation read from `b`, the body of `POST /v1/keys` or an entry
    /// of an import, and checked against the caller: the owner (`userId`,
    /// the caller by default; required with the admin token) is a live user
    /// of a team the caller sees whom the role matrix lets it create keys
    /// for, and the permissions and expiry are within the caller's grant.
    fn new_key(&self, b: &mut Fields) -> Result<NewKey, Resp> {
        let user_id = match (b.opt_str("userId")?.flatten(), &self.caller) {
            (Some(u), _) => u,
            (None, Caller::User(u)) => u.user.to_string(),
            (None, Caller::Admin) => {
                return Err(validation(&["body", "userId"], "field required", "missing"));
            }
        };
        let refill = match (b.opt_u32("refillAmount")?.flatten(), b.opt_u64("refillInterval")?.flatten()) {
            (None, None) => None,
            (Some(amount), Some(interval_ms)) => Some(Refill { amount, interval_ms }),
            (Some(_), None) => {
                return Err(validation(&["body", "refillInterval"], "required with refillAmount", "missing"));
            }
            (None, Some(_)) => {
                return Err(validation(&["body", "refillAmount"], "required with refillInterval", "missing"));
            }
        };
        let rate_limit = rate_limit(
            b.opt_bool("rateLimitEnabled")?.flatten(),
            b.opt_u32("rateLimitMax")?.flatten(),
            b.opt_u64("rateLimitTimeWindow")?.flatten(),
            None,
        )?
        .flatten();
        let new = NewKey {
            name: b.opt_str("name")?.flatten(),
            prefix: b.opt_str("prefix")?.flatten(),
            expires_in_secs: b.opt_u64("expiresIn")?.flatten(),
            remaining: b.opt_u32("remaining")?.flatten(),
            refill,
            rate_limit,
            permissions: b.opt_permissions("permissions")?.flatten().unwrap_or_default(),
            metadata: b.opt_object("metadata")?.flatten().map(|m| m.to_string()),
            whitelisted_ips: b.opt_ips("whitelistedIPs")?.flatten().unwrap_or_default(),
            user_id,
        };
        self.user_for(&new.user_id)?;
        let expires_at = new
            .expires_in_secs
            .map(|s| crate::engine::expiry_after_secs(now_us() / 1000, s))
            .transpose()
            .map_err(engine_error)?;
        self.within_grant(Some(&new.permissions), Some(expires_at))?;
        Ok(new)
    }
}

async fn get(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    let (k, u) = cx.key_for(&id)?;
    Ok(json_response(StatusCode::OK, &key_body(&k, &u, None)))
}

async fn update(cx: Cx, Id(id): Id, mut b: Fields) -> Result<Resp, Resp> {
    b.only_with(KEY_SETTINGS, &["enabled"])?;
    let name = b.opt_str("name")?;
    let enabled = b.opt_bool("enabled")?.flatten();
    // Bounded here (the engine checks the absolute time again): no saturated,
    // far-future expiry can reach the store.
    let expires_at = match b.opt_u64("expiresIn")? {
        Some(Some(secs)) => Some(Some(crate::engine::expiry_after_secs(now_us() / 1000, secs).map_err(engine_error)?)),
        Some(None) => Some(None),
        None => None,
    };
    let remaining = b.opt_u32("remaining")?;
    let refill_amount = b.opt_u32("refillAmount")?;
    let refill_interval = b.opt_u64("refillInterval")?;
    let rl_enabled = b.opt_bool("rateLimitEnabled")?.flatten();
    let rl_max = b.opt_u32("rateLimitMax")?.flatten();
    let rl_window = b.opt_u64("rateLimitTimeWindow")?.flatten();
    let permissions = b.opt_permissions("permissions")?.flatten();
    let metadata = b.opt_object("metadata")?.flatten().map(|m| m.to_string());
    let whitelisted_ips = b.opt_ips("whitelistedIPs")?.map(Option::unwrap_or_default);
    let (old, _) = cx.key_for(&id)?;
    cx.within_grant(permissions.as_ref(), expires_at)?;
    let refill = match (refill_amount, refill_interval) {
        (None, None) => None,
        (Some(None), Some(None)) => Some(None),
        (a, i) => {
            let amount = a.flatten().or(old.refill.map(|r| r.amount));
            let interval_ms = i.flatten().or(old.refill.map(|r| r.interval_ms));
            match (amount, interval_ms) {
                (Some(amount), Some(interval_ms)) => Some(Some(Refill { amount, interval_ms })),
                (None, _) => {
                    return Err(validation(&["body", "refillAmount"], "required with refillInterval", "missing"));
                }
                (_, None) => {
                    return Err(validation(&["body", "refillInterval"], "required with refillAmount", "missing"));
                }
            }
        }
    };
    let up = KeyUpdate {
        name,
        enabled,
        expires_at,
        remaining,
        refill,
        rate_limit: rate_limit(rl_enabled, rl_max, rl_window, old.rate_limit)?,
        permissions,
        metadata,
        whitelisted_ips,
    };
    cx.shared.engine.update_key(&id, up).map_err(engine_error)?;
    let (k, u) = cx.shared.engine.key(&id).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &key_body(&k, &u, None)))
}

async fn delete(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.key_for(&id)?;
    cx.shared.engine.delete_key(&id).map_err(engine_error)?;
    Ok(no_content())
}

/// Folds the rate-limit fields of a request into the key's rate limit:
/// `None` = unchanged, `Some(None)` = off.
fn rate_limit(
    enabled: Option<bool>,
    max: Option<u32>,
    window: Option<u64>,
    old: Option<RateLimit>,
) -> Result<Option<Option<RateLimit>>, Resp> {
    if enabled == Some(false) {
        return Ok(Some(None));
    }
    if enabled.is_none() && max.is_none() && window.is_none() {
        return Ok(None);
    }
    let max = max.or(old.map(|r| r.max));
    let window_ms = window.or(old.map(|r| r.window_ms));
    match (max, window_ms) {
        (Some(max), Some(window_ms)) => Ok(Some(Some(RateLimit { max, window_ms }))),
        (None, _) => Err(validation(&["body", "rateLimitMax"], "required to enable rate limiting", "missing")),
        (_, None) => Err(validation(&["body", "rateLimitTimeWindow"], "required to enable rate limiting", "missing")),
    }
}

fn key_active(k: &ApiKey, now: Millis) -> bool {
    k.enabled && k.expires_at.is_none_or(|e| now < e)
}

fn key_body(k: &ApiKey, u: &Usage, secret: Option<&str>) -> api::ApiKey {
    let now = now_us() / 1000;
    // Checked: the anchor and interval are stored values (an overflow shows no time).
    let last_refill = k.refill.and_then(|r| {
        let period = crate::core::limits::period_of(r, u.anchor, now);
        (period > 0).then(|| r.interval_ms.checked_mul(u64::from(period)).and_then(|d| u.anchor.checked_add(d)))?
    });
    let metadata: Value = serde_json::from_str(&k.metadata).unwrap_or_else(|_| Value::Object(serde_json::Map::new()));
    api::ApiKey {
        company_id: k.team_id.clone(),
        created_at: ts(k.created_at),
        deleted_at: None,
        enabled: k.enabled,
        expires_at: opt_ts(k.expires_at),
        id: k.id.clone(),
        key: secret.map(str::to_owned),
        last_refill_at: opt_ts(last_refill),
        last_request: opt_ts(Some(u.last_used_at)),
        metadata,
        name: k.name.clone(),
        permissions: k.permissions.0.clone(),
        prefix: k.prefix.clone(),
        rate_limit_enabled: k.rate_limit.is_some(),
        rate_limit_max: k.rate_limit.map(|r| r.max),
        rate_limit_time_window: k.rate_limit.map(|r| r.window_ms),
        refill_amount: k.refill.map(|r| r.amount),
        refill_interval: k.refill.map(|r| r.interval_ms),
        remaining: remaining_at(k, u, now),
        request_count: u.request_count,
        start: k.start.clone(),
        status: if key_active(k, now) { "active" } else { "inactive" }.to_owned(),
        team_id: k.team_id.clone(),
        updated_at: ts(k.updated_at),
        user_id: k.user_id.clone(),
        whitelisted_ips: k.whitelisted_ips.clone(),
    }
}
