/* D-Bus from C against a real, private dbus-daemon that this test starts: a C service (a
 * separate process) serves a method table with C callbacks; a C client calls it with
 * arguments built by ember_dbus_args_* (basic types, arrays, dicts of variants, structs,
 * byte arrays, a Unix fd) and reads the replies with ember_dbus_iter_*; D-Bus errors,
 * signals (match rules, ember_dbus_recv, the call's on_other callback), bus names, and
 * every builder and iterator error path. With EMBER_GDBUS set (cargo xtask test sets it on
 * the host) gdbus calls the C service too; the boards' guests carry no gdbus, so there the
 * C client is the only caller. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "dbus_daemon.h"

#define TIMEOUT 5000
#define PATH "/org/ember/Calc"
#define IFACE "org.ember.Calc"

static char bus_name[64];

/* ---- the service (runs in a child process) ---- */

static int changed_pending;
static int32_t changed_value;
static int quit;

static int h_add(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    int32_t a = 0, b = 0;
    if (ember_dbus_iter_int32(args, &a) || ember_dbus_iter_int32(args, &b)) return 1;
    changed_pending = 1;
    changed_value = a + b;
    return ember_dbus_args_add_int32(reply, a + b);
}

static int h_echo(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    const char *s = NULL;
    size_t len = 0;
    if (ember_dbus_iter_string(args, &s, &len) || strlen(s) != len) return 1;
    /* The call's header reaches the handler. */
    if (strcmp(call->path, PATH) || strcmp(call->interface, IFACE) || strcmp(call->member, "Echo") ||
        !call->sender || call->sender[0] != ':')
        return 1;
    return ember_dbus_args_add_string(reply, s);
}

/* Sum(a{sv}) -> x: adds the int32 and int64 values; a string value is an error. */
static int h_sum(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    ember_dbus_iter dict, entry, var;
    int64_t sum = 0;
    if (ember_dbus_iter_type(args) != 'a' || ember_dbus_iter_element_type(args) != '{') return 1;
    if (ember_dbus_iter_recurse(args, &dict)) return 1;
    /* Inside: the dict's entries; not an array itself, nor past the end. */
    if (ember_dbus_iter_element_type(&dict) != EMBER_EINVAL) return 1;
    while (ember_dbus_iter_type(&dict) == '{') {
        const char *key;
        if (ember_dbus_iter_recurse(&dict, &entry) || ember_dbus_iter_string(&entry, &key, NULL)) return 1;
        if (ember_dbus_iter_recurse(&entry, &var)) return 1;
        int32_t i;
        int64_t x;
        if (ember_dbus_iter_int32(&var, &i) == EMBER_OK)
            sum += i;
        else if (ember_dbus_iter_int64(&var, &x) == EMBER_OK)
            sum += x;
        else {
            ember_dbus_args_set_error(reply, "org.ember.Error.BadValue", key);
            return 1;
        }
        if (ember_dbus_iter_type(&var) != 0 || ember_dbus_iter_type(&entry) != 0) return 1;
    }
    return ember_dbus_args_add_int64(reply, sum);
}

/* Blob(ay) -> (uy): the length and the xor of the bytes. */
static int h_blob(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    const uint8_t *data;
    size_t len;
    if (ember_dbus_iter_bytes(args, &data, &len)) return 1;
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++) x ^= data[i];
    if (ember_dbus_args_open_struct(reply) || ember_dbus_args_add_uint32(reply, (uint32_t)len) ||
        ember_dbus_args_add_byte(reply, x) || ember_dbus_args_close(reply))
        return 1;
    return 0;
}

/* ReadFd(h) -> s: what the fd holds. */
static int h_readfd(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    uint32_t index;
    int fd = -1;
    if (ember_dbus_iter_unix_fd(args, &index) || call->unix_fds != 1 || index != 0) return 1;
    if (ember_dbus_call_take_fd(call, index, &fd)) return 1;
    if (ember_dbus_call_take_fd(call, index, &fd) != EMBER_EINVAL) return 1; /* taken already */
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return 1;
    return ember_dbus_args_add_string(reply, buf);
}

static int h_fail(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    (void)args;
    ember_dbus_args_set_error(reply, "org.ember.Error.Nope", "as asked");
    return 1;
}

/* Fails with a message of 300 digits and "<end>": sent whole (it was cut at 95 bytes). */
static int h_fail_long(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    (void)args;
    char text[306];
    for (int i = 0; i < 300; i++) text[i] = (char)('0' + i % 10);
    memcpy(text + 300, "<end>", 6);
    ember_dbus_args_set_error(reply, "org.ember.Error.Long", text);
    return 1;
}

/* Declares results "i" but writes a string: the caller gets an error, not a bad message. */
static int h_bad(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    (void)args;
    return ember_dbus_args_add_string(reply, "not an int");
}

