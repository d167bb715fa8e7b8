/* faultvfs.h - a fault-injecting struct vfs for tests (test code: the product
 * never links it).
 *
 * The fault VFS (vfs_fault_new) wraps vfs_os() and can make a given write
 * short, fail the Nth write or sync with an errno, stall writes until told to
 * go on, and "crash at byte N": the write that crosses a total of N bytes is
 * cut there and every later mutating call fails with -EIO and does nothing, as
 * if the process had died. vfs_fault_power_loss() then cuts every file it saw
 * back to its size at its last successful sync, as a power cut would. This is
 * how the WAL and snapshot tests check crash behaviour instead of hoping for
 * it (SQLite's test VFS is the model).
 *
 * Errors are negative errno values, as for every struct vfs.
 *
 * Threads: the fault VFS locks its own state; its control functions may be
 * called from any thread while another thread does I/O through it.
 */
#ifndef PARROT_TEST_FAULTVFS_H
#define PARROT_TEST_FAULTVFS_H

#include "cache/persist/vfs.h"

#include <stdbool.h>
#include <stdint.h>

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
