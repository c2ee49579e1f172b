/* A SIGINT during every blocking C call: the usual `while (!stop) recv(...)` loop ends when
 * the signal comes, not when data (or a timeout) does. The handler calls
 * ember_canceler_cancel (async-signal-safe) on the canceler installed with
 * ember_set_canceler; each blocking call returns EMBER_ECANCELED, nothing is lost (a frame
 * sent after the reset is received intact), and the bounded sends and connects give up at
 * their timeout with EMBER_ETIMEDOUT when the peer stalls. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

static struct ember_canceler *canceler;
static volatile sig_atomic_t stop;

static void on_sigint(int sig) {
    (void)sig;
    stop = 1;
    ember_canceler_cancel(canceler);
}

static pthread_t target;

static void *interrupt_soon(void *arg) {
    (void)arg;
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_kill(target, SIGINT);
    return NULL;
}

/* Runs `call` while another thread sends SIGINT to this one after 50 ms; the call must
 * return EMBER_ECANCELED, and so must it again at once (the canceler stays cancelled);
 * then the canceler is reset. */
#define CANCELLED_BY_SIGINT(call)                                          \
    do {                                                                   \
        pthread_t t_;                                                      \
        stop = 0;                                                          \
        target = pthread_self();                                           \
        CHECK(pthread_create(&t_, NULL, interrupt_soon, NULL) == 0);       \
        CHECK_CODE((call), EMBER_ECANCELED);                               \
        pthread_join(t_, NULL);                                            \
        CHECK(stop == 1);                                                  \
        CHECK(ember_canceler_is_cancelled(canceler) == 1);                 \
        CHECK_CODE((call), EMBER_ECANCELED);                               \
        CHECK_CODE(ember_canceler_reset(canceler), EMBER_OK);              \
        CHECK(ember_canceler_is_cancelled(canceler) == 0);                 \
    } while (0)

static uint8_t frame[2048];
static size_t frame_len;
static uint8_t buf[65536];

static void make_frame(uint32_t seq) {
    uint8_t payload[1000];
    memset(payload, (int)seq, sizeof payload);
    CHECK_CODE(ember_frame_encode(5, seq, 0, payload, sizeof payload, frame, sizeof frame, &frame_len), EMBER_OK);
}

static void pipes(void) {
    struct ember_pipe_reader *r = NULL;
    struct ember_pipe_writer *w = NULL;
    CHECK_CODE(ember_pipe_new(&r, &w), EMBER_OK);
    size_t len = 0;
    CANCELLED_BY_SIGINT(ember_pipe_reader_recv(r, buf, sizeof buf, &len));
    CANCELLED_BY_SIGINT(ember_pipe_reader_recv_timeout(r, buf, sizeof buf, &len, 30000));
    CHECK_CODE(ember_pipe_reader_recv_timeout(r, buf, sizeof buf, &len, 20), EMBER_ETIMEDOUT);
    make_frame(1);
    CHECK_CODE(ember_pipe_writer_send(w, frame, frame_len), EMBER_OK);
    CHECK_CODE(ember_pipe_reader_recv(r, buf, sizeof buf, &len), EMBER_OK);
    CHECK(len == frame_len && memcmp(buf, frame, len) == 0);
    /* A full pipe (a reader that stopped reading): the sends wait, and are cancelled or
     * time out. */
    CHECK_CODE(ember_pipe_writer_set_nonblocking(w, 1), EMBER_OK);
    while (ember_pipe_writer_send(w, frame, frame_len) == EMBER_OK) {
    }
    CHECK_CODE(ember_pipe_writer_send(w, frame, frame_len), EMBER_EAGAIN);
    CHECK_CODE(ember_pipe_writer_send_timeout(w, frame, frame_len, 1000), EMBER_EAGAIN);
    CHECK_CODE(ember_pipe_writer_set_nonblocking(w, 0), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_pipe_writer_send(w, frame, frame_len));
    CANCELLED_BY_SIGINT(ember_pipe_writer_send_timeout(w, frame, frame_len, 30000));
    CHECK_CODE(ember_pipe_writer_send_timeout(w, frame, frame_len, 20), EMBER_ETIMEDOUT);
    ember_pipe_reader_free(r);
    ember_pipe_writer_free(w);
}

