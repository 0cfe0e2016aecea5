//! Teams: `/v1/teams` (the admin token creates, changes and deletes them; a
//! team's member sees its own).

use super::extract::{links, paging};
use super::prelude::*;
use super::ts;
use crate::core::model::{Team, Tier};
use crate::engine::EngineError;

pub(super) fn routes(r: &mut Routes) {
    use Object::Teams;
    r.guarded(Post, "/v1/teams", "CreateTeam", (Teams, Verb::Create), create);
    r.guarded(Get, "/v1/teams", "ListTeams", (Teams, Verb::Read), list);
    r.guarded(Get, "/v1/teams/{id}", "GetTeam", (Teams, Verb::Read), get);
    r.guarded(Patch, "/v1/teams/{id}", "UpdateTeam", (Teams, Verb::Update), update);
    r.guarded(Delete, "/v1/teams/{id}", "DeleteTeam", (Teams, Verb::Delete), delete);
    r.guarded(
        Post,
        "/v1/teams/{id}/documents/release",
        "ReleaseDocuments",
        (Object::Documents, Verb::Delete),
        release_documents,
    );
}

async fn create(cx: Cx, mut b: Fields) -> Result<Resp, Resp> {
    cx.authorize(cx.own_team())?;
    b.only(&["name", "tier"])?;
    let name = b.required_str("name")?;
    let tier = b.opt_str("tier")?.flatten().map_or(Ok(Tier::Free), |t| parse_tier(&t))?;
    let team = cx.shared.engine.create_team(&name, tier).map_err(engine_error)?;
    Ok(json_response(StatusCode::CREATED, &team_body(&cx, &team)))
}

async fn list(cx: Cx, Query(q): Query<api::PageQuery>) -> Result<Resp, Resp> {
    let (limit, offset, cursor) = paging(q.limit, q.offset, q.starting_after.as_deref(), q.ending_before.as_deref())?;
    let engine = &cx.shared.engine;
    let page = match cx.team() {
        None => engine.teams_page(cursor, offset, limit).map_err(engine_error)?,
        // A team's member sees only its own team: a listing of one.
        Some(own) => {
            let mine = match engine.team(own) {
                Ok(_) => std::collections::BTreeSet::from([own.to_owned()]),
                Err(EngineError::NotFound(_)) => std::collections::BTreeSet::new(),
                Err(e) => return Err(engine_error(e)),
            };
            let page = crate::engine::page_of(&mine, cursor, offset, limit);
            let teams = page.items.iter().filter_map(|id| engine.team(id).ok()).collect();
            page.map(teams)
        }
    };
    let data: Vec<api::Team> = page.items.iter().map(|t| team_body(&cx, t)).collect();
    let (next_url, previous_url) = links(&format!("/v1/teams?limit={limit}"), &page, |t| &t.id);
    Ok(json_response(
        StatusCode::OK,
        &api::TeamList { count: data.len() as u64, data, next_url, previous_url, total: page.total as u64 },
    ))
}

async fn get(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    let team = cx.shared.engine.team(&id).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &team_body(&cx, &team)))
}

async fn update(cx: Cx, Id(id): Id, mut b: Fields) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    b.only(&["tier", "force"])?;
    let tier = parse_tier(&b.required_str("tier")?)?;
    // A downgrade below what the team holds is refused unless forced.
    let force = b.opt_bool("force")?.flatten().unwrap_or(false);
    let team = cx.shared.engine.set_team_tier(&id, tier, force).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &team_body(&cx, &team)))
}

async fn delete(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    cx.shared.engine.delete_team(&id).map_err(engine_error)?;
    Ok(no_content())
}

/// Gives documents of the team's quota back, as the socket's QuotaRelease:
/// for a service that deleted documents and holds an HTTP credential.
async fn release_documents(cx: Cx, Id(id): Id, mut b: Fields) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    b.only(&["amount"])?;
    let amount =
        b.opt_u32("amount")?.flatten().ok_or_else(|| validation(&["body", "amount"], "field required", "missing"))?;
    if amount == 0 {
        return Err(validation(&["body", "amount"], "must be at least 1", "value_error"));
    }
    let engine = &cx.shared.engine;
    let used = engine.release_quota(&id, u64::from(amount)).map_err(engine_error)?;
    let limit = engine.team_standing(&id).map_err(engine_error)?.limits.documents.get();
    Ok(json_response(StatusCode::OK, &api::DocumentsUsage { used, limit }))
}

fn parse_tier(s: &str) -> Result<Tier, Resp> {
    s.parse().map_err(|e: String| validation(&["body", "tier"], &e, "enum"))
}

fn team_body(cx: &Cx, t: &Team) -> api::Team {
    // A team deleted meanwhile has no entry: it shows its tier's limits, no use.
    let standing = cx.shared.engine.team_standing(&t.id).unwrap_or(crate::engine::TeamStanding {
        limits: cx.shared.engine.tiers()[t.tier.index()],
        members: 0,
        documents: 0,
        requests_this_minute: None,
    });
    let l = standing.limits;
    api::Team {
        limits: api::TeamLimits {
            requests_per_minute: l.requests_per_minute.get(),
            members: l.members.get(),
            documents: l.documents.get(),
            log_retention_days: l.log_retention_days.get(),
        },
        usage: api::TeamUsage {
            members: standing.members,
            documents: standing.documents,
            requests_this_minute: standing.requests_this_minute,
        },
        created_at: ts(t.created_at),
        id: t.id.clone(),
        name: t.name.clone(),
        tier: t.tier.as_str().to_owned(),
        updated_at: ts(t.updated_at),
    }
}
