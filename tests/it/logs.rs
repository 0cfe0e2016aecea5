//! No secret in any log line: a full session against the real `tollgate`
//! executable at trace level (human format) and at debug level (JSON), then a
//! search of everything it wrote for every secret the session created or
//! presented: the admin token, passwords (right and wrong), API keys, access
//! tokens, JWTs, the HS256 key secret.

use crate::common;

use common::{ADMIN_TOKEN, BinDaemon, basic, http};
use serde_json::json;
use tollgate_protocol::{Client, VerifyRequest};

/// The HS256 verification key's secret, from the environment.
const HS_SECRET: &str = "hs256-secret-for-the-log-test-0123456789";

fn config(level: &str) -> String {
    format!(
        r#"
[tiers.Pro]
requests_per_minute = "unlimited"
members = "unlimited"
documents = 5000
log_retention_days = "unlimited"

[jwt]
signing_kid = "ed"
[[jwt.keys]]
kid = "ed"
alg = "EdDSA"
private_key_file = "{}/tests/keys/ed25519.pem"
[[jwt.keys]]
kid = "hs"
alg = "HS256"
secret_env = "TG_LOG_TEST_HS"

[admin_api]
allow_query_token = false

[log]
level = "{level}"
"#,
        env!("CARGO_MANIFEST_DIR")
    )
}

/// What the session created, and what must not be in the logs.
struct Session {
    secrets: Vec<String>,
    /// Ids that the logs should mention (request paths), to show that the
    /// search looks at lines about these very objects.
    key_id: String,
}

fn session(d: &BinDaemon) -> Session {
    let mut secrets = vec![ADMIN_TOKEN.to_owned(), HS_SECRET.to_owned()];
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let post = |path: &str, auth: &str, body: serde_json::Value| {
        http(d.addr, "POST", path, &[("Authorization", auth)], Some(&body.to_string()))
    };

    let team =
        post("/v1/teams", &admin, json!({"name": "logs", "tier": "Pro"})).json()["id"].as_str().unwrap().to_owned();
    let password = "correct horse battery staple 1";
    let wrong = "Tr0ub4dor&3-wrong-password";
    let other_password = "a second users password 99";
    secrets.extend([password.to_owned(), wrong.to_owned(), other_password.to_owned()]);
    let body = json!({"teamId": team, "username": "alice", "password": password, "role": "Administrator"});
    let alice = post("/v1/users", &admin, body).json()["id"].as_str().unwrap().to_owned();
    let body = json!({"teamId": team, "username": "bob", "password": other_password, "role": "Reader"});
    assert_eq!(post("/v1/users", &admin, body).status, 201);

    // Logins: password, wrong password, unknown user, API key.
    let login = |auth: &str| http(d.addr, "POST", "/v1/auth/token", &[("Authorization", auth)], None);
    let r = login(&basic("alice", password));
    assert_eq!(r.status, 200, "{}", r.text);
    let jwt = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(login(&basic("alice", wrong)).status, 401);
    assert_eq!(login(&basic("nobody", wrong)).status, 401);
    assert_eq!(login(&basic(wrong, password)).status, 401, "a password typed as the username");
    let bearer = format!("Bearer {jwt}");

    // Keys and tokens, created with the JWT.
    let k =
        post("/v1/keys", &bearer, json!({"name": "ci", "permissions": {"files": ["read"], "keys": ["read"]}})).json();
    let key = k["key"].as_str().unwrap().to_owned();
    let key_id = k["id"].as_str().unwrap().to_owned();
    let k2 = post("/v1/keys", &admin, json!({"userId": alice})).json();
    let doomed = k2["key"].as_str().unwrap().to_owned();
    let doomed_id = k2["id"].as_str().unwrap().to_owned();
    let t = post("/v1/access-tokens", &bearer, json!({"name": "laptop"})).json();
    let token = t["plaintext"].as_str().unwrap_or_else(|| panic!("no token secret in {t}")).to_owned();
    let token_id = t["token"]["id"].as_str().unwrap().to_owned();
    let r = login(&basic(&key, ""));
    assert_eq!(r.status, 200, "{}", r.text);
    let jwt_from_key = r.json()["token"].as_str().unwrap().to_owned();
    secrets.extend([jwt.clone(), key.clone(), doomed.clone(), token.clone(), jwt_from_key.clone()]);

    // Admin calls with every kind of credential, in every place one is read from.
    let get = |path: &str, headers: &[(&str, &str)]| http(d.addr, "GET", path, headers, None).status;
    assert_eq!(get(&format!("/v1/keys/{key_id}"), &[("Authorization", &bearer)]), 200);
    assert_eq!(get(&format!("/v1/keys/{key_id}"), &[("X-API-Key", &key)]), 200);
    assert_eq!(get("/v1/access-tokens", &[("Authorization", &format!("Bearer {token}"))]), 200);
    // A JWT exchanged from the key holds the key's grant (keys:read, not teams:read).
    assert_eq!(get(&format!("/v1/keys/{key_id}"), &[("Cookie", &format!("tollgate_token={jwt_from_key}"))]), 200);
    assert_eq!(get(&format!("/v1/teams/{team}"), &[("Cookie", &format!("vai_token={jwt_from_key}"))]), 403);
    assert_eq!(get(&format!("/v1/keys?token={key}"), &[]), 401, "query tokens are off");
    assert_eq!(get(&format!("/v1/keys/{key}"), &[("Authorization", &bearer)]), 404, "a secret pasted into a path");
    assert_eq!(get(&format!("/v1/keys/{jwt}"), &[("Authorization", &admin)]), 404);
    // Secrets in paths of calls that are refused (no credential) and that run.
    assert_eq!(get(&format!("/v1/keys/{key}"), &[]), 401, "a key in a path, no credential");
    assert_eq!(get(&format!("/v1/keys/{token}"), &[("Authorization", &admin)]), 404, "a token in a path");
    assert_eq!(get(&format!("/v1/keys/{ADMIN_TOKEN}"), &[("Authorization", &admin)]), 404, "the admin token");
    assert_eq!(get(&format!("/v1/keys/{key_id}"), &[("Authorization", &format!("Bearer {}", typo_of(&key)))]), 401);

    // Verifications, good and bad, over HTTP, /auth and the socket.
    let verify = |c: &str| {
        http(d.addr, "POST", "/v1/verify", &[], Some(&json!({"credential": c}).to_string())).json()["valid"] == true
    };
    let typo = typo_of(&key);
    let forged = format!("{}.AAAA", jwt.rsplit_once('.').unwrap().0);
    assert!(verify(&key) && verify(&token) && verify(&jwt));
    assert!(!verify(&typo) && !verify(&forged) && !verify("nonsense"));
    assert_eq!(http(d.addr, "GET", "/auth", &[("Authorization", &bearer)], None).status, 200);
    assert_eq!(http(d.addr, "GET", "/auth", &[("X-API-Key", &typo)], None).status, 401);
    assert_eq!(http(d.addr, "GET", "/auth", &[("Cookie", &format!("tollgate_token={token}"))], None).status, 200);
    let mut c = Client::connect(&d.socket).unwrap();
    for cred in [&key, &token, &jwt, &jwt_from_key, &typo, &forged] {
        c.verify(&VerifyRequest::new(cred.as_str())).unwrap();
    }
    let perms = [("files", "write")];
    assert!(!c.verify(&VerifyRequest::new(key.as_str()).permissions(&perms)).unwrap().is_allow());

    // Revocations and deletions, then the same credentials again.
    let del = |path: &str| http(d.addr, "DELETE", path, &[("Authorization", &bearer)], None).status;
    assert_eq!(del(&format!("/v1/access-tokens/{token_id}")), 204);
    assert_eq!(del(&format!("/v1/keys/{doomed_id}")), 204);
    assert!(!verify(&token) && !verify(&doomed));
    assert!(!c.verify(&VerifyRequest::new(token.as_str())).unwrap().is_allow());
    secrets.push(typo);
    Session { secrets, key_id }
}

