// The process-group guard: see automate_group_guard_start in CAutomateShims.h.
#define _GNU_SOURCE
#include "CAutomateShims.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define GUARD_MAX_GROUPS 8192

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static int guard_fd = -1;
static pid_t guard_pid = -1;

// Runs in the forked child: only async-signal-safe calls, no allocation.
static void guard_main(int input) {
    static pid_t groups[GUARD_MAX_GROUPS];
    int count = 0;
    // Survive the signals an operator or systemd sends to the supervisor's group: the guard's job is
    // to act when the supervisor is gone, and it exits by itself right after.
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_NAME, "automate-guard");
    if (input != 0) { dup2(input, 0); }
    if (syscall(SYS_close_range, 1, ~0U, 0) != 0) {
        for (int fd = 1; fd < 4096; fd++) close(fd);
    }
    // Records are 5 bytes: '+' or '-' then a 32-bit pid in host order.
    unsigned char record[5];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(0, record + have, sizeof record - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        have += (size_t)n;
        if (have < sizeof record) continue;
        have = 0;
        pid_t pgid;
        memcpy(&pgid, record + 1, sizeof pgid);
        if (pgid <= 1) continue;
        if (record[0] == '+') {
            int known = 0;
            for (int i = 0; i < count; i++) if (groups[i] == pgid) { known = 1; break; }
            if (!known && count < GUARD_MAX_GROUPS) groups[count++] = pgid;
        } else if (record[0] == '-') {
            for (int i = 0; i < count; i++) {
                if (groups[i] == pgid) { groups[i] = groups[--count]; break; }
            }
        }
    }
    // End of file: the supervisor has exited (cleanly, with nothing registered, or killed).
    for (int i = 0; i < count; i++) kill(-groups[i], SIGKILL);
    _exit(0);
}

pid_t automate_group_guard_start(void) {
    pthread_mutex_lock(&guard_lock);
    if (guard_pid > 0) {
        pid_t pid = guard_pid;
        pthread_mutex_unlock(&guard_lock);
        return pid;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        pthread_mutex_unlock(&guard_lock);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        pthread_mutex_unlock(&guard_lock);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        // Its own process group, so that signals to the supervisor's group do not reach it.
        setpgid(0, 0);
        guard_main(fds[0]);
    }
    close(fds[0]);
    guard_fd = fds[1];
    guard_pid = pid;
    pthread_mutex_unlock(&guard_lock);
    return pid;
}

static void guard_send(char op, pid_t pgid) {
    pthread_mutex_lock(&guard_lock);
    if (guard_fd >= 0) {
        unsigned char record[5];
        record[0] = (unsigned char)op;
        memcpy(record + 1, &pgid, sizeof pgid);
        ssize_t n;
        do { n = write(guard_fd, record, sizeof record); } while (n < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&guard_lock);
}

void automate_group_guard_add(pid_t pgid) { guard_send('+', pgid); }

void automate_group_guard_remove(pid_t pgid) { guard_send('-', pgid); }
