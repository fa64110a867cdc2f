//! Live events of running tasks (SPEC 11): the CLI's stream-json lines, fanned out to whoever
//! follows the task (a streaming request, `GET /api/tasks/:id/events`). A late subscriber gets
//! the lines so far (the newest `BACKLOG` of them) and then the rest as they come; every
//! subscriber gets `End` with the finished task. Ended topics are kept a short while, so a
//! subscriber that comes right after the end still gets it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::model::Task;

const BACKLOG: usize = 5_000;
const KEEP_ENDED: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub enum Event {
    /// One line the CLI printed.
    Line(Arc<str>),
    /// The task ended; nothing follows.
    End(Arc<Task>),
}

#[derive(Default)]
struct Topic {
    backlog: Vec<Arc<str>>,
    subscribers: Vec<Sender<Event>>,
    ended: Option<(Arc<Task>, Instant)>,
}

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<String, Topic>>,
}

impl Hub {
    /// Follows task `id` from its first line (as far as the backlog reaches).
    pub fn subscribe(&self, id: &str) -> Receiver<Event> {
        let (tx, rx) = unbounded();
        let mut topics = self.topics.lock();
        let topic = topics.entry(id.to_string()).or_default();
        for line in &topic.backlog {
            let _ = tx.send(Event::Line(line.clone()));
        }
        match &topic.ended {
            Some((task, _)) => {
                let _ = tx.send(Event::End(task.clone()));
            }
            None => topic.subscribers.push(tx),
        }
        rx
    }

    pub fn publish(&self, id: &str, line: &str) {
        let line: Arc<str> = Arc::from(line);
        let mut topics = self.topics.lock();
        let topic = topics.entry(id.to_string()).or_default();
        if topic.backlog.len() >= BACKLOG {
            topic.backlog.remove(0);
        }
        topic.backlog.push(line.clone());
        topic.subscribers.retain(|s| s.send(Event::Line(line.clone())).is_ok());
    }

    /// The task has ended: tell every subscriber, keep the topic a little for latecomers.
    pub fn end(&self, task: Arc<Task>) {
        let mut topics = self.topics.lock();
        topics.retain(|_, t| t.ended.as_ref().is_none_or(|(_, at)| at.elapsed() < KEEP_ENDED));
        let Some(topic) = topics.get_mut(&task.id) else { return };
        for subscriber in topic.subscribers.drain(..) {
            let _ = subscriber.send(Event::End(task.clone()));
        }
        topic.ended = Some((task, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Arc<Task> {
        // A minimal stored record, read the way the store reads it.
        let record = serde_json::json!({
            "id": id, "status": "completed", "priority": 5, "prompt": "", "project_path": "", "model": "",
            "session_id": null, "created_at": "2026-11-21T00:00:00Z", "updated_at": "2026-11-21T00:00:00Z",
            "started_at": null, "completed_at": null, "result": null, "error": null, "cost_usd": null,
            "duration_ms": null, "num_turns": null, "exit_code": null,
        });
        Arc::new(serde_json::from_value(record).unwrap())
    }

    fn lines(rx: &Receiver<Event>) -> Vec<String> {
        rx.try_iter()
            .map(|e| match e {
                Event::Line(l) => l.to_string(),
                Event::End(t) => format!("end {}", t.id),
            })
            .collect()
    }

    #[test]
    fn early_and_late_subscribers_see_every_line_then_the_end() {
        let hub = Hub::default();
        let early = hub.subscribe("t");
        hub.publish("t", "one");
        let late = hub.subscribe("t");
        hub.publish("t", "two");
        hub.end(task("t"));
        let after = hub.subscribe("t");
        assert_eq!(lines(&early), ["one", "two", "end t"]);
        assert_eq!(lines(&late), ["one", "two", "end t"]);
        assert_eq!(lines(&after), ["one", "two", "end t"]);
    }
}
