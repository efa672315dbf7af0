//! The simulation: builds a persistent connection on the simulated executor, then takes
//! steps (run a woken task, end an op, kill a connection, move the clock, act on a handle,
//! drop things), checking the contract after every one; then closes, and checks that
//! everything resolved and nothing is left.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use persistent_connection::State;
use persistent_connection_driver::{
    Backoff, Builder, ConnectError, DriverEvent, Event, Exponential, HealthCheck, Jitter, Lagged,
    Stopped,
};

use crate::exec::{Executor, SimRuntime, Tag, next_item};
use crate::world::{
    Addr, Answer, Env, Ev, OpFuture, OpKind, Outcome, Pc, SimConn, SimError, Status, StreamRec,
    WaitKind, WaiterRec, World, error_code, injected_panic,
};
use crate::{Report, Violation, rule};

/// Steps into the final phase after which the world ends the handlers and connection
/// closes it hung.
pub const HANG_STEPS: u64 = 64;
/// Steps of the final phase within which the close must have finished.
pub const CLOSE_STEPS: u64 = 20_000;
/// Steps of the main phase at most (the input usually ends it first).
const MAIN_STEPS: u64 = 50_000;

/// One run.
pub(crate) struct Sim {
    env: Arc<Env>,
    exec: Executor,
    clock: persistent_connection_driver::VirtualClock,
    handles: Vec<Pc>,
    /// One per user callback given to the builder: dead once the driver let it go.
    tokens: Vec<(&'static str, Weak<()>)>,
    runtime_token: Weak<()>,
    /// How likely an actor's stop request goes through (out of 256).
    stop_rate: u8,
}

fn token(tokens: &mut Vec<(&'static str, Weak<()>)>, name: &'static str) -> Arc<()> {
    let t = Arc::new(());
    tokens.push((name, Arc::downgrade(&t)));
    t
}

impl Sim {
    pub(crate) fn new(
        data: &[u8],
        trace: bool,
        strict: bool,
        clock: persistent_connection_driver::VirtualClock,
    ) -> Self {
        let exec = Executor::new();
        let mut world = World::new(data, trace, clock.clone());
        world.allow_known = !strict;
        let env = Env::new(world, exec.shared.clone());
        Sim {
            env,
            exec,
            clock,
            handles: Vec::new(),
            tokens: Vec::new(),
            runtime_token: Weak::new(),
            stop_rate: 0,
        }
    }

    fn violation(&self) -> Option<Violation> {
        self.env.world().violation.clone()
    }

    pub(crate) fn run(mut self) -> Result<Report, Violation> {
        self.build();
        let mut steps = 0;
        loop {
            if let Some(v) = self.violation() {
                return Err(v);
            }
            if self.env.world().src.exhausted() || steps >= MAIN_STEPS {
                break;
            }
            steps += 1;
            self.env.world().step = steps;
            self.step_main();
            self.invariants();
        }
        self.final_phase(steps);
        if let Some(v) = self.violation() {
            return Err(v);
        }
        self.teardown();
        if let Some(v) = self.violation() {
            return Err(v);
        }
        let mut w = self.env.world();
        Ok(Report {
            steps: w.step,
            events: w.log.len(),
            connections: self.env.conns().len(),
            waiters: w.waiters.len(),
            panics: w.panics,
            known_bugs: w.known_bugs,
            virtual_time: self.clock.now(),
            trace: w.trace.take().unwrap_or_default(),
        })
    }

    // ----- building -----

    fn build(&mut self) {
        let (flags, delay, seed, health_byte, stop) = {
            let mut w = self.env.world();
            let flags = w.src.byte();
            let delay = w.src.byte();
            let seed = u64::from(w.src.byte()) << 8 | u64::from(w.src.byte());
            let health = w.src.byte();
            let stop = [2u8, 8, 32, 255][w.src.pick(4)];
            w.driven = flags & 1 != 0;
            w.trace(format_args!(
                "config flags {flags:08b} delay {delay} seed {seed} health {health} stop rate {stop}"
            ));
            (flags, delay, seed, health, stop)
        };
        self.stop_rate = stop;
        // Bit 6: the driver may hold back retry timers nothing waits for (as on the
        // adapters' runtimes), or must arm each at once (a runtime that says nothing).
        let runtime = SimRuntime::new(
            self.exec.shared.clone(),
            self.clock.clone(),
            flags & 64 != 0,
        );
        self.runtime_token = Arc::downgrade(&runtime.token);
        let env = self.env.clone();
        let get_address = {
            let env = env.clone();
            let t = token(&mut self.tokens, "get_address");
            move || {
                let _keep = &t;
                fetch(&env)
            }
        };
        let connect = {
            let env = env.clone();
            let t = token(&mut self.tokens, "connect");
            move |addr: Addr, ctx| {
                let _keep = &t;
                dial(&env, addr, ctx)
            }
        };
        let on_event = {
            let env = env.clone();
            let t = token(&mut self.tokens, "on_event");
            move |event: DriverEvent<Addr, SimConn, SimError>| {
                let _keep = &t;
                handle_event(&env, event)
            }
        };
        let panic_hook = {
            let env = env.clone();
            let t = token(&mut self.tokens, "on_callback_panic");
            move |report: &persistent_connection_driver::PanicReport| {
                let _keep = &t;
                let mut w = env.world();
                w.panics += 1;
                w.trace(format_args!("panic reported: {report}"));
                if &*report.message != crate::world::INJECTED {
                    w.fail(
                        rule::R6,
                        format!("a panic the world did not inject: {report}"),
                    );
                }
            }
        };
        let mut builder = Builder::new(runtime, "sim", get_address, connect)
            .on_event(on_event)
            .on_callback_panic(panic_hook)
            .seed(seed);
        let delays = [0, 1, 10, 100, 1_000, 10_000, 60_000, 3];
        let base = Duration::from_millis(delays[usize::from(delay % 8)]);
        builder = match (delay >> 3) % 4 {
            0 => builder.retry_policy(Backoff::Constant(base)),
            1 => builder.retry_policy(Backoff::Exponential(Exponential::GRPC)),
            _ => {
                let env = env.clone();
                let t = token(&mut self.tokens, "retry_delay");
                builder.retry_delay(move |failures| {
                    let _keep = &t;
                    let panics = env.world().src.chance(6);
                    if panics {
                        injected_panic();
                    }
                    base * (failures % 4)
                })
            }
        };
        if flags & 2 != 0 {
            builder = builder.jitter(Jitter::Off);
        }
        if flags & 4 != 0 {
            builder = builder.connect_timeout(Duration::from_millis(50 * u64::from(delay % 5)));
        }
        if flags & 8 != 0 {
            builder = builder.min_uptime(Duration::from_millis(500));
        }
        if flags & 16 != 0 {
            self.env.world().health = true;
            let check = HealthCheck::new(
                Duration::from_millis(10 + u64::from(health_byte % 4) * 100),
                Duration::from_millis(5 + u64::from(health_byte >> 2 & 3) * 50),
                u32::from(health_byte >> 4 & 3),
            );
            let env = env.clone();
            let t = token(&mut self.tokens, "health_probe");
            builder = builder.health_check(check, move |conn: SimConn| {
                let _keep = &t;
                probe(&env, conn)
            });
        }
        let early = (flags & 32 != 0).then(|| builder.events());
        let handle = builder.spawn();
        if let Some(events) = early {
            spawn_events(&self.env, events, 0);
        }
        self.env.world().weak = Some(handle.downgrade());
        self.handles.push(handle);
    }

    // ----- steps -----

    fn poll_task(&mut self, id: usize) {
        let Some((tag, done)) = self.exec.poll(id) else {
            return;
        };
        let mut w = self.env.world();
        w.trace(format_args!(
            "poll task {id} {tag:?}{}",
            if done { " -> done" } else { "" }
        ));
        if done && tag == Tag::Driver {
            w.driver_done = true;
            drop(w);
            self.driver_finished();
        }
    }

    fn step_main(&mut self) {
        let ready = self.exec.ready();
        let choice = self.env.world().src.pick(16);
        match choice {
            0..=5 if !ready.is_empty() => {
                let i = self.env.world().src.pick(ready.len());
                self.poll_task(ready[i]);
            }
            0..=5 | 10 => self.advance_clock(),
            6..=8 => self.end_op(),
            9 => self.kill_conn(),
            11..=13 | 15 => {
                if let Some(h) = self.pick_handle() {
                    act(&self.env, &h, false, self.stop_rate);
                }
            }
            _ => self.shuffle(),
        }
    }

    fn pick_handle(&mut self) -> Option<Pc> {
        if self.handles.is_empty() {
            return None;
        }
        let i = self.env.world().src.pick(self.handles.len());
        Some(self.handles[i].clone())
    }

    fn advance_clock(&mut self) {
        if let Some(step) = self.clock.advance_to_next() {
            self.env
                .world()
                .trace(format_args!("clock advances {step:?}"));
        }
    }

    /// The world ends one of its pending ops, as the input says.
    fn end_op(&mut self) {
        let env = self.env.clone();
        let mut w = env.world();
        let pending: Vec<usize> = w
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.alive && op.status == Status::Pending)
            .map(|(i, _)| i)
            .collect();
        if pending.is_empty() {
            return;
        }
        let id = pending[w.src.pick(pending.len())];
        let kind = w.ops[id].kind;
        let roll = w.src.pick(8);
        let value = w.src.pick(3) as u8;
        let outcome = match (kind, roll) {
            (OpKind::Close, 0..=6) | (OpKind::Handler, 0..=5) => Outcome::Ok(0),
            (OpKind::Handler, 6) => Outcome::Panic,
            (_, 0..=3) => Outcome::Ok(value),
            (_, 4..=5) => Outcome::Err(value),
            (_, 6) => Outcome::Panic,
            _ => {
                w.ops[id].status = Status::Hung;
                w.trace(format_args!("world hangs op {id} {kind:?}"));
                return;
            }
        };
        env.resolve_locked(&mut w, id, outcome);
    }

    /// The peer of a connection goes away.
    fn kill_conn(&mut self) {
        let conn = {
            let mut w = self.env.world();
            if !w.held.is_empty() && w.src.chance(96) {
                let n = w.held.len();
                let i = w.src.pick(n);
                Some(w.held[i].clone())
            } else {
                None
            }
        };
        let conn = conn.or_else(|| {
            let weak = self.env.world().weak.clone()?;
            weak.upgrade()?.current_connection()
        });
        if let Some(conn) = conn {
            self.env
                .world()
                .trace(format_args!("peer of conn {} goes away", conn.id()));
            conn.die(&self.env);
        }
    }

    /// Clones or drops handles, drops futures and connections callers held.
    fn shuffle(&mut self) {
        let roll = self.env.world().src.pick(8);
        match roll {
            0..=1 if !self.handles.is_empty() => {
                let h = self.handles[0].clone();
                self.handles.push(h);
                let n = self.handles.len();
                self.env
                    .world()
                    .trace(format_args!("clone handle ({n} handles)"));
            }
            2 if !self.handles.is_empty() => {
                let i = self.env.world().src.pick(self.handles.len());
                let last = self.handles.len() == 1;
                if last {
                    if !self.env.world().src.chance(self.stop_rate) {
                        return;
                    }
                    self.env.world().note_stop(None, true);
                }
                self.env
                    .world()
                    .trace(format_args!("drop handle {i} (last: {last})"));
                drop(self.handles.swap_remove(i));
            }
            3..=4 => {
                let task = {
                    let mut w = self.env.world();
                    let open: Vec<usize> = (0..w.waiters.len())
                        .filter(|i| !w.waiters[*i].resolved && !w.waiters[*i].cancelled)
                        .collect();
                    if open.is_empty() {
                        return;
                    }
                    let i = open[w.src.pick(open.len())];
                    w.waiters[i].cancelled = true;
                    w.trace(format_args!("caller {i} gives up waiting"));
                    w.waiters[i].task
                };
                self.exec.cancel(task);
            }
            5 => {
                let task = {
                    let mut w = self.env.world();
                    let open: Vec<usize> = (0..w.streams.len())
                        .filter(|i| !w.streams[*i].ended && !w.streams[*i].cancelled)
                        .collect();
                    if open.is_empty() {
                        return;
                    }
                    let i = open[w.src.pick(open.len())];
                    w.streams[i].cancelled = true;
                    w.trace(format_args!("subscriber {i} unsubscribes"));
                    w.streams[i].task
                };
                self.exec.cancel(task);
            }
            6 => {
                let mut w = self.env.world();
                if !w.held.is_empty() {
                    let n = w.held.len();
                    let i = w.src.pick(n);
                    let conn = w.held.swap_remove(i);
                    w.trace(format_args!("caller drops its clone of conn {}", conn.id()));
                    drop(w);
                    drop(conn);
                }
            }
            _ => {
                let ctx = {
                    let mut w = self.env.world();
                    if w.contexts.is_empty() || !w.src.chance(self.stop_rate) {
                        return;
                    }
                    let n = w.contexts.len();
                    let i = w.src.pick(n);
                    w.contexts[i].clone()
                };
                abort(&self.env, &ctx);
            }
        }
    }

    /// Checks that hold between any two steps.
    fn invariants(&mut self) {
        let Some(h) = self.handles.first().cloned() else {
            return;
        };
        check_handle(&self.env, &h);
    }

    /// The driver's task has completed: what must hold at that moment (R11).
    fn driver_finished(&mut self) {
        let mut w = self.env.world();
        w.trace(format_args!("driver task finished"));
        if w.first_stop.is_none() {
            w.fail(rule::R11, "the driver finished without a stop".into());
        }
        if w.grammar == 2 {
            w.fail(
                rule::R11,
                "finished with a connection reported and no Disconnected".into(),
            );
        }
        if w.handler_running {
            w.fail(rule::R11, "finished while a handler runs".into());
        }
        let live: Vec<(usize, OpKind)> = w
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.alive && op.kind != OpKind::Drive)
            .map(|(i, op)| (i, op.kind))
            .collect();
        if !live.is_empty() {
            w.fail(
                rule::R11,
                format!("finished with callbacks still held: {live:?}"),
            );
        }
        let open: Vec<usize> = self
            .env
            .conns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.closed_at().is_none())
            .map(|(i, _)| i)
            .collect();
        if !open.is_empty() {
            w.fail(
                rule::R11,
                format!("finished with connections not closed: {open:?}"),
            );
        }
    }

    // ----- the end -----

    fn final_phase(&mut self, main_steps: u64) {
        let stop = self.env.world().src.pick(3);
        if !self.handles.is_empty() {
            match stop {
                0 => {
                    let h = self.handles[0].clone();
                    self.env.world().trace(format_args!("final: close()"));
                    close(&self.env, &h);
                }
                1 => {
                    self.env
                        .world()
                        .trace(format_args!("final: drop every handle"));
                    self.env.world().note_stop(None, true);
                    self.handles.clear();
                }
                _ => {
                    self.env.world().trace(format_args!(
                        "final: close_when_current_connection_is_closed"
                    ));
                    self.env.world().note_stop(None, false);
                    self.handles[0].close_when_current_connection_is_closed();
                }
            }
        }
        for f in 0..CLOSE_STEPS {
            self.env.world().step = main_steps + 1 + f;
            if self.env.world().driver_done {
                break;
            }
            if self.violation().is_some() {
                return;
            }
            let ready = self.exec.ready();
            if !ready.is_empty() {
                let i = self.env.world().src.pick(ready.len());
                self.poll_task(ready[i]);
                self.invariants();
                continue;
            }
            if self.release_one(f >= HANG_STEPS) {
                continue;
            }
            if self.env.world().close_tick.is_none() && self.kill_current() {
                continue;
            }
            let hung_left = self.env.world().ops.iter().any(|op| {
                op.alive
                    && op.status == Status::Hung
                    && matches!(op.kind, OpKind::Handler | OpKind::Close)
            });
            if f < HANG_STEPS && hung_left {
                continue;
            }
            if self.clock.next_deadline().is_some() {
                let mut w = self.env.world();
                if w.close_tick.is_some() {
                    w.fail(
                        rule::R11,
                        "close() waits on the clock: nothing else is left to happen".into(),
                    );
                    return;
                }
                drop(w);
                self.advance_clock();
                continue;
            }
            break;
        }
        if !self.env.world().driver_done {
            let live = self.exec.live();
            self.env.world().fail(
                rule::R11,
                format!("the close did not finish; tasks left: {live:?}"),
            );
            return;
        }
        self.drain();
        self.check_answers();
    }

    /// Ends one pending op (with success); hung handlers and closes too if `hung`.
    fn release_one(&mut self, hung: bool) -> bool {
        let env = self.env.clone();
        let mut w = env.world();
        let found = w.ops.iter().position(|op| {
            op.alive
                && (op.status == Status::Pending
                    || hung
                        && op.status == Status::Hung
                        && matches!(op.kind, OpKind::Handler | OpKind::Close))
        });
        match found {
            Some(id) => {
                env.resolve_locked(&mut w, id, Outcome::Ok(0));
                true
            }
            None => false,
        }
    }

    /// After an abort or `close_when_current_connection_is_closed`, the world lets the
    /// current connection die so that the persistent connection can finish.
    fn kill_current(&mut self) -> bool {
        let weak = self.env.world().weak.clone();
        let Some(conn) = weak
            .and_then(|w| w.upgrade())
            .and_then(|h| h.current_connection())
        else {
            return false;
        };
        let alive = self.env.conns()[conn.id() as usize].died_tick.is_none();
        if alive {
            self.env
                .world()
                .trace(format_args!("final: peer of conn {} goes away", conn.id()));
            conn.die(&self.env);
        }
        alive
    }

    /// Runs every woken task until none is.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            let ready = self.exec.ready();
            let Some(id) = ready.first() else {
                return;
            };
            self.poll_task(*id);
        }
        self.env.world().fail(
            rule::R13,
            "tasks keep waking each other after the close".into(),
        );
    }

    /// Once the close has finished: every caller got its answer, every stream ended.
    fn check_answers(&mut self) {
        let mut w = self.env.world();
        let conns_created: Vec<u64> = self.env.conns().iter().map(|c| c.created_tick).collect();
        for i in 0..w.waiters.len() {
            let rec = &w.waiters[i];
            if rec.resolved || rec.cancelled {
                continue;
            }
            let (kind, call) = (rec.kind, rec.call_tick);
            match kind {
                WaitKind::Connected => {
                    let stop = w.first_stop.map_or(u64::MAX, |s| s.tick);
                    let missed = w.log.iter().any(|e| {
                        e.kind == 'C' && {
                            let created = conns_created[e.value as usize];
                            created > call && created < stop
                        }
                    });
                    if missed {
                        w.fail(
                            rule::R8,
                            format!(
                                "connected() caller {i} missed a connection that came after it"
                            ),
                        );
                    }
                }
                _ => w.fail(
                    rule::R11,
                    format!("caller {i} of {kind:?} still waits after the close finished"),
                ),
            }
        }
        for i in 0..w.streams.len() {
            let s = &w.streams[i];
            if !s.ended && !s.cancelled {
                w.fail(rule::R14, format!("subscriber {i} did not see the end"));
            }
        }
    }

    /// The last handle goes, the callers give up: then nothing of the persistent connection
    /// may be left (R13).
    fn teardown(&mut self) {
        self.handles.clear();
        let tasks: Vec<usize> = {
            let mut w = self.env.world();
            w.held.clear();
            w.contexts.clear();
            w.weak = None;
            w.trace(format_args!(
                "teardown: handles, connections, contexts dropped"
            ));
            w.waiters
                .iter()
                .filter(|r| !r.resolved && !r.cancelled)
                .map(|r| r.task)
                .collect()
        };
        for task in tasks {
            self.exec.cancel(task);
        }
        self.drain();
        let live = self.exec.live();
        let mut w = self.env.world();
        if !live.is_empty() {
            w.fail(rule::R13, format!("tasks left after the end: {live:?}"));
        }
        if self.clock.pending_timers() != 0 {
            w.fail(
                rule::R13,
                format!("{} timers left after the end", self.clock.pending_timers()),
            );
        }
        let callbacks: Vec<&str> = self
            .tokens
            .iter()
            .filter(|(_, t)| t.strong_count() > 0)
            .map(|(name, _)| *name)
            .collect();
        if !callbacks.is_empty() {
            w.fail(rule::R13, format!("callbacks still held: {callbacks:?}"));
        }
        if self.runtime_token.strong_count() > 0 {
            w.fail(rule::R13, "the runtime is still held".into());
        }
        let kept: Vec<usize> = self
            .env
            .conns()
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.dropped || c.driven && !c.handle_dropped)
            .map(|(i, _)| i)
            .collect();
        if !kept.is_empty() {
            w.fail(rule::R13, format!("connections still held: {kept:?}"));
        }
        let ops: Vec<(usize, OpKind)> = w
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| op.alive)
            .map(|(i, op)| (i, op.kind))
            .collect();
        if !ops.is_empty() {
            w.fail(
                rule::R13,
                format!("futures of the world still held: {ops:?}"),
            );
        }
        w.trace(format_args!("end"));
        drop(w);
        self.exec.clear();
    }
}

