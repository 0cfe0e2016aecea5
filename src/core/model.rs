//! The data model: teams, users, API keys and access tokens as they are stored and
//! listed. The hot path does not read these records directly; `engine` builds an
//! index of small entries with atomic counters from them.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use super::perms::PermSet;
pub use super::perms::Permissions;

/// Milliseconds since the Unix epoch: the unit of every stored timestamp.
pub type Millis = u64;

/// A subscription tier. The limits of each tier come from the configuration
/// (`config::TierLimits`), whose defaults are the four tiers of seed 000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// 2 requests a minute, 1 member, 10 documents, 7 days of logs.
    Free,
    /// 10 requests a minute, 3 members, 250 documents, 90 days of logs.
    Start,
    /// 50 requests a minute, 15 members, 500 documents, 365 days of logs.
    Master,
    /// 100 requests a minute, unlimited members, 5000 documents, logs kept forever.
    Pro,
}

impl Tier {
    /// Every tier, in order of increasing limits.
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Start, Tier::Master, Tier::Pro];

    /// The tier's index into per-tier tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The tier's name as it appears in JWT claims and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "Free",
            Tier::Start => "Start",
            Tier::Master => "Master",
            Tier::Pro => "Pro",
        }
    }
}

/// A user's role inside their team (seed 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Role {
    /// Full permissions on the team's resources.
    Administrator,
    /// Like Administrator, but cannot create accounts.
    Manager,
    /// Creates and reads resources; cannot delete them or create accounts.
    Author,
    /// Reads the team's resources only.
    Reader,
}

/// The resource name under which accounts (users) are managed. Creating one is the
/// action that only an Administrator may take.
pub const ACCOUNTS_RESOURCE: &str = "users";

impl Role {
    /// The role's name as it appears in claims, verdicts and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "Administrator",
            Role::Manager => "Manager",
            Role::Author => "Author",
            Role::Reader => "Reader",
        }
    }

    /// The permissions a credential acting with this role holds, in the
    /// `{resource: [actions]}` shape of API keys, following seed 000. Actions are
    /// `read`, `create`, `update`, `delete`; accounts are the `users` resource.
    pub fn permissions(self) -> &'static PermSet {
        static TABLE: LazyLock<[PermSet; 4]> = LazyLock::new(|| Role::ALL.map(|r| PermSet::new(r.grant())));
        &TABLE[self as usize]
    }

    /// [`Role::permissions`] in the stored form, for comparing grants.
    pub fn grant(self) -> &'static Permissions {
        static TABLE: LazyLock<[Permissions; 4]> = LazyLock::new(|| {
            let p = |entries: &[(&str, &[&str])]| {
                Permissions(
                    entries
                        .iter()
                        .map(|(r, acts)| ((*r).to_owned(), acts.iter().map(|a| (*a).to_owned()).collect()))
                        .collect(),
                )
            };
            [
                p(&[("*", &["*"])]),
                p(&[("*", &["*"]), (ACCOUNTS_RESOURCE, &["read", "update", "delete"])]),
                p(&[("*", &["read", "create", "update"]), (ACCOUNTS_RESOURCE, &["read", "update"])]),
                p(&[("*", &["read"])]),
            ]
        });
        &TABLE[self as usize]
    }

    /// Every role, highest first.
    pub const ALL: [Role; 4] = [Role::Administrator, Role::Manager, Role::Author, Role::Reader];

    /// Whether this role ranks above `other` (Administrator > Manager > Author > Reader).
    pub fn outranks(self, other: Role) -> bool {
        (self as u8) < (other as u8)
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "Administrator" => Ok(Role::Administrator),
            "Manager" => Ok(Role::Manager),
            "Author" => Ok(Role::Author),
            "Reader" => Ok(Role::Reader),
            _ => Err(format!("unknown role {s:?}")),
        }
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown tier {s:?} (expected Free, Start, Master or Pro)"))
    }
}

