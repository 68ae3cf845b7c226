/*
 * json_walk: the simdjson On-Demand half of transform-validate (see
 * json_walk.h).
 *
 * On-Demand validates only what it visits, so every value is visited: a
 * skipped value would let `{"a": [1,,2]}` through. Numbers are checked
 * against the JSON grammar by hand rather than parsed, because a number too
 * big for a double is still valid JSON; the caller decides what a number
 * means for its field (an int64, an exact decimal, a double).
 */
#include "json_walk.hpp"
#include "json_lexeme.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>
#include <vector>

static_assert(TVJ_PADDING == simdjson::SIMDJSON_PADDING, "TVJ_PADDING must match simdjson's padding");

namespace od = simdjson::ondemand;
using ecf_json::at_end;
using ecf_json::is_ws;
using ecf_json::scalar_token;
using ecf_json::short_message;
using ecf_json::valid_number;
using simdjson::error_code;

/* Keys of one object are compared pairwise up to this many; past it the
 * object's keys are sorted once it ends (n log n, no allocation). */
static constexpr size_t LINEAR_KEYS = 32;

struct tvj_walker {
    od::parser parser;
    uint32_t max_depth;
    std::vector<std::string_view> keys; /* keys of the objects being walked */
};

using walk_ctx = tvj::walk;

namespace
{

tvj_status fail(walk_ctx &c, tvj_status st, size_t offset, const char *msg)
{
    if (c.err) {
        c.err->offset = offset;
        snprintf(c.err->message, sizeof c.err->message, "%s", msg);
    }
    return st;
}

size_t offset_of(walk_ctx &c, const char *p) { return (size_t)((const uint8_t *)p - c.buf); }

/* Where the iterator stands when simdjson reports an error; the end of the
 * document when it ran off the end. */
tvj_status fail_doc(walk_ctx &c, error_code e)
{
    if (e == simdjson::MEMALLOC || e == simdjson::CAPACITY)
        return fail(c, TVJ_NOMEM, 0, "out of memory");
    const char *loc = nullptr;
    if (c.doc->current_location().get(loc) != simdjson::SUCCESS || loc == nullptr)
        return fail(c, TVJ_MALFORMED, c.len, short_message(e));
    return fail(c, TVJ_MALFORMED, offset_of(c, loc), short_message(e));
}

/* The end of a container just walked: the iterator stands on the next token. */
bool container_end(walk_ctx &c, const char *begin, const char **end)
{
    const char *loc = nullptr;
    if (c.doc->current_location().get(loc) || loc == nullptr)
        return false;
    while (loc > begin && is_ws((uint8_t)loc[-1]))
        loc--;
    *end = loc;
    return true;
}

/* The first duplicate is noted; the walk goes on, for syntax. */
void duplicate(walk_ctx &c, std::string_view k, size_t offset)
{
    if (c.duplicate)
        return;
    c.duplicate = true;
    if (c.err) {
        c.err->key = k.data();
        c.err->key_len = k.size();
    }
    fail(c, TVJ_DUPLICATE, offset, "duplicate key");
}

/* A 64-bit filter per object: keys whose length and end bytes differ
 * never reach a byte comparison. */
uint64_t key_bit(std::string_view k)
{
    size_t n = k.size();
    unsigned h = (unsigned)n * 7u + (n ? (uint8_t)k[0] * 3u + (uint8_t)k[n - 1] : 0u);
    return 1ull << (h & 63);
}

/* Before adding key k to the object whose keys start at `base`. */
bool seen_before(walk_ctx &c, size_t base, std::string_view k, uint64_t *filter)
{
    auto &keys = *c.keys;
    size_t n = keys.size() - base;
    if (n >= LINEAR_KEYS)
        return false; /* checked by sorting when the object ends */
    uint64_t bit = key_bit(k);
    if (!(*filter & bit)) {
        *filter |= bit;
        return false;
    }
    for (size_t i = base; i < keys.size(); i++)
        if (keys[i].size() == k.size() && memcmp(keys[i].data(), k.data(), k.size()) == 0)
            return true;
    return false;
}

/* Objects with many keys: one sort of their slice of the key stack. */
void check_sorted(walk_ctx &c, size_t base, size_t obj_offset)
{
    auto &keys = *c.keys;
    if (keys.size() - base > LINEAR_KEYS) {
        std::sort(keys.begin() + (ptrdiff_t)base, keys.end());
        for (size_t i = base + 1; i < keys.size(); i++)
            if (keys[i] == keys[i - 1])
                duplicate(c, keys[i], obj_offset);
    }
    keys.resize(base);
}

tvj_status walk_scalar_or_container(walk_ctx &c, od::value v, uint32_t depth, tvj_member *m);

tvj_status walk_object(walk_ctx &c, od::object obj, uint32_t depth, size_t obj_offset)
{
    return tvj::walk_members(c, obj, depth, obj_offset, nullptr, nullptr);
}

} // namespace