/* Mirror(nqtdgy) -> nqtdgy: every other basic type, read and written back. */
static int h_mirror(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)ctx;
    (void)call;
    int16_t n;
    uint16_t q;
    uint64_t t;
    double dv;
    char g[8];
    uint8_t y;
    /* A signature longer than the buffer: ENOSPC, and the iterator stays. */
    if (ember_dbus_iter_int16(args, &n) || ember_dbus_iter_uint16(args, &q) || ember_dbus_iter_uint64(args, &t) ||
        ember_dbus_iter_double(args, &dv) || ember_dbus_iter_signature(args, g, 3) != EMBER_ENOSPC ||
        ember_dbus_iter_signature(args, g, sizeof g) || ember_dbus_iter_byte(args, &y))
        return 1;
    return ember_dbus_args_add_int16(reply, n) || ember_dbus_args_add_uint16(reply, q) ||
           ember_dbus_args_add_uint64(reply, t) || ember_dbus_args_add_double(reply, dv) ||
           ember_dbus_args_add_signature(reply, g) || ember_dbus_args_add_byte(reply, y);
}

/* A handler may not use its own connection: EMBER_EBUSY, and the reply still goes out. */
static int h_reenter(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)call;
    (void)args;
    ember_dbus *d = ctx;
    char name[80];
    int a = ember_dbus_emit_signal(d, PATH, IFACE, "Inside", NULL, NULL);
    int b = ember_dbus_unique_name(d, name, sizeof name);
    int c = ember_dbus_fd(d);
    return ember_dbus_args_add_bool(reply, a == EMBER_EBUSY && b == EMBER_EBUSY && c == EMBER_EBUSY);
}

static int h_quit(void *ctx, const ember_dbus_call_info *call, ember_dbus_iter *args, ember_dbus_args *reply) {
    (void)call;
    (void)args;
    (void)reply;
    *(int *)ctx = 1;
    return 0;
}