/// A user's account status (seed 000). Only `Enabled` users authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum UserStatus {
    /// Waiting for validation.
    Pending = 0,
    /// Active.
    Enabled = 1,
    /// Deactivated by the team's administrators.
    Disabled = 2,
    /// Blocked by the operator.
    Blocked = 3,
    /// Deleted and anonymized.
    Deleted = 4,
}

impl UserStatus {
    /// Decodes the value stored in an atomic; unknown values read as `Blocked`
    /// so that a corrupted byte can never let a credential through.
    pub fn from_u8(v: u8) -> UserStatus {
        match v {
            0 => UserStatus::Pending,
            1 => UserStatus::Enabled,
            2 => UserStatus::Disabled,
            4 => UserStatus::Deleted,
            _ => UserStatus::Blocked,
        }
    }
}

/// A limit that may be absent: `None` is unlimited. Written in the config file as
/// a number or the string `"unlimited"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Limit {
    /// At most this many.
    Max(u64),
    /// `"unlimited"`.
    Unlimited(Unlimited),
}

/// The word `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlimited {
    /// No limit.
    Unlimited,
}

impl Limit {
    /// The limit, `None` when unlimited.
    pub fn get(self) -> Option<u64> {
        match self {
            Limit::Max(n) => Some(n),
            Limit::Unlimited(_) => None,
        }
    }
}

/// What a subscription tier allows (seed 000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierLimits {
    /// Verifications per minute for the whole team.
    pub requests_per_minute: Limit,
    /// Users in the team.
    pub members: Limit,
    /// Documents quota (consumed and released through verification).
    pub documents: Limit,
    /// Days the audit log is kept.
    pub log_retention_days: Limit,
}

impl TierLimits {
    /// Seed 000's four tiers, indexed by `Tier::index`.
    pub const DEFAULTS: [TierLimits; 4] = [
        TierLimits::of(Some(2), Some(1), Some(10), Some(7)),
        TierLimits::of(Some(10), Some(3), Some(250), Some(90)),
        TierLimits::of(Some(50), Some(15), Some(500), Some(365)),
        TierLimits::of(Some(100), None, Some(5000), None),
    ];

    const fn of(rpm: Option<u64>, members: Option<u64>, documents: Option<u64>, logs: Option<u64>) -> TierLimits {
        const fn l(v: Option<u64>) -> Limit {
            match v {
                Some(n) => Limit::Max(n),
                None => Limit::Unlimited(Unlimited::Unlimited),
            }
        }
        TierLimits {
            requests_per_minute: l(rpm),
            members: l(members),
            documents: l(documents),
            log_retention_days: l(logs),
        }
    }
}

/// A team: the tenant every other object belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    /// Stable identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Subscription tier; decides the team's limits.
    pub tier: Tier,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A user account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Stable identifier; the `sub` of the user's JWTs.
    pub id: String,
    /// The team the user belongs to.
    pub team_id: String,
    /// Login name, unique across the daemon.
    pub username: String,
    /// argon2id PHC string; empty for a deleted (anonymized) user.
    pub password_hash: String,
    /// Role inside the team.
    pub role: Role,
    /// Account status.
    pub status: UserStatus,
    /// JWTs issued before this time (milliseconds; records written before
    /// 2026-12 hold seconds, read as such) are revoked.
    pub revoked_before: u64,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// Per-key rate limit (seed 002): at most `max` requests per `window_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window (at most `limits::WINDOW_MAX_REQUESTS`).
    pub max: u32,
    /// The window in milliseconds, from the request that opens it (seed 002).
    pub window_ms: u64,
}

/// Remaining-use counter with optional refill (seed 002).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// `remaining` is reset to this amount...
    pub amount: u32,
    /// ...every this many milliseconds, counted from `Usage::anchor`.
    pub interval_ms: u64,
}

