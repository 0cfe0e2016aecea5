//! The `tollgate-admin` CLI and client end to end against the real daemon
//! (`server::serve`, temp data dir, free port): the CLI is driven through
//! `tollgate_admin::run`, the entry point its binary's `main` calls (the binary
//! itself, as a subprocess, is tested in admin/tests/bin.rs), over plain HTTP
//! and over the daemon's HTTPS listener. The daemon and the CLI share their
//! JSON types (the `tollgate-api` crate), so there is no mirror to check.

use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_admin::cli::{EXIT_CONNECTION, EXIT_REFUSED, EXIT_USAGE};
use tollgate_admin::{CliError, Output};

mod common;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon as Daemon};

fn start() -> Daemon {
    common::start_http(|_| {})
}

impl Daemon {
    /// Runs the CLI with `--url` and `--token`.
    fn cli(&self, token: &str, args: &[&str]) -> Result<Output, CliError> {
        let mut all = vec!["tollgate-admin", "--url", &self.url, "--token", token];
        all.extend_from_slice(args);
        tollgate_admin::run(all)
    }

    fn ok(&self, token: &str, args: &[&str]) -> Output {
        self.cli(token, args).unwrap_or_else(|e| panic!("{args:?} failed ({}): {}", e.code, e.message))
    }

    fn json(&self, token: &str, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(token, &a).stdout).unwrap()
    }

    fn err(&self, token: &str, args: &[&str]) -> CliError {
        match self.cli(token, args) {
            Ok(o) => panic!("{args:?} succeeded: {}", o.stdout),
            Err(e) => e,
        }
    }
}

