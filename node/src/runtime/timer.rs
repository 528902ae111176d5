//! The timer thread, and the clock the consensus thread counts ticks by.
//!
//! The core counts time in ticks ([`NodeConfig::tick`](super::NodeConfig::tick) long, 10 ms by
//! default) and says how many may pass before one can make it act
//! ([`Raft::ticks_until_due`](crate::raft::Raft::ticks_until_due)). So nothing ticks while
//! nothing is due: an idle node wakes for its heartbeats and election deadline, not 100 times a
//! second.
//!
//! - [`Clock`] (the consensus thread's): tick `n` ends `n` ticks after the node started. At
//!   every turn's start the consensus thread delivers, one by one, the ticks that ended before
//!   anything still queued arrived (all of them after a sleep, so a message arriving mid-sleep
//!   sees time as it is; `consensus.rs`, "Ticks and events", has the rule under load), and the
//!   core sees each tick, in order, as if it had ticked all along.
//!   After the turn it asks for a wake-up at the end of the tick the core says is due
//!   ([`Clock::arm`]).
//! - [`run`] (the timer thread): sleeps until the deadline it was last given, then sends one
//!   [`Event::Tick`] (a wake-up: the ticks themselves are counted by the clock) and sleeps
//!   until it is given another.
//!
//! Rules: a deadline is sent to the timer only when it is earlier than the one the timer holds
//! (a later one, which every heartbeat a follower takes makes, would wake the timer thread for
//! nothing: the earlier wake-up comes, finds nothing due, and sends the later deadline then);
//! the timer holds at most one deadline, the last sent; once it fires, the consensus thread
//! holds none armed, so the turn that takes the wake-up arms the next. Hence no wake-up is lost:
//! whenever something is due, the timer holds a deadline no later than it, or a wake-up waits
//! in the inbox.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, at, never, select};

use super::Event;

/// Sleeps until the deadline last received on `deadlines`, then sends `Event::Tick` to wake the
/// consensus thread, and waits for the next; returns once `stop` is closed, or `deadlines` or
/// the inbox is gone.
pub fn run(deadlines: &Receiver<Instant>, inbox: &Sender<Event>, stop: &Receiver<()>) {
    let mut deadline: Option<Instant> = None;
    loop {
        let alarm = deadline.map_or_else(never, at);
        select! {
            recv(deadlines) -> next => match next {
                // The latest is the consensus thread's current wish (see the module doc).
                Ok(next) => deadline = Some(deadlines.try_iter().last().unwrap_or(next)),
                Err(_) => return,
            },
            recv(alarm) -> _ => {
                deadline = None;
                if inbox.send(Event::Tick).is_err() {
                    return;
                }
            }
            recv(stop) -> _ => return,
        }
    }
}

/// The consensus thread's clock: which ticks have ended, which the core has been given, and
/// which wake-up the timer thread holds.
#[derive(Debug)]
pub struct Clock {
    /// When tick 1 began.
    start: Instant,
    tick: Duration,
    /// Ticks delivered to the core so far.
    delivered: u64,
    /// The deadline the timer thread holds, if it has not fired yet.
    armed: Option<Instant>,
    /// Times the timer fired.
    wakeups: u64,
    timer: Sender<Instant>,
}

impl Clock {
    /// A clock starting now, counting ticks of `tick`, asking `timer` for its wake-ups.
    pub fn new(tick: Duration, start: Instant, timer: Sender<Instant>) -> Clock {
        Clock {
            start,
            tick,
            delivered: 0,
            armed: None,
            wakeups: 0,
            timer,
        }
    }

    /// How many ticks ended by `now` and were not delivered yet; counts them delivered.
    pub fn take_elapsed(&mut self, now: Instant) -> u64 {
        let ended = ticks_in(now.saturating_duration_since(self.start), self.tick);
        let elapsed = ended.saturating_sub(self.delivered);
        self.delivered = self.delivered.max(ended);
        elapsed
    }

    /// The timer fired: it holds no deadline now.
    pub fn fired(&mut self) {
        self.armed = None;
        self.wakeups += 1;
    }

