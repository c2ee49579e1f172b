/* What ember-cd (the daemon) and ember-cc (the client) agree on: the seqlock's value, the
 * request kinds and their payloads. Every number is little-endian on the wire and in
 * shared memory, whatever the CPU, so the layout is the same on every board.
 *
 * The seqlock "/<segment>" (capacity ECD_SEQLOCK_CAPACITY, fingerprint ECD_FINGERPRINT)
 * holds ECD_VALUE_LEN bytes:
 *
 *   offset  0  int64   counter   ticks + offset: what "get" answers
 *   offset  8  uint64  ticks     timer ticks since the daemon started
 *   offset 16  int64   offset    the sum of every "add N" so far
 *   offset 24  uint64  mono_ns   CLOCK_MONOTONIC when it was written, in ns
 *
 * Requests (ember_rpc_call over the seqpacket socket):
 *
 *   ECD_KIND_GET  empty request            -> counter, offset (2 x int64, 16 bytes)
 *   ECD_KIND_ADD  N (int64, 8 bytes)       -> counter, offset after adding N
 *
 * Error responses: EMBER_RPC_UNKNOWN_KIND for any other kind, EMBER_RPC_BAD_REQUEST for a
 * payload of the wrong size, ECD_ERR_RANGE when the offset would leave
 * [-ECD_OFFSET_LIMIT, ECD_OFFSET_LIMIT], ECD_ERR_PUBLISH if the seqlock write failed.
 * Change the fingerprint whenever the layout changes. */
#ifndef EMBER_CD_PROTO_H
#define EMBER_CD_PROTO_H

#include <stdint.h>

#include <ember.h>

#define ECD_FINGERPRINT UINT64_C(0xEC0DE0C000000001)
#define ECD_SEQLOCK_CAPACITY 64u
#define ECD_VALUE_LEN 32u

#define ECD_KIND_GET 1u
#define ECD_KIND_ADD 2u
#define ECD_ADD_REQ_LEN 8u
#define ECD_RESP_LEN 16u

#define ECD_OFFSET_LIMIT INT64_C(1000000000000000) /* 10^15 */
#define ECD_ERR_RANGE (EMBER_RPC_FIRST_APPLICATION_CODE + 0)
#define ECD_ERR_PUBLISH (EMBER_RPC_FIRST_APPLICATION_CODE + 1)

struct ecd_value {
    int64_t counter;
    uint64_t ticks;
    int64_t offset;
    uint64_t mono_ns;
};

static inline void ecd_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t ecd_get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* int64 <-> uint64, two's complement (int64 to uint64 is defined by C; the way back is
 * spelled out, as C leaves it to the implementation). */
static inline uint64_t ecd_from_i64(int64_t v) {
    return (uint64_t)v;
}

static inline int64_t ecd_to_i64(uint64_t v) {
    return v > (uint64_t)INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
}

static inline void ecd_value_encode(const struct ecd_value *v, uint8_t out[ECD_VALUE_LEN]) {
    ecd_put_u64(out, ecd_from_i64(v->counter));
    ecd_put_u64(out + 8, v->ticks);
    ecd_put_u64(out + 16, ecd_from_i64(v->offset));
    ecd_put_u64(out + 24, v->mono_ns);
}

static inline void ecd_value_decode(const uint8_t in[ECD_VALUE_LEN], struct ecd_value *v) {
    v->counter = ecd_to_i64(ecd_get_u64(in));
    v->ticks = ecd_get_u64(in + 8);
    v->offset = ecd_to_i64(ecd_get_u64(in + 16));
    v->mono_ns = ecd_get_u64(in + 24);
}

/* A shared-memory name as the library wants it: "/name". Returns 0 if it does not fit. */
static inline int ecd_shm_name(const char *arg, char *out, size_t cap) {
    size_t n = 0, i = 0;
    if (arg[0] != '/') {
        if (cap < 1) return 0;
        out[n++] = '/';
    }
    for (; arg[i] != '\0'; i++) {
        if (n + 1 >= cap) return 0;
        out[n++] = arg[i];
    }
    out[n] = '\0';
    return n > 1;
}

/* What an rpc error code means, for messages. */
static inline const char *ecd_remote_error_name(uint32_t code) {
    switch (code) {
    case EMBER_RPC_UNKNOWN_KIND: return "unknown kind";
    case EMBER_RPC_BAD_REQUEST: return "bad request";
    case EMBER_RPC_NO_RESPONSE: return "no response";
    case ECD_ERR_RANGE: return "offset out of range";
    case ECD_ERR_PUBLISH: return "publishing failed";
    default: return "unknown error code";
    }
}

#endif /* EMBER_CD_PROTO_H */
