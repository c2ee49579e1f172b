/* sensor-client: reads what examples/sensor-daemon publishes, in C, through ember.h.
 *
 *   sensor-client [name] [events]
 *
 * Prints the latest reading from the seqlock /<name>-reading, then waits for up to
 * <events> events (default 0) on the broadcast ring /<name>-events, 5 s at most each.
 * Exit status: 0 on success, 1 if the daemon's objects are missing or malformed.
 *
 * Payloads are postcard (https://postcard.jamesmunns.com/wire-format): an i32 is a zigzag
 * varint, a u16/u32 a varint, a string a varint length and its bytes. The few lines below
 * decode what the daemon sends; the frame around them is checked by ember_frame_decode. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ember.h>

/* Keep these in step with examples/sensor-daemon/src/lib.rs. */
#define READING_FP UINT64_C(0x5E45000000000001)
#define EVENTS_FP UINT64_C(0x5E45000000000002)
#define KIND_READING 0x10u
#define KIND_EVENT 0x11u

/* A postcard varint at *p (at most 5 bytes for 32 bits); 0 if malformed. */
static int varint(const uint8_t **p, const uint8_t *end, uint32_t *out) {
    uint32_t v = 0;
    for (int shift = 0; shift < 35 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

static int zigzag(const uint8_t **p, const uint8_t *end, int32_t *out) {
    uint32_t v;
    if (!varint(p, end, &v)) return 0;
    *out = (int32_t)(v >> 1) ^ -(int32_t)(v & 1);
    return 1;
}

/* Checks the frame in buf and returns its payload, or NULL. */
static const uint8_t *payload_of(const uint8_t *buf, size_t len, uint32_t kind, ember_frame_info *info) {
    int rc = ember_frame_decode(buf, len, info);
    if (rc != EMBER_OK) {
        fprintf(stderr, "sensor-client: bad frame: %s\n", ember_strerror(rc));
        return NULL;
    }
    if (info->kind != kind) {
        fprintf(stderr, "sensor-client: frame of kind %" PRIu32 ", expected %" PRIu32 "\n", info->kind, kind);
        return NULL;
    }
    return buf + info->payload_offset;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "sensor";
    long want_events = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
    char path[256];
    uint8_t buf[512];
    size_t len = 0;
    ember_frame_info info;

    snprintf(path, sizeof path, "/%s-reading", name);
    ember_seqlock_reader *reading = NULL;
    int rc = ember_seqlock_reader_open(path, READING_FP, &reading);
    if (rc != EMBER_OK) {
        fprintf(stderr, "sensor-client: %s: %s (is sensor-daemon running?)\n", path, ember_strerror(rc));
        return 1;
    }
    /* A writer mid-update is EMBER_EAGAIN: try again. */
    for (int tries = 0; (rc = ember_seqlock_reader_read(reading, buf, sizeof buf, &len, NULL)) == EMBER_EAGAIN && tries < 1000; tries++) {
    }
    ember_seqlock_reader_free(reading);
    if (rc != EMBER_OK) {
        fprintf(stderr, "sensor-client: %s: %s\n", path, ember_strerror(rc));
        return 1;
    }
    const uint8_t *p = payload_of(buf, len, KIND_READING, &info);
    int32_t mc;
    uint32_t count;
    if (p == NULL || !zigzag(&p, p + info.payload_len, &mc) || !varint(&p, buf + len, &count)) {
        fprintf(stderr, "sensor-client: %s: not a reading\n", path);
        return 1;
    }
    int64_t abs_mc = mc < 0 ? -(int64_t)mc : mc;
    printf("reading %" PRIu32 ": %s%" PRId64 ".%03" PRId64 " C\n", count, mc < 0 ? "-" : "", abs_mc / 1000, abs_mc % 1000);

    if (want_events <= 0) return 0;
    snprintf(path, sizeof path, "/%s-events", name);
    ember_broadcast_reader *events = NULL;
    rc = ember_broadcast_reader_open(path, EVENTS_FP, 1, &events);
    if (rc != EMBER_OK) {
        fprintf(stderr, "sensor-client: %s: %s\n", path, ember_strerror(rc));
        return 1;
    }
    int status = 0;
    for (long n = 0; n < want_events; n++) {
        uint64_t seq, lost;
        rc = ember_broadcast_reader_recv(events, buf, sizeof buf, &len, &seq, &lost, 5000);
        if (rc != EMBER_OK) {
            fprintf(stderr, "sensor-client: %s: %s\n", path, ember_strerror(rc));
            status = 1;
            break;
        }
        p = payload_of(buf, len, KIND_EVENT, &info);
        const uint8_t *end = buf + len;
        uint32_t code, text_len;
        int32_t value;
        if (p == NULL || !varint(&p, end, &code) || !zigzag(&p, end, &value) || !varint(&p, end, &text_len) ||
            text_len > (size_t)(end - p)) {
            fprintf(stderr, "sensor-client: %s: record %" PRIu64 " is not an event\n", path, seq);
            status = 1;
            break;
        }
        printf("event %" PRIu32 " (record %" PRIu64 ", %" PRIu64 " lost): code %" PRIu32 ", value %" PRId32 ", %.*s\n",
               info.seq, seq, lost, code, value, (int)text_len, (const char *)p);
    }
    ember_broadcast_reader_free(events);
    return status;
}
