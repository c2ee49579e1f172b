/* The C ABI's frames, accumulator, pipes and message queues, every error path included, and the wire
 * test against a Rust process. Built by `cargo xtask test` with
 * gcc -std=c11 -Wall -Wextra -Werror -pedantic, run under ASan+UBSan and under valgrind.
 * The Rust peer's path is in the environment variable EMBER_WIRE_PEER. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static uint8_t big[EMBER_PIPE_MAX_FRAME];

static void test_strerror(void) {
    const int codes[] = {EMBER_OK,       EMBER_EINVAL,    EMBER_ENOSPC, EMBER_EAGAIN,
                         EMBER_ETIMEDOUT, EMBER_EPEERGONE, EMBER_EBADMSG, EMBER_ETOOBIG,
                         EMBER_EOS,      EMBER_EINTERNAL, EMBER_ELIMIT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = ember_strerror(codes[i]);
        CHECK(s != NULL && strlen(s) > 0 && strcmp(s, "unknown error") != 0);
    }
    CHECK(strcmp(ember_strerror(12345), "unknown error") == 0);
    CHECK(ember_last_os_error() == 0);
    /* No limit reached yet in this thread; every limit has a source. */
    int which = -1;
    uint64_t value = 1, requested = 1;
    CHECK_CODE(ember_last_limit(&which, &value, &requested), EMBER_OK);
    CHECK(which == EMBER_LIMIT_NONE && value == 0 && requested == 0);
    CHECK(strcmp(ember_limit_source(EMBER_LIMIT_MQ_MSG_MAX), "/proc/sys/fs/mqueue/msg_max") == 0);
    CHECK(strcmp(ember_limit_source(EMBER_LIMIT_RLIMIT_MSGQUEUE), "RLIMIT_MSGQUEUE") == 0);
    CHECK(strcmp(ember_limit_source(99), "unknown limit") == 0);
}

static void test_frames(void) {
    _Alignas(8) uint8_t buf[64];
    size_t len = 0;
    const char *msg = "hello";
    CHECK_CODE(ember_frame_encode(3, 42, EMBER_FLAG_RESPONSE, (const uint8_t *)msg, 5, buf, sizeof buf, &len), EMBER_OK);
    CHECK(len == EMBER_HEADER_LEN + 5);
    ember_frame_info info;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_OK);
    CHECK(info.kind == 3 && info.seq == 42 && info.flags == EMBER_FLAG_RESPONSE);
    CHECK(info.payload_offset == EMBER_HEADER_LEN && info.payload_len == 5 && info.frame_len == len);
    CHECK(memcmp(buf + info.payload_offset, "hello", 5) == 0);
    /* An empty payload, with a NULL pointer. */
    CHECK_CODE(ember_frame_encode(1, 1, 0, NULL, 0, buf, sizeof buf, &len), EMBER_OK);
    CHECK(len == EMBER_HEADER_LEN);
    /* Errors: NULL pointers, a small buffer, unknown critical flags, corrupt bytes. */
    CHECK_CODE(ember_frame_encode(1, 1, 0, NULL, 5, buf, sizeof buf, &len), EMBER_EINVAL);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, NULL, 64, &len), EMBER_EINVAL);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, buf, sizeof buf, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, buf, 10, &len), EMBER_ENOSPC);
    CHECK_CODE(ember_frame_encode(1, 1, 0x08, (const uint8_t *)msg, 5, buf, sizeof buf, &len), EMBER_EINVAL);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, (size_t)EMBER_MAX_PAYLOAD_LEN + 1, buf, sizeof buf, &len), EMBER_ETOOBIG);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, buf, sizeof buf, &len), EMBER_OK);
    CHECK_CODE(ember_frame_decode(NULL, len, &info), EMBER_EINVAL);
    CHECK_CODE(ember_frame_decode(NULL, 0, &info), EMBER_EINVAL);
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, buf, 0, &len), EMBER_ENOSPC);
    /* The length may sit inside the output buffer (outputs are written once, at the end). */
    CHECK_CODE(ember_frame_encode(1, 1, 0, (const uint8_t *)msg, 5, buf, 40, (size_t *)(void *)(buf + 40)), EMBER_OK);
    CHECK_CODE(ember_frame_decode(buf, len, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_frame_decode(buf, len - 1, &info), EMBER_EBADMSG);
    uint8_t longer[80];
    memcpy(longer, buf, len);
    longer[len] = 0;
    CHECK_CODE(ember_frame_decode(longer, len + 1, &info), EMBER_EBADMSG);
    buf[len - 1] ^= 0xFF;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_EBADMSG);
}

