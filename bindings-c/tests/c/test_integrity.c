/* Integrity by medium through the C ABI: frames whose payload is not covered by the checksum
 * (EMBER_FLAG_UNCHECKED), each sender's integrity setting (its default, and refusing unchecked
 * frames once set to EMBER_INTEGRITY_CHECKED), and receivers that require checked payloads
 * (EMBER_EUNCHECKED, the frame skipped, the next one received) on pipes, FIFOs, Unix
 * sockets, POSIX message queues and the accumulator. Built by `cargo xtask test` with
 * gcc -std=c11 -Wall -Wextra -Werror -pedantic, run under ASan+UBSan and under valgrind. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static uint8_t big[EMBER_PIPE_MAX_FRAME];

/* A frame of `seq` carrying "abc", checked or not. */
static size_t frame(uint32_t seq, int unchecked, uint8_t *out, size_t cap) {
    size_t len = 0;
    uint8_t flags = unchecked ? EMBER_FLAG_UNCHECKED : 0;
    CHECK_CODE(ember_frame_encode(9, seq, flags, (const uint8_t *)"abc", 3, out, cap, &len), EMBER_OK);
    return len;
}

static void test_unchecked_frames(void) {
    uint8_t buf[64];
    size_t len = frame(7, 1, buf, sizeof buf);
    CHECK(len == EMBER_HEADER_LEN + 3);
    CHECK(buf[3] == EMBER_FLAG_UNCHECKED);
    ember_frame_info info;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_OK);
    CHECK(info.seq == 7 && info.flags == EMBER_FLAG_UNCHECKED && info.payload_len == 3);
    /* The payload is not covered: a changed payload still decodes... */
    buf[EMBER_HEADER_LEN] ^= 0xFF;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_OK);
    /* ...but the header is: a changed sequence number does not. */
    buf[8] ^= 1;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_EBADMSG);
    /* A checked frame's payload is covered. */
    len = frame(8, 0, buf, sizeof buf);
    buf[EMBER_HEADER_LEN] ^= 0xFF;
    CHECK_CODE(ember_frame_decode(buf, len, &info), EMBER_EBADMSG);
    /* The one critical bit still unknown is refused. */
    CHECK_CODE(ember_frame_encode(1, 1, 0x08, (const uint8_t *)"x", 1, buf, sizeof buf, &len), EMBER_EINVAL);
    const char *s = ember_strerror(EMBER_EUNCHECKED);
    CHECK(s != NULL && strcmp(s, "unknown error") != 0);
}

static void test_accumulator(void) {
    ember_accumulator *acc = NULL;
    CHECK_CODE(ember_accumulator_new(&acc), EMBER_OK);
    uint8_t stream[128];
    size_t n = frame(1, 1, stream, sizeof stream);
    n += frame(2, 0, stream + n, sizeof stream - n);
    size_t consumed = 0, len = 0;
    /* Accepted by default. */
    CHECK_CODE(ember_accumulator_feed(acc, stream, n, &consumed, big, sizeof big, &len), EMBER_OK);
    size_t first = consumed;
    CHECK_CODE(ember_accumulator_feed(acc, stream + first, n - first, &consumed, big, sizeof big, &len), EMBER_OK);
    /* Required: the unchecked frame is refused and skipped, the checked one follows. */
    CHECK_CODE(ember_accumulator_require_checked(acc, 1), EMBER_OK);
    CHECK_CODE(ember_accumulator_feed(acc, stream, n, &consumed, big, sizeof big, &len), EMBER_EUNCHECKED);
    CHECK(consumed == first);
    CHECK_CODE(ember_accumulator_feed(acc, stream + first, n - first, &consumed, big, sizeof big, &len), EMBER_OK);
    ember_frame_info info;
    CHECK_CODE(ember_frame_decode(big, len, &info), EMBER_OK);
    CHECK(info.seq == 2);
    CHECK_CODE(ember_accumulator_require_checked(acc, 0), EMBER_OK);
    CHECK_CODE(ember_accumulator_require_checked(NULL, 1), EMBER_EINVAL);
    ember_accumulator_free(acc);
}

