/* Scenarios for the stack tests (tests/tests/stacks.rs), in C because the
 * leaks they reproduce are C idioms: a popen() never pclose()d, and a
 * helper thread that sets SIGCHLD to SIG_IGN behind the main loop's back.
 * The tests find the lines to expect by their MARK comments; the functions
 * are not inlined, so that the function a finding names is exact. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t sigchld_seen;

static void on_sigchld(int sig) {
    (void)sig;
    sigchld_seen = 1;
}

/* Returns once a child of ours has exited and is a zombie, without
 * reaping it (WNOWAIT). */
static void wait_for_a_zombie(idtype_t idtype, id_t id) {
    for (;;) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (waitid(idtype, id, &info, WEXITED | WNOWAIT | WNOHANG) != 0) {
            perror("waitid");
            exit(2);
        }
        if (info.si_pid != 0)
            return;
        usleep(1000);
    }
}

/* The classic leak: the stream is never pclose()d, so its shell is never
 * reaped while this process lives. */
__attribute__((noinline)) static int leak_popen(int hold_ms) {
    FILE *stream = popen("exit 0", "r"); /* MARK: popen */
    if (stream == NULL) {
        perror("popen");
        return 2;
    }
    wait_for_a_zombie(P_ALL, 0);
    usleep(hold_ms * 1000);
    return 0;
}

/* A library's thread, unaware of the main loop's SIGCHLD handler. */
static void *ignore_sigchld(void *unused) {
    (void)unused;
    signal(SIGCHLD, SIG_IGN); /* MARK: sigign */
    return NULL;
}

/* The main loop reaps when its handler has run. The child exits while
 * SIGCHLD is blocked; the thread's SIG_IGN then discards the pending
 * signal, so the handler never runs and the zombie stays. */
__attribute__((noinline)) static int sigign_thread(int hold_ms) {
    signal(SIGCHLD, on_sigchld);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    wait_for_a_zombie(P_PID, (id_t)child);
    pthread_t thread;
    pthread_create(&thread, NULL, ignore_sigchld, NULL);
    pthread_join(thread, NULL);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    for (int waited = 0; waited < hold_ms; waited += 10) {
        if (sigchld_seen)
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        usleep(10000);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "popen";
    int hold_ms = argc > 2 ? atoi(argv[2]) : 600;
    int status = 2;
    if (strcmp(mode, "popen") == 0)
        status = leak_popen(hold_ms);
    else if (strcmp(mode, "sigign_thread") == 0)
        status = sigign_thread(hold_ms);
    else
        fprintf(stderr, "usage: leak popen|sigign_thread [HOLD_MS]\n");
    /* Not a tail call: main stays on the stack under the scenario. */
    fflush(stdout);
    return status;
}