static void test_accumulator(void) {
    ember_accumulator *acc = NULL;
    CHECK_CODE(ember_accumulator_new(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_accumulator_new(&acc), EMBER_OK);
    /* Garbage, then two frames, fed in pieces of 7 bytes. */
    uint8_t stream[128];
    size_t n = 0, len = 0;
    memcpy(stream, "garbage!", 8);
    n = 8;
    CHECK_CODE(ember_frame_encode(5, 1, 0, (const uint8_t *)"one", 3, stream + n, sizeof stream - n, &len), EMBER_OK);
    n += len;
    CHECK_CODE(ember_frame_encode(5, 2, 0, (const uint8_t *)"two", 3, stream + n, sizeof stream - n, &len), EMBER_OK);
    n += len;
    uint32_t seqs[4];
    size_t got = 0, at = 0;
    while (at < n) {
        size_t piece = n - at < 7 ? n - at : 7;
        const uint8_t *p = stream + at;
        size_t left = piece;
        while (left > 0) {
            size_t used = 0, flen = 0;
            int r = ember_accumulator_feed(acc, p, left, &used, big, sizeof big, &flen);
            if (r == EMBER_OK) {
                ember_frame_info info;
                CHECK_CODE(ember_frame_decode(big, flen, &info), EMBER_OK);
                if (got < 4) seqs[got++] = info.seq;
            } else {
                CHECK(r == EMBER_EAGAIN || r == EMBER_EBADMSG);
            }
            CHECK(used <= left);
            p += used;
            left -= used;
            if (r == EMBER_EAGAIN) break;
        }
        at += piece;
    }
    CHECK(got == 2 && seqs[0] == 1 && seqs[1] == 2);
    size_t used = 0, flen = 0;
    CHECK_CODE(ember_accumulator_feed(acc, stream, 4, &used, big, 100, &flen), EMBER_ENOSPC);
    CHECK(used == 0);
    CHECK_CODE(ember_accumulator_feed(NULL, stream, 4, &used, big, sizeof big, &flen), EMBER_EINVAL);
    CHECK_CODE(ember_accumulator_feed(acc, NULL, 4, &used, big, sizeof big, &flen), EMBER_EINVAL);
    ember_accumulator_free(acc);
    ember_accumulator_free(NULL);
}

static void test_pipes(void) {
    ember_pipe_reader *r = NULL;
    ember_pipe_writer *w = NULL;
    CHECK_CODE(ember_pipe_new(NULL, &w), EMBER_EINVAL);
    CHECK_CODE(ember_pipe_new(&r, &w), EMBER_OK);
    CHECK(ember_pipe_reader_fd(r) >= 0 && ember_pipe_writer_fd(w) >= 0);
    CHECK_CODE(ember_pipe_reader_fd(NULL), EMBER_EINVAL);
    uint8_t frame[64];
    size_t len = 0, got = 0;
    for (uint32_t i = 0; i < 10; i++) {
        CHECK_CODE(ember_frame_encode(9, i, 0, (const uint8_t *)"data", 4, frame, sizeof frame, &len), EMBER_OK);
        CHECK_CODE(ember_pipe_writer_send(w, frame, len), EMBER_OK);
    }
    for (uint32_t i = 0; i < 10; i++) {
        CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
        ember_frame_info info;
        CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
        CHECK(info.kind == 9 && info.seq == i && info.payload_len == 4);
    }
    /* Errors: half a frame is refused; a small buffer; nothing there (nonblocking). */
    CHECK_CODE(ember_pipe_writer_send(w, frame, len - 1), EMBER_EBADMSG);
    CHECK_CODE(ember_pipe_writer_send(NULL, frame, len), EMBER_EINVAL);
    /* Any buffer that holds the frame takes it; a shorter one is refused and the frame
     * stays for the next receive. */
    {
        uint8_t payload[200], large[256];
        size_t large_len = 0;
        memset(payload, 7, sizeof payload);
        CHECK_CODE(ember_frame_encode(9, 77, 0, payload, sizeof payload, large, sizeof large, &large_len), EMBER_OK);
        CHECK_CODE(ember_pipe_writer_send(w, frame, len), EMBER_OK);
        uint8_t exact[64];
        CHECK_CODE(ember_pipe_reader_recv(r, exact, len, &got), EMBER_OK);
        CHECK(got == len);
        CHECK_CODE(ember_pipe_writer_send(w, large, large_len), EMBER_OK);
        CHECK_CODE(ember_pipe_reader_recv(r, big, 100, &got), EMBER_ENOSPC);
        CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
        ember_frame_info info;
        CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
        CHECK(got == large_len && info.seq == 77 && info.payload_len == sizeof payload);
    }
    CHECK_CODE(ember_pipe_reader_set_nonblocking(r, 1), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_EAGAIN);
    /* A nonblocking writer on a full pipe: EMBER_EAGAIN, and nothing half-sent. */
    CHECK_CODE(ember_pipe_writer_set_nonblocking(NULL, 1), EMBER_EINVAL);
    CHECK_CODE(ember_pipe_writer_set_nonblocking(w, 1), EMBER_OK);
    int sent = 0, rc = EMBER_OK;
    while (sent < 100000 && (rc = ember_pipe_writer_send(w, frame, len)) == EMBER_OK) sent++;
    CHECK_CODE(rc, EMBER_EAGAIN);
    CHECK(sent > 0 && sent < 100000);
    int drained = 0;
    while (ember_pipe_reader_recv(r, big, sizeof big, &got) == EMBER_OK) {
        ember_frame_info info;
        CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
        drained++;
    }
    CHECK(drained == sent);
    CHECK_CODE(ember_pipe_writer_set_nonblocking(w, 0), EMBER_OK);
    /* The writer gone: end of stream. */
    ember_pipe_writer_free(w);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_EPEERGONE);
    ember_pipe_reader_free(r);
    /* The reader gone: the writer is told, and SIGPIPE (default action here) kills nothing. */
    CHECK(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    CHECK_CODE(ember_pipe_new(&r, &w), EMBER_OK);
    ember_pipe_reader_free(r);
    CHECK_CODE(ember_pipe_writer_send(w, frame, len), EMBER_EPEERGONE);
    ember_pipe_writer_free(w);
    /* Bad fds. */
    r = (ember_pipe_reader *)&len; /* a failed call still sets *out to NULL */
    CHECK_CODE(ember_pipe_reader_from_fd(-1, &r), EMBER_EINVAL);
    CHECK(r == NULL);
    CHECK_CODE(ember_pipe_writer_from_fd(-1, &w), EMBER_EINVAL);
    ember_pipe_reader_free(NULL);
    ember_pipe_writer_free(NULL);
}

static void test_mq(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-test-%d", (int)getpid());
    ember_mq *q = NULL, *q2 = NULL;
    CHECK_CODE(ember_mq_create("no-slash", 4, 256, EMBER_MQ_BOTH, &q), EMBER_EINVAL);
    CHECK_CODE(ember_mq_create("/a/b", 4, 256, EMBER_MQ_BOTH, &q), EMBER_EINVAL);
    CHECK_CODE(ember_mq_create(name, 4, 256, 9, &q), EMBER_EINVAL);
    CHECK_CODE(ember_mq_create(NULL, 4, 256, EMBER_MQ_BOTH, &q), EMBER_EINVAL);
    CHECK_CODE(ember_mq_create(name, 4, 256, EMBER_MQ_BOTH, &q), EMBER_OK);
    CHECK(ember_mq_fd(q) >= 0);
    CHECK_CODE(ember_mq_create(name, 4, 256, EMBER_MQ_BOTH, &q2), EMBER_EOS);
    CHECK(ember_last_os_error() == EEXIST);
    CHECK_CODE(ember_mq_open(name, EMBER_MQ_SEND, &q2), EMBER_OK);
    uint8_t frame[64];
    size_t len = 0, got = 0;
    uint32_t prio = 0;
    CHECK_CODE(ember_frame_encode(1, 10, 0, (const uint8_t *)"low", 3, frame, sizeof frame, &len), EMBER_OK);
    CHECK_CODE(ember_mq_send(q2, frame, len, 1, EMBER_FOREVER), EMBER_OK);
    CHECK_CODE(ember_frame_encode(1, 20, 0, (const uint8_t *)"high", 4, frame, sizeof frame, &len), EMBER_OK);
    CHECK_CODE(ember_mq_send(q2, frame, len, 5, 0), EMBER_OK);
    ember_frame_info info;
    CHECK_CODE(ember_mq_recv(q, big, sizeof big, &got, &prio, 1000), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 20 && prio == 5);
    CHECK_CODE(ember_mq_recv(q, big, sizeof big, &got, NULL, 1000), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 10);
    /* Empty: a zero timeout returns at once; a small buffer; half a frame; NULLs. */
    CHECK_CODE(ember_mq_recv(q, big, sizeof big, &got, NULL, 0), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_mq_recv(q, big, 16, &got, NULL, 0), EMBER_ENOSPC);
    CHECK_CODE(ember_mq_send(q2, frame, len - 1, 0, 0), EMBER_EBADMSG);
    CHECK_CODE(ember_mq_send(NULL, frame, len, 0, 0), EMBER_EINVAL);
    CHECK_CODE(ember_mq_recv(q, NULL, sizeof big, &got, NULL, 0), EMBER_EINVAL);
    ember_mq_free(q2);
    ember_mq_free(q); /* the creator's handle unlinks the queue */
    CHECK_CODE(ember_mq_open(name, EMBER_MQ_BOTH, &q2), EMBER_EOS);
    CHECK(ember_last_os_error() == ENOENT);
    CHECK_CODE(ember_mq_unlink(name), EMBER_EOS);
    ember_mq_free(NULL);
}

/* C and Rust exchange frames through two pipes: C sends kind 7 "msg <seq>", the Rust
 * peer checks each and answers kind 8 "echo <seq>", which C checks. */
static void test_wire_with_rust(void) {
    const char *peer = getenv("EMBER_WIRE_PEER");
    if (peer == NULL) {
        fprintf(stderr, "EMBER_WIRE_PEER is not set (cargo xtask test sets it)\n");
        failures++;
        return;
    }
    int to_peer[2], from_peer[2];
    CHECK(pipe(to_peer) == 0 && pipe(from_peer) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(to_peer[0], 0);
        dup2(from_peer[1], 1);
        close(to_peer[0]); close(to_peer[1]); close(from_peer[0]); close(from_peer[1]);
        execl(peer, peer, (char *)NULL);
        _exit(127);
    }
    close(to_peer[0]);
    close(from_peer[1]);
    ember_pipe_writer *w = NULL;
    ember_pipe_reader *r = NULL;
    CHECK_CODE(ember_pipe_writer_from_fd(to_peer[1], &w), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_from_fd(from_peer[0], &r), EMBER_OK);
    uint8_t frame[64];
    char text[32];
    for (uint32_t i = 0; i < 200; i++) {
        size_t len = 0, got = 0;
        int n = snprintf(text, sizeof text, "msg %u", (unsigned)i);
        CHECK_CODE(ember_frame_encode(7, i, 0, (const uint8_t *)text, (size_t)n, frame, sizeof frame, &len), EMBER_OK);
        CHECK_CODE(ember_pipe_writer_send(w, frame, len), EMBER_OK);
        CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
        ember_frame_info info;
        CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
        n = snprintf(text, sizeof text, "echo %u", (unsigned)i);
        CHECK(info.kind == 8 && info.seq == i && info.flags == EMBER_FLAG_RESPONSE);
        CHECK(info.payload_len == (size_t)n && memcmp(big + info.payload_offset, text, (size_t)n) == 0);
    }
    ember_pipe_writer_free(w);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ember_pipe_reader_free(r);
}

/* The library loaded is the release the header describes. */
static void test_version(void) {
    unsigned maj = 99, min = 99, pat = 99;
    CHECK(ember_version() != NULL);
    CHECK(sscanf(ember_version(), "%u.%u.%u", &maj, &min, &pat) == 3);
    CHECK(maj == EMBER_VERSION_MAJOR && min == EMBER_VERSION_MINOR && pat == EMBER_VERSION_PATCH);
}

int main(void) {
    test_version();
    test_strerror();
    test_frames();
    test_accumulator();
    test_pipes();
    test_mq();
    test_wire_with_rust();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
