//! The driver's errors, as a caller matches, prints and chains them: one type per question
//! (R4's failure of one attempt, R9/R11/R12's reason no connection will come), the user's
//! error printed with its `Display` and reachable through `source()`. See `CONTRACT.md`.

use std::error::Error as _;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use persistent_connection_driver::{AttemptError, Callback, ConnectError, Stopped};

/// An error whose `Display` and `Debug` differ, to tell which one is printed.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused by peer")
    }
}

impl std::error::Error for Refused {}

#[test]
fn attempt_errors_print_the_user_error_with_display() {
    let address = AttemptError::Address(Arc::new(Refused));
    let connect = AttemptError::Connect(Arc::new(Refused));
    assert_eq!(
        address.to_string(),
        "could not get the address: refused by peer"
    );
    assert_eq!(connect.to_string(), "could not connect: refused by peer");
    assert_eq!(
        AttemptError::<Refused>::TimedOut(Duration::from_secs(2)).to_string(),
        "the attempt did not finish within the connect timeout of 2s"
    );
    let panicked = AttemptError::<Refused>::Panicked {
        during: Callback::Connect,
        message: Arc::from("boom"),
    };
    assert_eq!(panicked.to_string(), "connect panicked: boom");
}

#[test]
fn attempt_error_accessors_tell_the_cases_apart() {
    let connect = AttemptError::Connect(Arc::new(Refused));
    let timed_out = AttemptError::<Refused>::TimedOut(Duration::from_millis(5));
    let panicked = AttemptError::<Refused>::Panicked {
        during: Callback::GetAddress,
        message: Arc::from("x"),
    };
    assert!(connect.user_error().is_some());
    assert!(
        AttemptError::Address(Arc::new(Refused))
            .user_error()
            .is_some()
    );
    assert!(timed_out.user_error().is_none() && panicked.user_error().is_none());
    assert!(timed_out.is_timeout() && !connect.is_timeout() && !panicked.is_timeout());
    assert!(panicked.is_panic() && !connect.is_panic() && !timed_out.is_panic());
}

#[test]
fn source_is_the_user_error() {
    let io_error = io::Error::new(io::ErrorKind::ConnectionRefused, "nobody home");
    let error = AttemptError::Connect(Arc::new(io_error));
    let source = error.source().expect("the io::Error is the source");
    let io_source = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io_source.kind(), io::ErrorKind::ConnectionRefused);
    assert!(
        AttemptError::<io::Error>::TimedOut(Duration::ZERO)
            .source()
            .is_none()
    );

    let aborted = Stopped::Aborted(Arc::new(Refused));
    assert!(
        aborted
            .source()
            .unwrap()
            .downcast_ref::<Refused>()
            .is_some()
    );
    assert!(Stopped::<Refused>::Closed.source().is_none());

    // ConnectError is transparent: its source is the user's error.
    let wrapped: ConnectError<Refused> = AttemptError::Address(Arc::new(Refused)).into();
    assert!(
        wrapped
            .source()
            .unwrap()
            .downcast_ref::<Refused>()
            .is_some()
    );
    let stopped: ConnectError<Refused> = aborted.into();
    assert!(
        stopped
            .source()
            .unwrap()
            .downcast_ref::<Refused>()
            .is_some()
    );
}

#[test]
fn stopped_says_why_no_connection_will_come() {
    assert_eq!(
        Stopped::<Refused>::Closed.to_string(),
        "the persistent connection is closed"
    );
    let aborted = Stopped::Aborted(Arc::new(Refused));
    assert_eq!(
        aborted.to_string(),
        "the persistent connection was aborted: refused by peer"
    );
    assert!(aborted.reason().is_some());
    assert!(Stopped::<Refused>::Closed.reason().is_none());
}

#[test]
fn connect_error_prints_what_it_holds_and_knows_if_it_is_final() {
    let failed: ConnectError<Refused> = AttemptError::Connect(Arc::new(Refused)).into();
    let closed: ConnectError<Refused> = Stopped::Closed.into();
    assert_eq!(failed.to_string(), "could not connect: refused by peer");
    assert_eq!(closed.to_string(), "the persistent connection is closed");
    assert!(!failed.is_stopped());
    assert!(closed.is_stopped());
    assert!(matches!(
        failed.clone(),
        ConnectError::Attempt(AttemptError::Connect(_))
    ));
    assert!(matches!(
        closed.clone(),
        ConnectError::Stopped(Stopped::Closed)
    ));
}

#[test]
fn clones_share_the_user_error() {
    let error = AttemptError::Address(Arc::new(Refused));
    let (AttemptError::Address(a), AttemptError::Address(b)) = (&error, &error.clone()) else {
        panic!("a clone keeps the variant");
    };
    assert!(Arc::ptr_eq(a, b), "one error goes to many waiters by Arc");
    let aborted = Stopped::Aborted(Arc::new(Refused));
    let (Stopped::Aborted(a), Stopped::Aborted(b)) = (&aborted, &aborted.clone()) else {
        panic!("a clone keeps the variant");
    };
    assert!(Arc::ptr_eq(a, b));
}

#[test]
fn callbacks_and_panic_reports_name_what_panicked() {
    let names = [
        (Callback::GetAddress, "get_address"),
        (Callback::Connect, "connect"),
        (Callback::OnEvent, "on_event"),
        (Callback::RetryDelay, "retry_delay"),
        (Callback::ConnectionClose, "the connection's close"),
    ];
    for (callback, name) in names {
        assert_eq!(callback.to_string(), name);
    }
}
