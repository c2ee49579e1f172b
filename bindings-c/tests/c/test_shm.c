/* Shared-memory channels from C: the SPSC ring, the seqlock and the broadcast ring, every
 * function and its error paths (NULL pointers, bad names, wrong fingerprints, small
 * buffers, timeouts, a closed peer). Another process's view is the same mapping: the
 * cross-process tests are the Rust ones and the examples'. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
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

/* After a crash: a child makes a seqlock, an SPSC ring, a broadcast ring and a queue and
 * is killed with SIGKILL; without the flag the names are EEXIST, with EMBER_REPLACE_STALE
 * they are taken over. While a live child holds them, the flag gives EMBER_EINUSE and the
 * child's pid. */
static void replace_stale(void) {
    char seq[64], ring[64], bc[64], q[64];
    name_of(seq, sizeof seq, "stale-seq");
    name_of(ring, sizeof ring, "stale-ring");
    name_of(bc, sizeof bc, "stale-bc");
    name_of(q, sizeof q, "stale-q");
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        ember_seqlock_writer *w = NULL;
        ember_spsc_sender *tx = NULL;
        ember_broadcast_writer *b = NULL;
        ember_mq *m = NULL;
        int ok = ember_seqlock_writer_create(seq, 64, FP, &w) == EMBER_OK &&
                 ember_spsc_sender_create(ring, 4096, FP, &tx) == EMBER_OK &&
                 ember_broadcast_writer_create(bc, 4096, FP, &b) == EMBER_OK &&
                 ember_mq_create(q, 4, 64, EMBER_MQ_BOTH, &m) == EMBER_OK;
        char c = ok ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        for (;;) pause();
    }
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'y');
    close(ready[0]);
    close(ready[1]);

    /* Alive: refused, and told who. */
    ember_seqlock_writer *w = NULL;
    CHECK_CODE(ember_seqlock_writer_create_ex(seq, 64, FP, EMBER_REPLACE_STALE, &w), EMBER_EINUSE);
    CHECK(ember_last_in_use_pid() == (uint32_t)child);
    CHECK(w == NULL);
    ember_mq *m = NULL;
    CHECK_CODE(ember_mq_create_ex(q, 4, 64, EMBER_MQ_BOTH, EMBER_REPLACE_STALE, &m), EMBER_EINUSE);
    CHECK(ember_last_in_use_pid() == (uint32_t)child);
    CHECK_CODE(ember_seqlock_writer_create_ex(seq, 64, FP, 2, &w), EMBER_EINVAL); /* unknown flag */

    /* Dead: EEXIST without the flag, taken over with it. */
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, NULL, 0) == child);
    CHECK_CODE(ember_seqlock_writer_create(seq, 64, FP, &w), EMBER_EOS);
    CHECK(ember_last_os_error() == EEXIST);
    CHECK_CODE(ember_seqlock_writer_create_ex(seq, 64, FP, EMBER_REPLACE_STALE, &w), EMBER_OK);
    ember_spsc_sender *tx = NULL;
    CHECK_CODE(ember_spsc_sender_create_ex(ring, 4096, FP, EMBER_REPLACE_STALE, &tx), EMBER_OK);
    ember_broadcast_writer *b = NULL;
    CHECK_CODE(ember_broadcast_writer_create_ex(bc, 4096, FP, EMBER_REPLACE_STALE, &b), EMBER_OK);
    CHECK_CODE(ember_mq_create_ex(q, 4, 64, EMBER_MQ_BOTH, EMBER_REPLACE_STALE, &m), EMBER_OK);

    /* The new ones work. */
    ember_seqlock_reader *r = NULL;
    CHECK_CODE(ember_seqlock_reader_open(seq, FP, &r), EMBER_OK);
    CHECK_CODE(ember_seqlock_writer_write(w, (const uint8_t *)"new", 3), EMBER_OK);
    uint8_t buf[64];
    size_t len = 0;
    uint32_t version = 0;
    CHECK_CODE(ember_seqlock_reader_read(r, buf, sizeof buf, &len, &version), EMBER_OK);
    CHECK(len == 3 && memcmp(buf, "new", 3) == 0);
    ember_seqlock_reader_free(r);
    ember_seqlock_writer_free(w);
    ember_spsc_sender_free(tx);
    ember_broadcast_writer_free(b);
    ember_mq_free(m);
    /* Freed by their creator: the names are gone. */
    CHECK_CODE(ember_shm_unlink(seq), EMBER_EOS);
    CHECK(ember_last_os_error() == ENOENT);
    CHECK_CODE(ember_mq_unlink(q), EMBER_EOS);
}

