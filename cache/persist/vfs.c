/* vfs.c - the operating system's file I/O and a fault-injecting wrapper
 * around it; see vfs.h.
 *
 * Both implementations share struct vfs_file: the OS one only uses fd; the
 * fault VFS also points each open file at the durability record (struct node)
 * it keeps per path, which is what vfs_fault_power_loss() rolls files back to.
 */
#include "cache/persist/vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct node;

struct vfs_file {
    int fd;
    struct node *node; /* fault VFS only */
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

/* ---- the fault VFS ---- */

/* What a power cut would leave of one file: its size at the last sync. */
struct node {
    struct node *next;
    char *path;
    uint64_t synced;
};

struct fault {
    struct vfs vfs; /* first, so a struct vfs * from vfs_fault_new is a struct fault * */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* stalled writers wait here */
    struct vfs_fault_plan plan;
    struct vfs_fault_stats st;
    struct node *nodes;
};

static struct fault *fault_of(struct vfs *v)
{
    return (struct fault *)v;
}

/* The record for path, created (with the given synced size) if missing.
 * Called with mu held. */
static struct node *node_get(struct fault *ft, const char *path, uint64_t size)
{
    struct node *n;

    for (n = ft->nodes; n; n = n->next)
        if (strcmp(n->path, path) == 0)
            return n;
    n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->path = strdup(path);
    if (!n->path) {
        free(n);
        return NULL;
    }
    n->synced = size;
    n->next = ft->nodes;
    ft->nodes = n;
    return n;
}

static void node_drop(struct fault *ft, const char *path)
{
    for (struct node **p = &ft->nodes; *p; p = &(*p)->next) {
        if (strcmp((*p)->path, path) == 0) {
            struct node *n = *p;

            *p = n->next;
            free(n->path);
            free(n);
            return;
        }
    }
}

/* True when a fault that starts at call nth and lasts count calls (0: for
 * ever) covers call n. */
static bool hits(uint64_t n, uint64_t nth, uint64_t count)
{
    return nth && n >= nth && (count == 0 || n - nth < count);
}

static int ft_open(struct vfs *v, const char *path, int flags, struct vfs_file **out)
{
    struct fault *ft = fault_of(v);
    struct vfs_file *f = NULL;
    struct node *n;
    uint64_t size = 0;
    int rc;

    pthread_mutex_lock(&ft->mu);
    rc = ft->st.crashed && (flags & (VFS_CREATE | VFS_TRUNC)) ? -EIO : 0;
    pthread_mutex_unlock(&ft->mu);
    if (rc)
        return rc;
    rc = os_open(v, path, flags, &f);
    if (rc || !f)
        return rc ? rc : -EIO;
    rc = os_size(v, f, &size);
    if (rc)
        goto fail;
    pthread_mutex_lock(&ft->mu);
    n = node_get(ft, path, size);
    if (n && (flags & VFS_TRUNC))
        n->synced = 0;
    pthread_mutex_unlock(&ft->mu);
    if (!n) {
        rc = -ENOMEM;
        goto fail;
    }
    f->node = n;
    *out = f;
    return 0;
fail:
    os_close(v, f);
    return rc;
}

static ssize_t ft_pwrite(struct vfs *v, struct vfs_file *f, const void *buf, size_t len,
                         uint64_t off)
{
    struct fault *ft = fault_of(v);
    bool faulty = false; /* write only keep bytes, then report ret */
    size_t keep = len;
    ssize_t ret = 0, n;

    pthread_mutex_lock(&ft->mu);
    while (ft->plan.stall && !ft->st.crashed) {
        ft->st.stalled++;
        pthread_cond_wait(&ft->cv, &ft->mu);
        ft->st.stalled--;
    }
    if (ft->st.crashed) {
        pthread_mutex_unlock(&ft->mu);
        return -EIO;
    }
    ft->st.writes++;
    if (ft->plan.crash_at && ft->st.bytes + len >= ft->plan.crash_at) {
        faulty = true;
        keep = (size_t)(ft->plan.crash_at - ft->st.bytes);
        ret = -EIO;
        ft->st.crashed = true;
    } else if (hits(ft->st.writes, ft->plan.write_nth, ft->plan.write_count)) {
        faulty = true;
        keep = len / 2;
        ret = ft->plan.write_err ? ft->plan.write_err : (ssize_t)keep;
        ft->st.faults++;
    }
    ft->st.bytes += keep;
    pthread_mutex_unlock(&ft->mu);

    if (!faulty)
        return os_pwrite(v, f, buf, len, off);
    n = keep ? os_pwrite(v, f, buf, keep, off) : 0;
    if (n < 0)
        return n;
    /* The OS may itself have been short, which only makes the torn part shorter. */
    return ret >= 0 && n < ret ? n : ret;
}

static ssize_t ft_pread(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off)
{
    return os_pread(v, f, buf, len, off);
}

static int ft_sync(struct vfs *v, struct vfs_file *f)
{
    struct fault *ft = fault_of(v);
    uint64_t size = 0;
    int rc = 0;

    pthread_mutex_lock(&ft->mu);
    if (ft->st.crashed) {
        rc = -EIO;
    } else {
        ft->st.syncs++;
        if (hits(ft->st.syncs, ft->plan.sync_nth, ft->plan.sync_count)) {
            rc = ft->plan.sync_err ? ft->plan.sync_err : -EIO;
            ft->st.faults++;
        }
    }
    pthread_mutex_unlock(&ft->mu);
    if (rc)
        return rc;
    rc = os_sync(v, f);
    if (rc == 0)
        rc = os_size(v, f, &size);
    if (rc == 0) {
        pthread_mutex_lock(&ft->mu);
        f->node->synced = size;
        pthread_mutex_unlock(&ft->mu);
    }
    return rc;
}

static int ft_truncate(struct vfs *v, struct vfs_file *f, uint64_t size)
{
    struct fault *ft = fault_of(v);
    int rc;

    pthread_mutex_lock(&ft->mu);
    rc = ft->st.crashed ? -EIO : ft->plan.truncate_err;
    if (ft->plan.truncate_err)
        ft->st.faults++;
    pthread_mutex_unlock(&ft->mu);
    if (rc)
        return rc;
    rc = os_truncate(v, f, size);
    if (rc == 0) {
        pthread_mutex_lock(&ft->mu);
        if (f->node->synced > size)
            f->node->synced = size;
        pthread_mutex_unlock(&ft->mu);
    }
    return rc;
}

/* -EIO once the simulated crash happened: a dead process does no more I/O. */
static int crashed(struct fault *ft)
{
    int rc;

    pthread_mutex_lock(&ft->mu);
    rc = ft->st.crashed ? -EIO : 0;
    pthread_mutex_unlock(&ft->mu);
    return rc;
}

static int ft_rename(struct vfs *v, const char *from, const char *to)
{
    struct fault *ft = fault_of(v);
    int rc;

    rc = crashed(ft);
    if (rc)
        return rc;
    rc = os_rename(v, from, to);
    if (rc)
        return rc;
    pthread_mutex_lock(&ft->mu);
    node_drop(ft, to);
    for (struct node *n = ft->nodes; n; n = n->next) {
        if (strcmp(n->path, from) == 0) {
            char *p = strdup(to);

            if (!p) {
                /* Forget the file rather than track it under a stale name. */
                node_drop(ft, from);
                rc = -ENOMEM;
            } else {
                free(n->path);
                n->path = p;
            }
            break;
        }
    }
    pthread_mutex_unlock(&ft->mu);
    return rc;
}

static int ft_unlink(struct vfs *v, const char *path)
{
    struct fault *ft = fault_of(v);
    int rc;

    rc = crashed(ft);
    if (rc)
        return rc;
    rc = os_unlink(v, path);
    if (rc == 0) {
        pthread_mutex_lock(&ft->mu);
        node_drop(ft, path);
        pthread_mutex_unlock(&ft->mu);
    }
    return rc;
}

static int ft_sync_dir(struct vfs *v, const char *dir)
{
    struct fault *ft = fault_of(v);
    int rc;

    rc = crashed(ft);
    return rc ? rc : os_sync_dir(v, dir);
}

int vfs_fault_new(struct vfs **out)
{
    struct fault *ft = calloc(1, sizeof(*ft));

    if (!ft)
        return -ENOMEM;
    ft->vfs = os_vfs;
    ft->vfs.open = ft_open;
    ft->vfs.pread = ft_pread;
    ft->vfs.pwrite = ft_pwrite;
    ft->vfs.sync = ft_sync;
    ft->vfs.truncate = ft_truncate;
    ft->vfs.rename = ft_rename;
    ft->vfs.unlink = ft_unlink;
    ft->vfs.sync_dir = ft_sync_dir;
    if (pthread_mutex_init(&ft->mu, NULL) != 0) {
        free(ft);
        return -ENOMEM;
    }
    if (pthread_cond_init(&ft->cv, NULL) != 0) {
        pthread_mutex_destroy(&ft->mu);
        free(ft);
        return -ENOMEM;
    }
    *out = &ft->vfs;
    return 0;
}

void vfs_fault_free(struct vfs *v)
{
    struct fault *ft;

    if (!v)
        return;
    ft = fault_of(v);
    while (ft->nodes) {
        struct node *n = ft->nodes;

        ft->nodes = n->next;
        free(n->path);
        free(n);
    }
    pthread_cond_destroy(&ft->cv);
    pthread_mutex_destroy(&ft->mu);
    free(ft);
}

void vfs_fault_set(struct vfs *v, const struct vfs_fault_plan *p)
{
    struct fault *ft = fault_of(v);
    unsigned stalled;

    pthread_mutex_lock(&ft->mu);
    stalled = ft->st.stalled;
    ft->plan = *p;
    memset(&ft->st, 0, sizeof(ft->st));
    ft->st.stalled = stalled;
    pthread_cond_broadcast(&ft->cv);
    pthread_mutex_unlock(&ft->mu);
}

void vfs_fault_clear(struct vfs *v)
{
    struct vfs_fault_plan none = {0};

    vfs_fault_set(v, &none);
}

void vfs_fault_get_stats(struct vfs *v, struct vfs_fault_stats *st)
{
    struct fault *ft = fault_of(v);

    pthread_mutex_lock(&ft->mu);
    *st = ft->st;
    pthread_mutex_unlock(&ft->mu);
}

int vfs_fault_power_loss(struct vfs *v)
{
    struct fault *ft = fault_of(v);
    int rc = 0;

    pthread_mutex_lock(&ft->mu);
    for (struct node *n = ft->nodes; n; n = n->next) {
        struct stat st;

        if (stat(n->path, &st) != 0)
            continue; /* removed since: nothing to roll back */
        if ((uint64_t)st.st_size > n->synced && truncate(n->path, (off_t)n->synced) != 0)
            rc = neg_errno();
    }
    pthread_mutex_unlock(&ft->mu);
    return rc;
}
