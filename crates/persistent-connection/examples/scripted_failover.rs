//! The bare Machine through a scripted failover, on virtual time: no runtime, no network.
//!
//! A catalog names replica A; the connection to A dies; the catalog still names A for a
//! while (A refuses), then names replica B. The loop below is the whole driver: it carries
//! out each command, feeds the results back one at a time (feed one input, then drain
//! `poll_command` until `None`), and prints the events and the delays. When nothing is
//! left to do, virtual time jumps to the timer the machine asked for, so the run takes
//! no real time at all: the template for a simulator or a deterministic test.
//!
//! Run it with `cargo run -p persistent-connection --example scripted_failover`.

use std::collections::VecDeque;
use std::time::Duration;

use persistent_connection::{
    Command, Config, Event, Exponential, Input, Machine, RetryPolicy, TimerId,
};

fn main() {
    let config = Config::new().retry_policy(RetryPolicy::Exponential(Exponential {
        initial: Duration::from_millis(500),
        multiplier: 2.0,
        max: Duration::from_secs(8),
    }));
    // The jitter (+-30 % by default) draws from this seed: the same seed, the same run.
    let mut m: Machine<&str, u32, &str> = Machine::new(config, 2026);

    // Virtual time, and the scripted world.
    let mut now = Duration::ZERO;
    let mut timer: Option<(TimerId, Duration)> = None;
    let mut inputs: VecDeque<Input<&str, u32, &str>> = VecDeque::new();
    let mut connection = 0;
    let mut catalog_lookups = 0;
    let stamp = |now: Duration| format!("{:>7.3}s", now.as_secs_f64());

    loop {
        // Drain: carry out every command in order; results wait in `inputs`.
        while let Some(command) = m.poll_command() {
            match command {
                Command::Emit { event, attempt } => {
                    match &event {
                        Event::Connected(c) => {
                            println!("{} event {event} (connection #{c})", stamp(now));
                        }
                        _ => println!("{} event {event}", stamp(now)),
                    }
                    inputs.push_back(Input::EventHandled);
                    if let (Event::Connected(c), Some(attempt)) = (event, attempt) {
                        if c == 1 {
                            // The first connection lives 3 s, then its server dies.
                            now += Duration::from_secs(3);
                            println!("{} replica A dies", stamp(now));
                            inputs.push_back(Input::ConnectionClosed { attempt });
                        } else {
                            println!("{} done: closing", stamp(now));
                            inputs.push_back(Input::Close);
                        }
                    }
                }
                Command::FailedAgain { error, .. } => {
                    println!("{} (failed again: {error}; not reported)", stamp(now));
                }
                Command::Stopped(kind) => println!("{} stopped by {kind:?}", stamp(now)),
                Command::StartTimer { timer: id, delay } => {
                    println!("{} retry timer: {:.3}s", stamp(now), delay.as_secs_f64());
                    timer = Some((id, now + delay));
                }
                Command::FetchAddress { attempt } => {
                    catalog_lookups += 1;
                    // The catalog keeps naming A for three lookups after it died.
                    let address = if catalog_lookups <= 4 {
                        "replica-a"
                    } else {
                        "replica-b"
                    };
                    inputs.push_back(Input::AddressObtained {
                        attempt,
                        result: Ok(address),
                    });
                }
                Command::Dial {
                    attempt, address, ..
                } => {
                    let result = if address == "replica-a" && catalog_lookups > 1 {
                        Err("connection refused")
                    } else {
                        connection += 1;
                        Ok(connection)
                    };
                    inputs.push_back(Input::Dialed { attempt, result });
                }
                Command::CloseConnection {
                    attempt,
                    connection: c,
                } => {
                    println!("{} closing connection #{c}", stamp(now));
                    if m.current_attempt() == Some(attempt) {
                        inputs.push_back(Input::ConnectionClosed { attempt });
                    }
                }
                Command::ComputeRetryDelay { .. }
                | Command::CancelAttempt { .. }
                | Command::StartUptimeTimer { .. } => {}
                Command::Finished => {
                    println!("{} finished", stamp(now));
                    return;
                }
            }
        }
        // Feed the next result, then drain again.
        if let Some(input) = inputs.pop_front() {
            m.handle_input(input)
                .unwrap_or_else(|rejected| panic!("{rejected}"));
            continue;
        }
        // Quiet: jump virtual time to the timer the machine waits for.
        let (id, deadline) = timer.take().expect("the machine waits on its timer");
        now = now.max(deadline);
        m.handle_input(Input::TimerFired(id))
            .expect("the timer out");
    }
}