/* ember_shm_unlink and ember_mq_unlink: the names go, the handles keep working, and the
 * creator's _free leaves a name it no longer owns alone. */
static void unlink_by_name(void) {
    char seq[64], q[64];
    name_of(seq, sizeof seq, "unlink-seq");
    name_of(q, sizeof q, "unlink-q");
    CHECK_CODE(ember_shm_unlink(NULL), EMBER_EINVAL);
    CHECK_CODE(ember_shm_unlink("no-slash"), EMBER_EINVAL);
    ember_seqlock_writer *w = NULL;
    CHECK_CODE(ember_seqlock_writer_create(seq, 64, FP, &w), EMBER_OK);
    CHECK_CODE(ember_shm_unlink(seq), EMBER_OK);
    CHECK_CODE(ember_seqlock_writer_write(w, (const uint8_t *)"x", 1), EMBER_OK);
    /* Someone else's segment under the name now: the old writer's _free keeps off it. */
    ember_seqlock_writer *w2 = NULL;
    CHECK_CODE(ember_seqlock_writer_create(seq, 64, FP, &w2), EMBER_OK);
    ember_seqlock_writer_free(w);
    ember_seqlock_reader *r = NULL;
    CHECK_CODE(ember_seqlock_reader_open(seq, FP, &r), EMBER_OK);
    ember_seqlock_reader_free(r);
    ember_seqlock_writer_free(w2);
    ember_mq *m = NULL;
    CHECK_CODE(ember_mq_create(q, 4, 64, EMBER_MQ_BOTH, &m), EMBER_OK);
    CHECK_CODE(ember_mq_unlink(q), EMBER_OK);
    ember_mq *m2 = NULL;
    CHECK_CODE(ember_mq_open(q, EMBER_MQ_BOTH, &m2), EMBER_EOS);
    ember_mq_free(m);
}