/// `secret` with its last character changed: it fails the checksum.
fn typo_of(secret: &str) -> String {
    let mut typo = secret.to_owned().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    String::from_utf8(typo).unwrap()
}

/// Every string that must not be in the logs: each secret, and the parts
/// that are secret on their own (the random body of a key or token, a JWT's
/// signature).
fn forbidden(secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for s in secrets {
        out.push(s.clone());
        if s.starts_with("eyJ") {
            out.push(s.rsplit('.').next().unwrap().to_owned());
        } else if let Some((_, body)) = s.rsplit_once('_')
            && body.len() >= 30
        {
            out.push(body.to_owned());
        }
    }
    out
}

fn assert_no_secret(log: &str, secrets: &[String]) {
    for s in forbidden(secrets) {
        if let Some(line) = log.lines().find(|l| l.contains(&s)) {
            panic!("a secret ({}…) is in the log:\n{line}", &s[..s.len().min(12)]);
        }
    }
}

#[test]
fn no_secret_in_trace_level_human_logs() {
    let d = BinDaemon::start_with_env(&config("trace"), &[], &[("TG_LOG_TEST_HS", HS_SECRET)]);
    let s = session(&d);
    let log = d.stop();
    // The search covers a real log of this session, not an empty one.
    assert!(log.lines().count() > 100, "{log}");
    assert!(log.contains(&format!("path=/v1/keys/{}", s.key_id)), "at debug, request lines name the objects");
    assert!(log.contains("path=/v1/keys/<credential>"), "a secret in a path is replaced");
    assert!(log.contains("verdict=\"NOT_FOUND\"") && log.contains("verdict=\"REVOKED\""), "verdicts are logged");
    assert!(log.contains("conn{conn=") && log.contains("req{id="), "socket lines carry connection and request ids");
    assert!(log.contains("http{req="), "HTTP lines carry request ids");
    assert!(log.contains("TRACE") && log.contains("DEBUG"));
    assert_no_secret(&log, &s.secrets);
}

