/* Signals, the poller, timers and the eventfd notifier from C: every function of
 * bindings-c/src/signal.rs and bindings-c/src/poll.rs, with its error paths (NULL pointers,
 * signal numbers 0 and 65, poll flags 0 and 0x100, cap 0, negative fds, an fd watched twice
 * or not at all, nothing pending, _free(NULL)) and the values it reports:
 * - signal sets, and the calling thread's mask (the old one restored at the end);
 * - a forked child's sigqueue value 1234 through a nonblocking signalfd in the poller
 *   (code SI_QUEUE, the child's pid and uid); real-time signals queue, standard ones
 *   coalesce; signals through a pidfd (ourselves; not a pidfd; a reaped child);
 * - the daemon helper: nothing, then SIGHUP from a child (reload), then its SIGTERM
 *   (shutdown, with the child's pid), and SIGINT, its fd readable in the poller;
 * - the poller: tokens, level and edge triggering, modify, remove, a hang-up, a one-slot
 *   array with two fds ready (the other comes on the next wait), its own fd pollable;
 * - timers: periodic expiry, disarming, a zero first expiry;
 * - notifiers: the counter, a dup'ed eventfd wrapped with _from_fd;
 * - an SPSC ring with a notifier, in one process and with the sender in a forked child:
 *   prepare_poll, the sender's send (and close) waking the receiver's poll.
 * Every wait has a timeout, every child is reaped (killed if it hangs). Built and run by
 * `cargo xtask test` under ASan+UBSan and valgrind, and linked -static on the boards. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same on every architecture */
#endif

/* A real-time signal no C library keeps for itself (glibc 32-33, musl 32-34). */
#define RT_SIG 40
/* Every wait that should end at once ends within this (a slow emulated board included). */
#define WAIT_MS 5000
#define FP 0x5E45u
#define BIT(sig) (UINT64_C(1) << ((sig) - 1))

/* The mask before the test blocked anything, restored at the end. */
static uint64_t old_mask;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits for `pid` (10 s at most, then kills it): its exit status, 128 + the signal that
 * ended it, or -1 (hung, or not a child). */