tvj_status tvj::walk_elements(walk &c, od::array arr, uint32_t depth)
{
    for (auto res : arr) {
        od::value v;
        error_code e = std::move(res).get(v);
        if (e)
            return fail_doc(c, e);
        tvj_status st = tvj::walk_value(c, v, depth + 1);
        if (st != TVJ_OK)
            return st;
    }
    return TVJ_OK;
}

namespace
{

/* Walks v (at nesting `depth` if it is a container) and fills what a member
 * report needs: type, unescaped string, bool, raw text. */
tvj_status walk_scalar_or_container(walk_ctx &c, od::value v, uint32_t depth, tvj_member *m)
{
    std::string_view tok = v.raw_json_token();
    od::json_type t;
    error_code e = v.type().get(t);
    if (e)
        return fail_doc(c, e);
    const char *begin = tok.data();
    switch (t) {
    case od::json_type::object:
    case od::json_type::array: {
        if (depth > c.max_depth)
            return fail(c, TVJ_TOO_DEEP, offset_of(c, begin), "nesting too deep");
        tvj_status st;
        if (t == od::json_type::object) {
            od::object obj;
            if ((e = v.get_object().get(obj)))
                return fail_doc(c, e);
            st = walk_object(c, obj, depth, offset_of(c, begin));
        } else {
            od::array arr;
            if ((e = v.get_array().get(arr)))
                return fail_doc(c, e);
            st = tvj::walk_elements(c, arr, depth);
        }
        if (st != TVJ_OK || !m)
            return st;
        const char *end;
        if (!container_end(c, begin, &end))
            return fail(c, TVJ_MALFORMED, c.len, "unterminated object");
        m->type = t == od::json_type::object ? TVJ_OBJECT : TVJ_ARRAY;
        m->raw = begin;
        m->raw_len = (size_t)(end - begin);
        return TVJ_OK;
    }
    case od::json_type::string: {
        std::string_view sv;
        if ((e = v.get_string().get(sv)))
            return fail(c, TVJ_MALFORMED, offset_of(c, begin), short_message(simdjson::STRING_ERROR));
        if (m) {
            m->type = TVJ_STRING;
            m->str = sv.data();
            m->str_len = sv.size();
        }
        break;
    }
    case od::json_type::number: {
        std::string_view n = scalar_token(tok);
        if (!valid_number(n.data(), n.size()))
            return fail(c, TVJ_MALFORMED, offset_of(c, begin), "invalid number");
        if (m)
            m->type = TVJ_NUMBER;
        break; /* left unconsumed: the parent iterator steps over it */
    }
    case od::json_type::boolean: {
        bool b;
        if (v.get_bool().get(b))
            return fail(c, TVJ_MALFORMED, offset_of(c, begin), "invalid literal");
        if (m) {
            m->type = TVJ_BOOL;
            m->boolean = b;
        }
        break;
    }
    case od::json_type::null: {
        bool is_null = false;
        if (v.is_null().get(is_null) || !is_null)
            return fail(c, TVJ_MALFORMED, offset_of(c, begin), "invalid literal");
        if (m)
            m->type = TVJ_NULL;
        break;
    }
    default: return fail(c, TVJ_MALFORMED, offset_of(c, begin), "unexpected token");
    }
    if (m) {
        std::string_view raw = scalar_token(tok);
        m->raw = raw.data();
        m->raw_len = raw.size();
    }
    return TVJ_OK;
}

/* A top-level value that is not an object: still walked, so that malformed
 * JSON is reported as such rather than as "not an object". */
tvj_status walk_non_object(walk_ctx &c, od::document &doc, od::json_type t)
{
    error_code e;
    switch (t) {
    case od::json_type::array: {
        od::array arr;
        if ((e = doc.get_array().get(arr)))
            return fail_doc(c, e);
        if (1 > c.max_depth)
            return fail(c, TVJ_TOO_DEEP, 0, "nesting too deep");
        tvj_status st = tvj::walk_elements(c, arr, 1);
        if (st != TVJ_OK)
            return st;
        break;
    }
    case od::json_type::number: {
        std::string_view tok;
        if ((e = doc.raw_json_token().get(tok)))
            return fail_doc(c, e);
        std::string_view n = scalar_token(tok);
        if (!valid_number(n.data(), n.size()))
            return fail(c, TVJ_MALFORMED, offset_of(c, tok.data()), "invalid number");
        if ((size_t)(n.data() + n.size() - (const char *)c.buf) < c.len) {
            size_t at = offset_of(c, n.data() + n.size());
            while (at < c.len && is_ws(c.buf[at]))
                at++;
            if (at < c.len)
                return fail(c, TVJ_MALFORMED, at, short_message(simdjson::TRAILING_CONTENT));
        }
        return TVJ_OK;
    }
    case od::json_type::string: {
        std::string_view sv;
        if ((e = doc.get_string().get(sv)))
            return fail(c, TVJ_MALFORMED, 0, short_message(simdjson::STRING_ERROR));
        break;
    }
    case od::json_type::boolean: {
        bool b;
        if (!ecf_json::root_literal(doc) || doc.get_bool().get(b))
            return fail(c, TVJ_MALFORMED, 0, "invalid literal");
        break;
    }
    case od::json_type::null: {
        bool is_null = false;
        if (!ecf_json::root_literal(doc) || doc.is_null().get(is_null) || !is_null)
            return fail(c, TVJ_MALFORMED, 0, "invalid literal");
        break;
    }
    default: return fail(c, TVJ_MALFORMED, 0, "unexpected token");
    }
    if (!at_end(doc))
        return fail_doc(c, simdjson::TRAILING_CONTENT);
    return TVJ_OK;
}

tvj_status walk_document(walk_ctx &c, od::parser &parser, size_t capacity, tvj_member_fn fn, void *user)
{
    size_t b = 0;
    while (b < c.len && is_ws(c.buf[b]))
        b++;
    if (b == c.len)
        return fail(c, TVJ_EMPTY, 0, "empty message");

    od::document doc;
    error_code e = parser.iterate((const char *)c.buf, c.len, capacity).get(doc);
    if (e == simdjson::MEMALLOC || e == simdjson::CAPACITY)
        return fail(c, TVJ_NOMEM, 0, "out of memory");
    if (e)
        return fail(c, TVJ_MALFORMED, ecf_json::locate_stage1(c.buf, 0, c.len, e, c.len), short_message(e));
    c.doc = &doc;

    od::json_type t;
    if ((e = doc.type().get(t)))
        return fail_doc(c, e);
    if (t != od::json_type::object) {
        tvj_status st = walk_non_object(c, doc, t);
        if (st != TVJ_OK)
            return st;
        if (c.err)
            c.err->got = tvj::type_of(t);
        return fail(c, TVJ_NOT_OBJECT, b, "not an object");
    }
    od::object obj;
    if ((e = doc.get_object().get(obj)))
        return fail_doc(c, e);
    if (1 > c.max_depth)
        return fail(c, TVJ_TOO_DEEP, b, "nesting too deep");

    c.keys->clear();
    tvj_status st = tvj::walk_members(c, obj, 1, b, fn, user);
    if (st != TVJ_OK)
        return st;
    if (c.duplicate)
        return TVJ_DUPLICATE; /* the rest was walked: it is JSON */
    if (!at_end(doc))
        return fail_doc(c, simdjson::TRAILING_CONTENT);
    return TVJ_OK;
}

} // namespace

