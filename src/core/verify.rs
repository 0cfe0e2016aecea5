//! The hot path: one function from a credential and its context to a verdict.
//!
//! `verify` does no I/O and takes no lock: it finds the credential in the
//! index's lock-free `secrets` map (a lookup writes nothing shared), updates
//! the entry's atomics with CAS loops, and queues changed counters for the
//! flusher. A rejected credential is a verdict, not an error.
//!
//! [`Verifier::verify_in`] returns a verdict that borrows the entry under the
//! caller's guard of the map (no reference count is written);
//! [`Verifier::verify`] returns one that owns a counted reference.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;

use super::index::{Dirty, Index, KeyEntry, SecretRef, SecretsGuard, TeamEntry, TokenEntry, UserEntry};
use super::jwt::{Claims, JwtKeys, JwtReject};
use super::limits::{Micros, RateDenied, RateInfo, Take};
use super::model::{Role, TierLimits, UserStatus};
use super::perms::PermSet;
use super::secret;

/// Longest credential accepted, in bytes (JWTs have their own, smaller cap).
pub const MAX_CREDENTIAL_BYTES: usize = 8192;
/// The quota names `VerifyRequest::quota` may name.
pub const QUOTA_DOCUMENTS: &str = "documents";
/// A team's per-minute window, in microseconds.
pub(crate) const MINUTE_US: u64 = 60_000_000;

/// A question to the verifier.
#[derive(Clone, Copy, Debug)]
pub struct VerifyRequest<'a> {
    /// API key, access token or JWT, as presented.
    pub credential: &'a str,
    /// The caller's address, checked against a key's allowlist.
    pub ip: Option<IpAddr>,
    /// `(resource, action)` pairs the credential must all hold.
    pub permissions: &'a [(&'a str, &'a str)],
    /// Requests this verification counts as (limits and remaining uses); 1 by default.
    pub cost: u32,
    /// A team quota to consume on success, e.g. `("documents", 1)`.
    pub quota: Option<(&'a str, u32)>,
}

impl<'a> VerifyRequest<'a> {
    /// A request for `credential` with no other condition and a cost of 1.
    pub fn new(credential: &'a str) -> Self {
        VerifyRequest { credential, ip: None, permissions: &[], cost: 1, quota: None }
    }
}

/// Which kind of credential was presented, and why a credential was refused:
/// the wire protocol's enums (`protocol/SPEC.md` gives their numbers and
/// names), so every interface reports the same codes.
pub use tollgate_protocol::{CredentialKind, DenyCode};

/// A granted verification.
///
/// Who was granted, and with what permissions, is read through the index entry
/// the credential resolved to, which the verdict holds: borrowed under the
/// caller's guard of the map (`'a`; nothing is written to build it), or a
/// counted reference in an owned verdict (`Verdict`). The names a
/// user's credentials share are never copied nor written by the hot path.
#[derive(Clone)]
pub struct AllowOf<'a> {
    /// Kind of credential.
    pub kind: CredentialKind,
    /// The user's current role.
    pub role: Role,
    /// Uses left, for a key with a remaining-use limit.
    pub remaining: Option<u32>,
    /// The tightest rate limit that applied: of the key's and the team's, the
    /// one with fewer requests remaining (on a tie, the longer to reset).
    pub rate_limit: Option<RateInfo>,
    /// Strict durability: the counter changes of this verification are on disk
    /// once this flush generation is done (`Engine` waits for it).
    pub durable_after: Option<u64>,
    grantee: Grantee<'a>,
}

/// The entry a credential resolved to.
#[derive(Clone)]
enum Grantee<'a> {
    Key(Held<'a, KeyEntry>),
    Token(Held<'a, TokenEntry>),
    Jwt(Arc<UserEntry>, Arc<Claims>),
    /// A JWT exchanged from an API key: it acts as that key.
    KeyJwt(Held<'a, KeyEntry>, Arc<Claims>),
}

impl Grantee<'_> {
    fn into_owned(self) -> Grantee<'static> {
        match self {
            Grantee::Key(k) => Grantee::Key(k.into_owned()),
            Grantee::Token(t) => Grantee::Token(t.into_owned()),
            Grantee::Jwt(u, c) => Grantee::Jwt(u, c),
            Grantee::KeyJwt(k, c) => Grantee::KeyJwt(k.into_owned(), c),
        }
    }
}