#[test]
fn first_session_through_the_cli() {
    let d = start();

    // Team and user with the admin token.
    let team = d.json(ADMIN, &["teams", "create", "acme", "--tier", "Pro"]);
    let team_id = team["id"].as_str().unwrap().to_owned();
    assert_eq!(team["tier"], "Pro");
    let human = d.ok(ADMIN, &["teams", "get", &team_id]).stdout;
    assert!(human.contains("tier       Pro"), "{human}");
    let table = d.ok(ADMIN, &["teams", "list"]).stdout;
    assert!(table.starts_with("ID") && table.contains(&team_id) && table.contains("acme"), "{table}");

    let user = d.json(
        ADMIN,
        &["users", "create", "alice", "--role", "Administrator", "--password", "correct horse", "--team", &team_id],
    );
    let user_id = user["id"].as_str().unwrap().to_owned();
    let list = d.ok(ADMIN, &["users", "list", "--team", &team_id]).stdout;
    assert!(list.starts_with("ID "), "{list}");
    assert!(list.contains("alice") && list.contains("Administrator"), "{list}");

    // Log in: the JWT is the whole of stdout.
    let jwt = d.ok("unused", &["login", "alice", "--password", "correct horse"]).stdout.trim().to_owned();
    assert_eq!(jwt.split('.').count(), 3, "{jwt}");
    let bad = d.err("unused", &["login", "alice", "--password", "wrong"]);
    assert_eq!(bad.code, EXIT_REFUSED);
    assert!(bad.message.contains("invalid_credentials"), "{}", bad.message);

    // A key, created with the user's JWT; the secret is shown once with a warning.
    let created = d.ok(&jwt, &["keys", "create", "--name", "ci", "--permission", "docs:read", "--remaining", "100"]);
    assert!(created.stderr.contains("only time"), "{}", created.stderr);
    let secret =
        created.stdout.lines().find_map(|l| l.strip_prefix("secret: ")).expect("the secret is printed").to_owned();
    let key_id = created.stdout.lines().find_map(|l| l.strip_prefix("id")).unwrap().trim().to_owned();
    let key: Value = d.json(&jwt, &["keys", "get", &key_id]);
    assert!(key.get("key").is_none(), "the secret is never shown again");

    // List: a table, then the daemon's envelope in --json.
    let table = d.ok(&jwt, &["keys", "list"]).stdout;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("ID") && header.contains("STATUS"), "{table}");
    let row = lines.next().unwrap();
    assert!(row.starts_with(&key_id) && row.contains("active"), "{table}");
    // Columns line up: each header starts where its column's cells start.
    assert_eq!(header.find("STATUS"), row.find("active"), "{table}");
    assert!(table.contains("1 of 1 keys"), "{table}");
    let listed = d.json(&jwt, &["keys", "list"]);
    assert_eq!((listed["status"].as_u64(), listed["total"].as_u64()), (Some(200), Some(1)));
    assert_eq!(listed["data"][0]["id"], key_id.as_str());
    let admin_list = d.json(ADMIN, &["keys", "list", "--team", &team_id, "--limit", "1"]);
    assert_eq!(admin_list["count"], 1);

    // Verify like a protected service.
    let allowed = d.ok("unused", &["verify", &secret, "--permission", "docs:read"]).stdout;
    assert!(allowed.contains("ALLOW") && allowed.contains(&user_id), "{allowed}");
    let v = d.json("unused", &["verify", &secret]);
    assert_eq!((v["valid"].as_bool(), v["remaining"].as_u64()), (Some(true), Some(98)));
    let denied = d.err("unused", &["verify", &secret, "--permission", "docs:delete"]);
    assert_eq!(denied.code, EXIT_REFUSED);
    assert!(denied.stdout.contains("INSUFFICIENT_PERMISSIONS"), "{}", denied.stdout);

    // Update, then delete the key: it verifies as unknown.
    let up = d.json(&jwt, &["keys", "update", &key_id, "--disable", "--unlimited"]);
    assert_eq!((up["enabled"].as_bool(), &up["remaining"]), (Some(false), &Value::Null));
    assert!(d.ok(&jwt, &["keys", "list", "--inactive"]).stdout.contains(&key_id));
    assert_eq!(d.ok(&jwt, &["keys", "delete", &key_id]).stdout, format!("deleted key {key_id}\n"));
    let gone = d.err("unused", &["--json", "verify", &secret]);
    assert_eq!(gone.code, EXIT_REFUSED);
    let verdict: Value = serde_json::from_str(&gone.stdout).unwrap();
    assert_eq!((verdict["valid"].as_bool(), verdict["code"].as_str()), (Some(false), Some("NOT_FOUND")));

    // Access tokens belong to the calling user.
    let tok = d.json(&jwt, &["tokens", "create", "laptop", "--days", "30"]);
    let plaintext = tok["plaintext"].as_str().unwrap().to_owned();
    let tok_id = tok["token"]["id"].as_str().unwrap().to_owned();
    assert!(d.ok(&jwt, &["tokens", "list"]).stdout.contains(&tok_id));
    assert!(d.ok(&plaintext, &["tokens", "get", &tok_id]).stdout.contains("laptop"));
    let r = d.json(&jwt, &["tokens", "revoke-all"]);
    assert_eq!(r["revokedCount"], 1);
    assert_eq!(d.err(&plaintext, &["tokens", "list"]).code, EXIT_REFUSED);

    // The audit log: the key's life and its denials (written asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    let denials = loop {
        let d = d.json(&jwt, &["logs", "--outcome", "denied"]);
        // (The deleted key's NOT_FOUND names no team: counted, not in the team's log.)
        let found = d["items"].as_array().is_some_and(|i| i.iter().any(|e| e["detail"] == "INSUFFICIENT_PERMISSIONS"));
        if found || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let codes: Vec<&str> = denials["items"].as_array().unwrap().iter().filter_map(|e| e["detail"].as_str()).collect();
    assert!(codes.contains(&"INSUFFICIENT_PERMISSIONS"), "{codes:?}");
    let log = d.ok(&jwt, &["logs", "--action", "DeleteKey"]).stdout;
    assert!(log.starts_with("AT ") && log.contains(&key_id) && log.contains("success"), "{log}");

    // Tier change and team deletion need the admin token.
    let e = d.err(&jwt, &["teams", "set-tier", &team_id, "Free"]);
    assert!(e.message.starts_with("HTTP 403"), "{}", e.message);
    let t = d.json(ADMIN, &["teams", "set-tier", &team_id, "Master"]);
    assert_eq!(t["tier"], "Master");
    // Two members do not fit the Free tier: refused, unless forced.
    d.ok(ADMIN, &["users", "create", "second", "--role", "Reader", "--password", "correct horse", "--team", &team_id]);
    let e = d.err(ADMIN, &["teams", "set-tier", &team_id, "Free"]);
    assert!(e.message.contains("409") && e.message.contains("members"), "{}", e.message);
    assert_eq!(d.json(ADMIN, &["teams", "set-tier", &team_id, "Free", "--force"])["tier"], "Free");
    d.ok(ADMIN, &["teams", "set-tier", &team_id, "Master"]);

    // Sessions: one by its jti, then every one of the user's.
    let j1 = d.ok("unused", &["login", "alice", "--password", "correct horse"]).stdout.trim().to_owned();
    let j2 = d.ok("unused", &["login", "alice", "--password", "correct horse"]).stdout.trim().to_owned();
    let jti = d.json("unused", &["verify", &j1])["credentialId"].as_str().unwrap().to_owned();
    d.ok(&j1, &["users", "revoke-session", &jti]);
    assert_eq!(d.err("unused", &["verify", &j1]).code, EXIT_REFUSED);
    d.ok("unused", &["verify", &j2]);
    d.ok(&j2, &["users", "logout", &user_id]);
    assert_eq!(d.err("unused", &["verify", &j2]).code, EXIT_REFUSED);
}

