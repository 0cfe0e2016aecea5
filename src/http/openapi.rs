//! The OpenAPI 3.1 document served at `GET /openapi.json`, generated with
//! utoipa: every route the daemon serves over HTTP, the fixed ones (health,
//! readiness, metrics, JWKS, `/v1/verify`, `/auth`) and the admin API, with
//! the request and answer schemas of [`tollgate_api`] as components, the query
//! parameters of the very query types the handlers extract, the statuses each
//! route can answer, and the security schemes.
//!
//! The document is written here, operation by operation, apart from the
//! router: a test (tests/it/admin_api.rs) checks it against the routes the
//! router registers ([`super::admin::routes`] and [`super::fixed_routes`]).
//!
//! Statuses that follow from how a route is served are added by `Op`: every
//! route can answer 500 (a panicking handler, a failed store write) and 503
//! (the daemon is starting; an admin call while it shuts down); a guarded
//! admin route 401 (no or a refused credential), 403 (a role, grant or
//! cross-site refusal) and 429 (the credential's rate limit, with
//! `Retry-After`); a query string 422; an `{id}` 400 when it does not decode;
//! a JSON body 400 (not JSON, wrong type, cut short) and 413 (over
//! [`super::MAX_BODY_BYTES`]). The rest (201, 204, 404, 409, 422 of bodies)
//! is given per route.

use std::collections::BTreeMap;

use tollgate_api as api;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, Content, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ResponseBuilder, Schema,
};
use utoipa::{IntoParams, ToSchema};

use super::MAX_BODY_BYTES;
use super::admin::{LOGIN_PATH, SEED_COOKIE, TOKEN_COOKIE};

/// Names of the security schemes.
const BEARER: &str = "bearerAuth";
const API_KEY: &str = "apiKeyHeader";
const COOKIE: &str = "cookieAuth";
const QUERY: &str = "queryToken";
const BASIC: &str = "basicAuth";

/// Who may call a route.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No credential.
    Open,
    /// A guarded admin route: the admin token, or a user's JWT, API key or
    /// access token, in a header, a cookie or (when allowed) the query.
    Admin,
    /// Login: Basic credentials, or an API key as the Basic username.
    Basic,
    /// `/metrics`: open, or the admin token as a bearer token when
    /// `metrics.require_admin_token` is set.
    MaybeAdmin,
}

/// The document being written: its operations and the schemas they refer to.
struct Doc {
    paths: PathsBuilder,
    schemas: BTreeMap<String, RefOr<Schema>>,
}

/// One operation being written.
struct Op {
    method: HttpMethod,
    path: &'static str,
    auth: Auth,
    b: OperationBuilder,
    responses: BTreeMap<u16, ResponseBuilder>,
}

fn json(schema: impl Into<RefOr<Schema>>) -> Content {
    Content::new(Some(schema))
}

fn reference(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

fn string() -> Schema {
    ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).into()
}

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new().schema(string()).description(Some(description)).build()
}

impl Doc {
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        self.schemas.extend(nested);
        self.schemas.insert(T::name().into_owned(), T::schema());
        reference(&T::name())
    }

    fn add(&mut self, op: Op) {
        let mut op = op;
        if op.path != "/healthz" {
            op = op.error(503, "the daemon is starting (the index is loading), or shutting down");
        }
        op = op.error(500, "internal error (a failed store write, a handler that panicked); see the daemon's log");
        let error = self.schema::<api::ErrorResponse>();
        let validation = self.schema::<api::ValidationErrorResponse>();
        let mut b = op.b;
        b = match op.auth {
            Auth::Open => b.securities(Some(Vec::new())),
            Auth::Admin => b.securities(Some(
                [BEARER, API_KEY, COOKIE, QUERY].map(|s| SecurityRequirement::new(s, Vec::<String>::new())),
            )),
            Auth::Basic => b.securities(Some([SecurityRequirement::new(BASIC, Vec::<String>::new())])),
            Auth::MaybeAdmin => b.securities(Some([
                SecurityRequirement::default(),
                SecurityRequirement::new(BEARER, Vec::<String>::new()),
            ])),
        };
        for (status, mut r) in op.responses {
            r = r.header("X-Request-Id", header("The request's id: the caller's X-Request-Id when well formed (1 to 64 of [A-Za-z0-9._-]), else one made by the daemon"));
            let built = r.build();
            // Error answers without content of their own get the error shapes.
            let built = if status >= 400 && built.content.is_empty() {
                let schema = if status == 422 { validation.clone() } else { error.clone() };
                let mut r = ResponseBuilder::from(built).content("application/json", json(schema));
                if status == 429 {
                    r = r.header("Retry-After", header("Seconds until a retry can succeed"));
                }
                r.build()
            } else {
                built
            };
            b = b.response(status.to_string(), built);
        }
        self.paths = std::mem::take(&mut self.paths).path(op.path, PathItem::new(op.method, b.build()));
    }
}

