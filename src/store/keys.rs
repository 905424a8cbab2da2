//! The integer keys memberships are stored under (`object_keys`, schema version 6): one per
//! id a membership names. A first import names a million, so the keys of GUIDs (every id
//! Graph sends) are remembered once committed: looking one up is a hash probe, not an index
//! search (~2 µs in SQLite, a third of a link's cost).

use std::cell::RefCell;

use foldhash::{HashMap, HashMapExt};

use super::*;

/// The committed keys this process has used: GUIDs (every id Graph sends) as 128-bit
/// numbers, 20 bytes an entry (~2.8 MiB once a tenant of 100,000 users and 10,000 groups
/// has been through a full pass), any other id as text. Keys are never deleted nor reused,
/// so an entry stays true for the life of the database; an id that is not here is looked
/// up.
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    committed: Keys,
}

#[derive(Debug, Default)]
struct Keys {
    guids: HashMap<Guid, CachedKey>,
    others: HashMap<String, i64>,
}

/// A GUID's number in four parts, so that an entry is 20 bytes, not the 32 a `u128`'s
/// alignment makes of `(u128, i64)`: the cache is most of what a large import's memory
/// grows by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Guid([u32; 4]);

impl Guid {
    fn of(n: u128) -> Self {
        // Truncations on purpose: each part is 32 of the number's bits.
        Guid([
            (n >> 96) as u32,
            (n >> 64) as u32,
            (n >> 32) as u32,
            n as u32,
        ])
    }
}

impl std::hash::Hash for Guid {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [a, b, c, d] = self.0.map(u128::from);
        state.write_u128(a << 96 | b << 64 | c << 32 | d);
    }
}

/// A key as the cache holds it. Keys count up from 1 with each id first named; one past
/// `u32::MAX` (four billion ids) is not cached, only looked up.
type CachedKey = u32;

/// An id as the key cache holds it: a GUID as its number (parsed once per lookup), any
/// other id as text.
#[derive(Clone, Copy)]
enum Probe<'a> {
    Guid(Guid),
    Other(&'a str),
}

impl<'a> Probe<'a> {
    fn of(id: &'a str) -> Self {
        guid(id).map_or(Probe::Other(id), |n| Probe::Guid(Guid::of(n)))
    }
}

impl Keys {
    fn get(&self, probe: Probe<'_>) -> Option<i64> {
        match probe {
            Probe::Guid(n) => self.guids.get(&n).map(|&key| i64::from(key)),
            Probe::Other(id) => self.others.get(id).copied(),
        }
    }

    fn insert(&mut self, id: &str, key: i64) {
        match Probe::of(id) {
            Probe::Guid(n) => {
                if let Ok(key) = CachedKey::try_from(key) {
                    self.guids.insert(n, key);
                }
            }
            Probe::Other(id) => {
                self.others.insert(id.to_owned(), key);
            }
        }
    }

    /// Takes in `fresh`'s keys one at a time: `extend` reserves room for half of them
    /// ahead, which at the last commits of a first import doubled a table of 110,000
    /// entries that already had room for them all.
    fn absorb(&mut self, fresh: Keys) {
        for (n, key) in fresh.guids {
            self.guids.insert(n, key);
        }
        for (id, key) in fresh.others {
            self.others.insert(id, key);
        }
    }
}

/// The keys a transaction gave out: known for good only once it commits (a rollback takes
/// the rows back, and SQLite may hand the same numbers to other ids).
#[derive(Debug, Default)]
pub(super) struct FreshKeys(RefCell<Keys>);

impl KeyCache {
    pub(super) fn commit(&mut self, fresh: FreshKeys) {
        self.committed.absorb(fresh.0.into_inner());
    }
}