/// An index entry as a verdict holds it: borrowed from the map under a guard,
/// or a counted reference.
enum Held<'a, T> {
    Borrowed(&'a Arc<T>),
    Owned(Arc<T>),
}

impl<T> Held<'_, T> {
    fn arc(&self) -> &Arc<T> {
        match self {
            Held::Borrowed(a) => a,
            Held::Owned(a) => a,
        }
    }

    fn into_owned(self) -> Held<'static, T> {
        match self {
            Held::Borrowed(a) => Held::Owned(a.clone()),
            Held::Owned(a) => Held::Owned(a),
        }
    }
}

impl<T> Clone for Held<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Held::Borrowed(a) => Held::Borrowed(a),
            Held::Owned(a) => Held::Owned(a.clone()),
        }
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.arc()
    }
}

/// A granted verification that owns its references.
pub type Allow = AllowOf<'static>;

impl AllowOf<'_> {
    /// The same grant holding counted references, free of the map's guard.
    pub fn into_owned(self) -> Allow {
        AllowOf {
            kind: self.kind,
            role: self.role,
            remaining: self.remaining,
            rate_limit: self.rate_limit,
            durable_after: self.durable_after,
            grantee: self.grantee.into_owned(),
        }
    }

    fn user(&self) -> &UserEntry {
        match &self.grantee {
            Grantee::Key(k) | Grantee::KeyJwt(k, _) => &k.user,
            Grantee::Token(t) => &t.user,
            Grantee::Jwt(u, _) => u,
        }
    }

    /// The user the credential acts as.
    pub fn subject(&self) -> &str {
        &self.user().id
    }

    /// The user's team.
    pub fn team(&self) -> &str {
        &self.user().team.id
    }

    /// Key id, token id, or the JWT's `jti`.
    pub fn credential_id(&self) -> &str {
        match &self.grantee {
            Grantee::Key(k) => &k.id,
            Grantee::Token(t) => &t.id,
            Grantee::Jwt(_, claims) | Grantee::KeyJwt(_, claims) => &claims.jti,
        }
    }

    /// What the credential may do, its grant: for a key (or a JWT exchanged
    /// from one) the key's permissions within its owner's role, else the
    /// user's role's permissions (as of this verification).
    pub fn permissions(&self) -> &PermSet {
        match &self.grantee {
            Grantee::Key(k) | Grantee::KeyJwt(k, _) => k.permissions(),
            Grantee::Token(_) | Grantee::Jwt(..) => self.role.permissions(),
        }
    }

    /// The API key the credential is, or was exchanged from.
    pub fn key(&self) -> Option<&KeyEntry> {
        match &self.grantee {
            Grantee::Key(k) | Grantee::KeyJwt(k, _) => Some(k),
            Grantee::Token(_) | Grantee::Jwt(..) => None,
        }
    }

    /// The JWT's claims, for a JWT.
    pub fn claims(&self) -> Option<&Claims> {
        match &self.grantee {
            Grantee::Jwt(_, c) | Grantee::KeyJwt(_, c) => Some(c),
            Grantee::Key(_) | Grantee::Token(_) => None,
        }
    }
}

impl std::fmt::Debug for AllowOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allow")
            .field("kind", &self.kind)
            .field("subject", &self.subject())
            .field("team", &self.team())
            .field("credential_id", &self.credential_id())
            .field("role", &self.role)
            .field("permissions", self.permissions())
            .field("remaining", &self.remaining)
            .field("rate_limit", &self.rate_limit)
            .field("durable_after", &self.durable_after)
            .finish()
    }
}

