//! The admin HTTP API against the real daemon (`server::serve`) on a temporary
//! data directory and a free port, spoken to with a tiny blocking HTTP/1.1 client.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate::config::Config;

use crate::common;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon as Daemon, basic, start_http as start};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What this module's tests call on the shared harness type (a trait: the
/// modules of the one test binary each add their own).
trait DaemonExt {
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp;
    fn call(&self, method: &str, path: &str, cred: Option<&str>, body: Option<Value>) -> Resp;
    fn ok(&self, method: &str, path: &str, cred: &str, body: Option<Value>, want: u16) -> Value;
    fn team(&self, name: &str, tier: &str) -> String;
    fn user(&self, team: &str, name: &str, role: &str) -> (String, String);
    fn login(&self, name: &str, pass: &str) -> String;
    fn key(&self, cred: &str, user: &str) -> (String, String);
    fn verify(&self, credential: &str) -> Value;
}

impl DaemonExt for Daemon {
    /// Sends one request on a fresh connection; `body` is sent as is.
    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
        let r = common::http(self.addr, method, path, headers, body);
        Resp { status: r.status, body: r.json(), headers: r.headers }
    }

    /// A JSON call with a bearer credential.
    fn call(&self, method: &str, path: &str, cred: Option<&str>, body: Option<Value>) -> Resp {
        let auth = cred.map(|c| format!("Bearer {c}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let text = body.map(|b| b.to_string());
        self.raw(method, path, &headers, text.as_deref())
    }

    fn ok(&self, method: &str, path: &str, cred: &str, body: Option<Value>, want: u16) -> Value {
        let r = self.call(method, path, Some(cred), body);
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        r.body
    }

    fn team(&self, name: &str, tier: &str) -> String {
        self.ok("POST", "/v1/teams", ADMIN, Some(json!({"name": name, "tier": tier})), 201)["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a user and logs in; returns (user id, JWT).
    fn user(&self, team: &str, name: &str, role: &str) -> (String, String) {
        let body = json!({"teamId": team, "username": name, "password": "correct horse", "role": role});
        let id = self.ok("POST", "/v1/users", ADMIN, Some(body), 201)["id"].as_str().unwrap().to_owned();
        (id, self.login(name, "correct horse"))
    }

    fn login(&self, name: &str, pass: &str) -> String {
        let r = self.raw("POST", "/v1/auth/token", &[("Authorization", &basic(name, pass))], None);
        assert_eq!(r.status, 200, "login {name}: {}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Creates an API key with every permission; returns (id, secret).
    fn key(&self, cred: &str, user: &str) -> (String, String) {
        let b = self.ok("POST", "/v1/keys", cred, Some(json!({"userId": user, "permissions": {"*": ["*"]}})), 201);
        (b["id"].as_str().unwrap().to_owned(), b["key"].as_str().unwrap().to_owned())
    }

    fn verify(&self, credential: &str) -> Value {
        self.ok("POST", "/v1/verify", "unused", Some(json!({"credential": credential})), 200)
    }
}

/// Validates `doc` as OpenAPI 3.1 with Python's openapi-spec-validator
/// (`pip install openapi-spec-validator`; CI installs it and fails without it).
fn validate_openapi(doc: &Value) {
    let Some(python) = common::require_tool("python3", &[], "apt-get install python3") else { return };
    let has = std::process::Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        common::missing("openapi-spec-validator is not installed", "pip install openapi-spec-validator");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let script = "import json, sys\nfrom openapi_spec_validator import OpenAPIV31SpecValidator\n\
                  spec = json.load(open(sys.argv[1]))\nerrors = list(OpenAPIV31SpecValidator(spec).iter_errors())\n\
                  [print(e.message, list(e.absolute_path)) for e in errors]\nsys.exit(1 if errors else 0)";
    let out = std::process::Command::new(&python).args(["-c", script]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn openapi_lists_exactly_the_served_routes() {
    let d = start(|_| {});
    let doc = d.raw("GET", "/openapi.json", &[], None);
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    validate_openapi(&doc.body);
    let paths = doc.body["paths"].as_object().unwrap();
    let in_doc: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), p.clone())))
        .collect();
    // What the router serves, from its registrations (not from the document's own table).
    let admin = tollgate::http::admin::routes();
    let fixed = tollgate::http::fixed_routes();
    let served: BTreeSet<(String, String)> = admin
        .iter()
        .map(|r| (r.method, r.path))
        .chain(fixed.iter().copied())
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(in_doc, served, "the routes the router serves and the document's differ");
    for path in ["/v1/verify", "/auth", "/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"] {
        assert!(paths.contains_key(path), "{path} is not in the document");
    }
    // An admin operation is named by the registration's operation (the audit action).
    for r in &admin {
        let op = &paths[r.path][r.method.to_ascii_lowercase()];
        assert_eq!(op["operationId"], r.op, "{} {}", r.method, r.path);
        // A guarded route answers 401 and 403 and takes the credential schemes;
        // the open ones take none or Basic.
        let security: Vec<&str> = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s.as_object().unwrap().keys().map(String::as_str))
            .collect();
        if r.authz.is_some() {
            assert_eq!(security, ["bearerAuth", "apiKeyHeader", "cookieAuth", "queryToken"], "{}", r.op);
            for status in ["401", "403", "429", "500"] {
                assert!(op["responses"][status].is_object(), "{} lacks {status}", r.op);
            }
        } else {
            assert!(security.iter().all(|s| *s == "basicAuth"), "{}: {security:?}", r.op);
        }
        // The query parameters are the handler's query type's fields.
        if r.method == "GET" && !r.path.contains("{id}") && r.op != "OpenApi" {
            let params = op["parameters"].as_array().unwrap();
            assert!(params.iter().any(|p| p["name"] == "limit" && p["in"] == "query"), "{}", r.op);
            assert!(op["responses"]["422"].is_object(), "{}", r.op);
        }
        if matches!(r.method, "POST" | "PATCH") && r.authz.is_some() && r.op != "Reload" {
            let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert!(body.as_str().is_some_and(|s| s.starts_with("#/components/schemas/")), "{}: {op}", r.op);
            assert!(op["responses"]["413"].is_object(), "{}", r.op);
        }
    }
    let schemes = &doc.body["components"]["securitySchemes"];
    assert_eq!(schemes["cookieAuth"]["name"], "tollgate_token");
    assert_eq!(schemes["apiKeyHeader"]["name"], "X-API-Key");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    let auth_ok = &paths["/auth"]["get"]["responses"]["200"]["headers"];
    assert!(auth_ok["X-Auth-Subject"].is_object() && auth_ok["X-RateLimit-Remaining"].is_object(), "{auth_ok}");
    assert!(paths["/auth"]["get"]["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
    let verify = &paths["/v1/verify"]["post"];
    assert_eq!(
        verify["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/VerifyRequest"
    );
    assert_eq!(
        verify["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Verdict"
    );

    // Real objects for the `{id}` routes, in a team of their own.
    let team = d.team("openapi", "Pro");
    let (user, jwt) = d.user(&team, "oa-user", "Administrator");
    let (key, _) = d.key(ADMIN, &user);
    let token = d.ok("POST", "/v1/access-tokens", &jwt, Some(json!({"name": "t"})), 201)["token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_for = |path: &str| {
        if path.starts_with("/v1/teams") {
            team.clone()
        } else if path.starts_with("/v1/users") {
            user.clone()
        } else if path.starts_with("/v1/keys") {
            key.clone()
        } else {
            token.clone()
        }
    };
    // Deletes last, the team's very last.
    let admin_routes: BTreeSet<(String, String)> =
        admin.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();
    let mut order: Vec<&(String, String)> = admin_routes.iter().collect();
    order.sort_by_key(|(m, p)| (m == "DELETE", p.starts_with("/v1/teams"), p == "/v1/users/{id}"));
    for (method, path) in order {
        let real = path.replace("{id}", &id_for(path));
        let cred = if path.starts_with("/v1/access-tokens") { jwt.as_str() } else { ADMIN };
        let body = matches!(method.as_str(), "POST" | "PATCH").then(|| json!({}));
        let r = d.call(method, &real, Some(cred), body);
        assert!(r.status != 404 && r.status != 405, "{method} {real} answered {}: {}", r.status, r.body);
    }
    // Methods the document does not list answer 405 on its paths.
    for path in paths.keys() {
        let real = path.replace("{id}", "x");
        for m in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            if !in_doc.contains(&(m.to_owned(), path.clone())) {
                let r = d.call(m, &real, Some(ADMIN), None);
                assert_eq!(r.status, 405, "{m} {path}");
                assert!(r.header("allow").is_some());
            }
        }
    }
    assert_eq!(d.call("GET", "/v1/nothing-here", Some(ADMIN), None).status, 404);
    assert_eq!(d.call("GET", "/v1/keys/a/b", Some(ADMIN), None).status, 404);
}

#[test]
fn login_with_password_and_with_api_key() {
    let d = start(|_| {});
    let team = d.team("login", "Pro");
    let (alice, jwt) = d.user(&team, "alice", "Administrator");
    let login = |auth: Option<String>| {
        let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        d.raw("POST", "/v1/auth/token", &h, None)
    };
    assert_eq!(login(None).status, 400);
    assert_eq!(login(Some("Bearer x".into())).status, 400);
    assert_eq!(login(Some("Basic !!!".into())).status, 400);
    assert_eq!(login(Some(basic("alice", ""))).status, 400);
    assert_eq!(login(Some(basic("", "pw"))).status, 400);
    assert_eq!(login(Some(basic("alice", "wrong password"))).status, 401);
    assert_eq!(login(Some(basic("nobody", "wrong password"))).status, 401);
    let ok = login(Some(basic("alice", "correct horse")));
    assert_eq!(ok.status, 200);
    let token = ok.body["token"].as_str().unwrap();
    assert_eq!(d.call("GET", &format!("/v1/teams/{team}"), Some(token), None).status, 200);
    assert_eq!(d.verify(token)["subject"], alice.as_str());

    // An API key as the Basic username, no password, is exchanged for its owner's JWT.
    let (key_id, key) = d.key(&jwt, &alice);
    let r = login(Some(basic(&key, "")));
    assert_eq!(r.status, 200, "{}", r.body);
    let from_key = r.body["token"].as_str().unwrap();
    assert_eq!(d.verify(from_key)["subject"], alice.as_str());
    // ... and as a credential itself, in each place one is read from.
    let path = format!("/v1/teams/{team}");
    assert_eq!(d.raw("GET", &path, &[("X-API-Key", &key)], None).status, 200);
    assert_eq!(d.raw("GET", &path, &[("Cookie", &format!("a=b; tollgate_token={key}"))], None).status, 200);
    assert_eq!(d.raw("GET", &format!("{path}?token={key}"), &[], None).status, 401, "query tokens are off by default");
    assert_eq!(d.raw("GET", &path, &[], None).status, 401);
    assert_eq!(d.call("GET", &path, Some("tg_not-a-real-key"), None).status, 401);
    d.ok("DELETE", &format!("/v1/keys/{key_id}"), &jwt, None, 204);
    assert_eq!(login(Some(basic(&key, ""))).status, 401);
}

#[test]
fn failed_logins_are_rate_limited_and_query_tokens_can_be_enabled() {
    let d = start(|c| {
        c.admin_api.login_failures_per_minute = 3;
        c.admin_api.allow_query_token = true;
    });
    for _ in 0..3 {
        let r = d.raw("POST", "/v1/auth/token", &[("Authorization", &basic("ghost", "bad password"))], None);
        assert_eq!(r.status, 401);
    }
    let r = d.raw("POST", "/v1/auth/token", &[("Authorization", &basic("ghost", "bad password"))], None);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    let team = d.team("q", "Pro");
    assert_eq!(d.raw("GET", &format!("/v1/teams/{team}?token={ADMIN}"), &[], None).status, 200);
}

#[test]
fn generated_admin_token_is_written_0600() {
    // The binary, started with no admin token in its environment whatever
    // this test's holds: the test cannot pass by not running.
    let d = common::BinDaemon::start_generating_admin_token("");
    let path = d.dir.path().join("data").join("admin-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).unwrap();
    d.call("POST", "/v1/teams", token.trim(), Some(json!({"name": "t"})), 201);
    d.call("POST", "/v1/teams", ADMIN, Some(json!({"name": "t"})), 401);
}

#[test]
fn teams_and_users() {
    let d = start(|_| {});
    // Validation and type errors.
    assert_eq!(
        d.call("POST", "/v1/teams", Some(ADMIN), Some(json!({}))).body["detail"][0]["loc"],
        json!(["body", "name"])
    );
    assert_eq!(d.call("POST", "/v1/teams", Some(ADMIN), Some(json!({"name": 5}))).status, 400);
    assert_eq!(d.call("POST", "/v1/teams", Some(ADMIN), Some(json!({"name": "x", "tier": "Gold"}))).status, 422);
    assert_eq!(d.raw("POST", "/v1/teams", &[("Authorization", &format!("Bearer {ADMIN}"))], Some("{nope")).status, 400);
    assert_eq!(d.raw("POST", "/v1/teams", &[("Authorization", &format!("Bearer {ADMIN}"))], Some("[1]")).status, 400);
    let big = " ".repeat(70 * 1024);
    assert_eq!(d.raw("POST", "/v1/teams", &[("Authorization", &format!("Bearer {ADMIN}"))], Some(&big)).status, 413);

    // The tier's member limit.
    let team = d.team("small", "Free");
    let t = d.ok("GET", &format!("/v1/teams/{team}"), ADMIN, None, 200);
    assert_eq!(t["tier"], "Free");
    let (u1, jwt) = d.user(&team, "solo", "Administrator");
    let second = json!({"teamId": team, "username": "second", "password": "correct horse", "role": "Reader"});
    let r = d.call("POST", "/v1/users", Some(ADMIN), Some(second.clone()));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("members"), "{}", r.body);
    // Pro: unlimited members (and, in these tests, unlimited requests a minute:
    // admin calls made with a team's credentials count against its tier's rate).
    assert_eq!(d.ok("PATCH", &format!("/v1/teams/{team}"), ADMIN, Some(json!({"tier": "pro"})), 200)["tier"], "Pro");
    // A team JWT uses its own team; teamId may be left out.
    let mut second = second;
    second.as_object_mut().unwrap().remove("teamId");
    let u2 = d.ok("POST", "/v1/users", &jwt, Some(second), 201);
    assert_eq!(u2["teamId"], team.as_str());
    assert_eq!(u2["status"], "Enabled");
    assert!(u2.get("passwordHash").is_none() && u2.get("password").is_none());
    let u2 = u2["id"].as_str().unwrap().to_owned();
    let dup = json!({"username": "second", "password": "correct horse", "role": "Reader"});
    assert_eq!(d.call("POST", "/v1/users", Some(&jwt), Some(dup)).status, 409);
    let bad = json!({"username": "third", "password": "short", "role": "Reader"});
    assert_eq!(
        d.call("POST", "/v1/users", Some(&jwt), Some(bad)).body["detail"][0]["loc"],
        json!(["body", "password"])
    );
    let bad = json!({"username": "third", "password": "correct horse", "role": "King"});
    assert_eq!(d.call("POST", "/v1/users", Some(&jwt), Some(bad)).status, 422);

    let list = d.ok("GET", "/v1/users", &jwt, None, 200);
    assert_eq!(list["count"], 2);
    assert_eq!(d.call("GET", "/v1/users", Some(ADMIN), None).status, 422, "the admin token names a team");
    assert_eq!(d.ok("GET", &format!("/v1/users?teamId={team}"), ADMIN, None, 200)["count"], 2);
    d.ok("GET", &format!("/v1/users/{u1}"), &jwt, None, 200);
    let p = d.ok("PATCH", &format!("/v1/users/{u2}"), &jwt, Some(json!({"role": "Author", "status": "Disabled"})), 200);
    assert_eq!((p["role"].as_str(), p["status"].as_str()), (Some("Author"), Some("Disabled")));
    assert_eq!(d.call("PATCH", &format!("/v1/users/{u2}"), Some(&jwt), Some(json!({"status": "Gone"}))).status, 422);
    d.ok("DELETE", &format!("/v1/users/{u2}"), &jwt, None, 204);
    // Gone for GET; listed only anonymized, with seed 000's Deleted status.
    d.ok("GET", &format!("/v1/users/{u2}"), &jwt, None, 404);
    let list = d.ok("GET", "/v1/users", &jwt, None, 200);
    let gone = list["data"].as_array().unwrap().iter().find(|u| u["id"] == u2.as_str()).unwrap().clone();
    assert_eq!(
        (gone["status"].as_str(), gone["username"].as_str()),
        (Some("Deleted"), Some(format!("deleted-{u2}").as_str()))
    );

    // The admin token lists every team; a team's user sees only its own.
    let other = d.team("other", "Free");
    let all: Vec<Value> = d.ok("GET", "/v1/teams", ADMIN, None, 200)["data"].as_array().unwrap().clone();
    let ids: Vec<&str> = all.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&team.as_str()) && ids.contains(&other.as_str()), "{ids:?}");
    let mine = d.ok("GET", "/v1/teams", &jwt, None, 200);
    assert_eq!((mine["count"].as_u64(), mine["data"][0]["id"].as_str()), (Some(1), Some(team.as_str())));

    // Teams are the admin token's.
    assert_eq!(d.call("POST", "/v1/teams", Some(&jwt), Some(json!({"name": "mine"}))).status, 403);
    assert_eq!(d.call("PATCH", &format!("/v1/teams/{team}"), Some(&jwt), Some(json!({"tier": "Pro"}))).status, 403);
    assert_eq!(d.call("DELETE", &format!("/v1/teams/{team}"), Some(&jwt), None).status, 403);
    d.ok("DELETE", &format!("/v1/teams/{team}"), ADMIN, None, 204);
    assert_eq!(d.call("GET", &format!("/v1/teams/{team}"), Some(ADMIN), None).status, 404);
    assert_eq!(d.verify(&jwt)["valid"], false, "a deleted team's JWTs stop working");
}

#[test]
fn api_keys_crud_and_immediate_effect_on_verify() {
    let d = start(|_| {});
    let team = d.team("keys", "Pro");
    let (user, jwt) = d.user(&team, "keyper", "Administrator");
    let body = json!({
        "userId": user, "name": "ci", "prefix": "ci", "expiresIn": 3600, "remaining": "100",
        "refillAmount": 100, "refillInterval": 86_400_000, "rateLimitEnabled": true,
        "rateLimitTimeWindow": 60_000, "rateLimitMax": 50, "permissions": {"docs": ["read"]},
        "metadata": {"env": "ci"}, "whitelistedIPs": ["127.0.0.1", "10.0.0.0/8"],
    });
    let k = d.ok("POST", "/v1/keys", &jwt, Some(body), 201);
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["key"].as_str().unwrap().to_owned());
    assert!(secret.starts_with("ci_") && secret.starts_with(k["start"].as_str().unwrap()));
    for (f, v) in [
        ("name", json!("ci")),
        ("prefix", json!("ci")),
        ("userId", json!(user)),
        ("companyId", json!(team)),
        ("teamId", json!(team)),
        ("enabled", json!(true)),
        ("status", json!("active")),
        ("remaining", json!(100)),
        ("refillAmount", json!(100)),
        ("refillInterval", json!(86_400_000)),
        ("rateLimitEnabled", json!(true)),
        ("rateLimitTimeWindow", json!(60_000)),
        ("rateLimitMax", json!(50)),
        ("requestCount", json!(0)),
        ("permissions", json!({"docs": ["read"]})),
        ("metadata", json!({"env": "ci"})),
        ("whitelistedIPs", json!(["127.0.0.1", "10.0.0.0/8"])),
        ("lastRequest", Value::Null),
    ] {
        assert_eq!(k[f], v, "{f}");
    }
    for f in ["createdAt", "updatedAt", "expiresAt"] {
        assert!(k[f].as_str().unwrap().ends_with('Z'), "{f}: {}", k[f]);
    }
    let got = d.ok("GET", &format!("/v1/keys/{id}"), &jwt, None, 200);
    assert!(got.get("key").is_none(), "the secret is shown only at creation");
    assert_eq!(got["name"], "ci");

    // Verification sees every change at once.
    let verify = |ip: &str| d.ok("POST", "/v1/verify", "x", Some(json!({"credential": secret, "ip": ip})), 200);
    assert_eq!(verify("10.1.2.3")["valid"], true);
    assert_eq!(verify("192.168.0.1")["code"], "IP_NOT_ALLOWED");
    assert_eq!(d.ok("GET", &format!("/v1/keys/{id}"), &jwt, None, 200)["requestCount"], 1);
    let p = d.ok("PATCH", &format!("/v1/keys/{id}"), &jwt, Some(json!({"enabled": false, "name": "off"})), 200);
    assert_eq!((p["enabled"].as_bool(), p["status"].as_str()), (Some(false), Some("inactive")));
    assert_eq!(verify("10.1.2.3")["code"], "DISABLED");
    let p = d.ok(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &jwt,
        Some(json!({"enabled": true, "remaining": 1, "whitelistedIPs": null})),
        200,
    );
    assert_eq!(p["whitelistedIPs"], json!([]));
    assert_eq!(verify("192.168.0.1")["valid"], true);
    assert_eq!(verify("192.168.0.1")["code"], "USAGE_EXCEEDED");
    let p = d.ok(
        "PATCH",
        &format!("/v1/keys/{id}"),
        &jwt,
        Some(json!({"rateLimitEnabled": false, "expiresIn": null})),
        200,
    );
    assert_eq!((p["rateLimitEnabled"].as_bool(), &p["expiresAt"]), (Some(false), &Value::Null));
    d.ok("DELETE", &format!("/v1/keys/{id}"), &jwt, None, 204);
    assert_eq!(d.verify(&secret)["code"], "NOT_FOUND");
    assert_eq!(d.call("GET", &format!("/v1/keys/{id}"), Some(&jwt), None).status, 404);
    assert_eq!(d.call("DELETE", &format!("/v1/keys/{id}"), Some(&jwt), None).status, 404);

    // Errors name the field.
    let post = |b: Value| d.call("POST", "/v1/keys", Some(&jwt), Some(b));
    let loc = |r: Resp| {
        assert_eq!(r.status, 422, "{}", r.body);
        r.body["detail"][0]["loc"][1].as_str().unwrap().to_owned()
    };
    assert_eq!(post(json!({"name": 5})).status, 400);
    assert_eq!(post(json!({"whitelistedIPs": [1]})).status, 400);
    assert_eq!(post(json!({"rateLimitEnabled": "yes"})).status, 400);
    assert_eq!(loc(post(json!({"expiresIn": -1}))), "expiresIn");
    assert_eq!(loc(post(json!({"expiresIn": 0}))), "expiresIn");
    assert_eq!(loc(post(json!({"bogus": 1}))), "bogus");
    assert_eq!(loc(post(json!({"whitelistedIPs": ["nope"]}))), "whitelistedIPs");
    assert_eq!(loc(post(json!({"refillAmount": 5}))), "refillInterval");
    assert_eq!(loc(post(json!({"rateLimitEnabled": true}))), "rateLimitMax");
    assert_eq!(loc(post(json!({"prefix": "bad prefix!"}))), "prefix");
    assert_eq!(loc(post(json!({"metadata": {"big": "x".repeat(20_000)}}))), "metadata");
    assert_eq!(post(json!({"userId": "user_nope"})).status, 404);
    assert_eq!(d.call("POST", "/v1/keys", Some(ADMIN), Some(json!({}))).status, 422, "the admin token names the user");
    // Seed 001's comma-separated allowlist.
    let k = d.ok("POST", "/v1/keys", &jwt, Some(json!({"whitelistedIPs": "1.1.1.1,2.2.2.2,10.10.0.0/16"})), 201);
    assert_eq!(k["whitelistedIPs"], json!(["1.1.1.1", "2.2.2.2", "10.10.0.0/16"]));
    assert_eq!(k["userId"], user.as_str(), "a user's credential defaults to its own user");
    // Creating and updating take the same settings, plus their own fields.
    assert_eq!(loc(post(json!({"enabled": false}))), "enabled", "a key is created enabled");
    let patch = |b: Value| d.call("PATCH", &format!("/v1/keys/{}", k["id"].as_str().unwrap()), Some(&jwt), Some(b));
    assert_eq!(loc(patch(json!({"prefix": "other"}))), "prefix", "the prefix is part of the secret");
    assert_eq!(loc(patch(json!({"userId": user}))), "userId", "a key does not change owner");
    assert_eq!(patch(json!({"enabled": false, "name": "off", "remaining": 3})).status, 200);
}

#[test]
fn key_pagination_is_stable_under_concurrent_inserts() {
    let d = start(|_| {});
    let team = d.team("pages", "Pro");
    let (user, _) = d.user(&team, "pager", "Administrator");
    let initial: HashSet<String> = (0..30).map(|_| d.key(ADMIN, &user).0).collect();
    let base = format!("/v1/keys?teamId={team}&limit=7");

    let first = d.ok("GET", &base, ADMIN, None, 200);
    assert_eq!(
        (first["status"].as_u64(), first["total"].as_u64(), first["count"].as_u64()),
        (Some(200), Some(30), Some(7))
    );
    assert_eq!(first["previousUrl"], Value::Null);
    let next = first["nextUrl"].as_str().unwrap().to_owned();
    let second = d.ok("GET", &next, ADMIN, None, 200);
    let back = d.ok("GET", second["previousUrl"].as_str().unwrap(), ADMIN, None, 200);
    assert_eq!(back["data"], first["data"], "endingBefore gives the previous page back");
    let offset = d.ok("GET", &format!("{base}&offset=7"), ADMIN, None, 200);
    assert_eq!(offset["data"], second["data"]);
    assert_eq!(d.call("GET", &format!("{base}&limit=0"), Some(ADMIN), None).status, 422);
    assert_eq!(d.call("GET", &format!("/v1/keys?teamId={team}&limit=101"), Some(ADMIN), None).status, 422);
    assert_eq!(d.call("GET", &format!("{base}&status=weird"), Some(ADMIN), None).status, 422);
    assert_eq!(d.call("GET", &format!("{base}&startingAfter=a&endingBefore=b"), Some(ADMIN), None).status, 422);

    std::thread::scope(|s| {
        let inserter = s.spawn(|| (0..30).map(|_| d.key(ADMIN, &user).0).collect::<Vec<_>>());
        let mut seen = Vec::new();
        let mut url = base.clone();
        loop {
            let page = d.ok("GET", &url, ADMIN, None, 200);
            let ids: Vec<String> =
                page["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "pages are in id order");
            seen.extend(ids);
            match page["nextUrl"].as_str() {
                Some(n) => url = n.to_owned(),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let added = inserter.join().unwrap();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a key was listed twice");
        for id in &initial {
            assert!(unique.contains(id), "key {id} that existed throughout was skipped");
        }
        assert!(seen.iter().all(|id| initial.contains(id) || added.contains(id)));
    });
    let all = d.ok("GET", &format!("/v1/keys?teamId={team}&limit=100"), ADMIN, None, 200);
    assert_eq!(all["total"], 60);

    // The status filter.
    let some = initial.iter().next().unwrap();
    d.ok("PATCH", &format!("/v1/keys/{some}"), ADMIN, Some(json!({"enabled": false})), 200);
    let inactive = d.ok("GET", &format!("/v1/keys?teamId={team}&status=inactive"), ADMIN, None, 200);
    assert_eq!(inactive["total"], 1);
    assert_eq!(inactive["data"][0]["id"], some.as_str());
    assert_eq!(d.ok("GET", &format!("/v1/keys?teamId={team}&limit=100"), ADMIN, None, 200)["total"], 59);
}

#[test]
fn a_tier_downgrade_below_what_the_team_holds_is_409_unless_forced() {
    let d = start(|_| {});
    let team = d.team("growing", "Start");
    d.user(&team, "grow-one", "Administrator");
    d.user(&team, "grow-two", "Reader");
    let path = format!("/v1/teams/{team}");
    for body in [json!({"tier": "Free"}), json!({"tier": "Free", "force": false})] {
        let r = d.call("PATCH", &path, Some(ADMIN), Some(body));
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "tier_exceeded", "{}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains("2 members > Free's 1"), "{}", r.body);
    }
    assert_eq!(d.call("PATCH", &path, Some(ADMIN), Some(json!({"tier": "Free", "force": "yes"}))).status, 400);
    assert_eq!(d.ok("GET", &path, ADMIN, None, 200)["tier"], "Start", "nothing changed");
    assert_eq!(d.ok("PATCH", &path, ADMIN, Some(json!({"tier": "Free", "force": true})), 200)["tier"], "Free");
    assert_eq!(d.ok("GET", &path, ADMIN, None, 200)["tier"], "Free");
}

#[test]
fn another_teams_objects_answer_404() {
    let d = start(|_| {});
    let a = d.team("a", "Pro");
    let b = d.team("b", "Pro");
    let (_, alice) = d.user(&a, "alice-x", "Administrator");
    let (bob_id, bob) = d.user(&b, "bob-x", "Administrator");
    let (bkey, bsecret) = d.key(&bob, &bob_id);
    let btoken = d.ok("POST", "/v1/access-tokens", &bob, Some(json!({"name": "b"})), 201)["token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/teams/{b}"), None),
        ("PATCH", format!("/v1/teams/{b}"), Some(json!({"tier": "Free"}))),
        ("DELETE", format!("/v1/teams/{b}"), None),
        (
            "POST",
            "/v1/users".into(),
            Some(json!({"teamId": b, "username": "x", "password": "correct horse", "role": "Reader"})),
        ),
        ("GET", format!("/v1/users?teamId={b}"), None),
        ("GET", format!("/v1/users/{bob_id}"), None),
        ("PATCH", format!("/v1/users/{bob_id}"), Some(json!({"status": "Disabled"}))),
        ("DELETE", format!("/v1/users/{bob_id}"), None),
        ("GET", format!("/v1/keys?teamId={b}"), None),
        ("POST", "/v1/keys".into(), Some(json!({"userId": bob_id}))),
        ("GET", format!("/v1/keys/{bkey}"), None),
        ("PATCH", format!("/v1/keys/{bkey}"), Some(json!({"enabled": false}))),
        ("DELETE", format!("/v1/keys/{bkey}"), None),
        ("GET", format!("/v1/access-tokens/{btoken}"), None),
        ("DELETE", format!("/v1/access-tokens/{btoken}"), None),
    ];
    for (m, p, body) in cases {
        let r = d.call(m, &p, Some(&alice), body);
        assert_eq!(r.status, 404, "{m} {p}: {}", r.body);
    }
    // Listings show only the caller's own.
    let keys = d.ok("GET", "/v1/keys", &alice, None, 200);
    assert_eq!(keys["total"], 0);
    assert_eq!(d.ok("GET", "/v1/access-tokens", &alice, None, 200)["items"], json!([]));
    assert_eq!(d.ok("DELETE", "/v1/access-tokens", &alice, None, 200)["revokedCount"], 0);
    // Nothing of team b changed.
    assert_eq!(d.verify(&bsecret)["valid"], true);
    assert_eq!(d.verify(&bob)["valid"], true);
    assert_eq!(d.ok("GET", &format!("/v1/access-tokens/{btoken}"), &bob, None, 200)["revokedAt"], Value::Null);
    assert_eq!(d.ok("GET", &format!("/v1/teams/{b}"), ADMIN, None, 200)["tier"], "Pro");
}

#[test]
fn each_role_does_what_seed_000_allows() {
    let d = start(|_| {});
    let team = d.team("roles", "Pro");
    let roles = ["Administrator", "Manager", "Author", "Reader"];
    let users: Vec<(String, String)> = roles.iter().map(|r| d.user(&team, &format!("{r}-user"), r)).collect();
    for (i, role) in roles.iter().enumerate() {
        let (me, jwt) = &users[i];
        // Everyone manages their own credentials (src/authz.rs).
        let (can_create, can_delete) = (true, true);
        let code = |ok: bool, yes: u16| if ok { yes } else { 403 };
        // Reading.
        d.ok("GET", &format!("/v1/teams/{team}"), jwt, None, 200);
        d.ok("GET", "/v1/users", jwt, None, 200);
        d.ok("GET", "/v1/keys", jwt, None, 200);
        d.ok("GET", &format!("/v1/users/{me}"), jwt, None, 200);
        // Accounts: only an Administrator creates them (no Argon2 work is done on a 403).
        let new_user = json!({"username": format!("new-{role}"), "password": "correct horse", "role": "Reader"});
        assert_eq!(
            d.call("POST", "/v1/users", Some(jwt), Some(new_user)).status,
            code(*role == "Administrator", 201),
            "{role}"
        );
        // Keys.
        let r = d.call("POST", "/v1/keys", Some(jwt), Some(json!({"name": role})));
        assert_eq!(r.status, code(can_create, 201), "{role} creates a key: {}", r.body);
        let (kid, _) = d.key(ADMIN, me);
        let r = d.call("PATCH", &format!("/v1/keys/{kid}"), Some(jwt), Some(json!({"name": "renamed"})));
        assert_eq!(r.status, code(can_create, 200), "{role} updates a key");
        assert_eq!(
            d.call("DELETE", &format!("/v1/keys/{kid}"), Some(jwt), None).status,
            code(can_delete, 204),
            "{role} deletes a key"
        );
        // Access tokens.
        let r = d.call("POST", "/v1/access-tokens", Some(jwt), Some(json!({"name": "t"})));
        assert_eq!(r.status, code(can_create, 201), "{role} creates a token");
        assert_eq!(
            d.call("DELETE", "/v1/access-tokens", Some(jwt), None).status,
            code(can_delete, 200),
            "{role} revokes tokens"
        );
        // Teams are never a role's to change.
        assert_eq!(d.call("PATCH", &format!("/v1/teams/{team}"), Some(jwt), Some(json!({"tier": "Free"}))).status, 403);
        assert_eq!(d.call("DELETE", &format!("/v1/teams/{team}"), Some(jwt), None).status, 403);
        // Nobody raises themselves above their role.
        if *role != "Administrator" {
            let r = d.call("PATCH", &format!("/v1/users/{me}"), Some(jwt), Some(json!({"role": "Administrator"})));
            assert_eq!(r.status, 403, "{role} promotes itself: {}", r.body);
            let admin_id = &users[0].0;
            assert_eq!(
                d.call("DELETE", &format!("/v1/users/{admin_id}"), Some(jwt), None).status,
                403,
                "{role} deletes the admin"
            );
        }
    }
    // An API key acts with its owner's role, and within its own permissions.
    let (reader, _) = &users[3];
    let (_, reader_key) = d.key(ADMIN, reader);
    assert_eq!(d.call("GET", "/v1/keys", Some(&reader_key), None).status, 200);
    assert_eq!(d.call("POST", "/v1/keys", Some(&reader_key), Some(json!({}))).status, 403);
    let (admin, _) = &users[0];
    let narrow =
        d.ok("POST", "/v1/keys", ADMIN, Some(json!({"userId": admin, "permissions": {"keys": ["read"]}})), 201);
    let narrow = narrow["key"].as_str().unwrap();
    assert_eq!(d.call("GET", "/v1/keys", Some(narrow), None).status, 200);
    assert_eq!(d.call("GET", "/v1/users", Some(narrow), None).status, 403);
    // A role change applies to the very next call, and revokes the user's sessions.
    let (author, author_jwt) = &users[2];
    let (_, author_key) = d.key(ADMIN, author);
    let perms = |k: &str| d.verify(k)["permissions"].clone();
    assert_eq!(perms(&author_key), json!({"*": ["create", "read", "update"], "users": ["read", "update"]}));
    d.ok("PATCH", &format!("/v1/users/{author}"), &users[0].1, Some(json!({"role": "Reader"})), 200);
    assert_eq!(d.call("POST", "/v1/keys", Some(author_jwt), Some(json!({}))).status, 401);
    assert_eq!(perms(&author_key), json!({"*": ["read"]}), "the key's grant follows its owner's role");
}

#[test]
fn access_tokens_follow_seed_004() {
    let d = start(|_| {});
    let team = d.team("pat", "Pro");
    let (_, jwt) = d.user(&team, "pat-user", "Administrator");
    let post = |b: Value| d.call("POST", "/v1/access-tokens", Some(&jwt), Some(b));
    let r = post(json!({"name": ""}));
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["body", "name"])));
    assert_eq!(post(json!({"name": "x".repeat(256)})).status, 422);
    assert_eq!(post(json!({})).status, 422);
    assert_eq!(post(json!({"name": 5})).status, 400);
    assert_eq!(post(json!({"name": "x", "tokenType": "weird"})).status, 422);
    assert_eq!(post(json!({"name": "x", "expiresInDays": 0})).status, 422);
    assert_eq!(d.call("POST", "/v1/access-tokens", Some(ADMIN), Some(json!({"name": "x"}))).status, 400);

    let mut plaintexts = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let ty = if i == 4 { "service" } else { "personal" };
        let r = d.ok(
            "POST",
            "/v1/access-tokens",
            &jwt,
            Some(json!({"name": format!("t{i}"), "expiresInDays": 30, "tokenType": ty})),
            201,
        );
        assert_eq!(r["token"]["tokenType"], ty);
        assert!(r["token"]["expiresAt"].is_string());
        assert!(r["plaintext"].as_str().unwrap().starts_with(r["token"]["tokenPrefix"].as_str().unwrap()));
        plaintexts.push(r["plaintext"].as_str().unwrap().to_owned());
        ids.push(r["token"]["id"].as_str().unwrap().to_owned());
    }
    // Cursor pagination.
    let p1 = d.ok("GET", "/v1/access-tokens?limit=2", &jwt, None, 200);
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let mut all: Vec<Value> = p1["items"].as_array().unwrap().clone();
    let mut cursor = p1["nextCursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let p = d.ok("GET", &format!("/v1/access-tokens?limit=2&cursor={c}"), &jwt, None, 200);
        all.extend(p["items"].as_array().unwrap().iter().cloned());
        cursor = p["nextCursor"].as_str().map(str::to_owned);
    }
    let mut listed: Vec<&str> = all.iter().map(|t| t["id"].as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(listed, expected, "every token once, across pages");
    assert_eq!(
        d.ok("GET", "/v1/access-tokens?tokenType=service", &jwt, None, 200)["items"].as_array().unwrap().len(),
        1
    );
    assert_eq!(d.call("GET", "/v1/access-tokens?limit=201", Some(&jwt), None).status, 422);
    assert_eq!(d.call("GET", "/v1/access-tokens?cursor=garbage", Some(&jwt), None).status, 422);
    assert_eq!(d.call("GET", "/v1/access-tokens?includeRevoked=maybe", Some(&jwt), None).status, 422);

    // Revoke one: denied on the next verification, hidden unless asked for.
    assert_eq!(d.verify(&plaintexts[0])["valid"], true);
    d.ok("DELETE", &format!("/v1/access-tokens/{}", ids[0]), &jwt, None, 204);
    assert_eq!(d.verify(&plaintexts[0])["code"], "REVOKED");
    assert!(d.ok("GET", &format!("/v1/access-tokens/{}", ids[0]), &jwt, None, 200)["revokedAt"].is_string());
    assert_eq!(d.ok("GET", "/v1/access-tokens", &jwt, None, 200)["items"].as_array().unwrap().len(), 4);
    assert_eq!(
        d.ok("GET", "/v1/access-tokens?includeRevoked=true", &jwt, None, 200)["items"].as_array().unwrap().len(),
        5
    );
    assert_eq!(d.call("GET", "/v1/access-tokens/00000000-0000-4000-8000-000000000000", Some(&jwt), None).status, 404);

    // Revoke all but the one making the call (seed 004's default).
    let current = &plaintexts[1];
    assert_eq!(d.ok("DELETE", "/v1/access-tokens", current, None, 200)["revokedCount"], 3);
    assert_eq!(d.verify(current)["valid"], true);
    assert_eq!(d.verify(&plaintexts[2])["code"], "REVOKED");
    assert_eq!(d.ok("DELETE", "/v1/access-tokens?exclude_current=false", current, None, 200)["revokedCount"], 1);
    assert_eq!(d.call("GET", "/v1/access-tokens", Some(current), None).status, 401);
}