impl Tx<'_> {
    /// The key of `id`, if it has one.
    pub(super) fn key(&self, id: &str) -> Result<Option<i64>> {
        if let Some(key) = self.cached_key(id) {
            return Ok(Some(key));
        }
        let stored: Option<i64> = self
            .tx
            .prepare_cached("SELECT key FROM object_keys WHERE id = ?1")
            .and_then(|mut statement| statement.query_row([id], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        // Not given by this transaction (those are fresh, above): committed.
        if let Some(key) = stored {
            self.keys.borrow_mut().committed.insert(id, key);
        }
        Ok(stored)
    }

    /// The keys of those of `ids` that have one: cached ones, the rest read in one
    /// statement (a first import's member pages name ids no key was given yet).
    pub(super) fn known_keys<'i>(&self, ids: &[&'i str]) -> Result<HashMap<&'i str, i64>> {
        let (mut keys, unknown) = self.cached_keys(ids.iter().copied());
        if unknown.is_empty() {
            return Ok(keys);
        }
        let stored: HashMap<String, i64> = self
            .stored_keys(&super::changes::json_list(&unknown))?
            .into_iter()
            .collect();
        let mut cache = self.keys.borrow_mut();
        for id in unknown {
            if let Some(&key) = stored.get(id) {
                // Not given by this transaction (those are cached, above): committed.
                cache.committed.insert(id, key);
                keys.insert(id, key);
            }
        }
        Ok(keys)
    }

    /// The keys this process knows of `ids` (each once), and the distinct ids it does not,
    /// sorted.
    fn cached_keys<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> (HashMap<&'i str, i64>, Vec<&'i str>) {
        let mut keys = HashMap::new();
        let mut unknown = Vec::new();
        for id in ids {
            if keys.contains_key(id) {
                continue; // a page names its group once per member
            }
            match self.cached_key(id) {
                Some(key) => {
                    keys.insert(id, key);
                }
                None => unknown.push(id),
            }
        }
        unknown.sort_unstable();
        unknown.dedup();
        (keys, unknown)
    }

    /// The key of `id` if this process knows it: given by this transaction (a small map,
    /// tried first), or committed.
    fn cached_key(&self, id: &str) -> Option<i64> {
        let probe = Probe::of(id);
        let fresh = self.fresh.0.borrow().get(probe);
        fresh.or_else(|| self.keys.borrow().committed.get(probe))
    }

    /// The keys of the group and member of each change that adds or stamps a membership,
    /// in the order of `changes` (`None` for the others). The ids this process has no key
    /// for are looked up or given one together, all of a page's in two statements (a first
    /// import names 110,000 ids for the first time: one query each cost ~7% of its CPU).
    pub(super) fn keys_of(&self, changes: &[Change]) -> Result<Vec<Option<(i64, i64)>>> {
        // Each membership change's two ids with their cached keys; `None` for other changes.
        let mut found: Vec<Option<[Cached<'_>; 2]>> = Vec::with_capacity(changes.len());
        let mut missing = Vec::new();
        for change in changes {
            let (Change::AddMember { group, member, .. }
            | Change::SeenMember { group, member, .. }) = change
            else {
                found.push(None);
                continue;
            };
            // A page names its group once per member: the last group's key is kept at hand.
            let group_key = match found.iter().rev().flatten().next() {
                Some([(last, key), _]) if *last == &**group => *key,
                _ => self.cached_key(group),
            };
            let pair = [(&**group, group_key), (&**member, self.cached_key(member))];
            missing.extend(
                pair.iter()
                    .filter(|(_, key)| key.is_none())
                    .map(|(id, _)| *id),
            );
            found.push(Some(pair));
        }
        let given: HashMap<&str, i64> = if missing.is_empty() {
            HashMap::new()
        } else {
            missing.sort_unstable();
            missing.dedup();
            let keys = self.give_keys(&missing)?;
            let mut fresh = self.fresh.0.borrow_mut();
            for (id, &key) in missing.iter().zip(&keys) {
                fresh.insert(id, key);
            }
            missing.into_iter().zip(keys).collect()
        };
        let key = |(id, cached): Cached<'_>| cached.or_else(|| given.get(id).copied());
        Ok(found
            .into_iter()
            .map(|pair| pair.and_then(|[group, member]| key(group).zip(key(member))))
            .collect())
    }

    /// The key of each of `ids` (sorted, distinct, none cached), given to those the table
    /// lacks; returns them in order. All go to the transaction's fresh keys: a stored one
    /// forgotten by a rollback is only looked up again.
    fn give_keys(&self, ids: &[&str]) -> Result<Vec<i64>> {
        let list = super::changes::json_list(ids);
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO object_keys (id) SELECT value FROM json_each(?1)",
            )
            .and_then(|mut statement| statement.execute([&list]))
            .map_err(|e| self.err(e))?;
        let rows = self.stored_keys(&list)?;
        // json_each yields the list in its order and every id has a key now, so row n is
        // the key of ids[n]; checked, so a surprise fails the page instead of mixing keys.
        let in_order = rows.len() == ids.len() && rows.iter().zip(ids).all(|((a, _), b)| a == b);
        if !in_order {
            return Err(StoreError::Corrupt {
                path: self.path.display().to_string(),
                detail: "object_keys lacks a key it was just given".into(),
            });
        }
        Ok(rows.into_iter().map(|(_, key)| key).collect())
    }

    /// `(id, key)` of each id of the JSON list `list` that `object_keys` holds, in the
    /// list's order.
    fn stored_keys(&self, list: &str) -> Result<Vec<(String, i64)>> {
        self.tx
            .prepare_cached(
                "SELECT k.id, k.key FROM json_each(?1) j CROSS JOIN object_keys k ON k.id = j.value",
            )
            .and_then(|mut statement| {
                statement
                    .query_map([list], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))
    }
}

