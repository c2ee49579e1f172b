/* ember-cc: the client of ember-cd, through ember.h alone.
 *
 *   ember-cc [-t <timeout_ms>] <socket> <segment> get
 *   ember-cc [-t <timeout_ms>] <socket> <segment> add <N>
 *   ember-cc [-t <timeout_ms>] <socket> <segment> watch <K>
 *   ember-cc [-t <timeout_ms>] <socket> <segment> bogus
 *
 * get    asks the daemon for its counter (ECD_KIND_GET): prints "counter C offset O"
 * add N  adds N to the daemon's offset (ECD_KIND_ADD): prints the new counter and offset
 * watch K  waits K times for the seqlock "/<segment>" to change and prints each value:
 *        "counter C ticks T offset O age_us A"
 * bogus  sends a request of kind 99, which the daemon does not know: prints the error
 *        response it gets on stderr and exits 1
 *
 * Every wait (the call, each seqlock change) gives up after <timeout_ms> (default 5000).
 * Exit status: 0 on success, 1 on failure (the reason on stderr), 2 for a bad command
 * line. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ember.h>

#include "ember-cd-proto.h"

#define KIND_BOGUS 99u

static void usage(void) {
    fprintf(stderr, "usage: emberctl-cc [-t <timeout_ms>] <socket> <segment> get | add <N> | watch <K> | bogus\n");
}

static void fail(const char *what, int rc) {
    if (rc == EMBER_EOS)
        fprintf(stderr, "ember-cc: %s: %s (%s)\n", what, ember_strerror(rc), strerror(ember_last_os_error()));
    else
        fprintf(stderr, "ember-cc: %s: %s\n", what, ember_strerror(rc));
}

/* A whole decimal int64 (an optional sign, digits, nothing else). */
static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return 0;
    *out = (int64_t)v;
    return 1;
}

/* ---- Requests -------------------------------------------------------------------- */

static int connect_rpc(const char *socket_path, ember_rpc_client **out) {
    ember_socket *s = NULL;
    int rc = ember_uds_connect(socket_path, EMBER_UDS_SEQPACKET, &s);
    if (rc != EMBER_OK) {
        char what[300];
        snprintf(what, sizeof what, "connect to %s", socket_path);
        fail(what, rc);
        return rc;
    }
    /* The rpc client takes an fd it owns: the socket handle hands its over. */
    int fd = -1;
    rc = ember_socket_into_fd(s, &fd);
    if (rc != EMBER_OK) {
        ember_socket_free(s);
        fail("socket", rc);
        return rc;
    }
    rc = ember_rpc_client_from_socket(fd, 1, out);
    if (rc != EMBER_OK) {
        if (rc == EMBER_EINVAL) close(fd); /* only then is it still ours */
        fail("rpc client", rc);
    }
    return rc;
}

/* One call; prints the answer ("counter C offset O"). Returns the exit status. */
static int call(const char *socket_path, uint32_t kind, const uint8_t *req, size_t req_len, int64_t timeout_ms) {
    ember_rpc_client *c = NULL;
    if (connect_rpc(socket_path, &c) != EMBER_OK) return 1;
    uint8_t resp[EMBER_RPC_MAX_PAYLOAD];
    size_t len = 0;
    uint32_t code = 0;
    int rc = ember_rpc_call(c, kind, req, req_len, resp, sizeof resp, &len, &code, timeout_ms);
    ember_rpc_client_free(c);
    if (rc == EMBER_EREMOTE) {
        /* resp holds the server's message, NUL-terminated (empty from a C handler). */
        fprintf(stderr, "ember-cc: kind %" PRIu32 ": remote error %" PRIu32 " (%s)%s%s\n", kind, code,
                ecd_remote_error_name(code), resp[0] != '\0' ? ": " : "", (const char *)resp);
        return 1;
    }
    if (rc != EMBER_OK) {
        char what[64];
        snprintf(what, sizeof what, "call kind %" PRIu32, kind);
        fail(what, rc);
        return 1;
    }
    if (len != ECD_RESP_LEN) {
        fprintf(stderr, "ember-cc: kind %" PRIu32 ": a %zu-byte answer, expected %u\n", kind, len, ECD_RESP_LEN);
        return 1;
    }
    printf("counter %" PRId64 " offset %" PRId64 "\n", ecd_to_i64(ecd_get_u64(resp)),
           ecd_to_i64(ecd_get_u64(resp + 8)));
    return 0;
}

/* ---- The seqlock ----------------------------------------------------------------- */

static uint64_t now_ns(void) {
    struct timespec t;
    if (clock_gettime(CLOCK_MONOTONIC, &t) != 0) return 0;
    return (uint64_t)t.tv_sec * UINT64_C(1000000000) + (uint64_t)t.tv_nsec;
}

