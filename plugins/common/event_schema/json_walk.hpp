/*
 * json_walk, C++ face: the walk itself, for a caller that holds its own
 * simdjson On-Demand document (the HTTP door, which splits a body into
 * events and walks each event once, reporting its members to the validator
 * as it goes; see plugins/source-http/event_scan.cpp). tvj_walk() is this
 * walk over one whole document.
 */
#ifndef ECF_TV_JSON_WALK_HPP
#define ECF_TV_JSON_WALK_HPP

#include "json_walk.h"

#include <simdjson.h>

#include <string_view>
#include <vector>

namespace tvj
{

/* One walk's state. Offsets in errors and members are relative to buf. */
struct walk {
    const uint8_t *buf;
    size_t len; /* where "ran off the end" errors point */
    tvj_error *err;
    uint32_t max_depth;
    simdjson::ondemand::document *doc;
    /* Keys of the objects being walked, for duplicate keys; nullptr: not
     * looked for. A duplicate does not stop the walk (the rest must still
     * be valid JSON): the first is noted in err and `duplicate` is set, and
     * no member is reported after it. */
    std::vector<std::string_view> *keys;
    bool duplicate;
    /* When set, walk_members reports only the members with this key: the
     * others are walked without the work a report takes. */
    const std::string_view *only_key;
};

tvj_type type_of(simdjson::ondemand::json_type t);

/* Walks v, a container at nesting `depth`. */
tvj_status walk_value(walk &c, simdjson::ondemand::value v, uint32_t depth);

/* Walks the array arr (at nesting `depth`): each element at depth+1. */
tvj_status walk_elements(walk &c, simdjson::ondemand::array arr, uint32_t depth);

/* Walks the object obj (at nesting `depth`; it starts at byte obj_offset)
 * and reports each member to fn (when not null) once its value is walked. */
tvj_status walk_members(walk &c, simdjson::ondemand::object obj, uint32_t depth, size_t obj_offset, tvj_member_fn fn,
                        void *user);

} // namespace tvj

#endif /* ECF_TV_JSON_WALK_HPP */