impl Op {
    fn new(method: HttpMethod, path: &'static str, id: &str, summary: &str, auth: Auth) -> Op {
        let b = OperationBuilder::new().operation_id(Some(id)).summary(Some(summary));
        let mut op = Op { method, path, auth, b, responses: BTreeMap::new() };
        if auth == Auth::Admin {
            op = op
                .error(401, "no credential, or a refused one (unknown, expired, revoked, disabled, IP not allowed)")
                .error(403, "the credential may not do this: its role, its key's grant, another user's object, or a cookie-authenticated change that is not JSON or from an allowed origin")
                .error(429, "the credential's (or its team's) rate limit or usage is exhausted");
        }
        op
    }

    fn status(mut self, status: u16, r: ResponseBuilder) -> Op {
        self.responses.insert(status, r);
        self
    }

    /// An error answer: [`api::ErrorResponse`] (a 422: [`api::ValidationErrorResponse`]).
    fn error(self, status: u16, description: &str) -> Op {
        if self.responses.contains_key(&status) {
            return self;
        }
        self.status(status, ResponseBuilder::new().description(description))
    }

    /// The answer `status` with a JSON body of type `T`.
    fn answer<T: ToSchema>(self, doc: &mut Doc, status: u16, description: &str) -> Op {
        let schema = doc.schema::<T>();
        self.status(status, ResponseBuilder::new().description(description).content("application/json", json(schema)))
    }

    fn no_content(self, description: &str) -> Op {
        self.status(204, ResponseBuilder::new().description(description))
    }

    /// The query parameters of `T`, the type the handler extracts.
    fn query<T: IntoParams>(mut self) -> Op {
        for p in T::into_params(|| Some(ParameterIn::Query)) {
            self.b = self.b.parameter(p);
        }
        self.error(422, "a query parameter that is unknown, repeated or out of range (`detail` names it)")
    }

    /// The path's `{id}`.
    fn id(mut self, what: &str) -> Op {
        let p = ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(what))
            .schema(Some(string()));
        self.b = self.b.parameter(p);
        self.error(400, "the path's id does not decode (percent-encoding, UTF-8)")
    }

    /// A JSON body of type `T`.
    fn body<T: ToSchema>(mut self, doc: &mut Doc) -> Op {
        let schema = doc.schema::<T>();
        let body = RequestBodyBuilder::new().required(Some(Required::True)).content("application/json", json(schema));
        self.b = self.b.request_body(Some(body.build()));
        self.error(400, "the body is not JSON, has a field of the wrong type, or ended before its Content-Length")
            .error(413, &format!("the body is larger than {MAX_BODY_BYTES} bytes"))
    }
}

use HttpMethod::{Delete, Get, Patch, Post};

