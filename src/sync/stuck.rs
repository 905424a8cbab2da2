//! Rounds stuck on a page that cannot be used: counted per resource across passes (in
//! `meta`), so a page that never parses starts its resource over instead of stopping it.

use crate::graph::Resource;
use crate::store::{Store, StoreError};

/// Passes in a row stuck on an unusable page at the same link before the resource starts
/// over with a full round (issue 7 item 8: a page that never parses must not stop a
/// resource forever).
pub(super) const MAX_STUCK_PASSES: u32 = 3;
/// `meta` key: per resource, the link whose page could not be used and in how many passes in
/// a row, `{"users": {"link": "...", "passes": 2}}`.
const STUCK_KEY: &str = "stuck_pages";

/// Where rounds keep failing on a page that cannot be used.
pub(super) struct Stuck(serde_json::Map<String, serde_json::Value>);

impl Stuck {
    pub fn load(store: &Store) -> Result<Stuck, StoreError> {
        let map = store
            .meta(STUCK_KEY)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Ok(Stuck(map))
    }

    pub fn passes(&self, resource: Resource) -> u32 {
        self.0
            .get(resource.name())
            .and_then(|s| s.get("passes"))
            .and_then(serde_json::Value::as_u64)
            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
    }

    /// Counts this pass in: a failure at the same link as before adds one, at another
    /// link starts at one; a completed round (or a restart) clears its resource.
    pub fn after(
        mut self,
        store: &mut Store,
        unusable: &[(Resource, String)],
        completed: &[Resource],
    ) -> Result<(), StoreError> {
        let before = self.0.clone();
        for resource in Resource::ALL {
            let key = resource.name();
            if let Some((_, link)) = unusable.iter().find(|(r, _)| *r == resource) {
                let same = self
                    .0
                    .get(key)
                    .and_then(|s| s.get("link"))
                    .and_then(|l| l.as_str())
                    == Some(link.as_str());
                let passes = if same && self.passes(resource) < MAX_STUCK_PASSES {
                    self.passes(resource) + 1
                } else {
                    1
                };
                self.0.insert(
                    key.into(),
                    serde_json::json!({ "link": link, "passes": passes }),
                );
            } else if completed.contains(&resource) || self.passes(resource) >= MAX_STUCK_PASSES {
                self.0.remove(key);
            }
        }
        if self.0 == before {
            return Ok(());
        }
        store.set_meta(STUCK_KEY, &serde_json::Value::Object(self.0).to_string())
    }
}
