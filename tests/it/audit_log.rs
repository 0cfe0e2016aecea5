//! The audit log: admin calls and denied verifications recorded against the
//! real daemon and read back through `GET /v1/logs` (team scoping, filters,
//! pagination, no secrets), and retention pruning per tier on the engine.

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::audit::{AuditEvent, AuditLog, GLOBAL, Query};
use tollgate::core::model::Tier;
use tollgate_admin::AdminClient;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon as Daemon};

fn start() -> Daemon {
    common::start_http(|_| {})
}

/// What this module's tests call on the shared harness type (a trait: the
/// modules of the one test binary each add their own).
trait DaemonExt {
    fn call(&self, cred: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value);
    fn ok(&self, cred: &str, method: &str, path: &str, body: Option<Value>) -> Value;
    fn logs_until(&self, cred: &str, path: &str, want: usize) -> Vec<Value>;
}

impl DaemonExt for Daemon {
    fn call(&self, cred: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let r = AdminClient::new(&self.url, cred).unwrap().raw(method, path, body.as_ref()).unwrap();
        (r.status, r.body)
    }

    fn ok(&self, cred: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, b) = self.call(Some(cred), method, path, body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {b}");
        b
    }

    /// Polls the log until `want` events match `path` (the writer is asynchronous).
    fn logs_until(&self, cred: &str, path: &str, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let items = self.ok(cred, "GET", path, None)["items"].as_array().unwrap().clone();
            if items.len() >= want || Instant::now() > deadline {
                return items;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn admin_calls_and_denials_are_logged_per_team_without_secrets() {
    let d = start();
    let team = d.ok(ADMIN, "POST", "/v1/teams", Some(json!({"name": "acme", "tier": "Pro"})))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = d.ok(ADMIN, "POST", "/v1/teams", Some(json!({"name": "other", "tier": "Pro"})))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = d.ok(
        ADMIN,
        "POST",
        "/v1/users",
        Some(json!({"teamId": team, "username": "ann", "password": "correct horse", "role": "Administrator"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.ok(
        ADMIN,
        "POST",
        "/v1/users",
        Some(json!({"teamId": other, "username": "olaf", "password": "correct horse", "role": "Administrator"})),
    );
    let jwt = AdminClient::new(&d.url, None).unwrap().login("ann", "correct horse").unwrap().token;
    let other_jwt = AdminClient::new(&d.url, None).unwrap().login("olaf", "correct horse").unwrap().token;
    assert!(AdminClient::new(&d.url, None).unwrap().login("ann", "wrong horse battery").is_err());
    let key = d.ok(&jwt, "POST", "/v1/keys", Some(json!({"permissions": {"docs": ["read"]}})));
    let (key_id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());

    // A denial of a known key (team attributed off the hot path), one of an
    // unknown credential, and a refused admin call.
    let (_, v) =
        d.call(None, "POST", "/v1/verify", Some(json!({"credential": secret, "permissions": {"docs": ["delete"]}})));
    assert_eq!(v["code"], "INSUFFICIENT_PERMISSIONS");
    let (_, v) = d.call(None, "POST", "/v1/verify", Some(json!({"credential": "tg_nope"})));
    assert_eq!(v["valid"], false);
    let (status, _) = d.call(Some(&jwt), "GET", "/v1/keys/no-such-key", None);
    assert_eq!(status, 404);

    let denied = d.logs_until(&jwt, "/v1/logs?outcome=denied", 1);
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["detail"], "INSUFFICIENT_PERMISSIONS");
    assert_eq!(denied[0]["actor"], format!("api_key:{key_id}"));
    assert_eq!(denied[0]["action"], "verify");
    assert_eq!(denied[0]["teamId"], team.as_str());

    let all = d.ok(&jwt, "GET", "/v1/logs", None);
    let items = all["items"].as_array().unwrap();
    let actions: Vec<&str> = items.iter().map(|e| e["action"].as_str().unwrap()).collect();
    // Newest first (listing the log is logged too).
    let times: Vec<u64> = items.iter().map(|e| e["atMs"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    assert_eq!(actions.first(), Some(&"ListLogs"), "{actions:?}");
    for want in ["CreateTeam", "CreateUser", "CreateKey", "GetKey", "Login"] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    let created = items.iter().find(|e| e["action"] == "CreateKey").unwrap();
    assert_eq!(created["outcome"], "success");
    assert_eq!(created["target"], key_id.as_str());
    assert!(created["actor"].as_str().unwrap().starts_with(&format!("user:{user}/jwt:")));
    let missing = items.iter().find(|e| e["action"] == "GetKey").unwrap();
    assert_eq!((missing["outcome"].as_str(), missing["detail"].as_str()), (Some("failure"), Some("404")));
    let admin_made = items.iter().find(|e| e["action"] == "CreateUser").unwrap();
    assert_eq!(admin_made["actor"], "admin-token");
    let login = items.iter().find(|e| e["action"] == "Login" && e["outcome"] == "success").unwrap();
    assert_eq!(login["actor"], format!("user:{user}"));
    // By id, never by name.
    assert_eq!(
        (login["target"].as_str(), login["outcome"].as_str()),
        (Some(format!("user:{user}").as_str()), Some("success"))
    );
    // The failed login named a known user: it is the team's, by id too.
    let failed = items.iter().find(|e| e["action"] == "Login" && e["outcome"] == "failure").unwrap();
    assert_eq!(
        (failed["target"].as_str(), failed["detail"].as_str()),
        (Some(format!("user:{user}").as_str()), Some("401"))
    );
    assert_eq!(failed["actor"], "unknown");
    assert!(!text_of(items).contains("ann\""), "the username is not in the log");
    let text = all.to_string();
    for s in [&secret, &jwt, &ADMIN.to_owned()] {
        assert!(!text.contains(s.as_str()), "a secret is in the log");
    }

    // Filters.
    let only = d.ok(&jwt, "GET", "/v1/logs?action=CreateKey", None);
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let future = d.ok(&jwt, "GET", "/v1/logs?since=99999999999999", None);
    assert!(future["items"].as_array().unwrap().is_empty());
    let past = d.ok(&jwt, "GET", "/v1/logs?until=1", None);
    assert!(past["items"].as_array().unwrap().is_empty());

    // Pagination: pages of 2 cover everything once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/logs?limit=2&cursor={}", tollgate_admin::client::encode(c)),
            None => "/v1/logs?limit=2".to_owned(),
        };
        let page = d.ok(&jwt, "GET", &path, None);
        let ids: Vec<String> =
            page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let full: Vec<String> = items.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    // Listing the log is itself logged; compare the ids present in both.
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a page repeated an event");
    for id in &full {
        assert!(seen.contains(id), "{id} was skipped by pagination");
    }
    let (status, _) = d.call(Some(&jwt), "GET", "/v1/logs?cursor=garbage", None);
    assert_eq!(status, 422);

    // Scoping: another team sees none of it; the admin token must name a team.
    let theirs = d.ok(&other_jwt, "GET", "/v1/logs", None);
    assert!(!theirs.to_string().contains(&key_id));
    let (status, _) = d.call(Some(&other_jwt), "GET", &format!("/v1/logs?teamId={team}"), None);
    assert_eq!(status, 404);
    let (status, _) = d.call(Some(ADMIN), "GET", "/v1/logs", None);
    assert_eq!(status, 422);
    let by_admin = d.ok(ADMIN, "GET", &format!("/v1/logs?teamId={team}&action=CreateKey"), None);
    assert_eq!(by_admin["items"][0]["target"], key_id.as_str());
    // A failed login naming nobody is counted and sampled, with no target;
    // the password is not logged.
    assert!(AdminClient::new(&d.url, None).unwrap().login("nobody-at-all", "wrong horse battery").is_err());
    let failed = d.logs_until(ADMIN, &format!("/v1/logs?teamId={GLOBAL}&action=Login"), 1);
    assert_eq!((failed[0]["outcome"].as_str(), failed[0]["detail"].as_str()), (Some("denied"), Some("NOT_FOUND")));
    assert_eq!(failed[0]["target"], "");
    let text = Value::from(failed).to_string();
    assert!(!text.contains("wrong horse") && !text.contains("nobody-at-all"));
    // The unknown credential on /v1/verify: counted and sampled (the first
    // of the minute is stored), with no target.
    let global = d.logs_until(ADMIN, &format!("/v1/logs?teamId={GLOBAL}&outcome=denied&action=verify"), 1);
    assert_eq!(global[0]["target"], "");
    assert_eq!((global[0]["actor"].as_str(), global[0]["detail"].as_str()), (Some("unknown"), Some("MALFORMED")));

    // The route is in the OpenAPI document.
    let (_, doc) = d.call(None, "GET", "/openapi.json", None);
    assert!(doc["paths"]["/v1/logs"]["get"].is_object());
}

fn text_of(items: &[Value]) -> String {
    Value::from(items.to_vec()).to_string()
}

#[test]
fn deleting_a_user_anonymizes_it_everywhere() {
    let mut d = start();
    let name = "zebulon-the-unique";
    let pass = "correct horse battery";
    let team = d.ok(ADMIN, "POST", "/v1/teams", Some(json!({"name": "acme", "tier": "Pro"})))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"teamId": team, "username": name, "password": pass, "role": "Administrator"});
    let user = d.ok(ADMIN, "POST", "/v1/users", Some(body))["id"].as_str().unwrap().to_owned();
    let client = AdminClient::new(&d.url, None).unwrap();
    let jwt = client.login(name, pass).unwrap().token;
    assert!(client.login(name, "wrong horse battery").is_err());
    let key = d.ok(&jwt, "POST", "/v1/keys", Some(json!({"name": "mine"})));
    let (key_id, secret) = (key["id"].as_str().unwrap().to_owned(), key["key"].as_str().unwrap().to_owned());
    d.ok(ADMIN, "POST", "/v1/keys", Some(json!({"userId": user, "name": "by admin"})));
    let pat = d.ok(&jwt, "POST", "/v1/access-tokens", Some(json!({"name": "laptop"})))["plaintext"]
        .as_str()
        .unwrap()
        .to_owned();
    let verify = |d: &Daemon, c: &str| d.call(None, "POST", "/v1/verify", Some(json!({"credential": c}))).1;
    assert_eq!(verify(&d, &secret)["valid"], true);
    // A denial of the user's key, and a refused admin call with it: both the team's.
    d.call(None, "POST", "/v1/verify", Some(json!({"credential": secret, "permissions": {"teams": ["delete"]}})));
    assert_eq!(d.call(Some(&pat), "DELETE", &format!("/v1/teams/{team}"), None).0, 403);
    assert_eq!(d.call(Some(ADMIN), "GET", &format!("/v1/users/{user}"), None).0, 200);
    // The denial is written by the audit thread, which finds the key's team by
    // its hash: once the key is deleted, a denial not yet written has no team.
    d.logs_until(ADMIN, &format!("/v1/logs?teamId={team}&outcome=denied"), 1);

    assert_eq!(d.call(Some(ADMIN), "DELETE", &format!("/v1/users/{user}"), None).0, 204);

    // Gone for GET; listed only anonymized, as seed 000's "Deleted".
    assert_eq!(d.call(Some(ADMIN), "GET", &format!("/v1/users/{user}"), None).0, 404);
    let users = d.ok(ADMIN, "GET", &format!("/v1/users?teamId={team}"), None);
    let listed = users["data"].as_array().unwrap().iter().find(|u| u["id"] == user.as_str()).unwrap().clone();
    assert_eq!(listed["status"], "Deleted");
    assert_eq!(listed["username"], format!("deleted-{user}"));
    assert!(!users.to_string().contains(name));
    // Its keys are gone (not listed, active or not), its token revoked, its JWT too.
    for status in ["active", "inactive"] {
        let keys = d.ok(ADMIN, "GET", &format!("/v1/keys?teamId={team}&status={status}"), None);
        assert!(!keys.to_string().contains(&user), "{status}: {keys}");
    }
    assert_eq!(d.call(Some(ADMIN), "GET", &format!("/v1/keys/{key_id}"), None).0, 404);
    assert_eq!(verify(&d, &secret)["code"], "NOT_FOUND");
    assert_eq!(verify(&d, &pat)["code"], "REVOKED");
    assert_eq!(verify(&d, &jwt)["valid"], false);

    // The name is in no audit event, of the team or global; the id is.
    let logs = d.logs_until(ADMIN, &format!("/v1/logs?teamId={team}&action=DeleteUser"), 1);
    assert_eq!(logs[0]["target"], user.as_str());
    let all = d.ok(ADMIN, "GET", &format!("/v1/logs?teamId={team}&limit=100"), None).to_string();
    assert!(all.contains(&user) && all.contains(&key_id));
    assert!(all.contains("\"denied\"") && all.contains("\"Login\""));
    assert!(!all.contains(name), "{all}");
    let global = d.ok(ADMIN, "GET", &format!("/v1/logs?teamId={GLOBAL}&limit=100"), None).to_string();
    assert!(!global.contains(name));

    // Nor in any audit record's bytes. sled's log keeps superseded versions
    // of a record until their segment is reused, so the user record as it
    // was before the deletion may still be in the file: every occurrence of
    // the name must be that record (postcard: `<team id><name length><name>`
    // right after the user id), none an audit event (`…Login<len>username:…`
    // as logins were once recorded, or any other field).
    d.stop_and_keep_data();
    assert!(common::file_containing(&d.data, user.as_bytes()).is_some(), "the search sees the store");
    assert_eq!(common::file_containing(&d.data, format!("username:{name}").as_bytes()), None);
    let mut user_record = Vec::new();
    user_record.push(user.len() as u8);
    user_record.extend_from_slice(user.as_bytes());
    user_record.push(team.len() as u8);
    user_record.extend_from_slice(team.as_bytes());
    user_record.push(name.len() as u8);
    for (path, bytes) in common::files_under(&d.data) {
        for (at, _) in bytes.windows(name.len()).enumerate().filter(|(_, w)| *w == name.as_bytes()) {
            let before = &bytes[at.saturating_sub(user_record.len())..at];
            assert_eq!(before, &user_record[..], "{} holds the name outside the user record", path.display());
        }
    }
}

#[test]
fn scrubbing_a_user_rewrites_events_that_named_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(common::engine(dir.path(), ""));
    let (team, user) = common::team_and_user(&engine, Tier::Pro, "yolanda");
    let log = AuditLog::start(engine.clone()).unwrap();
    // Events as logins were once recorded: by name.
    let ev = |team: &str, target: &str| AuditEvent {
        at: 1_000,
        team: team.to_owned(),
        actor: "unknown".into(),
        action: "Login".into(),
        target: target.to_owned(),
        outcome: "failure".into(),
        detail: "401".into(),
        request_id: String::new(),
    };
    log.record(&ev(&team, "username:yolanda")).unwrap();
    log.record(&ev(GLOBAL, "username:yolanda")).unwrap();
    log.record(&ev(&team, "username:yolanda2")).unwrap();
    let name = engine.delete_user(&user).unwrap();
    assert_eq!(name, "yolanda");
    assert_eq!(log.scrub_user(&team, &user, &name).unwrap(), 2);
    for t in [team.as_str(), GLOBAL] {
        let q = Query { team: t, action: None, outcome: None, since: 0, until: u64::MAX, limit: 100, cursor: None };
        for (_, e) in log.query(&q).unwrap().0 {
            assert_ne!(e.target, "username:yolanda");
        }
    }
    let q = Query { team: &team, action: None, outcome: None, since: 0, until: u64::MAX, limit: 100, cursor: None };
    let targets: Vec<String> = log.query(&q).unwrap().0.into_iter().map(|(_, e)| e.target).collect();
    assert!(targets.contains(&format!("user:{user}")) && targets.contains(&"username:yolanda2".to_owned()));
}

#[test]
fn retention_follows_the_tier() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(common::engine(dir.path(), ""));
    let (free, _) = common::team_and_user(&engine, Tier::Free, "f");
    let (pro, _) = common::team_and_user(&engine, Tier::Pro, "p");
    let (master, _) = common::team_and_user(&engine, Tier::Master, "m");
    let log = AuditLog::start(engine.clone()).unwrap();
    let day: u64 = 86_400_000_000;
    let now = 1_000 * day;
    let ev = |team: &str, age_days: u64| AuditEvent {
        at: now - age_days * day,
        team: team.to_owned(),
        actor: "admin-token".into(),
        action: "GetTeam".into(),
        target: team.to_owned(),
        outcome: "success".into(),
        detail: "200".into(),
        request_id: String::new(),
    };
    for (team, ages) in [(&free, [1, 6, 8, 400]), (&pro, [1, 6, 8, 400]), (&master, [1, 100, 364, 366])] {
        for age in ages {
            log.record(&ev(team, age)).unwrap();
        }
    }
    log.record(&ev(GLOBAL, 30)).unwrap();
    // Free keeps 7 days, Master 365, Pro everything; global events as Free.
    assert_eq!(log.prune(now).unwrap(), 2 + 1 + 1);
    let left = |team: &str| {
        let q = Query { team, action: None, outcome: None, since: 0, until: u64::MAX, limit: 100, cursor: None };
        let (events, more) = log.query(&q).unwrap();
        assert!(!more);
        events.into_iter().map(|(_, e)| (now - e.at) / day).collect::<Vec<_>>()
    };
    assert_eq!(left(&free), vec![1, 6]);
    assert_eq!(left(&pro), vec![1, 6, 8, 400]);
    assert_eq!(left(&master), vec![1, 100, 364]);
    assert!(left(GLOBAL).is_empty());
    // The tier in force decides: after an upgrade the older events stay.
    engine.set_team_tier(&free, Tier::Pro, false).unwrap();
    log.record(&ev(&free, 30)).unwrap();
    assert_eq!(log.prune(now).unwrap(), 0);
}

#[test]
fn queued_denials_are_written_at_shutdown_and_a_full_queue_drops() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(common::engine(dir.path(), ""));
    let log = AuditLog::start(engine).unwrap();
    let total = 3 * tollgate::audit::QUEUE_CAPACITY;
    let started = Instant::now();
    let mut accepted = 0;
    for i in 0..total {
        let d = tollgate::audit::Denied {
            at: 1_000_000 + i as u64,
            hash: None,
            jwt: false,
            code: "MALFORMED",
            action: "verify",
        };
        if log.denied(d) {
            accepted += 1;
        }
    }
    // Never blocks: three queues' worth is handed over (or dropped) at once.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(accepted as u64 + log.dropped(), total as u64);
    assert!(accepted >= tollgate::audit::QUEUE_CAPACITY);
    log.shutdown();
    let q = Query {
        team: GLOBAL,
        action: Some("verify"),
        outcome: Some("denied"),
        since: 0,
        until: u64::MAX,
        limit: total,
        cursor: None,
    };
    let (events, more) = log.query(&q).unwrap();
    assert!(!more);
    assert_eq!(events.len(), accepted, "every accepted denial is written");
}

/// Events stored before request ids were (record version 1, no `request_id`)
/// are still read, with an empty request id, next to new ones.
#[test]
fn events_of_record_version_1_are_read_with_no_request_id() {
    #[derive(serde::Serialize)]
    struct V1 {
        at: u64,
        team: String,
        actor: String,
        action: String,
        target: String,
        outcome: String,
        detail: String,
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(common::engine(dir.path(), ""));
    let (team, _) = common::team_and_user(&engine, Tier::Pro, "old");
    let log = AuditLog::start(engine.clone()).unwrap();
    let old = V1 {
        at: 1_000,
        team: team.clone(),
        actor: "admin-token".into(),
        action: "GetTeam".into(),
        target: team.clone(),
        outcome: "success".into(),
        detail: "200".into(),
    };
    let mut b = tollgate::store::Batch::default();
    // `put` writes version 1, as the store did before request ids.
    b.put(tollgate::store::Table::Audit, &format!("{team}/{:016x}/{:08x}", 1_000, 0), &old);
    engine.store().apply(b, true).unwrap();
    let new = AuditEvent { at: 2_000, request_id: "req-42".into(), detail: "404".into(), ..old_event(&team) };
    log.record(&new).unwrap();
    let q = Query { team: &team, action: None, outcome: None, since: 0, until: u64::MAX, limit: 100, cursor: None };
    let events: Vec<AuditEvent> = log.query(&q).unwrap().0.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events, vec![new, AuditEvent { request_id: String::new(), ..old_event(&team) }]);
}

fn old_event(team: &str) -> AuditEvent {
    AuditEvent {
        at: 1_000,
        team: team.to_owned(),
        actor: "admin-token".into(),
        action: "GetTeam".into(),
        target: team.to_owned(),
        outcome: "success".into(),
        detail: "200".into(),
        request_id: String::new(),
    }
}