static int serve(void) {
    ember_dbus *d = NULL;
    if (ember_dbus_connect(address, &d)) return 10;
    int reply = 0;
    if (ember_dbus_request_name(d, bus_name, EMBER_DBUS_NAME_DO_NOT_QUEUE, TIMEOUT, &reply) ||
        reply != EMBER_DBUS_NAME_PRIMARY_OWNER)
        return 11;
    static const ember_dbus_signal signals[] = {{"Changed", "i"}};
    const ember_dbus_method methods[] = {
        {"Add", "ii", "i", h_add, NULL},         {"Echo", "s", "s", h_echo, NULL},
        {"Sum", "a{sv}", "x", h_sum, NULL},      {"Blob", "ay", "(uy)", h_blob, NULL},
        {"ReadFd", "h", "s", h_readfd, NULL},    {"Fail", "", "", h_fail, NULL},
        {"Bad", "", "i", h_bad, NULL},           {"Quit", "", "", h_quit, &quit},
        {"Reenter", "", "b", h_reenter, d},      {"Mirror", "nqtdgy", "nqtdgy", h_mirror, NULL},
        {"FailLong", "", "", h_fail_long, NULL},
    };
    const ember_dbus_interface ifaces[] = {{IFACE, methods, sizeof methods / sizeof methods[0], signals, 1, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_object objects[] = {{PATH, ifaces, 1}};
    ember_dbus_service *svc = NULL;
    if (ember_dbus_service_new(objects, 1, &svc)) return 12;
    ember_poller *p = NULL;
    if (ember_poller_new(&p) || ember_poller_add(p, ember_dbus_fd(d), 1, EMBER_POLL_READ)) return 13;
    ember_dbus_args *sig = NULL;
    if (ember_dbus_args_new(64, &sig)) return 14;
    /* Signal once ready, so the client knows the name is taken. */
    if (ember_dbus_emit_signal(d, PATH, IFACE, "Ready", NULL, NULL)) return 15;
    while (!quit) {
        ember_ready ev[4];
        size_t n = 0;
        if (ember_poller_wait(p, ev, 4, &n, 20000) || n == 0) return 16;
        for (;;) {
            ember_dbus_message other;
            int answered = 0;
            int rc = ember_dbus_process(d, svc, 0, &other, &answered);
            if (rc == EMBER_ETIMEDOUT) break;
            if (rc) return 17;
            if (changed_pending) {
                changed_pending = 0;
                ember_dbus_args_clear(sig);
                if (ember_dbus_args_add_int32(sig, changed_value)) return 18;
                if (ember_dbus_emit_signal(d, PATH, IFACE, "Changed", sig, NULL)) return 19;
            }
        }
    }
    int released = 0;
    if (ember_dbus_release_name(d, bus_name, TIMEOUT, &released) || released != 1) return 20;
    ember_dbus_args_free(sig);
    ember_poller_free(p);
    ember_dbus_service_free(svc);
    ember_dbus_free(d);
    return 0;
}

/* ---- the client ---- */

static int others_seen;
static int32_t other_changed;

static void on_other(void *ctx, ember_dbus_message *m) {
    ember_dbus *d = ctx;
    char name[80];
    /* The callback may not use the connection that runs it. */
    if (ember_dbus_unique_name(d, name, sizeof name) != EMBER_EBUSY) others_seen += 100;
    if (m->kind == EMBER_DBUS_SIGNAL && m->member && strcmp(m->member, "Changed") == 0) {
        int32_t v = 0;
        if (ember_dbus_iter_int32(&m->body, &v) == EMBER_OK) other_changed = v;
        others_seen++;
    }
}

static void builder_errors(void) {
    ember_dbus_args *a = NULL;
    CHECK_CODE(ember_dbus_args_new(0, &a), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_new(16, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_new(16, &a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_int32(NULL, 1), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_add_string(a, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_add_object_path(a, "not/a/path"), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_add_signature(a, "a"), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_add_unix_fd(a, -1), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_open_array(a, ""), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_open_array(a, "ii"), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_open_variant(a, "ii"), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_EINVAL); /* nothing open */
    /* Full: nothing is half-written. */
    CHECK_CODE(ember_dbus_args_add_uint64(a, 1), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_string(a, "longer than the rest"), EMBER_ENOSPC);
    CHECK_CODE(ember_dbus_args_add_int16(a, 7), EMBER_OK);
    char sig[8];
    CHECK_CODE(ember_dbus_args_signature(a, sig, sizeof sig), EMBER_OK);
    CHECK(strcmp(sig, "tn") == 0);
    CHECK_CODE(ember_dbus_args_signature(a, sig, 2), EMBER_ENOSPC);
    CHECK_CODE(ember_dbus_args_clear(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_signature(a, sig, sizeof sig), EMBER_OK);
    CHECK(sig[0] == 0);
    ember_dbus_args_free(a);
    ember_dbus_args_free(NULL);

    /* Signatures of nested containers: recorded at the top level and in structs only. */
    CHECK_CODE(ember_dbus_args_new(512, &a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_open_struct(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_bool(a, 5), EMBER_OK);
    CHECK_CODE(ember_dbus_args_open_array(a, "{sv}"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_open_dict_entry(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_string(a, "k"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_open_variant(a, "(dg)"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_open_struct(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_double(a, 2.5), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_signature(a, "a{sv}"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_object_path(a, "/x"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_uint16(a, 1), EMBER_OK);
    char big[256];
    CHECK_CODE(ember_dbus_args_signature(a, big, sizeof big), EMBER_OK);
    CHECK(strcmp(big, "(ba{sv}o)q") == 0);
    ember_dbus_args_free(a);
}

/* Runs gdbus with `args` (a shell command tail); its first output line goes to `out`. */
static int gdbus(const char *gdbus_path, const char *args, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s --address '%s' 2>&1", gdbus_path, args, address);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void with_gdbus(void) {
    const char *g = getenv("EMBER_GDBUS");
    if (!g) {
        printf("test_dbus: gdbus calls not run (EMBER_GDBUS unset; cargo xtask test sets it on the host)\n");
        return;
    }
    char out[4096], args[512];
    snprintf(args, sizeof args, "call --dest %s --object-path " PATH " --method " IFACE ".Add 2 40", bus_name);
    CHECK(gdbus(g, args, out, sizeof out) == 0);
    CHECK(strcmp(out, "(42,)\n") == 0);
    if (strcmp(out, "(42,)\n")) fprintf(stderr, "gdbus Add printed: %s", out);
    snprintf(args, sizeof args,
             "call --dest %s --object-path " PATH " --method " IFACE ".Sum \"{'a': <1>, 'b': <int64 2>, 'c': <-10>}\"",
             bus_name);
    CHECK(gdbus(g, args, out, sizeof out) == 0);
    CHECK(strcmp(out, "(int64 -7,)\n") == 0);
    if (strcmp(out, "(int64 -7,)\n")) fprintf(stderr, "gdbus Sum printed: %s", out);
    snprintf(args, sizeof args, "call --dest %s --object-path " PATH " --method " IFACE ".Echo 'héllo wörld'", bus_name);
    CHECK(gdbus(g, args, out, sizeof out) == 0);
    CHECK(strcmp(out, "('héllo wörld',)\n") == 0);
    snprintf(args, sizeof args, "call --dest %s --object-path " PATH " --method " IFACE ".Fail", bus_name);
    CHECK(gdbus(g, args, out, sizeof out) != 0);
    CHECK(strstr(out, "org.ember.Error.Nope") != NULL && strstr(out, "as asked") != NULL);
    snprintf(args, sizeof args, "introspect --dest %s --object-path " PATH, bus_name);
    CHECK(gdbus(g, args, out, sizeof out) == 0);
    CHECK(strstr(out, "interface " IFACE) != NULL && strstr(out, "Add(in  i arg_0,") != NULL);
    CHECK(strstr(out, "signal Changed") != NULL || strstr(out, "Changed(") != NULL);
}

/* The client's connection, with its match rule in place before the service starts (else
 * the service's Ready signal could go out before anyone listens for it). */
static ember_dbus *client_connect(void) {
    ember_dbus *d = NULL;
    CHECK_CODE(ember_dbus_connect(address, &d), EMBER_OK);
    if (d) CHECK_CODE(ember_dbus_add_match(d, "type='signal',interface='" IFACE "'", TIMEOUT), EMBER_OK);
    return d;
}

static void client(ember_dbus *d) {
    if (!d) return;
    char unique[64];
    CHECK_CODE(ember_dbus_unique_name(d, unique, sizeof unique), EMBER_OK);
    CHECK(unique[0] == ':');
    CHECK_CODE(ember_dbus_unique_name(d, unique, 2), EMBER_ENOSPC);
    CHECK(ember_dbus_fd(d) >= 0);
    CHECK_CODE(ember_dbus_fd(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_add_match(d, "this is no rule", TIMEOUT), EMBER_EREMOTE);

    /* The service says Ready once it owns its name. */
    ember_dbus_message m;
    int ready = 0;
    for (int i = 0; i < 50 && !ready; i++) {
        int rc = ember_dbus_recv(d, TIMEOUT, &m);
        if (rc == EMBER_ETIMEDOUT) break;
        ready = rc == EMBER_OK && m.kind == EMBER_DBUS_SIGNAL && m.member && strcmp(m.member, "Ready") == 0;
    }
    CHECK(ready);
    if (!ready) {
        ember_dbus_free(d);
        return;
    }
    CHECK(strcmp(m.path, PATH) == 0 && strcmp(m.interface, IFACE) == 0 && m.signature[0] == 0);
    CHECK(m.sender && m.sender[0] == ':');

    ember_dbus_args *a = NULL;
    CHECK_CODE(ember_dbus_args_new(4096, &a), EMBER_OK);
    ember_dbus_message r;

    /* Add(ii) -> i, and the Changed signal it causes. */
    CHECK_CODE(ember_dbus_args_add_int32(a, 20), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_int32(a, 22), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Add", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    CHECK(r.kind == EMBER_DBUS_METHOD_RETURN && strcmp(r.signature, "i") == 0 && r.reply_serial != 0);
    CHECK(ember_dbus_iter_type(&r.body) == 'i');
    int32_t sum = 0;
    uint32_t wrong;
    CHECK_CODE(ember_dbus_iter_uint32(&r.body, &wrong), EMBER_EINVAL); /* another type: not moved */
    CHECK_CODE(ember_dbus_iter_int32(&r.body, &sum), EMBER_OK);
    CHECK(sum == 42);
    CHECK(ember_dbus_iter_type(&r.body) == 0);
    CHECK_CODE(ember_dbus_iter_int32(&r.body, &sum), EMBER_EINVAL); /* at the end */
    CHECK_CODE(ember_dbus_iter_skip(&r.body), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_recv(d, TIMEOUT, &m), EMBER_OK);
    CHECK(m.kind == EMBER_DBUS_SIGNAL && strcmp(m.member, "Changed") == 0 && strcmp(m.signature, "i") == 0);
    int32_t v = 0;
    CHECK_CODE(ember_dbus_iter_int32(&m.body, &v), EMBER_OK);
    CHECK(v == 42);

    /* Echo(s) -> s; the Changed signal of a second Add reaches on_other meanwhile. */
    ember_dbus_args_clear(a);
    ember_dbus_args_add_int32(a, 1);
    ember_dbus_args_add_int32(a, 2);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Add", a, TIMEOUT, NULL, NULL, NULL), EMBER_OK);
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_add_string(a, "héllo"), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, NULL, "Echo", a, TIMEOUT, &r, on_other, d), EMBER_OK);
    const char *s = NULL;
    size_t len = 0;
    CHECK_CODE(ember_dbus_iter_string(&r.body, &s, &len), EMBER_OK);
    CHECK(s && len == 6 && strcmp(s, "héllo") == 0);
    CHECK(others_seen == 1 && other_changed == 3);

    /* Sum(a{sv}) -> x, and a typed error from the handler. */
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_open_array(a, "{sv}"), EMBER_OK);
    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        CHECK_CODE(ember_dbus_args_open_dict_entry(a), EMBER_OK);
        CHECK_CODE(ember_dbus_args_add_string(a, keys[i]), EMBER_OK);
        CHECK_CODE(ember_dbus_args_open_variant(a, i == 1 ? "x" : "i"), EMBER_OK);
        if (i == 1)
            CHECK_CODE(ember_dbus_args_add_int64(a, 5000000000LL), EMBER_OK);
        else
            CHECK_CODE(ember_dbus_args_add_int32(a, i + 1), EMBER_OK);
        CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
        CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    }
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Sum", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    int64_t total = 0;
    CHECK_CODE(ember_dbus_iter_element_type(&r.body), EMBER_EINVAL); /* an int64, not an array */
    CHECK_CODE(ember_dbus_iter_int64(&r.body, &total), EMBER_OK);
    CHECK(total == 5000000004LL);
    CHECK_CODE(ember_dbus_iter_element_type(&r.body), EMBER_EINVAL); /* the end */
    CHECK_CODE(ember_dbus_iter_element_type(NULL), EMBER_EINVAL);
    /* An empty a{sv}: the handler learns its element type all the same, and sums to 0. */
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_open_array(a, "{sv}"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Sum", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    CHECK_CODE(ember_dbus_iter_int64(&r.body, &total), EMBER_OK);
    CHECK(total == 0);
    ember_dbus_args_clear(a);
    ember_dbus_args_open_array(a, "{sv}");
    ember_dbus_args_open_dict_entry(a);
    ember_dbus_args_add_string(a, "bad");
    ember_dbus_args_open_variant(a, "s");
    ember_dbus_args_add_string(a, "text");
    ember_dbus_args_close(a);
    ember_dbus_args_close(a);
    ember_dbus_args_close(a);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Sum", a, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(r.kind == EMBER_DBUS_ERROR && strcmp(r.error_name, "org.ember.Error.BadValue") == 0);
    CHECK_CODE(ember_dbus_iter_string(&r.body, &s, NULL), EMBER_OK);
    CHECK(strcmp(s, "bad") == 0);

    /* Blob(ay) -> (uy). */
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_open_array(a, "y"), EMBER_OK);
    for (int i = 0; i < 5; i++) CHECK_CODE(ember_dbus_args_add_byte(a, (uint8_t)(1 << i)), EMBER_OK);
    CHECK_CODE(ember_dbus_args_close(a), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Blob", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    CHECK(strcmp(r.signature, "(uy)") == 0);
    ember_dbus_iter st;
    CHECK_CODE(ember_dbus_iter_recurse(&r.body, &r.body), EMBER_EINVAL);
    CHECK(ember_dbus_iter_type(&r.body) == '(');
    CHECK_CODE(ember_dbus_iter_recurse(&r.body, &st), EMBER_OK);
    uint32_t blen = 0;
    uint8_t bx = 0;
    CHECK_CODE(ember_dbus_iter_uint32(&st, &blen), EMBER_OK);
    CHECK_CODE(ember_dbus_iter_byte(&st, &bx), EMBER_OK);
    CHECK(blen == 5 && bx == 31);
    CHECK(ember_dbus_iter_type(&r.body) == 0);

    /* ReadFd(h) -> s: a pipe's read end travels with the call. */
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "through an fd", 13) == 13);
    close(p[1]);
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_add_unix_fd(a, p[0]), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "ReadFd", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    close(p[0]);
    CHECK_CODE(ember_dbus_iter_string(&r.body, &s, NULL), EMBER_OK);
    CHECK(strcmp(s, "through an fd") == 0);
    int fd = -1;
    CHECK_CODE(ember_dbus_take_fd(d, 0, &fd), EMBER_EINVAL); /* the reply carried none */

    /* Every other basic type, there and back. */
    ember_dbus_args_clear(a);
    CHECK_CODE(ember_dbus_args_add_int16(a, -12345), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_uint16(a, 54321), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_uint64(a, 18000000000000000000ULL), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_double(a, -0.125), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_signature(a, "a{sv}"), EMBER_OK);
    CHECK_CODE(ember_dbus_args_add_byte(a, 0xfe), EMBER_OK);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Mirror", a, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    CHECK(strcmp(r.signature, "nqtdgy") == 0);
    {
        int16_t n = 0;
        uint16_t q = 0;
        uint64_t t = 0;
        double dv = 0;
        char g[8] = "";
        uint8_t y = 0;
        CHECK_CODE(ember_dbus_iter_int16(&r.body, &n), EMBER_OK);
        CHECK_CODE(ember_dbus_iter_uint16(&r.body, &q), EMBER_OK);
        CHECK_CODE(ember_dbus_iter_uint64(&r.body, &t), EMBER_OK);
        CHECK_CODE(ember_dbus_iter_double(&r.body, &dv), EMBER_OK);
        CHECK_CODE(ember_dbus_iter_int32(&r.body, &v), EMBER_EINVAL); /* a signature is next */
        CHECK_CODE(ember_dbus_iter_signature(&r.body, g, sizeof g), EMBER_OK);
        CHECK_CODE(ember_dbus_iter_byte(&r.body, &y), EMBER_OK);
        CHECK(n == -12345 && q == 54321 && t == 18000000000000000000ULL && dv == -0.125 && strcmp(g, "a{sv}") == 0 &&
              y == 0xfe);
    }

    /* A handler that calls back into its own connection is refused, not corrupted. */
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Reenter", NULL, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    int refused = 0;
    CHECK_CODE(ember_dbus_iter_bool(&r.body, &refused), EMBER_OK);
    CHECK(refused == 1);

    /* Errors: the handler's, a reply of the wrong type, unknown method, wrong arguments,
     * no such name, bad names and bodies refused before sending. */
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Fail", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.ember.Error.Nope") == 0);
    CHECK_CODE(ember_dbus_iter_string(&r.body, &s, NULL), EMBER_OK);
    CHECK(strcmp(s, "as asked") == 0);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "FailLong", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.ember.Error.Long") == 0);
    CHECK_CODE(ember_dbus_iter_string(&r.body, &s, NULL), EMBER_OK);
    CHECK(strlen(s) == 305 && strncmp(s, "0123456789", 10) == 0 && strcmp(s + 300, "<end>") == 0);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Bad", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.freedesktop.DBus.Error.Failed") == 0);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Nope", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.freedesktop.DBus.Error.UnknownMethod") == 0);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Add", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.freedesktop.DBus.Error.InvalidArgs") == 0);
    CHECK_CODE(ember_dbus_call(d, "org.ember.nobody", PATH, NULL, "X", NULL, TIMEOUT, &r, NULL, NULL), EMBER_EREMOTE);
    CHECK(strcmp(r.error_name, "org.freedesktop.DBus.Error.ServiceUnknown") == 0);
    CHECK_CODE(ember_dbus_call(d, bus_name, "no/path", NULL, "X", NULL, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, "bad", "X", NULL, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, NULL, NULL, NULL, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_call(NULL, bus_name, PATH, NULL, "X", NULL, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    ember_dbus_args_clear(a);
    ember_dbus_args_open_array(a, "s");
    ember_dbus_args_add_int32(a, 1); /* not a string */
    ember_dbus_args_close(a);
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Echo", a, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    ember_dbus_args_clear(a);
    ember_dbus_args_open_struct(a); /* never closed */
    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Echo", a, TIMEOUT, NULL, NULL, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_emit_signal(d, PATH, IFACE, "Sig", a, NULL), EMBER_EINVAL);
    uint32_t serial = 0;
    CHECK_CODE(ember_dbus_emit_signal(d, PATH, IFACE, "FromClient", NULL, &serial), EMBER_OK);
    CHECK(serial != 0);
    CHECK_CODE(ember_dbus_emit_signal(d, "bad", IFACE, "Sig", NULL, NULL), EMBER_EINVAL);

    /* Iterator misuse: never initialised. */
    ember_dbus_iter junk;
    memset(&junk, 0, sizeof junk);
    CHECK(ember_dbus_iter_type(&junk) == EMBER_EINVAL);
    CHECK_CODE(ember_dbus_iter_int32(NULL, &sum), EMBER_EINVAL);

    /* Names. */
    int reply = 0;
    CHECK_CODE(ember_dbus_request_name(d, bus_name, EMBER_DBUS_NAME_DO_NOT_QUEUE, TIMEOUT, &reply), EMBER_OK);
    CHECK(reply == EMBER_DBUS_NAME_EXISTS);
    CHECK_CODE(ember_dbus_request_name(d, "not a name", 0, TIMEOUT, &reply), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_request_name(d, ":1.1", 0, TIMEOUT, &reply), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_release_name(d, "org.ember.never.owned", TIMEOUT, &reply), EMBER_OK);
    CHECK(reply == 2);
    CHECK_CODE(ember_dbus_remove_match(d, "type='signal',interface='" IFACE "'", TIMEOUT), EMBER_OK);
    /* Signals that came while the calls above waited were queued, not dropped: they come
     * now, then nothing. */
    int queued = 0;
    while (queued < 1000 && ember_dbus_recv(d, 0, &m) == EMBER_OK) queued++;
    CHECK(queued > 0 && queued < 1000);
    CHECK_CODE(ember_dbus_recv(d, 0, &m), EMBER_ETIMEDOUT);

    with_gdbus();

    CHECK_CODE(ember_dbus_call(d, bus_name, PATH, IFACE, "Quit", NULL, TIMEOUT, NULL, NULL, NULL), EMBER_OK);
    ember_dbus_args_free(a);
    ember_dbus_free(d);
    ember_dbus_free(NULL);
}

static void service_errors(void) {
    ember_dbus_service *svc = NULL;
    const ember_dbus_method bad_sig[] = {{"M", "a", "", h_quit, NULL}};
    const ember_dbus_method no_handler[] = {{"M", "", "", NULL, NULL}};
    const ember_dbus_method bad_name[] = {{"M.x", "", "", h_quit, NULL}};
    const ember_dbus_interface i1[] = {{IFACE, bad_sig, 1, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_interface i2[] = {{IFACE, no_handler, 1, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_interface i3[] = {{IFACE, bad_name, 1, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_interface i4[] = {{"noDots", NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_interface i5[] = {{IFACE, NULL, 3, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_object o[] = {{PATH, i1, 1}, {PATH, i2, 1}, {PATH, i3, 1}, {PATH, i4, 1}, {PATH, i5, 1}};
    for (int k = 0; k < 5; k++) {
        CHECK_CODE(ember_dbus_service_new(&o[k], 1, &svc), EMBER_EINVAL);
        CHECK(svc == NULL);
    }
    const ember_dbus_method dup_methods[] = {{"M", "", "", h_quit, NULL}, {"M", "i", "", h_quit, NULL}};
    const ember_dbus_interface dup_method[] = {{IFACE, dup_methods, 2, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_interface dup_iface[] = {{IFACE, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL}, {IFACE, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, NULL}};
    const ember_dbus_object dups[] = {{PATH, dup_method, 1}, {PATH, dup_iface, 2}};
    CHECK_CODE(ember_dbus_service_new(&dups[0], 1, &svc), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_service_new(&dups[1], 1, &svc), EMBER_EINVAL);
    const ember_dbus_object twice[] = {{PATH, NULL, 0}, {PATH, NULL, 0}};
    CHECK_CODE(ember_dbus_service_new(twice, 2, &svc), EMBER_EINVAL);
    const ember_dbus_object bad_path[] = {{"rel", NULL, 0}};
    CHECK_CODE(ember_dbus_service_new(bad_path, 1, &svc), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_service_new(NULL, 1, &svc), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_service_new(NULL, 0, &svc), EMBER_OK);
    ember_dbus_service_free(svc);
    ember_dbus_service_free(NULL);
    CHECK_CODE(ember_dbus_process(NULL, NULL, 0, NULL, NULL), EMBER_EINVAL);
    ember_dbus_call_info info = {0};
    int fd;
    CHECK_CODE(ember_dbus_call_take_fd(&info, 0, &fd), EMBER_EINVAL);
}

static long ms_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Buffer sizes chosen at connect time; a reply larger than the receive buffer fails its
 * call at once with EMBER_ETOOBIG (not a timeout), ember_dbus_last_refused says how large
 * it was, and the same reply comes through a larger buffer. The bus's own introspection
 * data (several KiB) is the large reply. */
static void *cancel_soon(void *arg) {
    struct timespec t = {0, 50 * 1000 * 1000};
    nanosleep(&t, NULL);
    ember_canceler_cancel((ember_canceler *)arg);
    return NULL;
}

/* The installed canceler ends a receive and a call that would wait for ever; the
 * connection goes on working afterwards. */
static void cancelled_waits(void) {
    ember_dbus *d = NULL;
    CHECK_CODE(ember_dbus_connect(address, &d), EMBER_OK);
    if (!d) return;
    ember_canceler *c = NULL;
    CHECK_CODE(ember_canceler_new(&c), EMBER_OK);
    CHECK_CODE(ember_set_canceler(c), EMBER_OK);
    ember_dbus_message m;
    /* The bus's NameAcquired for our unique name first. */
    while (ember_dbus_recv(d, 200, &m) == EMBER_OK) {
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, cancel_soon, c) == 0);
    CHECK_CODE(ember_dbus_recv(d, EMBER_FOREVER, &m), EMBER_ECANCELED);
    pthread_join(t, NULL);
    CHECK_CODE(ember_dbus_recv(d, EMBER_FOREVER, &m), EMBER_ECANCELED);
    CHECK_CODE(ember_canceler_reset(c), EMBER_OK);
    /* A call to ourselves: nobody answers while we wait. */
    char unique[64];
    CHECK_CODE(ember_dbus_unique_name(d, unique, sizeof unique), EMBER_OK);
    ember_dbus_message r;
    CHECK(pthread_create(&t, NULL, cancel_soon, c) == 0);
    CHECK_CODE(ember_dbus_call(d, unique, "/", "org.ember.Nobody", "Wait", NULL, EMBER_FOREVER, &r, NULL, NULL),
               EMBER_ECANCELED);
    pthread_join(t, NULL);
    CHECK_CODE(ember_canceler_reset(c), EMBER_OK);
    CHECK_CODE(ember_dbus_add_match(d, "type='signal',interface='org.ember.After'", TIMEOUT), EMBER_OK);
    CHECK_CODE(ember_set_canceler(NULL), EMBER_OK);
    /* Unset: the connection goes on; the call we made to ourselves is here, whole. */
    CHECK_CODE(ember_dbus_recv(d, TIMEOUT, &m), EMBER_OK);
    CHECK(m.kind == EMBER_DBUS_METHOD_CALL && m.member && strcmp(m.member, "Wait") == 0);
    CHECK_CODE(ember_dbus_recv(d, 10, &m), EMBER_ETIMEDOUT);
    ember_canceler_free(c);
    ember_dbus_free(d);
}

static void sized_connections(void) {
    ember_dbus *s = NULL;
    CHECK_CODE(ember_dbus_connect_sized(address, 100, 4096, 0, TIMEOUT, &s), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_connect_sized(address, 4096, EMBER_DBUS_SPEC_MAX_MESSAGE + 1, 0, TIMEOUT, &s), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_connect_sized(address, 4096, 4096, 0, TIMEOUT, NULL), EMBER_EINVAL);
    CHECK(s == NULL);
    CHECK_CODE(ember_dbus_connect_sized(address, 1024, 1024, 4096, TIMEOUT, &s), EMBER_OK);
    if (!s) return;
    ember_dbus_refused rf;
    CHECK_CODE(ember_dbus_last_refused(s, &rf), EMBER_EAGAIN);
    CHECK_CODE(ember_dbus_last_refused(NULL, &rf), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_last_refused(s, NULL), EMBER_EINVAL);
    ember_dbus_message r;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_CODE(ember_dbus_call(s, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus.Introspectable", "Introspect", NULL, 10000, &r, NULL, NULL),
               EMBER_ETOOBIG);
    CHECK(ms_since(&t0) < 1000);
    CHECK_CODE(ember_dbus_last_refused(s, &rf), EMBER_OK);
    CHECK(rf.kind == EMBER_DBUS_METHOD_RETURN && rf.needed > 1024 && rf.max == 1024 && rf.reply_serial != 0);
    /* The connection goes on: a reply that fits. */
    CHECK_CODE(ember_dbus_call(s, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", NULL,
                               TIMEOUT, &r, NULL, NULL),
               EMBER_OK);
    ember_dbus_free(s);
    s = NULL;
    CHECK_CODE(ember_dbus_connect_sized(address, 1 << 20, 4096, 0, -1, &s), EMBER_OK);
    if (!s) return;
    CHECK_CODE(ember_dbus_call(s, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus.Introspectable", "Introspect", NULL, TIMEOUT, &r, NULL, NULL),
               EMBER_OK);
    const char *xml = NULL;
    size_t xml_len = 0;
    CHECK_CODE(ember_dbus_iter_string(&r.body, &xml, &xml_len), EMBER_OK);
    CHECK(xml_len > 1024 && xml_len < rf.needed);
    CHECK(xml && strstr(xml, "<interface name=\"org.freedesktop.DBus\">") != NULL);
    ember_dbus_free(s);
}

/* Calls in flight: three started at once, the last waited for (the others' replies and
 * the NameAcquired signal arrive meanwhile: kept), the others polled; the signal is then
 * received from the queue. A connection without a queue drops it, counts it and says so
 * once with EMBER_EOVERFLOW. */
static void calls_in_flight(void) {
    ember_dbus *s = NULL;
    CHECK_CODE(ember_dbus_connect_sized(address, 65536, 4096, 65536, TIMEOUT, &s), EMBER_OK);
    if (!s) return;
    const char *bus = "org.freedesktop.DBus", *bpath = "/org/freedesktop/DBus";
    uint32_t a = 0, b = 0, c = 0;
    CHECK_CODE(ember_dbus_call_start(s, bus, bpath, bus, "GetId", NULL, &a), EMBER_OK);
    CHECK_CODE(ember_dbus_call_start(s, bus, bpath, bus, "ListNames", NULL, &b), EMBER_OK);
    CHECK_CODE(ember_dbus_call_start(s, bus, bpath, "org.freedesktop.DBus.Peer", "Ping", NULL, &c), EMBER_OK);
    CHECK(a != 0 && b != a && c != b);
    CHECK_CODE(ember_dbus_call_start(s, bus, bpath, bus, "GetId", NULL, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_call_start(s, bus, "no path", bus, "GetId", NULL, &a), EMBER_EINVAL);
    ember_dbus_message r;
    CHECK_CODE(ember_dbus_call_wait(s, c, TIMEOUT, &r), EMBER_OK);
    CHECK(r.kind == EMBER_DBUS_METHOD_RETURN && r.reply_serial == c);
    CHECK_CODE(ember_dbus_call_wait(s, c, TIMEOUT, &r), EMBER_EINVAL); /* over */
    CHECK_CODE(ember_dbus_call_poll(s, a, &r), EMBER_OK);
    const char *id = NULL;
    size_t id_len = 0;
    CHECK_CODE(ember_dbus_iter_string(&r.body, &id, &id_len), EMBER_OK);
    CHECK(id_len == 32);
    CHECK_CODE(ember_dbus_call_poll(s, b, NULL), EMBER_OK);
    CHECK_CODE(ember_dbus_call_poll(s, b, &r), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_call_cancel(s, b), EMBER_EINVAL);
    /* Not answered yet: EAGAIN, then cancelled. */
    uint32_t slow = 0;
    CHECK_CODE(ember_dbus_call_start(s, bus, bpath, bus, "GetId", NULL, &slow), EMBER_OK);
    int rc = ember_dbus_call_poll(s, slow, &r);
    CHECK(rc == EMBER_EAGAIN || rc == EMBER_OK);
    if (rc == EMBER_EAGAIN) CHECK_CODE(ember_dbus_call_cancel(s, slow), EMBER_OK);
    /* The signal that came while the calls waited. */
    int acquired = 0;
    while (!acquired && ember_dbus_recv(s, 1000, &r) == EMBER_OK)
        acquired = r.kind == EMBER_DBUS_SIGNAL && r.member && strcmp(r.member, "NameAcquired") == 0;
    CHECK(acquired);
    uint64_t lost = 1;
    CHECK_CODE(ember_dbus_queue_overflows(s, &lost), EMBER_OK);
    CHECK(lost == 0);
    CHECK_CODE(ember_dbus_queue_overflows(NULL, &lost), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_queue_overflows(s, NULL), EMBER_EINVAL);
    ember_dbus_free(s);
    s = NULL;
    /* No queue: NameAcquired arrives during the call and is dropped, counted, reported. */
    CHECK_CODE(ember_dbus_connect_sized(address, 65536, 4096, 0, TIMEOUT, &s), EMBER_OK);
    if (!s) return;
    CHECK_CODE(ember_dbus_call(s, bus, bpath, bus, "GetId", NULL, TIMEOUT, &r, NULL, NULL), EMBER_OK);
    CHECK_CODE(ember_dbus_queue_overflows(s, &lost), EMBER_OK);
    CHECK(lost >= 1);
    CHECK_CODE(ember_dbus_recv(s, 1000, &r), EMBER_EOVERFLOW);
    CHECK_CODE(ember_dbus_recv(s, 100, &r), EMBER_ETIMEDOUT);
    ember_dbus_free(s);
}

int main(void) {
    snprintf(bus_name, sizeof bus_name, "org.ember.ctest.p%d", (int)getpid());
    builder_errors();
    service_errors();

    ember_dbus *d = NULL;
    unsetenv("DBUS_SESSION_BUS_ADDRESS");
    CHECK_CODE(ember_dbus_connect(NULL, &d), EMBER_EINVAL);
    CHECK_CODE(ember_dbus_connect("unix:path=/nonexistent/ember-bus", &d), EMBER_EOS);
    CHECK(ember_last_os_error() == ECONNREFUSED); /* no listener there */
    CHECK_CODE(ember_dbus_connect("tcp:host=nowhere", &d), EMBER_EINVAL);
    CHECK(d == NULL);
    CHECK_CODE(ember_dbus_connect(address, NULL), EMBER_EINVAL);

    if (start_daemon("dbus") != 0) {
        stop_daemon();
        return 1;
    }
    /* The session bus through the environment, as a daemon would find it. */
    setenv("DBUS_SESSION_BUS_ADDRESS", address, 1);
    CHECK_CODE(ember_dbus_connect(NULL, &d), EMBER_OK);
    ember_dbus_free(d);

    sized_connections();
    cancelled_waits();
    calls_in_flight();
    ember_dbus *cd = client_connect();
    fflush(stdout);
    pid_t server = fork();
    if (server == 0) _exit(serve()); /* the service never touches the client's connection */
    client(cd);
    /* The service ends when Quit is called; a hung one is killed. */
    int status = -1;
    for (int i = 0; i < 100; i++) {
        if (waitpid(server, &status, WNOHANG) == server) break;
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
        if (i == 99) {
            kill(server, SIGKILL);
            waitpid(server, &status, 0);
        }
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) fprintf(stderr, "service exited with status %d\n", status);
    stop_daemon();
    if (failures) fprintf(stderr, "test_dbus: %d checks failed\n", failures);
    else printf("test_dbus: all checks passed\n");
    return failures != 0;
}
