//! Checks R16 (bad input: no input sequence makes the Machine allocate) of CONTRACT.md, and
//! the core's promise of no allocation: a long random run (100 000 inputs, valid
//! and invalid, across every kind of policy, with connect timeouts and min uptimes, with
//! `reconnect_now` and uptime timers (R18, R19), through several
//! Machines from creation to finish) under a counting global allocator, which must count
//! zero allocations inside the Machine's calls. The rule checker watches the run too; its
//! own allocations (and the script's) are made outside the counted calls.
//!
//! The counting allocator needs `unsafe impl GlobalAlloc`. The crate denies unsafe code
//! (its `[lints]` copy the workspace's with `unsafe_code = "deny"` instead of `"forbid"`,
//! since `forbid` cannot be lifted), and this file alone allows it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use persistent_connection::{Config, Exponential, Jitter, RetryPolicy};
use persistent_connection_tests::check::Checker;
use persistent_connection_tests::rng::Rng;
use persistent_connection_tests::script::{Action, Env, StopInput, TestMachine};

/// Wraps the system allocator and counts the allocations made on a thread while it is armed.
struct Counting;

thread_local! {
    /// Counting is on for this thread (only around calls of the Machine).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread: per thread, so tests running in parallel do
    /// not count each other's.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the thread-locals may be gone while the thread shuts down.
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }
}

/// Allocations counted on this thread so far.
fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the same arguments; counting touches only
// const-initialised thread-local `Cell`s, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` with counting armed on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> T {
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    out
}

const INPUTS: u64 = 100_000;

fn configs() -> [Config; 5] {
    [
        Config::new(),
        Config::new()
            .retry_policy(RetryPolicy::Exponential(Exponential::GRPC))
            .connect_timeout(Duration::from_millis(700))
            .min_uptime(Duration::from_secs(30)),
        Config::new()
            .retry_policy(RetryPolicy::Custom)
            .connect_timeout(Duration::from_secs(10)),
        Config::new()
            .retry_policy(RetryPolicy::Constant(Duration::ZERO))
            .jitter(Jitter::Off)
            .min_uptime(Duration::from_millis(1)),
        Config::new()
            .retry_policy(RetryPolicy::Exponential(Exponential {
                initial: Duration::from_millis(1),
                multiplier: f64::NAN,
                max: Duration::MAX,
            }))
            .jitter(Jitter::Uniform { percent: 255 })
            .connect_timeout(Duration::from_nanos(1)),
    ]
}

/// A random action: mostly valid answers, some invalid inputs, now and then a stop.
fn action(rng: &mut Rng) -> Action {
    let b = rng.next_u64() as u8;
    match rng.below(100) {
        0 => Action::Stop(StopInput::Close),
        1 => Action::Stop(StopInput::Abort),
        2 => Action::Stop(StopInput::CloseWhenCurrentConnectionCloses),
        3..=5 => Action::WrongAttempt {
            kind: b % 4,
            offset: b % 9,
        },
        6 | 7 => Action::FireStaleTimer(b),
        8 => Action::HandleEvent,
        9 => Action::Late {
            index: b,
            dial: b & 1 == 1,
            ok: true,
        },
        10 => Action::Delay(Duration::from_millis(u64::from(b))),
        11 | 12 => Action::ReconnectNow,
        13 | 14 => Action::Uptime(b),
        _ => Action::Auto(b),
    }
}

/// The counter counts: an allocation made while armed is seen (so the test can fail).
#[test]
fn the_counting_allocator_counts() {
    let before = allocations();
    let v = counted(|| std::hint::black_box(Vec::<u64>::with_capacity(4)));
    drop(v);
    assert_eq!(allocations() - before, 1);
}

/// R16: no input sequence makes the Machine allocate, from `Machine::new` to `Finished`.
#[test]
fn r16_a_long_random_run_never_allocates() {
    let mut rng = Rng::new(0x5eed);
    let mut fed = 0u64;
    let mut machines = 0u64;
    let mut checked_commands = 0u64;
    let before = allocations();
    while fed < INPUTS {
        let config = configs()[(machines % 5) as usize];
        let seed = rng.next_u64();
        machines += 1;
        let mut m: TestMachine = counted(|| TestMachine::new(config, seed));
        let mut checker = Checker::new(config);
        let mut env = Env::new();
        // Up to a few thousand inputs per machine, then it is closed and finishes.
        let budget = fed + 2_000 + rng.below(4_000);
        let mut closing = false;
        loop {
            let cmd = counted(|| m.poll_command());
            checker
                .after_poll(&m, cmd.as_ref())
                .unwrap_or_else(|v| panic!("{v}"));
            if cmd.is_some() {
                checked_commands += 1;
                continue;
            }
            if checker.finished() {
                break;
            }
            let act = if fed >= budget {
                if closing {
                    Action::Auto(rng.next_u64() as u8 % 6)
                } else {
                    closing = true;
                    Action::Stop(StopInput::Close)
                }
            } else {
                action(&mut rng)
            };
            let Some(input) = env.input_for(&act, &checker) else {
                continue;
            };
            let pending = checker
                .before_input(&m, &input)
                .unwrap_or_else(|v| panic!("{v}"));
            let result = counted(|| m.handle_input(input));
            checker
                .after_input(&m, pending, &result)
                .unwrap_or_else(|v| panic!("{v}"));
            counted(|| drop(result));
            fed += 1;
        }
        // With these types the Machine has no drop glue; with others (an `Arc` connection,
        // an `io::Error`) it has, and dropping it must not allocate either.
        #[allow(clippy::drop_non_drop)]
        counted(|| drop(m));
    }
    let allocations = allocations() - before;
    assert!(machines >= 5, "{machines} machines");
    assert!(checked_commands > INPUTS / 2, "{checked_commands} commands");
    assert_eq!(
        allocations, 0,
        "the Machine allocated {allocations} times in {fed} inputs over {machines} machines"
    );
}