static void test_pipe(void) {
    ember_pipe_reader *r = NULL;
    ember_pipe_writer *w = NULL;
    CHECK_CODE(ember_pipe_new(&r, &w), EMBER_OK);
    uint8_t checked[64], unchecked[64];
    size_t lc = frame(2, 0, checked, sizeof checked), lu = frame(1, 1, unchecked, sizeof unchecked);
    size_t got = 0;
    ember_frame_info info;
    /* A pipe's default: either kind goes. */
    CHECK_CODE(ember_pipe_writer_integrity(w), EMBER_INTEGRITY_UNCHECKED);
    CHECK_CODE(ember_pipe_writer_send(w, unchecked, lu), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
    CHECK(got == lu);
    /* Forced on: an unchecked frame is refused, nothing written. */
    CHECK_CODE(ember_pipe_writer_set_integrity(w, EMBER_INTEGRITY_CHECKED), EMBER_OK);
    CHECK_CODE(ember_pipe_writer_integrity(w), EMBER_INTEGRITY_CHECKED);
    CHECK_CODE(ember_pipe_writer_send(w, unchecked, lu), EMBER_EUNCHECKED);
    CHECK_CODE(ember_pipe_writer_send(w, checked, lc), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 2);
    /* A reader that requires checked payloads skips the unchecked frame. */
    CHECK_CODE(ember_pipe_writer_set_integrity(w, EMBER_INTEGRITY_UNCHECKED), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_require_checked(r, 1), EMBER_OK);
    CHECK_CODE(ember_pipe_writer_send(w, unchecked, lu), EMBER_OK);
    CHECK_CODE(ember_pipe_writer_send(w, checked, lc), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_EUNCHECKED);
    CHECK_CODE(ember_pipe_reader_recv(r, big, sizeof big, &got), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 2);
    /* Bad arguments. */
    CHECK_CODE(ember_pipe_writer_set_integrity(w, 7), EMBER_EINVAL);
    CHECK_CODE(ember_pipe_writer_set_integrity(NULL, EMBER_INTEGRITY_CHECKED), EMBER_EINVAL);
    CHECK_CODE(ember_pipe_writer_integrity(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_pipe_reader_require_checked(NULL, 1), EMBER_EINVAL);
    ember_pipe_writer_free(w);
    ember_pipe_reader_free(r);
}

static void test_socket(int type) {
    char path[64];
    snprintf(path, sizeof path, "@ember-c-integrity-%d-%d", (int)getpid(), type);
    ember_uds_listener *l = NULL;
    ember_socket *a = NULL, *b = NULL;
    CHECK_CODE(ember_uds_listen(path, type, &l), EMBER_OK);
    CHECK_CODE(ember_uds_connect(path, type, &a), EMBER_OK);
    CHECK_CODE(ember_uds_accept(l, 1000, &b, NULL), EMBER_OK);
    uint8_t checked[64], unchecked[64];
    size_t lc = frame(2, 0, checked, sizeof checked), lu = frame(1, 1, unchecked, sizeof unchecked);
    size_t got = 0;
    ember_frame_info info;
    CHECK_CODE(ember_socket_integrity(a), EMBER_INTEGRITY_UNCHECKED); /* a Unix socket */
    CHECK_CODE(ember_socket_set_integrity(a, EMBER_INTEGRITY_CHECKED), EMBER_OK);
    CHECK_CODE(ember_socket_integrity(a), EMBER_INTEGRITY_CHECKED);
    CHECK_CODE(ember_socket_send(a, unchecked, lu), EMBER_EUNCHECKED);
    CHECK_CODE(ember_socket_set_integrity(a, EMBER_INTEGRITY_UNCHECKED), EMBER_OK);
    CHECK_CODE(ember_socket_require_checked(b, 1), EMBER_OK);
    CHECK_CODE(ember_socket_send(a, unchecked, lu), EMBER_OK);
    CHECK_CODE(ember_socket_send(a, checked, lc), EMBER_OK);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, 1000), EMBER_EUNCHECKED);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, 1000), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 2);
    CHECK_CODE(ember_socket_require_checked(b, 0), EMBER_OK);
    CHECK_CODE(ember_socket_send(a, unchecked, lu), EMBER_OK);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, 1000), EMBER_OK);
    CHECK(got == lu);
    CHECK_CODE(ember_socket_set_integrity(a, -1), EMBER_EINVAL);
    CHECK_CODE(ember_socket_set_integrity(NULL, EMBER_INTEGRITY_CHECKED), EMBER_EINVAL);
    CHECK_CODE(ember_socket_integrity(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_socket_require_checked(NULL, 1), EMBER_EINVAL);
    ember_socket_free(a);
    ember_socket_free(b);
    ember_uds_listener_free(l);
}

static void test_mq(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-integrity-%d", (int)getpid());
    ember_mq *q = NULL;
    CHECK_CODE(ember_mq_create(name, 4, 256, EMBER_MQ_BOTH, &q), EMBER_OK);
    uint8_t checked[64], unchecked[64];
    size_t lc = frame(2, 0, checked, sizeof checked), lu = frame(1, 1, unchecked, sizeof unchecked);
    size_t got = 0;
    ember_frame_info info;
    CHECK_CODE(ember_mq_integrity(q), EMBER_INTEGRITY_UNCHECKED);
    CHECK_CODE(ember_mq_set_integrity(q, EMBER_INTEGRITY_CHECKED), EMBER_OK);
    CHECK_CODE(ember_mq_integrity(q), EMBER_INTEGRITY_CHECKED);
    CHECK_CODE(ember_mq_send(q, unchecked, lu, 0, 0), EMBER_EUNCHECKED);
    CHECK_CODE(ember_mq_set_integrity(q, EMBER_INTEGRITY_UNCHECKED), EMBER_OK);
    CHECK_CODE(ember_mq_require_checked(q, 1), EMBER_OK);
    CHECK_CODE(ember_mq_send(q, unchecked, lu, 0, 0), EMBER_OK);
    CHECK_CODE(ember_mq_send(q, checked, lc, 0, 0), EMBER_OK);
    CHECK_CODE(ember_mq_recv(q, big, sizeof big, &got, NULL, 1000), EMBER_EUNCHECKED);
    CHECK_CODE(ember_mq_recv(q, big, sizeof big, &got, NULL, 1000), EMBER_OK);
    CHECK_CODE(ember_frame_decode(big, got, &info), EMBER_OK);
    CHECK(info.seq == 2);
    CHECK_CODE(ember_mq_set_integrity(q, 2), EMBER_EINVAL);
    CHECK_CODE(ember_mq_set_integrity(NULL, EMBER_INTEGRITY_CHECKED), EMBER_EINVAL);
    CHECK_CODE(ember_mq_integrity(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_mq_require_checked(NULL, 1), EMBER_EINVAL);
    ember_mq_free(q);
}

int main(void) {
    test_unchecked_frames();
    test_accumulator();
    test_pipe();
    test_socket(EMBER_UDS_STREAM);
    test_socket(EMBER_UDS_SEQPACKET);
    test_mq();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    puts("test_integrity: ok");
    return 0;
}
