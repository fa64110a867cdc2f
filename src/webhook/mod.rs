//! Webhooks (SPEC 9): when an async task ends, its outcome is POSTed to the task's `webhook_url`
//! (or `webhook.defaultUrl` when `webhook.enabled`). A delivery is a record in the store from the
//! moment it is queued until it succeeds or gives up, so it survives a restart. One sender
//! thread delivers: workers never wait on it. Each attempt has `webhook.timeout`; network errors,
//! 429 and 5xx are retried up to `webhook.retries` times with exponential backoff and jitter (or
//! after `Retry-After`); other answers end it. Every attempt carries the same `webhook-id`.

pub mod sign;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossbeam_channel::Receiver;
use serde_json::json;

use crate::app::App;
use crate::config::Config;
use crate::model::{now, Delivery, Task, WebhookState};
use crate::store::Durable;

/// The first retry waits about this long; each next one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How soon the store is read again when it could not be (a shared store that is down).
const STORE_RETRY: Duration = Duration::from_secs(5);
/// A delivery due for longer than this is sent by whichever server finds it (the one that queued
/// it is gone: a live sender attempts a due delivery within its timeout); looked for as often.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The URL a finished task notifies, if any.
pub fn url_for(task: &Task, config: &Config) -> Option<String> {
    task.request.webhook_url.clone().or_else(|| config.webhook.default_url.clone().filter(|_| config.webhook.enabled))
}

/// The payload: the original server's envelope.
pub fn payload(task: &Task) -> String {
    json!({
        "event": format!("task.{}", task.status.name()),
        "timestamp": crate::model::now_iso(),
        "data": {
            "task_id": task.id,
            "status": task.status,
            "result": task.result,
            "error": task.error,
            "cost_usd": task.cost_usd,
            "duration_ms": task.duration_ms,
            "session_id": task.session_id,
            "usage": task.usage,
        },
    })
    .to_string()
}

/// Stores a delivery for a finished task (when it has a URL), marks it pending on the task, and
/// wakes the sender. The task record must be final.
pub fn notify(app: &App, task: &Task) {
    let Some(url) = url_for(task, &app.config()) else { return };
    let delivery = Delivery {
        id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
        task_id: task.id.clone(),
        url: url.clone(),
        body: payload(task),
        attempts: 0,
        next_attempt_at: now(),
        created_at: now(),
        last_error: None,
    };
    let id = delivery.id.clone();
    // `Soon`, then the task's webhook state `Now`: one wait for both.
    if let Err(e) = app.store.deliveries.put(&id, delivery, Durable::Soon) {
        log::error!("webhook for task {} not queued: {e}", task.id);
        return;
    }
    let state = WebhookState { url, status: "pending".into(), attempts: 0, last_error: None };
    set_task_state(app, &task.id, state, Durable::Now);
    let _ = app.webhook_tx.send(id);
}

fn set_task_state(app: &App, task_id: &str, state: WebhookState, durable: Durable) {
    let changed = app.store.tasks.update(task_id, durable, |task| {
        task.webhook = Some(state);
        true
    });
    if let Err(e) = changed {
        log::error!("could not record the webhook state of task {task_id}: {e}");
    }
}

/// Starts the sender thread; it also picks up deliveries left from before a restart. It takes
/// the ids of deliveries due now from `due_now`, and ends when `stop` gets a message.
pub fn spawn(app: Arc<App>, due_now: Receiver<String>, stop: Receiver<()>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("webhooks".into()).spawn(move || run(&app, &due_now, &stop))
}

type Due = BinaryHeap<Reverse<(DateTime<Utc>, String)>>;

