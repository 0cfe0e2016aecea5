//! The trust model against the real daemon: every admin route × every role ×
//! every credential kind × whose object it is, with the expected status
//! derived from `authz::MATRIX` (the table ARCHITECTURE.md shows), plus one
//! test per finding of the review that asked for it (issue 11).

use std::collections::HashMap;

use serde_json::{Value, json};
use tollgate::authz::{self, Object, Reach, Verb};
use tollgate::core::model::Role;

use crate::common;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon, basic, start_http};

const PW: &str = "correct horse battery";

struct D(HttpDaemon);

impl D {
    fn call(&self, method: &str, path: &str, cred: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {cred}");
        let text = body.map(|b| b.to_string());
        let r = common::http(self.0.addr, method, path, &[("Authorization", &auth)], text.as_deref());
        (r.status, r.json())
    }

    fn ok(&self, method: &str, path: &str, cred: &str, body: Option<Value>, want: u16) -> Value {
        let (status, body) = self.call(method, path, cred, body);
        assert_eq!(status, want, "{method} {path}: {body}");
        body
    }

    fn id(v: &Value) -> String {
        v["id"].as_str().or_else(|| v["token"]["id"].as_str()).expect("an id").to_owned()
    }

    fn team(&self, name: &str) -> String {
        Self::id(&self.ok("POST", "/v1/teams", ADMIN, Some(json!({"name": name, "tier": "Pro"})), 201))
    }

    fn user(&self, team: &str, name: &str, role: Role) -> String {
        let body = json!({"teamId": team, "username": name, "password": PW, "role": role.as_str()});
        Self::id(&self.ok("POST", "/v1/users", ADMIN, Some(body), 201))
    }