    /// Ticks delivered to the core since the node started.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Times the timer woke the consensus thread since the node started.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// Asks for a wake-up at the end of the `due`-th tick after the last delivered (`None`:
    /// none is needed until some other input comes), unless the timer already holds one as
    /// early. A timer thread that is gone is not an error here: the node is stopping.
    pub fn arm(&mut self, due: Option<u32>) {
        let Some(due) = due else {
            return;
        };
        let Some(deadline) = self.deadline(due) else {
            return;
        };
        if self.armed.is_some_and(|armed| armed <= deadline) {
            return;
        }
        self.armed = Some(deadline);
        let _ = self.timer.send(deadline);
    }

    /// When the `due`-th tick after the last delivered ends (`None`: beyond what an `Instant`
    /// holds, which is never).
    fn deadline(&self, due: u32) -> Option<Instant> {
        let end = self.delivered.saturating_add(u64::from(due.max(1)));
        let nanos = self.tick.as_nanos().saturating_mul(u128::from(end));
        let offset = Duration::from_nanos(u64::try_from(nanos).ok()?);
        self.start.checked_add(offset)
    }
}

/// Whole ticks of `tick` in `span`.
fn ticks_in(span: Duration, tick: Duration) -> u64 {
    // `NodeConfig::validate` refuses a zero tick; the `max` keeps this total all the same.
    let ticks = span.as_nanos() / tick.as_nanos().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn clock() -> (Clock, Instant, Receiver<Instant>) {
        let (timer, deadlines) = crossbeam_channel::unbounded();
        let start = super::super::throttle::now();
        (Clock::new(TICK, start, timer), start, deadlines)
    }

    #[test]
    fn every_tick_that_ended_is_delivered_once_and_no_tick_early() {
        let (mut clock, start, _deadlines) = clock();
        assert_eq!(
            clock.take_elapsed(start + TICK - Duration::from_nanos(1)),
            0
        );
        assert_eq!(clock.take_elapsed(start + TICK), 1);
        assert_eq!(clock.take_elapsed(start + TICK * 3 + TICK / 2), 2);
        assert_eq!(clock.take_elapsed(start + TICK * 3 + TICK / 2), 0);
        // A clock read earlier than the last one (another thread's `Instant`) delivers nothing.
        assert_eq!(clock.take_elapsed(start + TICK), 0);
        assert_eq!(clock.take_elapsed(start + TICK * 4), 1);
    }

    #[test]
    fn a_deadline_is_the_end_of_the_due_tick_counted_from_the_last_delivered() {
        let (mut clock, start, deadlines) = clock();
        clock.take_elapsed(start + TICK * 2 + TICK / 3);
        clock.arm(Some(5));
        assert_eq!(deadlines.try_recv(), Ok(start + TICK * 7));
    }

    #[test]
    fn only_an_earlier_deadline_is_sent_until_the_timer_fires() {
        let (mut clock, start, deadlines) = clock();
        clock.arm(Some(20));
        clock.arm(Some(25));
        clock.arm(Some(20));
        clock.arm(None);
        assert_eq!(
            deadlines.try_iter().collect::<Vec<_>>(),
            [start + TICK * 20]
        );
        clock.arm(Some(5));
        assert_eq!(deadlines.try_recv(), Ok(start + TICK * 5));
        clock.fired();
        clock.arm(Some(30));
        assert_eq!(deadlines.try_recv(), Ok(start + TICK * 30));
    }

    #[test]
    fn the_timer_wakes_once_per_deadline_and_the_latest_deadline_wins() {
        let (deadline_tx, deadline_rx) = crossbeam_channel::unbounded();
        let (inbox, events) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let timer = std::thread::Builder::new()
            .spawn(move || run(&deadline_rx, &inbox, &stop_rx))
            .expect("a test thread starts");
        let now = super::super::throttle::now();
        // A far deadline replaced by a near one: one wake-up, for the near one.
        let timer_alive = "the timer thread runs until stopped";
        deadline_tx
            .send(now + Duration::from_secs(3600))
            .expect(timer_alive);
        deadline_tx.send(now).expect(timer_alive);
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Tick)
        ));
        deadline_tx.send(now).expect(timer_alive);
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Tick)
        ));
        drop(stop_tx);
        timer.join().expect("the timer thread ends when told to");
        assert!(events.try_recv().is_err(), "one wake-up per deadline");
    }
}