/// A refused verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// Machine code.
    pub code: DenyCode,
    /// A short human explanation (never contains the credential).
    pub reason: &'static str,
    /// For limits: milliseconds after which retrying can succeed.
    pub retry_after_ms: Option<u64>,
    /// For rate limits: the limiter's state.
    pub rate_limit: Option<RateInfo>,
    /// Cluster mode: no remaining uses here, but this node asked the
    /// cluster for a lease of more; verifying again once it is answered may
    /// succeed (`Engine::verify_at_async` does, within a bound).
    pub lease_pending: bool,
}

/// The verifier's answer: a verdict of [`Verifier::verify_in`] borrows the
/// credential's entry under the caller's guard (`'a`); a [`Verdict`] owns
/// what it refers to.
#[derive(Clone, Debug)]
pub enum VerdictOf<'a> {
    /// Granted.
    Allow(AllowOf<'a>),
    /// Refused.
    Deny(Deny),
}

/// A verdict that owns its references.
pub type Verdict = VerdictOf<'static>;

impl VerdictOf<'_> {
    /// The same verdict, free of the map's guard (counts a reference to the
    /// entry of a granted key or token).
    pub fn into_owned(self) -> Verdict {
        match self {
            VerdictOf::Allow(a) => VerdictOf::Allow(a.into_owned()),
            VerdictOf::Deny(d) => VerdictOf::Deny(d),
        }
    }

    /// The deny code, if refused.
    pub fn code(&self) -> Option<DenyCode> {
        match self {
            VerdictOf::Allow(_) => None,
            VerdictOf::Deny(d) => Some(d.code),
        }
    }

    /// Whether granted.
    pub fn is_allow(&self) -> bool {
        matches!(self, VerdictOf::Allow(_))
    }
}

fn deny(code: DenyCode, reason: &'static str) -> Verdict {
    VerdictOf::Deny(Deny { code, reason, retry_after_ms: None, rate_limit: None, lease_pending: false })
}

fn limited(code: DenyCode, reason: &'static str, d: RateDenied) -> Verdict {
    VerdictOf::Deny(Deny {
        code,
        reason,
        retry_after_ms: Some(d.retry_after_ms),
        rate_limit: Some(d.info),
        lease_pending: false,
    })
}

/// Everything the verifier reads besides the request.
pub struct Verifier<'a> {
    /// The index.
    pub index: &'a Index,
    /// JWT verification keys, swapped whole by a reload; read only when a
    /// JWT is presented, so keys and tokens do not pay for the load.
    pub jwt: &'a ArcSwap<JwtKeys>,
    /// Limits per tier.
    pub tiers: &'a [TierLimits; 4],
    /// Strict durability: queue every change and report the flush to wait for.
    pub strict: bool,
    /// Whether the team's per-minute tier limit applies. It limits the
    /// team's API requests (seed 000); an admin-API call authenticated by a
    /// credential is not one, and must not be refused because the team's
    /// traffic used up the minute (an administrator revoking a leaked key at
    /// the limit). A key's own rate limit and uses apply either way.
    pub team_limit: bool,
    /// Cluster mode: team documents are the cluster's, acquired by this
    /// (a round trip to PostgreSQL) instead of from `TeamEntry::documents`.
    pub documents: Option<&'a SharedQuota<'a>>,
}

/// Acquires `amount` documents of a team's quota within `limit` (`None`:
/// unlimited): the documents used after, or why not (the deny reason).
pub type SharedQuota<'a> = dyn Fn(&TeamEntry, u64, Option<u64>) -> Result<u64, &'static str> + 'a;

