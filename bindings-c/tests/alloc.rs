//! Zero heap allocations on the C ABI's send and receive paths, counted by a global
//! allocator (`ember-test-support`): frames over a pipe, an SPSC ring, signals through a
//! signalfd and the poller, and D-Bus calls with the argument builder and the reply
//! iterator, answered by a service with a C-style callback on a private `dbus-daemon`.
//! Making handles may allocate; using them may not.

#[path = "../../linux/tests/common/mod.rs"]
mod common;

use core::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;

use ember::dbus::serve::*;
use ember::dbus::*;
use ember::error::ember_status::EMBER_OK;
use ember_test_support::allocations;

const OK: c_int = EMBER_OK as c_int;

fn main() {
    common::main(
        &[
            ("pipe_and_ring", pipe_and_ring),
            ("signals_and_poller", signals_and_poller),
            ("dbus_round_trip", dbus_round_trip),
        ],
        |_| {},
    );
}

fn pipe_and_ring() {
    use ember::frame::ember_frame_encode;
    use ember::pipe::*;
    use ember::shm::*;
    let (mut r, mut w) = (null_mut(), null_mut());
    let (mut frame, mut buf) = ([0u8; 256], vec![0u8; EMBER_PIPE_MAX_FRAME]);
    let (mut flen, mut len) = (0usize, 0usize);
    // SAFETY: (the test) every pointer is a live local or a handle made here.
    unsafe {
        assert_eq!(ember_pipe_new(&mut r, &mut w), OK);
        let n = allocations(|| {
            for seq in 0..100u32 {
                let payload = seq.to_le_bytes();
                assert_eq!(ember_frame_encode(7, seq, 0, payload.as_ptr(), 4, frame.as_mut_ptr(), 256, &mut flen), OK);
                assert_eq!(ember_pipe_writer_send(w, frame.as_ptr(), flen), OK);
                assert_eq!(ember_pipe_reader_recv(r, buf.as_mut_ptr(), buf.len(), &mut len), OK);
                assert_eq!(&buf[..len], &frame[..flen]);
            }
        });
        assert_eq!(n, 0, "pipe send/recv allocated");
        ember_pipe_reader_free(r);
        ember_pipe_writer_free(w);

        let name = format!("/ember-c-alloc-{}\0", std::process::id());
        let (mut tx, mut rx) = (null_mut(), null_mut());
        assert_eq!(ember_spsc_sender_create(name.as_ptr().cast(), 4096, 1, &mut tx), OK);
        assert_eq!(ember_spsc_receiver_open(name.as_ptr().cast(), 1, &mut rx), OK);
        let n = allocations(|| {
            for i in 0..100u32 {
                assert_eq!(ember_spsc_sender_send(tx, i.to_le_bytes().as_ptr(), 4, 0), OK);
                assert_eq!(ember_spsc_receiver_recv(rx, buf.as_mut_ptr(), 256, &mut len, 0), OK);
                assert_eq!(buf[..len], i.to_le_bytes());
            }
        });
        assert_eq!(n, 0, "ring send/recv allocated");
        ember_spsc_receiver_free(rx);
        ember_spsc_sender_free(tx);
    }
}

fn signals_and_poller() {
    use ember::poll::*;
    use ember::signal::*;
    const SIG: c_int = 40;
    let (mut set, mut old) = (0u64, 0u64);
    let (mut sfd, mut p) = (null_mut(), null_mut());
    let mut info = ember_signal_info::default();
    let mut ready = [ember_ready::default(); 4];
    let mut n = 0usize;
    // SAFETY: (the test) every pointer is a live local or a handle made here.
    unsafe {
        assert_eq!(ember_sigset_add(&mut set, SIG), OK);
        assert_eq!(ember_signal_mask(0, set, &mut old), OK);
        assert_eq!(ember_signalfd_new(set, 1, &mut sfd), OK);
        assert_eq!(ember_poller_new(&mut p), OK);
        assert_eq!(ember_poller_add(p, ember_signalfd_fd(sfd), 9, EMBER_POLL_READ), OK);
        let count = allocations(|| {
            for v in 0..20 {
                assert_eq!(ember_signal_send_value(std::process::id(), SIG, v), OK);
                assert_eq!(ember_poller_wait(p, ready.as_mut_ptr(), 4, &mut n, 5000), OK);
                assert_eq!((n, ready[0].token, ready[0].readable), (1, 9, 1));
                assert_eq!(ember_signalfd_recv(sfd, &mut info), OK);
                assert_eq!((info.signal, info.value, info.pid), (SIG, v, std::process::id()));
            }
        });
        assert_eq!(count, 0, "signal send/recv and poller wait allocated");
        ember_poller_free(p);
        ember_signalfd_free(sfd);
        assert_eq!(ember_signal_mask(2, old, null_mut()), OK);
    }
}

