/* faultvfs.c - the fault-injecting VFS; see faultvfs.h.
 *
 * It wraps vfs_os() through its table only, so the product's vfs.c knows
 * nothing of it. Each file it opens is a struct ffile (the OS file plus the
 * durability record, struct node, that it keeps per path); callers see it as
 * an opaque struct vfs_file * and it is cast back here, never dereferenced as
 * the OS VFS's type. vfs_fault_power_loss() rolls files back to the nodes.
 */
#include "test/support/faultvfs.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a power cut would leave of one file: its size at the last sync. */
struct node {
    struct node *next;
    char *path;
    uint64_t synced;
};

/* An open file: the OS VFS's file and the node for its path. */
struct ffile {
    struct vfs_file *os;
    struct node *node;
};

struct fault {
    struct vfs vfs; /* first, so a struct vfs * from vfs_fault_new is a struct fault * */
    struct vfs *os; /* vfs_os() */
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

static struct ffile *ffile_of(struct vfs_file *f)
{
    return (struct ffile *)(void *)f;
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
    struct ffile *ff;
    struct node *n;
    uint64_t size = 0;
    int rc;

    pthread_mutex_lock(&ft->mu);
    rc = ft->st.crashed && (flags & (VFS_CREATE | VFS_TRUNC)) ? -EIO : 0;
    pthread_mutex_unlock(&ft->mu);
    if (rc)
        return rc;
    ff = calloc(1, sizeof(*ff));
    if (!ff)
        return -ENOMEM;
    rc = ft->os->open(ft->os, path, flags, &ff->os);
    if (rc || !ff->os) {
        rc = rc ? rc : -EIO;
        goto fail;
    }
    rc = ft->os->size(ft->os, ff->os, &size);
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
    ff->node = n;
    *out = (struct vfs_file *)(void *)ff;
    return 0;
fail:
    if (ff->os)
        ft->os->close(ft->os, ff->os);
    free(ff);
    return rc;
}

static ssize_t ft_pwrite(struct vfs *v, struct vfs_file *f, const void *buf, size_t len,
                         uint64_t off)
{
    struct fault *ft = fault_of(v);
    struct vfs_file *osf = ffile_of(f)->os;
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
        return ft->os->pwrite(ft->os, osf, buf, len, off);
    n = keep ? ft->os->pwrite(ft->os, osf, buf, keep, off) : 0;
    if (n < 0)
        return n;
    /* The OS may itself have been short, which only makes the torn part shorter. */
    return ret >= 0 && n < ret ? n : ret;
}

static ssize_t ft_pread(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off)
{
    struct fault *ft = fault_of(v);

    return ft->os->pread(ft->os, ffile_of(f)->os, buf, len, off);
}

static int ft_size(struct vfs *v, struct vfs_file *f, uint64_t *size)
{
    struct fault *ft = fault_of(v);

    return ft->os->size(ft->os, ffile_of(f)->os, size);
}

static int ft_close(struct vfs *v, struct vfs_file *f)
{
    struct fault *ft = fault_of(v);
    struct ffile *ff = ffile_of(f);
    int rc;

    if (!ff)
        return 0;
    rc = ft->os->close(ft->os, ff->os);
    free(ff);
    return rc;
}

static int ft_sync(struct vfs *v, struct vfs_file *f)
{
    struct fault *ft = fault_of(v);
    struct ffile *ff = ffile_of(f);
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
    rc = ft->os->sync(ft->os, ff->os);
    if (rc == 0)
        rc = ft->os->size(ft->os, ff->os, &size);
    if (rc == 0) {
        pthread_mutex_lock(&ft->mu);
        ff->node->synced = size;
        pthread_mutex_unlock(&ft->mu);
    }
    return rc;
}

static int ft_truncate(struct vfs *v, struct vfs_file *f, uint64_t size)
{
    struct fault *ft = fault_of(v);
    struct ffile *ff = ffile_of(f);
    int rc;

    pthread_mutex_lock(&ft->mu);
    rc = ft->st.crashed ? -EIO : ft->plan.truncate_err;
    if (ft->plan.truncate_err)
        ft->st.faults++;
    pthread_mutex_unlock(&ft->mu);
    if (rc)
        return rc;
    rc = ft->os->truncate(ft->os, ff->os, size);
    if (rc == 0) {
        pthread_mutex_lock(&ft->mu);
        if (ff->node->synced > size)
            ff->node->synced = size;
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
    rc = ft->os->rename(ft->os, from, to);
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
    rc = ft->os->unlink(ft->os, path);
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
    return rc ? rc : ft->os->sync_dir(ft->os, dir);
}

int vfs_fault_new(struct vfs **out)
{
    struct fault *ft = calloc(1, sizeof(*ft));

    if (!ft)
        return -ENOMEM;
    ft->os = vfs_os();
    ft->vfs.open = ft_open;
    ft->vfs.pread = ft_pread;
    ft->vfs.pwrite = ft_pwrite;
    ft->vfs.sync = ft_sync;
    ft->vfs.truncate = ft_truncate;
    ft->vfs.size = ft_size;
    ft->vfs.close = ft_close;
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
            rc = errno > 0 ? -errno : -EIO;
    }
    pthread_mutex_unlock(&ft->mu);
    return rc;
}
