//! `POST /v1/keys/import` against the real daemon (`server::serve`, temp data
//! dir, free port): keys adopted by the SHA-256 of their secret verify with
//! that secret on every interface (the socket, `POST /v1/verify`, `/auth`);
//! each entry passes the checks of `POST /v1/keys` for the caller (role,
//! team, grant); a refused entry is named (`keys[3].expiresIn`) and nothing
//! is written; one audit entry per import, without secrets or hashes.

use serde_json::{Value, json};
use tollgate::core::secret;
use tollgate_protocol::{Client, DenyCode, VerifyRequest};

use crate::common;

use common::{ADMIN_TOKEN as ADMIN, HttpDaemon as Daemon, basic, http, start_http};

const FOREIGN: &str = "sk_live_51HqLyjWDarjtT1zdp7dcXHEqV9lHx1sEZcFn";

fn hex(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(secret: &str) -> String {
    hex(secret::sha256(secret.as_bytes()))
}

struct Resp {
    status: u16,
    body: Value,
    text: String,
}

fn call(d: &Daemon, method: &str, path: &str, cred: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {cred}");
    let text = body.map(|b| b.to_string());
    let r = http(d.addr, method, path, &[("Authorization", &auth)], text.as_deref());
    Resp { status: r.status, body: r.json(), text: r.text }
}

fn ok(d: &Daemon, method: &str, path: &str, cred: &str, body: Option<Value>, want: u16) -> Value {
    let r = call(d, method, path, cred, body);
    assert_eq!(r.status, want, "{method} {path}: {}", r.text);
    r.body
}

fn import(d: &Daemon, cred: &str, keys: Value) -> Resp {
    call(d, "POST", "/v1/keys/import", cred, Some(json!({ "keys": keys })))
}

fn team(d: &Daemon, name: &str) -> String {
    ok(d, "POST", "/v1/teams", ADMIN, Some(json!({"name": name, "tier": "Pro"})), 201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A user of `team` with `role`: (id, JWT).
fn user(d: &Daemon, team: &str, name: &str, role: &str) -> (String, String) {
    let body = json!({"teamId": team, "username": name, "password": "correct horse", "role": role});
    let id = ok(d, "POST", "/v1/users", ADMIN, Some(body), 201)["id"].as_str().unwrap().to_owned();
    let r = http(d.addr, "POST", "/v1/auth/token", &[("Authorization", &basic(name, "correct horse"))], None);
    assert_eq!(r.status, 200, "{}", r.text);
    (id, r.json()["token"].as_str().unwrap().to_owned())
}

/// The ids of a team's keys.
fn key_ids(d: &Daemon, team: &str) -> Vec<String> {
    let page = ok(d, "GET", &format!("/v1/keys?teamId={team}&limit=100"), ADMIN, None, 200);
    page["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
}

/// The socket's, `POST /v1/verify`'s and `/auth`'s verdicts on `secret`: the
/// deny code (`None` = allowed) of each.
fn verdicts(d: &Daemon, socket: &mut Client, secret: &str) -> [Option<String>; 3] {
    let s = socket.verify(&VerifyRequest::new(secret.as_bytes())).expect("the socket answers");
    let s = s.deny_code().map(|c: DenyCode| c.as_str().to_owned());
    let v = ok(d, "POST", "/v1/verify", "unused", Some(json!({"credential": secret})), 200);
    let v = if v["valid"] == true { None } else { Some(v["code"].as_str().unwrap().to_owned()) };
    let a = http(d.addr, "GET", "/auth", &[("X-API-Key", secret)], None);
    let a = if a.status == 200 { None } else { Some(a.header("x-auth-denial").unwrap_or("?").to_owned()) };
    [s, v, a]
}

#[test]
fn adopted_keys_verify_with_their_original_secrets_on_every_interface() {
    let d = start_http(|_| {});
    let t = team(&d, "migrated");
    let (alice, _) = user(&d, &t, "alice", "Administrator");
    // Keys of tollgate's format issued by another tollgate, with the prefix
    // `acme` (an adopted `tg` key would make every `tg_` typo a lookup).
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let elsewhere = secret::generate(&rng, "acme").plaintext;
    let r = import(
        &d,
        ADMIN,
        json!([
            {"userId": alice, "hash": sha(FOREIGN), "start": &FOREIGN[..12], "name": "from stripe-like", "permissions": {"docs": ["read"]}},
            {"userId": alice, "hash": sha(&elsewhere), "start": &elsewhere[..8]},
            {"userId": alice, "name": "generated", "remaining": 5},
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!((r.body["count"].as_u64(), r.body["teamId"].as_str()), (Some(3), Some(t.as_str())));
    assert!(keys[0].get("key").is_none() && keys[1].get("key").is_none(), "an adopted key's secret is not known");
    assert_eq!(keys[0]["start"], &FOREIGN[..12]);
    let generated = keys[2]["key"].as_str().expect("a generated secret, shown once").to_owned();
    assert!(generated.starts_with("tg_"));
    // The keys are listed like any other, with their display start and prefix.
    let listed = ok(&d, "GET", &format!("/v1/keys/{}", keys[0]["id"].as_str().unwrap()), ADMIN, None, 200);
    assert_eq!((listed["prefix"].as_str(), listed["name"].as_str()), (Some("sk_live"), Some("from stripe-like")));
    assert!(listed.get("key").is_none());

    let socket_path = d.data.parent().unwrap().join("tollgate.sock");
    let mut socket = Client::connect(&socket_path).expect("the socket accepts");
    for s in [FOREIGN, elsewhere.as_str(), generated.as_str()] {
        assert_eq!(verdicts(&d, &mut socket, s), [None, None, None], "{s:.10}...");
    }
    // The adopted key's permissions hold on the socket as on a generated key.
    let v = socket
        .verify(&VerifyRequest::new(FOREIGN.as_bytes()).permissions(&[("docs", "write")]))
        .expect("the socket answers");
    assert_eq!(v.deny_code(), Some(DenyCode::InsufficientPermissions));

    // A mistyped key of tollgate's own format (`tg`, which no adopted key
    // has) fails the checksum: MALFORMED, without a lookup. A foreign-looking
    // one, or one of an adopted prefix, is looked up and not found.
    let mut typo = generated.clone().into_bytes();
    typo[5] = if typo[5] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let malformed = Some("MALFORMED".to_owned());
    assert_eq!(verdicts(&d, &mut socket, &typo), [malformed.clone(), malformed.clone(), malformed]);
    let not_found = Some("NOT_FOUND".to_owned());
    let sk_typo = format!("{}x", &FOREIGN[..FOREIGN.len() - 1]);
    assert_eq!(verdicts(&d, &mut socket, &sk_typo), [not_found.clone(), not_found.clone(), not_found.clone()]);
    let acme_typo = format!("{}x", &elsewhere[..elsewhere.len() - 1]);
    assert_eq!(verdicts(&d, &mut socket, &acme_typo), [not_found.clone(), not_found.clone(), not_found]);

    // One audit entry for the import, naming how many keys it made; no
    // secret and no hash anywhere in the log, nor on disk in hex.
    let logs = ok(&d, "GET", &format!("/v1/logs?teamId={t}&action=ImportKeys"), ADMIN, None, 200);
    let items = logs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{logs}");
    assert_eq!((items[0]["target"].as_str(), items[0]["outcome"].as_str()), (Some("3 keys"), Some("success")));
    drop(socket);
    let mut d = d;
    d.stop_and_keep_data();
    for needle in [FOREIGN.to_owned(), elsewhere.clone(), generated.clone(), sha(FOREIGN), sha(&elsewhere)] {
        assert_eq!(common::file_containing(&d.data, needle.as_bytes()), None, "{needle:.12}... was stored");
    }
}

#[test]
fn each_entry_is_checked_against_the_caller_as_post_v1_keys_is() {
    let d = start_http(|_| {});
    let (a, b) = (team(&d, "a"), team(&d, "b"));
    let (a_admin, a_jwt) = user(&d, &a, "a-admin", "Administrator");
    let (a_author, author_jwt) = user(&d, &a, "a-author", "Author");
    let (b_admin, _) = user(&d, &b, "b-admin", "Administrator");
    let before = key_ids(&d, &a).len();

    // A user of team a importing into team b: the entry's user is not found.
    let r = import(&d, &a_jwt, json!([{}, {"userId": b_admin}]));
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(r.body["error"]["message"], "keys[1]: user not found");
    assert!(key_ids(&d, &b).is_empty());
    // An Author creates keys for itself only, as with POST /v1/keys.
    assert_eq!(import(&d, &author_jwt, json!([{}])).status, 201);
    let r = import(&d, &author_jwt, json!([{}, {}, {"userId": a_admin}]));
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("keys[2]: "), "{}", r.text);
    // A key imports only within its grant: its permissions and its expiry.
    let narrow = ok(
        &d,
        "POST",
        "/v1/keys",
        ADMIN,
        Some(json!({"userId": a_admin, "permissions": {"keys": ["create"], "docs": ["read"]}, "expiresIn": 3600})),
        201,
    );
    let narrow = narrow["key"].as_str().unwrap();
    let r = import(&d, narrow, json!([{"permissions": {"docs": ["read"]}, "expiresIn": 60}]));
    assert_eq!(r.status, 201, "{}", r.text);
    let r = import(
        &d,
        narrow,
        json!([{"permissions": {"docs": ["read"]}, "expiresIn": 60}, {"permissions": {"docs": ["write"]}, "expiresIn": 60}]),
    );
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (403, Some("exceeds_grant")), "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("keys[1]: permissions exceed"), "{}", r.text);
    let r = import(&d, narrow, json!([{"permissions": {"docs": ["read"]}}]));
    assert_eq!(r.status, 403, "a key without expiry outlives the key making it: {}", r.text);
    let r = import(
        &d,
        narrow,
        json!([{"permissions": {}, "expiresIn": 60}, {"permissions": {"docs": ["read"]}, "hash": sha(FOREIGN), "expiresIn": 7200}]),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("keys[1]: expiry exceeds"), "{}", r.text);
    // A key whose grant does not name keys:create may not import at all.
    let reader =
        ok(&d, "POST", "/v1/keys", ADMIN, Some(json!({"userId": a_admin, "permissions": {"keys": ["read"]}})), 201);
    assert_eq!(import(&d, reader["key"].as_str().unwrap(), json!([{}])).status, 403);
    // The admin token names each entry's user.
    let r = import(&d, ADMIN, json!([{"userId": a_author}, {}]));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "keys", "1", "userId"]));
    // Refused imports wrote nothing: one key from the Author, one from the
    // narrow key, and the two keys made with POST /v1/keys.
    assert_eq!(key_ids(&d, &a).len(), before + 4);
    let logs = ok(&d, "GET", &format!("/v1/logs?teamId={a}&action=ImportKeys&limit=100"), ADMIN, None, 200);
    let outcomes: Vec<&str> =
        logs["items"].as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "success").count(), 2, "{logs}");
    let _ = a_author;
}

#[test]
fn refused_entries_are_named_and_nothing_is_written() {
    let d = start_http(|_| {});
    let t = team(&d, "v");
    let (u, _) = user(&d, &t, "v-admin", "Administrator");
    let ok_entry = json!({"userId": u});
    let with = |i: usize, extra: Value| {
        let mut entries = vec![ok_entry.clone(); 4];
        let mut e = ok_entry.clone();
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        entries[i] = e;
        import(&d, ADMIN, Value::Array(entries))
    };
    // (entry, fields, status, loc, message)
    let cases: Vec<(usize, Value, u16, Value, &str)> = vec![
        (
            3,
            json!({"expiresIn": 0}),
            422,
            json!(["body", "keys", "3", "expiresIn"]),
            "keys[3].expiresIn: must be at least 1 second",
        ),
        (
            1,
            json!({"expiresIn": u64::MAX}),
            422,
            json!(["body", "keys", "1", "expiresIn"]),
            "keys[1].expiresIn: must be at most",
        ),
        (
            2,
            json!({"remaining": 4_294_967_296u64}),
            422,
            json!(["body", "keys", "2", "remaining"]),
            "keys[2].remaining: must be at most 4294967295",
        ),
        (
            0,
            json!({"refillAmount": 1, "refillInterval": u64::MAX}),
            422,
            json!(["body", "keys", "0", "refillInterval"]),
            "keys[0].refillInterval",
        ),
        (
            2,
            json!({"rateLimitMax": 5}),
            422,
            json!(["body", "keys", "2", "rateLimitTimeWindow"]),
            "keys[2].rateLimitTimeWindow",
        ),
        (
            1,
            json!({"name": "bell\u{7}"}),
            422,
            json!(["body", "keys", "1", "name"]),
            "keys[1].name: must be 1 to 255 characters with no control characters",
        ),
        (
            3,
            json!({"hash": "abc"}),
            422,
            json!(["body", "keys", "3", "hash"]),
            "keys[3].hash: must be 64 hexadecimal digits",
        ),
        (
            3,
            json!({"hash": sha(FOREIGN), "start": "sk_\u{1b}[2J"}),
            422,
            json!(["body", "keys", "3", "start"]),
            "keys[3].start",
        ),
        (0, json!({"start": "sk_live"}), 422, json!(["body", "keys", "0", "start"]), "keys[0].start: only with hash"),
        (
            2,
            json!({"hash": sha("sk_short_secret"), "start": "sk_short_secret"}),
            422,
            json!(["body", "keys", "2", "start"]),
            "keys[2].start: is the whole secret",
        ),
        (2, json!({"prefix": "tg\n"}), 422, json!(["body", "keys", "2", "prefix"]), "keys[2].prefix"),
        (
            1,
            json!({"whitelistedIPs": ["300.1.1.1"]}),
            422,
            json!(["body", "keys", "1", "whitelistedIPs"]),
            "keys[1].whitelistedIPs",
        ),
        (1, json!({"keyz": 1}), 422, json!(["body", "keys", "1", "keyz"]), "keys[1].keyz: unknown field"),
        (2, json!({"userId": "user_\u{0}nobody"}), 404, Value::Null, "keys[2]: user not found"),
        (2, json!({"name": 5}), 400, Value::Null, "keys[2].name: expected a string"),
    ];
    for (i, extra, status, loc, msg) in cases {
        let r = with(i, extra.clone());
        assert_eq!(r.status, status, "{extra}: {}", r.text);
        if status == 422 {
            assert_eq!(r.body["detail"][0]["loc"], loc, "{extra}: {}", r.text);
        }
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(msg), "{extra}: {m}");
    }
    // Not objects, no entries, too many, other fields: the body's own errors.
    let r = import(&d, ADMIN, json!([ok_entry, 7]));
    assert_eq!((r.status, r.body["error"]["message"].as_str()), (400, Some("keys[1]: expected a JSON object")));
    let r = import(&d, ADMIN, json!([]));
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["body", "keys"])), "{}", r.text);
    let r = import(&d, ADMIN, Value::Array(vec![json!({}); 10_001]));
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["body", "keys"])), "{}", r.text);
    assert!(r.text.contains("1 to 10000 entries"), "{}", r.text);
    let r = call(&d, "POST", "/v1/keys/import", ADMIN, Some(json!({"keys": [ok_entry], "dryRun": true})));
    assert_eq!((r.status, &r.body["detail"][0]["loc"]), (422, &json!(["body", "dryRun"])), "{}", r.text);
    let r = call(&d, "POST", "/v1/keys/import", ADMIN, Some(json!({"keys": {"userId": u}})));
    assert_eq!(r.status, 400, "{}", r.text);
    // A body over the route's limit is a 413 before it is read.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        let head = format!(
            "POST /v1/keys/import HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            tollgate_api::MAX_IMPORT_BODY_BYTES + 1
        );
        s.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains(&format!("larger than {} bytes", tollgate_api::MAX_IMPORT_BODY_BYTES)), "{answer}");
    }
    // Just under it, the body is read (and refused for what it holds, not its size).
    let filler = "x".repeat(tollgate_api::MAX_IMPORT_BODY_BYTES - 1000);
    let r = import(&d, ADMIN, json!([{"userId": u, "metadata": {"f": filler}}]));
    assert_eq!(r.status, 422, "{:.200}", r.text);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "keys", "0", "metadata"]));
    // Hashes: one that exists, and twice in one batch.
    assert_eq!(import(&d, ADMIN, json!([{"userId": u, "hash": sha(FOREIGN)}])).status, 201);
    let r = import(&d, ADMIN, json!([ok_entry, {"userId": u, "hash": sha(FOREIGN).to_uppercase()}]));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("keys[1]: "), "{}", r.text);
    let other = sha("pk_live_other");
    let r = import(&d, ADMIN, json!([{"userId": u, "hash": other}, ok_entry, {"userId": u, "hash": other}]));
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.body["error"]["message"].as_str().unwrap().starts_with("keys[2]: "), "{}", r.text);
    // A generated key's hash cannot be adopted again either.
    let made = ok(&d, "POST", "/v1/keys", ADMIN, Some(json!({"userId": u})), 201);
    let r = import(&d, ADMIN, json!([{"userId": u, "hash": sha(made["key"].as_str().unwrap())}]));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(key_ids(&d, &t).len(), 2, "only the adopted key and the one made by POST /v1/keys");
}