static int reap(pid_t pid) {
    int status = 0;
    if (pid <= 0) return -1;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        }
        if (r < 0) return -1;
        sleep_ms(10);
    }
    fprintf(stderr, "child %d hangs: killed\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* One byte from `fd` within `ms`: the byte, or -1 (timeout, end of file, error). */
static int get_byte(int fd, int ms) {
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do {
        r = poll(&p, 1, ms);
    } while (r < 0 && errno == EINTR);
    unsigned char c;
    if (r != 1 || read(fd, &c, 1) != 1) return -1;
    return c;
}

static int put_byte(int fd, int c) {
    unsigned char b = (unsigned char)c;
    return write(fd, &b, 1) == 1 ? 0 : -1;
}

/* fork(), with stdio flushed first: a child's exit must not print the parent's buffered
 * output again (valgrind's exit flushes stdio even in a child that calls _exit). */
static pid_t fork_child(void) {
    fflush(stdout);
    fflush(stderr);
    return fork();
}

/* Whether `fd` is open. */
static int is_open(int fd) {
    return fcntl(fd, F_GETFD) != -1;
}

/* Waits on `p` with a `cap`-slot array: the number ready (or -1 on an error), and the
 * first one in `*first`. */
static int wait_ready(ember_poller *p, size_t cap, int64_t timeout_ms, ember_ready *first) {
    ember_ready ev[8];
    size_t n = 99;
    if (cap > 8) cap = 8;
    int rc = ember_poller_wait(p, ev, cap, &n, timeout_ms);
    CHECK_CODE(rc, EMBER_OK);
    if (rc != EMBER_OK) return -1;
    CHECK(n <= cap);
    if (n > 0 && first != NULL) *first = ev[0];
    return (int)n;
}

static void test_sigsets(void) {
    uint64_t set = 0;
    CHECK_CODE(ember_sigset_add(&set, 1), EMBER_OK);
    CHECK_CODE(ember_sigset_add(&set, 64), EMBER_OK);
    CHECK_CODE(ember_sigset_add(&set, SIGUSR1), EMBER_OK);
    CHECK_CODE(ember_sigset_add(&set, SIGUSR1), EMBER_OK); /* already in: no change */
    const uint64_t want = BIT(1) | BIT(64) | BIT(SIGUSR1);
    CHECK(set == want);
    CHECK_CODE(ember_sigset_add(&set, 0), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_add(&set, 65), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_add(&set, -1), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_add(NULL, SIGUSR1), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_remove(&set, 0), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_remove(&set, 65), EMBER_EINVAL);
    CHECK_CODE(ember_sigset_remove(NULL, SIGUSR1), EMBER_EINVAL);
    CHECK(set == want); /* the refused calls changed nothing */
    CHECK_CODE(ember_sigset_remove(&set, 64), EMBER_OK);
    CHECK_CODE(ember_sigset_remove(&set, 1), EMBER_OK);
    CHECK_CODE(ember_sigset_remove(&set, 1), EMBER_OK); /* not in it: no change */
    CHECK(set == BIT(SIGUSR1));
}

/* Blocks SIGUSR1 and RT_SIG (the old mask into `old_mask`) and checks the mask. */
static uint64_t block_test_signals(void) {
    uint64_t set = 0, before = 7, now = 0;
    CHECK_CODE(ember_sigset_add(&set, SIGUSR1), EMBER_OK);
    CHECK_CODE(ember_sigset_add(&set, RT_SIG), EMBER_OK);
    CHECK_CODE(ember_signal_mask(3, set, &before), EMBER_EINVAL);
    CHECK_CODE(ember_signal_mask(-1, set, NULL), EMBER_EINVAL);
    CHECK(before == 7); /* not written on an error */
    CHECK_CODE(ember_signal_mask(0, set, &old_mask), EMBER_OK);
    CHECK_CODE(ember_signal_mask(0, 0, &now), EMBER_OK); /* blocks nothing: reads the mask */
    CHECK(now == (old_mask | set));
    /* SIGKILL and SIGSTOP are never blocked. */
    CHECK_CODE(ember_signal_mask(0, BIT(SIGKILL) | BIT(SIGSTOP), NULL), EMBER_OK);
    CHECK_CODE(ember_signal_mask(0, 0, &now), EMBER_OK);
    CHECK((now & (BIT(SIGKILL) | BIT(SIGSTOP))) == 0);
    CHECK(now == (old_mask | set));
    return set;
}

/* Reads one signal from `s`: EMBER_OK and `*info`, or the code. */
static int recv_signal(ember_signalfd *s, ember_signal_info *info) {
    memset(info, 0x55, sizeof *info);
    return ember_signalfd_recv(s, info);
}

/* A forked child's sigqueue through the signalfd, in a poller. */
static void test_signalfd_from_child(ember_signalfd *s) {
    ember_signal_info info;
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN); /* nonblocking, nothing pending */
    CHECK_CODE(ember_signalfd_recv(NULL, &info), EMBER_EINVAL);
    CHECK_CODE(ember_signalfd_recv(s, NULL), EMBER_EINVAL);
    int sfd = ember_signalfd_fd(s);
    CHECK(sfd >= 0);
    CHECK_CODE(ember_signalfd_fd(NULL), EMBER_EINVAL);

    ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (p == NULL) return;
    CHECK_CODE(ember_poller_add(p, sfd, 0x51, EMBER_POLL_READ), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);

    pid_t child = fork_child();
    if (child == 0) _exit(ember_signal_send_value((uint32_t)getppid(), SIGUSR1, 1234) == EMBER_OK ? 0 : 1);
    CHECK(child > 0);
    ember_ready r = {0, 0, 0, 0, 0};
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0x51 && r.readable == 1 && r.writable == 0 && r.hangup == 0 && r.error == 0);
    CHECK_CODE(recv_signal(s, &info), EMBER_OK);
    CHECK(info.signal == SIGUSR1);
    CHECK(info.value == 1234);
    CHECK(info.code == -1); /* SI_QUEUE */
    CHECK(info.pid == (uint32_t)child);
    CHECK(info.uid == (uint32_t)getuid());
    CHECK(reap(child) == 0);
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    ember_poller_free(p);
}

/* Sending with a value, to ourselves: real-time signals queue, in order; standard ones
 * coalesce. And the error paths. */
static void test_send_value(ember_signalfd *s) {
    const uint32_t me = (uint32_t)getpid();
    ember_signal_info info;
    CHECK_CODE(ember_signal_send_value(me, 0, 1), EMBER_EINVAL);
    CHECK_CODE(ember_signal_send_value(me, 65, 1), EMBER_EINVAL);
    CHECK_CODE(ember_signal_send_value(me, -3, 1), EMBER_EINVAL);
    /* Above any pid_max (2^22 at most): no such process. */
    CHECK_CODE(ember_signal_send_value(0x3FFFFFFFu, SIGUSR1, 1), EMBER_EOS);
    CHECK(ember_last_os_error() == ESRCH);

    const int values[3] = {1, 2, -3};
    for (int i = 0; i < 3; i++) CHECK_CODE(ember_signal_send_value(me, RT_SIG, values[i]), EMBER_OK);
    for (int i = 0; i < 3; i++) {
        CHECK_CODE(recv_signal(s, &info), EMBER_OK);
        CHECK(info.signal == RT_SIG && info.value == values[i] && info.code == -1 && info.pid == me);
    }
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN);
    CHECK_CODE(ember_signal_send_value(me, SIGUSR1, 10), EMBER_OK);
    CHECK_CODE(ember_signal_send_value(me, SIGUSR1, 11), EMBER_OK); /* pending already: dropped */
    CHECK_CODE(recv_signal(s, &info), EMBER_OK);
    CHECK(info.signal == SIGUSR1 && info.value == 10 && info.pid == me);
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN);
}

