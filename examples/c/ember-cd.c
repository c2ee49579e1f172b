/* ember-cd: a firmware-style daemon in C, through ember.h alone.
 *
 *   ember-cd <socket> <segment> [<config>]
 *
 * One ember_poller loop over:
 *   - the daemon helper: SIGTERM or SIGINT end the loop, everything is removed (socket
 *     file, seqlock segment) and the exit status is 0; SIGHUP re-reads <config>;
 *   - a timer: each tick adds one to the tick count and publishes the counter and a
 *     timestamp in the seqlock "/<segment>" (layout: ember-cd-proto.h);
 *   - a seqpacket listener at <socket> (a path, or @name for the abstract namespace) and
 *     one rpc server per client (at most MAX_CLIENTS): ECD_KIND_GET answers the counter,
 *     ECD_KIND_ADD adds N to the offset; any other kind gets the rpc layer's
 *     EMBER_RPC_UNKNOWN_KIND error response.
 *
 * <config> holds one setting, "interval_ms=N" (1 to 3600000; blank lines and lines
 * starting with '#' are ignored). Without it the tick is DEFAULT_INTERVAL_MS. A bad file
 * at start is fatal; on SIGHUP it changes nothing and says why on stderr.
 *
 * stdout: "ember-cd: ready" (flushed) once listening, then one line per event (client
 * connected or gone, reloaded, stopping). Exit status: 0 after SIGTERM/SIGINT, 1 if it
 * could not start or the loop failed, 2 for a bad command line. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ember.h>

#include "ember-cd-proto.h"

#define MAX_CLIENTS 8
#define DEFAULT_INTERVAL_MS 100u
#define MAX_INTERVAL_MS 3600000u
/* Requests served per client per wake-up: a busy client cannot starve the others (the
 * poller is level-triggered, so what is left wakes the next wait). */
#define BURST 16

/* Poller tokens: the fixed sources, then one per client slot. */
enum { TOK_DAEMON = 1, TOK_TIMER, TOK_LISTENER, TOK_CLIENT0 = 100 };

struct client {
    ember_rpc_server *srv; /* NULL: the slot is free */
    int fd;                /* the server's fd, as the poller knows it */
    uint32_t pid;
};

struct cd {
    const char *socket_path;
    const char *config_path;
    char segment[256];
    uint64_t interval_ms;
    uint64_t ticks;
    int64_t offset;
    ember_daemon *daemon;
    ember_poller *poller;
    ember_timer *timer;
    ember_seqlock_writer *seqlock;
    ember_uds_listener *listener;
    struct client clients[MAX_CLIENTS];
};

static void fail(const char *what, int rc) {
    if (rc == EMBER_EOS)
        fprintf(stderr, "ember-cd: %s: %s (%s)\n", what, ember_strerror(rc), strerror(ember_last_os_error()));
    else
        fprintf(stderr, "ember-cd: %s: %s\n", what, ember_strerror(rc));
}

static int64_t counter_of(const struct cd *cd, int64_t offset) {
    /* ticks stay far below 2^62 and |offset| <= ECD_OFFSET_LIMIT: no overflow. */
    return (int64_t)cd->ticks + offset;
}

/* Publishes the value the daemon would have with `offset`. */
static int publish(struct cd *cd, int64_t offset) {
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        fprintf(stderr, "ember-cd: clock_gettime: %s\n", strerror(errno));
        return EMBER_EOS;
    }
    struct ecd_value v = {
        .counter = counter_of(cd, offset),
        .ticks = cd->ticks,
        .offset = offset,
        .mono_ns = (uint64_t)now.tv_sec * UINT64_C(1000000000) + (uint64_t)now.tv_nsec,
    };
    uint8_t buf[ECD_VALUE_LEN];
    ecd_value_encode(&v, buf);
    int rc = ember_seqlock_writer_write(cd->seqlock, buf, sizeof buf);
    if (rc != EMBER_OK) fail("seqlock write", rc);
    return rc;
}

/* ---- The configuration ---------------------------------------------------------- */