/// An id with the key this process knows for it, if any.
type Cached<'i> = (&'i str, Option<i64>);

/// The id as a number when it is a GUID in the canonical form Graph sends (lower-case,
/// hyphenated), so that the number stands for this exact text.
fn guid(id: &str) -> Option<u128> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    // One pass over the text, no allocation: a first import parses two ids per link.
    let mut n = 0u128;
    for (i, &b) in bytes.iter().enumerate() {
        let digit = match (i, b) {
            (8 | 13 | 18 | 23, b'-') => continue,
            (8 | 13 | 18 | 23, _) => return None,
            (_, b'0'..=b'9') => b - b'0',
            (_, b'a'..=b'f') => b - b'a' + 10,
            _ => return None,
        };
        n = n << 4 | u128::from(digit);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(group: &str, member: &str) -> Change {
        Change::AddMember {
            group: group.into(),
            member: member.into(),
            member_type: "user".into(),
        }
    }

    #[test]
    fn keys_of_a_rolled_back_transaction_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        let stamp = Stamp {
            run: 0,
            generation: 1,
            now: "2026-01-01T00:00:00Z",
            baseline: true,
        };
        let ids: Vec<String> = (1..=4)
            .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
            .collect();
        {
            let tx = store.transaction().unwrap();
            tx.apply(&[link(&ids[0], &ids[1])], &stamp).unwrap();
        } // rolled back: its keys go with it, and SQLite gives the same numbers again
        let tx = store.transaction().unwrap();
        tx.apply(&[link(&ids[2], &ids[3])], &stamp).unwrap();
        tx.commit().unwrap();
        let tx = store.transaction().unwrap();
        tx.apply(&[link(&ids[2], &ids[1])], &stamp).unwrap();
        tx.commit().unwrap();
        let rows: Vec<(String, String)> = store
            .conn
            .prepare("SELECT group_id, member_id FROM group_members_all ORDER BY 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (ids[2].clone(), ids[1].clone()),
                (ids[2].clone(), ids[3].clone())
            ]
        );
    }

    #[test]
    fn keys_are_cached_under_every_bit_of_their_guid_and_large_keys_are_not_cached() {
        let mut keys = Keys::default();
        // GUIDs that differ in one part only each.
        let ids = [
            "00000000-0000-4000-8000-000000000001",
            "00000001-0000-4000-8000-000000000001",
            "00000000-0001-4000-8000-000000000001",
            "00000000-0000-4001-8000-000000000001",
            "00000000-0000-4000-8001-000000000001",
            "00000000-0000-4000-8000-000100000001",
        ];
        for (key, id) in (1..).zip(ids) {
            keys.insert(id, key);
        }
        let huge = i64::from(u32::MAX) + 1;
        keys.insert("ffffffff-0000-4000-8000-000000000001", huge);
        keys.insert("g1", huge);
        for (key, id) in (1..).zip(ids) {
            assert_eq!(keys.get(Probe::of(id)), Some(key), "{id}");
        }
        assert_eq!(
            keys.get(Probe::of("ffffffff-0000-4000-8000-000000000001")),
            None
        );
        assert_eq!(keys.get(Probe::of("g1")), Some(huge));
        assert_eq!(
            Guid::of(0x0c0c0c0c_1111_4222_8333_444444444444).0,
            [0x0c0c0c0c, 0x1111_4222, 0x8333_4444, 0x44444444]
        );
    }

    #[test]
    fn only_canonical_guids_are_numbers() {
        let id = "0c0c0c0c-1111-4222-8333-444444444444";
        assert_eq!(guid(id), Some(0x0c0c0c0c_1111_4222_8333_444444444444));
        assert_eq!(guid(&id.to_uppercase()), None);
        assert_eq!(guid(&id.replace('-', "")), None);
        assert_eq!(guid("g1"), None);
        assert_eq!(guid("0c0c0c0c-1111-4222-8333-44444444444g"), None);
        assert_eq!(guid("0c0c0c0c1-111-4222-8333-444444444444"), None);
    }
}