#[test]
fn errors_map_to_exit_codes() {
    let d = start();
    // 404 and 422 from the daemon: exit 1, with its code and the field at fault.
    let e = d.err(ADMIN, &["keys", "get", "no-such-key"]);
    assert_eq!(e.code, EXIT_REFUSED);
    assert!(e.message.contains("HTTP 404: not_found"), "{}", e.message);
    let team = d.json(ADMIN, &["teams", "create", "t"]);
    let e = d.err(
        ADMIN,
        &[
            "users",
            "create",
            "bob",
            "--role",
            "Emperor",
            "--password",
            "pw-pw-pw-pw",
            "--team",
            team["id"].as_str().unwrap(),
        ],
    );
    assert_eq!(e.code, EXIT_REFUSED);
    assert!(e.message.contains("HTTP 422") && e.message.contains("role"), "{}", e.message);
    let e = d.err(ADMIN, &["users", "list"]);
    assert!(e.message.contains("teamId"), "{}", e.message);
    // 401: a wrong credential.
    let e = d.err("tgadmin_not-the-token", &["teams", "get", "x"]);
    assert_eq!(e.code, EXIT_REFUSED);
    assert!(e.message.starts_with("HTTP 401"), "{}", e.message);
    // Usage: exit 2, before any call.
    let e = d.err(ADMIN, &["keys", "create", "--metadata", "[1]"]);
    assert_eq!(e.code, EXIT_USAGE);
    let e = d.err(ADMIN, &["keys", "update", "k"]);
    assert_eq!(e.code, EXIT_USAGE);
    // Connection: exit 3.
    let port = common::free_port();
    let e = tollgate_admin::run([
        "tollgate-admin",
        "--url",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        ADMIN,
        "teams",
        "get",
        "x",
    ])
    .unwrap_err();
    assert_eq!(e.code, EXIT_CONNECTION);
}

/// A CA named `name`, and a certificate it issued for `localhost`, as PEM
/// files in `dir`: `ca.pem`, `server.crt`, `server.key`.
fn private_ca(dir: &std::path::Path, name: &str) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[test]
fn works_against_the_https_listener_with_ca_cert() {
    let pki = tempfile::tempdir().unwrap();
    private_ca(pki.path(), "tollgate test CA");
    let other = tempfile::tempdir().unwrap();
    private_ca(other.path(), "tollgate test CA");
    let d = common::start_http(|c| {
        c.http_server.tls = Some(tollgate::config::TlsConfig {
            cert: pki.path().join("server.crt"),
            key: pki.path().join("server.key"),
            client_ca: None,
        });
    });
    let https = format!("https://localhost:{}", d.addr.port());
    let ca = pki.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let run = |url: &str, ca: Option<&str>, args: &[&str]| {
        let mut all = vec!["tollgate-admin", "--url", url, "--token", ADMIN];
        if let Some(ca) = ca {
            all.extend(["--ca-cert", ca]);
        }
        all.extend_from_slice(args);
        tollgate_admin::run(all)
    };

    // Ready once a listing answers (503 while the daemon starts).
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = run(&https, Some(ca), &["teams", "list"]) {
        assert!(Instant::now() < deadline, "no answer over HTTPS: {}", e.message);
        std::thread::sleep(Duration::from_millis(50));
    }

    // The CLI works over HTTPS with the private CA: admin calls, login, verify.
    let team = run(&https, Some(ca), &["--json", "teams", "create", "tls-team", "--tier", "Pro"]).unwrap();
    let team: Value = serde_json::from_str(&team.stdout).unwrap();
    let team_id = team["id"].as_str().unwrap();
    let user = ["users", "create", "carol", "--role", "Administrator", "--password", "correct horse", "--team"];
    run(&https, Some(ca), &[&user[..], &[team_id]].concat()).unwrap();
    let jwt = run(&https, Some(ca), &["login", "carol", "--password", "correct horse"]).unwrap().stdout;
    let v = run(&https, Some(ca), &["--json", "verify", jwt.trim()]).unwrap();
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["kind"].as_str(), v["team"].as_str()),
        (Some(true), Some("jwt"), Some(team_id))
    );
    assert!(run(&https, Some(ca), &["teams", "get", team_id]).unwrap().stdout.contains("tls-team"));

    // Without --ca-cert (Mozilla's roots), or with another CA (of the same
    // name): the certificate is refused, nothing is sent, exit 3 with what to do.
    let another = other.path().join("ca.pem");
    for (ca, what, why) in
        [(None, "no --ca-cert", "UnknownIssuer"), (Some(another.to_str().unwrap()), "another CA", "BadSignature")]
    {
        let e = run(&https, ca, &["teams", "get", team_id]).unwrap_err();
        assert_eq!(e.code, EXIT_CONNECTION, "{what}: {}", e.message);
        assert!(e.message.contains("invalid peer certificate"), "{what}: {}", e.message);
        assert!(e.message.contains(why) && e.message.contains("--ca-cert FILE"), "{what}: {}", e.message);
    }

    // Plain HTTP to the TLS port: a clean failure (exit 3) that names https.
    let plain = format!("http://localhost:{}", d.addr.port());
    let e = run(&plain, None, &["teams", "get", team_id]).unwrap_err();
    assert_eq!(e.code, EXIT_CONNECTION, "{}", e.message);
    assert!(e.message.contains("https://"), "{}", e.message);

    // A CA file that holds no certificate is a usage error, before any call.
    let e = run(&https, Some(pki.path().join("server.key").to_str().unwrap()), &["teams", "list"]).unwrap_err();
    assert_eq!(e.code, EXIT_USAGE, "{}", e.message);
}
