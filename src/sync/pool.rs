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
    pub size: usize,
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
            size,
        })
    }

    /// The next answer, waiting at most `wait` (`Ok(None)`); `Err(())` when every worker has
    /// ended (one that panicked never answers).
    pub fn receive(&mut self, wait: std::time::Duration) -> Result<Option<Answer>, ()> {
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