impl Verifier<'_> {
    /// Decides on `req` at time `now` (microseconds since the epoch); the
    /// verdict owns its references.
    pub fn verify(&self, req: &VerifyRequest<'_>, now: Micros) -> Verdict {
        let guard = self.index.secrets.guard();
        self.verify_in(req, now, &guard).into_owned()
    }

    /// As [`verify`](Verifier::verify), the verdict borrowing the
    /// credential's entry under `guard` (of `self.index.secrets`): nothing
    /// shared is written to find the entry nor to build the verdict.
    pub fn verify_in<'g>(&self, req: &VerifyRequest<'_>, now: Micros, guard: &'g SecretsGuard<'_>) -> VerdictOf<'g> {
        self.verify_looked(req, now, guard, None)
    }

    /// As [`verify_in`](Verifier::verify_in), with the credential's lookup
    /// done ahead by `Engine::look_up_all` (for `req.credential`, under `guard`), so a
    /// batch can start all of its lookups' cache misses before deciding on
    /// the first request. Every check is made here, in `verify_in`'s order;
    /// only the map lookup is reused (made again when `looked` is `None` or
    /// was made for another string).
    pub fn verify_looked<'g>(
        &self,
        req: &VerifyRequest<'_>,
        now: Micros,
        guard: &'g SecretsGuard<'_>,
        looked: Option<Looked<'g>>,
    ) -> VerdictOf<'g> {
        let cred = req.credential;
        if cred.is_empty() || cred.len() > MAX_CREDENTIAL_BYTES {
            return deny(DenyCode::Malformed, "credential empty or too long");
        }
        if req.cost == 0 {
            return deny(DenyCode::Malformed, "cost must be at least 1");
        }
        if looks_like_jwt(cred) {
            return self.verify_jwt(req, now);
        }
        let found = match looked {
            Some(looked) if looked.is_of(cred) && looked.hashed => looked.found,
            Some(looked) if looked.is_of(cred) => return deny(DenyCode::Malformed, "not a well-formed key or token"),
            _ => {
                let Some(hash) = secret_hash(self.index, cred) else {
                    return deny(DenyCode::Malformed, "not a well-formed key or token");
                };
                self.index.secrets.get_in(&hash, guard)
            }
        };
        match found {
            None => deny(DenyCode::NotFound, "unknown credential"),
            Some(SecretRef::Key(key)) => self.verify_key(Held::Borrowed(key), req, now, None),
            Some(SecretRef::Token(token)) => self.verify_token(Held::Borrowed(token), req, now),
        }
    }

    /// Checks and counts a use of `key`, presented as itself or (`jwt`) as a
    /// JWT exchanged from it.
    fn verify_key<'g>(
        &self,
        key: Held<'g, KeyEntry>,
        req: &VerifyRequest<'_>,
        now: Micros,
        jwt: Option<Arc<Claims>>,
    ) -> VerdictOf<'g> {
        let now_ms = now / 1000;
        if !key.enabled {
            return deny(DenyCode::Disabled, "key disabled");
        }
        if key.expires_at().is_some_and(|e| now_ms >= e) {
            return deny(DenyCode::Expired, "key expired");
        }
        if key.user.status() != UserStatus::Enabled {
            return deny(DenyCode::Disabled, "owner is not enabled");
        }
        // The rate limit, refill, grant and allowlist: one object that keys
        // configured alike share (in cache when many are verified).
        let rec = &key.policy.limits;
        if !key.ips().is_empty() && !req.ip.is_some_and(|ip| ip_allowed(key.ips(), ip)) {
            return deny(DenyCode::IpNotAllowed, "caller address not in the key's allowlist");
        }
        if !req.permissions.iter().all(|(r, a)| key.permissions().allows(r, a)) {
            return deny(DenyCode::InsufficientPermissions, "key lacks a required permission");
        }
        let c = &key.counters;
        let cost = req.cost;
        // Cluster mode: the key's rate limit is the cluster's, spent from
        // this node's lease of the current window.
        let cl = c.cluster.as_deref();
        let undo_rate = |limit| match cl {
            Some(cl) => cl.rate.undo(cost),
            None => c.window.undo(limit, now, cost),
        };
        let mut rate = None;
        if let Some(limit) = rec.rate_limit() {
            if let Some(cl) = cl {
                match cl.rate.try_take(limit.max, now, cost) {
                    Some(info) => {
                        if info.remaining < cl.lease.rate_low.load(Ordering::Relaxed) {
                            self.index.want_rate_lease(key.arc(), now_ms);
                        }
                        rate = Some(info);
                    }
                    None => {
                        let lease_pending = self.index.want_rate_lease(key.arc(), now_ms);
                        let full_for = cl.lease.rate_dry_until_ms.load(Ordering::Relaxed).saturating_sub(now_ms);
                        let reset_ms = cl.rate.reset_ms(now).max(full_for);
                        return VerdictOf::Deny(Deny {
                            code: DenyCode::RateLimited,
                            reason: "key rate limit reached",
                            retry_after_ms: Some(reset_ms),
                            rate_limit: Some(RateInfo { limit: limit.max, remaining: 0, reset_ms }),
                            lease_pending,
                        });
                    }
                }
            } else {
                match c.window.try_take(limit, now, cost) {
                    Ok(info) => rate = Some(info),
                    Err(d) => return limited(DenyCode::RateLimited, "key rate limit reached", d),
                }
            }
        }
        let mut remaining = None;
        // Cluster mode: a refill is the cluster's (the leaser brings each
        // period's uses); the node's counter never refills by itself, and
        // what it holds of a period that has ended is void.
        let refill = if cl.is_some() { None } else { rec.refill() };
        let period_end = cl.filter(|_| rec.refill().is_some()).map(|cl| cl.lease.period_end_ms.load(Ordering::Acquire));
        if rec.counted {
            let take = match period_end {
                Some(end) if now_ms >= end => Take::Exhausted(None),
                _ => c.uses.try_take(refill, c.anchor_ms, now_ms, cost),
            };
            match take {
                Take::Taken(left) => {
                    // Cluster mode: ask for more before the lease runs out.
                    if let Some(cl) = cl
                        && left < cl.lease.low.load(Ordering::Relaxed)
                    {
                        self.index.want_lease(key.arc(), now_ms);
                    }
                    remaining = Some(left)
                }
                Take::Exhausted(next) => {
                    if let Some(limit) = rec.rate_limit() {
                        undo_rate(limit);
                    }
                    if let Some(cl) = cl {
                        cl.lease.want.fetch_max(cost, Ordering::Relaxed);
                    }
                    let lease_pending = self.index.want_lease(key.arc(), now_ms);
                    // Cluster mode, a refill: the uses come back when this period ends.
                    let next = next.or(period_end.filter(|&end| end > now_ms).map(|end| end - now_ms));
                    return VerdictOf::Deny(Deny {
                        code: DenyCode::UsageExceeded,
                        reason: "no remaining uses",
                        retry_after_ms: next,
                        rate_limit: None,
                        lease_pending,
                    });
                }
            }
        }
        let undo_key = || {
            if let Some(limit) = rec.rate_limit() {
                undo_rate(limit);
            }
            if remaining.is_some() {
                c.uses.undo(refill, c.anchor_ms, now_ms, cost);
            }
        };
        let team_rate = match self.team_limits(&key.user.team, req, now) {
            Ok(info) => info,
            Err(v) => {
                undo_key();
                return v;
            }
        };
        c.request_count.fetch_add(1, Ordering::Relaxed);
        c.last_used_at.fetch_max(now_ms, Ordering::Relaxed);
        let counted = remaining.is_some();
        if counted {
            self.index.mark_dirty(&c.dirty, self.strict, || Dirty::Key(key.arc().clone()));
        } else {
            self.index.mark_stats_dirty(&c.dirty, || Dirty::Key(key.arc().clone()));
        }
        let role = key.user.role();
        let (kind, grantee) = match jwt {
            None => (CredentialKind::ApiKey, Grantee::Key(key)),
            Some(claims) => (CredentialKind::Jwt, Grantee::KeyJwt(key, claims)),
        };
        VerdictOf::Allow(AllowOf {
            kind,
            role,
            remaining,
            rate_limit: RateInfo::tightest(rate, team_rate),
            durable_after: self.durable_after(counted || req.quota.is_some()),
            grantee,
        })
    }

    fn verify_token<'g>(&self, token: Held<'g, TokenEntry>, req: &VerifyRequest<'_>, now: Micros) -> VerdictOf<'g> {
        let now_ms = now / 1000;
        if token.revoked_at.load(Ordering::Acquire) != 0 {
            return deny(DenyCode::Revoked, "token revoked");
        }
        if token.record.expires_at.is_some_and(|e| now_ms >= e) {
            return deny(DenyCode::Expired, "token expired");
        }
        let role = match self.user_checks(&token.user, req) {
            Ok(role) => role,
            Err(v) => return v,
        };
        let team_rate = match self.team_limits(&token.user.team, req, now) {
            Ok(info) => info,
            Err(v) => return v,
        };
        token.request_count.fetch_add(1, Ordering::Relaxed);
        token.last_used_at.fetch_max(now_ms, Ordering::Relaxed);
        self.index.mark_stats_dirty(&token.dirty, || Dirty::Token(token.arc().clone()));
        VerdictOf::Allow(AllowOf {
            kind: CredentialKind::AccessToken,
            role,
            remaining: None,
            rate_limit: team_rate,
            durable_after: self.durable_after(req.quota.is_some()),
            grantee: Grantee::Token(token),
        })
    }

    fn verify_jwt(&self, req: &VerifyRequest<'_>, now: Micros) -> Verdict {
        let claims = match self.jwt.load().verify(req.credential, now / 1_000_000) {
            Ok(c) => c,
            Err(JwtReject::Malformed(why)) => return deny(DenyCode::Malformed, why),
            Err(JwtReject::BadSignature(why)) => return deny(DenyCode::BadSignature, why),
            Err(JwtReject::Expired) => return deny(DenyCode::Expired, "token expired"),
            Err(JwtReject::NotYetValid) => return deny(DenyCode::NotYetValid, "token not yet valid"),
        };
        if self.index.jti_revoked(&claims.jti, &claims.team) {
            return deny(DenyCode::Revoked, "token revoked");
        }
        let Some(user) = self.index.users.get(claims.sub.as_str()).map(|u| u.value().clone()) else {
            return deny(DenyCode::NotFound, "token subject does not exist");
        };
        if *user.team.id != *claims.team {
            return deny(DenyCode::BadSignature, "token team does not match its subject");
        }
        if claims.issued_ms() < user.revoked_before.load(Ordering::Acquire) {
            return deny(DenyCode::Revoked, "token revoked");
        }
        if let Some(key_id) = &claims.key {
            return match self.index.keys.get(key_id.as_str()) {
                Some(key) if Arc::ptr_eq(&key.user, &user) => self.verify_key(Held::Owned(key), req, now, Some(claims)),
                _ => deny(DenyCode::Revoked, "the key this token was exchanged from is gone"),
            };
        }
        let role = match self.user_checks(&user, req) {
            Ok(role) => role,
            Err(v) => return v,
        };
        let team_rate = match self.team_limits(&user.team, req, now) {
            Ok(info) => info,
            Err(v) => return v,
        };
        VerdictOf::Allow(AllowOf {
            kind: CredentialKind::Jwt,
            role,
            remaining: None,
            rate_limit: team_rate,
            durable_after: self.durable_after(req.quota.is_some()),
            grantee: Grantee::Jwt(user, claims),
        })
    }

    /// Status and role checks for credentials that act with their user's
    /// role; returns the role they were checked against.
    fn user_checks(&self, user: &UserEntry, req: &VerifyRequest<'_>) -> Result<Role, Verdict> {
        if user.status() != UserStatus::Enabled {
            return Err(deny(DenyCode::Disabled, "user is not enabled"));
        }
        let role = user.role();
        let granted = role.permissions();
        if !req.permissions.iter().all(|(r, a)| granted.allows(r, a)) {
            return Err(deny(DenyCode::InsufficientPermissions, "role lacks a required permission"));
        }
        Ok(role)
    }

    /// The team's per-minute limit, then the quota; all or nothing.
    fn team_limits(
        &self,
        team: &Arc<TeamEntry>,
        req: &VerifyRequest<'_>,
        now: Micros,
    ) -> Result<Option<RateInfo>, Verdict> {
        let tier = &self.tiers[team.tier().index()];
        let quota_limit = match req.quota {
            None => None,
            Some((QUOTA_DOCUMENTS, amount)) => Some((u64::from(amount), tier.documents.get())),
            Some(_) => return Err(deny(DenyCode::Malformed, "unknown quota")),
        };
        let mut info = None;
        let rpm = tier.requests_per_minute.get().filter(|_| self.team_limit);
        let cl = team.cluster.as_deref();
        if let Some(rpm) = rpm {
            let rpm = u32::try_from(rpm).unwrap_or(u32::MAX);
            match cl {
                // Cluster mode: the team's minute is the cluster's, spent
                // from this node's tokens of it.
                Some(cl) => {
                    let now_ms = now / 1000;
                    match cl.rate.try_take(rpm, now, req.cost) {
                        Some(i) => {
                            if i.remaining < cl.lease.rate_low.load(Ordering::Relaxed) {
                                self.index.want_team_rate_lease(team, now_ms);
                            }
                            info = Some(i);
                        }
                        None => {
                            let lease_pending = self.index.want_team_rate_lease(team, now_ms);
                            let full_for = cl.lease.rate_dry_until_ms.load(Ordering::Relaxed).saturating_sub(now_ms);
                            let reset_ms = cl.rate.reset_ms(now).max(full_for);
                            return Err(VerdictOf::Deny(Deny {
                                code: DenyCode::TeamRateLimited,
                                reason: "team per-minute limit reached",
                                retry_after_ms: Some(reset_ms),
                                rate_limit: Some(RateInfo { limit: rpm, remaining: 0, reset_ms }),
                                lease_pending,
                            }));
                        }
                    }
                }
                None => match team.minute.try_take(rpm, MINUTE_US, now, req.cost) {
                    Ok(i) => info = Some(i),
                    Err(d) => return Err(limited(DenyCode::TeamRateLimited, "team per-minute limit reached", d)),
                },
            }
        }
        if let Some((amount, limit)) = quota_limit {
            let took = match self.documents {
                Some(acquire) => acquire(team, amount, limit).map(|_| ()),
                None => team
                    .documents
                    .try_consume(amount, limit.unwrap_or(u64::MAX))
                    .map(|_| ())
                    .map_err(|_| "team document quota reached"),
            };
            if let Err(reason) = took {
                if rpm.is_some() {
                    match cl {
                        Some(cl) => cl.rate.undo(req.cost),
                        None => team.minute.undo(MINUTE_US, now, req.cost),
                    }
                }
                return Err(deny(DenyCode::QuotaExceeded, reason));
            }
            if self.documents.is_none() {
                self.index.mark_dirty(&team.dirty, self.strict, || Dirty::Team(team.clone()));
            }
        }
        Ok(info)
    }

    /// Strict durability applies to consumption (remaining uses, quotas):
    /// statistics alone never make a verdict wait for the disk.
    fn durable_after(&self, consumed: bool) -> Option<u64> {
        (self.strict && consumed).then(|| self.index.flushes_started.load(Ordering::SeqCst) + 1)
    }
}

