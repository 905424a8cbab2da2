//! The snapshot's fetch workers: up to `sync.max_concurrency` requests in flight, each worker
//! taking one task at a time from the writer and sending back what Graph answered. They
//! decide nothing: which request comes next, and what a page means, is the writer's.

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
    window: Window,
}

impl Pool {
    pub fn start(graph: &Graph, size: usize, shutdown: &Shutdown) -> std::io::Result<Pool> {
        let (tasks, queue) = mpsc::channel::<Task>();
        let queue = Arc::new(Mutex::new(queue));
        // Bounded: a writer that falls behind holds the workers back, so memory stays a few
        // pages per worker whatever the tenant size.
        let (sender, answers) = mpsc::sync_channel(size);
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
            thread::Builder::new()
                .name(format!("snapshot-{n}"))
                .spawn(move || {
                    let _working = working;
                    work(&graph, &queue, &sender, &stop);
                })?;
        }
        Ok(Pool {
            tasks: Some(tasks),
            answers,
            in_flight: 0,
            window: Window::new(size),
        })
    }

    /// The next answer, waiting at most `wait` (`Ok(None)`); `Err(())` when every worker has
    /// ended (one that panicked never answers).
    pub fn receive(&mut self, wait: std::time::Duration) -> Result<Option<Answer>, ()> {
        if let Some(answer) = self.try_receive() {
            return Ok(Some(answer));
        }
        self.window.waited();
        match self.answers.recv_timeout(wait) {
            Ok(answer) => {
                self.in_flight -= 1;
                Ok(Some(answer))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    /// An answer already waiting, if any.
    pub fn try_receive(&mut self) -> Option<Answer> {
        let answer = self.answers.try_recv().ok()?;
        self.in_flight -= 1;
        self.window.found_ready();
        Some(answer)
    }

    /// Whether the window of requests in flight is full (see [`Window`]).
    pub fn is_full(&self) -> bool {
        self.in_flight >= self.window.current
    }

    pub fn send(&mut self, task: Task) {
        if let Some(tasks) = &self.tasks
            && tasks.send(task).is_ok()
        {
            self.in_flight += 1;
        }
    }
}

/// The fewest requests kept in flight: one answer being applied, the next one on its way.
const MIN_WINDOW: usize = 2;

/// How many requests the writer keeps in flight. All `size` while it waits for answers
/// (Graph's latency or quota is what limits the pass), fewer while answers wait for it
/// (SQLite is): each waiting answer is a page held parsed in memory, about 1.4 MB for 999
/// users, so a full window of them was a third of a 100,000-user import's heap for no gain.
/// It opens by one each time the writer waits, and closes by one each time the writer finds
/// half a window of answers ready in a row.
#[derive(Debug)]
struct Window {
    size: usize,
    current: usize,
    /// Answers found ready in a row since the writer last waited or the window closed.
    ready_run: usize,
}

impl Window {
    fn new(size: usize) -> Self {
        Window {
            size,
            current: size,
            ready_run: 0,
        }
    }

    /// The writer had to wait for an answer: more requests in flight would have kept it busy.
    fn waited(&mut self) {
        self.ready_run = 0;
        self.current = (self.current + 1).min(self.size);
    }

    /// The writer found an answer ready.
    fn found_ready(&mut self) {
        self.ready_run += 1;
        if self.ready_run >= (self.current / 2).max(1) {
            self.ready_run = 0;
            self.current = self
                .current
                .saturating_sub(1)
                .max(MIN_WINDOW.min(self.size));
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

    /// The window after each event, from a full window of `size`: `w` the writer waited,
    /// `r` it found an answer ready.
    fn windows(size: usize, events: &str) -> Vec<usize> {
        let mut window = Window::new(size);
        events
            .chars()
            .map(|event| {
                match event {
                    'w' => window.waited(),
                    _ => window.found_ready(),
                }
                window.current
            })
            .collect()
    }

    #[test]
    fn the_window_closes_while_answers_wait_and_opens_while_the_writer_does() {
        let cases: [(usize, &str, &[usize]); 6] = [
            // Answers always ready (no latency): down to two, and no further.
            (8, "rrrrrrrrrrrr", &[8, 8, 8, 7, 7, 7, 6, 6, 6, 5, 5, 4]),
            (4, "rrrrrr", &[4, 3, 2, 2, 2, 2]),
            // The writer always waits (Graph's latency): the window stays full.
            (8, "wwww", &[8, 8, 8, 8]),
            // A wait between ready answers starts the count again.
            (8, "rrrwrrrw", &[8, 8, 8, 8, 8, 8, 8, 8]),
            // Waiting opens a closed window one request at a time.
            (4, "rrrrrwww", &[4, 3, 2, 2, 2, 3, 4, 4]),
            // A pool of one never closes to zero.
            (1, "rrrw", &[1, 1, 1, 1]),
        ];
        for (size, events, expected) in cases {
            assert_eq!(windows(size, events), expected, "{size} {events}");
        }
    }
}
