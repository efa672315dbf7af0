//! The `tracing` feature (R14's operators' view of the events): one failover, captured with
//! a test subscriber, names every event once, in order, at its level, inside a span that
//! carries the server's name. See `CONTRACT.md` (R1, R14, R17).

#[path = "scenario/server.rs"]
#[allow(dead_code, unreachable_pub)]
mod server;

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use persistent_connection_tokio::{Jitter, Tracked, builder};
use server::{Mode, Server};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records each event as `LEVEL span{server} message`, with the spans entered at the time.
#[derive(Default)]
struct Capture {
    next_id: AtomicU64,
    /// Span id -> its name and `server` field.
    spans: Mutex<Vec<(u64, String)>>,
    entered: Mutex<Vec<u64>>,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Collects the fields of a span or an event as `name=value` text.
#[derive(Default)]
struct Fields(Vec<String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = Fields::default();
        span.record(&mut fields);
        let text = format!("{}{{{}}}", span.metadata().name(), fields.0.join(","));
        self.spans.lock().unwrap().push((id, text));
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let spans = self.spans.lock().unwrap();
        let inside: Vec<&str> = self
            .entered
            .lock()
            .unwrap()
            .iter()
            .filter_map(|id| spans.iter().find(|(s, _)| s == id).map(|(_, t)| t.as_str()))
            .collect();
        self.lines.lock().unwrap().push(format!(
            "{} {} {}",
            event.metadata().level(),
            inside.join("/"),
            fields.0.join(" ")
        ));
    }
    fn enter(&self, span: &Id) {
        self.entered.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut entered = self.entered.lock().unwrap();
        if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
            entered.remove(at);
        }
    }
}

#[test]
fn tracing_names_every_event_of_a_failover_once_in_order() {
    let capture = Capture::default();
    let lines = capture.lines.clone();
    // One thread: the subscriber set here sees every poll of the persistent connection.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    tracing::subscriber::with_default(capture, || {
        runtime.block_on(async {
            let mut first = Server::start(Mode::Echo);
            let refused: SocketAddr = server::closed_port();
            let catalog = Arc::new(Mutex::new(first.addr()));
            let lookup = catalog.clone();
            let pc =
                builder(
                    "inventory",
                    move || {
                        let addr = *lookup.lock().unwrap();
                        async move { Ok::<_, std::io::Error>(addr) }
                    },
                    |addr, _ctx| async move {
                        tokio::net::TcpStream::connect(addr).await.map(Tracked::new)
                    },
                )
                .retry_delay(|_| Duration::from_millis(1))
                .jitter(Jitter::Off)
                .spawn();
            let conn = pc.connected().await;
            // The server goes; the catalog names a closed port, then the server again.
            *catalog.lock().unwrap() = refused;
            first.stop();
            conn.signal().close();
            let failed = pc.connected_or_failed_to_connect().await;
            assert!(failed.is_err(), "{failed:?}");
            let second = Server::start(Mode::Echo);
            *catalog.lock().unwrap() = second.addr();
            let again = pc.connected().await;
            assert!(!again.is_closed());
            pc.close().await;
        });
    });
    let lines = lines.lock().unwrap().clone();
    let span = "persistent_connection{server=inventory}";
    let events: Vec<String> = lines
        .iter()
        .map(|line| {
            assert!(
                line.contains(span),
                "every event is inside the span: {line}"
            );
            let (level, rest) = line.split_once(' ').unwrap();
            let after = rest.split("message=").nth(1).unwrap_or(rest);
            let message = after.split(' ').next().unwrap_or(after).to_string();
            format!("{level} {message}")
        })
        .collect();
    let expected = [
        "DEBUG AttemptingToConnect",
        "DEBUG ObtainedAddress",
        "INFO Connected",
        "INFO Disconnected",
        "DEBUG AttemptingToConnect",
        "DEBUG ObtainedAddress",
        "WARN FailedToConnect",
        "DEBUG ObtainedAddress",
        "INFO Connected",
        "INFO Disconnected",
    ];
    assert_eq!(events, expected, "all lines: {lines:#?}");
    let failure = &lines[6];
    assert!(
        failure.contains("error=could not connect: Connection refused"),
        "failures carry the error's Display: {failure}"
    );
    assert!(lines[1].contains("address="), "{}", lines[1]);
}