/// `Add(ii) -> i`, as a C handler would write it.
unsafe extern "C" fn add(
    _ctx: *mut c_void,
    _call: *const ember_dbus_call_info,
    args: *mut ember_dbus_iter,
    reply: *mut ember_dbus_args,
) -> c_int {
    let (mut a, mut b) = (0i32, 0i32);
    // SAFETY: the pointers the service hands a handler, valid during the call.
    unsafe {
        if ember::dbus::iter::ember_dbus_iter_int32(args, &mut a) != OK
            || ember::dbus::iter::ember_dbus_iter_int32(args, &mut b) != OK
        {
            return 1;
        }
        ember::dbus::args::ember_dbus_args_add_int32(reply, a + b)
    }
}

/// The getter of `Level` (`u`): 7.
unsafe extern "C" fn get_level(
    _ctx: *mut c_void,
    _property: *const ember::dbus::serve::ember_dbus_property_info,
    value: *mut ember_dbus_args,
) -> c_int {
    // SAFETY: the builder the service hands a getter, valid during the call.
    unsafe { ember::dbus::args::ember_dbus_args_add_uint32(value, 7) }
}

fn c(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn dbus_round_trip() {
    use ember::dbus::args::*;
    use ember::dbus::iter::*;
    let daemon = common::dbus_daemon::Daemon::start();
    let address = c(&daemon.address);
    let name = c(&format!("org.ember.alloc.p{}", std::process::id()));
    let (path, iface, member) = (c("/org/ember/Calc"), c("org.ember.Calc"), c("Add"));
    let (ii, i) = (c("ii"), c("i"));
    // The service, in a thread of its own (the allocator counts per thread): it reports
    // what its process loop allocated after the first call.
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let (addr2, name2, path2, iface2, member2, ii2, i2) =
        (address.clone(), name.clone(), path.clone(), iface.clone(), member.clone(), ii.clone(), i.clone());
    let server = std::thread::spawn(move || {
        // SAFETY: (the thread) every pointer is a live local or a handle made here.
        unsafe {
            let mut d = null_mut();
            assert_eq!(ember_dbus_connect(addr2.as_ptr().cast(), &mut d), OK);
            let mut reply = 0;
            assert_eq!(ember_dbus_request_name(d, name2.as_ptr().cast(), 0, 5000, &mut reply), OK);
            let methods = [ember_dbus_method {
                name: member2.as_ptr().cast(),
                args: ii2.as_ptr().cast(),
                results: i2.as_ptr().cast(),
                handler: Some(add),
                ctx: null_mut(),
            }];
            let props = [ember::dbus::serve::ember_dbus_property {
                name: c"Level".as_ptr(),
                signature: c"u".as_ptr(),
                access: ember::dbus::serve::EMBER_DBUS_PROPERTY_READ,
                emits_changed: ember::dbus::serve::EMBER_DBUS_EMITS_CHANGED_TRUE,
            }];
            let ifaces = [ember_dbus_interface {
                name: iface2.as_ptr().cast(),
                methods: methods.as_ptr(),
                n_methods: 1,
                signals: std::ptr::null(),
                n_signals: 0,
                properties: props.as_ptr(),
                n_properties: 1,
                get_property: Some(get_level),
                set_property: None,
                property_ctx: null_mut(),
            }];
            let objects =
                [ember_dbus_object { path: path2.as_ptr().cast(), interfaces: ifaces.as_ptr(), n_interfaces: 1 }];
            let mut svc = null_mut();
            assert_eq!(ember_dbus_service_new(objects.as_ptr(), 1, &mut svc), OK);
            tx.send(0).unwrap();
            let mut calls = 0;
            let mut allocated = 0;
            // 51 calls of Add and 50 of Properties.Get (answered through the getter).
            while calls < 101 {
                let mut answered = 0;
                let mut other = std::mem::MaybeUninit::<ember_dbus_message>::uninit();
                let n = allocations(|| {
                    assert_eq!(ember_dbus_process(d, svc, 5000, other.as_mut_ptr(), &mut answered), OK);
                });
                if answered == 1 {
                    calls += 1;
                    if calls > 1 {
                        allocated += n;
                    }
                }
            }
            tx.send(allocated).unwrap();
            ember_dbus_service_free(svc);
            ember_dbus_free(d);
        }
    });
    rx.recv().unwrap();
    // SAFETY: (the test) every pointer is a live local or a handle made here.
    unsafe {
        let (mut d, mut a) = (null_mut(), null_mut());
        assert_eq!(ember_dbus_connect(address.as_ptr().cast(), &mut d), OK);
        assert_eq!(ember_dbus_args_new(256, &mut a), OK);
        let mut reply = std::mem::MaybeUninit::<ember_dbus_message>::uninit();
        let mut call = |x: i32| {
            assert_eq!(ember_dbus_args_clear(a), OK);
            assert_eq!(ember_dbus_args_add_int32(a, x), OK);
            assert_eq!(ember_dbus_args_add_int32(a, 1), OK);
            let rc = ember_dbus_call(
                d,
                name.as_ptr().cast::<c_char>(),
                path.as_ptr().cast(),
                iface.as_ptr().cast(),
                member.as_ptr().cast(),
                a,
                5000,
                reply.as_mut_ptr(),
                None,
                null_mut(),
            );
            assert_eq!(rc, OK);
            let r = &mut *reply.as_mut_ptr();
            let mut sum = 0i32;
            assert_eq!(ember_dbus_iter_int32(&mut r.body, &mut sum), OK);
            assert_eq!(sum, x + 1);
        };
        let mut reply2 = std::mem::MaybeUninit::<ember_dbus_message>::uninit();
        let mut get = || {
            assert_eq!(ember_dbus_args_clear(a), OK);
            assert_eq!(ember_dbus_args_add_string(a, iface.as_ptr().cast()), OK);
            assert_eq!(ember_dbus_args_add_string(a, c"Level".as_ptr()), OK);
            let rc = ember_dbus_call(
                d,
                name.as_ptr().cast::<c_char>(),
                path.as_ptr().cast(),
                c"org.freedesktop.DBus.Properties".as_ptr(),
                c"Get".as_ptr(),
                a,
                5000,
                reply2.as_mut_ptr(),
                None,
                null_mut(),
            );
            assert_eq!(rc, OK);
            let r = &mut *reply2.as_mut_ptr();
            let (mut v, mut level) = (std::mem::MaybeUninit::<ember_dbus_iter>::uninit(), 0u32);
            assert_eq!(ember_dbus_iter_recurse(&mut r.body, v.as_mut_ptr()), OK);
            assert_eq!(ember_dbus_iter_uint32(v.as_mut_ptr(), &mut level), OK);
            assert_eq!(level, 7);
        };
        call(0);
        let n = allocations(|| {
            for x in 1..=50 {
                call(x);
                get();
            }
        });
        assert_eq!(n, 0, "ember_dbus_call with the builder and the iterator allocated");
        assert_eq!(rx.recv().unwrap(), 0, "ember_dbus_process (a method, a property's getter) allocated");
        server.join().unwrap();
        ember_dbus_args_free(a);
        ember_dbus_free(d);
    }
}
