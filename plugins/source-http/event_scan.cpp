/*
 * event_scan: the simdjson On-Demand half of the door check (see event_scan.h).
 *
 * On-Demand only validates what it visits, so every value of every event is
 * walked, by json_walk's walk (the validator's): skipping a value would let
 * `{"a": [1,,2], "session_id": "x"}` in. Numbers are checked against the
 * JSON grammar by hand rather than parsed, because a number too big for a
 * double is still valid JSON and must not be refused at the door.
 */
#include "event_scan.h"
#include "json_lexeme.hpp"
#include "json_walk.hpp"

#include <simdjson.h>

#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

static_assert(JD_PADDING == simdjson::SIMDJSON_PADDING, "JD_PADDING must match simdjson's padding");

namespace od = simdjson::ondemand;
using ecf_json::at_end;
using ecf_json::is_ws;
using ecf_json::scalar_token;
using ecf_json::short_message;
using ecf_json::valid_number;
using simdjson::error_code;

struct jd_parser {
    od::parser parser;
    uint32_t max_depth;
    std::vector<std::string_view> keys; /* for duplicate keys */
};

namespace
{

struct key_seen {
    jd_key_state state;
    std::string_view value;
};

struct scan_ctx {
    const uint8_t *buf;
    size_t len;
    std::string_view key_field;
    bool want_key;
    jd_event_fn fn;
    void *user;
    jd_error *err;
    uint32_t max_depth;
    uint32_t index;
    od::document *doc;
    const jd_members *members;
    tvj::walk w;     /* json_walk's state for the current document */
    tvj_error w_err; /* its errors and duplicates */
    key_seen ks;     /* of the object event being walked */
};

size_t trim_end(const uint8_t *buf, size_t begin, size_t end)
{
    while (end > begin && is_ws(buf[end - 1]))
        end--;
    return end;
}

size_t trim_start(const uint8_t *buf, size_t begin, size_t end)
{
    while (begin < end && is_ws(buf[begin]))
        begin++;
    return begin;
}

jd_status fail(scan_ctx &s, jd_status st, size_t offset, const char *msg)
{
    if (s.err) {
        s.err->offset = offset;
        snprintf(s.err->message, sizeof s.err->message, "%s", msg);
    }
    return st;
}

jd_status fail_at(scan_ctx &s, const char *where, const char *msg)
{
    return fail(s, JD_MALFORMED, (size_t)((const uint8_t *)where - s.buf), msg);
}

/* Where the iterator stands when simdjson reports an error; the end of the
 * buffer when it ran off the end. */
jd_status fail_doc(scan_ctx &s, error_code e, size_t doc_end)
{
    if (e == simdjson::MEMALLOC || e == simdjson::CAPACITY)
        return fail(s, JD_NOMEM, 0, "out of memory");
    const char *loc = nullptr;
    if (s.doc->current_location().get(loc) != simdjson::SUCCESS || loc == nullptr)
        return fail(s, JD_MALFORMED, doc_end, short_message(e));
    return fail_at(s, loc, short_message(e));
}

/* json_walk's verdict as the door's: a duplicate key is no body error
 * (the event carries it), everything else is. */
jd_status from_walk(scan_ctx &s, tvj_status st)
{
    switch (st) {
    case TVJ_OK:
    case TVJ_DUPLICATE: return JD_OK;
    case TVJ_TOO_DEEP: return fail(s, JD_TOO_DEEP, s.w_err.offset, s.w_err.message);
    case TVJ_NOMEM: return fail(s, JD_NOMEM, 0, "out of memory");
    case TVJ_INTERNAL: return fail(s, JD_INTERNAL, 0, s.w_err.message);
    default: return fail(s, JD_MALFORMED, s.w_err.offset, s.w_err.message);
    }
}

/* Each top-level member of an object event: the key field's first
 * occurrence (duplicate keys are legal JSON, of undefined meaning), then
 * the caller's consumer. */
void on_member(void *user, const tvj_member *m)
{
    scan_ctx &s = *static_cast<scan_ctx *>(user);
    if (s.want_key && s.ks.state == JD_KEY_MISSING && std::string_view(m->key, m->key_len) == s.key_field) {
        s.ks.state = m->type == TVJ_STRING ? JD_KEY_STRING : JD_KEY_NOT_STRING;
        if (m->type == TVJ_STRING)
            s.ks.value = std::string_view(m->str, m->str_len);
    }
    if (s.members && s.members->member)
        s.members->member(s.members->user, m);
}

/* The document starting at buf + begin and ending at `end` is walked next. */
void start_document(scan_ctx &s, od::document *doc, size_t end)
{
    s.doc = doc;
    s.w.doc = doc;
    s.w.len = end;
}

/* An object event, its members at depth+1. */
jd_status walk_event_object(scan_ctx &s, od::object obj, uint32_t depth, size_t begin)
{
    s.ks = key_seen{JD_KEY_MISSING, {}};
    s.w.duplicate = false;
    if (s.w.keys)
        s.w.keys->clear();
    if (s.members && s.members->begin)
        s.members->begin(s.members->user, s.index);
    bool consumer = s.members && s.members->member;
    s.w.only_key = consumer ? nullptr : &s.key_field; /* the key alone: cheaper */
    bool report_members = s.want_key || consumer;
    return from_walk(s, tvj::walk_members(s.w, obj, depth, begin, report_members ? on_member : nullptr, &s));
}

bool report(scan_ctx &s, size_t begin, size_t end, tvj_type type)
{
    bool is_object = type == TVJ_OBJECT;
    jd_event ev{};
    ev.index = s.index++;
    ev.offset = begin;
    ev.length = end - begin;
    ev.is_object = is_object;
    ev.key_state = (is_object && s.want_key) ? s.ks.state : JD_KEY_UNCHECKED;
    if (ev.key_state == JD_KEY_STRING) {
        ev.key = s.ks.value.data();
        ev.key_len = s.ks.value.size();
    }
    ev.walked = !is_object ? TVJ_NOT_OBJECT : s.w.duplicate ? TVJ_DUPLICATE : TVJ_OK;
    if (ev.walked == TVJ_DUPLICATE)
        s.w_err.offset -= begin; /* as if the event were parsed on its own */
    s.w_err.got = type;
    ev.walk_err = &s.w_err;
    return s.fn ? s.fn(s.user, &ev) : true;
}

/* One event that is an element of a top-level array. */
jd_status scan_element(scan_ctx &s, od::value v, size_t doc_end)
{
    std::string_view tok = v.raw_json_token();
    size_t begin = (size_t)((const uint8_t *)tok.data() - s.buf);
    od::json_type t;
    error_code e = v.type().get(t);
    if (e)
        return fail_doc(s, e, doc_end);
    jd_status st;
    if (t == od::json_type::object) {
        od::object obj;
        if ((e = v.get_object().get(obj)))
            return fail_doc(s, e, doc_end);
        st = walk_event_object(s, obj, 2, begin);
    } else {
        st = from_walk(s, tvj::walk_value(s.w, v, 2));
    }
    if (st != JD_OK)
        return st;
    size_t end;
    if (t == od::json_type::object || t == od::json_type::array) {
        /* The iterator now stands on the ',' or ']' after the element. */
        const char *loc = nullptr;
        if (s.doc->current_location().get(loc) || loc == nullptr)
            return fail(s, JD_MALFORMED, doc_end, "unterminated array");
        end = trim_end(s.buf, begin, (size_t)((const uint8_t *)loc - s.buf));
    } else {
        end = begin + scalar_token(tok).size();
    }
    return report(s, begin, end, tvj::type_of(t)) ? JD_OK : JD_STOPPED;
}

/* A scalar document (the whole body, or one NDJSON line), walked. */
jd_status scan_scalar(scan_ctx &s, od::document &doc, od::json_type t, size_t begin, size_t end)
{
    error_code e;
    switch (t) {
    case od::json_type::number: {
        std::string_view tok;
        if ((e = doc.raw_json_token().get(tok)))
            return fail_doc(s, e, end);
        std::string_view n = scalar_token(tok);
        if (!valid_number(n.data(), n.size()))
            return fail_at(s, tok.data(), "invalid number");
        size_t tok_end = (size_t)((const uint8_t *)n.data() - s.buf) + n.size();
        if (tok_end != end)
            return fail(s, JD_MALFORMED, trim_start(s.buf, tok_end, end), short_message(simdjson::TRAILING_CONTENT));
        return JD_OK; /* a number is never followed by anything at_end() sees */
    }
    case od::json_type::string: {
        std::string_view sv;
        if ((e = doc.get_string().get(sv)))
            return fail(s, JD_MALFORMED, begin, short_message(simdjson::STRING_ERROR));
        break;
    }
    case od::json_type::boolean: {
        bool b;
        if (!ecf_json::root_literal(doc) || doc.get_bool().get(b))
            return fail(s, JD_MALFORMED, begin, "invalid literal");
        break;
    }
    case od::json_type::null: {
        bool is_null = false;
        if (!ecf_json::root_literal(doc) || doc.is_null().get(is_null) || !is_null)
            return fail(s, JD_MALFORMED, begin, "invalid literal");
        break;
    }
    default: return fail(s, JD_MALFORMED, begin, "unexpected token");
    }
    if (!at_end(doc))
        return fail_doc(s, simdjson::TRAILING_CONTENT, end);
    return JD_OK;
}

/* One document: the whole body (JSON layout) or one NDJSON line. */
jd_status scan_document(scan_ctx &s, od::parser &parser, size_t begin, size_t end, size_t capacity, bool split_array)
{
    od::document doc;
    error_code e = parser.iterate(s.buf + begin, end - begin, capacity - begin).get(doc);
    if (e == simdjson::MEMALLOC || e == simdjson::CAPACITY)
        return fail(s, JD_NOMEM, begin, "out of memory");
    if (e)
        return fail(s, JD_MALFORMED, ecf_json::locate_stage1(s.buf, begin, end, e, begin), short_message(e));
    start_document(s, &doc, end);

    od::json_type t;
    if ((e = doc.type().get(t)))
        return fail_doc(s, e, end);
    jd_status st = JD_OK;
    switch (t) {
    case od::json_type::array: {
        od::array arr;
        if ((e = doc.get_array().get(arr)))
            return fail_doc(s, e, end);
        if (!split_array) { /* an array on an NDJSON line is one (non-object) event */
            if ((st = from_walk(s, tvj::walk_elements(s.w, arr, 1))) != JD_OK)
                return st;
            break;
        }
        for (auto res : arr) {
            od::value v;
            if ((e = std::move(res).get(v)))
                return fail_doc(s, e, end);
            if ((st = scan_element(s, v, end)) != JD_OK)
                return st;
        }
        break;
    }
    case od::json_type::object: {
        od::object obj;
        if ((e = doc.get_object().get(obj)))
            return fail_doc(s, e, end);
        if ((st = walk_event_object(s, obj, 1, begin)) != JD_OK)
            return st;
        break;
    }
    default:
        if ((st = scan_scalar(s, doc, t, begin, end)) != JD_OK)
            return st;
        return report(s, begin, end, tvj::type_of(t)) ? JD_OK : JD_STOPPED;
    }
    if (!at_end(doc))
        return fail_doc(s, simdjson::TRAILING_CONTENT, end);
    if (t == od::json_type::array && split_array)
        return JD_OK; /* each element was reported as it was found */
    return report(s, begin, end, tvj::type_of(t)) ? JD_OK : JD_STOPPED;
}

} // namespace

