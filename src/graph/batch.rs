//! JSON batching of member pages (graph-protocol.md 3.11): up to 20 `GET
//! /groups/{id}/members` in one `POST /v1.0/$batch`.
//!
//! A batch saves round trips, not quota: Graph judges each item on its own, so each item
//! keeps its own retry policy (`client::Retry`, the one every request uses), and only the
//! items that failed transiently are sent again, after the longest wait among them (an
//! item's own `Retry-After` included). The envelope itself goes through the same retry loop
//! as any request, so a whole-batch 429 or 5xx is retried like one. Item urls are relative to
//! the version root; every link is checked against the Graph origin before it becomes one.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::client::{Failure, GraphErrorBody, Request, Retry, Step, classify, unusable};
use super::pacer::Signals;
use super::{Graph, GraphError, MembersPage, Resource, parse_members};
use crate::http;

/// Graph's limit on requests in one batch.
pub const MAX_REQUESTS: usize = 20;
/// Member pages are read with the groups permission and counted as groups responses.
const RESOURCE: Resource = Resource::Groups;

impl Graph {
    /// Member pages for `urls` (first pages from `members_url`, or nextLinks), 20 to a
    /// `$batch` request. Result `i` belongs to `urls[i]`: a page, `None` when Graph answers
    /// 404 (the group was deleted since it was listed), or the error the single-request path
    /// would give (403 `PermissionMissing` for groups, a page refused whole, ...). Item 429s
    /// are retried after their `Retry-After` for as long as it takes, like any 429.
    pub fn get_members_batch(
        &self,
        urls: &[String],
    ) -> Vec<Result<Option<MembersPage>, GraphError>> {
        let mut results: Vec<Option<Result<Option<MembersPage>, GraphError>>> =
            urls.iter().map(|_| None).collect();
        let mut pending = Vec::new();
        for (index, url) in urls.iter().enumerate() {
            match self.item_url(url) {
                Ok(relative) => pending.push(Item {
                    index,
                    url: url.clone(),
                    relative,
                    retry: Retry::new(RESOURCE),
                }),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        let batch_url = format!("{}/v1.0/$batch", self.endpoint);
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(MAX_REQUESTS));
            let sent = std::mem::replace(&mut pending, rest);
            let request = Request::Batch {
                url: &batch_url,
                body: request_body(sent.iter().map(|item| (item.index, item.relative.as_str()))),
            };
            let mut used_token = None;
            let envelope = self.retrying(RESOURCE, |token| {
                used_token = Some(token.clone());
                self.fetch(RESOURCE, &request, token)
            });
            let envelope = match envelope {
                Ok(envelope) => envelope,
                Err(error) => {
                    for item in sent {
                        results[item.index] = Some(Err(error.clone()));
                    }
                    continue;
                }
            };
            let answers = match read_responses(&envelope.body, &sent) {
                Ok(answers) => answers,
                Err(detail) => {
                    let error = GraphError::UnusablePage {
                        resource: RESOURCE,
                        detail: http::server_text(&detail),
                    };
                    for item in sent {
                        results[item.index] = Some(Err(error.clone()));
                    }
                    continue;
                }
            };
            let mut signals = vec![envelope.signals];
            signals.extend(answers.iter().filter_map(|a| a.as_ref().map(|a| a.signals)));
            self.pacer.observe(&signals);
            let mut retry_in = Duration::ZERO;
            let mut retried = 0;
            let mut last = String::new();
            let mut refresh = false;
            for (mut item, answer) in sent.into_iter().zip(answers) {
                let outcome = match answer {
                    Some(answer) => {
                        crate::counters::graph_response(RESOURCE.name(), answer.signals.status);
                        self.accept(answer.outcome)
                    }
                    None => Err(Failure::Retry {
                        after: None,
                        last: "no answer in the batch response".to_owned(),
                        throttled: false,
                    }),
                };
                match item.retry.judge(outcome) {
                    Step::Done(result) => {
                        results[item.index] = Some(result.map_err(|e| self.for_credential(e)));
                    }
                    Step::Refresh(_) => {
                        refresh = true;
                        pending.push(item);
                    }
                    Step::Wait {
                        delay, last: why, ..
                    } => {
                        retry_in = retry_in.max(delay);
                        retried += 1;
                        last = why;
                        pending.push(item);
                    }
                }
            }
            // Items inherit the envelope's token: a 401 item means that token was refused.
            if let (true, Some(token)) = (refresh, &used_token) {
                log::info!("graph: {RESOURCE}: token refused in a batch, signing in again");
                self.auth.invalidate(token);
            }
            if retried > 0 {
                log::warn!(
                    "graph: {RESOURCE}: {retried} batch items failed ({last}), retrying them in {:.1}s",
                    retry_in.as_secs_f64()
                );
                if self.shutdown.sleep(retry_in) {
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(GraphError::Stopped)))
            .collect()
    }

    /// An item's page, kept only if its nextLink may be followed (as `get_page` checks).
    fn accept(
        &self,
        outcome: Result<Option<MembersPage>, Failure>,
    ) -> Result<Option<MembersPage>, Failure> {
        let page = outcome?;
        if let Some(next) = page.as_ref().and_then(|p| p.next.as_deref()) {
            self.item_url(next).map_err(Failure::Fatal)?;
        }
        Ok(page)
    }

    /// `url` relative to the version root, as a batch item names it; refused unless it is on
    /// the Graph origin (the token goes with the batch) and under `/v1.0/`.
    fn item_url(&self, url: &str) -> Result<String, GraphError> {
        self.check_origin(RESOURCE, url)?;
        let path = url
            .parse::<ureq::http::Uri>()
            .ok()
            .and_then(|uri| uri.path_and_query().map(|p| p.as_str().to_owned()));
        match path.as_deref().and_then(|p| p.strip_prefix("/v1.0/")) {
            Some(rest) => Ok(format!("/{rest}")),
            None => Err(GraphError::UnusablePage {
                resource: RESOURCE,
                detail: format!(
                    "a members link outside /v1.0/ ({})",
                    super::describe_link(url)
                ),
            }),
        }
    }
}

/// One member page still to read.
struct Item {
    /// Its place in the caller's list, also its batch id.
    index: usize,
    url: String,
    relative: String,
    retry: Retry,
}

/// One item's answer: what it means, and what it says of the quota.
struct Answer {
    outcome: Result<Option<MembersPage>, Failure>,
    signals: Signals,
}

/// The `$batch` body: `(id, url relative to the version root)` as GET requests.
fn request_body<'a>(items: impl Iterator<Item = (usize, &'a str)>) -> Vec<u8> {
    let requests: Vec<Value> = items
        .map(|(id, url)| serde_json::json!({"id": id.to_string(), "method": "GET", "url": url}))
        .collect();
    serde_json::json!({ "requests": requests })
        .to_string()
        .into_bytes()
}

