/*
 * json_walk — a C face on simdjson On-Demand for validating one event.
 *
 * One call parses one JSON document in place (the buffer must stay readable
 * for TVJ_PADDING bytes past its end, as ecflow payloads are), requires it to
 * be an object, and walks every value at every depth, so a document the walk
 * accepts is valid JSON (RFC 8259) as a whole. On top of RFC 8259 it refuses
 * duplicate keys in any object (compared after unescaping, so "a" and
 * "\u0061" are the same key) and nesting deeper than max_depth. A duplicate
 * does not stop the walk: a document malformed after it is TVJ_MALFORMED.
 *
 * Each top-level member is reported to a callback, in document order, after
 * its value has been walked: its unescaped key, its type, its raw JSON text,
 * the unescaped string (strings) and the byte range of the whole member
 * (`"key": value`) for copying it verbatim. Members reported before a later
 * error are not taken back: the caller decides on the event only once the
 * walk returned TVJ_OK.
 *
 * Nothing here allocates per event once the walker has seen its largest
 * document (objects with more than 32 keys sort their keys in place to find
 * duplicates). A walker is not thread-safe: one per stage thread.
 */
#ifndef ECF_TV_JSON_WALK_H
#define ECF_TV_JSON_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TVJ_PADDING 64 /* == SIMDJSON_PADDING == ECF_PAYLOAD_PADDING */

typedef enum {
    TVJ_OK = 0,
    TVJ_EMPTY,      /* nothing but whitespace                        */
    TVJ_MALFORMED,  /* not JSON; err->offset says where              */
    TVJ_NOT_OBJECT, /* valid JSON, but not an object; err->got       */
    TVJ_TOO_DEEP,   /* nesting deeper than max_depth                 */
    TVJ_DUPLICATE,  /* a key repeats in one object; err->key         */
    TVJ_NOMEM,
    TVJ_INTERNAL,
} tvj_status;

typedef enum {
    TVJ_NULL = 0,
    TVJ_BOOL,
    TVJ_NUMBER,
    TVJ_STRING,
    TVJ_OBJECT,
    TVJ_ARRAY,
} tvj_type;

typedef struct {
    const char *key; /* unescaped UTF-8, not NUL-terminated         */
    size_t key_len;
    tvj_type type;
    const char *raw; /* the value's JSON text, byte for byte        */
    size_t raw_len;
    const char *str; /* TVJ_STRING: unescaped UTF-8 (may hold NUL)  */
    size_t str_len;
    bool boolean;         /* TVJ_BOOL                                     */
    size_t member_offset; /* `"key" : value` in the buffer          */
    size_t member_len;
} tvj_member;
/* Pointers stay valid until the next tvj_walk on the same walker. */

typedef void (*tvj_member_fn)(void *user, const tvj_member *m);

typedef struct {
    size_t offset;    /* byte offset of the problem                 */
    char message[96]; /* short, lower-case, no trailing period      */
    const char *key;  /* TVJ_DUPLICATE: the repeated key (unescaped) */
    size_t key_len;
    tvj_type got; /* TVJ_NOT_OBJECT: the top-level value's type */
} tvj_error;

typedef struct tvj_walker tvj_walker;

/* max_depth: deepest container nesting accepted; the top-level object is 1. */
tvj_walker *tvj_walker_new(uint32_t max_depth);
void tvj_walker_free(tvj_walker *w);
/* The largest document the walker has room for now (its scratch is a few
 * times that): lets a pool drop walkers a huge document inflated. */
size_t tvj_walker_footprint(const tvj_walker *w);

/* buf[0, len) is the document; capacity >= len + TVJ_PADDING readable bytes. */
tvj_status tvj_walk(tvj_walker *w, const uint8_t *buf, size_t len, size_t capacity, tvj_member_fn fn, void *user,
                    tvj_error *err);

const char *tvj_type_name(tvj_type t);

#ifdef __cplusplus
}
#endif
#endif /* ECF_TV_JSON_WALK_H */