extern "C" {

jd_parser *jd_parser_new(uint32_t max_depth)
{
    jd_parser *p = new (std::nothrow) jd_parser;
    if (!p)
        return nullptr;
    p->max_depth = max_depth ? max_depth : 64;
    try {
        p->keys.reserve(64);
    } catch (...) {
        delete p;
        return nullptr;
    }
    return p;
}

void jd_parser_free(jd_parser *p) { delete p; }

size_t jd_parser_footprint(const jd_parser *p) { return p ? p->parser.capacity() : 0; }

jd_status jd_scan(jd_parser *p, const uint8_t *buf, size_t len, size_t capacity, jd_layout layout,
                  const char *key_field, const jd_members *members, jd_event_fn fn, void *user, jd_error *err)
{
    if (err) {
        err->offset = 0;
        err->message[0] = '\0';
    }
    if (!p || (!buf && len) || capacity < len + JD_PADDING)
        return JD_INTERNAL;
    scan_ctx s{};
    s.buf = buf;
    s.len = len;
    s.want_key = key_field != nullptr;
    s.key_field = key_field ? std::string_view(key_field) : std::string_view();
    s.fn = fn;
    s.user = user;
    s.err = err;
    s.max_depth = p->max_depth;
    s.members = members;
    s.w.buf = buf;
    s.w.err = &s.w_err;
    s.w.max_depth = p->max_depth;
    s.w.keys = members && members->duplicates ? &p->keys : nullptr;

    try {
        if (layout == JD_LAYOUT_JSON) {
            size_t b = trim_start(buf, 0, len), e = trim_end(buf, b, len);
            if (b == e)
                return fail(s, JD_EMPTY, 0, "empty body");
            return scan_document(s, p->parser, b, e, capacity, true);
        }
        size_t line = 0;
        while (line < len) {
            const void *nl = memchr(buf + line, '\n', len - line);
            size_t next = nl ? (size_t)((const uint8_t *)nl - buf) : len;
            size_t b = trim_start(buf, line, next), e = trim_end(buf, b, next);
            if (b < e) {
                jd_status st = scan_document(s, p->parser, b, e, capacity, false);
                if (st != JD_OK)
                    return st;
            }
            line = next + 1;
        }
        return s.index ? JD_OK : fail(s, JD_EMPTY, 0, "empty body");
    } catch (const std::bad_alloc &) {
        return fail(s, JD_NOMEM, 0, "out of memory");
    } catch (...) {
        return fail(s, JD_INTERNAL, 0, "internal error");
    }
}

const char *jd_status_str(jd_status st)
{
    switch (st) {
    case JD_OK: return "ok";
    case JD_EMPTY: return "empty";
    case JD_MALFORMED: return "malformed JSON";
    case JD_TOO_DEEP: return "nesting too deep";
    case JD_STOPPED: return "stopped";
    case JD_NOMEM: return "out of memory";
    case JD_INTERNAL: return "internal error";
    }
    return "unknown";
}

} // extern "C"
