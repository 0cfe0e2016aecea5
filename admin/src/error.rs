//! How `tollgate-admin` fails: the exit code of each class of failure, the
//! message for a person, and the one JSON object `--json` prints on stderr
//! instead. Errors name the command's flags (`--team`), not the API's fields
//! (`teamId`): a 422's `loc` is mapped back to the flag that set it.

use serde::Serialize;

use crate::client::ClientError;

/// Success.
pub const EXIT_OK: i32 = 0;
/// `verify`: the credential was denied (the verdict is printed on stdout).
pub const EXIT_DENIED: i32 = 1;
/// Bad arguments, no credential, a deletion not confirmed: nothing was sent.
pub const EXIT_USAGE: i32 = 2;
/// The daemon could not be reached or did not answer HTTP: refused
/// connection, DNS, TLS, `--timeout`.
pub const EXIT_CONNECTION: i32 = 3;
/// 401: the credential is unknown, expired, revoked or wrong.
pub const EXIT_UNAUTHENTICATED: i32 = 4;
/// 403: the credential may not do this.
pub const EXIT_FORBIDDEN: i32 = 5;
/// 404: no such object (or one the credential does not see).
pub const EXIT_NOT_FOUND: i32 = 6;
/// 429: rate limited; `Retry-After` is in the message.
pub const EXIT_RATE_LIMITED: i32 = 7;
/// Any other refusal: 422 invalid value, 409 conflict or tier limit, 400, 413.
pub const EXIT_REFUSED: i32 = 8;
/// 5xx: the daemon failed (or is not ready yet, 503).
pub const EXIT_DAEMON_ERROR: i32 = 9;

/// The exit codes, as `--help` lists them (and admin/README.md).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  verify: the credential was denied (the verdict is still printed)
  2  usage: bad arguments, no credential, deletion not confirmed (nothing was sent)
  3  the daemon cannot be reached: refused connection, DNS, TLS, --timeout, not HTTP
  4  401: the credential is unknown, expired, revoked or wrong
  5  403: the credential may not do this
  6  404: not found
  7  429: rate limited (the message says when to retry)
  8  the daemon refused the request: 422 invalid value, 409 conflict or tier limit, other 4xx
  9  the daemon failed: 5xx (503 while it starts)
With --json, an error is one JSON object on stderr:
  {\"code\", \"message\", \"status\", \"exitCode\"[, \"retryAfterSeconds\"][, \"fields\"]}";

/// The exit code for an HTTP error status.
pub fn exit_code_for_status(status: u16) -> i32 {
    match status {
        401 => EXIT_UNAUTHENTICATED,
        403 => EXIT_FORBIDDEN,
        404 => EXIT_NOT_FOUND,
        429 => EXIT_RATE_LIMITED,
        400..=499 => EXIT_REFUSED,
        500..=599 => EXIT_DAEMON_ERROR,
        // No redirect is followed; anything else is not an answer we know.
        _ => EXIT_CONNECTION,
    }
}

/// One invalid field of a 422, with the flag or argument that set it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The flag (`--team`) or argument (`<NAME>`), when the command has one
    /// for the field.
    pub flag: Option<String>,
    /// The API's name for it (`teamId`), and where (`body`, `query`).
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// The daemon's kind of failure: `missing`, `enum`, `value_error` …
    #[serde(rename = "type")]
    pub kind: String,
}

/// A failed run: what to print and the process exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct CliError {
    /// The process exit code (the `EXIT_*` constants).
    pub code: i32,
    /// Machine code: the daemon's (`not_found`, `validation_failed` …) for an
    /// HTTP error, else `usage`, `not_confirmed`, `unreachable`, `timeout`,
    /// `protocol` or `denied`.
    pub kind: String,
    /// For a person: one line (clap's usage errors may hold several).
    pub message: String,
    /// What the daemon answered, for errors it answered.
    pub http: Option<Box<HttpError>>,
    /// For stdout, e.g. a denied verdict (empty for most errors).
    pub stdout: String,
    /// Warnings printed before the error.
    pub warnings: Vec<String>,
    /// Print the error as JSON (`--json`).
    pub json: bool,
}

/// The daemon's side of an error it answered.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status.
    pub status: u16,
    /// The daemon's message (the fields named by their flags, for a 422),
    /// without the status and code the human message starts with.
    pub message: String,
    /// `Retry-After`, in seconds (a 429).
    pub retry_after: Option<u64>,
    /// A 422's fields, each with its flag.
    pub fields: Vec<FieldError>,
}

