//! Compile-time checks of the `Send`/`Sync` each public type's documentation states.

use ember_linux::Error;
use ember_linux::dbus::address::UnixAddress;
use ember_linux::dbus::object::{
    Annotation, ArgNames, Call, Description, EmitsChanged, Interface, Member, Method, MethodError, Object, ObjectTable,
    Property, SignalDesc, TableError, Token,
};
use ember_linux::dbus::{Connection, Processed, RequestNameReply};
use ember_linux::mq::{Attributes, MessageQueue};
use ember_linux::net::TcpListener;
use ember_linux::pipe::{PacketReader, StreamReader, Writer};
use ember_linux::poll::{Deadline, Interest, Poller, Ready, Timer};
use ember_linux::rpc::{Client, Duplex, Failure, Request, Responder, Server, ShmLink, Ticket};
use ember_linux::shm::sync::{SharedEvent, SharedMutex, SharedSemaphore, SyncSegment};
use ember_linux::shm::{
    Backing, BroadcastReader, BroadcastWriter, Liveness, Notifier, Segment, SeqLockReader, SeqLockWriter, SpscReceiver,
    SpscSender,
};
use ember_linux::signal::{Daemon, DaemonEvent, SigSet, SignalFd, SignalInfo};
use ember_linux::socket::{Creds, PacketKind, PacketSocket, Received, StreamSocket};
use ember_linux::sys::{
    ControlMessage, ControlMessages, KernelTimespec, MqAttr, OwnedFdRaw, RawCreds, RecvMsg, SignalfdSiginfo,
};
use ember_linux::sysvmq::SysvQueue;
use ember_linux::uds::{UdsListener, UnixName};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn send_and_sync() {
    assert_send_sync::<Error>();
    assert_send_sync::<UnixAddress>();
    assert_send_sync::<Call<'_>>();
    assert_send_sync::<Interface<'_>>();
    assert_send_sync::<Method<'_>>();
    assert_send_sync::<MethodError>();
    assert_send_sync::<Object<'_>>();
    assert_send_sync::<Property<'_>>();
    assert_send_sync::<SignalDesc<'_>>();
    assert_send_sync::<Token>();
    assert_send_sync::<ObjectTable<'_, 4>>();
    assert_send_sync::<TableError>();
    assert_send_sync::<Description<'_>>();
    assert_send_sync::<Annotation<'_>>();
    assert_send_sync::<ArgNames<'_>>();
    assert_send_sync::<Member<'_>>();
    assert_send_sync::<EmitsChanged>();
    assert_send_sync::<Connection<64>>();
    assert_send_sync::<Processed<'_>>();
    assert_send_sync::<RequestNameReply>();
    assert_send_sync::<Attributes>();
    assert_send_sync::<MessageQueue>();
    assert_send_sync::<ember_linux::mq::Access>();
    assert_send_sync::<TcpListener>();
    assert_send_sync::<PacketReader>();
    assert_send_sync::<StreamReader<64>>();
    assert_send_sync::<Writer>();
    assert_send_sync::<Deadline>();
    assert_send_sync::<Interest>();
    assert_send_sync::<Poller<4>>();
    assert_send_sync::<Ready>();
    assert_send_sync::<Timer>();
    assert_send_sync::<ember_linux::Canceler>();
    assert_send_sync::<Client<ShmLink, 4, 64, 4096>>();
    assert_send_sync::<Duplex<Writer, StreamReader<64>>>();
    assert_send_sync::<Failure>();
    assert_send_sync::<Request>();
    assert_send_sync::<Responder<'_>>();
    assert_send_sync::<Server<ShmLink, 4096, 256>>();
    assert_send_sync::<ShmLink>();
    assert_send_sync::<Ticket>();
    assert_send_sync::<SharedEvent<'_>>();
    assert_send_sync::<SharedMutex<'_>>();
    assert_send_sync::<SharedSemaphore<'_>>();
    assert_send_sync::<SyncSegment>();
    assert_send_sync::<Backing<'_>>();
    assert_send_sync::<ember_linux::shm::Access>();
    assert_send_sync::<BroadcastReader>();
    assert_send_sync::<BroadcastWriter>();
    assert_send_sync::<Liveness>();
    assert_send_sync::<Notifier>();
    assert_send_sync::<Segment>();
    assert_send_sync::<SeqLockReader>();
    assert_send_sync::<SeqLockWriter>();
    assert_send_sync::<SpscReceiver>();
    assert_send_sync::<SpscSender>();
    assert_send_sync::<Daemon>();
    assert_send_sync::<DaemonEvent>();
    assert_send_sync::<SigSet>();
    assert_send_sync::<SignalFd>();
    assert_send_sync::<SignalInfo>();
    assert_send_sync::<Creds>();
    assert_send_sync::<PacketKind>();
    assert_send_sync::<PacketSocket>();
    assert_send_sync::<Received>();
    assert_send_sync::<StreamSocket<64>>();
    assert_send_sync::<ControlMessage>();
    assert_send_sync::<ControlMessages<'_>>();
    assert_send_sync::<KernelTimespec>();
    assert_send_sync::<MqAttr>();
    assert_send_sync::<OwnedFdRaw>();
    assert_send_sync::<RawCreds>();
    assert_send_sync::<RecvMsg>();
    assert_send_sync::<SignalfdSiginfo>();
    assert_send_sync::<SysvQueue<64>>();
    assert_send_sync::<UdsListener>();
    assert_send_sync::<UnixName<'_>>();
}

// Neither `Send` nor `Sync` (documented on each): `poll::Events`, which borrows rustix events
// whose data field can hold a raw pointer, and `shm::sync::MutexGuard`, bound to the thread
// that locked.