// ----- the callbacks -----

fn fetch(env: &Arc<Env>) -> impl Future<Output = Result<Addr, SimError>> + Send + 'static + use<> {
    let mut w = env.world();
    attempt_checks(&mut w, "get_address");
    let panics = w.src.chance(8);
    if panics {
        w.trace(format_args!("get_address panics"));
        drop(w);
        injected_panic();
    }
    let op = OpFuture::new(env, &mut w, OpKind::Fetch, None);
    drop(w);
    let env = env.clone();
    async move {
        match op.await {
            Outcome::Ok(a) => {
                env.world().last_address = Some(a);
                Ok(a)
            }
            Outcome::Err(k) => Err(env.world().error(k)),
            Outcome::Panic => injected_panic(),
        }
    }
}

fn attempt_checks(w: &mut World, what: &str) {
    if w.handler_running {
        w.fail(rule::R6, format!("{what} called while a handler runs"));
    }
    if w.live_op(OpKind::Fetch) || w.live_op(OpKind::Dial) {
        w.fail(
            rule::R2,
            format!("{what} called while another attempt is in flight"),
        );
    }
    if let Some(stop) = w.first_stop {
        if w.allow_known {
            w.known_bugs += 1;
            w.trace(format_args!(
                "known driver bug: {what} called after a stop (tick {})",
                stop.tick
            ));
            return;
        }
        w.fail(
            rule::R11,
            format!("{what} called after a stop (tick {})", stop.tick),
        );
    }
}