/* Reads the current value; a writer in the middle of a write is EMBER_EAGAIN: retry for
 * a while (a write takes nanoseconds; a writer that died mid-write is EMBER_EPEERGONE). */
static int read_value(ember_seqlock_reader *r, struct ecd_value *v, uint32_t *version) {
    uint8_t buf[ECD_SEQLOCK_CAPACITY];
    size_t len = 0;
    int rc = EMBER_EAGAIN;
    for (int tries = 0; tries < 100000 && rc == EMBER_EAGAIN; tries++)
        rc = ember_seqlock_reader_read(r, buf, sizeof buf, &len, version);
    if (rc != EMBER_OK) return rc;
    if (len != ECD_VALUE_LEN) return EMBER_EBADMSG;
    ecd_value_decode(buf, v);
    return EMBER_OK;
}

static int watch(const char *segment_arg, long k, int64_t timeout_ms) {
    char name[256];
    if (!ecd_shm_name(segment_arg, name, sizeof name)) {
        fprintf(stderr, "ember-cc: bad segment name '%s'\n", segment_arg);
        return 2;
    }
    ember_seqlock_reader *r = NULL;
    int rc = ember_seqlock_reader_open(name, ECD_FINGERPRINT, &r);
    if (rc != EMBER_OK) {
        char what[sizeof name + 64];
        snprintf(what, sizeof what, "seqlock %s%s", name,
                 rc == EMBER_EBADMSG ? " (not an ember-cd segment: wrong fingerprint or layout)" : "");
        fail(what, rc);
        return 1;
    }
    int status = 0;
    uint32_t version = 0; /* 0: nothing read yet, so the first wait returns the current value */
    for (long i = 0; i < k; i++) {
        rc = ember_seqlock_reader_wait_change(r, version, timeout_ms);
        struct ecd_value v;
        if (rc == EMBER_OK) rc = read_value(r, &v, &version);
        if (rc != EMBER_OK) {
            fail(rc == EMBER_EPEERGONE ? "seqlock (the daemon died)" : "seqlock", rc);
            status = 1;
            break;
        }
        uint64_t now = now_ns();
        uint64_t age_us = now > v.mono_ns ? (now - v.mono_ns) / 1000 : 0;
        printf("counter %" PRId64 " ticks %" PRIu64 " offset %" PRId64 " age_us %" PRIu64 "\n", v.counter, v.ticks,
               v.offset, age_us);
        fflush(stdout);
    }
    ember_seqlock_reader_free(r);
    return status;
}

/* ---- The command line ------------------------------------------------------------ */

int main(int argc, char **argv) {
    /* A daemon gone mid-call is EMBER_EPEERGONE, never a SIGPIPE death; ignoring it
     * spares the library masking it around each write. */
    signal(SIGPIPE, SIG_IGN);
    int64_t timeout_ms = 5000;
    int a = 1;
    if (a < argc && strcmp(argv[a], "-t") == 0) {
        if (a + 1 >= argc || !parse_i64(argv[a + 1], &timeout_ms) || timeout_ms < 0) {
            usage();
            return 2;
        }
        a += 2;
    }
    if (argc - a < 3) {
        usage();
        return 2;
    }
    const char *socket_path = argv[a], *segment = argv[a + 1], *cmd = argv[a + 2];
    int nargs = argc - a - 3;
    char **args = argv + a + 3;

    if (strcmp(cmd, "get") == 0 && nargs == 0) return call(socket_path, ECD_KIND_GET, NULL, 0, timeout_ms);
    if (strcmp(cmd, "add") == 0 && nargs == 1) {
        int64_t n;
        if (!parse_i64(args[0], &n)) {
            fprintf(stderr, "ember-cc: add: '%s' is not a whole number\n", args[0]);
            return 2;
        }
        uint8_t req[ECD_ADD_REQ_LEN];
        ecd_put_u64(req, ecd_from_i64(n));
        return call(socket_path, ECD_KIND_ADD, req, sizeof req, timeout_ms);
    }
    if (strcmp(cmd, "watch") == 0 && nargs == 1) {
        int64_t k;
        if (!parse_i64(args[0], &k) || k < 1 || k > 1000000) {
            fprintf(stderr, "ember-cc: watch: '%s' is not a count from 1 to 1000000\n", args[0]);
            return 2;
        }
        return watch(segment, (long)k, timeout_ms);
    }
    if (strcmp(cmd, "bogus") == 0 && nargs == 0) return call(socket_path, KIND_BOGUS, NULL, 0, timeout_ms);
    usage();
    return 2;
}
