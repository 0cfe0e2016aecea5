//! Property test of the admin API's input handling (issue 11): every body type
//! the admin API accepts is fed extreme and random values for every field, on
//! one real daemon (`server::serve`). Whatever the input, the daemon answers
//! (never drops the connection), never answers 5xx, every record a 2xx answer
//! created or changed reads back, and the list routes still answer 200.
//!
//! Plus the regression tests of the finding itself (far expiries that were
//! stored and then made every listing panic) and of the engine's bounds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tollgate::core::model::{Refill, Tier};
use tollgate::engine::{
    EngineError, KeyUpdate, MAX_LIFETIME_DAYS, MAX_LIFETIME_MS, MAX_LIFETIME_SECS, MAX_REFILL_INTERVAL_MS, NewKey,
    now_us,
};

use crate::common;

use common::{ADMIN_TOKEN, HttpDaemon, basic, start_http, try_http};

/// Proptest cases; each sends [`BATCH`] requests (admin writes fsync, so one
/// daemon and one team serve every case, and the read-backs are per request).
const CASES: u32 = 256;
/// Requests per proptest case: `CASES * BATCH` >= 10,000 generated bodies.
const BATCH: usize = 40;

// ---- the daemon and its fixtures ----

struct Fixture {
    d: HttpDaemon,
    /// The Pro team (per-minute limit lifted by `start_http`) everything runs in.
    team: String,
    /// A Free team whose tier PATCH may change; never the caller's team.
    scratch_team: String,
    /// The calling user (Administrator of `team`) and its JWT.
    user: String,
    jwt: String,
    /// A Reader of `team` that PATCH /v1/users may change (never the caller).
    victim: String,
    /// Keys of `team` that PATCH /v1/keys may change.
    keys: Vec<String>,
}

struct Answer {
    status: u16,
    body: Value,
    text: String,
}

impl Fixture {
    fn send(&self, method: &str, path: &str, cred: &str, body: Option<&str>) -> Result<Answer, TestCaseError> {
        let auth = format!("Bearer {cred}");
        let r = try_http(self.d.addr, method, path, &[("Authorization", &auth)], body).ok_or_else(|| {
            TestCaseError::fail(format!(
                "{method} {path}: the connection was dropped without an answer; body: {}",
                preview(body.unwrap_or(""))
            ))
        })?;
        Ok(Answer { status: r.status, body: r.json(), text: r.text })
    }

    fn expect(&self, method: &str, path: &str, cred: &str, body: Option<Value>, want: u16) -> Value {
        let text = body.map(|b| b.to_string());
        let a = self.send(method, path, cred, text.as_deref()).unwrap();
        assert_eq!(a.status, want, "{method} {path}: {}", a.text);
        a.body
    }

    fn start() -> Fixture {
        let d = start_http(|_| {});
        let mut f = Fixture {
            d,
            team: String::new(),
            scratch_team: String::new(),
            user: String::new(),
            jwt: String::new(),
            victim: String::new(),
            keys: Vec::new(),
        };
        let id = |v: Value| v["id"].as_str().unwrap().to_owned();
        f.team = id(f.expect("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "props", "tier": "Pro"})), 201));
        f.scratch_team =
            id(f.expect("POST", "/v1/teams", ADMIN_TOKEN, Some(json!({"name": "scratch", "tier": "Free"})), 201));
        let user =
            json!({"teamId": f.team, "username": "props-admin", "password": "correct horse", "role": "Administrator"});
        f.user = id(f.expect("POST", "/v1/users", ADMIN_TOKEN, Some(user), 201));
        let victim =
            json!({"teamId": f.team, "username": "props-victim", "password": "correct horse", "role": "Reader"});
        f.victim = id(f.expect("POST", "/v1/users", ADMIN_TOKEN, Some(victim), 201));
        let login = try_http(
            f.d.addr,
            "POST",
            "/v1/auth/token",
            &[("Authorization", &basic("props-admin", "correct horse"))],
            None,
        )
        .unwrap();
        assert_eq!(login.status, 200, "{}", login.text);
        f.jwt = login.json()["token"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            let k = f.expect("POST", "/v1/keys", &f.jwt.clone(), Some(json!({"permissions": {"*": ["read"]}})), 201);
            f.keys.push(id(k));
        }
        f
    }
}

fn preview(s: &str) -> String {
    if s.len() <= 300 { s.to_owned() } else { format!("{}... ({} bytes)", &s[..s.floor_char_boundary(300)], s.len()) }
}

// ---- generated requests ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    CreateKey,
    UpdateKey,
    CreateToken,
    CreateUser,
    UpdateUser,
    CreateTeam,
    UpdateTeam,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::CreateKey,
        Kind::UpdateKey,
        Kind::CreateToken,
        Kind::CreateUser,
        Kind::UpdateUser,
        Kind::CreateTeam,
        Kind::UpdateTeam,
    ];