/* Reads `path` into *interval_ms. Returns 0, or -1 after writing the reason into `why`. */
static int read_config(const char *path, uint64_t *interval_ms, char *why, size_t why_cap) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(why, why_cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[256];
    int lineno = 0, found = 0, bad = 0;
    uint64_t value = 0;
    while (!bad && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            snprintf(why, why_cap, "%s:%d: line too long", path, lineno);
            bad = 1;
            break;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\0' || *p == '#') continue;
        const char key[] = "interval_ms";
        if (strncmp(p, key, sizeof key - 1) != 0) {
            snprintf(why, why_cap, "%s:%d: unknown setting (only interval_ms=N)", path, lineno);
            bad = 1;
            break;
        }
        p += sizeof key - 1;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != '=') {
            snprintf(why, why_cap, "%s:%d: expected interval_ms=N", path, lineno);
            bad = 1;
            break;
        }
        p++;
        while (*p == ' ' || *p == '\t') p++;
        /* Digits only: strtoull would take a sign and wrap a negative number. */
        uint64_t v = 0;
        const char *digits = p;
        while (*p >= '0' && *p <= '9' && v <= MAX_INTERVAL_MS) v = v * 10 + (uint64_t)(*p++ - '0');
        if (p == digits || *p != '\0' || v < 1 || v > MAX_INTERVAL_MS) {
            snprintf(why, why_cap, "%s:%d: interval_ms must be a number from 1 to %u", path, lineno,
                     MAX_INTERVAL_MS);
            bad = 1;
            break;
        }
        if (found) {
            snprintf(why, why_cap, "%s:%d: interval_ms given twice", path, lineno);
            bad = 1;
            break;
        }
        found = 1;
        value = v;
    }
    if (!bad && ferror(f)) {
        snprintf(why, why_cap, "%s: read error", path);
        bad = 1;
    }
    fclose(f);
    if (bad) return -1;
    if (!found) {
        snprintf(why, why_cap, "%s: no interval_ms=N", path);
        return -1;
    }
    *interval_ms = value;
    return 0;
}

static void reload(struct cd *cd) {
    if (cd->config_path == NULL) {
        fprintf(stderr, "ember-cd: SIGHUP: no config file given, nothing to reload\n");
        return;
    }
    uint64_t interval = 0;
    char why[512];
    if (read_config(cd->config_path, &interval, why, sizeof why) != 0) {
        fprintf(stderr, "ember-cd: reload: %s; keeping interval_ms=%" PRIu64 "\n", why, cd->interval_ms);
        return;
    }
    int rc = ember_timer_set(cd->timer, interval, interval, 0);
    if (rc != EMBER_OK) {
        fail("reload: timer", rc);
        return;
    }
    cd->interval_ms = interval;
    printf("ember-cd: reloaded: interval_ms=%" PRIu64 "\n", interval);
    fflush(stdout);
}

/* ---- Requests -------------------------------------------------------------------- */

static void put_answer(const struct cd *cd, int64_t offset, uint8_t *resp, size_t *resp_len) {
    ecd_put_u64(resp, ecd_from_i64(counter_of(cd, offset)));
    ecd_put_u64(resp + 8, ecd_from_i64(offset));
    *resp_len = ECD_RESP_LEN;
}