fn run(app: &App, due_now: &Receiver<String>, stop: &Receiver<()>) {
    let mut due = Due::new();
    let mut left_unread = true;
    let mut looked_for_abandoned = Instant::now();
    loop {
        if left_unread {
            left_unread = !add_left_over(app, &mut due, None);
        }
        if looked_for_abandoned.elapsed() >= ABANDONED_AFTER {
            add_left_over(app, &mut due, Some(ABANDONED_AFTER));
            looked_for_abandoned = Instant::now();
        }
        let wait = due
            .peek()
            .map(|Reverse((at, _))| (*at - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(Duration::from_secs(3600))
            .min(if left_unread { STORE_RETRY } else { Duration::MAX })
            .min(ABANDONED_AFTER.saturating_sub(looked_for_abandoned.elapsed()));
        crossbeam_channel::select! {
            recv(due_now) -> id => match id {
                Ok(id) => due.push(Reverse((now(), id))),
                Err(_) => return,
            },
            recv(stop) -> _ => return,
            default(wait) => {}
        }
        while due.peek().is_some_and(|Reverse((at, _))| *at <= Utc::now()) {
            let Some(Reverse((_, id))) = due.pop() else { break };
            if let Some(next) = attempt(app, &id) {
                due.push(Reverse((next, id)));
            }
        }
    }
}

/// Adds stored deliveries that are not in `due` yet: at a start, every one left from before;
/// later (`overdue`), those due for longer than that, which no server is sending (on a shared
/// store, the server that queued them died). False when the store cannot be read now.
fn add_left_over(app: &App, due: &mut Due, overdue: Option<Duration>) -> bool {
    let stored = match app.store.deliveries.all() {
        Ok(stored) => stored,
        Err(e) => {
            log::error!("{e}; webhook deliveries left over are looked for again soon");
            return false;
        }
    };
    let known: std::collections::HashSet<String> = due.iter().map(|Reverse((_, id))| id.clone()).collect();
    let cutoff = overdue.map(|overdue| now() - chrono::Duration::from_std(overdue).unwrap_or_default());
    let left: Vec<_> = stored
        .iter()
        .filter(|d| !known.contains(&d.id) && cutoff.is_none_or(|cutoff| d.next_attempt_at < cutoff))
        .collect();
    match (left.len(), overdue) {
        (0, _) => {}
        (n, None) => log::info!("{n} webhook delivery(ies) left from before the restart will be sent"),
        (n, Some(_)) => {
            log::warn!("{n} webhook delivery(ies) that no server was sending (its server stopped?) are sent here")
        }
    }
    due.extend(left.into_iter().map(|d| Reverse((d.next_attempt_at, d.id.clone()))));
    true
}

/// How one attempt ended.
#[derive(Debug, PartialEq)]
enum Verdict {
    Delivered,
    /// Worth another try (after `Retry-After`, when the receiver gave one).
    Retry(String, Option<Duration>),
    GiveUp(String),
}

/// One attempt of a delivery; returns when to try again, if ever.
fn attempt(app: &App, id: &str) -> Option<DateTime<Utc>> {
    let mut d = match app.store.deliveries.get(id) {
        Ok(d) => (*d?).clone(),
        Err(e) => {
            log::error!("{e}; webhook delivery {id} is tried again soon");
            return Some(now() + chrono::Duration::from_std(STORE_RETRY).unwrap_or_default());
        }
    };
    let config = app.config();
    d.attempts += 1;
    let verdict = post(&config, &d);
    let retries_left = d.attempts <= config.webhook.retries;
    let (status, error, next) = match verdict {
        Verdict::Delivered => ("delivered", None, None),
        Verdict::Retry(error, retry_after) if retries_left => {
            let wait = retry_after.unwrap_or_else(|| backoff(d.attempts));
            let next = now() + chrono::Duration::from_std(wait).unwrap_or_default();
            ("pending", Some(error), Some(next))
        }
        Verdict::Retry(error, _) | Verdict::GiveUp(error) => ("failed", Some(error), None),
    };
    match &error {
        Some(e) => log::warn!("webhook {} for task {} attempt {}: {e} ({status})", d.id, d.task_id, d.attempts),
        None => log::info!("webhook {} for task {} delivered (attempt {})", d.id, d.task_id, d.attempts),
    }
    app.metrics.count_webhook(if next.is_some() { "retried" } else { status });
    let state =
        WebhookState { url: d.url.clone(), status: status.into(), attempts: d.attempts, last_error: error.clone() };
    // `Soon`: the delivery's change just below is written `Now`.
    set_task_state(app, &d.task_id, state, Durable::Soon);
    let stored = match next {
        Some(at) => {
            d.next_attempt_at = at;
            d.last_error = error;
            app.store.deliveries.put(id, d, Durable::Now).map(|_| ())
        }
        None => app.store.deliveries.remove(id, Durable::Now),
    };
    if let Err(e) = stored {
        log::error!("could not save webhook delivery {id}: {e}");
    }
    next
}

fn post(config: &Config, d: &Delivery) -> Verdict {
    let loopback =
        d.url.starts_with("http://127.") || d.url.starts_with("http://localhost") || d.url.starts_with("http://[::1]");
    let mut builder = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(config.webhook.timeout)))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(format!("ccs/{}", env!("CARGO_PKG_VERSION")));
    if loopback {
        builder = builder.proxy(None);
    }
    let agent = ureq::Agent::new_with_config(builder.build());
    let timestamp = Utc::now().timestamp();
    let mut request = agent
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &config.webhook.secret {
        request = request.header("webhook-signature", sign::signature(secret, &d.id, timestamp, &d.body));
    }
    match request.send(d.body.as_bytes()) {
        Ok(response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
            judge(response.status().as_u16(), retry_after)
        }
        Err(e) => Verdict::Retry(format!("could not deliver: {e}"), None),
    }
}

