//! Canned answers for the load generator's echo mode.
//!
//! An echo server decodes every frame exactly like the daemon but answers
//! each verify request with the same realistic allow verdict instead of
//! looking anything up. Comparing its throughput with the real daemon's over
//! identical frames separates the cost of the protocol and socket handling
//! from the cost of verification itself.

use std::borrow::Cow;

use crate::types::{Allow, CredentialKind, List, Permission, RateLimit, Verdict, VerifyRequest};

static ROLES: [Cow<'static, str>; 2] = [Cow::Borrowed("member"), Cow::Borrowed("billing-viewer")];

static DOCUMENT_ACTIONS: [Cow<'static, str>; 3] =
    [Cow::Borrowed("read"), Cow::Borrowed("write"), Cow::Borrowed("share")];

static INVOICE_ACTIONS: [Cow<'static, str>; 1] = [Cow::Borrowed("read")];

static PERMISSIONS: [Permission<'static>; 2] = [
    Permission { resource: Cow::Borrowed("documents"), actions: List::Borrowed(&DOCUMENT_ACTIONS) },
    Permission { resource: Cow::Borrowed("invoices"), actions: List::Borrowed(&INVOICE_ACTIONS) },
];

/// The rate limit the canned verdict reports, before the request's cost.
pub const ECHO_RATE_LIMIT: u32 = 1000;

/// Returns the canned allow verdict for a decoded verify request.
///
/// Its strings and lists are borrowed from statics, so building it costs no
/// allocation and encoding it costs what encoding a typical real verdict
/// does (about 150 bytes: ULID-sized ids, two roles, two resources). Only
/// the rate-limit `remaining` depends on the request (`limit - cost`), so the
/// request's cost field is at least looked at, as the daemon would.
pub fn allow_verdict(req: &VerifyRequest<'_>) -> Verdict<'static> {
    Verdict::Allow(Allow {
        kind: CredentialKind::ApiKey,
        subject: Cow::Borrowed("user_01HZX3K9Q4V7W2M8N5T6R1PBCD"),
        team_id: Cow::Borrowed("team_01HZX3KA0B2C3D4E5F6G7H8J9K"),
        credential_id: Cow::Borrowed("key_01HZX3KB7MZ2Y9XQ4W8V6T5S3R"),
        roles: List::Borrowed(&ROLES),
        permissions: List::Borrowed(&PERMISSIONS),
        remaining_uses: None,
        rate_limit: Some(RateLimit {
            limit: ECHO_RATE_LIMIT,
            remaining: ECHO_RATE_LIMIT.saturating_sub(req.cost),
            reset_ms: 60_000,
        }),
    })
}
