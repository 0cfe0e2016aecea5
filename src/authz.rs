//! Who may do what through the admin API: the role matrix of seed 000 as one
//! table, and the one function every admin route asks.
//!
//! Two rules decide every admin call, in this order:
//!
//! 1. **The credential's scope.** An API key, or a JWT exchanged from one,
//!    may call a route only if its own permissions hold the route's
//!    `resource:action` (e.g. `{"keys": ["create"]}`). A password JWT or an
//!    access token has no scope of its own: it acts with its user's role.
//! 2. **The role matrix** ([`MATRIX`]): for each object and verb, how far each
//!    role reaches — nothing, its own objects, objects of users it does not
//!    rank below, or the whole team. Objects of another team are not found
//!    (404), exactly like objects that do not exist. The platform (the
//!    bootstrap admin token) reaches everything in every team.
//!
//! On top of the matrix, what a credential creates is capped by what it
//! holds: a key (or the permissions of an updated key) may hold at most the
//! creating credential's grant, and never outlive a key it was made with; an
//! access token carries its user's whole role, so only a credential holding
//! that whole role may make one. A user's status Blocked is set and lifted
//! only by the platform; on their own account a user changes only their
//! password. `ARCHITECTURE.md` shows this table; a test keeps the two equal.

use crate::core::model::Role;

/// What an admin route acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// Teams.
    Teams,
    /// User accounts.
    Users,
    /// API keys.
    Keys,
    /// Personal access tokens.
    Tokens,
    /// JWT sessions (revocation).
    Sessions,
    /// The audit log.
    Logs,
    /// The daemon's configuration (reload).
    Config,
    /// A team's documents quota (releasing documents over HTTP).
    Documents,
}

impl Object {
    /// The resource name a scoped credential must hold (`{"keys": [...]}`).
    pub fn resource(self) -> &'static str {
        match self {
            Object::Teams => "teams",
            Object::Users => crate::core::model::ACCOUNTS_RESOURCE,
            Object::Keys => "keys",
            Object::Tokens => "tokens",
            Object::Sessions => "sessions",
            Object::Logs => "logs",
            Object::Config => "config",
            Object::Documents => "documents",
        }
    }
}

/// What a route does to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Create.
    Create,
    /// Read or list.
    Read,
    /// Change.
    Update,
    /// Delete, revoke.
    Delete,
}

impl Verb {
    /// The action name a scoped credential must hold.
    pub fn action(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Read => "read",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }
}

/// How far a role reaches inside its own team.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Not at all.
    None,
    /// Only objects of the caller's own account (its keys, tokens, sessions,
    /// its own user record).
    Own,
    /// Objects of its own account and of users it does not rank below: a
    /// Manager acts on Managers, Authors and Readers, never on Administrators.
    Ranked,
    /// Every object of the team.
    Team,
    /// Only the platform (the bootstrap admin token).
    Platform,
}

impl Reach {
    fn label(self) -> &'static str {
        match self {
            Reach::None => "—",
            Reach::Own => "own",
            Reach::Ranked => "ranked",
            Reach::Team => "team",
            Reach::Platform => "platform only",
        }
    }
}

/// One row of the matrix: an object, a verb, and the reach of Administrator,
/// Manager, Author and Reader (in [`Role::ALL`] order).
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The object.
    pub object: Object,
    /// The verb.
    pub verb: Verb,
    /// Reach per role, Administrator first.
    pub reach: [Reach; 4],
}

const fn rule(object: Object, verb: Verb, reach: [Reach; 4]) -> Rule {
    Rule { object, verb, reach }
}

use Reach::{None as No, Own, Platform as Plat, Ranked, Team};

/// Seed 000's roles as the admin API enforces them. Administrator: everything
/// in the team. Manager: as Administrator except creating accounts and acting
/// on Administrators. Author: creates and updates, never deletes, never
/// manages other accounts. Reader: reads. Everyone manages their own
/// credentials (within their grant) and their own password.
pub const MATRIX: &[Rule] = &[
    rule(Object::Teams, Verb::Create, [Plat, Plat, Plat, Plat]),
    rule(Object::Teams, Verb::Read, [Team, Team, Team, Team]),
    rule(Object::Teams, Verb::Update, [Plat, Plat, Plat, Plat]),
    rule(Object::Teams, Verb::Delete, [Plat, Plat, Plat, Plat]),
    rule(Object::Users, Verb::Create, [Team, No, No, No]),
    rule(Object::Users, Verb::Read, [Team, Team, Team, Team]),
    rule(Object::Users, Verb::Update, [Team, Ranked, Own, Own]),
    rule(Object::Users, Verb::Delete, [Team, Ranked, No, No]),
    rule(Object::Keys, Verb::Create, [Team, Ranked, Own, Own]),
    rule(Object::Keys, Verb::Read, [Team, Team, Own, Own]),
    rule(Object::Keys, Verb::Update, [Team, Ranked, Own, Own]),
    rule(Object::Keys, Verb::Delete, [Team, Ranked, Own, Own]),
    rule(Object::Tokens, Verb::Create, [Own, Own, Own, Own]),
    rule(Object::Tokens, Verb::Read, [Own, Own, Own, Own]),
    rule(Object::Tokens, Verb::Delete, [Own, Own, Own, Own]),
    rule(Object::Sessions, Verb::Delete, [Team, Ranked, Own, Own]),
    rule(Object::Logs, Verb::Read, [Team, Team, No, No]),
    rule(Object::Config, Verb::Update, [Plat, Plat, Plat, Plat]),
    rule(Object::Documents, Verb::Delete, [Team, Team, No, No]),
];