/// The lookup of a key's or token's secret in [`Index::secrets`], done ahead
/// of its verification by `Engine::look_up_all` and consumed by
/// [`Verifier::verify_looked`]: the credential found, if any, borrowed under
/// the guard the lookup took.
///
/// It remembers which string it was made for (its address and length): given
/// with another credential, it is ignored and the lookup is made again, so a
/// caller's mix-up costs a lookup, never a verdict for the wrong credential.
#[derive(Clone, Copy)]
pub struct Looked<'g> {
    found: Option<SecretRef<'g>>,
    /// `false`: [`lookup_hash`] found nothing to look up (a credential that
    /// reaches the lookup is then MALFORMED: its checksum was checked once).
    hashed: bool,
    of: (usize, usize),
}

impl<'g> Looked<'g> {
    /// The lookup of a `cred` that [`lookup_hash`] gave no hash for.
    pub fn unhashed(cred: &str) -> Looked<'g> {
        Looked { found: None, hashed: false, of: (cred.as_ptr() as usize, cred.len()) }
    }

    /// Whether this is the lookup of `cred` (the same string, not a copy).
    fn is_of(&self, cred: &str) -> bool {
        self.of == (cred.as_ptr() as usize, cred.len())
    }
}

/// The SHA-256 that [`Verifier::verify_in`] would look `cred` up by, or
/// `None` when it would not look it up at all (a JWT, a credential empty or
/// too long, one tollgate's checksum rejects and no adopted key could have).
/// The first step of `Engine::look_up_all`, for a batch that computes every digest
/// before it looks any up: the lookups then follow one another closely enough
/// for the processor to overlap their cache misses.
pub fn lookup_hash(index: &Index, cred: &str) -> Option<[u8; 32]> {
    if cred.is_empty() || cred.len() > MAX_CREDENTIAL_BYTES || looks_like_jwt(cred) {
        return None;
    }
    secret_hash(index, cred)
}

