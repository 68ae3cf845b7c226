/*
 * The file catalog (Hadoop-style table at a path): the table's versions are
 * <location>/metadata/v<N>.metadata.json and metadata/version-hint.text holds
 * the digits of the latest N. A commit is creating v<N+1> without
 * overwriting (file_io put_if_absent: link(2) locally, If-None-Match on S3);
 * losing that race means another writer committed first: reload, re-apply,
 * retry. The hint is only a hint: loading probes past it.
 */
#ifndef ECF_ICEBERG_CATALOG_FILE_H
#define ECF_ICEBERG_CATALOG_FILE_H

#include "file_io.h"
#include "table_metadata.h"

typedef struct {
    file_io       *io;
    char          *location;      /* table location */
    int            version;       /* N of the loaded metadata; 0: no table */
    int            hint;          /* what version-hint.text said at the load; 0: none */
    char          *metadata_file; /* its location */
    table_metadata meta;
} catalog_table;

void catalog_table_init(catalog_table *t, file_io *io, const char *location);
void catalog_table_clear(catalog_table *t);

/* 1 loaded, 0 no table there, -1 error (*err set). */
int catalog_load(catalog_table *t, char **err);

/* A crash between a commit and its hint update leaves the hint behind the
 * latest version: readers that trust it (DuckDB's iceberg_scan on the table
 * folder) would see an older table than the others. Rewrites the hint when
 * the load found it behind. Advisory like the hint itself: true if it is
 * right now. */
bool catalog_repair_hint(catalog_table *t);

/* Commits `next` as version t->version + 1. FIO_OK: t now holds it;
 * FIO_EXISTS: someone else committed that version (reload and retry). */
fio_result catalog_commit(catalog_table *t, table_metadata *next, char **err);

#endif