/// No secret in any record the daemon stored: the same session, then a
/// search of the raw bytes of every file of the data directory (sled's log
/// keeps old versions of records too, so this covers what was ever written,
/// audit events included) for every secret and its random part, including
/// the mistyped key and the password typed as a username.
#[test]
fn no_secret_in_the_data_directory() {
    let mut d = BinDaemon::start_with_env(&config("info"), &[], &[("TG_LOG_TEST_HS", HS_SECRET)]);
    let s = session(&d);
    // Stopped (everything flushed), with its directory kept until `d` drops.
    d.signal("TERM");
    assert!(d.child.wait().unwrap().success(), "{}", d.log_text());
    let data = d.dir.path().join("data");
    let all = common::files_under(&data);
    let contains = |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    // The search looks at the records of this session: the audit events name the key.
    assert!(all.iter().any(|(_, b)| contains(b, &s.key_id)), "no record names {}", s.key_id);
    assert!(all.iter().any(|(_, b)| contains(b, "[redacted api key]")), "the key in a path is redacted");
    for secret in forbidden(&s.secrets) {
        for (path, bytes) in &all {
            assert!(
                !contains(bytes, &secret),
                "a secret ({}…) is in {}",
                &secret[..secret.len().min(12)],
                path.display()
            );
        }
    }
}

#[test]
fn no_secret_in_json_logs_and_every_line_is_json() {
    let d = BinDaemon::start_with_env(&config("debug"), &["--log-format", "json"], &[("TG_LOG_TEST_HS", HS_SECRET)]);
    let s = session(&d);
    let log = d.stop();
    let mut requests = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        if v["fields"]["message"] == "request" {
            requests += 1;
            assert_eq!(v["target"], "tollgate::access", "{line}");
            assert_eq!(v["level"], "INFO", "{line}");
            assert!(v["fields"]["request_id"].is_string(), "a request line carries its id: {line}");
            assert!(v["fields"]["route"].is_string() && v["fields"]["method"].is_string(), "{line}");
            assert!(v["fields"]["status"].is_u64() && v["fields"]["micros"].is_u64(), "{line}");
            assert_eq!(v["fields"]["client"], "127.0.0.1", "{line}");
            assert!(v["fields"]["path"].is_string(), "at debug level the path too: {line}");
            if v["fields"]["route"] == "/auth" || v["fields"]["route"] == "/v1/verify" {
                assert!(v["fields"]["verdict"].is_string(), "a verification's line has its verdict: {line}");
            }
        }
    }
    assert!(requests > 20, "{requests} request lines in:\n{log}");
    assert!(log.contains(&format!("/v1/keys/{}", s.key_id)));
    assert_no_secret(&log, &s.secrets);
}

/// At INFO (the default level) one access line per request, in the human
/// format: method, route template (never the raw path, so no id and no secret
/// pasted into a path), status, time, client, request id, and the verdict of
/// a verification.
#[test]
fn one_access_line_per_request_at_info_with_routes_not_paths() {
    let d = BinDaemon::start_with_env(&config("info"), &[], &[("TG_LOG_TEST_HS", HS_SECRET)]);
    let s = session(&d);
    let r = http(d.addr, "GET", "/healthz", &[("X-Request-Id", "probe-7")], None);
    assert_eq!(r.header("x-request-id"), Some("probe-7"));
    assert_eq!(http(d.addr, "GET", "/auth", &[], None).status, 401);
    let log = d.stop();
    let access: Vec<&str> = log.lines().filter(|l| l.contains("tollgate::access")).collect();
    assert!(access.len() > 30, "{} access lines in:\n{log}", access.len());
    for l in &access {
        assert!(l.contains(" INFO "), "{l}");
        for field in ["method=", "route=", "status=", "micros=", "client=127.0.0.1", "request_id="] {
            assert!(l.contains(field), "{field} missing: {l}");
        }
        assert!(!l.contains("path="), "no raw path at info: {l}");
        assert!(!l.contains(&s.key_id), "no id from a path: {l}");
    }
    let has = |parts: &[&str]| access.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    assert!(has(&["method=GET", "route=/v1/keys/{id}", "status=200"]), "templates, not paths");
    assert!(has(&["method=GET", "route=/v1/keys/{id}", "status=404"]), "a secret pasted into a path");
    assert!(has(&["route=/v1/auth/token", "status=401"]));
    assert!(has(&["route=/auth", "status=200", "verdict=ALLOW"]));
    assert!(has(&["route=/auth", "status=401", "verdict=MALFORMED"]));
    assert!(has(&["route=/auth", "status=401", "verdict=MISSING_CREDENTIAL"]));
    assert!(has(&["route=/v1/verify", "status=200", "verdict=ALLOW"]));
    assert!(has(&["route=/v1/verify", "status=200", "verdict=REVOKED"]));
    assert!(has(&["route=/healthz", "request_id=probe-7"]), "an incoming request id is kept");
    let unverified = access.iter().filter(|l| !l.contains("route=/auth") && !l.contains("route=/v1/verify"));
    assert!(unverified.clone().all(|l| !l.contains("verdict=")), "only verifications have a verdict");
    assert_no_secret(&log, &s.secrets);
}