/// Reads a `$batch` response: for each item of `sent`, in that order, its answer (`None` when
/// the response has none for it). Responses come in any order and are matched by id; an id
/// not sent, or one answered twice, refuses the whole response (as an unusable page is).
fn read_responses(body: &[u8], sent: &[Item]) -> Result<Vec<Option<Answer>>, String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        responses: Vec<RawItem<'a>>,
    }
    #[derive(Deserialize)]
    struct RawItem<'a> {
        id: String,
        status: u16,
        #[serde(default)]
        headers: Option<HashMap<String, Value>>,
        #[serde(borrow, default)]
        body: Option<&'a RawValue>,
    }
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| format!("invalid batch response: {e}"))?;
    let mut answers: Vec<Option<Answer>> = sent.iter().map(|_| None).collect();
    for raw in envelope.responses {
        let position = sent
            .iter()
            .position(|item| item.index.to_string() == raw.id)
            .ok_or_else(|| format!("a batch response for an id not sent: {:?}", raw.id))?;
        if answers[position].is_some() {
            return Err(format!("two batch responses for id {:?}", raw.id));
        }
        let headers = raw.headers.unwrap_or_default();
        let signals = Signals::read(raw.status, |name| {
            headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_str())
        });
        let body = raw.body.map_or(&b""[..], |b| b.get().as_bytes());
        let outcome = item_outcome(&sent[position].url, raw.status, body, signals.retry_after);
        answers[position] = Some(Answer { outcome, signals });
    }
    Ok(answers)
}

/// What one item's status and body mean for the member page asked for at `url`.
fn item_outcome(
    url: &str,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<Option<MembersPage>, Failure> {
    if status == 200 {
        return parse_members(body)
            .map(Some)
            .map_err(|e| unusable(RESOURCE, &e));
    }
    match classify(
        RESOURCE,
        url,
        status,
        GraphErrorBody::parse(body),
        retry_after,
    ) {
        // The group was deleted since it was listed.
        Failure::NotFound(_) => Ok(None),
        failure => Err(failure),
    }
}

#[cfg(test)]
mod tests;
