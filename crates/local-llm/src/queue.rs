//! The bounded queue of generations waiting for the model. A waiting
//! request whose client has hung up gives its place back at once (it is
//! dropped when the next request arrives, and skipped by the engine), so
//! only live requests count against the bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A bounded first-in first-out queue between request handlers and the
/// engine thread.
pub struct WaitQueue<T> {
    items: Mutex<VecDeque<T>>,
    ready: Condvar,
    capacity: usize,
    /// How many wait: what the queue depth gauge reads.
    depth: Arc<AtomicUsize>,
}

impl<T> WaitQueue<T> {
    /// A queue of at most `capacity` (at least 1) items whose length is
    /// mirrored in `depth`.
    pub fn new(capacity: usize, depth: Arc<AtomicUsize>) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            depth,
        }
    }

    /// Adds `item` after dropping the waiting items that are `abandoned`
    /// (returns how many were); gives it back if the queue is still full.
    pub fn push(&self, item: T, abandoned: impl Fn(&T) -> bool) -> Result<usize, T> {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        let before = items.len();
        items.retain(|waiting| !abandoned(waiting));
        let dropped = before - items.len();
        let result = if items.len() < self.capacity {
            items.push_back(item);
            self.ready.notify_one();
            Ok(dropped)
        } else {
            Err(item)
        };
        self.depth.store(items.len(), Ordering::Relaxed);
        result
    }

    /// Takes the oldest item, waiting for one.
    pub fn pop(&self) -> T {
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(item) = items.pop_front() {
                self.depth.store(items.len(), Ordering::Relaxed);
                return item;
            }
            items = self
                .ready
                .wait(items)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_until_a_waiting_item_is_abandoned() {
        let depth = Arc::new(AtomicUsize::new(0));
        let queue = WaitQueue::new(2, depth.clone());
        let live = |_: &(u32, bool)| false;
        assert!(queue.push((1, false), live).is_ok());
        assert!(queue.push((2, false), live).is_ok());
        assert_eq!(queue.push((3, false), live), Err((3, false)));
        assert_eq!(depth.load(Ordering::Relaxed), 2);
        // Item 1's client hangs up: item 3 gets its place.
        assert_eq!(queue.push((3, false), |(n, _)| *n == 1), Ok(1));
        assert_eq!(queue.pop(), (2, false));
        assert_eq!(queue.pop(), (3, false));
        assert_eq!(depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn pop_waits_for_a_push() {
        let queue = Arc::new(WaitQueue::new(1, Arc::default()));
        let popper = std::thread::spawn({
            let queue = queue.clone();
            move || queue.pop()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(queue.push(7, |_| false).is_ok());
        assert_eq!(popper.join().ok(), Some(7));
    }
}
