//! The timer thread: one `Tick` into the inbox every tick. Timeouts are counted in ticks by the
//! core, so this thread is the only clock the consensus path has.

use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select, tick};

use super::Event;

/// Sends `Event::Tick` every `every` until `stop` is closed or the inbox is gone.
pub fn run(every: Duration, inbox: Sender<Event>, stop: Receiver<()>) {
    let ticker = tick(every);
    loop {
        select! {
            recv(ticker) -> _ => {
                if inbox.send(Event::Tick).is_err() {
                    return;
                }
            }
            recv(stop) -> _ => return,
        }
    }
}