static int handle(void *user, uint32_t kind, const uint8_t *req, size_t req_len, uint8_t *resp, size_t resp_cap,
                  size_t *resp_len) {
    struct cd *cd = user;
    if (resp_cap < ECD_RESP_LEN) return EMBER_RPC_NO_RESPONSE; /* never: the cap is EMBER_RPC_MAX_PAYLOAD */
    switch (kind) {
    case ECD_KIND_GET:
        if (req_len != 0) return EMBER_RPC_BAD_REQUEST;
        put_answer(cd, cd->offset, resp, resp_len);
        return 0;
    case ECD_KIND_ADD: {
        if (req_len != ECD_ADD_REQ_LEN) return EMBER_RPC_BAD_REQUEST;
        int64_t n = ecd_to_i64(ecd_get_u64(req));
        /* Both within the limit first, so the sum cannot overflow. */
        if (n > 2 * ECD_OFFSET_LIMIT || n < -2 * ECD_OFFSET_LIMIT) return ECD_ERR_RANGE;
        int64_t next = cd->offset + n;
        if (next > ECD_OFFSET_LIMIT || next < -ECD_OFFSET_LIMIT) return ECD_ERR_RANGE;
        /* Readers of the seqlock see the new offset at once, not at the next tick. */
        if (publish(cd, next) != EMBER_OK) return ECD_ERR_PUBLISH;
        cd->offset = next;
        put_answer(cd, next, resp, resp_len);
        return 0;
    }
    default:
        return EMBER_RPC_UNKNOWN_KIND;
    }
}

/* ---- Clients --------------------------------------------------------------------- */

static void drop_client(struct cd *cd, size_t i, const char *why) {
    struct client *c = &cd->clients[i];
    int rc = ember_poller_remove(cd->poller, c->fd);
    if (rc != EMBER_OK) fail("poller remove", rc);
    ember_rpc_server_free(c->srv);
    printf("ember-cd: client %zu (pid %" PRIu32 ") %s\n", i, c->pid, why);
    fflush(stdout);
    c->srv = NULL;
    c->fd = -1;
    c->pid = 0;
}

static void serve_client(struct cd *cd, size_t i) {
    for (int n = 0; n < BURST && cd->clients[i].srv != NULL; n++) {
        int rc = ember_rpc_serve_one(cd->clients[i].srv, 0, handle, cd);
        if (rc == EMBER_OK) continue;
        if (rc == EMBER_ETIMEDOUT) return; /* nothing more now */
        if (rc == EMBER_EPEERGONE) {
            drop_client(cd, i, "gone");
        } else {
            fail("serve", rc);
            drop_client(cd, i, "dropped after an error");
        }
        return;
    }
}

/* Accepts every pending connection. */
static void accept_clients(struct cd *cd) {
    for (;;) {
        ember_socket *s = NULL;
        ember_creds who;
        int rc = ember_uds_accept(cd->listener, 0, &s, &who);
        if (rc == EMBER_ETIMEDOUT) return;
        if (rc != EMBER_OK) {
            /* EMFILE and the like: the connection stays queued and the next wake-up
             * tries again. */
            fail("accept", rc);
            return;
        }
        /* The rpc server wants an fd it owns: the socket handle hands its over. */
        int fd = -1;
        rc = ember_socket_into_fd(s, &fd);
        if (rc != EMBER_OK) {
            ember_socket_free(s);
            fail("accept", rc);
            continue;
        }
        size_t i = 0;
        while (i < MAX_CLIENTS && cd->clients[i].srv != NULL) i++;
        if (i == MAX_CLIENTS) {
            /* The client sees EMBER_EPEERGONE on its first call. */
            fprintf(stderr, "ember-cd: %d clients already, refusing pid %" PRIu32 "\n", MAX_CLIENTS, who.pid);
            close(fd);
            continue;
        }
        ember_rpc_server *srv = NULL;
        rc = ember_rpc_server_from_socket(fd, 1, &srv);
        if (rc != EMBER_OK) {
            /* On EMBER_EINVAL the fd is still ours; on any other failure it was closed. */
            if (rc == EMBER_EINVAL) close(fd);
            fail("rpc server", rc);
            continue;
        }
        int sfd = ember_rpc_server_fd(srv);
        if (sfd < 0) {
            fail("rpc server fd", sfd);
            ember_rpc_server_free(srv);
            continue;
        }
        rc = ember_poller_add(cd->poller, sfd, TOK_CLIENT0 + i, EMBER_POLL_READ);
        if (rc != EMBER_OK) {
            fail("poller add", rc);
            ember_rpc_server_free(srv);
            continue;
        }
        cd->clients[i] = (struct client){.srv = srv, .fd = sfd, .pid = who.pid};
        printf("ember-cd: client %zu (pid %" PRIu32 ", uid %" PRIu32 ") connected\n", i, who.pid, who.uid);
        fflush(stdout);
    }
}