    fn login(&self, name: &str, pass: &str) -> String {
        let r = common::http(self.0.addr, "POST", "/v1/auth/token", &[("Authorization", &basic(name, pass))], None);
        assert_eq!(r.status, 200, "login {name}: {}", r.json());
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// A key of `user` with `perms`, made by the admin token: (id, secret).
    fn key(&self, user: &str, perms: Value) -> (String, String) {
        let k = self.ok("POST", "/v1/keys", ADMIN, Some(json!({"userId": user, "permissions": perms})), 201);
        (Self::id(&k), k["key"].as_str().unwrap().to_owned())
    }

    fn pat(&self, jwt: &str) -> (String, String) {
        let t = self.ok("POST", "/v1/access-tokens", jwt, Some(json!({"name": "t"})), 201);
        (Self::id(&t), t["plaintext"].as_str().unwrap().to_owned())
    }

    fn verify(&self, credential: &str) -> Value {
        let body = json!({"credential": credential}).to_string();
        common::http(self.0.addr, "POST", "/v1/verify", &[], Some(&body)).json()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    PasswordJwt,
    AccessToken,
    ApiKey,
    KeyJwt,
}

const KINDS: [Kind; 4] = [Kind::PasswordJwt, Kind::AccessToken, Kind::ApiKey, Kind::KeyJwt];

/// Whose object a call names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whose {
    /// The caller's own.
    Mine,
    /// A Reader's of the caller's team.
    TeamReader,
    /// An Administrator's of the caller's team.
    TeamAdmin,
    /// An object of another team.
    OtherTeam,
}

const WHOSE: [Whose; 4] = [Whose::Mine, Whose::TeamReader, Whose::TeamAdmin, Whose::OtherTeam];

/// A caller: `None` is the platform (the admin token).
#[derive(Clone, Copy, Debug)]
struct Caller {
    role: Option<Role>,
    kind: Kind,
}

/// The status a call should get, from the matrix and the rules beside it.
fn expected(method: &str, path: &str, object: Object, verb: Verb, c: Caller, whose: Whose) -> u16 {
    let success = match (method, path) {
        ("POST", "/v1/admin/reload") => 409, // no configuration file in this test
        ("POST", "/v1/teams/{id}/documents/release") => 200,
        ("POST", _) => 201,
        ("DELETE", "/v1/access-tokens") => 200,
        ("DELETE", _) => 204,
        _ => 200,
    };
    let Some(role) = c.role else {
        // The platform reaches everything; access tokens belong to a user.
        return if object == Object::Tokens { 400 } else { success };
    };
    // 1. A key-scoped credential holds the route's resource:action itself.
    if matches!(c.kind, Kind::ApiKey | Kind::KeyJwt) && !role.grant().allows(object.resource(), verb.action()) {
        return 403;
    }
    let reach = authz::reach(role, object, verb);
    let own_team = whose != Whose::OtherTeam;
    match (object, path) {
        (Object::Config, _) | (Object::Teams, "/v1/teams") if method == "POST" => 403,
        (Object::Teams, "/v1/teams") => 200,
        (Object::Tokens, p) if p.ends_with("{id}") => {
            if whose == Whose::Mine {
                success
            } else {
                404
            }
        }
        (Object::Tokens, _) => success,
        (Object::Sessions, "/v1/auth/sessions/{id}") => {
            let own = whose == Whose::Mine && matches!(c.kind, Kind::PasswordJwt | Kind::KeyJwt);
            if own || reach == Reach::Team { success } else { 403 }
        }
        _ if !own_team => 404,
        // Team-wide objects and lists.
        (_, "/v1/keys" | "/v1/logs") | (Object::Teams | Object::Documents, _) | (Object::Users, "/v1/users")
            if method == "GET" || object != Object::Keys =>
        {
            match reach {
                Reach::Team | Reach::Own if method == "GET" => success,
                Reach::Team => success,
                _ => 403,
            }
        }
        // Objects of an account (users, keys, sessions of a user).
        _ => {
            if object == Object::Users && verb == Verb::Delete && whose == Whose::Mine {
                return 403; // nobody deletes their own account
            }
            let owner_role = match whose {
                Whose::Mine => role,
                Whose::TeamReader => Role::Reader,
                _ => Role::Administrator,
            };
            let ok = match reach {
                Reach::Team => true,
                Reach::Ranked => whose == Whose::Mine || !owner_role.outranks(role),
                Reach::Own => whose == Whose::Mine,
                Reach::None | Reach::Platform => false,
            };
            if ok { success } else { 403 }
        }
    }
}

/// Everything the cells call on: two teams, a user of each role in the
/// first, an Administrator and a Reader of the second.
struct World {
    a: String,
    b: String,
    /// Team a's users by role.
    users: HashMap<&'static str, String>,
    /// A second Administrator and Reader of team a: the objects of "a
    /// Reader" or "an Administrator" that are not the caller's own.
    admin2: String,
    reader2: String,
    b_admin: String,
}

impl World {
    /// The username of user `id`, to log in as them.
    fn username(&self, id: &str) -> String {
        if *id == *self.b_admin {
            return "b-admin".to_owned();
        }
        if *id == *self.admin2 {
            return "a-admin2".to_owned();
        }
        if *id == *self.reader2 {
            return "a-reader2".to_owned();
        }
        let role = self.users.iter().find(|(_, u)| **u == *id).map(|(r, _)| *r).expect("a known user");
        format!("a-{role}")
    }
}

fn names(r: Role) -> &'static str {
    r.as_str()
}