/// The lookup of `hash`, the [`lookup_hash`] of `cred`, in the index, under
/// `guard`.
pub fn look_up_hash<'g>(index: &Index, cred: &str, hash: &[u8; 32], guard: &'g SecretsGuard<'_>) -> Looked<'g> {
    Looked { found: index.secrets.get_in(hash, guard), hashed: true, of: (cred.as_ptr() as usize, cred.len()) }
}

/// Reads the lines of a found credential's entry that its verification reads
/// first (its settings, counters and owner), so that their cache misses are
/// under way before it is verified; writes nothing.
pub fn touch(looked: Looked<'_>) {
    match looked.found {
        Some(SecretRef::Key(key)) => {
            std::hint::black_box((key.enabled, key.counters.request_count.load(Ordering::Relaxed), key.user.status()));
        }
        Some(SecretRef::Token(token)) => {
            std::hint::black_box((token.revoked_at.load(Ordering::Relaxed), token.user.status()));
        }
        None => {}
    }
}

/// The SHA-256 to look `cred` up by: tollgate's own format when its checksum
/// holds, else an adopted key's, if one could have it (none while no key was
/// adopted, nor for a credential of tollgate's shape whose prefix no adopted
/// key has: a mistyped `tg_` key stays MALFORMED without a lookup).
fn secret_hash(index: &Index, cred: &str) -> Option<[u8; 32]> {
    if let Some(hash) = secret::parse(cred) {
        return Some(hash);
    }
    if !index.any_adopted.load(Ordering::Acquire) {
        return None;
    }
    let adopted = index.adopted_prefixes.load();
    if let Some(prefix) = secret::shape_prefix(cred)
        && !adopted.iter().any(|p| p.is_empty() || p == prefix)
    {
        return None;
    }
    Some(secret::sha256(cred.as_bytes()))
}