/// An API key as stored. The secret itself is never stored: only its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Stable identifier.
    pub id: String,
    /// Owning team.
    pub team_id: String,
    /// Owning user; the key acts with this user's role and dies with them.
    pub user_id: String,
    /// Display name.
    pub name: Option<String>,
    /// The secret's prefix (before `_`).
    pub prefix: String,
    /// The first characters of the secret, for display.
    pub start: String,
    /// SHA-256 of the full secret.
    pub hash: [u8; 32],
    /// A disabled key verifies as `DISABLED`.
    pub enabled: bool,
    /// After this time the key verifies as `EXPIRED`.
    pub expires_at: Option<Millis>,
    /// Remaining uses at creation or last update; `None` = unlimited.
    pub remaining: Option<u32>,
    /// Refill of `remaining`.
    pub refill: Option<Refill>,
    /// Per-key rate limit; `None` = not limited.
    pub rate_limit: Option<RateLimit>,
    /// What the key may do.
    pub permissions: Permissions,
    /// Free-form JSON metadata, kept as JSON text.
    pub metadata: String,
    /// IP addresses and CIDR blocks allowed to use the key; empty = any.
    pub whitelisted_ips: Vec<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

/// A personal access token (seed 004). Acts as its user, with the user's role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessToken {
    /// UUID.
    pub id: String,
    /// Owning team.
    pub team_id: String,
    /// Owning user.
    pub user_id: String,
    /// Display name, 1..=255 characters.
    pub name: String,
    /// Token type, e.g. `personal` or `session`.
    pub token_type: String,
    /// The first characters of the secret, for display.
    pub token_prefix: String,
    /// SHA-256 of the full secret.
    pub hash: [u8; 32],
    /// After this time the token verifies as `EXPIRED`.
    pub expires_at: Option<Millis>,
    /// Revocation time; a revoked token verifies as `REVOKED`.
    pub revoked_at: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
}

/// The counters of a credential that change on every verification. They live in
/// atomics and are flushed to the store in batches (see ARCHITECTURE.md for what a
/// crash may lose).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Remaining uses in the current refill period (meaningless if unlimited).
    pub remaining: u32,
    /// The refill period `remaining` belongs to (periods counted from `anchor`).
    pub period: u64,
    /// Start of refill period 0.
    pub anchor: Millis,
    /// Verifications allowed so far.
    pub request_count: u64,
    /// Last allowed verification; 0 = never.
    pub last_used_at: Millis,
}

/// Statistics of one credential, as kept in a statistics shard (a record that
/// holds every credential whose id hashes to the shard, so that one periodic
/// write covers hundreds of credentials instead of one write each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Key or token id.
    pub id: String,
    /// Verifications allowed so far.
    pub request_count: u64,
    /// Last allowed verification; 0 = never.
    pub last_used_at: Millis,
}

/// Number of statistics shards.
pub const STAT_SHARDS: usize = 256;

/// The statistics shard of credential `id` (stable across versions: CRC-32).
pub fn stat_shard(id: &str) -> usize {
    crc32fast::hash(id.as_bytes()) as usize % STAT_SHARDS
}

/// The last millisecond RFC 3339 can write: 9999-12-31T23:59:59.999Z.
pub const MAX_RFC3339_MS: Millis = 253_402_300_799_999;

