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
}

async fn create(cx: Cx, mut b: Fields) -> Result<Resp, Resp> {
    cx.authorize(cx.own_team())?;
    b.only(&["name", "tier"])?;
    let name = b.required_str("name")?;
    let tier = b.opt_str("tier")?.flatten().map_or(Ok(Tier::Free), |t| parse_tier(&t))?;
    let team = cx.shared.engine.create_team(&name, tier).map_err(engine_error)?;
    Ok(json_response(StatusCode::CREATED, &team_body(&team)))
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
    let data: Vec<api::Team> = page.items.iter().map(team_body).collect();
    let (next_url, previous_url) = links(&format!("/v1/teams?limit={limit}"), &page, |t| &t.id);
    Ok(json_response(
        StatusCode::OK,
        &api::TeamList { count: data.len() as u64, data, next_url, previous_url, total: page.total as u64 },
    ))
}

async fn get(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    let team = cx.shared.engine.team(&id).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &team_body(&team)))
}

async fn update(cx: Cx, Id(id): Id, mut b: Fields) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    b.only(&["tier", "force"])?;
    let tier = parse_tier(&b.required_str("tier")?)?;
    // A downgrade below what the team holds is refused unless forced.
    let force = b.opt_bool("force")?.flatten().unwrap_or(false);
    let team = cx.shared.engine.set_team_tier(&id, tier, force).map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &team_body(&team)))
}

async fn delete(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    cx.authorize(Cx::of_team(&id))?;
    cx.shared.engine.delete_team(&id).map_err(engine_error)?;
    Ok(no_content())
}

fn parse_tier(s: &str) -> Result<Tier, Resp> {
    s.parse().map_err(|e: String| validation(&["body", "tier"], &e, "enum"))
}

fn team_body(t: &Team) -> api::Team {
    api::Team {
        created_at: ts(t.created_at),
        id: t.id.clone(),
        name: t.name.clone(),
        tier: t.tier.as_str().to_owned(),
        updated_at: ts(t.updated_at),
    }
}