/* ---- The loop -------------------------------------------------------------------- */

static int tick(struct cd *cd) {
    uint64_t n = 0;
    int rc = ember_timer_expirations(cd->timer, &n);
    if (rc == EMBER_EAGAIN) return EMBER_OK; /* woken, but not fired after all */
    if (rc != EMBER_OK) {
        fail("timer", rc);
        return rc;
    }
    cd->ticks += n; /* more than one: ticks were missed, and counted */
    return publish(cd, cd->offset);
}

/* Handles every pending daemon request. Returns 1 to stop, 0 to go on, -1 on error. */
static int daemon_requests(struct cd *cd) {
    for (;;) {
        int event = EMBER_DAEMON_NONE, sig = 0;
        uint32_t pid = 0;
        int rc = ember_daemon_wait(cd->daemon, 0, &event, &sig, &pid);
        if (rc != EMBER_OK) {
            fail("signals", rc);
            return -1;
        }
        switch (event) {
        case EMBER_DAEMON_NONE:
            return 0;
        case EMBER_DAEMON_RELOAD:
            reload(cd);
            break;
        case EMBER_DAEMON_SHUTDOWN:
            printf("ember-cd: signal %d from pid %" PRIu32 ", stopping\n", sig, pid);
            fflush(stdout);
            return 1;
        default:
            fprintf(stderr, "ember-cd: unknown daemon event %d\n", event);
            break;
        }
    }
}

static int run(struct cd *cd) {
    ember_ready ready[16];
    for (;;) {
        size_t n = 0;
        int rc = ember_poller_wait(cd->poller, ready, sizeof ready / sizeof ready[0], &n, EMBER_FOREVER);
        if (rc != EMBER_OK) {
            fail("poller wait", rc);
            return 1;
        }
        for (size_t k = 0; k < n; k++) {
            uint64_t tok = ready[k].token;
            if (tok == TOK_DAEMON) {
                int r = daemon_requests(cd);
                if (r != 0) return r < 0 ? 1 : 0;
            } else if (tok == TOK_TIMER) {
                if (tick(cd) != EMBER_OK) return 1;
            } else if (tok == TOK_LISTENER) {
                accept_clients(cd);
            } else if (tok >= TOK_CLIENT0 && tok < TOK_CLIENT0 + MAX_CLIENTS) {
                /* A slot freed earlier in this batch has srv NULL; one refilled in this
                 * batch just finds nothing to serve. */
                size_t i = (size_t)(tok - TOK_CLIENT0);
                if (cd->clients[i].srv != NULL) serve_client(cd, i);
            }
        }
    }
}

/* ---- Start and stop -------------------------------------------------------------- */

static void cleanup(struct cd *cd) {
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        /* The poller goes too: no need to unwatch. */
        ember_rpc_server_free(cd->clients[i].srv);
        cd->clients[i].srv = NULL;
    }
    ember_uds_listener_free(cd->listener);  /* removes the socket file */
    ember_seqlock_writer_free(cd->seqlock); /* unlinks the segment */
    ember_timer_free(cd->timer);
    ember_poller_free(cd->poller);
    ember_daemon_free(cd->daemon);
}

static int watch(struct cd *cd, int fd, uint64_t token, const char *what) {
    if (fd < 0) {
        fail(what, fd);
        return fd;
    }
    int rc = ember_poller_add(cd->poller, fd, token, EMBER_POLL_READ);
    if (rc != EMBER_OK) fail(what, rc);
    return rc;
}

