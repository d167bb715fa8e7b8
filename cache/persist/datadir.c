/* datadir.c - the data directory's lock file; see datadir.h.
 *
 * flock rather than fcntl locks: an fcntl lock belongs to the process and is
 * silently dropped when any descriptor of the file is closed, and two
 * descriptors in one process never conflict; a flock belongs to the open
 * file description, so even a second lock attempt inside one process (a
 * test, a library user) is refused as it should be.
 */
#include "cache/persist/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct datadir_lock {
    int fd;
};

/* The pid the holder wrote into fd, or 0 when it cannot be read (the holder
 * may have locked the file and not written it yet). */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    char *end;
    long pid;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    pid = strtol(buf, &end, 10);
    return end != buf && pid > 0 ? pid : 0;
}

/* Replaces the file's contents with our pid. Returns 0 or -1. */
static int write_pid(int fd)
{
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) != 0)
        return -1;
    return pwrite(fd, pid, (size_t)n, 0) == n ? 0 : -1;
}

int datadir_lock(const char *dir, struct datadir_lock **out, char *err, size_t errlen)
{
    struct datadir_lock *l = NULL;
    char path[4096];
    int fd = -1, rc, n;

    *out = NULL;
    n = snprintf(path, sizeof(path), "%s/%s", dir, DATADIR_LOCK_NAME);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        snprintf(err, errlen, "data-dir %s: path too long", dir);
        return -ENAMETOOLONG;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open lock file %s: %s", path, strerror(errno));
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        long holder;

        rc = -errno;
        if (rc != -EWOULDBLOCK) {
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(-rc));
            goto fail;
        }
        holder = holder_pid(fd);
        if (holder)
            snprintf(err, errlen,
                     "data-dir %s is in use by another parrot (pid %ld holds %s); give each "
                     "instance its own data-dir, or stop that one first",
                     dir, holder, path);
        else
            snprintf(err, errlen,
                     "data-dir %s is in use by another parrot (it holds %s); give each "
                     "instance its own data-dir, or stop that one first",
                     dir, path);
        goto fail;
    }
    /* The pid is only there to name the holder in the message above: a
     * failure to write it does not make the lock any less held. */
    (void)write_pid(fd);
    l = malloc(sizeof(*l));
    if (!l) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    l->fd = fd;
    *out = l;
    return 0;
fail:
    close(fd);
    return rc;
}

void datadir_unlock(struct datadir_lock *l)
{
    if (!l)
        return;
    close(l->fd);
    free(l);
}
