#ifndef AUTOMATE_SHIMS_H
#define AUTOMATE_SHIMS_H

#include <sys/types.h>
#include <stdint.h>

/// What a child process gets: every field is applied in the child between fork and exec.
typedef struct automate_spawn_options {
    /// Absolute path of the program to execute.
    const char *path;
    /// NULL-terminated argument vector (argv[0] included).
    char *const *argv;
    /// NULL-terminated environment ("KEY=value").
    char *const *envp;
    /// Working directory, or NULL to inherit.
    const char *working_directory;
    /// Descriptors for 0, 1 and 2; -1 means /dev/null.
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /// A further descriptor that becomes fd 3 in the child (a readiness pipe, s6-style), or -1.
    int extra_fd;
    /// User and group to switch to, or -1 to keep the caller's. Supplementary groups are set to
    /// `groups` (count `group_count`) when switching; group_count < 0 keeps them.
    int64_t uid;
    int64_t gid;
    const gid_t *groups;
    int group_count;
    /// 1: the child leads a new process group (setpgid(0, 0)); 2: a new session (setsid()).
    int process_group_mode;
    /// Signal the child receives when the supervisor dies (PR_SET_PDEATHSIG), 0 for none.
    int death_signal;
    /// File mode creation mask for the child, or -1 to inherit.
    int umask_value;
} automate_spawn_options;

/// Forks and executes on the library's dedicated spawner thread, so that PR_SET_PDEATHSIG (which fires
/// when the *forking thread* exits) stays tied to the life of the process, not of a pool thread.
///
/// Returns 0 and sets *pid_out on success. On failure returns -1, sets *errno_out to the errno of the
/// failing step and *step_out to a static string naming it ("fork", "setpgid", "setuid", "chdir",
/// "execve", ...): the child reports failures before exec through a close-on-exec pipe.
int automate_spawn(const automate_spawn_options *options, pid_t *pid_out, int *errno_out,
                   const char **step_out);

/// Marks the calling process as a child subreaper (PR_SET_CHILD_SUBREAPER): orphaned descendants are
/// re-parented to it instead of to init. Returns 0 or -1 with errno set.
int automate_set_child_subreaper(void);

/// Sets PR_SET_PDEATHSIG for the calling thread's future children's parent (the caller itself). Returns 0
/// or -1 with errno set.
int automate_set_death_signal(int signal_number);

/// pidfd_open(2): a descriptor that becomes readable when the process exits. -1 with errno on failure.
int automate_pidfd_open(pid_t pid);

/// Waits until the descriptor is readable or timeout_ms passes: 1 readable, 0 timed out, -1 error.
int automate_poll_readable(int fd, int timeout_ms);

/// waitpid(-1, &status, 0) retried on EINTR; returns the pid or -1 with errno (ECHILD: no children).
pid_t automate_wait_any(int *status_out);

/// Decodes a wait status: returns 1 if exited (sets *code), 2 if killed by a signal (sets *code to it),
/// 0 otherwise.
int automate_decode_wait_status(int status, int *code);

/// pipe2(fds, O_CLOEXEC). 0 or -1 with errno.
int automate_pipe_cloexec(int fds[2]);

/// Restores default dispositions for every catchable signal and unblocks all signals in the caller.
void automate_reset_signals(void);

/// Blocks the given signals in the calling thread (and threads created afterwards).
int automate_block_signals(const int *signals, int count);

/// Starts the process-group guard: a small child process (forked, not exec'd) that kills every
/// registered process group with SIGKILL once the supervisor is gone (its pipe reaches end-of-file),
/// so that grandchildren, which PR_SET_PDEATHSIG does not reach, die with the supervisor too.
/// Returns the guard's pid, or -1 with errno. Idempotent.
pid_t automate_group_guard_start(void);

/// Tells the guard about a process group to kill if the supervisor dies (no-op without a guard).
void automate_group_guard_add(pid_t pgid);

/// Tells the guard a process group is gone (no-op without a guard).
void automate_group_guard_remove(pid_t pgid);

#include "automate_gateway.h"

#endif