/* Through a pidfd: to ourselves, a standard and a real-time signal; not a pidfd; a child
 * that is gone. */
static void test_pidfd(ember_signalfd *s) {
    const uint32_t me = (uint32_t)getpid();
    ember_signal_info info;
    CHECK_CODE(ember_signal_send_pidfd(-1, SIGUSR1), EMBER_EINVAL);
    int pidfd = (int)syscall(SYS_pidfd_open, (int)getpid(), 0);
    if (pidfd < 0 && errno == ENOSYS) {
        printf("test_signal_poll: pidfd_open is ENOSYS (an old kernel, or valgrind): pidfd sends not run\n");
        return;
    }
    CHECK(pidfd >= 0);
    if (pidfd < 0) return;
    CHECK_CODE(ember_signal_send_pidfd(pidfd, 0), EMBER_EINVAL);
    CHECK_CODE(ember_signal_send_pidfd(pidfd, 65), EMBER_EINVAL);
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN); /* the refused sends sent nothing */

    CHECK_CODE(ember_signal_send_pidfd(pidfd, SIGUSR1), EMBER_OK);
    CHECK_CODE(recv_signal(s, &info), EMBER_OK);
    CHECK(info.signal == SIGUSR1 && info.code == 0 /* SI_USER */ && info.pid == me && info.value == 0);
    CHECK(info.uid == (uint32_t)getuid());

    int rc = ember_signal_send_pidfd(pidfd, RT_SIG);
    CHECK_CODE(rc, EMBER_OK);
    if (rc == EMBER_OK) {
        CHECK_CODE(recv_signal(s, &info), EMBER_OK);
        CHECK(info.signal == RT_SIG && info.code == 0 && info.pid == me);
    } else if (rc == EMBER_EOS) {
        fprintf(stderr, "  (ember_signal_send_pidfd(pidfd, %d): errno %d)\n", RT_SIG, ember_last_os_error());
    }
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN);

    /* Not a pidfd. */
    int pp[2];
    CHECK(pipe(pp) == 0);
    CHECK_CODE(ember_signal_send_pidfd(pp[0], SIGUSR1), EMBER_EOS);
    CHECK(ember_last_os_error() == EBADF);
    close(pp[0]);
    close(pp[1]);

    /* A child that exited and was reaped: its pid may be reused, its pidfd refuses. */
    pid_t child = fork_child();
    if (child == 0) _exit(0);
    CHECK(child > 0);
    int cfd = (int)syscall(SYS_pidfd_open, (int)child, 0); /* a zombie still has its pid */
    CHECK(cfd >= 0);
    CHECK(reap(child) == 0);
    if (cfd >= 0) {
        CHECK_CODE(ember_signal_send_pidfd(cfd, SIGUSR1), EMBER_EOS);
        CHECK(ember_last_os_error() == ESRCH);
        close(cfd);
    }
    CHECK_CODE(recv_signal(s, &info), EMBER_EAGAIN);
    close(pidfd);
}

/* The daemon helper: blocks SIGTERM, SIGINT and SIGHUP; a child asks for a reload, then a
 * shutdown; SIGINT from ourselves. The three are unblocked again at the end. */
