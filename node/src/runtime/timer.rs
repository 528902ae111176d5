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
//! - [`run`] (the timer thread): sleeps until the [`Alarm`] it was last given rings, then sends
//!   one [`Event::Tick`] (a wake-up: the ticks themselves are counted by the clock) and sleeps
//!   until the alarm's next ring ([`Alarm::next`]) or until it is given another.
//!
//! **Repeating alarms.** A leader is due every heartbeat, so its alarm repeats every heartbeat
//! interval: the timer re-arms itself as it rings, and the consensus thread, which computes the
//! same next ring with the same [`Alarm::next`], sends nothing. Without it every heartbeat
//! woke the timer thread twice, once to ring and once to take the next deadline. Any other
//! alarm rings once.
//!
//! Rules: an alarm is sent to the timer only when its first ring is earlier than the ring the
//! clock believes the timer holds, or it repeats differently, or that ring has already passed
//! (a later one, which every heartbeat a follower takes makes, would wake the timer thread for
//! nothing: the earlier wake-up comes, finds nothing due, and sends the later alarm then). The
//! timer holds at most one alarm, the last sent. Each wake-up the consensus thread takes moves
//! the ring it believes the timer holds to that alarm's next ([`Clock::fired`]): exactly the
//! timer's own step when the wake-up came from the alarm last sent, and a later ring than the
//! timer's when it came from one the timer had already replaced (the timer then rings early,
//! a wake-up that finds nothing due, and the next turn sends again). So the ring the clock
//! believes is never earlier than the timer's, except while a wake-up waits in the inbox; hence
//! no wake-up is lost: whenever something is due, the timer holds a ring no later than it, or a
//! wake-up waits in the inbox.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, at, never, select};

use super::Event;

/// A wake-up the consensus thread asks the timer thread for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// When it first rings.
    pub at: Instant,
    /// Then it rings every this long, until another alarm replaces it (`None`: once).
    pub every: Option<Duration>,
}

impl Alarm {
    /// The alarm after this one rang: its next ring if it repeats, none otherwise. The timer
    /// and the clock both step with this, so that they agree on the ring the timer holds.
    pub fn next(self) -> Option<Alarm> {
        let every = self.every?;
        Some(Alarm {
            at: self.at.checked_add(every)?,
            every: Some(every),
        })
    }
}

/// Sleeps until the alarm last received on `alarms` rings, then sends `Event::Tick` to wake the
/// consensus thread, and sleeps until its next ring or the next alarm; returns once `stop` is
/// closed, or `alarms` or the inbox is gone.
pub fn run(alarms: &Receiver<Alarm>, inbox: &Sender<Event>, stop: &Receiver<()>) {
    let mut alarm: Option<Alarm> = None;
    loop {
        let ring = alarm.map_or_else(never, |alarm| at(alarm.at));
        select! {
            recv(alarms) -> next => match next {
                // The latest is the consensus thread's current wish (see the module doc).
                Ok(next) => alarm = Some(alarms.try_iter().last().unwrap_or(next)),
                Err(_) => return,
            },
            recv(ring) -> _ => {
                alarm = alarm.and_then(Alarm::next);
                if inbox.send(Event::Tick).is_err() {
                    return;
                }
            }
            recv(stop) -> _ => return,
        }
    }
}

/// The consensus thread's clock: which ticks have ended, which the core has been given, and
/// which alarm the timer thread holds.
#[derive(Debug)]
pub struct Clock {
    /// When tick 1 began.
    start: Instant,
    tick: Duration,
    /// Ticks delivered to the core so far.
    delivered: u64,
    /// The alarm the timer thread holds, as far as this thread knows (see the module doc).
    armed: Option<Alarm>,
    /// Times the timer fired.
    wakeups: u64,
    timer: Sender<Alarm>,
}

