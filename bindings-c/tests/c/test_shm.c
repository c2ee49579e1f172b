/* Shared-memory channels from C: the SPSC ring, the seqlock and the broadcast ring, every
 * function and its error paths (NULL pointers, bad names, wrong fingerprints, small
 * buffers, timeouts, a closed peer). Another process's view is the same mapping: the
 * cross-process tests are the Rust ones and the examples'. */
#define _GNU_SOURCE
#include <dirent.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define FP 0x5E45u

static void name_of(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "/ember-c-shm-%d-%s", (int)getpid(), tag);
}

static void spsc(void) {
    char name[64];
    name_of(name, sizeof name, "ring");
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL;
    CHECK_CODE(ember_spsc_sender_create(NULL, 4096, FP, &tx), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_sender_create(name, 4096, FP, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_sender_create("/a/b", 4096, FP, &tx), EMBER_EINVAL);
    CHECK(tx == NULL);
    CHECK_CODE(ember_spsc_sender_create(name, 1000, FP, &tx), EMBER_EINVAL); /* not a power of two */
    CHECK_CODE(ember_spsc_sender_create(name, 4096, FP, &tx), EMBER_OK);
    ember_spsc_sender *again = NULL;
    CHECK_CODE(ember_spsc_sender_create(name, 4096, FP, &again), EMBER_EOS); /* EEXIST */
    CHECK(again == NULL);
    CHECK_CODE(ember_spsc_receiver_open(name, FP + 1, &rx), EMBER_EBADMSG);
    CHECK_CODE(ember_spsc_receiver_open("/ember-c-no-such-ring", FP, &rx), EMBER_EOS);
    CHECK_CODE(ember_spsc_receiver_open(name, FP, &rx), EMBER_OK);

    uint8_t buf[64];
    size_t len = 0;
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 0), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_spsc_sender_send(tx, (const uint8_t *)"one", 3, 0), EMBER_OK);
    CHECK_CODE(ember_spsc_sender_send(tx, (const uint8_t *)"three", 5, EMBER_FOREVER), EMBER_OK);
    CHECK_CODE(ember_spsc_sender_send(NULL, buf, 1, 0), EMBER_EINVAL);
    static uint8_t big[4096];
    CHECK_CODE(ember_spsc_sender_send(tx, big, sizeof big, 0), EMBER_ETOOBIG);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, 2, &len, 0), EMBER_ENOSPC); /* nothing consumed */
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, NULL, 0), EMBER_EINVAL);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 100), EMBER_OK);
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    /* The sender goes: what is left is still read, then EPEERGONE. */
    ember_spsc_sender_free(tx);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 100), EMBER_OK);
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 100), EMBER_EPEERGONE);
    ember_spsc_receiver_free(rx);
    ember_spsc_receiver_free(NULL);
    ember_spsc_sender_free(NULL);
}

