//! `GET /v1/teams/{id}` shows the tier's limits next to the team's use, and
//! `POST /v1/teams/{id}/documents/release` gives documents back over HTTP as
//! the socket's QuotaRelease does, for the callers the role matrix allows.

use crate::common;

use common::{ADMIN_TOKEN, HttpResp, http};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

struct Session {
    addr: std::net::SocketAddr,
}

impl Session {
    fn call(&self, method: &str, path: &str, auth: &str, body: Option<Value>) -> HttpResp {
        let bearer = format!("Bearer {auth}");
        let body = body.map(|b| b.to_string());
        http(self.addr, method, path, &[("Authorization", &bearer)], body.as_deref())
    }

    fn ok(&self, method: &str, path: &str, auth: &str, body: Option<Value>, status: u16) -> Value {
        let r = self.call(method, path, auth, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        r.json()
    }

    fn login(&self, user: &str) -> String {
        let r = http(self.addr, "POST", "/v1/auth/token", &[("Authorization", &common::basic(user, PW))], None);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    fn user(&self, team: &str, name: &str, role: &str) {
        let body = json!({"teamId": team, "username": name, "password": PW, "role": role});
        self.ok("POST", "/v1/users", ADMIN_TOKEN, Some(body), 201);
    }
}

fn minute() -> u64 {
    std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() / 60
}

#[test]
fn a_team_sees_its_limits_and_use_and_releases_documents() {
    let d = common::start_http(|_| {});
    let s = Session { addr: d.addr };
    let team = s.ok("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "acme", "tier": "Start"})), 201);
    let team = team["id"].as_str().unwrap().to_owned();
    let other = s.ok("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "globex", "tier": "Start"})), 201);
    let other = other["id"].as_str().unwrap().to_owned();
    s.user(&team, "alice", "Administrator");
    s.user(&team, "rita", "Reader");
    s.user(&team, "arthur", "Author");
    s.user(&other, "bob", "Administrator");
    let alice = s.login("alice");
    let key = s.ok("POST", "/v1/keys", &alice, Some(json!({"name": "svc", "permissions": {"docs": ["read"]}})), 201);
    let key = key["key"].as_str().unwrap().to_owned();

    // Two verifications that consume 3 documents each.
    let before = minute();
    for _ in 0..2 {
        let body = json!({"credential": key, "quota": {"name": "documents", "amount": 3}}).to_string();
        let r = http(d.addr, "POST", "/v1/verify", &[], Some(&body));
        assert_eq!(r.json()["valid"], true, "{}", r.text);
    }
    let path = format!("/v1/teams/{team}");
    let t = s.ok("GET", &path, &alice, None, 200);
    let after = minute();
    assert_eq!(
        t["limits"],
        json!({"requestsPerMinute": 10, "members": 3, "documents": 250, "logRetentionDays": 90}),
        "{t}"
    );
    assert_eq!(t["usage"]["members"], 3, "{t}");
    assert_eq!(t["usage"]["documents"], 6, "{t}");
    // Admin calls do not count toward the per-minute limit; the two
    // verifications do (unless the minute turned meanwhile).
    if before == after {
        assert_eq!(t["usage"]["requestsThisMinute"], 2, "{t}");
    }
    // Every team body has the same shape: the listing too.
    let list = s.ok("GET", "/v1/teams", &alice, None, 200);
    assert_eq!(list["data"][0]["usage"]["documents"], 6, "{list}");

    // Release over HTTP: the use goes down, never below zero.
    let release = format!("/v1/teams/{team}/documents/release");
    let r = s.ok("POST", &release, &alice, Some(json!({"amount": 4})), 200);
    assert_eq!(r, json!({"used": 2, "limit": 250}));
    let r = s.ok("POST", &release, ADMIN_TOKEN, Some(json!({"amount": 10})), 200);
    assert_eq!(r, json!({"used": 0, "limit": 250}));
    assert_eq!(s.ok("GET", &path, &alice, None, 200)["usage"]["documents"], 0);

    // Bad bodies.
    for (body, status) in [
        (json!({"amount": 0}), 422),
        (json!({}), 422),
        (json!({"amount": 4294967296u64}), 422),
        (json!({"amount": 1, "extra": 1}), 422),
        (json!({"amount": true}), 400),
    ] {
        let r = s.call("POST", &release, &alice, Some(body.clone()));
        assert_eq!(r.status, status, "{body}: {}", r.text);
    }

    // Who may: a Reader and an Author read the team but do not release; an
    // administrator of another team sees neither (404, as a missing team); a
    // key needs documents:delete itself.
    let rita = s.login("rita");
    let arthur = s.login("arthur");
    let bob = s.login("bob");
    assert_eq!(s.ok("GET", &path, &rita, None, 200)["usage"]["members"], 3);
    assert_eq!(s.call("POST", &release, &rita, Some(json!({"amount": 1}))).status, 403);
    assert_eq!(s.call("POST", &release, &arthur, Some(json!({"amount": 1}))).status, 403);
    assert_eq!(s.call("GET", &path, &bob, None).status, 404);
    assert_eq!(s.call("POST", &release, &bob, Some(json!({"amount": 1}))).status, 404);
    let read_only =
        s.ok("POST", "/v1/keys", &alice, Some(json!({"name": "r", "permissions": {"teams": ["read"]}})), 201);
    let read_only = read_only["key"].as_str().unwrap();
    assert_eq!(s.call("POST", &release, read_only, Some(json!({"amount": 1}))).status, 403);
    let releaser =
        s.ok("POST", "/v1/keys", &alice, Some(json!({"name": "rel", "permissions": {"documents": ["delete"]}})), 201);
    let releaser = releaser["key"].as_str().unwrap();
    assert_eq!(s.call("POST", &release, releaser, Some(json!({"amount": 1}))).status, 200);
    let missing = "/v1/teams/team_nope/documents/release";
    assert_eq!(s.call("POST", missing, ADMIN_TOKEN, Some(json!({"amount": 1}))).status, 404);
}

#[test]
fn an_unlimited_tier_shows_null_limits_and_counts_no_minute() {
    // start_http lifts the Pro tier's per-minute limit.
    let d = common::start_http(|_| {});
    let s = Session { addr: d.addr };
    let team = s.ok("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "big", "tier": "Pro"})), 201);
    assert_eq!(
        team["limits"],
        json!({"requestsPerMinute": null, "members": null, "documents": 5000, "logRetentionDays": null})
    );
    assert_eq!(team["usage"], json!({"members": 0, "documents": 0, "requestsThisMinute": null}));
}