fn dial(
    env: &Arc<Env>,
    addr: Addr,
    ctx: persistent_connection_driver::AttemptContext<SimError>,
) -> impl Future<Output = Result<SimConn, SimError>> + Send + 'static + use<> {
    let mut w = env.world();
    attempt_checks(&mut w, "connect");
    if w.last_address != Some(addr) {
        let last = w.last_address;
        w.fail(
            rule::R2,
            format!("dials {addr}, but the last address fetched was {last:?}"),
        );
    }
    if w.contexts.len() >= 3 {
        w.contexts.remove(0);
    }
    w.contexts.push(ctx.clone());
    let roll = w.src.pick(32);
    drop(w);
    match roll {
        0 => {
            env.world().trace(format_args!("connect panics"));
            injected_panic();
        }
        1 => abort(env, &ctx),
        _ => {}
    }
    let mut w = env.world();
    let op = OpFuture::new(env, &mut w, OpKind::Dial, None);
    drop(w);
    let env = env.clone();
    async move {
        match op.await {
            Outcome::Ok(_) => {
                let mut w = env.world();
                Ok(env.make_conn(&mut w))
            }
            Outcome::Err(k) => Err(env.world().error(k)),
            Outcome::Panic => injected_panic(),
        }
    }
}

fn abort(env: &Arc<Env>, ctx: &persistent_connection_driver::AttemptContext<SimError>) {
    let error = {
        let mut w = env.world();
        let error = w.error(9);
        w.note_stop(Some(error.serial), false);
        w.trace(format_args!(
            "abort({}) through the context of {:?}",
            error.serial,
            ctx.attempt()
        ));
        error
    };
    ctx.abort(error);
}

