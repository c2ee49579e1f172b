/* The C ABI's request/response: a C server (a C callback) in a forked process and a C
 * client, over a seqpacket socket pair, a stream socket pair and a pipe pair; every
 * error path. Built and run by `cargo xtask test` under ASan+UBSan and valgrind. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

enum { ADD = 1, ECHO = 2, FAIL = 3, SILENT = 4, UNKNOWN = 99 };

static int handler(void *user, uint32_t kind, const uint8_t *req, size_t req_len, uint8_t *resp,
                   size_t resp_cap, size_t *resp_len) {
    unsigned *served = user;
    (*served)++;
    switch (kind) {
    case ADD: {
        uint32_t a, b, sum;
        if (req_len != 8) return (int)EMBER_RPC_BAD_REQUEST;
        memcpy(&a, req, 4);
        memcpy(&b, req + 4, 4);
        sum = a + b;
        memcpy(resp, &sum, 4);
        *resp_len = 4;
        return 0;
    }
    case ECHO:
        if (req_len > resp_cap) return (int)EMBER_RPC_BAD_REQUEST;
        if (req_len) memcpy(resp, req, req_len);
        *resp_len = req_len;
        return 0;
    case FAIL:
        return 300;
    case SILENT:
        return -1;
    default:
        return (int)EMBER_RPC_UNKNOWN_KIND;
    }
}

/* The server process: answers until the client goes away; exits with 0 if it served. */
static void serve(ember_rpc_server *s) {
    unsigned served = 0;
    for (;;) {
        int r = ember_rpc_serve_one(s, 10000, handler, &served);
        if (r == EMBER_EPEERGONE) break;
        if (r != EMBER_OK) {
            fprintf(stderr, "server: %s\n", ember_strerror(r));
            ember_rpc_server_free(s);
            _exit(1);
        }
    }
    ember_rpc_server_free(s);
    _exit(served > 0 ? 0 : 2);
}

static uint8_t resp[8192];

static void exercise(ember_rpc_client *c) {
    size_t len = 0;
    uint32_t code = 0;
    for (uint32_t i = 0; i < 100; i++) {
        uint32_t ab[2] = {i, 1000}, sum = 0;
        CHECK_CODE(ember_rpc_call(c, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, &len, &code, 5000), EMBER_OK);
        memcpy(&sum, resp, 4);
        CHECK(len == 4 && sum == i + 1000 && code == 0);
    }
    /* The largest payload both ways. */
    static uint8_t big[EMBER_RPC_MAX_PAYLOAD + 1];
    for (size_t k = 0; k < sizeof big; k++) big[k] = (uint8_t)k;
    CHECK_CODE(ember_rpc_call(c, ECHO, big, EMBER_RPC_MAX_PAYLOAD, resp, sizeof resp, &len, &code, 5000), EMBER_OK);
    CHECK(len == EMBER_RPC_MAX_PAYLOAD && memcmp(resp, big, len) == 0);
    CHECK_CODE(ember_rpc_call(c, ECHO, big, EMBER_RPC_MAX_PAYLOAD + 1, resp, sizeof resp, &len, &code, 5000), EMBER_ETOOBIG);
    /* Error responses: the handler's code, a bad request, an unknown kind, no response. */
    CHECK_CODE(ember_rpc_call(c, FAIL, NULL, 0, resp, sizeof resp, &len, &code, 5000), EMBER_EREMOTE);
    CHECK(code == 300);
    CHECK_CODE(ember_rpc_call(c, ADD, big, 3, resp, sizeof resp, &len, &code, 5000), EMBER_EREMOTE);
    CHECK(code == EMBER_RPC_BAD_REQUEST);
    CHECK_CODE(ember_rpc_call(c, UNKNOWN, NULL, 0, resp, sizeof resp, &len, &code, 5000), EMBER_EREMOTE);
    CHECK(code == EMBER_RPC_UNKNOWN_KIND);
    CHECK_CODE(ember_rpc_call(c, SILENT, NULL, 0, resp, sizeof resp, &len, &code, 5000), EMBER_EREMOTE);
    CHECK(code == EMBER_RPC_NO_RESPONSE && strlen((const char *)resp) == len && len > 0);
    /* A response larger than the caller's buffer; the link still works after. */
    CHECK_CODE(ember_rpc_call(c, ECHO, big, 100, resp, 10, &len, &code, 5000), EMBER_ENOSPC);
    uint32_t ab[2] = {1, 2}, sum = 0;
    CHECK_CODE(ember_rpc_call(c, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, &len, &code, 5000), EMBER_OK);
    memcpy(&sum, resp, 4);
    CHECK(sum == 3);
    /* Zero timeouts: the request is given up when its answer is not there yet, and its
     * slot is freed (the client has 4): many of them, then a normal call still works. */
    for (int k = 0; k < 10; k++) {
        int r = ember_rpc_call(c, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, &len, &code, 0);
        CHECK(r == EMBER_OK || r == EMBER_ETIMEDOUT);
    }
    CHECK_CODE(ember_rpc_call(c, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, &len, &code, 5000), EMBER_OK);
    /* The response buffer may be the request's (in place). */
    memcpy(resp, ab, 8);
    CHECK_CODE(ember_rpc_call(c, ADD, resp, 8, resp, sizeof resp, &len, &code, 5000), EMBER_OK);
    memcpy(&sum, resp, 4);
    CHECK(len == 4 && sum == 3);
    /* NULLs. */
    CHECK_CODE(ember_rpc_call(NULL, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, &len, &code, 5000), EMBER_EINVAL);
    CHECK_CODE(ember_rpc_call(c, ADD, (const uint8_t *)ab, 8, resp, sizeof resp, NULL, &code, 5000), EMBER_EINVAL);
}