static void queues(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-cancel-%d", (int)getpid());
    struct ember_mq *q = NULL;
    CHECK_CODE(ember_mq_create(name, 2, 2048, EMBER_MQ_BOTH, &q), EMBER_OK);
    size_t len = 0;
    uint32_t prio = 0;
    CANCELLED_BY_SIGINT(ember_mq_recv(q, buf, sizeof buf, &len, &prio, EMBER_FOREVER));
    make_frame(2);
    CHECK_CODE(ember_mq_send(q, frame, frame_len, 0, EMBER_FOREVER), EMBER_OK);
    CHECK_CODE(ember_mq_send(q, frame, frame_len, 0, EMBER_FOREVER), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_mq_send(q, frame, frame_len, 0, EMBER_FOREVER));
    CHECK_CODE(ember_mq_send(q, frame, frame_len, 0, 20), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_mq_recv(q, buf, sizeof buf, &len, &prio, EMBER_FOREVER), EMBER_OK);
    CHECK(len == frame_len && memcmp(buf, frame, len) == 0);
    ember_mq_free(q); /* the creator's handle unlinks the queue */
}

static void sockets(int type) {
    char name[64];
    snprintf(name, sizeof name, "@ember-c-cancel-%d-%d", (int)getpid(), type);
    struct ember_uds_listener *l = NULL;
    CHECK_CODE(ember_uds_listen(name, type, &l), EMBER_OK);
    struct ember_socket *c = NULL, *s = NULL;
    CANCELLED_BY_SIGINT(ember_uds_accept(l, EMBER_FOREVER, &s, NULL));
    CHECK_CODE(ember_uds_connect(name, type, &c), EMBER_OK);
    CHECK_CODE(ember_uds_accept(l, 1000, &s, NULL), EMBER_OK);
    size_t len = 0;
    CANCELLED_BY_SIGINT(ember_socket_recv(s, buf, sizeof buf, &len, EMBER_FOREVER));
    CANCELLED_BY_SIGINT(ember_socket_recv(s, buf, sizeof buf, &len, 30000));
    if (type == EMBER_UDS_SEQPACKET) {
        int fds[4];
        size_t nfds = 0;
        CANCELLED_BY_SIGINT(ember_socket_recv_fds(s, buf, sizeof buf, &len, fds, 4, &nfds, EMBER_FOREVER));
    }
    make_frame(3);
    CHECK_CODE(ember_socket_send(c, frame, frame_len), EMBER_OK);
    CHECK_CODE(ember_socket_recv(s, buf, sizeof buf, &len, 1000), EMBER_OK);
    CHECK(len == frame_len && memcmp(buf, frame, len) == 0);
    /* A peer that stopped reading: the socket fills, the sends wait. */
    CHECK_CODE(ember_socket_set_nonblocking(c, 1), EMBER_OK);
    while (ember_socket_send(c, frame, frame_len) == EMBER_OK) {
    }
    CHECK_CODE(ember_socket_set_nonblocking(c, 0), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_socket_send(c, frame, frame_len));
    CANCELLED_BY_SIGINT(ember_socket_send_timeout(c, frame, frame_len, 30000));
    CHECK_CODE(ember_socket_send_timeout(c, frame, frame_len, 20), EMBER_ETIMEDOUT);
    ember_socket_free(c);
    ember_socket_free(s);

    /* A listener that never accepts: once its backlog is full, connects wait. */
    struct ember_socket *held[1024];
    size_t nheld = 0;
    int rc;
    while (nheld < 1024 && (rc = ember_uds_connect_timeout(name, type, 0, &held[nheld])) == EMBER_OK) {
        nheld++;
    }
    CHECK_CODE(rc, EMBER_ETIMEDOUT);
    struct ember_socket *late = NULL;
    CHECK_CODE(ember_uds_connect_timeout(name, type, 20, &late), EMBER_ETIMEDOUT);
    CHECK(late == NULL);
    CANCELLED_BY_SIGINT(ember_uds_connect(name, type, &late));
    CANCELLED_BY_SIGINT(ember_uds_connect_timeout(name, type, 30000, &late));
    for (size_t i = 0; i < nheld; i++) {
        ember_socket_free(held[i]);
    }
    ember_uds_listener_free(l);
}