#[test]
fn every_route_role_kind_and_owner() {
    let d = D(start_http(|_| {}));
    let a = d.team("a");
    let b = d.team("b");
    let mut users = HashMap::new();
    for r in Role::ALL {
        users.insert(names(r), d.user(&a, &format!("a-{}", r.as_str()), r));
    }
    let b_admin = d.user(&b, "b-admin", Role::Administrator);
    let admin2 = d.user(&a, "a-admin2", Role::Administrator);
    let reader2 = d.user(&a, "a-reader2", Role::Reader);
    let w = World { a, b, users, admin2, reader2, b_admin };
    let mut cells = 0;
    let mut failures = Vec::new();
    let mut callers: Vec<Caller> = vec![Caller { role: None, kind: Kind::PasswordJwt }];
    for r in Role::ALL {
        for k in KINDS {
            callers.push(Caller { role: Some(r), kind: k });
        }
    }
    for c in callers {
        for route in tollgate::http::admin::routes() {
            let Some((object, verb)) = route.authz else { continue };
            for whose in WHOSE {
                // A fresh credential for each cell: some cells revoke the
                // caller's own sessions or change its password.
                let (cred, own_jti) = credential(&d, &w, c);
                let Some((path, body)) = target(&d, &w, route.method, route.path, c, whose, own_jti.as_deref()) else {
                    continue;
                };
                let want = expected(route.method, route.path, object, verb, c, whose);
                let (got, answer) = d.call(route.method, &path, &cred, body);
                cells += 1;
                if got != want {
                    failures.push(format!(
                        "{} {} by {:?} {:?} on {whose:?}'s: got {got}, want {want}: {answer}",
                        route.method,
                        route.path,
                        c.role.map(Role::as_str).unwrap_or("admin token"),
                        c.kind
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells differ:\n{}", failures.len(), failures.join("\n"));
    assert!(cells > 1000, "{cells} cells");
}

/// A credential of `c`: (secret, its jti for a JWT).
fn credential(d: &D, w: &World, c: Caller) -> (String, Option<String>) {
    let Some(role) = c.role else { return (ADMIN.to_owned(), None) };
    let name = format!("a-{}", role.as_str());
    let user = &w.users[names(role)];
    let jwt = d.login(&name, PW);
    let jti = |t: &str| d.verify(t)["credentialId"].as_str().map(str::to_owned);
    match c.kind {
        Kind::PasswordJwt => {
            let j = jti(&jwt);
            (jwt, j)
        }
        Kind::AccessToken => (d.pat(&jwt).1, None),
        Kind::ApiKey => (d.key(user, json!({"*": ["*"]})).1, None),
        Kind::KeyJwt => {
            let key = d.key(user, json!({"*": ["*"]})).1;
            let t = d.login(&key, "");
            let j = jti(&t);
            (t, j)
        }
    }
}

/// The path and body of a cell; `None` when the route has no object of that
/// owner to name (e.g. creating a team is nobody's).
fn target(
    d: &D,
    w: &World,
    method: &str,
    path: &str,
    c: Caller,
    whose: Whose,
    own_jti: Option<&str>,
) -> Option<(String, Option<Value>)> {
    let me = c.role.map(|r| w.users[names(r)].clone());
    // The account whose object it is.
    let owner = match whose {
        Whose::Mine => me.clone().unwrap_or_else(|| w.users["Reader"].clone()),
        Whose::TeamReader => w.reader2.clone(),
        Whose::TeamAdmin => w.admin2.clone(),
        Whose::OtherTeam => w.b_admin.clone(),
    };
    let team = if whose == Whose::OtherTeam { &w.b } else { &w.a };
    let fresh_user = |tag: &str| {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let role = if whose == Whose::TeamAdmin { Role::Administrator } else { Role::Reader };
        d.user(team, &format!("{tag}-{n}"), role)
    };
    let unique = || format!("u{}", std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos());
    let with_id = |id: &str| path.replace("{id}", id);
    Some(match (method, path) {
        ("POST", "/v1/teams") => (path.to_owned(), Some(json!({"name": "new"}))),
        ("GET", "/v1/teams") => (path.to_owned(), None),
        ("GET" | "PATCH", "/v1/teams/{id}") => (with_id(team), (method == "PATCH").then(|| json!({"tier": "Pro"}))),
        ("POST", "/v1/teams/{id}/documents/release") => (with_id(team), Some(json!({"amount": 1}))),
        ("DELETE", "/v1/teams/{id}") => {
            // The platform really deletes: give it a team of its own.
            let t = if c.role.is_none() { d.team("doomed") } else { team.clone() };
            (with_id(&t), None)
        }
        ("POST", "/v1/users") => {
            (path.to_owned(), Some(json!({"teamId": team, "username": unique(), "password": PW, "role": "Reader"})))
        }
        ("GET", "/v1/users" | "/v1/keys" | "/v1/logs") => (format!("{path}?teamId={team}"), None),
        ("GET", "/v1/users/{id}") => (with_id(&owner), None),
        ("PATCH", "/v1/users/{id}") => {
            // On one's own account only the password; on others' a status.
            let body = if whose == Whose::Mine && me.is_some() {
                json!({"password": PW})
            } else {
                json!({"status": "Enabled"})
            };
            (with_id(&owner), Some(body))
        }
        ("DELETE", "/v1/users/{id}") => {
            let victim = if whose == Whose::Mine && me.is_some() { owner } else { fresh_user("victim") };
            (with_id(&victim), None)
        }
        ("DELETE", "/v1/users/{id}/sessions") => (with_id(&owner), None),
        ("POST", "/v1/keys") => (path.to_owned(), Some(json!({"userId": owner}))),
        // Each entry of an import is checked as a POST /v1/keys body is.
        ("POST", "/v1/keys/import") => (path.to_owned(), Some(json!({"keys": [{"userId": owner}]}))),
        ("GET" | "PATCH" | "DELETE", "/v1/keys/{id}") => {
            let (id, _) = d.key(&owner, json!({}));
            (with_id(&id), (method == "PATCH").then(|| json!({"name": "renamed"})))
        }
        ("GET" | "POST" | "DELETE", "/v1/access-tokens") => {
            (path.to_owned(), (method == "POST").then(|| json!({"name": "cell"})))
        }
        ("GET" | "DELETE", "/v1/access-tokens/{id}") => {
            // A token of the owner, made with the owner's own session.
            let (id, _) = d.pat(&d.login(&w.username(&owner), PW));
            (with_id(&id), None)
        }
        ("DELETE", "/v1/auth/sessions/{id}") => {
            let jti = match (whose, own_jti) {
                (Whose::Mine, Some(j)) => j.to_owned(),
                _ => {
                    let t = d.login(&w.username(&owner), PW);
                    d.verify(&t)["credentialId"].as_str().unwrap().to_owned()
                }
            };
            (with_id(&jti), None)
        }
        ("POST", "/v1/admin/reload") => (path.to_owned(), None),
        _ => panic!("no target for {method} {path}: add one"),
    })
}

// ---- the findings of issue 11, one test each ----

struct Team {
    d: D,
    team: String,
    alice: String,
    alice_jwt: String,
}

fn team_with_admin() -> Team {
    let d = D(start_http(|_| {}));
    let team = d.team("t");
    let alice = d.user(&team, "alice", Role::Administrator);
    let alice_jwt = d.login("alice", PW);
    Team { d, team, alice, alice_jwt }
}

#[test]
fn a_scoped_key_exchanged_for_a_jwt_stays_scoped_and_dies_with_the_key() {
    let Team { d, team, alice, .. } = team_with_admin();
    let (key_id, key) = d.key(&alice, json!({"docs": ["read"]}));
    assert_eq!(d.call("GET", "/v1/users", &key, None).0, 403);
    let jwt = d.login(&key, "");
    let v = d.verify(&jwt);
    assert_eq!(v["permissions"], json!({"docs": ["read"]}), "{v}");
    assert_eq!(v["permissions"], d.verify(&key)["permissions"]);
    let admin_user = json!({"teamId": team, "username": "mallory", "password": PW, "role": "Administrator"});
    assert_eq!(d.call("POST", "/v1/users", &jwt, Some(admin_user)).0, 403);
    assert_eq!(d.call("POST", "/v1/access-tokens", &jwt, Some(json!({"name": "x"}))).0, 403);
    // A key with no permissions at all cannot delete another key through a JWT.
    let (_, empty) = d.key(&alice, json!({}));
    let (other, _) = d.key(&alice, json!({}));
    let empty_jwt = d.login(&empty, "");
    assert_eq!(d.call("DELETE", &format!("/v1/keys/{other}"), &empty_jwt, None).0, 403);
    // Deleting (or disabling) the key ends the JWT.
    d.ok("DELETE", &format!("/v1/keys/{key_id}"), ADMIN, None, 204);
    assert_eq!(d.verify(&jwt)["code"], "REVOKED");
    let (k2_id, k2) = d.key(&alice, json!({"docs": ["read"]}));
    let jwt2 = d.login(&k2, "");
    d.ok("PATCH", &format!("/v1/keys/{k2_id}"), ADMIN, Some(json!({"enabled": false})), 200);
    assert_eq!(d.verify(&jwt2)["code"], "DISABLED");
}

#[test]
fn a_jwt_from_a_key_never_outlives_it() {
    let Team { d, alice, .. } = team_with_admin();
    let k = d.ok("POST", "/v1/keys", ADMIN, Some(json!({"userId": alice, "expiresIn": 60})), 201);
    let jwt = d.login(k["key"].as_str().unwrap(), "");
    let payload = jwt.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let key_expiry = humantime::parse_rfc3339(k["expiresAt"].as_str().unwrap()).unwrap();
    let key_expiry = key_expiry.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(claims["exp"].as_u64().unwrap() <= key_expiry, "{claims}");
    assert_eq!(claims["key"], k["id"]);
}

#[test]
fn keys_are_capped_by_their_creator() {
    let Team { d, team, .. } = team_with_admin();
    let author = d.user(&team, "author", Role::Author);
    let author_jwt = d.login("author", PW);
    let (status, body) = d.call("POST", "/v1/keys", &author_jwt, Some(json!({"permissions": {"*": ["*"]}})));
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("*:*"), "{body}");
    // What the Author may hold, she may give.
    let k = d.ok("POST", "/v1/keys", &author_jwt, Some(json!({"permissions": {"docs": ["read", "create"]}})), 201);
    let secret = k["key"].as_str().unwrap();
    // A key made for her with more (by the admin token) still verifies within her role.
    let (_, wide) = d.key(&author, json!({"*": ["*"]}));
    for (cred, what) in [(secret, "her key"), (wide.as_str(), "a *:* key of hers")] {
        let body = json!({"credential": cred, "permissions": {"docs": ["delete"]}}).to_string();
        let v = common::http(d.0.addr, "POST", "/v1/verify", &[], Some(&body)).json();
        assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS", "{what}: {v}");
    }
    // A key holding only keys:create mints nothing wider than that.
    let (_, minter) = d.key(&author, json!({"keys": ["create"]}));
    let (status, _) = d.call("POST", "/v1/keys", &minter, Some(json!({"permissions": {"*": ["*"]}})));
    assert_eq!(status, 403);
    d.ok("POST", "/v1/keys", &minter, Some(json!({"permissions": {"keys": ["create"]}})), 201);
}

#[test]
fn authors_do_not_manage_accounts_and_blocked_is_the_platforms() {
    let Team { d, team, alice, alice_jwt } = team_with_admin();
    let reader = d.user(&team, "reader", Role::Reader);
    d.user(&team, "author", Role::Author);
    let author_jwt = d.login("author", PW);
    let patch = |cred: &str, who: &str, body: Value| d.call("PATCH", &format!("/v1/users/{who}"), cred, Some(body)).0;
    assert_eq!(patch(&author_jwt, &reader, json!({"password": "a new password"})), 403);
    assert_eq!(patch(&author_jwt, &reader, json!({"status": "Disabled"})), 403);
    assert_eq!(patch(&author_jwt, &reader, json!({"role": "Author"})), 403);
    d.login("reader", PW);
    // The team's Administrator disables, but neither blocks nor unblocks.
    assert_eq!(patch(&alice_jwt, &reader, json!({"status": "Disabled"})), 200);
    assert_eq!(patch(&alice_jwt, &reader, json!({"status": "Blocked"})), 403);
    assert_eq!(patch(ADMIN, &reader, json!({"status": "Blocked"})), 200);
    assert_eq!(patch(&alice_jwt, &reader, json!({"status": "Enabled"})), 403);
    assert_eq!(patch(ADMIN, &reader, json!({"status": "Enabled"})), 200);
    // Nobody changes their own role or status.
    assert_eq!(patch(&alice_jwt, &alice, json!({"role": "Reader"})), 403);
}

#[test]
fn password_change_status_round_trip_and_logout_revoke_jwts() {
    let Team { d, team, alice_jwt, .. } = team_with_admin();
    let bob = d.user(&team, "bob", Role::Reader);
    let patch = |body: Value| d.ok("PATCH", &format!("/v1/users/{bob}"), &alice_jwt, Some(body), 200);
    let jwt = d.login("bob", PW);
    patch(json!({"password": "bob's new password"}));
    assert_eq!(d.call("GET", "/v1/keys", &jwt, None).0, 401);
    let jwt = d.login("bob", "bob's new password");
    assert_eq!(d.call("GET", "/v1/keys", &jwt, None).0, 200, "a login right after the change works");
    patch(json!({"status": "Disabled"}));
    patch(json!({"status": "Enabled"}));
    assert_eq!(d.call("GET", "/v1/keys", &jwt, None).0, 401, "Disabled -> Enabled does not revive a session");
    // Log out everywhere, and one session by its jti.
    let (j1, j2) = (d.login("bob", "bob's new password"), d.login("bob", "bob's new password"));
    let jti = d.verify(&j1)["credentialId"].as_str().unwrap().to_owned();
    d.ok("DELETE", &format!("/v1/auth/sessions/{jti}"), &j1, None, 204);
    assert_eq!(d.verify(&j1)["code"], "REVOKED");
    assert_eq!(d.verify(&j2)["valid"], true);
    d.ok("DELETE", &format!("/v1/users/{bob}/sessions"), &j2, None, 204);
    assert_eq!(d.verify(&j2)["code"], "REVOKED");
}

#[test]
fn another_teams_revocation_of_a_jti_has_no_effect() {
    let Team { d, alice_jwt, .. } = team_with_admin();
    let other = d.team("other");
    d.user(&other, "olga", Role::Administrator);
    let olga = d.login("olga", PW);
    let jti = d.verify(&olga)["credentialId"].as_str().unwrap().to_owned();
    d.ok("DELETE", &format!("/v1/auth/sessions/{jti}"), &alice_jwt, None, 204);
    assert_eq!(d.verify(&olga)["valid"], true);
    d.ok("DELETE", &format!("/v1/auth/sessions/{jti}"), ADMIN, None, 204);
    assert_eq!(d.verify(&olga)["code"], "REVOKED");
}

#[test]
fn cookies_seed_004_name_and_forgery() {
    let Team { d, alice_jwt, .. } = team_with_admin();
    let call = |headers: &[(&str, &str)], body: Option<&str>| {
        common::http(d.0.addr, "POST", "/v1/teams", headers, body).status
    };
    let cookie = format!("vai_token={ADMIN}");
    let get = common::http(d.0.addr, "GET", "/v1/teams", &[("Cookie", &format!("vai_token={alice_jwt}"))], None);
    assert_eq!(get.status, 200);
    let body = Some(r#"{"name":"csrf"}"#);
    assert_eq!(call(&[("Cookie", &cookie), ("Content-Type", "text/plain")], body), 403);
    assert_eq!(
        call(&[("Cookie", &cookie), ("Content-Type", "application/json"), ("Origin", "https://evil.example")], body),
        403
    );
    assert_eq!(call(&[("Cookie", &cookie), ("Content-Type", "application/json")], body), 201);
    // A bearer header is not sent by browsers on their own: no such check.
    assert_eq!(call(&[("Authorization", &format!("Bearer {ADMIN}")), ("Content-Type", "text/plain")], body), 201);
}

#[test]
fn allowed_origins_admit_a_cookie_call() {
    let d = D(start_http(|c| c.admin_api.allowed_origins = vec!["https://console.example".into()]));
    let cookie = format!("tollgate_token={ADMIN}");
    let headers =
        [("Cookie", cookie.as_str()), ("Content-Type", "application/json"), ("Origin", "https://console.example")];
    let r = common::http(d.0.addr, "POST", "/v1/teams", &headers, Some(r#"{"name":"ok"}"#));
    assert_eq!(r.status, 201);
}

#[test]
fn session_revocation_takes_only_a_plausible_jti() {
    let Team { d, alice_jwt, .. } = team_with_admin();
    for (jti, want) in [("x".repeat(128), 204), ("x".repeat(129), 422), ("y".repeat(60_000), 422)] {
        let (status, body) = d.call("DELETE", &format!("/v1/auth/sessions/{jti}"), &alice_jwt, None);
        assert_eq!(status, want, "{} chars: {body}", jti.len());
    }
    // Without a credential: 401, and nothing revoked.
    let r = common::http(d.0.addr, "DELETE", "/v1/auth/sessions/abc", &[], None);
    assert_eq!(r.status, 401);
    assert_eq!(d.verify(&alice_jwt)["valid"], true);
}
