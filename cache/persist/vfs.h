/* vfs.h - the file I/O that persistence code goes through, and a
 * fault-injecting implementation of it for tests.
 *
 * Everything the WAL (and later the snapshots) does to a disk goes through a
 * struct vfs: a small table of functions in the manner of SQLite's VFS. The
 * default, vfs_os(), passes each call to the operating system. The fault VFS
 * (vfs_fault_new) wraps it and can make a given write short, fail the Nth
 * write or sync with an errno, stall writes until told to go on, and "crash at
 * byte N": the write that crosses a total of N bytes is cut there and every
 * later mutating call fails with -EIO and does nothing, as if the process had
 * died. vfs_fault_power_loss() then cuts every file it saw back to its size at
 * its last successful sync, as a power cut would. Tests use it; production
 * never does.
 *
 * Errors are negative errno values. pread and pwrite return a byte count
 * (possibly short) or a negative errno; EINTR never escapes.
 *
 * Threads: vfs_os() is stateless and may be used from any thread. The fault
 * VFS locks its own state; its control functions may be called from any
 * thread while another thread does I/O through it.
 */
#ifndef PARROT_VFS_H
#define PARROT_VFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* open flags */
#define VFS_RDONLY 0x0
#define VFS_RDWR   0x1
#define VFS_CREATE 0x2 /* create if missing (mode 0644) */
#define VFS_EXCL   0x4 /* with VFS_CREATE: fail with -EEXIST if it exists */
#define VFS_TRUNC  0x8 /* cut to zero length on open */

struct vfs_file;

struct vfs {
    int (*open)(struct vfs *v, const char *path, int flags, struct vfs_file **out);
    ssize_t (*pread)(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off);
    ssize_t (*pwrite)(struct vfs *v, struct vfs_file *f, const void *buf, size_t len, uint64_t off);
    int (*sync)(struct vfs *v, struct vfs_file *f); /* data and size (fdatasync) */
    int (*truncate)(struct vfs *v, struct vfs_file *f, uint64_t size);
    int (*size)(struct vfs *v, struct vfs_file *f, uint64_t *size);
    int (*close)(struct vfs *v, struct vfs_file *f); /* always releases f */
    int (*rename)(struct vfs *v, const char *from, const char *to);
    int (*unlink)(struct vfs *v, const char *path);
    int (*sync_dir)(struct vfs *v, const char *dir); /* make renames and creations durable */
};

/* The operating system. Never freed. */
struct vfs *vfs_os(void);

/* Reads up to len bytes at off, looping over short reads; stops early only at
 * end of file. Returns the bytes read or a negative errno. */
ssize_t vfs_read_full(struct vfs *v, struct vfs_file *f, void *buf, size_t len, uint64_t off);

/* Writes all len bytes at off, looping over short writes. Returns 0 or a
 * negative errno (a write that makes no progress is -EIO). */
int vfs_write_full(struct vfs *v, struct vfs_file *f, const void *buf, size_t len, uint64_t off);

/* What the fault VFS does. Counters (the N in "Nth") start at 1 with the first
 * call after vfs_fault_set(). */
struct vfs_fault_plan {
    uint64_t write_nth;   /* the first pwrite that faults; 0: none */
    uint64_t write_count; /* how many in a row fault from there; 0: all until cleared */
    int write_err;        /* negative errno to fail with after writing half of the
                             bytes (a torn write); 0: only write half and return that */
    uint64_t sync_nth;    /* the first sync that fails; 0: none */
    uint64_t sync_count;  /* how many in a row; 0: all until cleared */
    int sync_err;         /* negative errno; the data stays written but not durable */
    int truncate_err;     /* every truncate fails with this while set; 0: none */
    uint64_t crash_at;    /* crash once this many bytes were written; 0: never */
    bool stall;           /* pwrite blocks until the stall is lifted */
};

struct vfs_fault_stats {
    uint64_t writes, syncs, bytes; /* calls and bytes since vfs_fault_set */
    uint64_t faults;               /* calls that were made to fail or come up short */
    unsigned stalled;              /* writers blocked right now */
    bool crashed;
};

/* A fault VFS over vfs_os() with an empty plan; free with vfs_fault_free. */
int vfs_fault_new(struct vfs **out);
void vfs_fault_free(struct vfs *v); /* NULL is a no-op; files must be closed first */

/* Replace the plan, reset the counters and revive a crashed VFS. */
void vfs_fault_set(struct vfs *v, const struct vfs_fault_plan *p);
void vfs_fault_clear(struct vfs *v); /* an empty plan; wakes stalled writers */
void vfs_fault_get_stats(struct vfs *v, struct vfs_fault_stats *st);

/* Cut every file written through v back to its size at its last successful
 * sync (or, for a file it never synced, the size it had when first opened).
 * Truncation and renames are modelled as durable at once. Call it with the
 * files closed, after a crash, to see what a power cut would have left. */
int vfs_fault_power_loss(struct vfs *v);

#endif