/* One receiver per SPSC ring: a second one is EMBER_EINUSE with the holder's pid. */
static void one_receiver(void) {
    char ring[64];
    name_of(ring, sizeof ring, "claim");
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL, *rx2 = NULL;
    CHECK_CODE(ember_spsc_sender_create(ring, 4096, FP, &tx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_open(ring, FP, &rx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_open(ring, FP, &rx2), EMBER_EINUSE);
    CHECK(ember_last_in_use_pid() == (uint32_t)getpid());
    CHECK(rx2 == NULL);
    ember_spsc_receiver_free(rx);
    CHECK_CODE(ember_spsc_receiver_open(ring, FP, &rx2), EMBER_OK);
    ember_spsc_receiver_free(rx2);
    ember_spsc_sender_free(tx);
}

/* fork: a child that frees the handles it inherited neither unlinks nor closes the
 * parent's segment, nor releases the parent's receiver claim. */
static void fork_free(void) {
    char ring[64], q[64];
    name_of(ring, sizeof ring, "fork");
    name_of(q, sizeof q, "fork-q");
    ember_spsc_sender *tx = NULL;
    ember_spsc_receiver *rx = NULL;
    ember_mq *m = NULL;
    CHECK_CODE(ember_spsc_sender_create(ring, 4096, FP, &tx), EMBER_OK);
    CHECK_CODE(ember_spsc_receiver_open(ring, FP, &rx), EMBER_OK);
    CHECK_CODE(ember_mq_create(q, 4, 64, EMBER_MQ_BOTH, &m), EMBER_OK);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        ember_spsc_sender_free(tx);
        ember_spsc_receiver_free(rx);
        ember_mq_free(m);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char path[96];
    snprintf(path, sizeof path, "/dev/shm%s", ring);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    ember_mq *m2 = NULL;
    CHECK_CODE(ember_mq_open(q, EMBER_MQ_SEND, &m2), EMBER_OK);
    ember_mq_free(m2);
    ember_spsc_receiver *rx2 = NULL;
    CHECK_CODE(ember_spsc_receiver_open(ring, FP, &rx2), EMBER_EINUSE);
    CHECK_CODE(ember_spsc_sender_send(tx, (const uint8_t *)"open", 4, 0), EMBER_OK);
    uint8_t buf[16];
    size_t len = 0;
    CHECK_CODE(ember_spsc_receiver_recv(rx, buf, sizeof buf, &len, 1000), EMBER_OK);
    CHECK(len == 4 && memcmp(buf, "open", 4) == 0);
    ember_spsc_receiver_free(rx);
    ember_spsc_sender_free(tx);
    ember_mq_free(m);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
}

/* CRC-32C (Castagnoli, reflected, init and final xor ~0), bit by bit, continuing `crc`
 * (0 to start): the segment header's checksum (docs/shm-layout.md section 2). */
static uint32_t crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* A segment of another layout version (here rewritten as version 2, checksum and all) is
 * EMBER_EVERSION for a reader. */
static void other_version(void) {
    char seq[64], path[96];
    name_of(seq, sizeof seq, "v2");
    snprintf(path, sizeof path, "/dev/shm%s", seq);
    ember_seqlock_writer *w = NULL;
    CHECK_CODE(ember_seqlock_writer_create(seq, 64, FP, &w), EMBER_OK);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        uint8_t h[128];
        CHECK(fread(h, 1, sizeof h, f) == sizeof h);
        uint32_t version = 2;
        memcpy(h + 4, &version, 4);
        uint32_t crc = crc32c(crc32c(0, h, 48), h + 52, 8);
        memcpy(h + 48, &crc, 4);
        CHECK(fseek(f, 0, SEEK_SET) == 0);
        CHECK(fwrite(h, 1, sizeof h, f) == sizeof h);
        fclose(f);
    }
    ember_seqlock_reader *r = NULL;
    CHECK_CODE(ember_seqlock_reader_open(seq, FP, &r), EMBER_EVERSION);
    CHECK(r == NULL);
    ember_seqlock_writer_free(w);
}

/* A FIFO somebody reads is EMBER_EINUSE; one nobody reads is replaced. */
static void fifo_stale(void) {
    char path[96];
    snprintf(path, sizeof path, "/tmp/ember-c-shm-%d.fifo", (int)getpid());
    CHECK_CODE(ember_fifo_create_ex(path, EMBER_REPLACE_STALE), EMBER_OK);
    ember_pipe_reader *r = NULL;
    CHECK_CODE(ember_fifo_open_reader(path, 1, &r), EMBER_OK);
    CHECK_CODE(ember_fifo_create_ex(path, EMBER_REPLACE_STALE), EMBER_EINUSE);
    CHECK(ember_last_in_use_pid() == 0);
    ember_pipe_reader_free(r);
    CHECK_CODE(ember_fifo_create_ex(path, EMBER_REPLACE_STALE), EMBER_OK);
    CHECK_CODE(ember_fifo_create_ex(path, 4), EMBER_EINVAL);
    CHECK_CODE(ember_fifo_remove(path), EMBER_OK);
}

int main(void) {
    spsc();
    seqlock();
    broadcast();
    no_space();
    replace_stale();
    unlink_by_name();
    one_receiver();
    fork_free();
    fifo_stale();
    other_version();
    if (failures == 0) {
        printf("test_shm: ok\n");
    }
    return failures != 0;
}
