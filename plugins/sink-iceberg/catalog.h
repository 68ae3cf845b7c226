/*
 * Where a table's versions live and how a new one is committed. Two
 * catalogs, one contract (catalog_load / catalog_commit):
 *
 * - The file catalog (Hadoop-style table at a path, catalog_file.c): the
 *   versions are <location>/metadata/v<N>.metadata.json and
 *   metadata/version-hint.text holds the digits of the latest N. A commit is
 *   creating v<N+1> without overwriting (file_io put_if_absent: link(2)
 *   locally, If-None-Match on S3). The hint is only a hint: loading probes
 *   past it.
 * - The Iceberg REST catalog (catalog_rest.c): the server holds the pointer
 *   to the current metadata; a commit sends the changes from the loaded
 *   version to the new one with requirements that fail it (409) when the
 *   table moved meanwhile.
 *
 * Either way, FIO_EXISTS means another writer committed first: reload,
 * re-apply, retry. FIO_UNKNOWN means the commit may or may not have been
 * applied and the catalog could not tell: nothing it wrote may be deleted,
 * and the writer must learn the truth from a reload before it goes on.
 */
#ifndef ECF_ICEBERG_CATALOG_H
#define ECF_ICEBERG_CATALOG_H

#include "file_io.h"
#include "table_metadata.h"

typedef struct rest_catalog rest_catalog; /* catalog_rest.h */

/* Which table: a location (file catalog) or a REST identifier. */
typedef struct {
    file_io *io;          /* data, manifests (and, file catalog, metadata) */
    const char *location; /* file catalog: the table's location */
    rest_catalog *rest;   /* REST: the catalog; location comes from it */
    const char *ns, *name;
} catalog_ref;

typedef struct {
    file_io *io;
    rest_catalog *rest;
    char *ns, *name;     /* REST identifier */
    char *location;      /* table location (REST: once loaded or created) */
    int version;         /* file: N of the loaded metadata; REST: 1 once loaded; 0: no table */
    int hint;            /* file: what version-hint.text said at the load; 0: none */
    char *metadata_file; /* the loaded metadata's location */
    table_metadata meta;
} catalog_table;

void catalog_table_init(catalog_table *t, const catalog_ref *ref);
void catalog_table_clear(catalog_table *t);

/* 1 loaded, 0 no table there, -1 error (*err set). */
int catalog_load(catalog_table *t, char **err);

/* A crash between a commit and its hint update leaves the hint behind the
 * latest version: readers that trust it (DuckDB's iceberg_scan on the table
 * folder) would see an older table than the others. Rewrites the hint when
 * the load found it behind (file catalog; a no-op for REST). Advisory like
 * the hint itself: true if it is right now. */
bool catalog_repair_hint(catalog_table *t);

/* Commits `next`, built from t->meta (or a new table when t->version is 0).
 * FIO_OK: t now holds the committed version; FIO_EXISTS: someone else
 * committed first (reload and retry); FIO_UNKNOWN / FIO_ERROR with *err. */
fio_result catalog_commit(catalog_table *t, table_metadata *next, char **err);

/* The file catalog's halves of the above (catalog_file.c). */
int catalog_file_load(catalog_table *t, char **err);
bool catalog_file_repair_hint(catalog_table *t);
fio_result catalog_file_commit(catalog_table *t, table_metadata *next, char **err);

#endif
