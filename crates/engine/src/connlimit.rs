//! The session's limit on peer connections across its torrents, which may
//! change while connections are open.
//!
//! A semaphore with far more permits than any limit, and the limit checked
//! against the permits in use: lowering the limit closes nothing (the
//! connections open may stay), it only stops new ones until fewer are open;
//! raising it lets new ones in at once. Permits free themselves when a
//! connection's task ends, whatever the limit is by then.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Permits of the semaphore: more than any limit can be.
const CAPACITY: usize = 1 << 24;

/// Most connections at once, and the permits of those open.
#[derive(Debug)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: AtomicUsize,
}

impl ConnectionLimit {
    /// At most `max` connections at once (at least 1, at most 2^24).
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(CAPACITY)),
            max: AtomicUsize::new(max.clamp(1, CAPACITY)),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Changes the limit (at least 1); connections open above a lowered
    /// limit stay until they end.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.clamp(1, CAPACITY), Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        CAPACITY - self.permits.available_permits()
    }

    /// How many more may open now.
    pub fn left(&self) -> usize {
        self.max().saturating_sub(self.in_use())
    }

    /// A permit for one more connection, held for its life; `None` at the
    /// limit. Two callers at once may both pass a limit that had room for
    /// one: the limit is exact to within the connections opened at the
    /// same instant.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        if self.left() == 0 {
            return None;
        }
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_bounds_new_connections_and_may_change_while_they_are_open() {
        let limit = ConnectionLimit::new(2);
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        assert_eq!((limit.in_use(), limit.left()), (2, 0));
        limit.set_max(3);
        let c = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        // Lowered below what is open: nothing new until two have ended.
        limit.set_max(1);
        assert_eq!(limit.left(), 0);
        drop(a);
        assert!(limit.try_acquire().is_none());
        drop(b);
        assert!(limit.try_acquire().is_none(), "one is still open");
        drop(c);
        assert!(limit.try_acquire().is_some());
        limit.set_max(0);
        assert_eq!(limit.max(), 1);
    }
}