/// The reach of `role` for `verb` on `object` (`None` if no rule names it).
pub fn reach(role: Role, object: Object, verb: Verb) -> Reach {
    MATRIX.iter().find(|r| r.object == object && r.verb == verb).map_or(Reach::None, |r| r.reach[role as usize])
}

/// Whom an object belongs to: its team and, for objects of an account, the
/// account and its role.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    /// The object's team.
    pub team: &'a str,
    /// The account it belongs to (a user is its own account); `None` for a
    /// team-wide object (the team itself, its log, its user list).
    pub user: Option<(&'a str, Role)>,
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404: another team's object, indistinguishable from a missing one.
    NotFound,
    /// 403, with the reason.
    Forbidden(String),
}

/// A user caller as the matrix sees it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    /// The caller's user id.
    pub user: &'a str,
    /// The caller's team.
    pub team: &'a str,
    /// The caller's role.
    pub role: Role,
}

/// Decides whether `who` (`None` = the platform) may `verb` an `object` owned
/// by `owner`. The scope of a scoped credential is checked before this, by
/// the caller.
pub fn decide(who: Option<Member<'_>>, object: Object, verb: Verb, owner: Owner<'_>) -> Result<(), Refusal> {
    let Some(me) = who else { return Ok(()) };
    if me.team != owner.team {
        return Err(Refusal::NotFound);
    }
    let what = format!("{} {}", verb.action(), object.resource());
    let forbidden = |why: &str| Err(Refusal::Forbidden(format!("a {} may not {what}{why}", me.role)));
    let own = owner.user.is_some_and(|(u, _)| u == me.user);
    match reach(me.role, object, verb) {
        Reach::Team => Ok(()),
        Reach::Ranked => match owner.user {
            Some((_, role)) if !own && role.outranks(me.role) => forbidden(&format!(" of a {role}")),
            _ => Ok(()),
        },
        Reach::Own if own => Ok(()),
        Reach::Own => forbidden(" other than its own"),
        Reach::None => forbidden(""),
        Reach::Platform => Err(Refusal::Forbidden(format!("only the admin token may {what}"))),
    }
}

/// The matrix as the Markdown table `ARCHITECTURE.md` shows.
pub fn markdown() -> String {
    let mut s =
        String::from("| object | action | Administrator | Manager | Author | Reader |\n|---|---|---|---|---|---|\n");
    for r in MATRIX {
        s.push_str(&format!("| {} | {} |", r.object.resource(), r.verb.action()));
        for reach in r.reach {
            s.push_str(&format!(" {} |", reach.label()));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_table_is_the_enforced_one() {
        let doc = include_str!("../ARCHITECTURE.md");
        assert!(doc.contains(&markdown()), "ARCHITECTURE.md must contain authz::markdown():\n{}", markdown());
    }

    #[test]
    fn ranks_and_teams() {
        let m = |role| Some(Member { user: "u1", team: "t1", role });
        let of = |user: &'static str, role| Owner { team: "t1", user: Some((user, role)) };
        assert_eq!(decide(m(Role::Manager), Object::Users, Verb::Update, of("u2", Role::Reader)), Ok(()));
        assert!(matches!(
            decide(m(Role::Manager), Object::Users, Verb::Update, of("u2", Role::Administrator)),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            decide(m(Role::Author), Object::Users, Verb::Update, of("u2", Role::Reader)),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(decide(m(Role::Author), Object::Users, Verb::Update, of("u1", Role::Author)), Ok(()));
        let other = Owner { team: "t2", user: None };
        assert_eq!(decide(m(Role::Administrator), Object::Keys, Verb::Read, other), Err(Refusal::NotFound));
        assert_eq!(decide(None, Object::Teams, Verb::Delete, other), Ok(()));
        // Every object and verb an admin route uses has exactly one rule.
        for route in crate::http::admin::routes() {
            if let Some((object, verb)) = route.authz {
                let rules = MATRIX.iter().filter(|r| r.object == object && r.verb == verb).count();
                assert_eq!(rules, 1, "{} {}: {rules} rules for {object:?} {verb:?}", route.method, route.path);
            }
        }
    }
}
