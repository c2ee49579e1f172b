//! Compile-time checks of the `Send`/`Sync` each public type's documentation states.

use ember::accumulator::ember_accumulator;
use ember::dbus::args::ember_dbus_args;
use ember::dbus::ember_dbus;
use ember::dbus::iter::ember_dbus_iter;
use ember::error::ember_status;
use ember::frame::ember_frame_info;
use ember::mq::{ember_mq, ember_timeout};
use ember::pipe::{ember_pipe_reader, ember_pipe_writer};
use ember::poll::{ember_notifier, ember_poller, ember_ready, ember_timer};
use ember::rpc::{ember_rpc_client, ember_rpc_server};
use ember::shm::{
    ember_broadcast_reader, ember_broadcast_writer, ember_seqlock_reader, ember_seqlock_writer, ember_spsc_receiver,
    ember_spsc_sender,
};
use ember::signal::{ember_daemon, ember_signal_info, ember_signalfd};
use ember::sync::ember_sync_segment;
use ember::uds::{ember_creds, ember_socket, ember_uds_listener};

fn assert_send<T: Send>() {}
fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn send_and_sync() {
    assert_send::<ember_dbus>();
    assert_send_sync::<ember_accumulator>();
    assert_send_sync::<ember::cancel::ember_canceler>();
    assert_send_sync::<ember_dbus_args>();
    assert_send_sync::<ember_dbus_iter>();
    assert_send_sync::<ember_mq>();
    assert_send_sync::<ember_pipe_reader>();
    assert_send_sync::<ember_pipe_writer>();
    assert_send_sync::<ember_poller>();
    assert_send_sync::<ember_timer>();
    assert_send_sync::<ember_notifier>();
    assert_send_sync::<ember_rpc_client>();
    assert_send_sync::<ember_rpc_server>();
    assert_send_sync::<ember_spsc_sender>();
    assert_send_sync::<ember_spsc_receiver>();
    assert_send_sync::<ember_seqlock_writer>();
    assert_send_sync::<ember_seqlock_reader>();
    assert_send_sync::<ember_broadcast_writer>();
    assert_send_sync::<ember_broadcast_reader>();
    assert_send_sync::<ember_signalfd>();
    assert_send_sync::<ember_daemon>();
    assert_send_sync::<ember_sync_segment>();
    assert_send_sync::<ember_socket>();
    assert_send_sync::<ember_uds_listener>();
    assert_send_sync::<ember_status>();
    assert_send_sync::<ember_frame_info>();
    assert_send_sync::<ember_timeout>();
    assert_send_sync::<ember_ready>();
    assert_send_sync::<ember_signal_info>();
    assert_send_sync::<ember_creds>();
}

// Neither `Send` nor `Sync` (documented on each), for their raw pointers:
// `ember_dbus_message`, `ember_dbus_call_info`, `ember_dbus_service`, `ember_dbus_method`,
// `ember_dbus_signal`, `ember_dbus_interface`, `ember_dbus_object`.