/// The document.
pub fn document() -> OpenApi {
    let mut d = Doc { paths: PathsBuilder::new(), schemas: BTreeMap::new() };
    fixed(&mut d);
    admin(&mut d);
    let schemes: [(&str, SecurityScheme); 5] = [
        (BEARER, SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))),
        (API_KEY, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key")))),
        (
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                TOKEN_COOKIE,
                &format!(
                    "The credential in the `{TOKEN_COOKIE}` cookie (`{SEED_COOKIE}` and `auth.cookie` are read too); a change made with it must be `Content-Type: application/json` from an allowed origin"
                ),
            ))),
        ),
        (
            QUERY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The credential as `?token=`, only when `admin_api.allow_query_token` is set",
            ))),
        ),
        (BASIC, SecurityScheme::Http(Http::new(HttpAuthScheme::Basic))),
    ];
    let mut components = ComponentsBuilder::new().schemas_from_iter(std::mem::take(&mut d.schemas));
    for (name, scheme) in schemes {
        components = components.security_scheme(name, scheme);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tollgate")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "tollgate's HTTP API: verification (`/v1/verify`, nginx's `/auth`), health, metrics, JWKS, and the admin API under `/v1/`. Errors are `{\"error\": {\"code\", \"message\"}}`; a 422 adds `detail`. An unknown path is a 404, a served path with another method a 405 with `Allow`, both in the error shape. GET routes answer HEAD too.",
                ))
                .build(),
        )
        .paths(d.paths.build())
        .components(Some(components.build()))
        .tags(Some([
            TagBuilder::new().name("verification").build(),
            TagBuilder::new().name("operations").build(),
            TagBuilder::new().name("admin").build(),
        ]))
        .build()
}

/// Every method `/auth` is documented with: axum's `any` serves them all
/// (and CONNECT, which OpenAPI cannot describe).
pub const ANY_METHODS: [&str; 8] = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"];

fn method_of(name: &str) -> HttpMethod {
    match name {
        "GET" => HttpMethod::Get,
        "PUT" => HttpMethod::Put,
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        "OPTIONS" => HttpMethod::Options,
        "HEAD" => HttpMethod::Head,
        "PATCH" => HttpMethod::Patch,
        _ => HttpMethod::Trace,
    }
}

fn tagged(op: Op, tag: &str) -> Op {
    Op { b: op.b.tag(tag), ..op }
}

