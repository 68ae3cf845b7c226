/*
 * The dedupe window (dedupe.h) kept with the table, so that it survives a
 * restart: an event committed before a crash and its retried copy after it
 * are written once.
 *
 * The hash key: 16 random bytes per table, the table property
 * "ecflow.dedupe.hash-key" (32 hex digits), set by a metadata commit the
 * first time a writer with dedupe_key starts on the table; kept by every
 * later commit (properties are part of the metadata), so every writer of the
 * table hashes alike and restarts find their keys.
 *
 * The keys: each commit that adds keys first writes a file under the table's
 * metadata/ (dedupe-<writer tag>-<uuid>.stats, format below) holding them, and
 * its snapshot's summary lists, under "ecflow.dedupe-files", the files that
 * together hold the window (names relative to metadata/, comma-separated,
 * oldest first). After DEDUPE_MAX_INCREMENTS incremental files, or when they
 * hold more keys than the window, the commit's file holds the whole window
 * instead and the list starts again from it (an LSM of depth 1). So the
 * newest snapshot of a writer names at most DEDUPE_MAX_INCREMENTS + 1 files,
 * of at most (window + DEDUPE_MAX_INCREMENTS * keys per commit) * 16 bytes
 * plus 28 bytes each; and never more than 2 * window * 16 + headers.
 *
 * Files are written before their snapshot is committed: a crash between the
 * two leaves a file no snapshot lists (an orphan to clean up), never a
 * snapshot that claims keys the table lacks. A commit that failed removes
 * its file; one of unknown outcome keeps it.
 *
 * At start the files of the writer's newest snapshot are loaded, oldest
 * first, into the window (the newest kept past its size). A file that is
 * missing, corrupt, or written under another hash key is reported and
 * skipped: dedupe is best-effort on top of exactly-once positions, it never
 * stops the pipeline; the next commit then writes the whole window anew.
 *
 * The extension is ".stats" because object stores that know the Iceberg
 * layout refuse other names under metadata/ (SeaweedFS's table buckets take
 * *.metadata.json, *.avro and *.stats there, and answer 403 to *.bin).
 * Only snapshots of this sink name these files (not the metadata's
 * "statistics"): readers never open them.
 *
 * File format (integers little-endian):
 *   0  8  magic "ECFDEDUP"
 *   8  2  version (1)
 *  10  1  kind: 0 the keys of one commit, 1 the whole window
 *  11  1  0
 *  12  4  count
 *  16  8  key id (dedupe_key_id: which hash key the hashes are under)
 *  24 16*count  hashes, oldest first (dedupe_hash_to_bytes)
 *  ..  4  CRC-32 (zlib) of everything before it
 *
 * With several processes under one writer id (scale-out), each lists the
 * files of its own window: a restart takes the window of whichever process
 * committed last.
 */
#ifndef ECF_ICEBERG_DEDUPE_STORE_H
#define ECF_ICEBERG_DEDUPE_STORE_H

#include "dedupe.h"
#include "file_io.h"
#include "table_commit.h"

#define DEDUPE_KEY_PROPERTY "ecflow.dedupe.hash-key"
#define DEDUPE_SUMMARY_KEY "ecflow.dedupe-files"
#define DEDUPE_MAX_INCREMENTS 16
#define DEDUPE_FILE_OVERHEAD 28 /* header and checksum */

/* The table's hash key, from its property, or made and committed (a
 * metadata commit through a catalog handle of its own: `t` stays as loaded,
 * and its next commit reloads). *created says which. false with *err when
 * the property is malformed or the commit failed. */
bool dedupe_table_key(const catalog_ref *ref, const ice_table *t, uint8_t key[DEDUPE_KEY_BYTES], bool *created,
                      char **err);
/* 32 lowercase hex digits -> 16 bytes; false when it is not that. */
bool dedupe_key_from_hex(const char *hex, uint8_t key[DEDUPE_KEY_BYTES]);

/* The files a snapshot's "ecflow.dedupe-files" value names, relative to the
 * table's metadata/ directory, NULL-terminated (g_strfreev). Names that
 * could point anywhere else (a '/', "..", not dedupe-*.stats) are left out:
 * the value comes from the table, and whoever can write it is not trusted
 * to name other files. For snapshot expiry and orphan cleanup: these files
 * live as long as a snapshot that names them. */
char **dedupe_files_of_summary(const char *value);
/* The same for snapshot `snapshot_id` of `tm` (empty when it names none). */
char **dedupe_files_of_snapshot(const table_metadata *tm, int64_t snapshot_id);

/* File format: encode `n` hashes; decode into *out (g_free) with *n, or
 * false with *why (what is wrong; g_free). key_id NULL: not checked. */
void dedupe_file_encode(byte_buf *out, const dedupe_hash *h, size_t n, bool whole_window, const uint8_t key_id[8]);
bool dedupe_file_decode(const uint8_t *p, size_t len, const uint8_t key_id[8], dedupe_hash **out, size_t *n,
                        bool *whole_window, char **why);

typedef void (*dedupe_warn_fn)(void *ctx, const char *msg);

typedef struct dedupe_store dedupe_store;

/* location: the table's; writer_id names the files (hashed). */
dedupe_store *dedupe_store_new(file_io *io, const char *location, const char *writer_id, dedupe_warn_fn warn,
                               void *warn_ctx);
void dedupe_store_free(dedupe_store *s);

/* Loads the files `value` (a snapshot's "ecflow.dedupe-files"; NULL: none)
 * names into d; returns the keys added, and the files read in *files_read. */
size_t dedupe_store_load(dedupe_store *s, dedupe *d, const char *value, unsigned *files_read);

/* Before a commit: writes the file for d's pending keys (or the whole
 * window) and returns the "ecflow.dedupe-files" value the snapshot should
 * carry (NULL: none; valid until the next call). A file that cannot be
 * written is reported and left out: the list stays what the table has. */
const char *dedupe_store_prepare(dedupe_store *s, const dedupe *d);
/* The snapshot was committed / was not (keep_file: its outcome is unknown,
 * the table may name the file now). */
void dedupe_store_committed(dedupe_store *s);
void dedupe_store_failed(dedupe_store *s, bool keep_file);

#endif