static int start(struct cd *cd) {
    int rc;
    if ((rc = ember_poller_new(&cd->poller)) != EMBER_OK) {
        fail("poller", rc);
        return rc;
    }
    if ((rc = watch(cd, ember_daemon_fd(cd->daemon), TOK_DAEMON, "signals")) != EMBER_OK) return rc;

    /* EMBER_REPLACE_STALE: a seqlock a killed run left (kill -9, the OOM killer) is taken
     * over, atomically; one whose writer lives is EMBER_EINUSE, and this run does not
     * start. */
    rc = ember_seqlock_writer_create_ex(cd->segment, ECD_SEQLOCK_CAPACITY, ECD_FINGERPRINT, EMBER_REPLACE_STALE,
                                        &cd->seqlock);
    if (rc != EMBER_OK) {
        char what[300];
        snprintf(what, sizeof what, "seqlock %s", cd->segment);
        fail(what, rc);
        if (rc == EMBER_EINUSE)
            fprintf(stderr, "ember-cd: another ember-cd (pid %u) runs with seqlock %s\n", (unsigned)ember_last_in_use_pid(),
                    cd->segment);
        else if (rc == EMBER_EOS && ember_last_os_error() == EEXIST)
            fprintf(stderr, "ember-cd: /dev/shm%s is not an Ember segment: remove it\n", cd->segment);
        return rc;
    }
    /* A first value before anyone can ask: readers never see "nothing written yet". */
    if ((rc = publish(cd, cd->offset)) != EMBER_OK) return rc;

    if ((rc = ember_timer_new(cd->interval_ms, cd->interval_ms, &cd->timer)) != EMBER_OK) {
        fail("timer", rc);
        return rc;
    }
    if ((rc = watch(cd, ember_timer_fd(cd->timer), TOK_TIMER, "timer")) != EMBER_OK) return rc;

    if ((rc = ember_uds_listen(cd->socket_path, EMBER_UDS_SEQPACKET, &cd->listener)) != EMBER_OK) {
        char what[300];
        snprintf(what, sizeof what, "listen at %s", cd->socket_path);
        fail(what, rc);
        return rc;
    }
    return watch(cd, ember_uds_listener_fd(cd->listener), TOK_LISTENER, "listener");
}

int main(int argc, char **argv) {
    /* First, before anything else (and before any thread): SIGTERM, SIGINT and SIGHUP
     * are blocked and come through the daemon helper's signalfd. */
    struct cd cd = {.interval_ms = DEFAULT_INTERVAL_MS};
    int rc = ember_daemon_new(&cd.daemon);
    if (rc != EMBER_OK) {
        fail("daemon helper", rc);
        return 1;
    }
    /* Writes to a client that went away return EMBER_EPEERGONE either way; ignoring
     * SIGPIPE spares the library blocking it around each write (docs/c-api.md). */
    signal(SIGPIPE, SIG_IGN);

    if (argc < 3 || argc > 4 || argv[1][0] == '\0') {
        fprintf(stderr, "usage: emberctl-cd <socket> <segment> [<config>]\n");
        ember_daemon_free(cd.daemon);
        return 2;
    }
    cd.socket_path = argv[1];
    cd.config_path = argc == 4 ? argv[3] : NULL;
    if (!ecd_shm_name(argv[2], cd.segment, sizeof cd.segment)) {
        fprintf(stderr, "ember-cd: bad segment name '%s'\n", argv[2]);
        ember_daemon_free(cd.daemon);
        return 2;
    }
    for (size_t i = 0; i < MAX_CLIENTS; i++) cd.clients[i].fd = -1;
    if (cd.config_path != NULL) {
        char why[512];
        if (read_config(cd.config_path, &cd.interval_ms, why, sizeof why) != 0) {
            fprintf(stderr, "ember-cd: %s\n", why);
            ember_daemon_free(cd.daemon);
            return 1;
        }
    }

    int status = 1;
    if (start(&cd) == EMBER_OK) {
        printf("ember-cd: ready: socket %s, seqlock %s, interval_ms=%" PRIu64 "\n", cd.socket_path, cd.segment,
               cd.interval_ms);
        fflush(stdout);
        status = run(&cd);
    }
    cleanup(&cd);
    if (status == 0) {
        printf("ember-cd: stopped\n");
        fflush(stdout);
    }
    return status;
}
