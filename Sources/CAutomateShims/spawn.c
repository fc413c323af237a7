// Process spawning for the supervisor. Everything between fork and exec is async-signal-safe.
#define _GNU_SOURCE
#include "CAutomateShims.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define CLOSE_RANGE_CLOEXEC_FLAG 4

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

// ---- the spawner thread -------------------------------------------------------------------------

typedef struct spawn_request {
    const automate_spawn_options *options;
    pid_t pid;
    int result;
    int error;
    const char *step;
    int done;
} spawn_request;

static pthread_mutex_t spawner_lock = PTHREAD_MUTEX_INITIALIZER;     // guards the slot below
static pthread_cond_t spawner_wake = PTHREAD_COND_INITIALIZER;       // a request is waiting
static pthread_cond_t spawner_done = PTHREAD_COND_INITIALIZER;       // the request was served
static pthread_mutex_t callers_lock = PTHREAD_MUTEX_INITIALIZER;     // one caller at a time
static spawn_request *pending = NULL;
static pthread_once_t spawner_once = PTHREAD_ONCE_INIT;
static int spawner_start_error = 0;

static void child_fail(int report_fd, const char *step, int err) {
    // Report "<errno>:<step>" to the parent; then die without running atexit handlers.
    char buffer[96];
    int n = 0;
    unsigned int value = (unsigned int)err;
    char digits[12];
    int d = 0;
    do { digits[d++] = (char)('0' + value % 10); value /= 10; } while (value && d < 11);
    while (d > 0 && n < (int)sizeof(buffer) - 1) buffer[n++] = digits[--d];
    if (n < (int)sizeof(buffer) - 1) buffer[n++] = ':';
    for (const char *p = step; *p && n < (int)sizeof(buffer) - 1; p++) buffer[n++] = *p;
    ssize_t ignored = write(report_fd, buffer, (size_t)n);
    (void)ignored;
    _exit(127);
}

static int move_fd_above(int fd, int minimum) {
    if (fd < 0 || fd >= minimum) return fd;
    return fcntl(fd, F_DUPFD_CLOEXEC, minimum);
}

static void run_child(const automate_spawn_options *o, int report_fd, pid_t parent) {
    sigset_t all;
    sigfillset(&all);
    // Default dispositions: the supervisor ignores SIGPIPE and handles SIGTERM; its children must not.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    if (o->process_group_mode == 2) {
        if (setsid() < 0) child_fail(report_fd, "setsid", errno);
    } else if (o->process_group_mode == 1) {
        if (setpgid(0, 0) < 0) child_fail(report_fd, "setpgid", errno);
    }
    if (o->death_signal > 0) {
        if (prctl(PR_SET_PDEATHSIG, o->death_signal) < 0) child_fail(report_fd, "prctl(PR_SET_PDEATHSIG)", errno);
        // The parent may have died between fork and prctl: then nobody would signal us.
        if (getppid() != parent) _exit(127);
    }

    // Standard descriptors: move the sources out of 0..2 first so dup2 never clobbers one we need.
    int extra = move_fd_above(o->extra_fd, 4);
    if (o->extra_fd >= 0 && extra < 0) child_fail(report_fd, "fcntl(F_DUPFD)", errno);
    int sources[3] = {o->stdin_fd, o->stdout_fd, o->stderr_fd};
    for (int i = 0; i < 3; i++) {
        if (sources[i] < 0) {
            int flags = (i == 0) ? O_RDONLY : O_WRONLY;
            sources[i] = open("/dev/null", flags | O_CLOEXEC);
            if (sources[i] < 0) child_fail(report_fd, "open(/dev/null)", errno);
        }
        sources[i] = move_fd_above(sources[i], 3);
        if (sources[i] < 0) child_fail(report_fd, "fcntl(F_DUPFD)", errno);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(sources[i], i) < 0) child_fail(report_fd, "dup2", errno);
    }
    int first_closed = 3;
    if (extra >= 0) {
        if (dup2(extra, 3) < 0) child_fail(report_fd, "dup2", errno);
        first_closed = 4;
    }
    // Everything else closes at exec: mark it close-on-exec (the report pipe already is).
    if (syscall(SYS_close_range, first_closed, ~0U, CLOSE_RANGE_CLOEXEC_FLAG) != 0) {
        for (int fd = first_closed; fd < 4096; fd++) {
            int flags = fcntl(fd, F_GETFD);
            if (flags != -1) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }

    if (o->gid >= 0) {
        if (o->group_count >= 0 && setgroups((size_t)o->group_count, o->groups) < 0)
            child_fail(report_fd, "setgroups", errno);
        if (setgid((gid_t)o->gid) < 0) child_fail(report_fd, "setgid", errno);
    }
    if (o->uid >= 0) {
        if (setuid((uid_t)o->uid) < 0) child_fail(report_fd, "setuid", errno);
    }
    if (o->umask_value >= 0) umask((mode_t)o->umask_value);
    if (o->working_directory && chdir(o->working_directory) < 0) child_fail(report_fd, "chdir", errno);

    execve(o->path, o->argv, o->envp);
    child_fail(report_fd, "execve", errno);
}