static void test_daemon(void) {
    const uint64_t three = BIT(SIGTERM) | BIT(SIGINT) | BIT(SIGHUP);
    ember_daemon *d = NULL;
    uint64_t initial = 0, mask = 0;
    CHECK_CODE(ember_signal_mask(0, 0, &initial), EMBER_OK);
    CHECK_CODE(ember_daemon_new(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_signal_mask(0, 0, &mask), EMBER_OK);
    CHECK(mask == initial); /* refused before blocking anything */
    CHECK_CODE(ember_daemon_new(&d), EMBER_OK);
    if (d == NULL) return;
    CHECK_CODE(ember_signal_mask(0, 0, &mask), EMBER_OK);
    CHECK((mask & three) == three);
    int dfd = ember_daemon_fd(d);
    CHECK(dfd >= 0);
    CHECK_CODE(ember_daemon_fd(NULL), EMBER_EINVAL);

    int event = -1, sig = -1;
    uint32_t pid = 99;
    CHECK_CODE(ember_daemon_wait(d, 0, &event, &sig, &pid), EMBER_OK);
    CHECK(event == EMBER_DAEMON_NONE && sig == 0 && pid == 0);
    event = -1;
    CHECK_CODE(ember_daemon_wait(d, 50, &event, NULL, NULL), EMBER_OK);
    CHECK(event == EMBER_DAEMON_NONE);
    CHECK_CODE(ember_daemon_wait(NULL, 0, &event, &sig, &pid), EMBER_EINVAL);
    CHECK_CODE(ember_daemon_wait(d, 0, NULL, &sig, &pid), EMBER_EINVAL);

    ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (p == NULL) {
        ember_daemon_free(d);
        return;
    }
    CHECK_CODE(ember_poller_add(p, dfd, 0xD, EMBER_POLL_READ), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);

    /* The child sends SIGHUP, waits until the reload was seen, then sends SIGTERM. */
    int go[2];
    CHECK(pipe(go) == 0);
    pid_t child = fork_child();
    if (child == 0) {
        close(go[1]);
        if (kill(getppid(), SIGHUP) != 0) _exit(1);
        if (get_byte(go[0], WAIT_MS) != 'T') _exit(2);
        _exit(kill(getppid(), SIGTERM) == 0 ? 0 : 3);
    }
    close(go[0]);
    CHECK(child > 0);
    ember_ready r = {0, 0, 0, 0, 0};
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0xD && r.readable == 1);
    event = -1;
    sig = -1;
    CHECK_CODE(ember_daemon_wait(d, 0, &event, &sig, &pid), EMBER_OK);
    CHECK(event == EMBER_DAEMON_RELOAD && sig == SIGHUP);
    CHECK_CODE(ember_daemon_wait(d, 0, &event, NULL, NULL), EMBER_OK);
    CHECK(event == EMBER_DAEMON_NONE);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK(put_byte(go[1], 'T') == 0);
    event = -1;
    sig = -1;
    pid = 0;
    CHECK_CODE(ember_daemon_wait(d, WAIT_MS, &event, &sig, &pid), EMBER_OK);
    CHECK(event == EMBER_DAEMON_SHUTDOWN && sig == SIGTERM && pid == (uint32_t)child);
    CHECK(reap(child) == 0);
    close(go[1]);

    /* SIGINT (a Ctrl-C), already pending: even a wait without a limit returns at once. */
    CHECK_CODE(ember_signal_send_value((uint32_t)getpid(), SIGINT, 0), EMBER_OK);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0xD && r.readable == 1);
    event = -1;
    sig = -1;
    pid = 0;
    CHECK_CODE(ember_daemon_wait(d, EMBER_FOREVER, &event, &sig, &pid), EMBER_OK);
    CHECK(event == EMBER_DAEMON_SHUTDOWN && sig == SIGINT && pid == (uint32_t)getpid());
    CHECK_CODE(ember_daemon_wait(d, 0, &event, &sig, &pid), EMBER_OK);
    CHECK(event == EMBER_DAEMON_NONE);

    CHECK_CODE(ember_poller_remove(p, dfd), EMBER_OK);
    ember_poller_free(p);
    ember_daemon_free(d);
    ember_daemon_free(NULL);
    /* Freeing leaves the three blocked; unblock them (nothing of them is pending), all but
     * those the test started with blocked. */
    CHECK_CODE(ember_signal_mask(0, 0, &mask), EMBER_OK);
    CHECK((mask & three) == three);
    CHECK_CODE(ember_signal_mask(1, three & ~initial, &mask), EMBER_OK);
    CHECK((mask & three) == three);
    CHECK_CODE(ember_signal_mask(0, 0, &mask), EMBER_OK);
    CHECK(mask == initial);
}