/// The `--json` form of an error.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonError<'a> {
    code: &'a str,
    message: &'a str,
    status: Option<u16>,
    exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    fields: &'a [FieldError],
}

impl CliError {
    /// An error of `kind` with exit code `code`.
    pub fn new(code: i32, kind: &str, message: impl Into<String>) -> CliError {
        CliError {
            code,
            kind: kind.to_owned(),
            message: message.into(),
            http: None,
            stdout: String::new(),
            warnings: Vec::new(),
            json: false,
        }
    }

    /// Bad arguments (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_USAGE, "usage", message)
    }

    /// The HTTP status, for errors the daemon answered.
    pub fn status(&self) -> Option<u16> {
        self.http.as_ref().map(|h| h.status)
    }

    /// The 422's fields, each with its flag.
    pub fn fields(&self) -> &[FieldError] {
        self.http.as_ref().map_or(&[], |h| &h.fields)
    }

    /// `Retry-After`, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.http.as_ref().and_then(|h| h.retry_after)
    }

    /// What to print on stderr: the warnings, then the error; each a JSON
    /// object on its own line with `--json`.
    pub fn stderr(&self) -> String {
        let mut s = render_warnings(&self.warnings, self.json);
        if self.json {
            let j = JsonError {
                code: &self.kind,
                message: self.http.as_ref().map_or(&self.message, |h| &h.message),
                status: self.status(),
                exit_code: self.code,
                retry_after_seconds: self.retry_after(),
                fields: self.fields(),
            };
            s.push_str(&serde_json::to_string(&j).unwrap_or_else(|_| "{}".to_owned()));
        } else {
            s.push_str("tollgate-admin: ");
            s.push_str(&self.message);
        }
        s.push('\n');
        s
    }

    /// Names the flags that set the fields a 422 complains about, with
    /// `args` (the command's `(field, flag)` pairs, before the common ones),
    /// and rewrites the message with them.
    pub fn name_flags(mut self, args: &[(&str, &str)]) -> CliError {
        let status = self.status();
        let Some(http) = self.http.as_mut().filter(|h| !h.fields.is_empty()) else {
            return self;
        };
        for f in &mut http.fields {
            let name = f.field.rsplit('.').next().unwrap_or(&f.field);
            f.flag = args
                .iter()
                .find(|(field, _)| *field == name)
                .map(|(_, flag)| *flag)
                .or_else(|| flag_for(name))
                .map(str::to_owned);
        }
        let parts: Vec<String> =
            http.fields.iter().map(|f| format!("{}: {}", f.flag.as_deref().unwrap_or(&f.field), f.message)).collect();
        http.message = parts.join("; ");
        let status = status.map_or_else(String::new, |s| format!("HTTP {s}: "));
        self.message = format!("{status}{}: {}", self.kind, http.message);
        self
    }
}

/// Warnings as stderr lines: `warning: …`, or `{"warning": "…"}` with `--json`.
pub fn render_warnings(warnings: &[String], json: bool) -> String {
    let mut s = String::new();
    for w in warnings {
        if json {
            s.push_str(&serde_json::json!({ "warning": w }).to_string());
        } else {
            s.push_str("warning: ");
            s.push_str(w);
        }
        s.push('\n');
    }
    s
}