fn judge(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        429 | 500..=599 => Verdict::Retry(format!("receiver answered {status}"), retry_after),
        300..=399 => Verdict::GiveUp(format!("receiver answered {status} (redirects are not followed)")),
        _ => Verdict::GiveUp(format!("receiver answered {status}")),
    }
}

/// Exponential backoff with jitter: about 1 s, 2 s, 4 s, ... (each between half and all of it).
fn backoff(attempts: u32) -> Duration {
    let full = FIRST_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    full.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_errors_429_and_5xx_are_retried() {
        assert_eq!(judge(200, None), Verdict::Delivered);
        assert_eq!(judge(204, None), Verdict::Delivered);
        assert!(matches!(judge(500, None), Verdict::Retry(..)));
        assert!(matches!(judge(503, Some(Duration::from_secs(7))), Verdict::Retry(_, Some(d)) if d.as_secs() == 7));
        assert!(matches!(judge(429, None), Verdict::Retry(..)));
        for status in [400, 401, 404, 410, 301, 302] {
            assert!(matches!(judge(status, None), Verdict::GiveUp(..)), "{status}");
        }
    }

    #[test]
    fn deliveries_no_server_is_sending_are_taken_up_and_the_others_left() {
        let app = App::for_tests(crate::store::Store::in_memory());
        let delivery = |id: &str, due_secs_ago: i64| Delivery {
            id: id.into(),
            task_id: "t".into(),
            url: "http://127.0.0.1:1/".into(),
            body: "{}".into(),
            attempts: 1,
            next_attempt_at: now() - chrono::Duration::seconds(due_secs_ago),
            created_at: now(),
            last_error: None,
        };
        for (id, ago) in [("abandoned", 120), ("due-now", 5), ("later", -30), ("known", 600)] {
            app.store.deliveries.put(id, delivery(id, ago), Durable::Now).unwrap();
        }
        let mut due = Due::new();
        due.push(Reverse((now(), "known".to_string())));
        assert!(add_left_over(&app, &mut due, Some(ABANDONED_AFTER)));
        let ids: Vec<String> = due.into_sorted_vec().into_iter().map(|Reverse((_, id))| id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&"abandoned".to_string()) && ids.contains(&"known".to_string()), "{ids:?}");
        let mut at_start = Due::new();
        assert!(add_left_over(&app, &mut at_start, None));
        assert_eq!(at_start.len(), 4, "a start takes every delivery left");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 1..=5u32 {
            let full = FIRST_BACKOFF * (1 << (attempt - 1));
            let wait = backoff(attempt);
            assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait:?}");
        }
        assert!(backoff(40) <= MAX_BACKOFF);
    }
}
