/* vfs.c - the operating system's file I/O; see vfs.h. (The fault-injecting
 * VFS that tests wrap around it is test/support/faultvfs.c.)
 */
#include "cache/persist/vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct vfs_file {
    int fd;
};

/* ---- the operating system ---- */

/* errno as a negative error code, never 0 (a failed call always fails). */
static int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

static int os_open(struct vfs *v, const char *path, int flags, struct vfs_file **out)
{
    int oflags = O_CLOEXEC | ((flags & VFS_RDWR) ? O_RDWR : O_RDONLY);
    struct vfs_file *f;
    int fd;

    (void)v;
    if (flags & VFS_CREATE)
        oflags |= O_CREAT;
    if (flags & VFS_EXCL)
        oflags |= O_EXCL;
    if (flags & VFS_TRUNC)
        oflags |= O_TRUNC;
    f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    do
        fd = open(path, oflags, 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = neg_errno();

        free(f);
        return err;
    }
    f->fd = fd;
    *out = f;
    return 0;
}

static ssize_t os_pread(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off)
{
    ssize_t n;

    (void)v;
    if (off > (uint64_t)INT64_MAX)
        return -EINVAL;
    do
        n = pread(f->fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? neg_errno() : n;
}

static ssize_t os_pwrite(struct vfs *v, struct vfs_file *f, const void *buf, size_t len,
                         uint64_t off)
{
    ssize_t n;

    (void)v;
    if (off > (uint64_t)INT64_MAX)
        return -EINVAL;
    do
        n = pwrite(f->fd, buf, len, (off_t)off);
    while (n < 0 && errno == EINTR);
    return n < 0 ? neg_errno() : n;
}

static int os_sync(struct vfs *v, struct vfs_file *f)
{
    (void)v;
    /* No retry on EINTR: fdatasync does not fail with it, and retrying a
     * failed sync would wrongly report success (the error is reported once). */
    return fdatasync(f->fd) == 0 ? 0 : neg_errno();
}

static int os_truncate(struct vfs *v, struct vfs_file *f, uint64_t size)
{
    int rc;

    (void)v;
    if (size > (uint64_t)INT64_MAX)
        return -EINVAL;
    do
        rc = ftruncate(f->fd, (off_t)size);
    while (rc < 0 && errno == EINTR);
    return rc == 0 ? 0 : neg_errno();
}

static int os_size(struct vfs *v, struct vfs_file *f, uint64_t *size)
{
    struct stat st;

    (void)v;
    if (fstat(f->fd, &st) != 0)
        return neg_errno();
    *size = (uint64_t)st.st_size;
    return 0;
}

static int os_close(struct vfs *v, struct vfs_file *f)
{
    int rc = 0;

    (void)v;
    if (!f)
        return 0;
    /* Linux releases the descriptor even when close fails: never retry. */
    if (close(f->fd) != 0 && errno != EINTR)
        rc = neg_errno();
    free(f);
    return rc;
}

static int os_rename(struct vfs *v, const char *from, const char *to)
{
    (void)v;
    return rename(from, to) == 0 ? 0 : neg_errno();
}

static int os_unlink(struct vfs *v, const char *path)
{
    (void)v;
    return unlink(path) == 0 ? 0 : neg_errno();
}

static int os_sync_dir(struct vfs *v, const char *dir)
{
    int fd, rc = 0;

    (void)v;
    do
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return neg_errno();
    if (fsync(fd) != 0)
        rc = neg_errno();
    close(fd);
    return rc;
}

static struct vfs os_vfs = {
    .open = os_open,
    .pread = os_pread,
    .pwrite = os_pwrite,
    .sync = os_sync,
    .truncate = os_truncate,
    .size = os_size,
    .close = os_close,
    .rename = os_rename,
    .unlink = os_unlink,
    .sync_dir = os_sync_dir,
};

struct vfs *vfs_os(void)
{
    return &os_vfs;
}

ssize_t vfs_read_full(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = v->pread(v, f, (char *)buf + done, len - done, off + done);

        if (n < 0)
            return n;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

int vfs_write_full(struct vfs *v, struct vfs_file *f, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = v->pwrite(v, f, (const char *)buf + done, len - done, off + done);

        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        done += (size_t)n;
    }
    return 0;
}