impl Clock {
    /// A clock starting now, counting ticks of `tick`, asking `timer` for its wake-ups.
    pub fn new(tick: Duration, start: Instant, timer: Sender<Alarm>) -> Clock {
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

    /// The timer rang: it now holds the next ring of the alarm it rang, if that repeats.
    pub fn fired(&mut self) {
        self.armed = self.armed.and_then(Alarm::next);
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

    /// Asks for a wake-up at the end of the `due`-th tick after the last delivered, then every
    /// `every` ticks if given (`due` `None`: none is needed until some other input comes),
    /// unless the timer already holds an alarm that rings as early, after the last tick
    /// delivered, and repeats alike. A timer thread that is gone is not an error here: the node
    /// is stopping.
    pub fn arm(&mut self, due: Option<u32>, every: Option<u32>) {
        let Some(due) = due else {
            return;
        };
        let Some(at) = self.deadline(due.max(1)) else {
            return;
        };
        let every = every.map(|ticks| self.tick.saturating_mul(ticks.max(1)));
        // The end of the last tick delivered: an alarm set to ring by then has rung already.
        let rung_by = self.deadline(0);
        let held = self.armed.is_some_and(|armed| {
            armed.at <= at && armed.every == every && rung_by.is_some_and(|end| armed.at > end)
        });
        if held {
            return;
        }
        let alarm = Alarm { at, every };
        self.armed = Some(alarm);
        let _ = self.timer.send(alarm);
    }

    /// When the `due`-th tick after the last delivered ends (`None`: beyond what an `Instant`
    /// holds, which is never).
    fn deadline(&self, due: u32) -> Option<Instant> {
        let end = self.delivered.saturating_add(u64::from(due));
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

    fn clock() -> (Clock, Instant, Receiver<Alarm>) {
        let (timer, alarms) = crossbeam_channel::unbounded();
        let start = super::super::throttle::now();
        (Clock::new(TICK, start, timer), start, alarms)
    }

    fn once(at: Instant) -> Alarm {
        Alarm { at, every: None }
    }

    fn every_5_ticks_from(at: Instant) -> Alarm {
        Alarm {
            at,
            every: Some(TICK * 5),
        }
    }

    #[test]
    fn every_tick_that_ended_is_delivered_once_and_no_tick_early() {
        let (mut clock, start, _alarms) = clock();
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
    fn an_alarm_rings_at_the_end_of_the_due_tick_counted_from_the_last_delivered() {
        let (mut clock, start, alarms) = clock();
        clock.take_elapsed(start + TICK * 2 + TICK / 3);
        clock.arm(Some(5), None);
        assert_eq!(alarms.try_recv(), Ok(once(start + TICK * 7)));
    }

    #[test]
    fn only_an_earlier_alarm_is_sent_until_the_timer_fires() {
        let (mut clock, start, alarms) = clock();
        clock.arm(Some(20), None);
        clock.arm(Some(25), None);
        clock.arm(Some(20), None);
        clock.arm(None, None);
        assert_eq!(
            alarms.try_iter().collect::<Vec<_>>(),
            [once(start + TICK * 20)]
        );
        clock.arm(Some(5), None);
        assert_eq!(alarms.try_recv(), Ok(once(start + TICK * 5)));
        clock.fired();
        clock.arm(Some(30), None);
        assert_eq!(alarms.try_recv(), Ok(once(start + TICK * 30)));
    }

    #[test]
    fn a_repeating_alarm_is_sent_once_and_the_clock_follows_its_rings() {
        let (mut clock, start, alarms) = clock();
        clock.arm(Some(5), Some(5));
        assert_eq!(alarms.try_recv(), Ok(every_5_ticks_from(start + TICK * 5)));
        // Each ring: the turn takes its ticks and asks for the next heartbeat, which the
        // timer already holds. A turn a tick late (due 4 from tick 11) asks for the same ring.
        for (now, due) in [(5, 5), (10, 5), (16, 4)] {
            clock.fired();
            clock.take_elapsed(start + TICK * now);
            clock.arm(Some(due), Some(5));
            assert_eq!(
                alarms.try_recv().ok(),
                None,
                "nothing to send at tick {now}"
            );
        }
        // An earlier wish (a snapshot resend, say) replaces it, phase and all.
        clock.arm(Some(2), Some(5));
        assert_eq!(alarms.try_recv(), Ok(every_5_ticks_from(start + TICK * 18)));
        // A node that stops leading wants a one-shot alarm, even a later one.
        clock.arm(Some(20), None);
        assert_eq!(alarms.try_recv(), Ok(once(start + TICK * 36)));
    }

    #[test]
    fn a_ring_the_clock_believes_already_passed_is_replaced() {
        let (mut clock, start, alarms) = clock();
        clock.arm(Some(5), Some(5));
        alarms.try_recv().expect("the first alarm is sent");
        clock.fired();
        // The process was paused: ticks 6 to 40 ended before this turn.
        clock.take_elapsed(start + TICK * 40);
        clock.arm(Some(5), Some(5));
        assert_eq!(alarms.try_recv(), Ok(every_5_ticks_from(start + TICK * 45)));
    }

    #[test]
    fn a_wake_up_from_a_replaced_alarm_leaves_the_clock_believing_a_later_ring() {
        // The timer rang the heartbeat at tick 5 just as the clock replaced it with a ring at
        // tick 3, which the timer then holds. The clock takes the stale wake-up for the new
        // alarm's and believes tick 8: later than the timer's, never earlier, so no wake-up is
        // lost; a turn that wants tick 3 sends it again (once more than needed).
        let (mut clock, start, alarms) = clock();
        clock.arm(Some(5), Some(5));
        clock.arm(Some(3), Some(5));
        assert_eq!(
            alarms.try_iter().collect::<Vec<_>>(),
            [
                every_5_ticks_from(start + TICK * 5),
                every_5_ticks_from(start + TICK * 3)
            ]
        );
        clock.fired(); // the stale ring of tick 5
        clock.arm(Some(9), Some(5));
        assert_eq!(
            alarms.try_recv().ok(),
            None,
            "believes tick 8, wants 9: held"
        );
        clock.arm(Some(3), Some(5));
        assert_eq!(alarms.try_recv(), Ok(every_5_ticks_from(start + TICK * 3)));
    }

    /// A timer thread: its alarms, the inbox it wakes, its stop and its handle.
    fn timer_thread() -> (
        Sender<Alarm>,
        Receiver<Event>,
        Sender<()>,
        std::thread::JoinHandle<()>,
    ) {
        let (alarm_tx, alarm_rx) = crossbeam_channel::unbounded();
        let (inbox, events) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let timer = std::thread::Builder::new()
            .spawn(move || run(&alarm_rx, &inbox, &stop_rx))
            .expect("a test thread starts");
        (alarm_tx, events, stop_tx, timer)
    }

    #[test]
    fn the_timer_wakes_once_per_alarm_and_the_latest_alarm_wins() {
        let (alarm_tx, events, stop_tx, timer) = timer_thread();
        let now = super::super::throttle::now();
        // A far alarm replaced by a near one: one wake-up, for the near one.
        let timer_alive = "the timer thread runs until stopped";
        alarm_tx
            .send(once(now + Duration::from_secs(3600)))
            .expect(timer_alive);
        alarm_tx.send(once(now)).expect(timer_alive);
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Tick)
        ));
        alarm_tx.send(once(now)).expect(timer_alive);
        assert!(matches!(
            events.recv_timeout(Duration::from_secs(10)),
            Ok(Event::Tick)
        ));
        drop(stop_tx);
        timer.join().expect("the timer thread ends when told to");
        assert!(events.try_recv().is_err(), "one wake-up per alarm");
    }

    #[test]
    fn a_repeating_alarm_keeps_ringing_with_nothing_more_sent() {
        let (alarm_tx, events, stop_tx, timer) = timer_thread();
        let alarm = Alarm {
            at: super::super::throttle::now(),
            every: Some(Duration::from_millis(1)),
        };
        alarm_tx.send(alarm).expect("the timer thread runs");
        for ring in 0..3 {
            assert!(
                matches!(
                    events.recv_timeout(Duration::from_secs(10)),
                    Ok(Event::Tick)
                ),
                "ring {ring}"
            );
        }
        drop(stop_tx);
        timer.join().expect("the timer thread ends when told to");
    }
}