static void test_poller(void) {
    ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (p == NULL) return;
    int pfd = ember_poller_fd(p);
    CHECK(pfd >= 0);
    CHECK_CODE(ember_poller_fd(NULL), EMBER_EINVAL);
    int a[2];
    CHECK(pipe(a) == 0);
    ember_ready ev[4], r = {0, 0, 0, 0, 0};
    size_t n = 99;

    CHECK_CODE(ember_poller_add(NULL, a[0], 7, EMBER_POLL_READ), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, -1, 7, EMBER_POLL_READ), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, a[0], 7, 0), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, a[0], 7, 0x100), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, a[0], 7, EMBER_POLL_READ | 0x100), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, a[0], 7, EMBER_POLL_EDGE), EMBER_EINVAL); /* edge of nothing */
    CHECK_CODE(ember_poller_add(p, a[0], 7, EMBER_POLL_READ), EMBER_OK);
    CHECK_CODE(ember_poller_add(p, a[0], 7, EMBER_POLL_READ), EMBER_EOS);
    CHECK(ember_last_os_error() == EEXIST);
    /* A regular file (a memfd) cannot be polled. */
    int reg = memfd_create("ember-c-regular", MFD_CLOEXEC);
    CHECK(reg >= 0 || errno == ENOSYS);
    if (reg >= 0) {
        CHECK_CODE(ember_poller_add(p, reg, 9, EMBER_POLL_READ), EMBER_EOS);
        CHECK(ember_last_os_error() == EPERM);
        close(reg);
    }

    CHECK_CODE(ember_poller_wait(p, ev, 0, &n, 0), EMBER_EINVAL);
    CHECK_CODE(ember_poller_wait(p, NULL, 4, &n, 0), EMBER_EINVAL);
    CHECK_CODE(ember_poller_wait(p, ev, 4, NULL, 0), EMBER_EINVAL);
    CHECK_CODE(ember_poller_wait(NULL, ev, 4, &n, 0), EMBER_EINVAL);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK(wait_ready(p, 4, 50, NULL) == 0); /* a timed wait, nothing ready */

    CHECK(write(a[1], "x", 1) == 1);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 7 && r.readable == 1 && r.writable == 0 && r.hangup == 0 && r.error == 0);
    /* Level-triggered: still ready while the byte is there. */
    CHECK(wait_ready(p, 4, 0, &r) == 1);
    CHECK(r.token == 7);

    /* Modify: refused ones, then the read end for writing only (never writable). */
    CHECK_CODE(ember_poller_modify(NULL, a[0], 70, EMBER_POLL_WRITE), EMBER_EINVAL);
    CHECK_CODE(ember_poller_modify(p, -1, 70, EMBER_POLL_WRITE), EMBER_EINVAL);
    CHECK_CODE(ember_poller_modify(p, a[0], 70, 0), EMBER_EINVAL);
    CHECK_CODE(ember_poller_modify(p, a[0], 70, 0x100), EMBER_EINVAL);
    CHECK_CODE(ember_poller_modify(p, a[1], 70, EMBER_POLL_WRITE), EMBER_EOS); /* not watched */
    CHECK(ember_last_os_error() == ENOENT);
    CHECK_CODE(ember_poller_modify(p, a[0], 70, EMBER_POLL_WRITE), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK_CODE(ember_poller_modify(p, a[0], 71, EMBER_POLL_READ | EMBER_POLL_WRITE), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, &r) == 1);
    CHECK(r.token == 71 && r.readable == 1 && r.writable == 0);

    /* The write end, writable: two ready. */
    CHECK_CODE(ember_poller_add(p, a[1], 8, EMBER_POLL_WRITE), EMBER_OK);
    n = 99;
    CHECK_CODE(ember_poller_wait(p, ev, 4, &n, WAIT_MS), EMBER_OK);
    CHECK(n == 2);
    if (n == 2) {
        int i71 = ev[0].token == 71 ? 0 : 1;
        CHECK(ev[i71].token == 71 && ev[i71].readable == 1 && ev[i71].writable == 0);
        CHECK(ev[1 - i71].token == 8 && ev[1 - i71].writable == 1 && ev[1 - i71].readable == 0);
    }
    /* A one-slot array: one now, the other on the next wait. */
    ember_ready first = {0, 0, 0, 0, 0}, second = {0, 0, 0, 0, 0};
    CHECK(wait_ready(p, 1, WAIT_MS, &first) == 1);
    CHECK(wait_ready(p, 1, WAIT_MS, &second) == 1);
    CHECK(first.token != second.token);
    CHECK((first.token == 71 || first.token == 8) && (second.token == 71 || second.token == 8));

    /* The poller's own fd is readable while something is ready. */
    struct pollfd q = {pfd, POLLIN, 0};
    CHECK(poll(&q, 1, 0) == 1 && (q.revents & POLLIN));
    char c = 0;
    CHECK(read(a[0], &c, 1) == 1 && c == 'x');
    CHECK_CODE(ember_poller_remove(p, a[1]), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    q.revents = 0;
    CHECK(poll(&q, 1, 0) == 0);

    /* The write end closed: a hang-up on the read end. */
    close(a[1]);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 71 && r.hangup == 1 && r.error == 0);

    CHECK_CODE(ember_poller_remove(NULL, a[0]), EMBER_EINVAL);
    CHECK_CODE(ember_poller_remove(p, -1), EMBER_EINVAL);
    CHECK_CODE(ember_poller_remove(p, a[0]), EMBER_OK);
    CHECK_CODE(ember_poller_remove(p, a[0]), EMBER_EOS);
    CHECK(ember_last_os_error() == ENOENT);
    CHECK_CODE(ember_poller_modify(p, a[0], 1, EMBER_POLL_READ), EMBER_EOS);
    CHECK(ember_last_os_error() == ENOENT);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    close(a[0]);

    /* Edge-triggered: two ready, a one-slot array takes one each wait, and neither is
     * reported again (although unread) until new data comes. */
    int b[2], d[2];
    CHECK(pipe(b) == 0 && pipe(d) == 0);
    CHECK_CODE(ember_poller_add(p, b[0], 21, EMBER_POLL_READ | EMBER_POLL_EDGE), EMBER_OK);
    CHECK_CODE(ember_poller_add(p, d[0], 22, EMBER_POLL_READ | EMBER_POLL_EDGE), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK(write(b[1], "b", 1) == 1 && write(d[1], "d", 1) == 1);
    CHECK(wait_ready(p, 1, WAIT_MS, &first) == 1);
    CHECK(wait_ready(p, 1, WAIT_MS, &second) == 1);
    CHECK(first.token != second.token);
    CHECK((first.token == 21 || first.token == 22) && (second.token == 21 || second.token == 22));
    CHECK(first.readable == 1 && second.readable == 1);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    /* Drained and written again: a new edge. */
    CHECK(read(b[0], &c, 1) == 1 && c == 'b');
    CHECK(write(b[1], "B", 1) == 1);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 21 && r.readable == 1);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    /* Back to level-triggered: the unread byte is reported again. */
    CHECK_CODE(ember_poller_modify(p, d[0], 23, EMBER_POLL_READ), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, &r) == 1);
    CHECK(r.token == 23 && r.readable == 1);
    CHECK_CODE(ember_poller_remove(p, b[0]), EMBER_OK);
    CHECK_CODE(ember_poller_remove(p, d[0]), EMBER_OK);
    close(b[0]);
    close(b[1]);
    close(d[0]);
    close(d[1]);
    ember_poller_free(p);
    ember_poller_free(NULL);
}