/// JWTs are three base64url segments and start with an encoded `{"`: the
/// shape the verifier routes to JWT verification, and that counting and the
/// audit log classify a refused credential by.
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|&b| b == b'.').count() == 2
}

fn ip_allowed(nets: &[ipnet::IpNet], ip: IpAddr) -> bool {
    // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_allowlist_matches_cidrs_and_mapped_v4() {
        let nets: Vec<ipnet::IpNet> =
            ["10.10.0.0/16", "2001:db8::/32", "1.1.1.1/32"].iter().map(|s| s.parse().unwrap()).collect();
        for ok in ["10.10.3.4", "1.1.1.1", "2001:db8::1", "::ffff:10.10.0.1"] {
            assert!(ip_allowed(&nets, ok.parse().unwrap()), "{ok}");
        }
        for bad in ["10.11.0.1", "1.1.1.2", "2001:db9::1", "::1"] {
            assert!(!ip_allowed(&nets, bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn jwt_shape_detection() {
        assert!(looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.e30.sig"));
        assert!(!looks_like_jwt("tg_abc"));
        assert!(!looks_like_jwt("eyJ.a.b.c"));
    }

    #[test]
    fn deny_codes_are_numbered_in_wire_order() {
        for (i, c) in DenyCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i + 1);
        }
    }
}