#[test]
fn admin_api_config_section() {
    let c = Config::parse("[admin_api]\nallow_query_token = true\nlogin_failures_per_minute = 5").unwrap();
    c.validate().unwrap();
    assert!(c.admin_api.allow_query_token);
    assert!(!Config::default().admin_api.allow_query_token, "query tokens are off by default");
    let e = Config::parse("[admin_api]\nlogin_failures_per_minute = 0").unwrap().validate().unwrap_err();
    assert!(e.0.contains("admin_api.login_failures_per_minute"), "{}", e.0);
    assert!(Config::parse("admin_token = \"x\"").is_err(), "the admin token is never read from the file");
}

#[test]
fn query_strings_and_path_ids_are_decoded_as_urls_are() {
    let d = start(|_| {});
    let team = d.team("decoding", "Pro");
    let (user, _) = d.user(&team, "decoder", "Administrator");
    for _ in 0..6 {
        d.key(ADMIN, &user);
    }
    let base = format!("/v1/keys?teamId={team}");
    // `%+5` is no escape: the value is "% 5", not an integer (the hand-made
    // decoder took `+5` for hex digits, and listed 5 keys).
    let r = d.call("GET", &format!("{base}&limit=%+5"), Some(ADMIN), None);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["detail"][0]["loc"], json!(["query", "limit"]), "{}", r.body);
    assert_eq!(d.ok("GET", &format!("{base}&limit=%35"), ADMIN, None, 200)["count"], 5, "%35 is 5");
    // Escaped characters in a value and in a path segment.
    let escaped = team.replace('_', "%5F").replace('-', "%2D");
    assert_ne!(escaped, team, "the team id has a character to escape: {team}");
    assert_eq!(d.ok("GET", &format!("/v1/keys?teamId={escaped}&limit=1"), ADMIN, None, 200)["total"], 6);
    assert_eq!(d.ok("GET", &format!("/v1/teams/{escaped}"), ADMIN, None, 200)["id"], team.as_str());
    // Unknown and repeated parameters are refused, named.
    let r = d.call("GET", &format!("{base}&bogus=1"), Some(ADMIN), None);
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["query", "bogus"])), "{}", r.body);
    assert_eq!(r.body["detail"][0]["type"], "extra_forbidden");
    let r = d.call("GET", &format!("{base}&limit=1&limit=2"), Some(ADMIN), None);
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["query", "limit"])), "{}", r.body);
    let r = d.call("GET", "/v1/access-tokens?includeRevoked=maybe", Some(ADMIN), None);
    assert_eq!((r.status, &r.body["detail"][0]["type"]), (422, &json!("bool_parsing")), "{}", r.body);
    // A path segment that is not UTF-8 once decoded is a JSON 400.
    let r = d.call("GET", "/v1/teams/%ff", Some(ADMIN), None);
    assert_eq!((r.status, r.body.is_object()), (400, true), "{}", r.body);
}