static void test_timer(void) {
    ember_timer *t = NULL, *later = NULL;
    uint64_t count = 99;
    CHECK_CODE(ember_timer_new(10, 10, NULL), EMBER_EINVAL);
    /* Not expired yet: EMBER_EAGAIN, never a wait. */
    CHECK_CODE(ember_timer_new(60000, 0, &later), EMBER_OK);
    CHECK_CODE(ember_timer_expirations(later, &count), EMBER_EAGAIN);
    CHECK(count == 99);
    ember_timer_free(later);
    ember_timer_free(NULL);

    CHECK_CODE(ember_timer_new(10, 10, &t), EMBER_OK);
    if (t == NULL) return;
    int tfd = ember_timer_fd(t);
    CHECK(tfd >= 0);
    CHECK_CODE(ember_timer_fd(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_timer_expirations(NULL, &count), EMBER_EINVAL);
    CHECK_CODE(ember_timer_expirations(t, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_timer_set(NULL, 10, 10, 0), EMBER_EINVAL);
    CHECK_CODE(ember_timer_set(NULL, 0, 0, 1), EMBER_EINVAL);

    ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (p == NULL) {
        ember_timer_free(t);
        return;
    }
    CHECK_CODE(ember_poller_add(p, tfd, 0x71, EMBER_POLL_READ), EMBER_OK);
    ember_ready r = {0, 0, 0, 0, 0};
    /* Periodic: it fires, and fires again. */
    for (int i = 0; i < 2; i++) {
        CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
        CHECK(r.token == 0x71 && r.readable == 1);
        count = 0;
        CHECK_CODE(ember_timer_expirations(t, &count), EMBER_OK);
        CHECK(count >= 1);
    }
    /* Disarmed: never again (a tick just before the disarm is read away first). */
    CHECK_CODE(ember_timer_set(t, 0, 0, 1), EMBER_OK);
    int rc = ember_timer_expirations(t, &count);
    CHECK(rc == EMBER_OK || rc == EMBER_EAGAIN);
    CHECK(wait_ready(p, 4, 50, NULL) == 0);
    CHECK_CODE(ember_timer_expirations(t, &count), EMBER_EAGAIN);
    /* Re-armed with a first expiry of 0: at once, and only once. */
    CHECK_CODE(ember_timer_set(t, 0, 0, 0), EMBER_OK);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0x71);
    count = 0;
    CHECK_CODE(ember_timer_expirations(t, &count), EMBER_OK);
    CHECK(count == 1);
    CHECK(wait_ready(p, 4, 50, NULL) == 0);
    CHECK_CODE(ember_timer_expirations(t, &count), EMBER_EAGAIN);
    CHECK_CODE(ember_poller_remove(p, tfd), EMBER_OK);
    ember_poller_free(p);
    ember_timer_free(t);
}

static void test_notifier(void) {
    ember_notifier *nt = NULL, *m = NULL;
    uint64_t count = 99;
    CHECK_CODE(ember_notifier_new(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_notifier_new(&nt), EMBER_OK);
    if (nt == NULL) return;
    int nfd = ember_notifier_fd(nt);
    CHECK(nfd >= 0);
    CHECK_CODE(ember_notifier_fd(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_notifier_notify(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_notifier_drain(NULL, &count), EMBER_EINVAL);
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count == 0); /* not notified */
    CHECK_CODE(ember_notifier_drain(nt, NULL), EMBER_OK);

    ember_poller *p = NULL;
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (p == NULL) {
        ember_notifier_free(nt);
        return;
    }
    CHECK_CODE(ember_poller_add(p, nfd, 0xE1, EMBER_POLL_READ), EMBER_OK);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK_CODE(ember_notifier_notify(nt), EMBER_OK);
    CHECK_CODE(ember_notifier_notify(nt), EMBER_OK);
    ember_ready r = {0, 0, 0, 0, 0};
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0xE1 && r.readable == 1);
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count == 2);
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count == 0);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);

    /* A second handle on the same eventfd (as another process would have it). */
    int dup_fd = dup(nfd);
    CHECK(dup_fd >= 0);
    CHECK_CODE(ember_notifier_from_fd(-1, &m), EMBER_EINVAL);
    CHECK(m == NULL);
    CHECK_CODE(ember_notifier_from_fd(dup_fd, NULL), EMBER_EINVAL);
    CHECK(is_open(dup_fd)); /* refused: not taken */
    CHECK_CODE(ember_notifier_from_fd(dup_fd, &m), EMBER_OK);
    if (m != NULL) {
        CHECK(ember_notifier_fd(m) == dup_fd);
        CHECK_CODE(ember_notifier_notify(m), EMBER_OK);
        CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
        CHECK(r.token == 0xE1);
        CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
        CHECK(count == 1);
        CHECK_CODE(ember_notifier_notify(nt), EMBER_OK);
        CHECK_CODE(ember_notifier_drain(m, &count), EMBER_OK);
        CHECK(count == 1);
        ember_notifier_free(m); /* closes its fd, not the first handle's */
        CHECK(!is_open(dup_fd));
    } else {
        close(dup_fd);
    }
    CHECK(is_open(nfd));
    CHECK_CODE(ember_notifier_notify(nt), EMBER_OK);
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count == 1);
    CHECK_CODE(ember_poller_remove(p, nfd), EMBER_OK);
    ember_poller_free(p);
    ember_notifier_free(nt);
    ember_notifier_free(NULL);
}

