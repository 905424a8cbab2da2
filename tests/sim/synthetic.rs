//! `Tenant::synthetic`: large, realistic, deterministic tenants built without per-change
//! bookkeeping (everything is created by one mutation).

use serde_json::Value;

use super::schema::ObjectType;
use super::tenant::{Member, MemberKind, Prop, Tenant};

/// A tiny deterministic PRNG (xorshift64*): enough for test data, no dependency.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const GIVEN: &[&str] = &[
    "Ada", "Bo", "Cy", "Di", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena", "Mats",
    "Nora", "Omar", "Pia", "Quin", "Rosa", "Sami", "Tove", "Uma", "Vito", "Wen", "Xia", "Yusuf",
    "Zoë",
];
const SURNAMES: &[&str] = &[
    "Lind", "Ek", "Holm", "Berg", "Nakamura", "García", "Okafor", "Novak", "Silva", "Kowalski",
    "Müller", "O'Brien", "Haddad", "Chen", "Ivanova", "Dubois", "Rossi", "Jensen", "Kaur", "Smith",
];
const TITLES: &[&str] = &[
    "Engineer",
    "Senior Engineer",
    "Designer",
    "Analyst",
    "Manager",
    "Director",
    "Consultant",
    "Accountant",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "HR",
    "Legal",
    "Support",
    "Operations",
    "Research",
];

/// Id layout: `{tag}-{type}-4000-8000-{serial}`, GUID-shaped and stable for a seed.
fn object_id(tag: u32, type_code: u16, serial: usize) -> String {
    format!("{tag:08x}-{type_code:04x}-4000-8000-{serial:012x}")
}

const TYPE_USER: u16 = 0;
const TYPE_GROUP: u16 = 1;
const TYPE_DEVICE: u16 = 2;
const TYPE_SERVICE_PRINCIPAL: u16 = 3;
const TYPE_CONTACT: u16 = 4;

/// Builds the property list of a stored object from (name, value) pairs.
fn props(ty: ObjectType, seq: u64, pairs: Vec<(&str, Value)>) -> Vec<Prop> {
    let mut out: Vec<Prop> = pairs
        .into_iter()
        .filter_map(|(name, value)| {
            Some(Prop {
                name: ty.prop_index(name)?,
                value,
                changed: seq,
            })
        })
        .collect();
    out.sort_by_key(|p| p.name);
    out
}

fn user_props(rng: &mut XorShift, serial: usize, seq: u64) -> Vec<Prop> {
    let given = rng.pick(GIVEN);
    let surname = rng.pick(SURNAMES);
    let guest = rng.chance(3);
    let local = format!(
        "{}.{}.{serial}",
        given.to_lowercase(),
        surname.to_lowercase().replace('\'', "")
    );
    let upn = if guest {
        format!("{local}_fabrikam.example#EXT#@contoso.example")
    } else {
        format!("{local}@contoso.example")
    };
    let mut pairs = vec![
        ("displayName", Value::from(format!("{given} {surname}"))),
        ("userPrincipalName", Value::from(upn)),
        ("accountEnabled", Value::from(!rng.chance(5))),
        (
            "userType",
            Value::from(if guest { "Guest" } else { "Member" }),
        ),
        ("givenName", Value::from(given)),
        ("surname", Value::from(surname)),
    ];
    // Some properties were never set on some users: they must be absent from pages.
    if !rng.chance(10) {
        pairs.push(("mail", Value::from(format!("{local}@contoso.example"))));
    }
    if rng.chance(80) {
        pairs.push(("jobTitle", Value::from(rng.pick(TITLES))));
    }
    if rng.chance(85) {
        pairs.push(("department", Value::from(rng.pick(DEPARTMENTS))));
    }
    props(ObjectType::User, seq, pairs)
}