fn probe(
    env: &Arc<Env>,
    conn: SimConn,
) -> impl Future<Output = Result<(), String>> + Send + 'static + use<> {
    let mut w = env.world();
    let id = conn.id();
    drop(conn);
    if w.current != Some(id) {
        let current = w.current;
        w.fail(
            rule::R17,
            format!("probe of conn {id}, but the current connection is {current:?}"),
        );
    }
    if env.conns()[id as usize].closed_at().is_some() {
        w.fail(rule::R17, format!("probe of conn {id}, which has closed"));
    }
    if w.live_op(OpKind::Probe) {
        w.fail(rule::R17, "two probes overlap".into());
    }
    let panics = w.src.chance(8);
    if panics {
        w.trace(format_args!("probe panics"));
        drop(w);
        injected_panic();
    }
    let op = OpFuture::new(env, &mut w, OpKind::Probe, Some(id));
    drop(w);
    async move {
        match op.await {
            Outcome::Ok(_) => Ok(()),
            Outcome::Err(k) => Err(format!("e{k}")),
            Outcome::Panic => injected_panic(),
        }
    }
}

/// `on_event`: checks the grammar and the gate, acts on the persistent connection from
/// inside the handler, and returns a handler the world ends (or panics).
fn handle_event(
    env: &Arc<Env>,
    event: DriverEvent<Addr, SimConn, SimError>,
) -> impl Future<Output = ()> + Send + 'static + use<> {
    let ev = Ev::of(&event);
    let connected = match &event {
        Event::Connected(c) => Some(c.id()),
        _ => None,
    };
    drop(event);
    let (actions, panics) = {
        let mut w = env.world();
        w.trace(format_args!("event {ev}"));
        if w.driver_done {
            w.fail(
                rule::GRAMMAR,
                format!("{ev} reported after the close finished"),
            );
        }
        if w.handler_running {
            w.fail(
                rule::R6,
                format!("{ev} reported while the last handler runs"),
            );
        }
        let next = match (w.grammar, ev.kind) {
            (0 | 1, 'A') => Some(1),
            (1, 'O' | 'F') => Some(1),
            (1, 'C') => Some(2),
            (2, 'D') => Some(0),
            _ => None,
        };
        match next {
            Some(g) => w.grammar = g,
            None => {
                let g = w.grammar;
                w.fail(rule::GRAMMAR, format!("{ev} in grammar state {g}"));
            }
        }
        w.log.push(ev);
        match ev.kind {
            'C' => w.current = connected,
            'D' => {
                if let Some(id) = w.current.take() {
                    w.disconnected.push(id);
                    if env.conns()[id as usize].closed_at().is_none() {
                        w.fail(
                            rule::GRAMMAR,
                            format!("Disconnected, but conn {id} is open"),
                        );
                    }
                }
            }
            _ => {}
        }
        let actions = w.src.pick(4).saturating_sub(1);
        (actions, w.src.chance(8))
    };
    let handle = env.world().weak.clone().and_then(|w| w.upgrade());
    if let Some(h) = handle {
        if let Some(id) = connected {
            let current = h.current_connection().map(|c| c.id());
            if current != Some(id) {
                env.world().fail(
                    rule::R5,
                    format!("Connected(conn {id}) reported, but current_connection is {current:?}"),
                );
            }
        }
        for _ in 0..actions {
            act(env, &h, true, 255);
        }
    }
    if panics {
        env.world().trace(format_args!("on_event panics"));
        injected_panic();
    }
    let mut w = env.world();
    let op = OpFuture::new(env, &mut w, OpKind::Handler, None);
    w.handler_running = true;
    drop(w);
    async move {
        if op.await == Outcome::Panic {
            injected_panic();
        }
    }
}

