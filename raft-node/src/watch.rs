//! A value many tasks wait on, as `tokio::sync::watch`, waking them in a fixed
//! order. A tokio watch receiver waits on one of eight `Notify` chosen by
//! tokio's thread RNG, whose seed takes a process-wide counter: tasks waiting
//! on one watch (fetches on a partition's high watermark, requests on the
//! cluster view) woke in an order that a simulation seed did not repeat once
//! other simulations had run in the process (a `keel-sim sweep`). One `Notify`
//! wakes its waiters in the order they came. The shutdown signals of the
//! transport and the Kafka server are ones too: a dying broker's connections
//! closed in that random order, and its peers logged it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

struct Shared<T> {
    /// The value and how many times it was sent.
    value: Mutex<(T, u64)>,
    /// The sender is gone.
    closed: AtomicBool,
    sent: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, (T, u64)> {
        // Every update is one assignment: a poisoned value is still whole.
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side; dropping it wakes every receiver.
pub struct Sender<T>(Arc<Shared<T>>);

/// A receiving side: the value, and a wait for the next one sent.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The send count last seen.
    seen: u64,
}

/// The sender was dropped.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

impl<T: Clone> Sender<T> {
    pub fn new(value: T) -> Self {
        Sender(Arc::new(Shared { value: Mutex::new((value, 0)), closed: AtomicBool::new(false), sent: Notify::new() }))
    }

    /// Replaces the value and wakes every receiver, changed or not (as tokio's `send_replace`).
    pub fn send_replace(&self, value: T) {
        {
            let mut current = self.0.lock();
            current.0 = value;
            current.1 += 1;
        }
        self.0.sent.notify_waiters();
    }

    pub fn borrow(&self) -> T {
        self.0.lock().0.clone()
    }

    /// A receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        Receiver { shared: self.0.clone(), seen: self.0.lock().1 }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.sent.notify_waiters();
    }
}

impl<T: Clone> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver { shared: self.shared.clone(), seen: self.seen }
    }
}

impl<T: Clone> Receiver<T> {
    pub fn borrow(&self) -> T {
        self.shared.lock().0.clone()
    }

    /// The value, now marked seen.
    pub fn borrow_and_update(&mut self) -> T {
        let current = self.shared.lock();
        self.seen = current.1;
        current.0.clone()
    }

    /// Waits until a value is sent that this receiver has not seen, and marks it seen.
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            let mut sent = std::pin::pin!(self.shared.sent.notified());
            // Registered before the check: a send in between still wakes it.
            sent.as_mut().enable();
            let count = self.shared.lock().1;
            if count != self.seen {
                self.seen = count;
                return Ok(());
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(Closed);
            }
            sent.await;
        }
    }

    /// Waits until the value satisfies `ready` (the current one counts, seen or
    /// not), and marks it seen; `Closed` if the sender goes first.
    pub async fn wait_for(&mut self, mut ready: impl FnMut(&T) -> bool) -> Result<(), Closed> {
        loop {
            let mut sent = std::pin::pin!(self.shared.sent.notified());
            // Registered before the check: a send in between still wakes it.
            sent.as_mut().enable();
            {
                let current = self.shared.lock();
                self.seen = current.1;
                if ready(&current.0) {
                    return Ok(());
                }
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(Closed);
            }
            sent.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn receivers_wake_on_every_send_and_when_the_sender_goes() {
        let sender = Sender::new(5);
        let mut receiver = sender.subscribe();
        assert!(receiver.changed().now_or_never().is_none(), "nothing sent since it subscribed");
        let mut waiting = receiver.clone();
        let woken = tokio::spawn(async move { waiting.changed().await.map(|()| waiting.borrow()) });
        sender.send_replace(5);
        assert_eq!(woken.await.unwrap(), Ok(5), "the same value sent again still wakes it");
        assert_eq!(receiver.changed().now_or_never(), Some(Ok(())));
        assert_eq!(receiver.borrow_and_update(), 5);
        sender.send_replace(6);
        assert_eq!((receiver.borrow(), sender.borrow()), (6, 6));
        assert_eq!(receiver.changed().now_or_never(), Some(Ok(())));
        drop(sender);
        assert_eq!(receiver.changed().await, Err(Closed));
    }

    #[tokio::test]
    async fn wait_for_takes_the_current_value_or_waits_for_one_that_fits() {
        let sender = Sender::new(false);
        let mut receiver = sender.subscribe();
        assert!(receiver.wait_for(|down| *down).now_or_never().is_none(), "false does not fit");
        let mut waiting = receiver.clone();
        let woken = tokio::spawn(async move { waiting.wait_for(|down| *down).await });
        sender.send_replace(true);
        assert_eq!(woken.await.unwrap(), Ok(()));
        assert_eq!(receiver.wait_for(|down| *down).now_or_never(), Some(Ok(())), "true, though seen, fits");
        let mut other = sender.subscribe();
        drop(sender);
        assert_eq!(other.wait_for(|down| !*down).await, Err(Closed));
    }
}