/// The flag most commands set an API field with; commands whose argument
/// differs (`teams create <NAME>`) say so to [`CliError::name_flags`].
fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "teamId" => "--team",
        "userId" => "--user",
        "name" => "--name",
        "username" => "<USERNAME>",
        "password" => "--password",
        "role" => "--role",
        "status" => "--status",
        "tier" => "--tier",
        "prefix" => "--prefix",
        "expiresIn" | "expiresInDays" => "--expires-in",
        "remaining" => "--remaining",
        "refillAmount" => "--refill-amount",
        "refillInterval" => "--refill-interval",
        "rateLimitMax" | "rateLimitEnabled" => "--rate-limit-max",
        "rateLimitTimeWindow" => "--rate-limit-window",
        "permissions" => "--permission",
        "metadata" => "--metadata",
        "whitelistedIPs" | "ip" => "--ip",
        "enabled" => "--enable/--disable",
        "tokenType" => "--type",
        "limit" => "--limit",
        "offset" => "--offset",
        "cursor" | "startingAfter" => "--cursor",
        "endingBefore" => "--ending-before",
        "since" => "--since",
        "until" => "--until",
        "outcome" => "--outcome",
        "action" => "--action",
        "cost" => "--cost",
        "credential" => "<CREDENTIAL>",
        "jti" => "<JTI>",
        "force" => "--force",
        "includeRevoked" => "--include-revoked",
        _ => return None,
    })
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        let message = e.to_string();
        match e {
            ClientError::Status { status, body, retry_after } => {
                let kind = body.error.as_ref().map_or_else(|| format!("http_{status}"), |e| e.code.clone());
                let fields = body
                    .detail
                    .iter()
                    .flatten()
                    .map(|d| FieldError {
                        flag: None,
                        field: d.loc.join("."),
                        message: d.msg.clone(),
                        kind: d.kind.clone(),
                    })
                    .collect();
                let mut daemon_message = match &body.error {
                    Some(e) => e.message.clone(),
                    None => format!("HTTP {status}"),
                };
                if let Some(secs) = retry_after {
                    daemon_message.push_str(&format!("; retry after {secs} s"));
                }
                CliError {
                    http: Some(Box::new(HttpError { status, message: daemon_message, retry_after, fields })),
                    ..CliError::new(exit_code_for_status(status), &kind, message)
                }
            }
            ClientError::Url(_) | ClientError::Config(_) => CliError::usage(message),
            ClientError::Connection(_) => CliError::new(EXIT_CONNECTION, "unreachable", message),
            ClientError::Timeout(_) => CliError::new(EXIT_CONNECTION, "timeout", message),
            ClientError::Protocol(_) => CliError::new(EXIT_CONNECTION, "protocol", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ApiError, ErrorBody, ValidationDetail};

    fn status(status: u16, retry_after: Option<u64>, detail: Option<Vec<ValidationDetail>>) -> CliError {
        let error = Some(ApiError {
            code: "validation_failed".into(),
            message: "teamId: the admin token must name a team".into(),
        });
        CliError::from(ClientError::Status { status, body: ErrorBody { detail, error }, retry_after })
    }

    #[test]
    fn statuses_map_to_classes() {
        let codes: Vec<i32> =
            [401, 403, 404, 429, 422, 409, 400, 500, 503, 302].into_iter().map(exit_code_for_status).collect();
        assert_eq!(codes, [4, 5, 6, 7, 8, 8, 8, 9, 9, 3]);
    }

    #[test]
    fn fields_are_named_by_their_flags() {
        let detail = vec![ValidationDetail {
            loc: vec!["query".into(), "teamId".into()],
            msg: "the admin token must name a team".into(),
            kind: "missing".into(),
        }];
        let e = status(422, None, Some(detail.clone())).name_flags(&[]);
        assert_eq!(e.message, "HTTP 422: validation_failed: --team: the admin token must name a team");
        assert_eq!(e.fields()[0].flag.as_deref(), Some("--team"));
        let e = status(422, None, Some(detail)).name_flags(&[("teamId", "<TEAM>")]);
        assert!(e.message.contains("<TEAM>: the admin"), "{}", e.message);
        let json: serde_json::Value = serde_json::from_str(CliError { json: true, ..e }.stderr().trim()).unwrap();
        assert_eq!(json["fields"][0]["field"], "query.teamId");
        assert_eq!(json["message"], "<TEAM>: the admin token must name a team");
        assert_eq!((json["status"].as_u64(), json["exitCode"].as_i64()), (Some(422), Some(8)));
    }

    #[test]
    fn json_errors_are_one_object() {
        let e = CliError { json: true, warnings: vec!["careful".into()], ..status(429, Some(12), None) };
        let err = e.stderr();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines[0], r#"{"warning":"careful"}"#);
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!((v["code"].as_str(), v["status"].as_u64()), (Some("validation_failed"), Some(429)));
        assert_eq!((v["retryAfterSeconds"].as_u64(), v["exitCode"].as_i64()), (Some(12), Some(7)));
        assert_eq!(v["message"], "teamId: the admin token must name a team; retry after 12 s");
        let human = CliError { json: false, ..e }.stderr();
        assert!(human.starts_with("warning: careful\ntollgate-admin: HTTP 429: "), "{human}");
    }
}
