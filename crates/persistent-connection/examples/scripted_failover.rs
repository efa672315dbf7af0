//! The bare Machine through a scripted failover, on virtual time: no runtime, no network.
//!
//! A catalog names replica A; the connection to A dies; the catalog still names A for a
//! while (A refuses), then names replica B. The loop below is the whole driver: it carries
//! out each command and feeds the results back, and prints the events and the delays.
//!
//! Run it with `cargo run -p persistent-connection --example scripted_failover`.

use std::time::Duration;

use persistent_connection::{
    AttemptError, Command, Config, Event, Exponential, Input, Machine, Outcome, RetryPolicy,
    TimerId,
};

fn main() {
    let config = Config::new()
        .retry_policy(RetryPolicy::Exponential(Exponential {
            initial: Duration::from_millis(500),
            multiplier: 2.0,
            max: Duration::from_secs(8),
        }))
        .seed(2026);
    let mut m: Machine<&str, u32, &str> = Machine::new(config);

    // Virtual time, and the scripted world.
    let mut now = Duration::ZERO;
    let mut timer: Option<(TimerId, Duration)> = None;
    let mut connection = 0;
    let mut catalog_lookups = 0;
    let stamp = |now: Duration| format!("{:>7.3}s", now.as_secs_f64());

    loop {
        // Drain: carry out every command in order.
        while let Some(command) = m.poll_command() {
            match command {
                Command::Emit(event) => {
                    let text = match event {
                        Event::AttemptingToConnect => "AttemptingToConnect".to_string(),
                        Event::ObtainedAddress(a) => format!("ObtainedAddress({a})"),
                        Event::Disconnected => "Disconnected".to_string(),
                        other => other.name().to_string(),
                    };
                    println!("{} event {text}", stamp(now));
                    m.handle_input(Input::EventHandled)
                        .expect("a handler was running");
                }
                Command::Outcome(Outcome::Connected(c)) => {
                    println!("{} event Connected(#{c})", stamp(now));
                    m.handle_input(Input::EventHandled).expect("handled");
                    if c == 1 {
                        // The first connection lives 3 s, then its server dies.
                        now += Duration::from_secs(3);
                        println!("{} replica A dies", stamp(now));
                        let attempt = m.current_attempt().expect("connected");
                        m.handle_input(Input::ConnectionClosed { attempt })
                            .expect("current");
                    } else {
                        println!("{} done: closing", stamp(now));
                        m.handle_input(Input::Close).expect("running");
                    }
                }
                Command::Outcome(Outcome::Failed { error, repeated }) => {
                    let reason = match error {
                        AttemptError::Connect(e) | AttemptError::Address(e) => e,
                        AttemptError::TimedOut { .. } => "timed out",
                    };
                    if repeated {
                        println!("{} (failed again: {reason}; not reported)", stamp(now));
                    } else {
                        println!("{} event FailedToConnect({reason})", stamp(now));
                        m.handle_input(Input::EventHandled).expect("handled");
                    }
                }
                Command::Outcome(_) => {}
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
                    m.handle_input(Input::AddressObtained {
                        attempt,
                        result: Ok(address),
                    })
                    .expect("fetching");
                }
                Command::Dial { attempt, address } => {
                    let result = if address == "replica-a" && catalog_lookups > 1 {
                        Err("connection refused")
                    } else {
                        connection += 1;
                        Ok(connection)
                    };
                    m.handle_input(Input::Dialed { attempt, result })
                        .expect("dialling");
                }
                Command::CloseConnection(c) => {
                    println!("{} closing connection #{c}", stamp(now));
                    let attempt = m.current_attempt().expect("the current one");
                    m.handle_input(Input::ConnectionClosed { attempt })
                        .expect("current");
                }
                Command::ComputeRetryDelay { .. } | Command::CancelAttempt { .. } => {}
                Command::Finished => {
                    println!("{} finished", stamp(now));
                    return;
                }
            }
        }
        // Quiet: jump virtual time to the timer the machine waits for.
        let (id, deadline) = timer.take().expect("the machine waits on its timer");
        now = now.max(deadline);
        m.handle_input(Input::TimerFired(id))
            .expect("the timer out");
    }
}
