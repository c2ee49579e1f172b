//! Compile-time checks of the `Send`/`Sync` each public type's documentation states.

use ember_core::Error;
use ember_core::accumulator::{FeedResult, FrameAccumulator};
use ember_core::dbus::header::{Builder, Message, MessageType};
use ember_core::dbus::signature::{Signature, Types};
use ember_core::dbus::typed::SignatureBuf;
use ember_core::dbus::value::{Array, Fields, Reader, Value, Values, Variant};
use ember_core::dbus::{ArrayView, BusName, DbusError, Dict, DictView, Endian, Fd, Var, Writer};
use ember_core::frame::{Flags, Frame, FrameRepr};
use ember_core::shm::ShmError;
use ember_core::shm::broadcast::{self, BroadcastControl, BroadcastRing};
use ember_core::shm::inspect::Counters;
use ember_core::shm::layout::{Expect, HeaderRepr, SegmentHeader, SegmentKind};
use ember_core::shm::seqlock::{self, SeqLock, SeqLockControl, Snapshot, WaitLine, WriteGuard};
use ember_core::shm::spsc::{Consumer, Grant, Peek, Producer, SpscControl, SpscRing};
use ember_core::shm::sync::{Event, Locked, Mutex, Owner, Semaphore, SyncError, Woke};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn send_and_sync() {
    assert_send_sync::<FrameAccumulator<64>>();
    assert_send_sync::<FeedResult<'_, '_>>();
    assert_send_sync::<Error>();
    assert_send_sync::<Flags>();
    assert_send_sync::<Frame<&[u8]>>();
    assert_send_sync::<Frame<&mut [u8]>>();
    assert_send_sync::<FrameRepr>();

    assert_send_sync::<Builder<'_>>();
    assert_send_sync::<Message<'_>>();
    assert_send_sync::<MessageType>();
    assert_send_sync::<Signature<'_>>();
    assert_send_sync::<Types<'_>>();
    assert_send_sync::<Reader<'_>>();
    assert_send_sync::<Value<'_>>();
    assert_send_sync::<Values<'_>>();
    assert_send_sync::<Fields<'_>>();
    assert_send_sync::<Array<'_>>();
    assert_send_sync::<Variant<'_>>();
    assert_send_sync::<SignatureBuf>();
    assert_send_sync::<Fd>();
    assert_send_sync::<ArrayView<'_, u32>>();
    assert_send_sync::<ArrayView<'_, Variant<'_>>>();
    assert_send_sync::<DictView<'_, &str, Variant<'_>>>();
    assert_send_sync::<Dict<'_, &str, u32>>();
    assert_send_sync::<Var<u32>>();
    assert_send_sync::<Writer<'_>>();
    assert_send_sync::<BusName<'_>>();
    assert_send_sync::<DbusError>();
    assert_send_sync::<Endian>();

    assert_send_sync::<ShmError>();
    assert_send_sync::<SegmentHeader>();
    assert_send_sync::<SegmentKind>();
    assert_send_sync::<HeaderRepr>();
    assert_send_sync::<Expect>();
    assert_send_sync::<Counters>();
    assert_send_sync::<SpscControl>();
    assert_send_sync::<SpscRing<'_>>();
    assert_send_sync::<Producer<'_>>();
    assert_send_sync::<Grant<'_, '_>>();
    assert_send_sync::<Consumer<'_>>();
    assert_send_sync::<Peek<'_, '_>>();
    assert_send_sync::<SeqLockControl>();
    assert_send_sync::<WaitLine>();
    assert_send_sync::<SeqLock<'_>>();
    assert_send_sync::<seqlock::SeqLockWriter<'_>>();
    assert_send_sync::<WriteGuard<'_, '_>>();
    assert_send_sync::<seqlock::SeqLockReader<'_>>();
    assert_send_sync::<Snapshot>();
    assert_send_sync::<BroadcastControl>();
    assert_send_sync::<BroadcastRing<'_>>();
    assert_send_sync::<broadcast::BroadcastWriter<'_>>();
    assert_send_sync::<broadcast::BroadcastReader<'_>>();
    assert_send_sync::<broadcast::Received>();
    assert_send_sync::<SyncError>();
    assert_send_sync::<Woke>();
    assert_send_sync::<Owner>();
    assert_send_sync::<Semaphore>();
    assert_send_sync::<Event>();
    assert_send_sync::<Locked>();
    assert_send_sync::<Mutex>();
}