/// Admin-API calls are not the team's API requests: a Free team (2 requests a
/// minute) administers itself without 429s, and its API traffic keeps its
/// whole minute; a key used to log in spends exactly one use.
#[test]
fn admin_calls_do_not_count_toward_the_tier_request_limit() {
    let d = start(|_| {});
    let team = d.team("free-admins", "Free");
    let (user, jwt) = d.user(&team, "frida", "Administrator");
    let mut ids = Vec::new();
    for _ in 0..6 {
        let b = d.ok("POST", "/v1/keys", &jwt, Some(json!({"userId": user, "remaining": 3})), 201);
        ids.push((b["id"].as_str().unwrap().to_owned(), b["key"].as_str().unwrap().to_owned()));
    }
    d.ok("GET", "/v1/keys", &jwt, None, 200);
    // A login with a key spends one of its uses, not two, and no team request.
    let (key_id, secret) = &ids[0];
    let r = d.raw("POST", "/v1/auth/token", &[("Authorization", &basic(secret, ""))], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(d.ok("GET", &format!("/v1/keys/{key_id}"), &jwt, None, 200)["remaining"], 2);
    // The team's minute is whole: two verifications pass, the third is limited.
    assert_eq!(d.verify(&ids[1].1)["valid"], true);
    assert_eq!(d.verify(&ids[1].1)["valid"], true);
    assert_eq!(d.verify(&ids[1].1)["code"], "TEAM_RATE_LIMITED");
    // And the administrator can still act (revoke a key) at the limit.
    let r = d.call("DELETE", &format!("/v1/keys/{}", ids[2].0), Some(&jwt), None);
    assert!(r.status == 200 || r.status == 204, "{} {}", r.status, r.body);
}