// ----- the actors -----

fn close(env: &Arc<Env>, h: &Pc) {
    let tick = {
        let mut w = env.world();
        w.note_stop(None, true);
        w.tick()
    };
    let closing = h.close();
    spawn_waiter(env, WaitKind::Close, tick, async move {
        closing.await;
        Answer::Unit
    });
}

/// One call of a public method of the handle, chosen by the input; `in_handler` when made
/// from inside `on_event`. Stop requests go through with probability `stop_rate / 256`.
fn act(env: &Arc<Env>, h: &Pc, in_handler: bool, stop_rate: u8) {
    let (choice, stop_ok) = {
        let mut w = env.world();
        (w.src.pick(40), w.src.chance(stop_rate))
    };
    let tick = env.world().tick();
    let place = if in_handler { " (in handler)" } else { "" };
    env.world().trace(format_args!("act{place}: #{choice}"));
    match choice {
        0..=3 => {
            let wait = h.connected();
            spawn_waiter(env, WaitKind::Connected, tick, async move {
                Answer::Conn(wait.await)
            });
        }
        4..=7 => {
            let wait = h.connected_or_closed();
            spawn_waiter(env, WaitKind::ConnectedOrClosed, tick, async move {
                match wait.await {
                    Ok(c) => Answer::Conn(c),
                    Err(s) => Answer::Stopped(stopped_serial(&s)),
                }
            });
        }
        8..=11 | 35..=36 => {
            let wait = h.connected_or_failed_to_connect();
            spawn_waiter(env, WaitKind::ConnectedOrFailed, tick, async move {
                match wait.await {
                    Ok(c) => Answer::Conn(c),
                    Err(ConnectError::Stopped(s)) => Answer::Stopped(stopped_serial(&s)),
                    Err(ConnectError::Attempt(e)) => Answer::Attempt(error_code(&e)),
                }
            });
        }
        12..=14 => {
            let current = h.current_connection().map(|c| c.id());
            let mut w = env.world();
            if let Some(id) = current {
                if w.disconnected.contains(&id) {
                    w.fail(
                        rule::R10,
                        format!("current_connection is conn {id}, whose Disconnected was reported"),
                    );
                }
            }
        }
        15 if stop_ok => close(env, h),
        16 => {
            let finished = h.close_finished();
            spawn_waiter(env, WaitKind::CloseFinished, tick, async move {
                finished.await;
                Answer::Unit
            });
        }
        19 if stop_ok => {
            env.world().note_stop(None, false);
            h.close_when_current_connection_is_closed();
        }
        20..=22 => h.reconnect_now(),
        23..=24 => {
            let state = h.state();
            let w = env.world();
            if state == State::Closed && !w.driver_done && w.first_stop.is_none() {
                drop(w);
                env.world()
                    .fail(rule::R11, "state is Closed with no stop".into());
            }
        }
        25 => {
            let states = Box::pin(h.state_changes());
            spawn_states(env, states);
        }
        26..=27 => {
            let start = env.world().log.len();
            spawn_events(env, h.events(), start);
        }
        28..=30 => {
            let stats = h.stats();
            let mut w = env.world();
            let c = w.log.iter().filter(|e| e.kind == 'C').count() as u64;
            let d = w.log.iter().filter(|e| e.kind == 'D').count() as u64;
            if stats.connections != c || stats.disconnections != d {
                w.fail(
                    rule::STATS,
                    format!(
                        "stats say {} connections and {} disconnections; {c} C and {d} D were reported",
                        stats.connections, stats.disconnections
                    ),
                );
            }
        }
        31 => drop(h.last_ending()),
        32..=33 => {
            if h.downgrade().upgrade().is_none() {
                env.world().fail(
                    rule::R13,
                    "a weak handle does not upgrade while a handle lives".into(),
                );
            }
        }
        34 if stop_ok => {
            let ctx = {
                let mut w = env.world();
                if w.contexts.is_empty() {
                    None
                } else {
                    let n = w.contexts.len();
                    let i = w.src.pick(n);
                    Some(w.contexts[i].clone())
                }
            };
            if let Some(ctx) = ctx {
                abort(env, &ctx);
            }
        }
        _ => check_handle(env, h),
    }
}