/* A ring and a notifier in one process: the error paths and the protocol. */
static void test_ring_local(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-notify-%d-local", (int)getpid());
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL;
    ember_notifier *nt = NULL;
    ember_poller *p = NULL;
    CHECK_CODE(ember_spsc_sender_create(name, 4096, FP, &tx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_open(name, FP, &rx), EMBER_OK);
    CHECK_CODE(ember_notifier_new(&nt), EMBER_OK);
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (tx == NULL || rx == NULL || nt == NULL || p == NULL) goto out;
    int nfd = ember_notifier_fd(nt);
    int ready = -1;
    CHECK_CODE(ember_spsc_sender_set_notifier(NULL, nfd), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_sender_set_notifier(tx, -1), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_sender_set_notifier(tx, nfd), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_prepare_poll(NULL, &ready), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_receiver_finish_poll(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_poller_add(p, nfd, 0xF1, EMBER_POLL_READ), EMBER_OK);

    uint8_t buf[64];
    size_t len = 0;
    ember_ready r = {0, 0, 0, 0, 0};
    /* Empty: poll. */
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 0);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK_CODE(ember_spsc_sender_send(tx, (const uint8_t *)"ping", 4, 0), EMBER_OK);
    CHECK(wait_ready(p, 4, 1000, &r) == 1);
    CHECK(r.token == 0xF1 && r.readable == 1);
    CHECK_CODE(ember_spsc_receiver_finish_poll(rx), EMBER_OK);
    uint64_t count = 0;
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count >= 1);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_OK);
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    /* A record already there: receive instead of polling. */
    CHECK_CODE(ember_spsc_sender_send(tx, (const uint8_t *)"pong", 4, 0), EMBER_OK);
    ready = -1;
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 1);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_OK);
    CHECK(len == 4 && memcmp(buf, "pong", 4) == 0);
    /* Prepared and withdrawn with nothing sent. */
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 0);
    CHECK_CODE(ember_spsc_receiver_finish_poll(rx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_notifier_drain(nt, NULL), EMBER_OK);
    CHECK_CODE(ember_poller_remove(p, nfd), EMBER_OK);
out:
    ember_poller_free(p);
    ember_spsc_sender_free(tx);
    ember_spsc_receiver_free(rx);
    ember_notifier_free(nt); /* the sender had its own duplicate */
}

/* The sender's side, in the child: creates the ring with the inherited eventfd as its
 * notifier, then does what the parent's bytes say. 0 if all went well. */
static int ring_child(const char *name, int efd, int in, int out) {
    ember_spsc_sender *tx = NULL;
    int rc = 0;
    if (ember_spsc_sender_create(name, 4096, FP, &tx) != EMBER_OK) return 1;
    if (ember_spsc_sender_set_notifier(tx, efd) != EMBER_OK)
        rc = 2;
    else if (put_byte(out, 'C') != 0) /* created */
        rc = 3;
    else if (get_byte(in, WAIT_MS) != 'G') /* the receiver polls */
        rc = 4;
    else if (ember_spsc_sender_send(tx, (const uint8_t *)"ping", 4, WAIT_MS) != EMBER_OK)
        rc = 5;
    else if (get_byte(in, WAIT_MS) != 'H') /* one more */
        rc = 6;
    else if (ember_spsc_sender_send(tx, (const uint8_t *)"pong", 4, WAIT_MS) != EMBER_OK)
        rc = 7;
    else if (put_byte(out, 'S') != 0)
        rc = 8;
    else if (get_byte(in, WAIT_MS) != 'Q') /* close while the receiver polls */
        rc = 9;
    ember_spsc_sender_free(tx);
    return rc;
}

