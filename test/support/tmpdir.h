/* tmpdir.h - a private scratch directory for a unit test: on /dev/shm when
 * it is writable (fast, and a crash leaves nothing on disk), else $TMPDIR or
 * /tmp. Not thread-safe; a test owns its directory. */
#ifndef PARROT_TMPDIR_H
#define PARROT_TMPDIR_H

#include <stddef.h>

/* Create PREFIX-XXXXXX and write its path into dir[0..cap). Returns 0, or
 * -1 (errno set). */
int tmpdir_make(char *dir, size_t cap, const char *prefix);

/* Remove the files directly inside dir, then dir itself; what cannot be
 * removed is left. */
void tmpdir_remove(const char *dir);

#endif