fn stopped_serial(s: &Stopped<SimError>) -> Option<u32> {
    s.reason().map(|e| e.serial).or(match s {
        Stopped::Closed => None,
        _ => Some(u32::MAX),
    })
}

/// `is_closed` and `state` agree with the stops made.
fn check_handle(env: &Arc<Env>, h: &Pc) {
    let closed = h.is_closed();
    let state = h.state();
    let mut w = env.world();
    let stopped = w.first_stop.is_some();
    if closed != stopped {
        w.fail(
            rule::R11,
            format!(
                "is_closed() is {closed}, but a stop was{} requested",
                if stopped { "" } else { " not" }
            ),
        );
    }
    let closing = matches!(state, State::Closing | State::Closed);
    if closing != stopped {
        w.fail(
            rule::R11,
            format!(
                "state is {state:?}, but a stop was{} requested",
                if stopped { "" } else { " not" }
            ),
        );
    }
}

fn spawn_waiter(
    env: &Arc<Env>,
    kind: WaitKind,
    call_tick: u64,
    wait: impl Future<Output = Answer> + Send + 'static,
) {
    let mut w = env.world();
    let idx = w.waiters.len();
    let env2 = env.clone();
    let task = env.exec.spawn(
        Tag::Waiter(idx),
        Box::pin(async move {
            let answer = wait.await;
            answered(&env2, idx, answer);
        }),
    );
    w.waiters.push(WaiterRec {
        kind,
        call_tick,
        task,
        resolved: false,
        cancelled: false,
    });
    w.trace(format_args!("caller {idx} waits on {kind:?} (task {task})"));
}

