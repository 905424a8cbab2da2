//! A stop flag that sleeping threads can wait on, so SIGTERM ends a backoff wait at once
//! instead of after it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct Shutdown(Arc<(Mutex<bool>, Condvar)>);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    pub fn request(&self) {
        let (flag, wake) = &*self.0;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }

    /// Lowers the flag again, for a flag that stops one pass at a time.
    pub fn reset(&self) {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sleeps for `duration` or until a stop is requested; true when stopped.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let (flag, wake) = &*self.0;
        let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            stopped = wake
                .wait_timeout(stopped, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
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
}
