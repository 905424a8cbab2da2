//! A stop flag that sleeping threads can wait on, so SIGTERM ends a backoff wait at once
//! instead of after it. A flag also counts the threads that still work under it
//! ([`Shutdown::enlist`]), so the daemon can tell when a stopped pass's fetchers are gone.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Shutdown(Arc<Flag>);

#[derive(Default)]
struct Flag {
    raised: Mutex<bool>,
    wake: Condvar,
    /// Flags made by [`Shutdown::child`], raised with this one.
    children: Mutex<Vec<Weak<Flag>>>,
    /// Threads enlisted and not yet ended.
    working: Mutex<usize>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn request(&self) {
        self.0.raise();
    }

    /// Lowers the flag again, for a flag that stops one pass at a time. Its children stay
    /// raised: a pass that was stopped stays stopped.
    pub fn reset(&self) {
        *lock(&self.0.raised) = false;
    }

    pub fn is_requested(&self) -> bool {
        *lock(&self.0.raised)
    }

    /// A new flag that is raised whenever this one is (and already raised if this one is),
    /// but that [`Shutdown::reset`] on this one never lowers: one pass's own stop flag.
    pub fn child(&self) -> Shutdown {
        let child = Arc::new(Flag::default());
        // Registered under the lock that `raise` takes after setting its flag, so a request
        // that races with this call is never lost.
        let mut children = lock(&self.0.children);
        children.retain(|c| c.strong_count() > 0);
        children.push(Arc::downgrade(&child));
        if self.is_requested() {
            *lock(&child.raised) = true;
        }
        Shutdown(child)
    }

    /// Counts the calling thread as working under this flag until the guard is dropped
    /// (also when the thread panics).
    pub fn enlist(&self) -> Working {
        *lock(&self.0.working) += 1;
        Working(Arc::clone(&self.0))
    }

    /// How many enlisted threads have not ended yet.
    pub fn working(&self) -> usize {
        *lock(&self.0.working)
    }

    /// Sleeps for `duration` or until a stop is requested; true when stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let flag = &*self.0;
        let mut stopped = lock(&flag.raised);
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = flag
                .wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Flag {
    fn raise(&self) {
        *lock(&self.raised) = true;
        self.wake.notify_all();
        let children: Vec<Arc<Flag>> = lock(&self.children)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for child in children {
            child.raise();
        }
    }
}

/// A thread's enlistment under a [`Shutdown`]; see [`Shutdown::enlist`].
pub struct Working(Arc<Flag>);

impl Drop for Working {
    fn drop(&mut self) {
        let mut working = lock(&self.0.working);
        *working = working.saturating_sub(1);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ends_early_on_request() {
        let s = Shutdown::new();
        assert!(!s.sleep(Duration::from_millis(5)));
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.sleep(Duration::from_secs(30)))
        };
        s.request();
        assert!(t.join().unwrap());
        assert!(s.is_requested());
    }

    #[test]
    fn a_child_is_raised_with_its_parent_and_not_lowered_by_its_reset() {
        let parent = Shutdown::new();
        let first = parent.child();
        assert!(!first.is_requested());
        let sleeper = {
            let first = first.clone();
            std::thread::spawn(move || first.sleep(Duration::from_secs(30)))
        };
        parent.request();
        assert!(sleeper.join().unwrap(), "the child's sleeper was not woken");
        assert!(
            parent.child().is_requested(),
            "a child of a raised flag starts raised"
        );
        parent.reset();
        assert!(first.is_requested(), "the parent's reset lowered a child");
        let second = parent.child();
        assert!(!second.is_requested());
        second.request();
        assert!(!parent.is_requested(), "a child raised its parent");
    }

    #[test]
    fn enlisted_threads_are_counted_until_they_end_or_panic() {
        let flag = Shutdown::new();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let working = flag.enlist();
        let quiet = std::thread::spawn(move || {
            let _working = working;
            let _ = wait.recv();
        });
        let working = flag.enlist();
        let panicking = std::thread::spawn(move || {
            let _working = working;
            panic!("a fetcher that panics still ends its enlistment");
        });
        assert!(panicking.join().is_err());
        assert_eq!(flag.working(), 1);
        drop(go);
        quiet.join().unwrap();
        assert_eq!(flag.working(), 0);
    }
}
