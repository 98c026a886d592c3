/* Parents that would reap but are stuck elsewhere, for the tests of where
 * a parent waits (tests/tests/stuck.rs): blocked in sleep() inside a named
 * function, blocked on a mutex another thread holds, and a signalfd event
 * loop stuck in another handler while SIGCHLD waits on its fd. Each holds
 * its child unreaped for HOLD_MS (argv[2]), then reaps it and exits 0, so
 * the finding is a late reap. The tests find the lines to expect by their
 * MARK comments; the functions are neither inlined nor cloned (noipa), so
 * that the function a finding names is exact, and each blocking call's
 * result is used, so that it is no tail call. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define STUCK __attribute__((noipa))

static int hold_ms;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int slow_pipe[2];

static pid_t leak_a_child(void) {
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        exit(2);
    }
    if (child == 0)
        _exit(0);
    fprintf(stderr, "TRUTH {\"parent\":%d,\"child\":%d}\n", getpid(), child);
    return child;
}

static void reap(pid_t child) {
    if (waitpid(child, NULL, 0) != child) {
        perror("waitpid");
        exit(2);
    }
}

/* The parent means to reap, after "the jobs": it sleeps first. */
STUCK static int wait_for_jobs(pid_t child) {
    unsigned left = sleep((hold_ms + 999) / 1000); /* MARK: sleep */
    if (left != 0)
        fprintf(stderr, "woken %u s early\n", left);
    reap(child);
    return 0;
}

/* A thread that holds the lock the parent needs to reap. */
STUCK static void *hold_lock(void *locked) {
    pthread_mutex_lock(&lock);
    __atomic_store_n((int *)locked, 1, __ATOMIC_SEQ_CST);
    if (usleep(hold_ms * 1000) != 0) /* MARK: holder */
        perror("usleep");
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* The parent reaps under the lock, which the holder keeps. */
STUCK static int reap_under_lock(pid_t child) {
    int locked = pthread_mutex_lock(&lock); /* MARK: mutex */
    if (locked != 0)
        return 2;
    reap(child);
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Another event's handler, slow: it reads an answer the helper thread
 * writes after HOLD_MS. */
STUCK static int slow_handler(int events) {
    char byte;
    if (read(events, &byte, 1) != 1)
        return 2;
    ssize_t got = read(slow_pipe[0], &byte, 1); /* MARK: handler */
    return got == 1 ? 0 : 2;
}

static void *answer_late(void *unused) {
    (void)unused;
    usleep(hold_ms * 1000);
    if (write(slow_pipe[1], "x", 1) != 1)
        perror("write");
    return NULL;
}

/* An event loop: SIGCHLD through a signalfd, and another fd whose handler
 * is slow. The other event comes first; the child's exit waits. */
static int signalfd_loop(void) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        return 2;
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    int events[2];
    if (sfd < 0 || pipe(events) != 0 || pipe(slow_pipe) != 0)
        return 2;
    pthread_t helper;
    if (pthread_create(&helper, NULL, answer_late, NULL) != 0)
        return 2;
    pid_t child = leak_a_child();
    if (write(events[1], "e", 1) != 1)
        return 2;
    for (;;) {
        struct pollfd fds[2] = {{events[0], POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(fds, 2, -1) < 0)
            return 2;
        if (fds[0].revents & POLLIN) {
            if (slow_handler(events[0]) != 0)
                return 2;
            continue;
        }
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            if (read(sfd, &info, sizeof info) != sizeof info)
                return 2;
            reap(child);
            break;
        }
    }
    pthread_join(helper, NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s sleep|mutex|signalfd HOLD_MS\n", argv[0]);
        return 2;
    }
    hold_ms = atoi(argv[2]);
    if (strcmp(argv[1], "sleep") == 0)
        return wait_for_jobs(leak_a_child());
    if (strcmp(argv[1], "mutex") == 0) {
        int locked = 0;
        pthread_t holder;
        if (pthread_create(&holder, NULL, hold_lock, &locked) != 0)
            return 2;
        while (!__atomic_load_n(&locked, __ATOMIC_SEQ_CST))
            usleep(1000);
        int status = reap_under_lock(leak_a_child());
        pthread_join(holder, NULL);
        return status;
    }
    if (strcmp(argv[1], "signalfd") == 0)
        return signalfd_loop();
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
