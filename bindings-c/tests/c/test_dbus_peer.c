/* Peer-to-peer D-Bus from C, no bus: a C server listens (ember_dbus_listen), a forked C
 * client frees the listener it inherited (the socket file stays: only the creator removes
 * it), connects (ember_dbus_connect_peer) and calls the server's method table; the server
 * accepts (ember_dbus_listener_accept) and answers with ember_dbus_process from a poll
 * loop. Then every error path: no client in time, nobody listening, a client that does not
 * speak SASL, bad sizes, NULL pointers, a short address buffer. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define TIMEOUT 5000
#define PATH "/org/ember/Peer"
#define IFACE "org.ember.Peer"
#define SIZE 65536

static int answered_adds;

static int h_add(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    int32_t a = 0, b = 0;
    if (ember_dbus_iter_int32(args, &a) || ember_dbus_iter_int32(args, &b)) return 1;
    answered_adds++;
    return ember_dbus_args_add_int32(reply, a + b);
}

/* The client, in a child process: frees the inherited listener, connects, calls Add three
 * times. Its exit status says what went wrong (0: all well). */
static int client(ember_dbus_listener *inherited, const char *address, const char *sock_path) {
    ember_dbus_listener_free(inherited);
    struct stat st;
    if (stat(sock_path, &st) != 0) return 2; /* a child's free removed the parent's file */
    ember_dbus *d = NULL;
    if (ember_dbus_connect_peer(address, SIZE, SIZE, SIZE, TIMEOUT, &d) != EMBER_OK) return 3;
    ember_dbus_args *a = NULL;
    if (ember_dbus_args_new(256, &a)) return 4;
    for (int32_t i = 0; i < 3; i++) {
        ember_dbus_args_clear(a);
        if (ember_dbus_args_add_int32(a, 40) || ember_dbus_args_add_int32(a, i)) return 5;
        ember_dbus_message r;
        if (ember_dbus_call(d, "org.ember.Peer", PATH, IFACE, "Add", a, TIMEOUT, &r, NULL, NULL)) return 6;
        int32_t sum = 0;
        if (ember_dbus_iter_int32(&r.body, &sum) || sum != 40 + i) return 7;
    }
    /* An unknown method: the peer's error reply. */
    ember_dbus_message r;
    if (ember_dbus_call(d, "org.ember.Peer", PATH, IFACE, "Nope", NULL, TIMEOUT, &r, NULL, NULL) != EMBER_EREMOTE)
        return 8;
    if (!r.error_name || strcmp(r.error_name, "org.freedesktop.DBus.Error.UnknownMethod") != 0) return 9;
    ember_dbus_args_free(a);
    ember_dbus_free(d);
    return 0;
}

static long ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

int main(void) {
    char sock_path[108], listen_at[160], address[400];
    snprintf(sock_path, sizeof sock_path, "/tmp/ember-c-p2p-%d.sock", (int)getpid());
    unlink(sock_path);
    snprintf(listen_at, sizeof listen_at, "unix:path=%s", sock_path);

    ember_dbus_listener *l = NULL;
    CHECK_CODE(ember_dbus_listen(listen_at, &l), EMBER_OK);
    if (!l) return 1;
    CHECK_CODE(ember_dbus_listener_address(l, address, sizeof address), EMBER_OK);
    CHECK(strncmp(address, listen_at, strlen(listen_at)) == 0 && strstr(address, ",guid=") != NULL);
    char tiny[8];
    CHECK_CODE(ember_dbus_listener_address(l, tiny, sizeof tiny), EMBER_ENOSPC);
    CHECK(ember_dbus_listener_fd(l) >= 0);
    CHECK_CODE(ember_dbus_listener_fd(NULL), EMBER_EINVAL);

    /* No client yet: a short accept times out, promptly. */
    ember_dbus *none = NULL;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_CODE(ember_dbus_listener_accept(l, SIZE, SIZE, SIZE, 100, &none), EMBER_ETIMEDOUT);
    long took = ms_since(&t0);
    CHECK(took >= 90 && took < 2000);
    CHECK(none == NULL);

    pid_t pid = fork();
    if (pid == 0) _exit(client(l, address, sock_path));

    /* The server: accept, then serve from a poll loop until the client is done. */
    ember_dbus *s = NULL;
    CHECK_CODE(ember_dbus_listener_accept(l, SIZE, SIZE, SIZE, TIMEOUT, &s), EMBER_OK);
    const ember_dbus_method methods[] = {{"Add", "ii", "i", h_add, NULL}};
    const ember_dbus_interface ifaces[] = {{IFACE, methods, 1, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_object objects[] = {{PATH, ifaces, 1}};
    ember_dbus_service *svc = NULL;
    CHECK_CODE(ember_dbus_service_new(objects, 1, &svc), EMBER_OK);
    int status = -1;
    for (int round = 0; s && svc && round < 500; round++) {
        struct pollfd p = {ember_dbus_fd(s), POLLIN, 0};
        if (poll(&p, 1, 20) > 0) {
            for (;;) {
                ember_dbus_message other;
                int answered = 0;
                int rc = ember_dbus_process(s, svc, 0, &other, &answered);
                if (rc == EMBER_ETIMEDOUT || rc == EMBER_EPEERGONE) break;
                CHECK_CODE(rc, EMBER_OK);
                if (rc) break;
            }
        }
        if (waitpid(pid, &status, WNOHANG) == pid) break;
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fprintf(stderr, "client status %d\n", status);
    CHECK(answered_adds == 3);
    ember_dbus_service_free(svc);
    ember_dbus_free(s);

    /* A client that does not speak SASL is refused within the accept's time. */
    int raw = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, sock_path, sizeof sa.sun_path - 1);
    CHECK(connect(raw, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(write(raw, "HELLO?\r\n", 8) == 8);
    ember_dbus *bad = NULL;
    int rc = ember_dbus_listener_accept(l, SIZE, SIZE, SIZE, 1000, &bad);
    CHECK(rc == EMBER_EOS || rc == EMBER_ETIMEDOUT);
    CHECK(bad == NULL);
    close(raw);

    /* Bad arguments. */
    ember_dbus *x = NULL;
    CHECK_CODE(ember_dbus_listener_accept(l, 10, SIZE, SIZE, 100, &x), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_listener_accept(NULL, SIZE, SIZE, SIZE, 100, &x), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_listener_accept(l, SIZE, SIZE, SIZE, 100, NULL), EMBER_EINVAL);
    ember_dbus_listener *other = NULL;
    CHECK_CODE(ember_dbus_listen("tcp:host=127.0.0.1,port=1", &other), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_listen(listen_at, &other), EMBER_EOS); /* the path is taken */
    CHECK_CODE(ember_dbus_listen(NULL, &other), EMBER_EINVAL);
    CHECK(other == NULL);

    ember_dbus_listener_free(l);
    struct stat st;
    CHECK(stat(sock_path, &st) != 0); /* the creator's free removes the file */

    /* Nobody listening: refused at once. */
    CHECK_CODE(ember_dbus_connect_peer(listen_at, SIZE, SIZE, SIZE, 1000, &x), EMBER_EOS);
    CHECK_CODE(ember_dbus_connect_peer(listen_at, SIZE, 1, SIZE, 1000, &x), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_connect_peer(NULL, SIZE, SIZE, SIZE, 1000, &x), EMBER_EINVAL);
    CHECK(x == NULL);
    ember_dbus_listener_free(NULL);

    if (failures) fprintf(stderr, "test_dbus_peer: %d failures\n", failures);
    else printf("test_dbus_peer: ok\n");
    return failures != 0;
}
