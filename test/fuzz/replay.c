/* replay.c - runs fuzz inputs through a target without libFuzzer.
 *
 * Linked with one fuzz_*.c: every file named on the command line (for a
 * directory, every regular file directly in it) goes through the target's
 * LLVMFuzzerTestOneInput, so a seed corpus and saved crash inputs run as a
 * regression test under any compiler, with or without sanitizers. Prints
 * "NAME: N inputs ok"; a broken invariant aborts.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test/fuzz/fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Runs one file through the target; returns 0, or -1 if it cannot be read. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL, *p;
    size_t len = 0, cap = 0, n;

    if (!f) {
        perror(path);
        return -1;
    }
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            p = realloc(data, cap);
            if (!p) {
                free(data);
                fclose(f);
                fprintf(stderr, "%s: out of memory\n", path);
                return -1;
            }
            data = p;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f)) {
        perror(path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

/* Runs path, or every regular file directly inside it; counts inputs run. */
static int run_path(const char *path, unsigned *count)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    int rc = 0;

    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        rc = run_file(path);
        *count += rc == 0;
        return rc;
    }
    d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    while ((e = readdir(d))) {
        char sub[4096];

        if (e->d_name[0] == '.')
            continue;
        if (snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name) >= (int)sizeof(sub))
            continue;
        if (stat(sub, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (run_file(sub) == 0)
            (*count)++;
        else
            rc = -1;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (run_path(argv[i], &count) != 0)
            rc = 1;
    printf("%s: %u inputs ok\n", argv[0], count);
    return rc;
}
