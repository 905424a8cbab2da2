//! The fetch threads: each follows one resource's delta chain, one request in flight, and
//! sends its pages to the writer.

use std::sync::mpsc;

use crate::graph::{Graph, GraphError, Next, Page, Resource};
use crate::shutdown::Shutdown;

/// How often one pass may start a resource over after Graph said its state is lost.
const MAX_RESTARTS: u32 = 2;

pub(super) enum Msg {
    Page(Resource, Page),
    /// Graph lost the delta state; the fetcher has started a full round from the initial URL.
    Restarted(Resource, GraphError),
    /// The round failed at this link (kept to tell a page stuck at one link).
    Failed(Resource, GraphError, String),
}

/// Follows one delta chain to its deltaLink, one request in flight (Graph's guidance).
pub(super) fn fetch_round(
    graph: &Graph,
    resource: Resource,
    mut url: String,
    initial: String,
    sender: &mpsc::SyncSender<Msg>,
    stop: &Shutdown,
) {
    let mut restarts = 0;
    loop {
        // A stopped pass makes no further request, even if its writer has not noticed yet.
        if stop.is_requested() {
            let _ = sender.send(Msg::Failed(resource, GraphError::Stopped, url));
            return;
        }
        match graph.get_page(resource, &url) {
            Ok(page) => {
                let next = page.next.clone();
                if sender.send(Msg::Page(resource, page)).is_err() {
                    return; // the writer stopped
                }
                match next {
                    Next::More(link) => url = link,
                    Next::Done(_) => return,
                }
            }
            Err(error) if error.is_delta_state_lost() && restarts < MAX_RESTARTS => {
                restarts += 1;
                url = initial.clone();
                if sender.send(Msg::Restarted(resource, error)).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = sender.send(Msg::Failed(resource, error, url));
                return;
            }
        }
    }
}