    /// The fields the route knows, in groups that a valid request gives
    /// together (refill amount and interval, the rate-limit fields, a new
    /// user's name, password and role).
    fn groups(self) -> &'static [&'static [&'static str]] {
        const KEY: &[&[&str]] = &[
            &["name"],
            &["expiresIn"],
            &["remaining"],
            &["refillAmount", "refillInterval"],
            &["rateLimitEnabled", "rateLimitTimeWindow", "rateLimitMax"],
            &["permissions"],
            &["metadata"],
            &["whitelistedIPs"],
        ];
        const CREATE_KEY: &[&[&str]] =
            &[KEY[0], KEY[1], KEY[2], KEY[3], KEY[4], KEY[5], KEY[6], KEY[7], &["userId"], &["prefix"]];
        const UPDATE_KEY: &[&[&str]] = &[KEY[0], KEY[1], KEY[2], KEY[3], KEY[4], KEY[5], KEY[6], KEY[7], &["enabled"]];
        match self {
            Kind::CreateKey => CREATE_KEY,
            Kind::UpdateKey => UPDATE_KEY,
            Kind::CreateToken => &[&["name"], &["expiresInDays"], &["tokenType"]],
            Kind::CreateUser => &[&["teamId"], &["username", "password", "role"], &["status"]],
            Kind::UpdateUser => &[&["role"], &["status"], &["password"]],
            Kind::CreateTeam => &[&["name"], &["tier"]],
            Kind::UpdateTeam => &[&["tier"]],
        }
    }

    /// The fields the route knows.
    fn fields(self) -> Vec<&'static str> {
        self.groups().iter().flat_map(|g| g.iter().copied()).collect()
    }
}

/// Who calls.
#[derive(Clone, Copy, Debug)]
enum Who {
    Admin,
    User,
}

/// What a PATCH names: a fixture object or an arbitrary id.
#[derive(Clone, Debug)]
enum Target {
    Fixture(usize),
    Other(String),
}

#[derive(Clone, Debug)]
struct Req {
    kind: Kind,
    who: Who,
    target: Target,
    body: String,
}

/// Numbers at the edges of every type and bound, as JSON text (some are not
/// representable: serde_json refuses them, which is a 400).
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "999",
    "1000",
    "36525",
    "36526",
    "4294967295",
    "4294967296",
    "3155760000",
    "3155760001",
    "31622400000",
    "31622400001",
    "3155760000000",
    "3155760000001",
    "252000000000",
    "253402300799",
    "253402300800",
    "9007199254740992",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "100000000000000000000000000000000",
    "-0",
    "0.0",
    "0.5",
    "1.0",
    "-1.5",
    "1e3",
    "4.294967295e9",
    "1.8446744073709552e19",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "5e-324",
    "1e400",
    "-1e400",
];

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Strings: empty, digits, whitespace around digits, control characters,
/// unicode, long (the body limit is 64 KiB: the longest are a 413).
fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,40}",
        2 => "[0-9]{1,30}",
        1 => prop::sample::select(EDGE_NUMBERS).prop_map(|n| format!(" {n} ")),
        2 => "[\\x00-\\x1f\\x7f]{1,12}",
        1 => "[a-z]{0,5}[\u{0}\n\t\u{202e}\u{feff}][a-z]{0,5}",
        1 => (200usize..70_000).prop_map(|n| "x".repeat(n)),
        1 => (0usize..3).prop_map(|i| ["", " ", "\u{0}"][i].to_owned()),
        1 => Just("9".repeat(100_000 / 4)),
    ]
}