#[test]
fn a_full_batch_of_ten_thousand_returns_every_secret_in_entry_order() {
    let d = start_http(|_| {});
    let t = team(&d, "bulk");
    let (u, _) = user(&d, &t, "bulk-admin", "Administrator");
    let entries: Vec<Value> = (0..tollgate_api::MAX_IMPORT_KEYS)
        .map(|i| {
            if i % 2 == 0 {
                json!({"userId": u, "name": format!("gen-{i}")})
            } else {
                json!({"userId": u, "hash": sha(&format!("legacy-{i}")), "name": format!("legacy-{i}")})
            }
        })
        .collect();
    let r = import(&d, ADMIN, Value::Array(entries));
    assert_eq!(r.status, 201, "{:.300}", r.text);
    let keys = r.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), tollgate_api::MAX_IMPORT_KEYS);
    let socket_path = d.data.parent().unwrap().join("tollgate.sock");
    let mut socket = Client::connect(&socket_path).unwrap();
    for (i, k) in keys.iter().enumerate().step_by(997) {
        let secret = match k["key"].as_str() {
            Some(s) => s.to_owned(),
            None => format!("legacy-{i}"),
        };
        assert_eq!(i % 2 == 0, k.get("key").is_some(), "entry {i}");
        let v = socket.verify(&VerifyRequest::new(secret.as_bytes())).unwrap();
        assert!(v.is_allow(), "entry {i}: {v:?}");
        let listed = ok(&d, "GET", &format!("/v1/keys/{}", k["id"].as_str().unwrap()), ADMIN, None, 200);
        assert_eq!(listed["name"], format!("{}-{i}", if i % 2 == 0 { "gen" } else { "legacy" }));
    }
}
