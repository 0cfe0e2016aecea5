//! Users: `/v1/users` (a team's accounts; seed 000's roles and statuses).

use super::extract::{links, paging};
use super::prelude::*;
use super::ts;
use crate::core::model::{Role, User, UserStatus};

pub(super) fn routes(r: &mut Routes) {
    use Object::Users;
    r.guarded(Post, "/v1/users", "CreateUser", (Users, Verb::Create), create);
    r.guarded(Get, "/v1/users", "ListUsers", (Users, Verb::Read), list);
    r.guarded(Get, "/v1/users/{id}", "GetUser", (Users, Verb::Read), get);
    r.guarded(Patch, "/v1/users/{id}", "UpdateUser", (Users, Verb::Update), update);
    r.guarded(Delete, "/v1/users/{id}", "DeleteUser", (Users, Verb::Delete), delete);
}

async fn create(cx: Cx, mut b: Fields) -> Result<Resp, Resp> {
    b.only(&["teamId", "username", "password", "role", "status"])?;
    let team = cx.target_team(b.opt_str("teamId")?.flatten(), "body")?;
    cx.authorize(Cx::of_team(&team))?;
    let username = b.required_str("username")?;
    let password = b.required_str("password")?;
    let role = parse_role(&b.required_str("role")?)?;
    let status = b.opt_str("status")?.flatten().map_or(Ok(UserStatus::Enabled), |s| parse_status(&s))?;
    if status == UserStatus::Deleted {
        return Err(validation(&["body", "status"], "a new user cannot be Deleted", "value_error"));
    }
    cx.may_grant_role(role)?;
    cx.may_set_status(UserStatus::Pending, Some(status))?;
    let engine = cx.shared.engine.clone();
    let user = tokio::task::spawn_blocking(move || engine.create_user(&team, &username, &password, role, status))
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "user creation task failed"))?
        .map_err(engine_error)?;
    Ok(json_response(StatusCode::CREATED, &user_body(&user)))
}

async fn list(cx: Cx, Query(q): Query<api::UserListQuery>) -> Result<Resp, Resp> {
    let (limit, offset, cursor) = paging(q.limit, q.offset, q.starting_after.as_deref(), q.ending_before.as_deref())?;
    let team = cx.target_team(q.team_id.clone(), "query")?;
    cx.authorize(Cx::of_team(&team))?;
    if cx.team().is_none() {
        cx.shared.engine.team(&team).map_err(engine_error)?;
    }
    let page = cx.shared.engine.users_page(&team, cursor, offset, limit).map_err(engine_error)?;
    let data: Vec<api::User> = page.items.iter().map(user_body).collect();
    let mut base = format!("/v1/users?limit={limit}");
    if cx.team().is_none() {
        base.push_str(&format!("&teamId={team}"));
    }
    let (next_url, previous_url) = links(&base, &page, |u| &u.id);
    Ok(json_response(
        StatusCode::OK,
        &api::UserList { count: data.len() as u64, data, next_url, previous_url, total: page.total as u64 },
    ))
}

async fn get(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    let user = cx.user_for(&id)?;
    Ok(json_response(StatusCode::OK, &user_body(&user)))
}

async fn update(cx: Cx, Id(id): Id, mut b: Fields) -> Result<Resp, Resp> {
    b.only(&["role", "status", "password"])?;
    let role = b.opt_str("role")?.flatten().map(|r| parse_role(&r)).transpose()?;
    let status = b.opt_str("status")?.flatten().map(|s| parse_status(&s)).transpose()?;
    let password = b.opt_str("password")?.flatten();
    if status == Some(UserStatus::Deleted) {
        return Err(validation(&["body", "status"], "use DELETE /v1/users/{id} to delete a user", "value_error"));
    }
    let user = cx.user_for(&id)?;
    if let Some(me) = cx.member()
        && *me.user == *user.id
        && (role.is_some() || status.is_some())
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "on their own account a user may change only the password",
        ));
    }
    if let Some(r) = role {
        cx.may_grant_role(r)?;
    }
    cx.may_set_status(user.status, status)?;
    let engine = cx.shared.engine.clone();
    let user = tokio::task::spawn_blocking(move || engine.update_user(&id, role, status, password.as_deref()))
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "user update task failed"))?
        .map_err(engine_error)?;
    Ok(json_response(StatusCode::OK, &user_body(&user)))
}

async fn delete(cx: Cx, Id(id): Id) -> Result<Resp, Resp> {
    let user = cx.user_for(&id)?;
    if cx.member().is_some_and(|me| *me.user == *user.id) {
        return Err(error(StatusCode::FORBIDDEN, "forbidden", "a user may not delete their own account"));
    }
    let name = cx.shared.engine.delete_user(&id).map_err(engine_error)?;
    // Anonymize the audit log too (events written before ids replaced names).
    if let Err(e) = cx.shared.audit.scrub_user(&user.team_id, &id, &name) {
        tracing::warn!(error = %e, "audit: cannot scrub a deleted user's name");
    }
    Ok(no_content())
}

fn parse_role(s: &str) -> Result<Role, Resp> {
    [Role::Administrator, Role::Manager, Role::Author, Role::Reader]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| validation(&["body", "role"], "must be Administrator, Manager, Author or Reader", "enum"))
}

fn parse_status(s: &str) -> Result<UserStatus, Resp> {
    [UserStatus::Pending, UserStatus::Enabled, UserStatus::Disabled, UserStatus::Blocked, UserStatus::Deleted]
        .into_iter()
        .find(|st| status_str(*st).eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            validation(&["body", "status"], "must be Pending, Enabled, Disabled, Blocked or Deleted", "enum")
        })
}

fn status_str(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Pending => "Pending",
        UserStatus::Enabled => "Enabled",
        UserStatus::Disabled => "Disabled",
        UserStatus::Blocked => "Blocked",
        UserStatus::Deleted => "Deleted",
    }
}

fn user_body(u: &User) -> api::User {
    api::User {
        created_at: ts(u.created_at),
        id: u.id.clone(),
        role: u.role.as_str().to_owned(),
        status: status_str(u.status).to_owned(),
        team_id: u.team_id.clone(),
        updated_at: ts(u.updated_at),
        username: u.username.clone(),
    }
}
