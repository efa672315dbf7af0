//! Checks R10 (`current_connection`) of CONTRACT.md: the current connection, if any, from
//! the success of its attempt until it has closed.

use crate::support::*;

#[test]
fn r10_current_connection_tracks_connection() {
    let mut m = dialing();
    assert_eq!(m.current_connection(), None);
    expect(&mut m, dialed(1, 5), vec![connected(1, 5)]);
    assert_eq!(m.current_connection(), Some(&5));
    expect(&mut m, handled(), vec![]);
    assert_eq!(m.current_connection(), Some(&5));
    expect(&mut m, conn_closed(1), vec![disconnected(1)]);
    assert_eq!(m.current_connection(), None);
    assert_eq!(m.current_attempt(), None);
    expect(&mut m, handled(), vec![]);
    expect(&mut m, fire(1), vec![attempting()]);
    assert_eq!(m.current_connection(), None);
}
