//! What others hear of a task while it runs and when it ends.
//!
//! `Hub`: live events of running tasks (SPEC 11), the CLI's stream-json lines fanned out to
//! whoever follows the task (a streaming request, `GET /api/tasks/:id/events`). A late
//! subscriber gets the lines so far (the newest `BACKLOG` of them) and then the rest as they
//! come; every subscriber gets `End` with the finished task. Ended topics are kept a short
//! while, so a subscriber that comes right after the end still gets it.
//!
//! `Ends`: the ends of tasks an HTTP request waits for (a sync run's answer, a cancel waiting
//! for the kill), with the error that ended a task when it was not the CLI's run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::error::Error;
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
    /// Follows task `id` from its first line (as far as the backlog reaches). With no topic for
    /// it, `ended_already` is asked under the lock `end` takes: a task that ended while nobody
    /// followed it gets its end at once, and no topic is made that nothing would ever end.
    pub fn subscribe(&self, id: &str, ended_already: impl FnOnce() -> Option<Arc<Task>>) -> Receiver<Event> {
        let (tx, rx) = unbounded();
        let mut topics = self.topics.lock();
        if !topics.contains_key(id) {
            if let Some(task) = ended_already() {
                let _ = tx.send(Event::End(task));
                return rx;
            }
        }
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
    /// The tasks someone follows whose end has not come yet.
    pub fn followed(&self) -> Vec<String> {
        let topics = self.topics.lock();
        topics
            .iter()
            .filter(|(_, t)| t.ended.is_none() && !t.subscribers.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

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

/// How a task ended, as those who wait for it hear it.
#[derive(Debug, Clone)]
pub struct TaskEnd {
    /// The task as it ended (as saved; or as shown when it could not be saved).
    pub task: Arc<Task>,
    /// What ended it, when that was not its CLI run: refused at its start, stopped by a
    /// shutdown, or its state could not be saved.
    pub error: Option<Error>,
}

/// Called once with the end of the task it waits for.
pub type Listener = Box<dyn FnOnce(TaskEnd) + Send>;

/// The ends of tasks somebody waits for, by task id.
#[derive(Default)]
pub struct Ends(Mutex<HashMap<String, Watch>>);

enum Watch {
    /// A sync task whose request will ask for its end: the end is kept until it does.
    Kept(Option<TaskEnd>),
    /// Those to tell when it ends.
    Listeners(Vec<Listener>),
}

impl Ends {
    /// Task `id` will be asked for by its request: its end is kept until then. Call before the
    /// task is queued.
    pub fn keep(&self, id: &str) {
        self.0.lock().insert(id.to_string(), Watch::Kept(None));
    }

    /// Calls `listener` with the end of task `id`: at once when it has ended (kept, or
    /// `ended_already` finds it final), else when it ends. `ended_already` is asked under the
    /// lock that `ended` takes, so an end cannot slip between the look and the registration.
    pub fn listen(&self, id: &str, ended_already: impl FnOnce() -> Option<Arc<Task>>, listener: Listener) {
        let mut awaited = self.0.lock();
        let now = match awaited.remove(id) {
            Some(Watch::Kept(Some(end))) => Some(end),
            Some(Watch::Kept(None)) => None,
            Some(Watch::Listeners(mut listeners)) => {
                listeners.push(listener);
                awaited.insert(id.to_string(), Watch::Listeners(listeners));
                return;
            }
            None => ended_already().map(|task| TaskEnd { task, error: None }),
        };
        match now {
            Some(end) => {
                drop(awaited);
                listener(end);
            }
            None => {
                awaited.insert(id.to_string(), Watch::Listeners(vec![listener]));
            }
        }
    }

    /// Nobody will ask for task `id` (its request failed after `keep`): what was kept goes.
    /// The tasks whose end a request listens for now.
    pub fn awaited(&self) -> Vec<String> {
        let awaited = self.0.lock();
        awaited.iter().filter(|(_, w)| matches!(w, Watch::Listeners(_))).map(|(id, _)| id.clone()).collect()
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().remove(id);
    }

    /// Task `id` ended: whoever listens hears it now (a kept task keeps it for its request).
    pub fn ended(&self, id: &str, end: TaskEnd) {
        let mut awaited = self.0.lock();
        match awaited.remove(id) {
            Some(Watch::Listeners(listeners)) => {
                drop(awaited);
                for listener in listeners {
                    listener(end.clone());
                }
            }
            Some(Watch::Kept(None)) => {
                awaited.insert(id.to_string(), Watch::Kept(Some(end)));
            }
            Some(kept @ Watch::Kept(Some(_))) => {
                awaited.insert(id.to_string(), kept);
            }
            None => {}
        }
    }

    /// No task is awaited or kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
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
        let early = hub.subscribe("t", || None);
        hub.publish("t", "one");
        let late = hub.subscribe("t", || None);
        hub.publish("t", "two");
        hub.end(task("t"));
        let after = hub.subscribe("t", || Some(task("t")));
        assert_eq!(lines(&early), ["one", "two", "end t"]);
        assert_eq!(lines(&late), ["one", "two", "end t"]);
        assert_eq!(lines(&after), ["one", "two", "end t"]);
    }

    #[test]
    fn following_a_task_that_ended_unfollowed_gets_its_end_at_once_and_keeps_nothing() {
        let hub = Hub::default();
        // Ended while nobody followed it (no topic), then followed again and again, each
        // follower gone right after its answer.
        hub.end(task("old"));
        for _ in 0..3 {
            let rx = hub.subscribe("old", || Some(task("old")));
            assert_eq!(lines(&rx), ["end old"]);
        }
        assert!(hub.topics.lock().is_empty(), "a topic that nothing will end is kept for every follower");
        // A task that has not ended is followed as before.
        let live = hub.subscribe("live", || None);
        hub.publish("live", "one");
        hub.end(task("live"));
        assert_eq!(lines(&live), ["one", "end live"]);
    }

    fn collect(into: &Arc<Mutex<Vec<String>>>) -> Listener {
        let into = into.clone();
        Box::new(move |end: TaskEnd| into.lock().push(end.task.id.clone()))
    }

    #[test]
    fn an_end_reaches_its_listener_whether_it_comes_before_or_after_the_listening() {
        let ends = Ends::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        // A kept sync task that ends before its request listens: kept, then told at once.
        ends.keep("early");
        ends.ended("early", TaskEnd { task: task("early"), error: None });
        ends.listen("early", || None, collect(&heard));
        // A listener that comes first hears the end when it comes.
        ends.listen("late", || None, collect(&heard));
        assert_eq!(*heard.lock(), ["early"]);
        ends.ended("late", TaskEnd { task: task("late"), error: None });
        // A task nobody kept that is final already: told at once from the record.
        ends.listen("done", || Some(task("done")), collect(&heard));
        assert_eq!(*heard.lock(), ["early", "late", "done"]);
        // Ends of tasks nobody waits for are not kept.
        ends.ended("nobody", TaskEnd { task: task("nobody"), error: None });
        assert!(ends.is_empty());
    }
}
