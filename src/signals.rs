//! Process signals: SIGINT/SIGTERM (via ctrlc) ask for a graceful stop; SIGHUP asks for a
//! config reload (a flag the housekeeping thread polls).

use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Receiver;

static RELOAD_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sighup(_: libc::c_int) {
    RELOAD_REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers; the receiver gets a message on each SIGINT/SIGTERM.
pub fn install() -> Result<Receiver<()>, String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot install the SIGINT/SIGTERM handler: {e}"))?;
    // The handler only stores to an atomic, which is async-signal-safe.
    crate::sys::on_signal(crate::sys::SIGHUP, on_sighup)
        .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    Ok(rx)
}

/// Whether a SIGHUP arrived since the last call.
pub fn take_reload_request() -> bool {
    RELOAD_REQUESTED.swap(false, Ordering::SeqCst)
}
