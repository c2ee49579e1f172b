/* C and Rust exchange frames over every transport, in both directions: C sends kind 7
 * "msg <seq>", the Rust peer (bindings-c/examples/wire_peer, through ember-ipc-linux) checks
 * each and answers kind 8 "echo <seq>", which C checks. Also the FIFO and Unix-socket
 * calls' error paths, peer credentials, and file descriptors passed with frames.
 * The peer's path is in EMBER_WIRE_PEER (cargo xtask test sets it). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define COUNT 50
#define SHM_FP 0x571E00u

static uint8_t big[EMBER_SOCKET_MAX_FRAME];

/* Starts the peer with argv; its stdin is a pipe whose write end goes in *stdin_w. */
static pid_t spawn_peer(const char *const argv[], int *stdin_w) {
    int p[2];
    *stdin_w = -1;
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[0], 0);
        close(p[0]);
        close(p[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[0]);
    *stdin_w = p[1];
    return pid;
}

/* Closes the peer's stdin and waits for it, 60 s at most: a peer still running then is
 * killed (a failed exchange must fail the test, not hang it). */
static int finish_peer(pid_t pid, int stdin_w) {
    if (stdin_w >= 0) close(stdin_w);
    if (pid <= 0) return 0;
    int status = 0;
    for (int i = 0; i < 6000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (r < 0) return 0;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "the peer (pid %d) hangs: killed\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return 0;
}

typedef int (*send_fn)(void *tx, const uint8_t *frame, size_t len);
typedef int (*recv_fn)(void *rx, uint8_t *buf, size_t cap, size_t *len);

/* COUNT round trips; returns the number of good echoes. */
static int exchange(const char *what, void *tx, send_fn send, void *rx, recv_fn recv) {
    uint8_t frame[64];
    char text[32];
    int good = 0;
    for (uint32_t i = 0; i < COUNT; i++) {
        size_t len = 0, got = 0;
        int n = snprintf(text, sizeof text, "msg %u", (unsigned)i);
        CHECK_CODE(ember_frame_encode(7, i, 0, (const uint8_t *)text, (size_t)n, frame, sizeof frame, &len), EMBER_OK);
        int rc = send(tx, frame, len);
        if (rc != EMBER_OK) {
            fprintf(stderr, "%s: send %u: %s\n", what, (unsigned)i, ember_strerror(rc));
            break;
        }
        rc = recv(rx, big, sizeof big, &got);
        if (rc != EMBER_OK) {
            fprintf(stderr, "%s: recv %u: %s\n", what, (unsigned)i, ember_strerror(rc));
            break;
        }
        ember_frame_info info;
        n = snprintf(text, sizeof text, "echo %u", (unsigned)i);
        if (ember_frame_decode(big, got, &info) == EMBER_OK && info.kind == 8 && info.seq == i &&
            info.payload_len == (size_t)n && memcmp(big + info.payload_offset, text, (size_t)n) == 0) {
            good++;
        }
    }
    if (good != COUNT) fprintf(stderr, "%s: %d of %d echoes right\n", what, good, COUNT);
    return good;
}

static int pipe_send(void *w, const uint8_t *f, size_t n) { return ember_pipe_writer_send(w, f, n); }
/* A FIFO read before any writer has opened it finds no writer (EPEERGONE), as a read after
 * the last one left does: until the peer has opened its end (slow on emulated boards),
 * that means "not yet". */
static int fifo_recv(void *r, uint8_t *b, size_t c, size_t *n) {
    static int writer_seen;
    int rc = ember_pipe_reader_recv(r, b, c, n);
    for (int tries = 0; rc == EMBER_EPEERGONE && !writer_seen && tries < 4000; tries++) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
        rc = ember_pipe_reader_recv(r, b, c, n);
    }
    if (rc == EMBER_OK) writer_seen = 1;
    return rc;
}
static int mq_send(void *q, const uint8_t *f, size_t n) { return ember_mq_send(q, f, n, 0, 5000); }
static int mq_recv(void *q, uint8_t *b, size_t c, size_t *n) { return ember_mq_recv(q, b, c, n, NULL, 5000); }
static int sock_send(void *s, const uint8_t *f, size_t n) { return ember_socket_send(s, f, n); }
static int sock_recv(void *s, uint8_t *b, size_t c, size_t *n) { return ember_socket_recv(s, b, c, n, 5000); }
static int shm_send(void *s, const uint8_t *f, size_t n) { return ember_spsc_sender_send(s, f, n, 5000); }
static int shm_recv(void *r, uint8_t *b, size_t c, size_t *n) { return ember_spsc_receiver_recv(r, b, c, n, 5000); }