/// Health, readiness, metrics, JWKS and verification.
fn fixed(d: &mut Doc) {
    let op = tagged(Op::new(Get, "/healthz", "Health", "Liveness: the process answers", Auth::Open), "operations");
    let op = op.answer::<api::Health>(d, 200, "alive");
    d.add(op);

    let op = tagged(
        Op::new(
            Get,
            "/readyz",
            "Ready",
            "Readiness: the store is open, the index loaded, the listeners serving",
            Auth::Open,
        ),
        "operations",
    );
    let ready = d.schema::<api::Readiness>();
    let op = op
        .status(200, ResponseBuilder::new().description("ready").content("application/json", json(ready.clone())))
        .status(
            503,
            ResponseBuilder::new()
                .description("not ready (starting, draining, or the last store write failed)")
                .content("application/json", json(ready)),
        );
    d.add(op);

    let text = ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).build();
    let op = tagged(Op::new(Get, "/metrics", "Metrics", "Prometheus text exposition; needs the admin token as a bearer token when `metrics.require_admin_token` is set", Auth::MaybeAdmin), "operations")
        .status(200, ResponseBuilder::new().description("the metrics").content(super::METRICS_CONTENT_TYPE, json(text)))
        .error(401, "`metrics.require_admin_token` is set and the admin token was not given");
    d.add(op);

    let jwks = ObjectBuilder::new()
        .property("keys", ArrayBuilder::new().items(ObjectBuilder::new().description(Some("a JWK"))))
        .required("keys")
        .build();
    let op = tagged(
        Op::new(
            Get,
            "/.well-known/jwks.json",
            "Jwks",
            "The public keys that verify the JWTs tollgate issues",
            Auth::Open,
        ),
        "operations",
    )
    .status(200, ResponseBuilder::new().description("the JWK set").content("application/json", json(jwks)));
    d.add(op);

    let op = tagged(
        Op::new(
            Post,
            "/v1/verify",
            "Verify",
            "Verify a credential: the verdict, allow or deny, as JSON (a refusal is a 200 with `valid: false`)",
            Auth::Open,
        ),
        "verification",
    )
    .body::<api::VerifyRequest>(d);
    let op = op.answer::<api::Verdict>(d, 200, "the verdict");
    d.add(op);

    for m in ANY_METHODS {
        let id = format!("Auth{}", &m[..1]) + &m[1..].to_ascii_lowercase();
        let mut op = tagged(
            Op::new(
                method_of(m),
                "/auth",
                &id,
                "nginx auth_request (any method): 200 with identity headers, 401 or 403 with X-Auth-Denial",
                Auth::Open,
            ),
            "verification",
        );
        for (name, what) in [
            ("Authorization", "`Bearer <credential>`"),
            ("X-API-Key", "the credential"),
            ("Cookie", "`auth.cookie` (default `tollgate_token`) carrying the credential"),
            ("X-Original-Method", "the original request's method, for `[[auth.routes]]`"),
            (
                "X-Original-URI",
                "the original request's path, for `[[auth.routes]]` (required when routes are configured)",
            ),
            ("X-Real-IP", "the client's address, from a trusted proxy"),
            ("X-Forwarded-For", "the client's address, from a trusted proxy"),
        ] {
            op.b = op.b.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(what))
                    .schema(Some(string())),
            );
        }
        let denial = || header("The deny code (`MISSING_CREDENTIAL` when none was presented)");
        let mut allow = ResponseBuilder::new().description("allowed; empty body");
        for (name, what) in [
            ("X-Auth-Subject", "the user the credential acts as"),
            ("X-Auth-Team", "the user's team"),
            ("X-Auth-Roles", "the user's role"),
            ("X-Auth-Key-Id", "key id, token id or JWT jti"),
            ("X-Auth-Kind", "`api_key`, `access_token` or `jwt`"),
            ("X-Auth-Remaining", "uses left, for a key with a limit"),
            ("X-RateLimit-Limit", "requests per window of the tightest limit"),
            ("X-RateLimit-Remaining", "requests still possible now"),
            ("X-RateLimit-Reset", "seconds until the full allowance is back"),
        ] {
            allow = allow.header(name, header(what));
        }
        let op = op
            .status(200, allow)
            .status(
                400,
                ResponseBuilder::new()
                    .description("the subrequest itself is malformed (X-Original-Method, X-Original-URI)"),
            )
            .status(
                401,
                ResponseBuilder::new()
                    .description("no credential, or a bad one; empty body")
                    .header("WWW-Authenticate", header("`Bearer realm=\"tollgate\"`"))
                    .header("X-Auth-Denial", denial()),
            )
            .status(
                403,
                ResponseBuilder::new()
                    .description("the credential may not do this (permissions, IP, rate limit, quota); empty body")
                    .header("X-Auth-Denial", denial())
                    .header(
                        "Retry-After",
                        header("for rate-limit and quota denials: seconds until a retry can succeed"),
                    ),
            );
        d.add(op);
    }
}

/// A guarded admin operation.
fn guarded(method: HttpMethod, path: &'static str, id: &str, summary: &str) -> Op {
    tagged(Op::new(method, path, id, summary, Auth::Admin), "admin")
}