static void datagrams(void) {
    char name[64];
    snprintf(name, sizeof name, "@ember-c-cancel-dgram-%d", (int)getpid());
    struct ember_socket *s = NULL;
    CHECK_CODE(ember_uds_dgram(name, &s), EMBER_OK);
    size_t len = 0;
    CANCELLED_BY_SIGINT(ember_socket_recv(s, buf, sizeof buf, &len, EMBER_FOREVER));
    ember_socket_free(s);
}

static void poller(void) {
    struct ember_pipe_reader *r = NULL;
    struct ember_pipe_writer *w = NULL;
    CHECK_CODE(ember_pipe_new(&r, &w), EMBER_OK);
    struct ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    CHECK_CODE(ember_poller_add(p, ember_pipe_reader_fd(r), 1, EMBER_POLL_READ), EMBER_OK);
    struct ember_ready ev[4];
    size_t n = 0;
    CANCELLED_BY_SIGINT(ember_poller_wait(p, ev, 4, &n, EMBER_FOREVER));
    CHECK_CODE(ember_poller_wait(p, ev, 4, &n, 10), EMBER_OK);
    CHECK(n == 0);
    /* The canceler's fd wakes a loop that watches it like any other fd. */
    CHECK_CODE(ember_set_canceler(NULL), EMBER_OK);
    CHECK_CODE(ember_poller_add(p, ember_canceler_fd(canceler), 2, EMBER_POLL_READ), EMBER_OK);
    CHECK_CODE(ember_canceler_cancel(canceler), EMBER_OK);
    CHECK_CODE(ember_poller_wait(p, ev, 4, &n, EMBER_FOREVER), EMBER_OK);
    CHECK(n == 1 && ev[0].token == 2);
    CHECK_CODE(ember_canceler_reset(canceler), EMBER_OK);
    CHECK_CODE(ember_set_canceler(canceler), EMBER_OK);
    ember_poller_free(p);
    ember_pipe_reader_free(r);
    ember_pipe_writer_free(w);
}

static void shared_memory(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-cancel-spsc-%d", (int)getpid());
    struct ember_spsc_sender *tx = NULL;
    struct ember_spsc_receiver *rx = NULL;
    CHECK_CODE(ember_spsc_sender_create(name, 4096, 7, &tx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_open(name, 7, &rx), EMBER_OK);
    size_t len = 0;
    CANCELLED_BY_SIGINT(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, EMBER_FOREVER));
    make_frame(4);
    while (ember_spsc_sender_send(tx, frame, 500, 0) == EMBER_OK) {
    }
    CANCELLED_BY_SIGINT(ember_spsc_sender_send(tx, frame, 500, EMBER_FOREVER));
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_OK);
    CHECK(len == 500 && memcmp(buf, frame, 500) == 0);
    ember_spsc_receiver_free(rx);
    ember_spsc_sender_free(tx);

    snprintf(name, sizeof name, "/ember-c-cancel-bcast-%d", (int)getpid());
    struct ember_broadcast_writer *bw = NULL;
    struct ember_broadcast_reader *br = NULL;
    CHECK_CODE(ember_broadcast_writer_create(name, 4096, 8, &bw), EMBER_OK);
    CHECK_CODE(ember_broadcast_reader_open(name, 8, 0, &br), EMBER_OK);
    uint64_t seq = 0, lost = 0;
    CANCELLED_BY_SIGINT(ember_broadcast_reader_recv(br, buf, sizeof buf, &len, &seq, &lost, EMBER_FOREVER));
    CHECK_CODE(ember_broadcast_writer_send(bw, (const uint8_t *)"intact", 6), EMBER_OK);
    CHECK_CODE(ember_broadcast_reader_recv(br, buf, sizeof buf, &len, &seq, &lost, 1000), EMBER_OK);
    CHECK(len == 6 && memcmp(buf, "intact", 6) == 0 && lost == 0);
    ember_broadcast_reader_free(br);
    ember_broadcast_writer_free(bw);

    snprintf(name, sizeof name, "/ember-c-cancel-seqlock-%d", (int)getpid());
    struct ember_seqlock_writer *sw = NULL;
    struct ember_seqlock_reader *sr = NULL;
    CHECK_CODE(ember_seqlock_writer_create(name, 256, 9, &sw), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_open(name, 9, &sr), EMBER_OK);
    CHECK_CODE(ember_seqlock_writer_write(sw, (const uint8_t *)"one", 3), EMBER_OK);
    uint32_t version = 0;
    CHECK_CODE(ember_seqlock_reader_read(sr, buf, sizeof buf, &len, &version), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_seqlock_reader_wait_change(sr, version, EMBER_FOREVER));
    ember_seqlock_reader_free(sr);
    ember_seqlock_writer_free(sw);
}

