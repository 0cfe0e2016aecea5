//! The audit log (`GET /v1/logs`): a team's admin calls and denied verifications.

use super::prelude::*;
use crate::core::model::rfc3339;

pub(super) fn routes(r: &mut Routes) {
    r.guarded(Get, "/v1/logs", "ListLogs", (Object::Logs, Verb::Read), list);
}

async fn list(cx: Cx, Query(q): Query<api::LogQuery>) -> Result<Resp, Resp> {
    let team = cx.target_team(q.team_id.clone(), "query")?;
    cx.authorize(Cx::of_team(&team))?;
    let since_ms = q.since.unwrap_or(0);
    let until_ms = q.until.unwrap_or(u64::MAX / 1000);
    let limit = q.limit.map_or(50, |l| l as usize);
    let cursor = q.cursor.as_ref().filter(|c| !c.is_empty());
    // A cursor is `<16 hex>/<8 hex>`, as this route returns them.
    if let Some(c) = cursor {
        let well_formed = c.split_once('/').is_some_and(|(t, n)| {
            t.len() == 16 && n.len() == 8 && t.bytes().chain(n.bytes()).all(|b| b.is_ascii_hexdigit())
        });
        if !well_formed {
            return Err(validation(&["query", "cursor"], "not a cursor this API returned", "value_error"));
        }
    }
    fn nonempty(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    let query = crate::audit::Query {
        team: &team,
        action: nonempty(&q.action),
        outcome: nonempty(&q.outcome),
        since: since_ms.saturating_mul(1000),
        until: until_ms.saturating_mul(1000).saturating_add(999),
        limit,
        cursor: cursor.map(String::as_str),
    };
    let (events, more) = cx.shared.audit.query(&query).map_err(|e| {
        tracing::error!(error = %e, "audit: query failed");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the daemon's log")
    })?;
    let next = more.then(|| events.last().map(|(id, _)| id.clone())).flatten();
    let items: Vec<api::AuditEvent> = events
        .into_iter()
        .map(|(id, e)| api::AuditEvent {
            action: e.action,
            actor: e.actor,
            at: rfc3339(e.at / 1000),
            at_ms: e.at / 1000,
            detail: e.detail,
            id,
            outcome: e.outcome,
            request_id: (!e.request_id.is_empty()).then_some(e.request_id),
            target: e.target,
            team_id: e.team,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &api::LogPage { items, next_cursor: next }))
}