/// A caller got its answer: is it what the contract says?
fn answered(env: &Arc<Env>, idx: usize, answer: Answer) {
    let mut w = env.world();
    let rec = &mut w.waiters[idx];
    let (kind, call) = (rec.kind, rec.call_tick);
    let twice = rec.resolved;
    rec.resolved = true;
    w.trace(format_args!("caller {idx} ({kind:?}) gets {answer:?}"));
    if twice {
        w.fail(rule::R8, format!("caller {idx} answered twice"));
    }
    let stop = w.first_stop;
    let expected_stop = stop.map(|s| s.aborted);
    match &answer {
        Answer::Conn(conn) => {
            let id = conn.id();
            let (created, closed) = {
                let conns = env.conns();
                let rec = &conns[id as usize];
                (rec.created_tick, rec.closed_at())
            };
            if let Some(close) = w.close_tick {
                if call > close {
                    w.fail(rule::R8, format!("{kind:?} gave conn {id} after close()"));
                }
            }
            if let Some(stop) = stop {
                if created > stop.tick {
                    w.fail(
                        rule::R12,
                        format!("{kind:?} gave conn {id}, which came after the stop"),
                    );
                }
            }
            if created < call && closed.is_some_and(|t| t < call) {
                w.fail(
                    rule::R8,
                    format!("{kind:?} gave conn {id}, which had closed before the call"),
                );
            }
            let keep = w.src.chance(64) && w.held.len() < 8;
            if keep {
                w.held.push(conn.clone());
            }
        }
        Answer::Stopped(reason) => {
            if kind == WaitKind::Connected {
                w.fail(rule::R8, "connected() resolved without a connection".into());
            }
            match expected_stop {
                None => w.fail(
                    rule::R8,
                    format!("{kind:?} says stopped ({reason:?}), but no stop was requested"),
                ),
                Some(expected) if expected != *reason => w.fail(
                    rule::R8,
                    format!("{kind:?} says stopped ({reason:?}); the first stop was {expected:?}"),
                ),
                Some(_) => {}
            }
        }
        Answer::Attempt(code) => {
            if kind != WaitKind::ConnectedOrFailed {
                w.fail(rule::R8, format!("{kind:?} got an attempt error {code}"));
            }
            if let Some(stop) = stop {
                if stop.tick < call {
                    w.fail(
                        rule::R9,
                        format!("{kind:?} called after a stop got attempt error {code}"),
                    );
                }
            }
        }
        Answer::Unit => {
            if !w.driver_done {
                w.fail(
                    rule::R11,
                    format!("{kind:?} resolved before the driver finished"),
                );
            }
        }
    }
    drop(w);
    drop(answer);
}

