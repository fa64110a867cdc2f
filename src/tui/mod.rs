//! The menu TUI (SPEC 10): a cursive application that manages a server through its HTTP API
//! (and the daemon commands for start/stop). Every call runs on a thread of its own and hands
//! its result to the UI through cursive's callback sink, so the screen never freezes; the
//! status line refreshes every few seconds.

mod client;
mod screens;
pub mod view_model;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cursive::event::Key;
use cursive::traits::*;
use cursive::views::{Dialog, LinearLayout, OnEventView, SelectView, TextView};
use cursive::Cursive;

use crate::config::Config;
use crate::config::ConfigSource;
use client::Client;

/// What every screen needs, kept as cursive's user data.
pub struct Ui {
    pub source: ConfigSource,
    pub config: Config,
    pub client: Client,
}

/// Opens a screen of the menu.
type Screen = fn(&mut Cursive);

const MENU: &[(&str, Screen)] = &[
    ("Start service", screens::start_service),
    ("Stop service", screens::stop_service),
    ("Status", screens::status),
    ("Sessions", screens::sessions),
    ("Tasks", screens::tasks),
    ("Statistics", screens::statistics),
    ("Logs", screens::logs),
    ("API documentation", screens::api_docs),
    ("Configuration", screens::configuration),
    ("Test API", screens::test_api),
    ("Quit", Cursive::quit),
];

pub fn run(source: &ConfigSource) -> i32 {
    let config = match source.load() {
        Ok((config, _)) => config,
        Err(err) => {
            eprintln!("ccs: {err}");
            return crate::exit::USAGE;
        }
    };
    let client = Client::new(&config);
    let mut siv = cursive::default();
    siv.set_user_data(Ui { source: source.clone(), config, client: client.clone() });
    siv.add_layer(main_menu(&client));
    let running = Arc::new(AtomicBool::new(true));
    refresh_status_line(&siv, client, running.clone());
    siv.run();
    running.store(false, Ordering::SeqCst);
    crate::exit::OK
}

fn main_menu(client: &Client) -> impl View {
    let mut menu = SelectView::<usize>::new();
    for (i, (label, _)) in MENU.iter().enumerate() {
        menu.add_item(*label, i);
    }
    menu.set_on_submit(|s, i: &usize| (MENU[*i].1)(s));
    let layout = LinearLayout::vertical()
        .child(TextView::new("Claude Code as a REST API — manage the server\n"))
        .child(menu.with_name("menu"))
        .child(TextView::new(format!("\n○ checking {} …", client.base())).with_name("status"))
        .child(TextView::new("\n↑↓ move   Enter open   Esc back   q quit"));
    OnEventView::new(Dialog::around(layout).title(format!("ccs {}", env!("CARGO_PKG_VERSION"))))
        .on_event('q', Cursive::quit)
        .on_event(Key::Esc, |_| {})
}

/// Updates the status line every 3 s until the TUI ends.
fn refresh_status_line(siv: &Cursive, client: Client, running: Arc<AtomicBool>) {
    let sink = siv.cb_sink().clone();
    std::thread::spawn(move || {
        while running.load(Ordering::SeqCst) {
            let line = view_model::status_line(&client.get("/health"), client.base());
            let sent = sink.send(Box::new(move |s: &mut Cursive| {
                s.call_on_name("status", |v: &mut TextView| v.set_content(format!("\n{line}")));
            }));
            if sent.is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    });
}

/// Runs `work` on a thread of its own, then `show` on the UI thread with its result.
pub fn in_background<T: Send + 'static>(
    s: &mut Cursive,
    work: impl FnOnce() -> T + Send + 'static,
    show: impl FnOnce(&mut Cursive, T) + Send + 'static,
) {
    let sink = s.cb_sink().clone();
    std::thread::spawn(move || {
        let result = work();
        let _ = sink.send(Box::new(move |s: &mut Cursive| show(s, result)));
    });
}

pub fn ui(s: &mut Cursive) -> &mut Ui {
    s.user_data::<Ui>().expect("the TUI sets its user data at start")
}