namespace tvj
{

tvj_type type_of(od::json_type t)
{
    switch (t) {
    case od::json_type::object: return TVJ_OBJECT;
    case od::json_type::array: return TVJ_ARRAY;
    case od::json_type::string: return TVJ_STRING;
    case od::json_type::number: return TVJ_NUMBER;
    case od::json_type::boolean: return TVJ_BOOL;
    case od::json_type::null: return TVJ_NULL;
    }
    return TVJ_NULL;
}

tvj_status walk_value(walk &c, od::value v, uint32_t depth) { return walk_scalar_or_container(c, v, depth, nullptr); }

tvj_status walk_members(walk &c, od::object obj, uint32_t depth, size_t obj_offset, tvj_member_fn fn, void *user)
{
    size_t base = c.keys ? c.keys->size() : 0;
    uint64_t filter = 0;
    for (auto res : obj) {
        od::field f;
        error_code e = std::move(res).get(f);
        if (e)
            return fail_doc(c, e);
        const char *kpos = f.key().raw() - 1; /* the opening quote */
        std::string_view k;
        if ((e = f.unescaped_key().get(k)))
            return fail(c, TVJ_MALFORMED, offset_of(c, kpos), short_message(e));
        if (c.keys) {
            if (seen_before(c, base, k, &filter))
                duplicate(c, k, offset_of(c, kpos));
            c.keys->push_back(k);
        }
        bool report = fn && !c.duplicate && (!c.only_key || k == *c.only_key);
        if (!report) {
            tvj_status st = walk_scalar_or_container(c, f.value(), depth + 1, nullptr);
            if (st != TVJ_OK)
                return st;
            continue;
        }
        tvj_member m{};
        m.key = k.data();
        m.key_len = k.size();
        tvj_status st = walk_scalar_or_container(c, f.value(), depth + 1, &m);
        if (st != TVJ_OK)
            return st;
        if (c.duplicate)
            continue;
        m.member_offset = offset_of(c, kpos);
        m.member_len = (size_t)(m.raw + m.raw_len - kpos);
        fn(user, &m);
    }
    if (c.keys)
        check_sorted(c, base, obj_offset);
    return TVJ_OK;
}

} // namespace tvj