fn spawn_events(
    env: &Arc<Env>,
    events: persistent_connection_driver::Events<DriverEvent<Addr, SimConn, SimError>>,
    start: usize,
) {
    let mut w = env.world();
    let idx = w.streams.len();
    let env2 = env.clone();
    let mut events = Box::pin(events);
    let task = env.exec.spawn(
        Tag::Stream(idx),
        Box::pin(async move {
            loop {
                let item = next_item(&mut events).await;
                let mut w = env2.world();
                let rec = &mut w.streams[idx];
                match item {
                    Some(Ok(event)) => {
                        let ev = Ev::of(&event);
                        let at = rec.next;
                        rec.next += 1;
                        let logged = w.log.get(at).copied();
                        if logged != Some(ev) {
                            w.fail(
                                rule::R14,
                                format!("subscriber {idx} got {ev} as event {at}; reported: {logged:?}"),
                            );
                        }
                        drop(w);
                        drop(event);
                    }
                    Some(Err(Lagged(n))) => {
                        rec.next += n as usize;
                        let (next, len) = (rec.next, w.log.len());
                        if next > len {
                            w.fail(
                                rule::R14,
                                format!("subscriber {idx} lagged past the end ({next} > {len})"),
                            );
                        }
                    }
                    None => {
                        rec.ended = true;
                        let (next, len, done) = (rec.next, w.log.len(), w.driver_done);
                        if next != len || !done {
                            w.fail(
                                rule::R14,
                                format!(
                                    "subscriber {idx} ended after {next} of {len} events (finished: {done})"
                                ),
                            );
                        }
                        return;
                    }
                }
            }
        }),
    );
    w.streams.push(StreamRec {
        next: start,
        last_state: None,
        ended: false,
        task,
        cancelled: false,
    });
    w.trace(format_args!(
        "subscriber {idx} to events from {start} (task {task})"
    ));
}

fn spawn_states(
    env: &Arc<Env>,
    mut states: std::pin::Pin<Box<persistent_connection_driver::StateChanges>>,
) {
    let mut w = env.world();
    let idx = w.streams.len();
    let env2 = env.clone();
    let task = env.exec.spawn(
        Tag::Stream(idx),
        Box::pin(async move {
            loop {
                let item = next_item(&mut states).await;
                let mut w = env2.world();
                let rec = &mut w.streams[idx];
                let last = rec.last_state;
                match item {
                    Some(state) => {
                        rec.last_state = Some(state);
                        if last == Some(state) {
                            w.fail(rule::R14, format!("subscriber {idx} got {state:?} twice"));
                        }
                    }
                    None => {
                        rec.ended = true;
                        if last != Some(State::Closed) {
                            w.fail(
                                rule::R14,
                                format!("state subscriber {idx} ended on {last:?}"),
                            );
                        }
                        return;
                    }
                }
            }
        }),
    );
    w.streams.push(StreamRec {
        next: 0,
        last_state: None,
        ended: false,
        task,
        cancelled: false,
    });
    w.trace(format_args!(
        "subscriber {idx} to state changes (task {task})"
    ));
}
