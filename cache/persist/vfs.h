/* vfs.h - the file I/O that persistence code goes through.
 *
 * Everything the WAL (and later the snapshots) does to a disk goes through a
 * struct vfs: a small table of functions in the manner of SQLite's VFS. The
 * default, vfs_os(), passes each call to the operating system. Tests wrap
 * it in the fault-injecting VFS of test/support/faultvfs.h (short and failed
 * writes and syncs, stalls, a crash at byte N, a power cut); the product
 * links only this one.
 *
 * Errors are negative errno values. pread and pwrite return a byte count
 * (possibly short) or a negative errno; EINTR never escapes.
 *
 * Threads: vfs_os() is stateless and may be used from any thread.
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

#endif
