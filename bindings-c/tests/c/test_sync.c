/* The C ABI's shared mutex, semaphore and event across real processes (fork), every error
 * path included. Built and run by `cargo xtask test` under ASan+UBSan and valgrind. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* The layout of the data area. */
enum { MUTEX_A = 0, MUTEX_B = 8, SEM = 16, EVENT = 24, COUNTER = 32, FP = 0x5EC0 };

static ember_sync_segment *seg;
static uint32_t *counter;

static int wait_child(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_segment(const char *name) {
    ember_sync_segment *other = NULL;
    CHECK_CODE(ember_sync_segment_create(NULL, 64, FP, &other), EMBER_EINVAL);
    CHECK_CODE(ember_sync_segment_create(name, 64, FP, &other), EMBER_EOS); /* exists */
    CHECK_CODE(ember_sync_segment_open(name, FP + 1, &other), EMBER_EBADMSG);
    CHECK_CODE(ember_sync_segment_open(name, FP, &other), EMBER_OK);
    void *data = NULL;
    size_t len = 0;
    CHECK_CODE(ember_sync_segment_data(other, &data, &len), EMBER_OK);
    CHECK(data != NULL && len == 64 && ((uintptr_t)data % 8) == 0);
    CHECK_CODE(ember_sync_segment_data(NULL, &data, &len), EMBER_EINVAL);
    ember_sync_segment_free(other);
    ember_sync_segment_free(NULL);
}

static void test_mutex_basics(void) {
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, EMBER_FOREVER), EMBER_OK);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 100), EMBER_EDEADLK);
    CHECK_CODE(ember_mutex_trylock(seg, MUTEX_A), EMBER_EAGAIN);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_ENOTOWNER);
    CHECK_CODE(ember_mutex_consistent(seg, MUTEX_A), EMBER_ENOTOWNER);
    CHECK_CODE(ember_mutex_trylock(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_lock(seg, 2, 0), EMBER_EINVAL);  /* misaligned */
    CHECK_CODE(ember_mutex_lock(seg, 60, 0), EMBER_EINVAL); /* past the end */
    CHECK_CODE(ember_mutex_lock(NULL, 0, 0), EMBER_EINVAL);
}

/* 4 processes add 1 to a plain shared counter 20000 times each under the mutex. */
static void test_mutex_counts(void) {
    *counter = 0;
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (int k = 0; k < 20000; k++) {
                if (ember_mutex_lock(seg, MUTEX_B, 10000) != EMBER_OK) _exit(1);
                uint32_t v = *(volatile uint32_t *)counter;
                *(volatile uint32_t *)counter = v + 1;
                if (ember_mutex_unlock(seg, MUTEX_B) != EMBER_OK) _exit(2);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < 4; i++) CHECK(wait_child(pids[i]) == 0);
    CHECK(*counter == 80000);
    /* A dead owner is taken over by a zero-timeout lock too (a polling caller recovers). */
    pid_t pid = fork();
    if (pid == 0) _exit(ember_mutex_lock(seg, MUTEX_B, 0) == EMBER_OK ? 0 : 1);
    CHECK(wait_child(pid) == 0);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_B, 0), EMBER_EOWNERDEAD);
    CHECK_CODE(ember_mutex_consistent(seg, MUTEX_B), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_B), EMBER_OK);
    /* And a held one is EMBER_EAGAIN with a zero timeout. One pipe each way: a child that
     * read its own "locked" byte back would unlock early and leave the parent waiting. */
    int locked[2], go[2];
    CHECK(pipe(locked) == 0 && pipe(go) == 0);
    pid = fork();
    if (pid == 0) {
        if (ember_mutex_lock(seg, MUTEX_B, 1000) != EMBER_OK) _exit(1);
        if (write(locked[1], "L", 1) != 1) _exit(2);
        char c;
        if (read(go[0], &c, 1) != 1) _exit(3);
        _exit(ember_mutex_unlock(seg, MUTEX_B) == EMBER_OK ? 0 : 4);
    }
    char c;
    CHECK(read(locked[0], &c, 1) == 1);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_B, 0), EMBER_EAGAIN);
    CHECK(write(go[1], "U", 1) == 1);
    CHECK(wait_child(pid) == 0);
    close(locked[0]);
    close(locked[1]);
    close(go[0]);
    close(go[1]);
}

/* A holder killed: the next locker gets EMBER_EOWNERDEAD, repairs, and it is clean after.
 * A waiter with a timeout meanwhile gets EMBER_ETIMEDOUT. Unrepaired: not recoverable. */