/// Formats a millisecond timestamp as RFC 3339 (UTC, second precision). Total:
/// a time after year 9999 (which RFC 3339 cannot write, and no API input can
/// produce) is shown as `9999-12-31T23:59:59Z`.
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms.min(MAX_RFC3339_MS) / 1000;
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn roles_follow_seed_000() {
        let allows = |r: Role, res: &str, act: &str| r.permissions().allows(res, act);
        assert!(allows(Role::Administrator, ACCOUNTS_RESOURCE, "create"));
        assert!(!allows(Role::Manager, ACCOUNTS_RESOURCE, "create"));
        assert!(allows(Role::Manager, ACCOUNTS_RESOURCE, "delete"));
        assert!(allows(Role::Manager, "documents", "delete"));
        assert!(allows(Role::Author, "documents", "create"));
        assert!(!allows(Role::Author, "documents", "delete"));
        assert!(!allows(Role::Author, ACCOUNTS_RESOURCE, "create"));
        assert!(allows(Role::Reader, "documents", "read"));
        assert!(!allows(Role::Reader, "documents", "update"));
    }

    #[test]
    fn permissions_wildcards() {
        let mut m = BTreeMap::new();
        m.insert("files".to_owned(), vec!["read".to_owned()]);
        m.insert("*".to_owned(), vec!["list".to_owned()]);
        let p = Permissions(m);
        assert!(p.allows("files", "read"));
        assert!(!p.allows("files", "write"));
        assert!(p.allows("anything", "list"));
        // The entry naming the resource decides alone.
        assert!(!p.allows("files", "list"));
        assert!(!Permissions::default().allows("files", "read"));
    }

    #[test]
    fn rfc3339_is_total() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_999), "1970-01-01T00:00:01Z");
        assert_eq!(rfc3339(253_402_300_798_999), "9999-12-31T23:59:58Z");
        assert_eq!(rfc3339(MAX_RFC3339_MS - 999), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(MAX_RFC3339_MS), "9999-12-31T23:59:59Z");
        // Year 10000 and beyond: clamped, never a panic.
        assert_eq!(rfc3339(MAX_RFC3339_MS + 1), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(252_000_000_000_000), "9955-07-25T16:00:00Z");
        assert_eq!(rfc3339(18_446_744_073_709_551), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX - 1), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn tier_parse_and_status_decode() {
        assert_eq!("pro".parse::<Tier>().unwrap(), Tier::Pro);
        assert!("Gold".parse::<Tier>().is_err());
        assert_eq!(UserStatus::from_u8(1), UserStatus::Enabled);
        assert_eq!(UserStatus::from_u8(200), UserStatus::Blocked);
    }

    fn arb_permissions() -> impl proptest::strategy::Strategy<Value = Permissions> {
        use proptest::prelude::*;
        let name = prop::sample::select(vec!["*", "docs", "keys", "users"]);
        let action = prop::sample::select(vec!["*", "read", "create", "delete"]);
        prop::collection::btree_map(
            name.prop_map(str::to_owned),
            prop::collection::vec(action.prop_map(str::to_owned), 0..4),
            0..4,
        )
        .prop_map(Permissions)
    }

    proptest::proptest! {
        /// Intersection and the ceiling check agree with `allows` on every
        /// resource and action, the wildcard and unnamed ones included.
        #[test]
        fn intersect_and_excess_follow_allows(a in arb_permissions(), b in arb_permissions()) {
            let meet = a.intersect(&b);
            let mut a_within_b = true;
            for r in ["*", "docs", "keys", "users", "other"] {
                for act in ["*", "read", "create", "delete", "other"] {
                    proptest::prop_assert_eq!(meet.allows(r, act), a.allows(r, act) && b.allows(r, act), "{}:{}", r, act);
                    a_within_b &= !a.allows(r, act) || b.allows(r, act);
                }
            }
            proptest::prop_assert_eq!(a.excess_over(&b).is_empty(), a_within_b, "{:?} over {:?}", a.excess_over(&b), b);
            proptest::prop_assert!(meet.excess_over(&a).is_empty() && meet.excess_over(&b).is_empty());
        }
    }

    #[test]
    fn excess_names_what_exceeds() {
        let p = |s: &str| serde_json::from_str::<Permissions>(s).unwrap();
        assert_eq!(p(r#"{"*":["*"]}"#).excess_over(&p(r#"{"keys":["create"]}"#)), vec!["keys:*", "*:*"]);
        assert!(p(r#"{"docs":["read"]}"#).excess_over(Role::Reader.grant()).is_empty());
        assert_eq!(p(r#"{"docs":["delete"]}"#).excess_over(Role::Author.grant()), vec!["docs:delete"]);
        assert_eq!(Role::Reader.grant().intersect(&p(r#"{"*":["*"]}"#)), *Role::Reader.grant());
    }
}
