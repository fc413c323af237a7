#ifndef AUTOMATE_CSYSTEMD_SHIM_H
#define AUTOMATE_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

/* sd_journal_send is variadic, which Swift cannot call: send one entry from an array of
   "FIELD=value" strings instead (sd_journal_sendv). */
#include <sys/uio.h>
#include <string.h>
static inline int automate_journal_send(const char *const *fields, int count) {
    struct iovec iov[32];
    if (count > 32) count = 32;
    for (int i = 0; i < count; i++) {
        iov[i].iov_base = (void *)fields[i];
        iov[i].iov_len = strlen(fields[i]);
    }
    return sd_journal_sendv(iov, count);
}
#endif