static void test_owner_dies(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (ember_mutex_lock(seg, MUTEX_A, 1000) != EMBER_OK) _exit(1);
        if (write(p[1], "L", 1) != 1) _exit(2);
        for (;;) pause();
    }
    char c;
    CHECK(read(p[0], &c, 1) == 1);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 150), EMBER_ETIMEDOUT);
    kill(pid, SIGKILL);
    CHECK(wait_child(pid) == 128 + SIGKILL);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 5000), EMBER_EOWNERDEAD);
    CHECK_CODE(ember_mutex_consistent(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 1000), EMBER_OK);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_OK);
    /* A holder that exits without unlocking, and a taker that does not repair. */
    pid = fork();
    if (pid == 0) _exit(ember_mutex_lock(seg, MUTEX_A, 1000) == EMBER_OK ? 0 : 1);
    CHECK(wait_child(pid) == 0);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 5000), EMBER_EOWNERDEAD);
    CHECK_CODE(ember_mutex_unlock(seg, MUTEX_A), EMBER_OK);
    CHECK_CODE(ember_mutex_lock(seg, MUTEX_A, 100), EMBER_ENOTRECOVERABLE);
    CHECK_CODE(ember_mutex_trylock(seg, MUTEX_A), EMBER_ENOTRECOVERABLE);
    close(p[0]);
    close(p[1]);
}

static void test_semaphore(void) {
    uint32_t n = 99;
    CHECK_CODE(ember_sem_init(seg, SEM, 0), EMBER_OK);
    CHECK_CODE(ember_sem_wait(seg, SEM, 0), EMBER_EAGAIN);
    CHECK_CODE(ember_sem_wait(seg, SEM, 50), EMBER_ETIMEDOUT);
    pid_t pid = fork();
    if (pid == 0) _exit(ember_sem_wait(seg, SEM, 5000) == EMBER_OK ? 0 : 1);
    sleep_ms(50);
    CHECK_CODE(ember_sem_post(seg, SEM), EMBER_OK);
    CHECK(wait_child(pid) == 0);
    CHECK_CODE(ember_sem_post(seg, SEM), EMBER_OK);
    CHECK_CODE(ember_sem_count(seg, SEM, &n), EMBER_OK);
    CHECK(n == 1);
    CHECK_CODE(ember_sem_wait(seg, SEM, EMBER_FOREVER), EMBER_OK);
    CHECK_CODE(ember_sem_init(seg, SEM, 0xFFFFFFFFu), EMBER_OK);
    CHECK_CODE(ember_sem_post(seg, SEM), EMBER_EOVERFLOW);
    CHECK_CODE(ember_sem_count(seg, SEM, NULL), EMBER_EINVAL);
    CHECK_CODE(ember_sem_post(seg, 61), EMBER_EINVAL);
}

static void test_event(void) {
    uint32_t seen = 0, now = 0;
    CHECK_CODE(ember_event_current(seg, EVENT, &seen), EMBER_OK);
    CHECK_CODE(ember_event_wait_change(seg, EVENT, seen, 30, &now), EMBER_ETIMEDOUT);
    /* A misaligned output pointer is refused before any wait: at once (a 10 s timeout
     * would otherwise run out first), and on a change that has happened too. */
    uint32_t words[2] = {0, 0};
    uint32_t *misaligned = (uint32_t *)((char *)words + 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_CODE(ember_event_wait_change(seg, EVENT, seen, 10000, misaligned), EMBER_EINVAL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t1.tv_sec - t0.tv_sec < 5);
    CHECK_CODE(ember_event_wait_change(seg, EVENT, seen - 1, 10000, misaligned), EMBER_EINVAL);
    pid_t pid = fork();
    if (pid == 0) {
        uint32_t got = 0;
        if (ember_event_wait_change(seg, EVENT, seen, 5000, &got) != EMBER_OK) _exit(1);
        _exit(got == seen + 1 && __atomic_load_n(counter, __ATOMIC_RELAXED) == 42 ? 0 : 2);
    }
    sleep_ms(50);
    __atomic_store_n(counter, 42, __ATOMIC_RELAXED);
    CHECK_CODE(ember_event_notify(seg, EVENT, 1), EMBER_OK);
    CHECK(wait_child(pid) == 0);
    CHECK_CODE(ember_event_wait_change(seg, EVENT, seen, 0, NULL), EMBER_OK);
}

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "/ember-c-sync-%d", (int)getpid());
    CHECK_CODE(ember_sync_segment_create(name, 64, FP, &seg), EMBER_OK);
    if (seg == NULL) return 1;
    void *data = NULL;
    size_t len = 0;
    CHECK_CODE(ember_sync_segment_data(seg, &data, &len), EMBER_OK);
    counter = (uint32_t *)((char *)data + COUNTER);
    test_segment(name);
    test_mutex_basics();
    test_mutex_counts();
    test_owner_dies();
    test_semaphore();
    test_event();
    ember_sync_segment_free(seg); /* the creator unlinks the name */
    ember_sync_segment *gone = NULL;
    CHECK_CODE(ember_sync_segment_open(name, FP, &gone), EMBER_EOS);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
