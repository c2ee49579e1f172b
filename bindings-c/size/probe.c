/*
 * The size probe of `cargo xtask size` (docs/benchmarks.md, "C ABI size"): a small but
 * real C program that uses what a typical embedded client of Ember uses, so that a static
 * link keeps exactly that much of libember.a and libc:
 *
 *   1. a pipe: one frame encoded, sent, received and checked;
 *   2. an SPSC ring in shared memory: one record pushed and popped;
 *   3. one D-Bus call: `org.freedesktop.DBus.GetId` on the bus.
 *
 * Usage: probe [BUS-ADDRESS]
 *
 * Without an address it connects to the session bus ($DBUS_SESSION_BUS_ADDRESS). If no bus
 * can be reached it says so and still exits 0: the probe is about the size of the program,
 * and a board (or qemu-user) often has no bus. Exit status 1 means the pipe or the ring
 * failed, 2 that the bus answered the connect but the call failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ember.h"

#define FINGERPRINT UINT64_C(0x656d6265722d737a) /* "ember-sz" */

static int fail(const char *what, int code) {
    fprintf(stderr, "probe: %s: %s (%d)\n", what, ember_strerror(code), code);
    return 1;
}

static int pipe_round_trip(void) {
    ember_pipe_reader *r = NULL;
    ember_pipe_writer *w = NULL;
    int rc = ember_pipe_new(&r, &w);
    if (rc != EMBER_OK) return fail("ember_pipe_new", rc);
    static const uint8_t payload[] = "reading 21.5 C";
    static uint8_t frame[EMBER_HEADER_LEN + sizeof payload];
    static uint8_t buf[EMBER_PIPE_MAX_FRAME];
    size_t len = 0;
    int bad = 0;
    if ((rc = ember_frame_encode(7, 1, 0, payload, sizeof payload, frame, sizeof frame, &len)) != EMBER_OK) {
        bad = fail("ember_frame_encode", rc);
    } else if ((rc = ember_pipe_writer_send(w, frame, len)) != EMBER_OK) {
        bad = fail("ember_pipe_writer_send", rc);
    } else if ((rc = ember_pipe_reader_recv(r, buf, sizeof buf, &len)) != EMBER_OK) {
        bad = fail("ember_pipe_reader_recv", rc);
    } else {
        ember_frame_info info;
        if ((rc = ember_frame_decode(buf, len, &info)) != EMBER_OK) {
            bad = fail("ember_frame_decode", rc);
        } else if (info.kind != 7 || info.seq != 1 || info.payload_len != sizeof payload ||
                   memcmp(buf + info.payload_offset, payload, sizeof payload) != 0) {
            fprintf(stderr, "probe: the pipe changed the frame\n");
            bad = 1;
        } else {
            printf("pipe: frame of %zu bytes sent and received\n", len);
        }
    }
    ember_pipe_writer_free(w);
    ember_pipe_reader_free(r);
    return bad;
}

static int ring_round_trip(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-size-probe-%ld", (long)getpid());
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL;
    int rc = ember_spsc_sender_create(name, 4096, FINGERPRINT, &tx);
    if (rc != EMBER_OK) return fail("ember_spsc_sender_create", rc);
    int bad = 0;
    if ((rc = ember_spsc_receiver_open(name, FINGERPRINT, &rx)) != EMBER_OK) {
        bad = fail("ember_spsc_receiver_open", rc);
    } else {
        static const uint8_t record[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        uint8_t buf[64];
        size_t len = 0;
        if ((rc = ember_spsc_sender_send(tx, record, sizeof record, 0)) != EMBER_OK) {
            bad = fail("ember_spsc_sender_send", rc);
        } else if ((rc = ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 1000)) != EMBER_OK) {
            bad = fail("ember_spsc_receiver_recv", rc);
        } else if (len != sizeof record || memcmp(buf, record, len) != 0) {
            fprintf(stderr, "probe: the ring changed the record\n");
            bad = 1;
        } else {
            printf("shm ring %s: record of %zu bytes pushed and popped\n", name, len);
        }
    }
    ember_spsc_receiver_free(rx);
    ember_spsc_sender_free(tx); /* unlinks the name */
    return bad;
}

static int dbus_call(const char *address) {
    ember_dbus *d = NULL;
    int rc = ember_dbus_connect(address, &d);
    if (rc != EMBER_OK) {
        printf("dbus: no bus (%s, errno %d): call skipped\n", ember_strerror(rc), ember_last_os_error());
        return 0;
    }
    ember_dbus_message reply;
    rc = ember_dbus_call(d, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", NULL,
                         5000, &reply, NULL, NULL);
    int bad = 0;
    const char *id = NULL;
    if (rc != EMBER_OK) {
        fprintf(stderr, "probe: GetId: %s (%d)\n", ember_strerror(rc), rc);
        bad = 2;
    } else if ((rc = ember_dbus_iter_string(&reply.body, &id, NULL)) != EMBER_OK) {
        fprintf(stderr, "probe: GetId's reply: %s (%d)\n", ember_strerror(rc), rc);
        bad = 2;
    } else {
        printf("dbus: GetId = %s\n", id);
    }
    ember_dbus_free(d);
    return bad;
}

int main(int argc, char **argv) {
    int bad = pipe_round_trip();
    bad |= ring_round_trip();
    if (bad) return 1;
    return dbus_call(argc > 1 ? argv[1] : NULL);
}