/// Any JSON value as text: edge numbers, random numbers, strings, booleans,
/// null, and arrays and objects of those, nested.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => prop::sample::select(EDGE_NUMBERS).prop_map(str::to_owned),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        2 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::to_string(&f).unwrap()),
        3 => prop::sample::select(EDGE_NUMBERS).prop_map(json_str),
        3 => any_string().prop_map(|s| json_str(&s)),
        1 => Just("true".to_owned()),
        1 => Just("false".to_owned()),
        2 => Just("null".to_owned()),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("\\PC{0,8}", inner), 0..4).prop_map(|v| {
                let fields: Vec<String> = v.iter().map(|(k, v)| format!("{}:{v}", json_str(k))).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// Plausible values of a field (so that many requests get past validation
/// and store something), at and around its bounds.
fn valid_value(field: &'static str, ids: Vec<String>) -> BoxedStrategy<String> {
    let num = |lo: u64, hi: u64| (lo..=hi).prop_map(|n| n.to_string()).boxed();
    let pick = |v: &'static [&'static str]| prop::sample::select(v).prop_map(json_str).boxed();
    match field {
        "expiresIn" => {
            prop_oneof![4 => num(1, MAX_LIFETIME_SECS), 1 => num(MAX_LIFETIME_SECS - 2, MAX_LIFETIME_SECS + 2)].boxed()
        }
        "expiresInDays" => {
            let d = u64::from(MAX_LIFETIME_DAYS);
            prop_oneof![4 => num(1, d), 1 => num(d - 2, d + 2)].boxed()
        }
        "remaining" | "refillAmount" => num(0, u64::from(u32::MAX)),
        "rateLimitMax" => prop_oneof![4 => num(1, u64::from(u32::MAX)), 1 => Just("0".to_owned())].boxed(),
        "refillInterval" => prop_oneof![
            4 => num(1000, 86_400_000),
            1 => num(MAX_REFILL_INTERVAL_MS - 1, MAX_REFILL_INTERVAL_MS + 1),
        ]
        .boxed(),
        "rateLimitTimeWindow" => {
            prop_oneof![4 => num(1, 86_400_000), 1 => num(366 * 86_400_000 - 1, 366 * 86_400_000 + 1)].boxed()
        }
        "rateLimitEnabled" | "enabled" => pick(&["true", "false"]).prop_map(|s| s.trim_matches('"').to_owned()).boxed(),
        "permissions" => prop_oneof![
            Just(r#"{"keys":["read"]}"#.to_owned()),
            Just(r#"{"*":["*"]}"#.to_owned()),
            Just(json_str(r#"{"docs":["read","create"]}"#)),
        ]
        .boxed(),
        "metadata" => {
            prop_oneof![Just("{}".to_owned()), Just(r#"{"plan":"pro","n":18446744073709551615}"#.to_owned())].boxed()
        }
        "whitelistedIPs" => prop_oneof![
            Just(r#"["10.0.0.0/8","::1"]"#.to_owned()),
            Just(json_str("127.0.0.1, 192.168.0.0/16")),
            Just("[]".to_owned()),
        ]
        .boxed(),
        "prefix" => pick(&["tg", "acme", "tg", "acme", "x", "tgpat", "TG", "a_b"]),
        "tokenType" => pick(&["personal", "session", "service", "bot"]),
        "role" => pick(&["Administrator", "Manager", "Author", "Reader", "reader", "Owner"]),
        "status" => pick(&["Pending", "Enabled", "Disabled", "Blocked", "Deleted"]),
        "tier" => pick(&["Free", "Start", "Master", "Pro", "pro", "Gold"]),
        "password" => "[ -~]{6,20}".prop_map(|s| json_str(&s)).boxed(),
        "username" | "name" => "[a-zA-Z0-9 ._-]{1,24}".prop_map(|s| json_str(&s)).boxed(),
        "userId" | "teamId" => prop::sample::select(ids).prop_map(|s| json_str(&s)).boxed(),
        _ => any_value().boxed(),
    }
}

/// A body for `kind`: half are every known field absent, plausible or
/// anything; half are fields absent or plausible with at most one anything (so
/// that each extreme value also meets an otherwise valid request, which gets
/// as far as the store). Now and then an unknown field, or a body that is not a
/// JSON object at all.
fn body(kind: Kind, ids: Vec<String>) -> BoxedStrategy<String> {
    let names = kind.fields();
    let random: Vec<BoxedStrategy<Option<String>>> = names
        .iter()
        .map(|&f| {
            prop_oneof![
                3 => Just(None),
                3 => valid_value(f, ids.clone()).prop_map(Some),
                3 => any_value().prop_map(Some),
            ]
            .boxed()
        })
        .collect();
    let plausible: Vec<BoxedStrategy<Vec<Option<String>>>> = kind
        .groups()
        .iter()
        .map(|g| {
            let values: Vec<BoxedStrategy<String>> = g.iter().map(|&f| valid_value(f, ids.clone())).collect();
            let n = g.len();
            prop_oneof![Just(vec![None; n]), values.prop_map(|v| v.into_iter().map(Some).collect())].boxed()
        })
        .collect();
    let focused = (plausible, prop::option::of((0..names.len(), any_value()))).prop_map(|(groups, odd)| {
        let mut vals: Vec<Option<String>> = groups.into_iter().flatten().collect();
        if let Some((i, v)) = odd {
            vals[i] = Some(v);
        }
        vals
    });
    let values = prop_oneof![random, focused];
    let object =
        (values, prop::option::weighted(0.05, ("[a-zA-Z]{1,10}", any_value()))).prop_map(move |(vals, extra)| {
            let mut parts: Vec<String> =
                names.iter().zip(vals).filter_map(|(f, v)| v.map(|v| format!("{}:{v}", json_str(f)))).collect();
            if let Some((k, v)) = extra {
                parts.push(format!("{}:{v}", json_str(&k)));
            }
            format!("{{{}}}", parts.join(","))
        });
    prop_oneof![
        30 => object,
        1 => any_value(),
        1 => prop::sample::select(&["", "{", "{\"name\":", "[]", "nul", "{}}", "\u{0}"][..]).prop_map(str::to_owned),
    ]
    .boxed()
}

fn request(ids: Vec<String>) -> impl Strategy<Value = Req> {
    let kinds: Vec<BoxedStrategy<Req>> = Kind::ALL
        .iter()
        .map(|&kind| {
            let who = match kind {
                // Teams are the admin token's; a user is refused (403) now and then.
                Kind::CreateTeam | Kind::UpdateTeam => prop_oneof![9 => Just(Who::Admin), 1 => Just(Who::User)].boxed(),
                // Tokens belong to a user; the admin token is a 400 now and then.
                Kind::CreateToken => prop_oneof![9 => Just(Who::User), 1 => Just(Who::Admin)].boxed(),
                _ => prop_oneof![Just(Who::Admin), Just(Who::User)].boxed(),
            };
            let target = prop_oneof![
                8 => (0usize..3).prop_map(Target::Fixture),
                1 => "[a-zA-Z0-9_%-]{1,40}".prop_map(Target::Other),
            ];
            (who, target, body(kind, ids.clone()))
                .prop_map(move |(who, target, body)| Req { kind, who, target, body })
                .boxed()
        })
        .collect();
    prop::strategy::Union::new(kinds)
}

// ---- checks ----

impl Fixture {
    fn cred(&self, who: Who) -> &str {
        match who {
            Who::Admin => ADMIN_TOKEN,
            Who::User => &self.jwt,
        }
    }

    /// Method and path of a request; `None` for a target that would change the
    /// fixture under the test (the caller's own user, the caller's team's tier).
    fn route(&self, r: &Req) -> (&'static str, String) {
        let target = |ids: &[&str]| match &r.target {
            Target::Fixture(i) => ids[i % ids.len()].to_owned(),
            Target::Other(s) => s.clone(),
        };
        match r.kind {
            Kind::CreateKey => ("POST", "/v1/keys".to_owned()),
            Kind::UpdateKey => {
                ("PATCH", format!("/v1/keys/{}", target(&self.keys.iter().map(String::as_str).collect::<Vec<_>>())))
            }
            Kind::CreateToken => ("POST", "/v1/access-tokens".to_owned()),
            Kind::CreateUser => ("POST", "/v1/users".to_owned()),
            Kind::UpdateUser => ("PATCH", format!("/v1/users/{}", target(&[&self.victim]))),
            Kind::CreateTeam => ("POST", "/v1/teams".to_owned()),
            // The admin token must not change the tier of the team the caller
            // works in (Free allows 2 calls a minute); a user gets 403 for it.
            Kind::UpdateTeam => {
                let t = target(&[&self.scratch_team]);
                let t = if t == self.team && matches!(r.who, Who::Admin) { self.scratch_team.clone() } else { t };
                ("PATCH", format!("/v1/teams/{t}"))
            }
        }
    }

    /// Sends one generated request and checks the answer and, for a 2xx, that
    /// the record reads back.
    fn check(&self, r: &Req, seen: &Mutex<BTreeMap<(Kind, u16), usize>>) -> Result<(), TestCaseError> {
        let (method, path) = self.route(r);
        let cred = self.cred(r.who);
        let a = self.send(method, &path, cred, Some(&r.body))?;
        *seen.lock().unwrap().entry((r.kind, a.status)).or_default() += 1;
        let what = || format!("{method} {path} as {:?} with {}", r.who, preview(&r.body));
        prop_assert!(a.status < 500, "{}: {} {}", what(), a.status, preview(&a.text));
        prop_assert!(
            a.status == 204 || a.body.is_object(),
            "{}: {} answered a body that is not a JSON object: {}",
            what(),
            a.status,
            preview(&a.text)
        );
        if !(200..300).contains(&a.status) {
            return Ok(());
        }
        let id = match r.kind {
            Kind::CreateToken => a.body["token"]["id"].as_str(),
            _ => a.body["id"].as_str(),
        };
        let id = id.ok_or_else(|| TestCaseError::fail(format!("{}: 2xx without an id: {}", what(), a.text)))?;
        let get = match r.kind {
            Kind::CreateKey | Kind::UpdateKey => format!("/v1/keys/{id}"),
            Kind::CreateToken => format!("/v1/access-tokens/{id}"),
            Kind::CreateUser | Kind::UpdateUser => format!("/v1/users/{id}"),
            Kind::CreateTeam | Kind::UpdateTeam => format!("/v1/teams/{id}"),
        };
        // The token's owner reads it back; the admin token reads the rest.
        let reader = if r.kind == Kind::CreateToken { cred } else { ADMIN_TOKEN };
        let back = self.send("GET", &get, reader, None)?;
        prop_assert_eq!(back.status, 200, "{}: read back {}: {}", what(), get, preview(&back.text));
        prop_assert_eq!(back.body["id"].as_str(), Some(id), "{}: read back {}: {}", what(), get, preview(&back.text));
        Ok(())
    }

    /// Every list route that renders what the requests stored answers 200.
    fn lists(&self) -> Result<(), TestCaseError> {
        let admin_keys = format!("/v1/keys?teamId={}&limit=100", self.team);
        let admin_inactive = format!("/v1/keys?teamId={}&limit=100&status=inactive", self.team);
        let admin_users = format!("/v1/users?teamId={}", self.team);
        let logs = format!("/v1/logs?teamId={}&limit=200", self.team);
        let calls: [(&str, &str); 10] = [
            ("/v1/keys?limit=100", &self.jwt),
            ("/v1/keys?limit=100&status=inactive", &self.jwt),
            ("/v1/access-tokens?limit=200&includeRevoked=true", &self.jwt),
            ("/v1/users", &self.jwt),
            ("/v1/teams", &self.jwt),
            ("/v1/teams", ADMIN_TOKEN),
            (&admin_keys, ADMIN_TOKEN),
            (&admin_inactive, ADMIN_TOKEN),
            (&admin_users, ADMIN_TOKEN),
            (&logs, ADMIN_TOKEN),
        ];
        for (path, cred) in calls {
            let a = self.send("GET", path, cred, None)?;
            prop_assert_eq!(a.status, 200, "GET {}: {}", path, preview(&a.text));
            prop_assert!(a.body.is_object(), "GET {}: {}", path, preview(&a.text));
        }
        Ok(())
    }
}

/// The property: at least `CASES * BATCH` (10,240) generated admin requests,
/// and after each batch every list route answers 200.
#[test]
fn admin_api_survives_any_body() {
    let started = Instant::now();
    let f = Fixture::start();
    let ids = vec![
        f.user.clone(),
        f.victim.clone(),
        f.team.clone(),
        f.scratch_team.clone(),
        "user_does_not_exist".to_owned(),
    ];
    let sent = AtomicUsize::new(0);
    let seen = Mutex::new(BTreeMap::new());
    let config = ProptestConfig {
        // No shrinking: the daemon keeps what earlier cases stored, so a
        // smaller input replayed later fails for the same stored record and
        // "shrinks" to nonsense. The failure message names the request.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..ProptestConfig::with_cases(CASES)
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(request(ids), BATCH), |reqs| {
        for r in &reqs {
            sent.fetch_add(1, Ordering::Relaxed);
            f.check(r, &seen)?;
        }
        f.lists()
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let sent = sent.into_inner();
    assert!(sent >= 10_000, "only {sent} generated requests ran");
    // What the generator reached, for whoever reads the output (--nocapture).
    eprintln!("admin_api_survives_any_body: {sent} requests in {:.1?}", started.elapsed());
    for ((kind, status), n) in seen.into_inner().unwrap() {
        eprintln!("  {kind:?} {status}: {n}");
    }
}

// ---- the finding, as regression tests ----

/// Each body of the security review's finding is a 422 naming the field, and
/// nothing is stored: the team's key list and the user's token list are as
/// before and still answer 200.
#[test]
fn far_expiries_are_refused_before_anything_is_stored() {
    let f = Fixture::start();
    let jwt = f.jwt.clone();
    let key = f.keys[0].clone();
    let count = |path: &str, field: &str| -> usize {
        f.expect("GET", path, &jwt, None, 200)[field].as_array().map_or(0, Vec::len)
    };
    let keys_before = count("/v1/keys?limit=100", "data");
    let key_before = f.expect("GET", &format!("/v1/keys/{key}"), &jwt, None, 200);
    let refused: &[(&str, String, &str, &str)] = &[
        ("POST", "/v1/keys".into(), r#"{"expiresIn": 18446744073709551615}"#, "expiresIn"),
        ("POST", "/v1/keys".into(), r#"{"expiresIn": 252000000000}"#, "expiresIn"),
        ("POST", "/v1/keys".into(), r#"{"expiresIn": "252000000000"}"#, "expiresIn"),
        ("POST", "/v1/keys".into(), r#"{"expiresIn": 3155760001}"#, "expiresIn"),
        ("POST", "/v1/keys".into(), r#"{"expiresIn": 0}"#, "expiresIn"),
        ("PATCH", format!("/v1/keys/{key}"), r#"{"expiresIn": 18446744073709551615}"#, "expiresIn"),
        ("PATCH", format!("/v1/keys/{key}"), r#"{"expiresIn": 252000000000}"#, "expiresIn"),
        ("PATCH", format!("/v1/keys/{key}"), r#"{"expiresIn": 0}"#, "expiresIn"),
        ("POST", "/v1/keys".into(), r#"{"refillAmount": 1, "refillInterval": 18446744073709551615}"#, "refillInterval"),
        ("POST", "/v1/keys".into(), r#"{"refillAmount": 1, "refillInterval": 999}"#, "refillInterval"),
        (
            "PATCH",
            format!("/v1/keys/{key}"),
            r#"{"refillAmount": 1, "refillInterval": 3155760000001}"#,
            "refillInterval",
        ),
        (
            "POST",
            "/v1/keys".into(),
            r#"{"rateLimitMax": 1, "rateLimitTimeWindow": 18446744073709551615}"#,
            "rateLimitTimeWindow",
        ),
        ("POST", "/v1/access-tokens".into(), r#"{"name": "t", "expiresInDays": 4294967295}"#, "expiresInDays"),
        ("POST", "/v1/access-tokens".into(), r#"{"name": "t", "expiresInDays": 36526}"#, "expiresInDays"),
    ];
    for (method, path, body, field) in refused {
        let a = f.send(method, path, &jwt, Some(body)).unwrap();
        assert_eq!(a.status, 422, "{method} {path} {body}: {}", a.text);
        assert_eq!(a.body["detail"][0]["loc"], json!(["body", field]), "{method} {path} {body}: {}", a.text);
    }
    assert_eq!(count("/v1/keys?limit=100", "data"), keys_before);
    assert_eq!(count("/v1/keys?limit=100&status=inactive", "data"), 0);
    assert_eq!(count("/v1/access-tokens?includeRevoked=true", "items"), 0);
    let key_after = f.expect("GET", &format!("/v1/keys/{key}"), &jwt, None, 200);
    assert_eq!(key_after["expiresAt"], key_before["expiresAt"]);
    assert_eq!(key_after["refillInterval"], key_before["refillInterval"]);

    // The bounds themselves are accepted and render.
    let year = |v: &Value| v.as_str().unwrap()[..4].parse::<u32>().unwrap();
    let now_year = year(&f.expect("GET", &format!("/v1/keys/{key}"), &jwt, None, 200)["createdAt"]);
    let b = json!({"expiresIn": MAX_LIFETIME_SECS, "refillAmount": 5, "refillInterval": MAX_REFILL_INTERVAL_MS});
    let k = f.expect("POST", "/v1/keys", &jwt, Some(b), 201);
    assert!((now_year + 99..=now_year + 101).contains(&year(&k["expiresAt"])), "{k}");
    let b = json!({"expiresIn": MAX_LIFETIME_SECS});
    let k = f.expect("PATCH", &format!("/v1/keys/{key}"), &jwt, Some(b), 200);
    assert!((now_year + 99..=now_year + 101).contains(&year(&k["expiresAt"])), "{k}");
    let t = f.expect(
        "POST",
        "/v1/access-tokens",
        &jwt,
        Some(json!({"name": "t", "expiresInDays": MAX_LIFETIME_DAYS})),
        201,
    );
    assert!((now_year + 99..=now_year + 101).contains(&year(&t["token"]["expiresAt"])), "{t}");
    f.expect("GET", "/v1/keys?limit=100", &jwt, None, 200);
    f.expect("GET", "/v1/access-tokens", &jwt, None, 200);

    // Every refused call was audited as a failure (none was lost to a panic).
    let logs =
        f.expect("GET", &format!("/v1/logs?teamId={}&outcome=failure&limit=200", f.team), ADMIN_TOKEN, None, 200);
    let failures = logs["items"].as_array().unwrap().iter().filter(|e| e["detail"] == "422").count();
    assert_eq!(failures, refused.len(), "{logs}");
}

/// The bounds live in the engine, so every interface (HTTP, the admin CLI
/// through it, embedders) gets them.
#[test]
fn engine_refuses_far_dates_and_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let e = common::engine(dir.path(), "");
    let (_, user) = common::team_and_user(&e, Tier::Pro, "bounds");
    fn field<T>(r: Result<T, EngineError>) -> &'static str {
        match r {
            Err(EngineError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {:?}", other.map(|_| ())),
        }
    }
    let new = |f: &dyn Fn(&mut NewKey)| {
        let mut k = NewKey { user_id: user.clone(), ..NewKey::default() };
        f(&mut k);
        k
    };
    for secs in [0, MAX_LIFETIME_SECS + 1, 252_000_000_000, u64::MAX] {
        assert_eq!(field(e.create_key(new(&|k| k.expires_in_secs = Some(secs)))), "expiresIn");
    }
    for interval_ms in [0, 999, MAX_REFILL_INTERVAL_MS + 1, u64::MAX] {
        let r = e.create_key(new(&|k| k.refill = Some(Refill { amount: 1, interval_ms })));
        assert_eq!(field(r), "refillInterval");
    }
    assert_eq!(e.keys(&e.user(&user).unwrap().team_id).unwrap().len(), 0, "nothing stored");
    let (key, _) = e.create_key(new(&|k| k.expires_in_secs = Some(MAX_LIFETIME_SECS))).unwrap();
    let now_ms = now_us() / 1000;
    assert!(key.expires_at.unwrap() - now_ms <= MAX_LIFETIME_MS);
    for at in [u64::MAX, now_ms + MAX_LIFETIME_MS + 60_000] {
        let r = e.update_key(&key.id, KeyUpdate { expires_at: Some(Some(at)), ..KeyUpdate::default() });
        assert_eq!(field(r), "expiresIn");
    }
    let r = e.update_key(
        &key.id,
        KeyUpdate { refill: Some(Some(Refill { amount: 1, interval_ms: u64::MAX })), ..KeyUpdate::default() },
    );
    assert_eq!(field(r), "refillInterval");
    assert_eq!(e.key(&key.id).unwrap().0, key, "unchanged");
    for days in [0, MAX_LIFETIME_DAYS + 1, u32::MAX] {
        assert_eq!(field(e.create_token(&user, "t", "personal", Some(days))), "expiresInDays");
    }
    assert!(e.tokens(&user).is_empty(), "nothing stored");
    e.create_token(&user, "t", "personal", Some(MAX_LIFETIME_DAYS)).unwrap();
}
