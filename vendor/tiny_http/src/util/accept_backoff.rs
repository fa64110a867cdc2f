use std::io::{Error as IoError, ErrorKind};
use std::time::Duration;

/// First pause after `accept()` failed for lack of resources.
const FIRST_DELAY: Duration = Duration::from_millis(10);

/// Longest pause between two `accept()` attempts.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Decides what the accept thread does after `accept()` failed.
///
/// An error about the connection being accepted (aborted or reset by the peer, or an
/// interrupted call) concerns that connection only: accepting again at once is right. Any other
/// error, typically EMFILE, ENFILE, ENOBUFS or ENOMEM, says the process or the system is short
/// of resources: trying again at once would spin, so the thread pauses, 10 ms first and twice as
/// long each time up to 500 ms, until an `accept()` succeeds again.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    // the pause after the next failure, None outside of an episode of failures
    next_delay: Option<Duration>,
}

/// What to do after a failed `accept()`.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterAcceptError {
    /// Accept again at once.
    Retry,
    /// Sleep this long, then accept again. `first` is true for the first pause of an episode
    /// (the time to log the error).
    Pause { delay: Duration, first: bool },
}

impl AcceptBackoff {
    pub fn on_error(&mut self, err: &IoError) -> AfterAcceptError {
        match err.kind() {
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted => {
                return AfterAcceptError::Retry
            }
            _ => (),
        }

        let first = self.next_delay.is_none();
        let delay = self.next_delay.unwrap_or(FIRST_DELAY);
        self.next_delay = Some((delay * 2).min(MAX_DELAY));
        AfterAcceptError::Pause { delay, first }
    }

    /// Ends an episode of failures. Returns true if there was one (the time to log the recovery).
    pub fn on_success(&mut self) -> bool {
        self.next_delay.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::{AcceptBackoff, AfterAcceptError};
    use std::io::{Error as IoError, ErrorKind};
    use std::time::Duration;

    fn pause(ms: u64, first: bool) -> AfterAcceptError {
        AfterAcceptError::Pause {
            delay: Duration::from_millis(ms),
            first,
        }
    }

    #[test]
    fn out_of_descriptors_backs_off_doubling_up_to_half_a_second() {
        let emfile = IoError::from_raw_os_error(24); // EMFILE on Linux, macOS and the BSDs
        let mut backoff = AcceptBackoff::default();
        let delays: Vec<_> = (0..8).map(|_| backoff.on_error(&emfile)).collect();
        assert_eq!(
            delays,
            vec![
                pause(10, true),
                pause(20, false),
                pause(40, false),
                pause(80, false),
                pause(160, false),
                pause(320, false),
                pause(500, false),
                pause(500, false),
            ]
        );
    }

    #[test]
    fn success_ends_the_episode() {
        let mut backoff = AcceptBackoff::default();
        assert!(!backoff.on_success());
        let enomem = IoError::from(ErrorKind::OutOfMemory);
        assert_eq!(backoff.on_error(&enomem), pause(10, true));
        assert_eq!(backoff.on_error(&enomem), pause(20, false));
        assert!(backoff.on_success());
        assert!(!backoff.on_success());
        assert_eq!(backoff.on_error(&enomem), pause(10, true));
    }

    #[test]
    fn an_aborted_connection_is_retried_at_once() {
        let mut backoff = AcceptBackoff::default();
        for kind in [
            ErrorKind::ConnectionAborted,
            ErrorKind::ConnectionReset,
            ErrorKind::Interrupted,
        ] {
            assert_eq!(
                backoff.on_error(&IoError::from(kind)),
                AfterAcceptError::Retry
            );
        }
        assert!(!backoff.on_success());
    }
}