static void over_sockets(int type) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, type, 0, sv) == 0);
    int seqpacket = type == SOCK_SEQPACKET;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        ember_rpc_server *s = NULL;
        if (ember_rpc_server_from_socket(sv[1], seqpacket, &s) != EMBER_OK) _exit(3);
        serve(s);
    }
    close(sv[1]);
    ember_rpc_client *c = NULL;
    CHECK_CODE(ember_rpc_client_from_socket(sv[0], seqpacket, &c), EMBER_OK);
    exercise(c);
    ember_rpc_client_free(c);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void over_pipes(void) {
    int req[2], rsp[2];
    CHECK(pipe(req) == 0 && pipe(rsp) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(req[1]);
        close(rsp[0]);
        ember_rpc_server *s = NULL;
        if (ember_rpc_server_from_pipes(req[0], rsp[1], &s) != EMBER_OK) _exit(3);
        CHECK(ember_rpc_server_fd(s) == req[0]);
        serve(s);
    }
    close(req[0]);
    close(rsp[1]);
    ember_rpc_client *c = NULL;
    CHECK_CODE(ember_rpc_client_from_pipes(rsp[0], req[1], &c), EMBER_OK);
    exercise(c);
    ember_rpc_client_free(c);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The server gone mid-conversation: the call ends with EMBER_EPEERGONE, never hangs. */
static void server_dies(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
    ember_rpc_client *c = NULL;
    CHECK_CODE(ember_rpc_client_from_socket(sv[0], 1, &c), EMBER_OK);
    close(sv[1]);
    size_t len = 0;
    uint32_t code = 0;
    int r = ember_rpc_call(c, ADD, NULL, 0, resp, sizeof resp, &len, &code, 2000);
    CHECK(r == EMBER_EPEERGONE || r == EMBER_EOS);
    ember_rpc_client_free(c);
    CHECK_CODE(ember_rpc_client_from_socket(-1, 1, &c), EMBER_EINVAL);
    CHECK(c == NULL);
    /* On EMBER_EINVAL the fds stay the caller's (not closed behind its back). */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK_CODE(ember_rpc_client_from_pipes(p[0], -1, &c), EMBER_EINVAL);
    CHECK_CODE(ember_rpc_client_from_pipes(p[0], p[0], &c), EMBER_EINVAL);
    CHECK(write(p[1], "x", 1) == 1);
    char ch = 0;
    CHECK(read(p[0], &ch, 1) == 1 && ch == 'x');
    close(p[0]);
    close(p[1]);
    CHECK_CODE(ember_rpc_serve_one(NULL, 0, handler, NULL), EMBER_EINVAL);
    ember_rpc_client_free(NULL);
    ember_rpc_server_free(NULL);
}

/* A connection made with ember_uds_* handed over as a plain fd (for the rpc layer): it
 * stays connected, and the fd is blocking again. */
static void socket_into_fd(void) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/ember-c-rpc-%d.sock", (int)getpid());
    ember_uds_listener *l = NULL;
    ember_socket *c = NULL, *a = NULL;
    ember_creds who;
    CHECK_CODE(ember_uds_listen(path, EMBER_UDS_SEQPACKET, &l), EMBER_OK);
    CHECK_CODE(ember_uds_connect(path, EMBER_UDS_SEQPACKET, &c), EMBER_OK);
    CHECK_CODE(ember_uds_accept(l, 1000, &a, &who), EMBER_OK);
    int fc = -1, fa = -1;
    CHECK_CODE(ember_socket_into_fd(NULL, &fc), EMBER_EINVAL);
    CHECK_CODE(ember_socket_into_fd(c, NULL), EMBER_EINVAL); /* c is still ours */
    CHECK_CODE(ember_socket_into_fd(c, &fc), EMBER_OK);
    CHECK_CODE(ember_socket_into_fd(a, &fa), EMBER_OK);
    CHECK(fc >= 0 && fa >= 0);
    CHECK(send(fc, "hand", 4, 0) == 4);
    char buf[8];
    CHECK(recv(fa, buf, sizeof buf, 0) == 4 && memcmp(buf, "hand", 4) == 0);
    ember_rpc_server *srv = NULL;
    CHECK_CODE(ember_rpc_server_from_socket(fa, 1, &srv), EMBER_OK);
    ember_rpc_server_free(srv);
    close(fc);
    ember_uds_listener_free(l);
}

int main(void) {
    over_sockets(SOCK_SEQPACKET);
    over_sockets(SOCK_STREAM);
    over_pipes();
    server_dies();
    socket_into_fd();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