extern "C" {

tvj_walker *tvj_walker_new(uint32_t max_depth)
{
    tvj_walker *w = new (std::nothrow) tvj_walker;
    if (!w)
        return nullptr;
    w->max_depth = max_depth ? max_depth : 64;
    try {
        w->keys.reserve(64);
    } catch (...) {
        delete w;
        return nullptr;
    }
    return w;
}

void tvj_walker_free(tvj_walker *w) { delete w; }

size_t tvj_walker_footprint(const tvj_walker *w) { return w ? w->parser.capacity() : 0; }

tvj_status tvj_walk(tvj_walker *w, const uint8_t *buf, size_t len, size_t capacity, tvj_member_fn fn, void *user,
                    tvj_error *err)
{
    if (err) {
        err->offset = 0;
        err->message[0] = '\0';
        err->key = nullptr;
        err->key_len = 0;
        err->got = TVJ_NULL;
    }
    walk_ctx c{};
    c.buf = buf;
    c.len = len;
    c.err = err;
    if (!w || (!buf && len) || capacity < len + TVJ_PADDING)
        return fail(c, TVJ_INTERNAL, 0, "bad arguments");
    if (!buf)
        return fail(c, TVJ_EMPTY, 0, "empty message");
    c.max_depth = w->max_depth;
    c.keys = &w->keys;
    try {
        return walk_document(c, w->parser, capacity, fn, user);
    } catch (const std::bad_alloc &) {
        return fail(c, TVJ_NOMEM, 0, "out of memory");
    } catch (...) {
        return fail(c, TVJ_INTERNAL, 0, "internal error");
    }
}

const char *tvj_type_name(tvj_type t)
{
    switch (t) {
    case TVJ_NULL: return "null";
    case TVJ_BOOL: return "bool";
    case TVJ_NUMBER: return "number";
    case TVJ_STRING: return "string";
    case TVJ_OBJECT: return "object";
    case TVJ_ARRAY: return "array";
    }
    return "value";
}

} // extern "C"