/* The same across processes: the sender is a forked child, the eventfd inherited. */
static void test_ring_cross_process(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-notify-%d", (int)getpid());
    ember_notifier *nt = NULL;
    ember_spsc_receiver *rx = NULL;
    ember_poller *p = NULL;
    CHECK_CODE(ember_notifier_new(&nt), EMBER_OK);
    CHECK_CODE(ember_poller_new(&p), EMBER_OK);
    if (nt == NULL || p == NULL) {
        ember_notifier_free(nt);
        ember_poller_free(p);
        return;
    }
    int nfd = ember_notifier_fd(nt);
    int to_child[2], to_parent[2];
    if (pipe(to_child) != 0 || pipe(to_parent) != 0) {
        CHECK(!"pipe");
        ember_notifier_free(nt);
        ember_poller_free(p);
        return;
    }
    pid_t child = fork_child();
    if (child == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        ember_poller_free(p);
        int rc = ring_child(name, nfd, to_child[0], to_parent[1]);
        ember_notifier_free(nt);
        _exit(rc);
    }
    close(to_child[0]);
    close(to_parent[1]);
    CHECK(child > 0);
    uint8_t buf[64];
    size_t len = 0;
    int ready = -1;
    uint64_t count = 0;
    ember_ready r = {0, 0, 0, 0, 0};
    CHECK(get_byte(to_parent[0], WAIT_MS) == 'C');
    CHECK_CODE(ember_spsc_receiver_open(name, FP, &rx), EMBER_OK);
    if (rx == NULL) goto out;
    CHECK_CODE(ember_poller_add(p, nfd, 0xF2, EMBER_POLL_READ), EMBER_OK);

    /* Empty: announce, let the child send, and its send makes the eventfd readable. */
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 0);
    CHECK(wait_ready(p, 4, 0, NULL) == 0);
    CHECK(put_byte(to_child[1], 'G') == 0);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0xF2 && r.readable == 1);
    CHECK_CODE(ember_spsc_receiver_finish_poll(rx), EMBER_OK);
    CHECK_CODE(ember_notifier_drain(nt, &count), EMBER_OK);
    CHECK(count >= 1);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, WAIT_MS), EMBER_OK);
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);

    /* A record already there when the receiver is about to poll. */
    CHECK(put_byte(to_child[1], 'H') == 0);
    CHECK(get_byte(to_parent[0], WAIT_MS) == 'S');
    ready = -1;
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 1);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_OK);
    CHECK(len == 4 && memcmp(buf, "pong", 4) == 0);

    /* The sender closes while the receiver polls: woken, and the ring says it is over. */
    CHECK_CODE(ember_notifier_drain(nt, NULL), EMBER_OK);
    ready = -1;
    CHECK_CODE(ember_spsc_receiver_prepare_poll(rx, &ready), EMBER_OK);
    CHECK(ready == 0);
    CHECK(put_byte(to_child[1], 'Q') == 0);
    CHECK(wait_ready(p, 4, WAIT_MS, &r) == 1);
    CHECK(r.token == 0xF2 && r.readable == 1);
    CHECK_CODE(ember_spsc_receiver_finish_poll(rx), EMBER_OK);
    CHECK_CODE(ember_notifier_drain(nt, NULL), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, WAIT_MS), EMBER_EPEERGONE);
    CHECK_CODE(ember_poller_remove(p, nfd), EMBER_OK);
out:
    /* The child sees end of file on its pipe if it still waits; a hung one is killed. */
    close(to_child[1]);
    CHECK(reap(child) == 0);
    close(to_parent[0]);
    ember_spsc_receiver_free(rx);
    ember_poller_free(p);
    ember_notifier_free(nt);
}

int main(void) {
    alarm(300); /* a last resort: everything below has its own timeouts */
    test_sigsets();
    uint64_t set = block_test_signals();
    ember_signalfd *s = NULL;
    CHECK_CODE(ember_signalfd_new(set, 1, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_signalfd_new(set, 1, &s), EMBER_OK);
    if (s != NULL) {
        test_signalfd_from_child(s);
        test_send_value(s);
        test_pidfd(s);
    }
    test_daemon();
    test_poller();
    test_timer();
    test_notifier();
    test_ring_local();
    test_ring_cross_process();

    /* Nothing may be left pending when the signals are unblocked again. */
    if (s != NULL) {
        ember_signal_info info;
        int left = 0;
        while (ember_signalfd_recv(s, &info) == EMBER_OK) left++;
        CHECK(left == 0);
    }
    ember_signalfd_free(s); /* the signals stay blocked */
    ember_signalfd_free(NULL);
    uint64_t before = 0, now = 0;
    CHECK_CODE(ember_signal_mask(0, 0, &now), EMBER_OK);
    CHECK((now & set) == set);
    CHECK_CODE(ember_signal_mask(2, old_mask, &before), EMBER_OK);
    CHECK((before & set) == set);
    CHECK_CODE(ember_signal_mask(0, 0, &now), EMBER_OK);
    CHECK(now == old_mask);
    if (failures) {
        fprintf(stderr, "test_signal_poll: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_signal_poll: ok\n");
    return 0;
}