static struct ember_sync_segment *sync_seg;
static volatile int holder_state; /* 1: holds the mutex; 2: may release it */

static void *hold_mutex(void *arg) {
    (void)arg;
    CHECK_CODE(ember_mutex_lock(sync_seg, 0, EMBER_FOREVER), EMBER_OK);
    __atomic_store_n(&holder_state, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&holder_state, __ATOMIC_SEQ_CST) != 2) {
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    CHECK_CODE(ember_mutex_unlock(sync_seg, 0), EMBER_OK);
    return NULL;
}

static void sync_primitives(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-cancel-sync-%d", (int)getpid());
    CHECK_CODE(ember_sync_segment_create(name, 64, 11, &sync_seg), EMBER_OK);
    pthread_t holder;
    holder_state = 0;
    CHECK(pthread_create(&holder, NULL, hold_mutex, NULL) == 0);
    while (__atomic_load_n(&holder_state, __ATOMIC_SEQ_CST) != 1) {
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    CANCELLED_BY_SIGINT(ember_mutex_lock(sync_seg, 0, EMBER_FOREVER));
    __atomic_store_n(&holder_state, 2, __ATOMIC_SEQ_CST);
    pthread_join(holder, NULL);
    CHECK_CODE(ember_mutex_lock(sync_seg, 0, 1000), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(sync_seg, 0), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_sem_wait(sync_seg, 8, EMBER_FOREVER));
    CHECK_CODE(ember_sem_post(sync_seg, 8), EMBER_OK);
    CHECK_CODE(ember_sem_wait(sync_seg, 8, 1000), EMBER_OK);
    uint32_t seen = 0, now = 0;
    CHECK_CODE(ember_event_current(sync_seg, 16, &seen), EMBER_OK);
    CANCELLED_BY_SIGINT(ember_event_wait_change(sync_seg, 16, seen, EMBER_FOREVER, &now));
    ember_sync_segment_free(sync_seg);
}

static void signal_waits(void) {
    uint64_t set = 0;
    CHECK_CODE(ember_sigset_add(&set, SIGUSR1), EMBER_OK);
    uint64_t old = 0;
    CHECK_CODE(ember_signal_mask(0, set, &old), EMBER_OK);
    struct ember_signalfd *sfd = NULL;
    CHECK_CODE(ember_signalfd_new(set, 0, &sfd), EMBER_OK);
    struct ember_signal_info info;
    CANCELLED_BY_SIGINT(ember_signalfd_recv(sfd, &info));
    CANCELLED_BY_SIGINT(ember_signalfd_recv_timeout(sfd, 30000, &info));
    CHECK_CODE(ember_signalfd_recv_timeout(sfd, 20, &info), EMBER_ETIMEDOUT);
    ember_signalfd_free(sfd);
    CHECK_CODE(ember_signal_mask(2, old, NULL), EMBER_OK);
}

static int never_called(void *user, uint32_t kind, const uint8_t *req, size_t req_len, uint8_t *resp,
                        size_t resp_cap, size_t *resp_len) {
    (void)user, (void)kind, (void)req, (void)req_len, (void)resp, (void)resp_cap, (void)resp_len;
    return EMBER_RPC_NO_RESPONSE;
}

static void rpc(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    struct ember_rpc_client *c = NULL;
    struct ember_rpc_server *s = NULL;
    CHECK_CODE(ember_rpc_client_from_socket(sv[0], 1, &c), EMBER_OK);
    CHECK_CODE(ember_rpc_server_from_socket(sv[1], 1, &s), EMBER_OK);
    /* A server that does not answer (nobody serves), a server with no request. */
    uint8_t resp[64];
    size_t resp_len = 0;
    uint32_t remote = 0;
    CANCELLED_BY_SIGINT(ember_rpc_call(c, 1, (const uint8_t *)"ping", 4, resp, sizeof resp, &resp_len, &remote,
                                       EMBER_FOREVER));
    CHECK_CODE(ember_rpc_serve_one(s, 0, never_called, NULL), EMBER_OK);
    CHECK_CODE(ember_rpc_serve_one(s, 0, never_called, NULL), EMBER_ETIMEDOUT);
    CANCELLED_BY_SIGINT(ember_rpc_serve_one(s, EMBER_FOREVER, never_called, NULL));
    ember_rpc_client_free(c);
    ember_rpc_server_free(s);
}

/* A D-Bus "bus" that accepts and never answers: the connect's handshake waits until the
 * canceler ends it, for a bus and for a peer. */
static void dbus_connects(void) {
    char path[108];
    snprintf(path, sizeof path, "/tmp/ember-cancel-mute-%d", (int)getpid());
    unlink(path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(l, 8) == 0);
    char address[160];
    snprintf(address, sizeof address, "unix:path=%s", path);
    struct ember_dbus *d = (struct ember_dbus *)1;
    CANCELLED_BY_SIGINT(ember_dbus_connect_sized(address, 4096, 4096, 0, EMBER_FOREVER, &d));
    CHECK(d == NULL);
    CANCELLED_BY_SIGINT(ember_dbus_connect_peer(address, 4096, 4096, 0, EMBER_FOREVER, &d));
    CHECK(d == NULL);
    /* Not cancelled: the time limit still applies. */
    CHECK_CODE(ember_dbus_connect_sized(address, 4096, 4096, 0, 100, &d), EMBER_ETIMEDOUT);
    close(l);
    unlink(path);
}

static void *cancel_soon(void *arg) {
    (void)arg;
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    ember_canceler_cancel(canceler);
    return NULL;
}

/* Last: ember_daemon_new blocks SIGINT in this thread (it becomes a shutdown request), so
 * another thread cancels here. */
static void daemon_wait(void) {
    struct ember_daemon *d = NULL;
    CHECK_CODE(ember_daemon_new(&d), EMBER_OK);
    int event = -1;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancel_soon, NULL) == 0);
    CHECK_CODE(ember_daemon_wait(d, EMBER_FOREVER, &event, NULL, NULL), EMBER_ECANCELED);
    pthread_join(t, NULL);
    CHECK_CODE(ember_daemon_wait(d, 30000, &event, NULL, NULL), EMBER_ECANCELED);
    CHECK_CODE(ember_canceler_reset(canceler), EMBER_OK);
    CHECK_CODE(ember_daemon_wait(d, 10, &event, NULL, NULL), EMBER_OK);
    CHECK(event == EMBER_DAEMON_NONE);
    ember_daemon_free(d);
}

int main(void) {
    /* A call the canceler fails to end must not hang the test run. */
    alarm(120);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART; /* EINTR is never how a wait ends here: the canceler is */
    sigaction(SIGINT, &sa, NULL);

    CHECK_CODE(ember_canceler_new(&canceler), EMBER_OK);
    CHECK_CODE(ember_set_canceler(canceler), EMBER_OK);
    CHECK(ember_canceler_is_cancelled(canceler) == 0);
    CHECK(ember_canceler_fd(canceler) >= 0);
    CHECK_CODE(ember_canceler_cancel(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_canceler_reset(NULL), EMBER_EINVAL);
    CHECK(strcmp(ember_strerror(EMBER_ECANCELED), "unknown error") != 0);

    pipes();
    queues();
    sockets(EMBER_UDS_STREAM);
    sockets(EMBER_UDS_SEQPACKET);
    datagrams();
    poller();
    shared_memory();
    sync_primitives();
    signal_waits();
    rpc();
    dbus_connects();
    daemon_wait();

    /* Freeing the installed canceler unsets it. */
    ember_canceler_free(canceler);
    canceler = NULL;
    ember_canceler_free(NULL);
    if (failures) fprintf(stderr, "test_cancel: %d failures\n", failures);
    return failures != 0;
}