fn group_props(rng: &mut XorShift, serial: usize, seq: u64) -> Vec<Prop> {
    let department = rng.pick(DEPARTMENTS);
    let unified = rng.chance(25);
    let nickname = format!("{}-{serial}", department.to_lowercase());
    let mut pairs = vec![
        (
            "displayName",
            Value::from(format!("{department} team {serial}")),
        ),
        ("mailEnabled", Value::from(unified)),
        ("mailNickname", Value::from(nickname.clone())),
        ("securityEnabled", Value::from(!unified || rng.chance(30))),
        (
            "groupTypes",
            Value::from(if unified { vec!["Unified"] } else { Vec::new() }),
        ),
    ];
    if unified {
        pairs.push(("mail", Value::from(format!("{nickname}@contoso.example"))));
        pairs.push((
            "visibility",
            Value::from(if rng.chance(80) { "Private" } else { "Public" }),
        ));
    }
    if rng.chance(70) {
        pairs.push((
            "description",
            Value::from(format!("Members of {department} team {serial}")),
        ));
    }
    props(ObjectType::Group, seq, pairs)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `count` distinct values of `0..n` (count <= n): an arithmetic walk with a step coprime
/// to `n`, so no set or shuffle of `n` elements is needed.
fn distinct_sample(rng: &mut XorShift, n: usize, count: usize) -> impl Iterator<Item = usize> {
    let start = if n > 0 { rng.below(n) } else { 0 };
    let mut step = 1;
    if n > 2 {
        step = 1 + rng.below(n - 1);
        while gcd(step, n) != 1 {
            step = step % (n - 1) + 1;
        }
    }
    (0..count.min(n)).map(move |j| (start + j * step) % n)
}

/// How many links each group gets: a few very large groups, a skewed tail, and the
/// nesting chain counted separately.
fn plan_sizes(rng: &mut XorShift, users: usize, groups: usize, budget: usize) -> Vec<usize> {
    let mut sizes = vec![0usize; groups];
    if groups == 0 || users == 0 {
        return sizes;
    }
    let mut left = budget;
    // "All staff"-like groups: for 100k users and 1M links these are 100k, 40k and 25k.
    if groups >= 4 {
        for (slot, divisor) in [8, 25, 40].into_iter().enumerate() {
            let size = (budget / divisor).clamp(1, users).min(left);
            sizes[slot] = size;
            left -= size;
        }
    }
    let first = if groups >= 4 { 3 } else { 0 };
    // Skewed weights (squares of uniform numbers) for everyone else.
    let weights: Vec<u64> = (first..groups)
        .map(|_| (1 + rng.next_u64() % 100).pow(2))
        .collect();
    let total: u64 = weights.iter().sum::<u64>().max(1);
    let mut given = 0;
    for (slot, weight) in (first..groups).zip(&weights) {
        let share = (left as u128 * u128::from(*weight) / u128::from(total)) as usize;
        sizes[slot] = share.min(users);
        given += sizes[slot];
    }
    // Rounding leftovers, and what capped groups could not take, go one by one to groups
    // that still have room, until none has.
    let mut leftover = left - given;
    while leftover > 0 {
        let before = leftover;
        for size in sizes.iter_mut().filter(|s| **s < users).take(leftover) {
            *size += 1;
            leftover -= 1;
        }
        if leftover == before {
            break;
        }
    }
    sizes
}

impl Tenant {
    /// A deterministic tenant of `users` users, `groups` groups and (capacity permitting)
    /// exactly `links` membership links: a few groups holding 10–25 % of the links (20,000+
    /// members at benchmark scale), a skewed tail, ~1 % non-user members (devices, service
    /// principals, contacts), and a chain of groups nested `nesting_depth` deep at the end of
    /// the group list. Some optional properties are never set.
    pub fn synthetic(
        users: usize,
        groups: usize,
        links: usize,
        nesting_depth: usize,
        seed: u64,
    ) -> Tenant {
        let mut rng = XorShift::new(seed);
        let tag = (rng.next_u64() >> 32) as u32;
        let mut tenant = Tenant::new();
        let seq = tenant.next_seq();
        for serial in 0..users {
            let key = tenant.intern(&object_id(tag, TYPE_USER, serial));
            let props = user_props(&mut rng, serial, seq);
            tenant.users.push(key, props, seq);
        }
        for serial in 0..groups {
            let key = tenant.intern(&object_id(tag, TYPE_GROUP, serial));
            let props = group_props(&mut rng, serial, seq);
            tenant.groups.push(key, props, seq);
        }
        let nesting = nesting_depth.min(groups.saturating_sub(1)).min(links);
        let sizes = plan_sizes(&mut rng, users, groups, links - nesting);
        let others = tenant.intern_others(tag, users);
        for (group, size) in sizes.into_iter().enumerate() {
            let members = pick_members(&mut rng, users, size, &others);
            tenant.groups.objects[group].members = members;
        }
        tenant.nest_chain(groups, nesting);
        tenant
    }

    /// Interns a pool of device / service principal / contact ids (about 2 % of `users`).
    fn intern_others(&mut self, tag: u32, users: usize) -> Vec<Member> {
        let kinds = [
            (TYPE_DEVICE, MemberKind::Device),
            (TYPE_SERVICE_PRINCIPAL, MemberKind::ServicePrincipal),
            (TYPE_CONTACT, MemberKind::OrgContact),
        ];
        let per_kind = (users / 150).max(4);
        let mut pool = Vec::with_capacity(per_kind * kinds.len());
        for (type_code, kind) in kinds {
            for serial in 0..per_kind {
                pool.push(Member {
                    key: self.intern(&object_id(tag, type_code, serial)),
                    kind,
                });
            }
        }
        pool
    }

    /// Group `groups - 1 - nesting` contains the next one, which contains the next, ...
    fn nest_chain(&mut self, groups: usize, nesting: usize) {
        // `nesting < groups` whenever it is non-zero (see `synthetic`).
        let Some(top) = groups.checked_sub(nesting + 1) else {
            return;
        };
        for parent in top..top + nesting {
            let child = Member {
                key: self.groups.objects[parent + 1].key,
                kind: MemberKind::Group,
            };
            let members = &mut self.groups.objects[parent].members;
            if let Err(pos) = members.binary_search_by_key(&child.key, |m| m.key) {
                members.insert(pos, child);
            }
        }
    }
}

/// `size` distinct members: ~1 % from the non-user pool, the rest users (keys `0..users`,
/// since users are interned first). Sorted by key.
fn pick_members(rng: &mut XorShift, users: usize, size: usize, others: &[Member]) -> Vec<Member> {
    let non_users = (size / 100).min(others.len());
    let user_count = (size - non_users).min(users);
    let mut members = Vec::with_capacity(user_count + non_users);
    for user in distinct_sample(rng, users, user_count) {
        members.push(Member {
            key: user as u32,
            kind: MemberKind::User,
        });
    }
    for other in distinct_sample(rng, others.len(), non_users) {
        members.push(others[other]);
    }
    members.sort_unstable_by_key(|m| m.key);
    members
}
