use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Sharing {
    // list of the tasks to be done by worker threads, and how many threads wait for one
    todo: Mutex<Todo>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,
}

struct Todo {
    tasks: VecDeque<Box<dyn FnMut() + Send>>,

    // number of worker threads waiting on `condvar`, counted under the same lock as `tasks`:
    // a thread that was woken up still counts until it took the lock again, so `spawn()`
    // queues a task only when an idle thread is left for it
    idle: usize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                todo: Mutex::new(Todo {
                    tasks: VecDeque::new(),
                    idle: 0,
                }),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            pool.add_thread(None)
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnMut() + Send>) {
        let mut todo = self.sharing.todo.lock().unwrap();

        if todo.idle > todo.tasks.len() {
            todo.tasks.push_back(code);
            self.sharing.condvar.notify_one();
        } else {
            drop(todo);
            self.add_thread(Some(code));
        }
    }

    /// Starts a worker thread. If the thread cannot be started, `initial_fn` is dropped
    /// without being run.
    fn add_thread(&self, initial_fn: Option<Box<dyn FnMut() + Send>>) {
        let sharing = self.sharing.clone();

        let spawned = thread::Builder::new().spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(mut f) = initial_fn {
                f();
            }

            loop {
                let mut task: Box<dyn FnMut() + Send> = {
                    let mut todo = sharing.todo.lock().unwrap();

                    let task;
                    loop {
                        if let Some(poped_task) = todo.tasks.pop_front() {
                            task = poped_task;
                            break;
                        }

                        todo.idle += 1;
                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                todo = sharing.condvar.wait(todo).unwrap();
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(todo, Duration::from_millis(5000))
                                    .unwrap();
                                todo = new_lock;
                                !waitres.timed_out()
                            };
                        todo.idle -= 1;

                        if !received && todo.tasks.is_empty() {
                            return;
                        }
                    }

                    task
                };

                task();
            }
        });

        if let Err(e) = spawned {
            log::error!("Cannot start a thread, dropping its task: {}", e);
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::TaskPool;
    use std::sync::mpsc;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Tasks that block (like keep-alive connections) must each get a thread of their own at once,
    /// even when they are spawned faster than idle threads wake up.
    #[test]
    fn busy_tasks_never_wait_behind_each_other() {
        const TASKS: usize = 32;
        let pool = TaskPool::new();
        let release = Arc::new(Barrier::new(TASKS + 1));
        let (started, started_rx) = mpsc::channel();

        for _ in 0..TASKS {
            let release = release.clone();
            let started = started.clone();
            let mut once = Some(());
            pool.spawn(Box::new(move || {
                if once.take().is_some() {
                    started.send(()).unwrap();
                    release.wait();
                }
            }));
        }

        for i in 0..TASKS {
            started_rx
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_else(|_| panic!("only {} of {} tasks started", i, TASKS));
        }
        release.wait();
    }
}