static void seqlock(void) {
    char name[64];
    name_of(name, sizeof name, "seqlock");
    ember_seqlock_writer *w = NULL;
    ember_seqlock_reader *r = NULL;
    CHECK_CODE(ember_seqlock_writer_create(name, 12, FP, &w), EMBER_EINVAL); /* under 64 */
    CHECK_CODE(ember_seqlock_writer_create(name, 64, FP, &w), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_open(name, 7, &r), EMBER_EBADMSG);
    CHECK_CODE(ember_seqlock_reader_open(name, FP, &r), EMBER_OK);
    uint8_t buf[64];
    size_t len = 0;
    uint32_t version = 0;
    CHECK_CODE(ember_seqlock_reader_read(r, buf, sizeof buf, &len, &version), EMBER_EAGAIN); /* nothing yet */
    CHECK_CODE(ember_seqlock_reader_wait_change(r, 0, 10), EMBER_ETIMEDOUT);
    CHECK_CODE(ember_seqlock_writer_write(w, (const uint8_t *)"21.5C", 5), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_wait_change(r, 0, 1000), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_read(r, buf, sizeof buf, &len, &version), EMBER_OK);
    CHECK(len == 5 && memcmp(buf, "21.5C", 5) == 0 && version == 2);
    CHECK_CODE(ember_seqlock_reader_read(r, buf, 2, &len, NULL), EMBER_ENOSPC);
    static uint8_t big[65];
    CHECK_CODE(ember_seqlock_writer_write(w, big, sizeof big), EMBER_ETOOBIG);
    CHECK_CODE(ember_seqlock_writer_write(w, (const uint8_t *)"22.0C", 5), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_wait_change(r, version, 1000), EMBER_OK);
    CHECK_CODE(ember_seqlock_reader_read(r, buf, sizeof buf, &len, NULL), EMBER_OK);
    CHECK(len == 5 && memcmp(buf, "22.0C", 5) == 0);
    CHECK_CODE(ember_seqlock_reader_read(NULL, buf, sizeof buf, &len, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_seqlock_writer_write(NULL, buf, 1), EMBER_EINVAL);
    CHECK_CODE(ember_seqlock_reader_wait_change(NULL, 0, 0), EMBER_EINVAL);
    ember_seqlock_reader_free(r);
    ember_seqlock_writer_free(w);
    /* The creator's free unlinked the name. */
    CHECK_CODE(ember_seqlock_reader_open(name, FP, &r), EMBER_EOS);
}

static void broadcast(void) {
    char name[64];
    name_of(name, sizeof name, "bcast");
    ember_broadcast_writer *w = NULL;
    ember_broadcast_reader *a = NULL, *b = NULL;
    CHECK_CODE(ember_broadcast_writer_create(name, 256, FP, &w), EMBER_OK);
    CHECK_CODE(ember_broadcast_reader_open(name, FP, 1, &a), EMBER_OK);
    CHECK_CODE(ember_broadcast_reader_open(name, FP + 1, 1, &b), EMBER_EBADMSG);
    CHECK_CODE(ember_broadcast_reader_open(NULL, FP, 1, &b), EMBER_EINVAL);
    uint8_t buf[64];
    size_t len = 0;
    uint64_t seq = 0, lost = 0;
    CHECK_CODE(ember_broadcast_reader_recv(a, buf, sizeof buf, &len, &seq, &lost, 0), EMBER_ETIMEDOUT);
    /* 24-byte records in 256 bytes: the first ones are overwritten. */
    uint8_t rec[16];
    for (uint8_t i = 0; i < 20; i++) {
        memset(rec, i, sizeof rec);
        CHECK_CODE(ember_broadcast_writer_send(w, rec, sizeof rec), EMBER_OK);
    }
    CHECK_CODE(ember_broadcast_reader_recv(a, buf, sizeof buf, &len, &seq, &lost, 100), EMBER_OK);
    CHECK(len == 16 && lost > 0 && seq == lost && buf[0] == (uint8_t)seq);
    CHECK_CODE(ember_broadcast_reader_recv(a, buf, 4, &len, NULL, NULL, 100), EMBER_ENOSPC);
    CHECK_CODE(ember_broadcast_reader_recv(a, buf, sizeof buf, &len, NULL, &lost, 100), EMBER_OK);
    CHECK(lost == 0 && buf[0] == (uint8_t)(seq + 1));
    /* A new reader from the next record. */
    CHECK_CODE(ember_broadcast_reader_open(name, FP, 0, &b), EMBER_OK);
    memset(rec, 0x77, sizeof rec);
    CHECK_CODE(ember_broadcast_writer_send(w, rec, sizeof rec), EMBER_OK);
    CHECK_CODE(ember_broadcast_reader_recv(b, buf, sizeof buf, &len, &seq, NULL, 100), EMBER_OK);
    CHECK(seq == 20 && buf[0] == 0x77);
    static uint8_t big[200];
    CHECK_CODE(ember_broadcast_writer_send(w, big, sizeof big), EMBER_ETOOBIG);
    CHECK_CODE(ember_broadcast_writer_send(NULL, rec, 1), EMBER_EINVAL);
    ember_broadcast_writer_free(w);
    CHECK_CODE(ember_broadcast_reader_recv(b, buf, sizeof buf, &len, NULL, NULL, 100), EMBER_EPEERGONE);
    ember_broadcast_reader_free(a);
    ember_broadcast_reader_free(b);
}

/* In a child with a private mount namespace whose /dev/shm is a 256 KiB tmpfs: a 1 MiB
 * ring does not fit, and the create says so (no SIGBUS later), with the sizes, leaving
 * /dev/shm empty. Needs root (as CI runs the tests); elsewhere it says it did not run. */
static void no_space(void) {
    if (geteuid() != 0) {
        printf("test_shm: no_space not run (needs root for a private /dev/shm)\n");
        return;
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
            mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=256k") != 0) {
            perror("private /dev/shm");
            _exit(2);
        }
        ember_spsc_sender *tx = NULL;
        CHECK_CODE(ember_spsc_sender_create("/ember-c-big", 1 << 20, FP, &tx), EMBER_ENOSHMSPACE);
        CHECK(tx == NULL);
        ember_seqlock_writer *w = NULL;
        CHECK_CODE(ember_seqlock_writer_create("/ember-c-big", 1 << 19, FP, &w), EMBER_ENOSHMSPACE);
        uint64_t needed = 0, available = 0;
        CHECK_CODE(ember_last_no_space(&needed, &available), EMBER_OK);
        CHECK(needed == 2 * (uint64_t)sysconf(_SC_PAGESIZE) + (1 << 19));
        CHECK(available > 0 && available <= 256 * 1024);
        CHECK_CODE(ember_last_no_space(NULL, NULL), EMBER_OK);
        DIR *d = opendir("/dev/shm");
        CHECK(d != NULL);
        int left = 0;
        for (struct dirent *e; d && (e = readdir(d));) {
            left += e->d_name[0] != '.';
        }
        if (d) {
            closedir(d);
        }
        CHECK(left == 0);
        /* A ring that fits still works there. */
        CHECK_CODE(ember_spsc_sender_create("/ember-c-small", 4096, FP, &tx), EMBER_OK);
        ember_spsc_sender_free(tx);
        _exit(failures != 0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    spsc();
    seqlock();
    broadcast();
    no_space();
    if (failures == 0) {
        printf("test_shm: ok\n");
    }
    return failures != 0;
}
