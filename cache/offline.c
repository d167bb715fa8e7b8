/* offline.c - `parrot wal check|repair` over cache/persist; see offline.h. */
#include "cache/offline.h"

#include "cache/persist/snapshot.h"
#include "cache/persist/wal.h"

int cache_wal_check(const char *dir, FILE *out)
{
    struct wal_opts o = {.dir = dir};
    struct wal_report rep;
    struct snap_report srep;
    int rc, src;

    rc = wal_check(&o, &rep);
    wal_report_print(&rep, out);
    /* The snapshot is checked even when the log is damaged: the operator
     * learns of both troubles from one run. */
    src = snap_check(dir, NULL, &srep);
    fprintf(out, "snapshot:  %s\n", srep.message);
    return rc != 0 ? rc : src;
}

int cache_wal_repair(const char *dir, FILE *out)
{
    struct wal_opts o = {.dir = dir};
    struct wal_report rep;
    int rc;

    rc = wal_repair(&o, &rep);
    wal_report_print(&rep, out);
    return rc;
}