static void serve(spawn_request *request) {
    const automate_spawn_options *o = request->options;
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        request->result = -1; request->error = errno; request->step = "pipe";
        return;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        request->result = -1; request->error = errno; request->step = "fork";
        close(report[0]); close(report[1]);
        return;
    }
    if (pid == 0) {
        close(report[0]);
        run_child(o, report[1], parent);
    }
    close(report[1]);
    char buffer[96];
    ssize_t n;
    do { n = read(report[0], buffer, sizeof buffer - 1); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n > 0) {
        // The child failed before exec; it exits 127 and the reaper collects it.
        buffer[n] = 0;
        int err = 0;
        char *p = buffer;
        while (*p >= '0' && *p <= '9') { err = err * 10 + (*p - '0'); p++; }
        static const char *steps[] = {"setsid", "setpgid", "prctl(PR_SET_PDEATHSIG)", "open(/dev/null)",
                                      "fcntl(F_DUPFD)", "dup2", "setgroups", "setgid", "setuid", "chdir",
                                      "execve"};
        const char *step = "exec";
        if (*p == ':') {
            p++;
            for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) if (strcmp(p, steps[i]) == 0) step = steps[i];
        }
        request->result = -1; request->error = err; request->step = step; request->pid = pid;
        return;
    }
    request->result = 0;
    request->pid = pid;
}

static void *spawner_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&spawner_lock);
    for (;;) {
        while (pending == NULL) pthread_cond_wait(&spawner_wake, &spawner_lock);
        spawn_request *request = pending;
        pending = NULL;
        pthread_mutex_unlock(&spawner_lock);
        serve(request);
        pthread_mutex_lock(&spawner_lock);
        request->done = 1;
        pthread_cond_broadcast(&spawner_done);
    }
    return NULL;
}

static void start_spawner(void) {
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    // The thread lives as long as the process: children's death signal follows the process's life.
    int rc = pthread_create(&thread, &attributes, spawner_main, NULL);
    pthread_attr_destroy(&attributes);
    if (rc != 0) spawner_start_error = rc;
}

int automate_spawn(const automate_spawn_options *options, pid_t *pid_out, int *errno_out,
                   const char **step_out) {
    pthread_once(&spawner_once, start_spawner);
    if (spawner_start_error != 0) {
        *errno_out = spawner_start_error;
        *step_out = "pthread_create";
        return -1;
    }
    spawn_request request;
    memset(&request, 0, sizeof request);
    request.options = options;
    request.pid = -1;
    pthread_mutex_lock(&callers_lock);
    pthread_mutex_lock(&spawner_lock);
    pending = &request;
    pthread_cond_signal(&spawner_wake);
    while (!request.done) pthread_cond_wait(&spawner_done, &spawner_lock);
    pthread_mutex_unlock(&spawner_lock);
    pthread_mutex_unlock(&callers_lock);
    *pid_out = request.pid;
    if (request.result != 0) {
        *errno_out = request.error;
        *step_out = request.step;
        return -1;
    }
    return 0;
}

// ---- small wrappers ----------------------------------------------------------------------------

int automate_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1); }

int automate_set_death_signal(int signal_number) { return prctl(PR_SET_PDEATHSIG, signal_number); }

int automate_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int automate_poll_readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do { rc = poll(&p, 1, timeout_ms); } while (rc < 0 && errno == EINTR);
    if (rc < 0) return -1;
    return rc > 0 ? 1 : 0;
}

pid_t automate_wait_any(int *status_out) {
    pid_t pid;
    do { pid = waitpid(-1, status_out, 0); } while (pid < 0 && errno == EINTR);
    return pid;
}

int automate_decode_wait_status(int status, int *code) {
    if (WIFEXITED(status)) { *code = WEXITSTATUS(status); return 1; }
    if (WIFSIGNALED(status)) { *code = WTERMSIG(status); return 2; }
    return 0;
}

int automate_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

void automate_reset_signals(void) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
}

int automate_block_signals(const int *signals, int count) {
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
    return pthread_sigmask(SIG_BLOCK, &set, NULL);
}
