//! The snapshot's fetch workers: up to `sync.max_concurrency` requests in flight, each worker
//! taking one task at a time from the writer and sending back what Graph answered. They
//! decide nothing: which request comes next, and what a page means, is the writer's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use crate::graph::{Graph, GraphError, ListPage, MembersPage, Resource};
use crate::shutdown::Shutdown;

/// One request (or one `$batch` of member reads) for a worker.
pub(super) enum Task {
    /// A page of a listing chain: `/users` (a partition or all) or `/groups`.
    List {
        resource: Resource,
        chain: String,
        url: String,
    },
    /// Pages of up to 20 groups' member lists: (group id, link).
    Members { groups: Vec<(String, String)> },
}

/// What a worker sends back for a task.
pub(super) enum Answer {
    List {
        resource: Resource,
        chain: String,
        page: Result<ListPage, GraphError>,
    },
    /// Per group, in the task's order: `Ok(None)` when the group is gone (404).
    Members {
        pages: Vec<(String, Result<Option<MembersPage>, GraphError>)>,
    },
}

/// The workers and the two ends the writer holds. Dropping it lets the workers end: each
/// finishes its request (its answer then goes nowhere) and finds no further task.
pub(super) struct Pool {
    tasks: Option<mpsc::Sender<Task>>,
    answers: mpsc::Receiver<Answer>,
    /// Tasks sent whose answer has not been received.
    pub in_flight: usize,
    pub size: usize,
    /// Set by a worker that panicked: its task's answer never comes, so waiting for it
    /// would hang the pass (while the watchdog is still fed).
    panicked: Arc<AtomicBool>,
}

/// Held by each worker: raises the pool's flag if the worker unwinds from a panic.
struct PanicAlarm(Arc<AtomicBool>);

impl Drop for PanicAlarm {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

impl Pool {
    pub fn start(graph: &Graph, size: usize, shutdown: &Shutdown) -> std::io::Result<Pool> {
        let (tasks, queue) = mpsc::channel::<Task>();
        let queue = Arc::new(Mutex::new(queue));
        // Bounded: a writer that falls behind holds the workers back, so memory stays a few
        // pages per worker whatever the tenant size.
        let (sender, answers) = mpsc::sync_channel(size);
        let panicked = Arc::new(AtomicBool::new(false));
        for n in 0..size {
            let (graph, queue, sender, stop) = (
                graph.clone(),
                queue.clone(),
                sender.clone(),
                shutdown.clone(),
            );
            // Detached, and enlisted under the pass's stop flag until they end, as the delta
            // fetchers are: a stop never waits for a slow request.
            let working = shutdown.enlist();
            let alarm = PanicAlarm(panicked.clone());
            thread::Builder::new()
                .name(format!("snapshot-{n}"))
                .spawn(move || {
                    let (_working, _alarm) = (working, alarm);
                    work(&graph, &queue, &sender, &stop);
                })?;
        }
        Ok(Pool {
            tasks: Some(tasks),
            answers,
            in_flight: 0,
            size,
            panicked,
        })
    }

    /// The next answer, waiting at most `wait` (`Ok(None)`); `Err(())` when every worker has
    /// ended, or none is waiting and a worker panicked (its answer never comes).
    pub fn receive(&mut self, wait: std::time::Duration) -> Result<Option<Answer>, ()> {
        match self.answers.recv_timeout(wait) {
            Ok(answer) => {
                self.in_flight -= 1;
                Ok(Some(answer))
            }
            Err(mpsc::RecvTimeoutError::Timeout) if self.panicked.load(Ordering::Relaxed) => {
                Err(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// An answer already waiting, if any.
    pub fn try_receive(&mut self) -> Option<Answer> {
        let answer = self.answers.try_recv().ok()?;
        self.in_flight -= 1;
        Some(answer)
    }

    pub fn is_full(&self) -> bool {
        self.in_flight >= self.size
    }

    pub fn send(&mut self, task: Task) {
        if let Some(tasks) = &self.tasks
            && tasks.send(task).is_ok()
        {
            self.in_flight += 1;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tasks.take();
    }
}

fn work(
    graph: &Graph,
    queue: &Mutex<mpsc::Receiver<Task>>,
    answers: &mpsc::SyncSender<Answer>,
    stop: &Shutdown,
) {
    loop {
        // The lock is held only while waiting for a task, never during a request.
        let task = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(task) = task else {
            return; // the writer is done
        };
        let answer = match task {
            _ if stop.is_requested() => return,
            Task::List {
                resource,
                chain,
                url,
            } => Answer::List {
                resource,
                chain,
                page: graph.get_list(resource, &url),
            },
            Task::Members { groups } => {
                let urls: Vec<String> = groups.iter().map(|(_, url)| url.clone()).collect();
                let pages = graph.get_members_batch(&urls);
                Answer::Members {
                    pages: groups.into_iter().map(|(id, _)| id).zip(pages).collect(),
                }
            }
        };
        if answers.send(answer).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A pool with no workers, one task in flight, and the two ends of its answer channel.
    fn pool() -> (Pool, mpsc::SyncSender<Answer>) {
        let (sender, answers) = mpsc::sync_channel(1);
        let pool = Pool {
            tasks: None,
            answers,
            in_flight: 1,
            size: 1,
            panicked: Arc::new(AtomicBool::new(false)),
        };
        (pool, sender)
    }

    #[test]
    fn a_worker_that_panics_ends_the_wait_for_its_answer() {
        let (mut pool, _sender) = pool();
        assert!(matches!(pool.receive(Duration::from_millis(1)), Ok(None)));
        let alarm = PanicAlarm(pool.panicked.clone());
        let worker = thread::spawn(move || {
            let _alarm = alarm;
            panic!("a worker's bug");
        });
        assert!(worker.join().is_err());
        assert!(pool.receive(Duration::from_millis(1)).is_err());
    }

    #[test]
    fn a_worker_that_ends_normally_raises_no_alarm() {
        let (mut pool, _sender) = pool();
        let alarm = PanicAlarm(pool.panicked.clone());
        thread::spawn(move || drop(alarm)).join().unwrap();
        assert!(matches!(pool.receive(Duration::from_millis(1)), Ok(None)));
    }
}
