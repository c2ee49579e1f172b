/* systemd integration from C: every function of bindings-c/src/systemd.rs, with its error
 * paths, against a NOTIFY_SOCKET listener this test binds itself:
 * - ember_sd_notify, ember_sd_ready, ember_sd_watchdog: the exact datagram text, to a
 *   socket path and to an abstract name; 0 with no NOTIFY_SOCKET; NULL and empty text;
 *   nobody listening (ECONNREFUSED); an unusable NOTIFY_SOCKET;
 * - ember_sd_watchdog_usec: unset, set, WATCHDOG_PID ours and another's, garbage, NULL;
 * - ember_sd_listen_fds: not activated; a descriptor announced but not open (EBADF); two
 *   descriptors put at 3 and 4 as the service manager does (a datagram and a stream socket), with LISTEN_PID, LISTEN_FDS and
 *   LISTEN_FDNAMES: too small arrays (ENOSPC and the count), then taken with their names,
 *   made FD_CLOEXEC, the variables unset; taken only once; garbage and too many.
 * The process is single-threaded, so setenv/unsetenv are safe here. Built and run by
 * `cargo xtask c-abi` under ASan+UBSan and valgrind. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

/* A datagram socket bound to `name` (a path, or "@abstract"), with a 10 s receive
 * timeout so that a missing message fails instead of hanging. */
static int listener(const char *name) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (name[0] == '@') {
        /* The abstract namespace: a leading NUL, no terminating one. */
        memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
    } else {
        unlink(name);
        strcpy(sa.sun_path, name);
        len = (socklen_t)sizeof sa;
    }
    CHECK(bind(fd, (struct sockaddr *)&sa, len) == 0);
    struct timeval tv = {10, 0};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    return fd;
}

/* The next datagram on `fd` equals `want`. */
static void expect_text(int fd, const char *want) {
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    CHECK(n >= 0);
    if (n < 0) return;
    buf[n] = '\0';
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "got \"%s\", wanted \"%s\"\n", buf, want);
        failures++;
    }
}