static const char *peer;
static char count_text[16];

static void name_of(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "/tmp/ember-c-wire-%d-%s", (int)getpid(), tag);
}

static void sleep_ms(long ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void over_fifos(void) {
    char to[96], from[96];
    name_of(to, sizeof to, "to.fifo");
    name_of(from, sizeof from, "from.fifo");
    CHECK_CODE(ember_fifo_create(to), EMBER_OK);
    CHECK_CODE(ember_fifo_create(from), EMBER_OK);
    CHECK_CODE(ember_fifo_create(from), EMBER_OK); /* our own FIFO again: accepted */
    ember_pipe_reader *r = NULL;
    ember_pipe_writer *w = NULL;
    /* No reader on `to` yet: a writer cannot open. */
    CHECK_CODE(ember_fifo_open_writer(to, 0, &w), EMBER_EPEERGONE);
    CHECK_CODE(ember_fifo_open_reader(from, 0, &r), EMBER_OK);
    int in;
    const char *argv[] = {peer, "fifo", count_text, to, from, NULL};
    pid_t pid = spawn_peer(argv, &in);
    int rc;
    for (int tries = 0; (rc = ember_fifo_open_writer(to, 0, &w)) == EMBER_EPEERGONE && tries < 2000; tries++) {
        sleep_ms(5);
    }
    CHECK_CODE(rc, EMBER_OK);
    CHECK(exchange("fifo", w, pipe_send, r, fifo_recv) == COUNT);
    ember_pipe_writer_free(w);
    CHECK(finish_peer(pid, in));
    ember_pipe_reader_free(r);
    CHECK_CODE(ember_fifo_remove(to), EMBER_OK);
    CHECK_CODE(ember_fifo_remove(from), EMBER_OK);
    /* A regular file is not a FIFO: refused, never opened or removed. */
    char plain[96];
    name_of(plain, sizeof plain, "plain");
    int fd = open(plain, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_CODE(ember_fifo_create(plain), EMBER_EOS);
    CHECK(ember_last_os_error() == 17 /* EEXIST */);
    CHECK_CODE(ember_fifo_open_reader(plain, 0, &r), EMBER_EOS);
    CHECK(r == NULL);
    CHECK_CODE(ember_fifo_remove(plain), EMBER_EOS);
    CHECK(access(plain, F_OK) == 0);
    unlink(plain);
    CHECK_CODE(ember_fifo_create(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_fifo_open_writer(to, 0, NULL), EMBER_EINVAL);
}

static void over_mqs(void) {
    char to[64], from[64];
    snprintf(to, sizeof to, "/ember-c-wire-%d-to", (int)getpid());
    snprintf(from, sizeof from, "/ember-c-wire-%d-from", (int)getpid());
    ember_mq *tx = NULL, *rx = NULL;
    CHECK_CODE(ember_mq_create(to, 8, 256, EMBER_MQ_SEND, &tx), EMBER_OK);
    CHECK_CODE(ember_mq_create(from, 8, 256, EMBER_MQ_RECEIVE, &rx), EMBER_OK);
    int in;
    const char *argv[] = {peer, "mq", count_text, to, from, NULL};
    pid_t pid = spawn_peer(argv, &in);
    CHECK(exchange("mq", tx, mq_send, rx, mq_recv) == COUNT);
    CHECK(finish_peer(pid, in));
    ember_mq_free(tx);
    ember_mq_free(rx);
}

static void over_unix_sockets(int type, const char *mode) {
    char path[96];
    name_of(path, sizeof path, mode);
    ember_uds_listener *l = NULL;
    CHECK_CODE(ember_uds_listen(path, type, &l), EMBER_OK);
    int in;
    const char *argv[] = {peer, mode, count_text, path, NULL};
    pid_t pid = spawn_peer(argv, &in);
    ember_socket *s = NULL;
    ember_creds creds = {0, 0, 0};
    CHECK_CODE(ember_uds_accept(l, 10000, &s, &creds), EMBER_OK);
    CHECK(creds.pid == (uint32_t)pid && creds.uid == (uint32_t)getuid());
    ember_creds again = {0, 0, 0};
    CHECK_CODE(ember_socket_peer_creds(s, &again), EMBER_OK);
    CHECK(again.pid == creds.pid);
    CHECK(exchange(mode, s, sock_send, s, sock_recv) == COUNT);
    size_t got;
    /* The peer is done after COUNT echoes and leaves when its stdin closes: the connection
     * ends. */
    close(in);
    CHECK_CODE(ember_socket_recv(s, big, sizeof big, &got, 20000), EMBER_EPEERGONE);
    ember_socket_free(s);
    CHECK(finish_peer(pid, -1));
    /* Nobody accepts within the timeout. */
    CHECK_CODE(ember_uds_accept(l, 10, &s, NULL), EMBER_ETIMEDOUT);
    CHECK(s == NULL);
    /* A live listener is never replaced (the check connects to it: done last). */
    ember_uds_listener *twice = NULL;
    CHECK_CODE(ember_uds_listen(path, type, &twice), EMBER_EOS);
    CHECK(ember_last_os_error() == 98 /* EADDRINUSE */);
    ember_uds_listener_free(twice);
    ember_uds_listener_free(l);
    /* The listener's file is gone with it: nobody listens there now. */
    CHECK_CODE(ember_uds_connect(path, type, &s), EMBER_EOS);
    CHECK(ember_last_os_error() == 111 /* ECONNREFUSED */);
    ember_socket_free(s);
    CHECK_CODE(ember_uds_listen(path, 99, &l), EMBER_EINVAL);
    CHECK_CODE(ember_uds_connect(NULL, type, &s), EMBER_EINVAL);
}

static void over_shm_rings(void) {
    char to[64], from[64];
    snprintf(to, sizeof to, "/ember-c-wire-%d-ring-to", (int)getpid());
    snprintf(from, sizeof from, "/ember-c-wire-%d-ring-from", (int)getpid());
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL;
    CHECK_CODE(ember_spsc_sender_create(to, 64 * 1024, SHM_FP, &tx), EMBER_OK);
    int in;
    const char *argv[] = {peer, "shm", count_text, to, from, NULL};
    pid_t pid = spawn_peer(argv, &in);
    int rc;
    /* Until the peer has made its ring: no name yet (EOS), not sized (EINVAL), header not
     * written yet (EAGAIN). */
    for (int tries = 0; tries < 4000; tries++) {
        rc = ember_spsc_receiver_open(from, SHM_FP, &rx);
        if (rc != EMBER_EOS && rc != EMBER_EINVAL && rc != EMBER_EAGAIN) break;
        sleep_ms(5);
    }
    CHECK_CODE(rc, EMBER_OK);
    CHECK(exchange("shm", tx, shm_send, rx, shm_recv) == COUNT);
    CHECK(finish_peer(pid, in));
    /* The peer's sender is gone: its ring reports it. */
    size_t got;
    CHECK_CODE(ember_spsc_receiver_recv(rx, big, sizeof big, &got, 1000), EMBER_EPEERGONE);
    ember_spsc_receiver_free(rx);
    ember_spsc_sender_free(tx);
}

/* A pipe's read end passed with a frame over a seqpacket connection in this process. */
static void fds_with_frames(void) {
    char path[96];
    name_of(path, sizeof path, "fds");
    ember_uds_listener *l = NULL;
    ember_socket *a = NULL, *b = NULL;
    CHECK_CODE(ember_uds_listen(path, EMBER_UDS_SEQPACKET, &l), EMBER_OK);
    CHECK_CODE(ember_uds_connect(path, EMBER_UDS_SEQPACKET, &a), EMBER_OK);
    CHECK_CODE(ember_uds_accept(l, 1000, &b, NULL), EMBER_OK);
    int p[2];
    CHECK(pipe(p) == 0);
    uint8_t frame[64];
    size_t len = 0, got = 0, nfds = 0;
    CHECK_CODE(ember_frame_encode(9, 1, 0, (const uint8_t *)"fd", 2, frame, sizeof frame, &len), EMBER_OK);
    CHECK_CODE(ember_socket_send_fds(a, frame, len, &p[0], 1), EMBER_OK);
    int fds[4] = {-1, -1, -1, -1};
    CHECK_CODE(ember_socket_recv_fds(b, big, sizeof big, &got, fds, 4, &nfds, 1000), EMBER_OK);
    CHECK(got == len && nfds == 1 && fds[0] >= 0 && fds[0] != p[0]);
    /* The received fd reads what is written into the pipe. */
    CHECK(write(p[1], "hi", 2) == 2);
    char two[2] = {0, 0};
    CHECK(read(fds[0], two, 2) == 2 && two[0] == 'h' && two[1] == 'i');
    close(fds[0]);
    /* More fds than the receiver takes: refused whole, nothing leaks. */
    int three[3] = {p[0], p[0], p[1]};
    CHECK_CODE(ember_socket_send_fds(a, frame, len, three, 3), EMBER_OK);
    int probe = dup(0);
    close(probe);
    CHECK_CODE(ember_socket_recv_fds(b, big, sizeof big, &got, fds, 2, &nfds, 1000), EMBER_ETOOBIG);
    int after = dup(0);
    close(after);
    CHECK(after == probe); /* the refused message's three fds were all closed */
    CHECK_CODE(ember_socket_send_fds(a, frame, len, NULL, 1), EMBER_EINVAL);
    int bad = -1;
    CHECK_CODE(ember_socket_send_fds(a, frame, len, &bad, 1), EMBER_EINVAL);
    close(p[0]);
    close(p[1]);
    CHECK(ember_socket_fd(a) >= 0 && ember_uds_listener_fd(l) >= 0);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, 0), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, 20), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_socket_set_nonblocking(b, 1), EMBER_OK);
    CHECK_CODE(ember_socket_recv(b, big, sizeof big, &got, EMBER_FOREVER), EMBER_EAGAIN);
    ember_socket_free(a);
    ember_socket_free(b);
    ember_uds_listener_free(l);
    /* Datagrams, to a bound name in the abstract namespace. */
    char at[96];
    snprintf(at, sizeof at, "@ember-c-wire-%d", (int)getpid());
    ember_socket *d = NULL, *u = NULL;
    CHECK_CODE(ember_uds_dgram(at, &d), EMBER_OK);
    CHECK_CODE(ember_uds_dgram(NULL, &u), EMBER_OK);
    CHECK_CODE(ember_socket_send_to(u, frame, len, at), EMBER_OK);
    CHECK_CODE(ember_socket_recv(d, big, sizeof big, &got, 1000), EMBER_OK);
    CHECK(got == len && memcmp(big, frame, len) == 0);
    CHECK_CODE(ember_socket_send(u, frame, len), EMBER_EOS); /* not connected */
    ember_socket_free(d);
    ember_socket_free(u);
    ember_socket_free(NULL);
    ember_uds_listener_free(NULL);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    peer = getenv("EMBER_WIRE_PEER");
    if (peer == NULL) {
        fprintf(stderr, "EMBER_WIRE_PEER is not set (cargo xtask test sets it)\n");
        return 1;
    }
    snprintf(count_text, sizeof count_text, "%d", COUNT);
    over_fifos();
    over_mqs();
    over_unix_sockets(EMBER_UDS_STREAM, "uds-stream");
    over_unix_sockets(EMBER_UDS_SEQPACKET, "uds-seqpacket");
    over_shm_rings();
    fds_with_frames();
    if (failures == 0) printf("test_wire: ok\n");
    return failures != 0;
}