/// The admin API.
fn admin(d: &mut Doc) {
    let doc = tagged(Op::new(Get, "/openapi.json", "OpenApi", "This document", Auth::Open), "admin").status(
        200,
        ResponseBuilder::new()
            .description("the OpenAPI 3.1 document")
            .content("application/json", json(ObjectBuilder::new().build())),
    );
    d.add(doc);

    let op = tagged(
        Op::new(
            Post,
            LOGIN_PATH,
            "Login",
            "Exchange Basic credentials (or an API key as the username, no password) for a JWT",
            Auth::Basic,
        ),
        "admin",
    )
    .error(400, "no, or a malformed, Basic Authorization header")
    .error(401, "the username and/or password (or the key) is invalid")
    .error(429, "too many failed logins for this username or address in the last minute");
    let op = op.answer::<api::LoginResponse>(d, 200, "the JWT");
    d.add(op);
    let op = guarded(
        Delete,
        "/v1/auth/sessions/{id}",
        "RevokeSession",
        "Revoke one JWT by its jti: the caller's own, or any of the team's (Administrator, admin token)",
    )
    .id("the JWT's jti")
    .no_content("revoked");
    d.add(op);
    let op = guarded(
        Delete,
        "/v1/users/{id}/sessions",
        "RevokeUserSessions",
        "Revoke every JWT issued to the user so far (log out everywhere)",
    )
    .id("the user's id")
    .error(404, "no such user (or another team's)")
    .no_content("revoked");
    d.add(op);

    // Teams.
    let op = guarded(Post, "/v1/teams", "CreateTeam", "Create a team (admin token only)")
        .body::<api::NewTeam>(d)
        .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::Team>(d, 201, "the team");
    d.add(op);
    let op = guarded(
        Get,
        "/v1/teams",
        "ListTeams",
        "List teams: every team for the admin token, the caller's own otherwise",
    )
    .query::<api::PageQuery>();
    let op = op.answer::<api::TeamList>(d, 200, "a page of teams");
    d.add(op);
    let op = guarded(Get, "/v1/teams/{id}", "GetTeam", "Get a team: its tier's limits next to what it uses now")
        .id("the team's id")
        .error(404, "no such team (or another team)");
    let op = op.answer::<api::Team>(d, 200, "the team");
    d.add(op);
    let op = guarded(
        Patch,
        "/v1/teams/{id}",
        "UpdateTeam",
        "Change a team's tier (admin token only; 409 if the team holds more than the tier allows, unless forced)",
    )
    .id("the team's id")
    .body::<api::TeamUpdate>(d)
    .error(404, "no such team")
    .error(409, "the team holds more than the new tier allows (`tier_exceeded`); send `force`")
    .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::Team>(d, 200, "the team");
    d.add(op);
    let op = guarded(Delete, "/v1/teams/{id}", "DeleteTeam", "Delete a team and everything in it (admin token only)")
        .id("the team's id")
        .error(404, "no such team")
        .no_content("deleted");
    d.add(op);
    let op = guarded(
        Post,
        "/v1/teams/{id}/documents/release",
        "ReleaseDocuments",
        "Give back documents of the team's quota, as the socket's QuotaRelease (Administrator, Manager, admin token; \
         a scoped key needs documents:delete); the use never goes below zero",
    )
    .id("the team's id")
    .body::<api::DocumentsRelease>(d)
    .error(404, "no such team (or another team)")
    .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::DocumentsUsage>(d, 200, "the documents in use after the release, and the quota");
    d.add(op);

    // Users.
    let op = guarded(Post, "/v1/users", "CreateUser", "Create a user")
        .body::<api::NewUser>(d)
        .error(404, "no such team (or another team)")
        .error(409, "the username is taken, or the team's tier allows no more members")
        .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::User>(d, 201, "the user");
    d.add(op);
    let op = guarded(Get, "/v1/users", "ListUsers", "List a team's users")
        .query::<api::UserListQuery>()
        .error(404, "no such team (or another team)");
    let op = op.answer::<api::UserList>(d, 200, "a page of users");
    d.add(op);
    let op = guarded(Get, "/v1/users/{id}", "GetUser", "Get a user")
        .id("the user's id")
        .error(404, "no such user (or another team's)");
    let op = op.answer::<api::User>(d, 200, "the user");
    d.add(op);
    let op = guarded(Patch, "/v1/users/{id}", "UpdateUser", "Change a user's role, status or password")
        .id("the user's id")
        .body::<api::UserUpdate>(d)
        .error(404, "no such user (or another team's)")
        .error(422, "an invalid field (`detail` names it)");
    let op = op.answer::<api::User>(d, 200, "the user");
    d.add(op);
    let op = guarded(Delete, "/v1/users/{id}", "DeleteUser", "Delete (anonymize) a user")
        .id("the user's id")
        .error(404, "no such user (or another team's)")
        .no_content("deleted");
    d.add(op);

    // API keys.
    let op = guarded(Get, "/v1/keys", "ListKeys", "List API keys")
        .query::<api::KeyListQuery>()
        .error(404, "no such team (or another team)");
    let op = op.answer::<api::KeyList>(d, 200, "a page of keys (seed 001's envelope)");
    d.add(op);
    let op = guarded(Post, "/v1/keys", "CreateKey", "Create an API key")
        .body::<api::NewKey>(d)
        .error(404, "no such user (or another team's)")
        .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::ApiKey>(d, 201, "the key, with its secret in `key` (shown this once)");
    d.add(op);
    let op = guarded(
        Post,
        "/v1/keys/import",
        "ImportKeys",
        "Import up to 10,000 API keys in one atomic, durable write: generated ones, or keys issued elsewhere adopted by the SHA-256 of their secret",
    )
    .error(
        413,
        &format!("the body is larger than {} bytes (this route's limit)", api::MAX_IMPORT_BODY_BYTES),
    )
    .body::<api::KeyImport>(d)
    .error(404, "an entry's user does not exist (or is another team's); the message names the entry (`keys[3]: ...`)")
    .error(409, "an entry's hash is already a key's or token's, or an earlier entry's; the message names the entry")
    .error(
        422,
        "no entries or more than 10,000, or a missing or invalid field of an entry (`detail` names it: `[\"body\", \"keys\", \"3\", \"expiresIn\"]`)",
    );
    let op = op.answer::<api::KeyImportResult>(
        d,
        201,
        "the keys, in the order of the entries, with the generated secrets (shown this once)",
    );
    d.add(op);
    let op = guarded(Get, "/v1/keys/{id}", "GetKey", "Get an API key")
        .id("the key's id")
        .error(404, "no such key (or another team's)");
    let op = op.answer::<api::ApiKey>(d, 200, "the key");
    d.add(op);
    let op = guarded(Patch, "/v1/keys/{id}", "UpdateKey", "Change an API key")
        .id("the key's id")
        .body::<api::KeyUpdate>(d)
        .error(404, "no such key (or another team's)")
        .error(422, "an invalid field (`detail` names it)");
    let op = op.answer::<api::ApiKey>(d, 200, "the key");
    d.add(op);
    let op = guarded(Delete, "/v1/keys/{id}", "DeleteKey", "Delete an API key")
        .id("the key's id")
        .error(404, "no such key (or another team's)")
        .no_content("deleted");
    d.add(op);

    // Access tokens.
    let op = guarded(Get, "/v1/access-tokens", "ListTokens", "List the caller's access tokens")
        .query::<api::TokenListQuery>();
    let op = op.answer::<api::TokenPage>(d, 200, "a page of tokens");
    d.add(op);
    let op = guarded(Post, "/v1/access-tokens", "CreateToken", "Create an access token for the caller")
        .body::<api::NewToken>(d)
        .error(422, "a missing or invalid field (`detail` names it)");
    let op = op.answer::<api::CreatedToken>(d, 201, "the token and its secret (shown this once)");
    d.add(op);
    let op = guarded(Delete, "/v1/access-tokens", "RevokeAllTokens", "Revoke all of the caller's access tokens")
        .query::<api::RevokeAllQuery>();
    let op = op.answer::<api::RevokedCount>(d, 200, "how many were revoked");
    d.add(op);
    let op = guarded(Get, "/v1/access-tokens/{id}", "GetToken", "Get one of the caller's access tokens")
        .id("the token's id")
        .error(404, "no such token of the caller's");
    let op = op.answer::<api::AccessToken>(d, 200, "the token");
    d.add(op);
    let op = guarded(Delete, "/v1/access-tokens/{id}", "RevokeToken", "Revoke one of the caller's access tokens")
        .id("the token's id")
        .error(404, "no such token of the caller's")
        .no_content("revoked");
    d.add(op);

    // The audit log and the configuration.
    let op = guarded(Get, "/v1/logs", "ListLogs", "List the team's audit log: admin calls and denied verifications")
        .query::<api::LogQuery>()
        .error(404, "no such team (or another team)");
    let op = op.answer::<api::LogPage>(d, 200, "a page of events, newest first");
    d.add(op);
    let op =
        guarded(Post, "/v1/admin/reload", "Reload", "Reload the configuration file, as SIGHUP does (admin token only)")
            .error(409, "the daemon runs without a configuration file (`no_config_file`)");
    // A refused configuration is the usual error shape (`config_refused`), not a field's 422.
    let op =
        op.answer::<api::ErrorResponse>(d, 422, "the new configuration is refused; the message lists every problem");
    let op = op.answer::<api::ReloadResponse>(d, 200, "reloaded: what changed, what needs a restart");
    d.add(op);
}