/* Nothing arrives within 100 ms. */
static void expect_nothing(int fd) {
    struct timeval tv = {0, 100000};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
    char buf[64];
    CHECK(recv(fd, buf, sizeof buf, 0) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

static void test_notify(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/ember-c-sd-%d.sock", (int)getpid());
    int fd = listener(path);
    CHECK(setenv("NOTIFY_SOCKET", path, 1) == 0);
    CHECK_CODE(ember_sd_notify("READY=1\nSTATUS=from C"), 1);
    expect_text(fd, "READY=1\nSTATUS=from C");
    CHECK_CODE(ember_sd_ready(), 1);
    expect_text(fd, "READY=1");
    CHECK_CODE(ember_sd_watchdog(), 1);
    expect_text(fd, "WATCHDOG=1");
    CHECK_CODE(ember_sd_notify(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_sd_notify(""), EMBER_EINVAL);
    expect_nothing(fd);
    close(fd);
    /* The socket is gone: nobody listens. */
    unlink(path);
    CHECK_CODE(ember_sd_ready(), EMBER_EOS);
    CHECK(ember_last_os_error() == ECONNREFUSED);

    char abstract[64];
    snprintf(abstract, sizeof abstract, "@ember-c-sd-%d", (int)getpid());
    fd = listener(abstract);
    CHECK(setenv("NOTIFY_SOCKET", abstract, 1) == 0);
    CHECK_CODE(ember_sd_notify("STOPPING=1"), 1);
    expect_text(fd, "STOPPING=1");
    CHECK_CODE(ember_sd_watchdog(), 1);
    expect_text(fd, "WATCHDOG=1");
    close(fd);

    CHECK(setenv("NOTIFY_SOCKET", "relative/notify.sock", 1) == 0);
    CHECK_CODE(ember_sd_ready(), EMBER_EINVAL);
    /* Not under systemd: nothing to do, 0. */
    CHECK(unsetenv("NOTIFY_SOCKET") == 0);
    CHECK_CODE(ember_sd_ready(), 0);
    CHECK_CODE(ember_sd_watchdog(), 0);
    CHECK_CODE(ember_sd_notify("READY=1"), 0);
}

static void test_watchdog(void) {
    uint64_t usec = 7;
    CHECK_CODE(ember_sd_watchdog_usec(NULL), EMBER_EINVAL);
    CHECK(unsetenv("WATCHDOG_USEC") == 0 && unsetenv("WATCHDOG_PID") == 0);
    CHECK_CODE(ember_sd_watchdog_usec(&usec), 0);
    CHECK(usec == 0);
    CHECK(setenv("WATCHDOG_USEC", "100000", 1) == 0);
    CHECK_CODE(ember_sd_watchdog_usec(&usec), 1);
    CHECK(usec == 100000);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    CHECK(setenv("WATCHDOG_PID", pid, 1) == 0);
    usec = 0;
    CHECK_CODE(ember_sd_watchdog_usec(&usec), 1);
    CHECK(usec == 100000);
    CHECK(setenv("WATCHDOG_PID", "1", 1) == 0);
    CHECK_CODE(ember_sd_watchdog_usec(&usec), 0);
    CHECK(usec == 0);
    CHECK(unsetenv("WATCHDOG_PID") == 0);
    CHECK(setenv("WATCHDOG_USEC", "soon", 1) == 0);
    CHECK_CODE(ember_sd_watchdog_usec(&usec), EMBER_EINVAL);
    CHECK(unsetenv("WATCHDOG_USEC") == 0);
}

static void set_listen_env(const char *n, const char *names) {
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    CHECK(setenv("LISTEN_PID", pid, 1) == 0);
    CHECK(setenv("LISTEN_FDS", n, 1) == 0);
    if (names != NULL) CHECK(setenv("LISTEN_FDNAMES", names, 1) == 0);
    else CHECK(unsetenv("LISTEN_FDNAMES") == 0);
}

static void test_listen_fds(void) {
    int fds[4] = {-1, -1, -1, -1};
    ember_sd_fdname names[4];
    size_t count = 99;
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 4, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_sd_listen_fds(0, NULL, NULL, 4, &count), EMBER_EINVAL);
    /* Not activated. */
    CHECK(unsetenv("LISTEN_PID") == 0 && unsetenv("LISTEN_FDS") == 0);
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 4, &count), EMBER_OK);
    CHECK(count == 0);
    CHECK_CODE(ember_sd_listen_fds(0, NULL, NULL, 0, &count), EMBER_OK);
    /* Another process's descriptors. */
    CHECK(setenv("LISTEN_PID", "1", 1) == 0 && setenv("LISTEN_FDS", "2", 1) == 0);
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 4, &count), EMBER_OK);
    CHECK(count == 0);

    /* The service manager's part: descriptors at 3 and 4 (which must be free). */
    CHECK(fcntl(3, F_GETFD) < 0 && fcntl(4, F_GETFD) < 0);
    set_listen_env("1", "data");
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 4, &count), EMBER_EOS);
    CHECK(ember_last_os_error() == EBADF);
    /* Made above 10 first, so that nothing lands on 3 or 4 before the dup2s. */
    int pair[2], spair[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, spair) == 0);
    int high[3] = {fcntl(pair[0], F_DUPFD, 10), fcntl(pair[1], F_DUPFD, 10), fcntl(spair[0], F_DUPFD, 10)};
    close(pair[0]);
    close(pair[1]);
    close(spair[0]);
    close(spair[1]);
    pair[1] = high[1];
    CHECK(high[0] >= 10 && high[1] >= 10 && high[2] >= 10);
    CHECK(dup2(high[0], 3) == 3 && dup2(high[2], 4) == 4);
    close(high[0]);
    close(high[2]);
    set_listen_env("2", "data:cmd");
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 1, &count), EMBER_ENOSPC);
    CHECK(count == 2);
    CHECK(fcntl(3, F_GETFD) == 0); /* untouched: not taken */
    CHECK_CODE(ember_sd_listen_fds(1, fds, names, 4, &count), EMBER_OK);
    CHECK(count == 2);
    CHECK(fds[0] == 3 && fds[1] == 4);
    CHECK(strcmp(names[0].name, "data") == 0 && strcmp(names[1].name, "cmd") == 0);
    CHECK(fcntl(3, F_GETFD) == FD_CLOEXEC && fcntl(4, F_GETFD) == FD_CLOEXEC);
    CHECK(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL && getenv("LISTEN_FDNAMES") == NULL);
    /* The descriptors work: a datagram through the pair. */
    CHECK(send(pair[1], "hi", 2, 0) == 2);
    char buf[8];
    CHECK(recv(fds[0], buf, sizeof buf, 0) == 2);
    /* Taken once: the same variables again find nothing. */
    set_listen_env("2", NULL);
    CHECK_CODE(ember_sd_listen_fds(0, fds + 2, NULL, 2, &count), EMBER_OK);
    CHECK(count == 0);
    close(fds[0]);
    close(fds[1]);
    close(pair[1]);
    /* Garbage, and more than the library takes. */
    set_listen_env("two", NULL);
    CHECK_CODE(ember_sd_listen_fds(0, fds, names, 4, &count), EMBER_EINVAL);
    set_listen_env("1000", NULL);
    CHECK_CODE(ember_sd_listen_fds(1, fds, names, 4, &count), EMBER_ETOOBIG);
    CHECK(getenv("LISTEN_FDS") == NULL);
}

int main(void) {
    alarm(120); /* a last resort: every receive has a timeout */
    test_notify();
    test_watchdog();
    test_listen_fds();
    if (failures) {
        fprintf(stderr, "test_systemd: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_systemd: ok\n");
    return 0;
}
