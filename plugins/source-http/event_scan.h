/*
 * event_scan — splits a request body into events and checks them at the door:
 * a C face on simdjson On-Demand. (Its names keep the jd_ prefix of its
 * first name, json_door.)
 *
 * One call scans a buffer holding either one JSON value, an array of values
 * (each element is an event), or NDJSON (each non-blank line is an event) and
 * reports, per event: its byte range in the buffer, whether it is an object,
 * and the value of one named top-level string key. Every value of every event
 * is visited, so a body the scan accepts is valid JSON (RFC 8259) as a whole,
 * not just where the key happened to be.
 *
 * The walk is json_walk's (plugins/common/event_schema): with jd_members,
 * each object event's top-level members are handed, as the walk meets them,
 * to a caller such as the schema validator, so each byte of a body is
 * parsed once.
 *
 * Nothing here allocates per event. The buffer must stay readable for
 * JD_PADDING bytes past its end (simdjson reads ahead in 64-byte blocks);
 * pass the real allocation size as `capacity`.
 *
 * A jd_parser holds simdjson's scratch memory (about six times the largest
 * document it has seen) and is not thread-safe: keep one per thread or pool
 * them.
 */
#ifndef ECF_EVENT_SCAN_H
#define ECF_EVENT_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json_walk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define JD_PADDING 64 /* == SIMDJSON_PADDING; checked at compile time in the .cpp */

typedef enum {
    JD_OK = 0,
    JD_EMPTY,     /* nothing but whitespace                          */
    JD_MALFORMED, /* not JSON; err->offset says where                */
    JD_TOO_DEEP,  /* nesting deeper than the parser's max_depth      */
    JD_STOPPED,   /* the event callback asked to stop                */
    JD_NOMEM,
    JD_INTERNAL,
} jd_status;

typedef enum {
    JD_LAYOUT_JSON = 0, /* one value; a top-level array is a list of events */
    JD_LAYOUT_NDJSON,   /* one value per line; blank lines are skipped      */
} jd_layout;

typedef enum {
    JD_KEY_UNCHECKED = 0, /* no key asked for, or the event is not an object */
    JD_KEY_STRING,        /* found; key/key_len hold its unescaped value     */
    JD_KEY_MISSING,
    JD_KEY_NOT_STRING,
} jd_key_state;

typedef struct {
    uint32_t index; /* 0-based position among the events          */
    size_t offset;  /* first byte of the event in the buffer       */
    size_t length;  /* its raw bytes, without surrounding space    */
    bool is_object;
    jd_key_state key_state;
    const char *key; /* unescaped UTF-8, not NUL-terminated; valid
                               only during the callback                    */
    size_t key_len;
    /* With jd_members: TVJ_OK, or TVJ_DUPLICATE (walk_err says which key,
     * where) when duplicates were looked for; TVJ_NOT_OBJECT (walk_err->got)
     * for an event that is not an object. */
    tvj_status walked;
    const tvj_error *walk_err;
} jd_event;

typedef struct {
    size_t offset;    /* byte offset of the error in the buffer */
    char message[96]; /* short, lower-case, no trailing period  */
} jd_error;

/* Return false to stop the scan (jd_scan then returns JD_STOPPED). */
typedef bool (*jd_event_fn)(void *user, const jd_event *ev);

/* A member consumer riding on the scan: begin() before the members of
 * object event `index`, member() for each (in document order, after its
 * value was walked), then the event callback. */
typedef struct {
    void (*begin)(void *user, uint32_t index);
    tvj_member_fn member;
    void *user;
    bool duplicates; /* look for duplicate keys at every depth (jd_event.walked) */
} jd_members;

typedef struct jd_parser jd_parser;

/* max_depth: deepest nesting accepted inside one event (e.g. 64). */
jd_parser *jd_parser_new(uint32_t max_depth);
void jd_parser_free(jd_parser *p);
/* The largest document (bytes) the parser has room for now; its scratch
 * memory is a few times that. Lets callers drop parsers a huge document
 * inflated instead of keeping them pooled. */
size_t jd_parser_footprint(const jd_parser *p);

/*
 * Scans buf[0, len); `capacity` >= len + JD_PADDING is the readable size.
 * key_field may be NULL (no key lookup); members may be NULL. Calls fn once
 * per event, in order.
 * Events are reported as they are found: when the scan fails half-way, the
 * callback has already seen the events before the error, so callers that
 * want all-or-nothing must collect first and act after JD_OK.
 */
jd_status jd_scan(jd_parser *p, const uint8_t *buf, size_t len, size_t capacity, jd_layout layout,
                  const char *key_field, const jd_members *members, jd_event_fn fn, void *user, jd_error *err);

const char *jd_status_str(jd_status st);

#ifdef __cplusplus
}
#endif
#endif /* ECF_EVENT_SCAN_H */
