//! The fetch threads: each follows one resource's delta chain, one request in flight, and
//! sends its pages to the writer.

use std::sync::mpsc;

use crate::graph::{Graph, GraphError, Next, Page, Resource};
use crate::shutdown::Shutdown;

use super::MAX_RESTARTS;

pub(super) enum Msg {
    Page(Resource, Page),
    /// Graph lost the delta state; the fetcher has started a full round from the initial URL.
    Restarted(Resource, GraphError),
    /// Graph lost the delta state and the round ended: it starts over with a snapshot.
    Lost(Resource, GraphError),
    /// The round failed at this link (kept to tell a page stuck at one link).
    Failed(Resource, GraphError, String),
}

/// Where a round starts, and what it does when Graph loses its delta state.
pub(super) struct Start {
    pub url: String,
    /// The first request of a full delta round.
    pub initial: String,
    /// Start over from `initial` in place (full passes by delta chain); otherwise end with
    /// [`Msg::Lost`], for a snapshot.
    pub restart_in_place: bool,
}

/// Follows one delta chain to its deltaLink, one request in flight (Graph's guidance).
pub(super) fn fetch_round(
    graph: &Graph,
    resource: Resource,
    start: Start,
    sender: &mpsc::SyncSender<Msg>,
    stop: &Shutdown,
) {
    let Start {
        mut url,
        initial,
        restart_in_place,
    } = start;
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
            Err(error) if error.is_delta_state_lost() && !restart_in_place => {
                let _ = sender.send(Msg::Lost(resource, error));
                return;
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
