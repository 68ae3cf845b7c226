/*
 * Validation, table-driven: each row is an event, the verdict, and what the
 * record must hold (substrings of the rendered row, the exact extras text)
 * or what the reason must say. The rule schema below has a field for every
 * type and rule; the shipped schema is checked against generator-style
 * events at the end. Then: rows are committed only when valid, exported
 * arrays are sound Arrow, column sets come back to their pool from any
 * thread, and dead-letter envelopes carry the bytes exactly.
 */
#include "arrow_rows.h"
#include "columns.h"
#include "dead_letter.h"
#include "json_walk.h"
#include "schema.h"
#include "validate.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <string.h>

static const char rules_yaml[] = "schema: rules\n"
                                 "version: 3\n"
                                 "event_time: ts\n"
                                 "fields:\n"
                                 "  s:     {type: string, required: true}\n"
                                 "  e:     {type: string, enum: [a, b, \"c d\"]}\n"
                                 "  r:     {type: string, regex: \"[A-Z]{3}\"}\n"
                                 "  len:   {type: string, min_length: 2, max_length: 4}\n"
                                 "  i:     {type: int, min: -5, max: 100}\n"
                                 "  big:   {type: int}\n"
                                 "  f:     {type: float, min: -1.5, max: 1e10}\n"
                                 "  b:     {type: bool}\n"
                                 "  d:     {type: \"decimal(12,2)\", min: \"-10.50\", max: \"9999999999.99\"}\n"
                                 "  d0:    {type: \"decimal(5,0)\"}\n"
                                 "  d38:\n    type: decimal(38,10)\n"
                                 "  ts:    {type: timestamp, required: true}\n"
                                 "  later: {type: timestamp, max_future: none, min: \"2000-01-01T00:00:00Z\"}\n"
                                 "  soon:  {type: timestamp, max_future: 10s}\n";

#define NOW_US (INT64_C(1709251200) * 1000000) /* 2024-03-01T00:00:00Z */
#define INGEST_US (NOW_US + 5000000)
#define MAX_DEPTH 16

typedef struct {
    const char *name;
    const char *json;
    gssize len;          /* -1 = strlen */
    const char *verdict; /* "valid" or a reason class */
    const char *want[4]; /* valid: substrings of the row; else: of the reason */
    const char *extras;  /* valid: the exact extras text, or NULL */
    const char *field;   /* invalid: the field named, or NULL */
} vcase;

#define TS "\"ts\":\"2024-03-01T00:00:00Z\""
#define BASE "\"s\":\"x\"," TS
#define EV(body) "{" BASE "," body "}"

static const vcase cases[] = {
    /* ---------------------------------------------------------- valid */
    {"minimal",
     "{" BASE "}",
     -1,
     "valid",
     {"\"s\":\"x\"", "\"e\":null", "\"ts\":\"2024-03-01T00:00:00.000000Z\"", "\"event_date\":\"2024-03-01\""},
     "{}"},
    {"ingest-time-is-the-message's", "{" BASE "}", -1, "valid", {"\"ingest_time\":\"2024-03-01T00:00:05.000000Z\""}},
    {"fields-in-any-order", "{" TS ",\"i\":7,\"s\":\"x\"}", -1, "valid", {"\"i\":7"}, "{}"},
    {"whitespace-everywhere", " \r\n\t{ \"s\" : \"x\" ,\n " TS " \t}\n ", -1, "valid", {"\"s\":\"x\""}, "{}"},
    {"optional-null-is-null",
     EV("\"e\":null,\"i\":null,\"d\":null,\"b\":null"),
     -1,
     "valid",
     {"\"e\":null", "\"i\":null", "\"d\":null", "\"b\":null"}},
    {"unicode-string",
     "{\"s\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x98\x80\"," TS "}",
     -1,
     "valid",
     {"\"s\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x98\x80\""}},
    {"escapes-are-unescaped",
     "{\"s\":\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\"," TS "}",
     -1,
     "valid",
     {"\"s\":\"a\\\"b\\\\c/d\\n\xc3\xa9\xf0\x9f\x98\x80\""}},
    {"escaped-nul-is-kept", "{\"s\":\"a\\u0000b\"," TS "}", -1, "valid", {"\"s\":\"a\\u0000b\""}},
    {"empty-string-without-min-length", "{\"s\":\"\"," TS "}", -1, "valid", {"\"s\":\"\""}},
    {"escaped-key-names-a-field", "{\"\\u0073\":\"x\"," TS "}", -1, "valid", {"\"s\":\"x\""}, "{}"},
    {"enum-value-with-space", EV("\"e\":\"c d\""), -1, "valid", {"\"e\":\"c d\""}},
    {"regex-matches-whole-value", EV("\"r\":\"ABC\""), -1, "valid", {"\"r\":\"ABC\""}},
    {"length-counts-characters-not-bytes",
     EV("\"len\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x98\x80\""),
     -1,
     "valid",
     {"\"len\":\"\xe6\x97\xa5"}},
    {"length-at-min", EV("\"len\":\"ab\""), -1, "valid", {"\"len\":\"ab\""}},
    {"int-bounds-inclusive", EV("\"i\":-5"), -1, "valid", {"\"i\":-5"}},
    {"int-at-max", EV("\"i\":100"), -1, "valid", {"\"i\":100"}},
    {"int-negative-zero", EV("\"i\":-0"), -1, "valid", {"\"i\":0"}},
    {"int64-max", EV("\"big\":9223372036854775807"), -1, "valid", {"\"big\":9223372036854775807"}},
    {"int64-min", EV("\"big\":-9223372036854775808"), -1, "valid", {"\"big\":-9223372036854775808"}},
    {"float-shortest", EV("\"f\":0.1"), -1, "valid", {"\"f\":0.10000000000000001"}},
    {"float-from-integer-token", EV("\"f\":3"), -1, "valid", {"\"f\":3"}},
    {"float-exponent-at-max", EV("\"f\":1e10"), -1, "valid", {"\"f\":10000000000"}},
    {"float-underflow-is-zero", EV("\"f\":1e-400"), -1, "valid", {"\"f\":0"}},
    {"bool-true-false", EV("\"b\":false"), -1, "valid", {"\"b\":false"}},
    {"decimal-exact", EV("\"d\":12.34"), -1, "valid", {"\"d\":\"12.34\""}},
    {"decimal-short-fraction-scales-up", EV("\"d\":12.3"), -1, "valid", {"\"d\":\"12.30\""}},
    {"decimal-integer-token", EV("\"d\":12"), -1, "valid", {"\"d\":\"12.00\""}},
    {"decimal-trailing-zeros-are-exact", EV("\"d\":12.3400000"), -1, "valid", {"\"d\":\"12.34\""}},
    {"decimal-exponent", EV("\"d\":1.5e2"), -1, "valid", {"\"d\":\"150.00\""}},
    {"decimal-negative-exponent", EV("\"d\":1234E-2"), -1, "valid", {"\"d\":\"12.34\""}},
    {"decimal-at-min", EV("\"d\":-10.50"), -1, "valid", {"\"d\":\"-10.50\""}},
    {"decimal-at-max", EV("\"d\":9999999999.99"), -1, "valid", {"\"d\":\"9999999999.99\""}},
    {"decimal-negative-zero", EV("\"d\":-0.0"), -1, "valid", {"\"d\":\"0.00\""}},
    {"decimal-zero-huge-exponent", EV("\"d\":0e-400"), -1, "valid", {"\"d\":\"0.00\""}},
    {"decimal-scale-0", EV("\"d0\":99999"), -1, "valid", {"\"d0\":\"99999\""}},
    {"decimal-scale-0-from-fraction-zero", EV("\"d0\":1.0"), -1, "valid", {"\"d0\":\"1\""}},
    {"decimal-38-digits",
     EV("\"d38\":1234567890123456789012345678.1234567890"),
     -1,
     "valid",
     {"\"d38\":\"1234567890123456789012345678.1234567890\""}},
    {"decimal-38-negative",
     EV("\"d38\":-9999999999999999999999999999.9999999999"),
     -1,
     "valid",
     {"\"d38\":\"-9999999999999999999999999999.9999999999\""}},
    {"timestamp-offset-to-utc",
     "{\"s\":\"x\",\"ts\":\"2024-03-01T01:00:00+02:00\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T23:00:00.000000Z\"", "\"event_date\":\"2024-02-29\""}},
    {"timestamp-negative-offset",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T18:30:00-05:30\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-03-01T00:00:00.000000Z\""}},
    {"timestamp-compact-offset",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T23:30:00+0530\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T18:00:00.000000Z\""}},
    {"timestamp-hour-offset",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T23:30:00+05\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T18:30:00.000000Z\""}},
    {"timestamp-lower-case-and-space",
     "{\"s\":\"x\",\"ts\":\"2024-02-29 12:00:00z\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T12:00:00.000000Z\""}},
    {"timestamp-minus-zero-offset",
     "{\"s\":\"x\",\"ts\":\"2024-02-29t12:00:00-00:00\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T12:00:00.000000Z\""}},
    {"timestamp-millis",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T12:00:00.067Z\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T12:00:00.067000Z\""}},
    {"timestamp-nanos-truncate",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T12:00:00.123456789Z\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T12:00:00.123456Z\""}},
    {"timestamp-one-fraction-digit",
     "{\"s\":\"x\",\"ts\":\"2024-02-29T12:00:00.5Z\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-02-29T12:00:00.500000Z\""}},
    {"leap-day-2000", "{\"s\":\"x\",\"ts\":\"2000-02-29T00:00:00Z\"}", -1, "valid", {"\"event_date\":\"2000-02-29\""}},
    {"before-epoch-date-floors",
     "{\"s\":\"x\",\"ts\":\"1969-12-31T23:59:59.999999Z\"}",
     -1,
     "valid",
     {"\"event_date\":\"1969-12-31\"", "\"ts\":\"1969-12-31T23:59:59.999999Z\""}},
    {"year-one", "{\"s\":\"x\",\"ts\":\"0001-01-01T00:00:00Z\"}", -1, "valid", {"\"event_date\":\"0001-01-01\""}},
    {"far-future-allowed-without-max-future",
     EV("\"later\":\"9999-12-31T23:59:59Z\""),
     -1,
     "valid",
     {"\"later\":\"9999-12-31T23:59:59.000000Z\""}},
    {"within-max-future", "{\"s\":\"x\",\"ts\":\"2024-03-01T01:00:00Z\"}", -1, "valid", {"\"s\":\"x\""}},
    {"within-field-max-future", EV("\"soon\":\"2024-03-01T00:00:10Z\""), -1, "valid", {"\"soon\":\"2024"}},
    {"escaped-timestamp",
     "{\"s\":\"x\",\"ts\":\"2024\\u002d03-01T00:00:00Z\"}",
     -1,
     "valid",
     {"\"ts\":\"2024-03-01T00:00:00.000000Z\""}},

    /* extras: unknown members, verbatim, in order */
    {"extras-verbatim",
     "{\"s\":\"x\",\"zz\" : [1, {\"a\":null}]," TS ",\"n\":1.50,\"h\":123456789012345678901234567890}",
     -1,
     "valid",
     {"\"s\":\"x\""},
     "{\"zz\" : [1, {\"a\":null}],\"n\":1.50,\"h\":123456789012345678901234567890}"},
    {"extras-keep-escapes",
     EV("\"k\\u00e9\":\"\\u00e9\\n\",\"t\":true,\"z\":null"),
     -1,
     "valid",
     {"\"s\":\"x\""},
     "{\"k\\u00e9\":\"\\u00e9\\n\",\"t\":true,\"z\":null}"},
    {"extras-nested-object",
     EV("\"ctx\":{\"ua\":\"Mozilla\",\"ab\":[\"x\",\"y\"],\"deep\":{\"n\":-1e-3}}"),
     -1,
     "valid",
     {"\"s\":\"x\""},
     "{\"ctx\":{\"ua\":\"Mozilla\",\"ab\":[\"x\",\"y\"],\"deep\":{\"n\":-1e-3}}}"},
    {"extras-unicode-key",
     EV("\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\""),
     -1,
     "valid",
     {"\"s\":\"x\""},
     "{\"\xc3\xa9t\xc3\xa9\":\"\xe2\x82\xac\"}"},
    {"extras-empty-containers", EV("\"o\":{},\"a\":[]"), -1, "valid", {"\"s\":\"x\""}, "{\"o\":{},\"a\":[]}"},
    {"extras-case-differs-from-field", EV("\"S\":\"upper\""), -1, "valid", {"\"s\":\"x\""}, "{\"S\":\"upper\"}"},
    {"nesting-at-limit", EV("\"d15\":[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]"), -1, "valid", {"\"s\":\"x\""}},
    {"same-key-in-sibling-objects",
     EV("\"p\":{\"a\":1},\"q\":{\"a\":2}"),
     -1,
     "valid",
     {"\"s\":\"x\""},
     "{\"p\":{\"a\":1},\"q\":{\"a\":2}}"},

    /* ---------------------------------------------------------- syntax */
    {"empty", "", -1, "syntax", {"empty message"}},
    {"only-whitespace", "  \n\t", -1, "syntax", {"empty message"}},
    {"truncated", "{\"s\":\"x\",\"ts\":\"2024-03-01T0", -1, "syntax", {"malformed JSON"}},
    {"unclosed-object", "{\"s\":\"x\"", -1, "syntax", {"malformed JSON"}},
    {"trailing-comma", "{\"s\":\"x\",}", -1, "syntax", {"malformed JSON"}},
    /* simdjson's root getters alone take these (found by fuzz_http_body) */
    {"root-null-with-junk", "null* ", -1, "syntax", {"invalid literal"}},
    {"root-false-with-junk", "false#", -1, "syntax", {"invalid literal"}},
    {"single-quotes", "{\"s\":'x'}", -1, "syntax", {"malformed JSON"}},
    {"trailing-content", "{" BASE "} {}", -1, "syntax", {"malformed JSON"}},
    {"two-objects-on-lines", "{" BASE "}\n{" BASE "}", -1, "syntax", {"malformed JSON"}},
    {"hole-in-extras-array", EV("\"a\":[1,,2]"), -1, "syntax", {"malformed JSON"}},
    {"leading-zero", EV("\"i\":01"), -1, "syntax", {"malformed JSON"}},
    {"dot-without-digits", EV("\"i\":1."), -1, "syntax", {"invalid number"}},
    {"plus-sign", EV("\"i\":+1"), -1, "syntax", {"malformed JSON"}},
    {"nan", EV("\"f\":NaN"), -1, "syntax", {"malformed JSON"}},
    {"infinity", EV("\"f\":Infinity"), -1, "syntax", {"malformed JSON"}},
    {"bad-escape", EV("\"q\":\"\\x\""), -1, "syntax", {"malformed JSON"}},
    {"lone-surrogate", EV("\"q\":\"\\ud800\""), -1, "syntax", {"malformed JSON"}},
    {"invalid-utf8", EV("\"q\":\"\xff\xfe\""), -1, "syntax", {"invalid UTF-8"}},
    {"overlong-utf8", EV("\"q\":\"\xc0\xaf\""), -1, "syntax", {"invalid UTF-8"}},
    {"raw-newline-in-string", EV("\"q\":\"a\nb\""), -1, "syntax", {"malformed JSON"}},
    {"nul-byte-outside-string", "{" BASE "}\0", 38, "syntax", {"malformed JSON"}},
    {"bad-literal", EV("\"b\":tru"), -1, "syntax", {"malformed JSON"}},
    {"key-not-a-string", "{s:\"x\"}", -1, "syntax", {"malformed JSON"}},
    {"syntax-wins-over-type", "{\"i\":\"str\",\"a\":[1,,2]}", -1, "syntax", {"malformed JSON"}},
    {"syntax-wins-over-missing", "{\"a\":tru}", -1, "syntax", {"malformed JSON"}},

    /* ---------------------------------------------------------- structure */
    {"array-at-top", "[{" BASE "}]", -1, "not_object", {"expected a JSON object, got an array"}},
    {"string-at-top", "\"x\"", -1, "not_object", {"got string"}},
    {"number-at-top", "42", -1, "not_object", {"got number"}},
    {"null-at-top", "null", -1, "not_object", {"got null"}},
    {"too-deep", EV("\"d16\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]"), -1, "depth", {"nesting deeper than 16 levels"}},
    {"very-deep",
     EV("\"d\":"
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["),
     -1,
     "depth",
     {"nesting deeper"}},
    {"duplicate-field", "{\"s\":\"x\",\"s\":\"y\"," TS "}", -1, "duplicate", {"duplicate key \"s\""}, NULL, "s"},
    {"duplicate-via-escape",
     "{\"s\":\"x\",\"\\u0073\":\"y\"," TS "}",
     -1,
     "duplicate",
     {"duplicate key \"s\""},
     NULL,
     "s"},
    {"duplicate-unknown-key", EV("\"z\":1,\"z\":1"), -1, "duplicate", {"duplicate key \"z\""}},
    {"duplicate-nested", EV("\"o\":{\"a\":1,\"b\":{\"c\":1,\"c\":2}}"), -1, "duplicate", {"duplicate key \"c\""}},
    {"duplicate-after-type-error", "{\"i\":\"x\",\"s\":\"x\",\"s\":\"y\"}", -1, "duplicate", {"duplicate key"}},

    /* ---------------------------------------------------------- required */
    {"required-missing", "{" TS "}", -1, "required", {"field 's': required but missing"}, NULL, "s"},
    {"required-null", "{\"s\":null," TS "}", -1, "required", {"field 's': required but null"}, NULL, "s"},
    {"required-timestamp-missing", "{\"s\":\"x\"}", -1, "required", {"field 'ts': required but missing"}, NULL, "ts"},
    {"renamed-field-is-missing", "{\"s_\":\"x\"," TS "}", -1, "required", {"field 's'"}, NULL, "s"},
    {"rule-error-before-missing", "{\"i\":\"x\"}", -1, "type", {"field 'i'"}, NULL, "i"},

    /* ---------------------------------------------------------- type */
    {"string-got-number", "{\"s\":5," TS "}", -1, "type", {"field 's': expected string, got number 5"}, NULL, "s"},
    {"string-got-object", "{\"s\":{\"a\":1}," TS "}", -1, "type", {"expected string, got an object"}, NULL, "s"},
    {"string-got-array", "{\"s\":[\"x\"]," TS "}", -1, "type", {"expected string, got an array"}, NULL, "s"},
    {"string-got-bool", "{\"s\":true," TS "}", -1, "type", {"expected string, got true"}, NULL, "s"},
    {"int-got-string", EV("\"i\":\"5\""), -1, "type", {"field 'i': expected int, got string \"5\""}, NULL, "i"},
    {"int-got-fraction",
     EV("\"i\":2.5"),
     -1,
     "type",
     {"expected int, got number 2.5 (an int has no fraction or exponent)"},
     NULL,
     "i"},
    {"int-got-fraction-zero", EV("\"i\":2.0"), -1, "type", {"expected int, got number 2.0"}, NULL, "i"},
    {"int-got-exponent", EV("\"i\":1e2"), -1, "type", {"got number 1e2"}, NULL, "i"},
    {"int-got-bool", EV("\"i\":true"), -1, "type", {"expected int, got true"}, NULL, "i"},
    {"decimal-got-string",
     EV("\"d\":\"abc\""),
     -1,
     "type",
     {"field 'd': expected decimal(12,2), got string \"abc\""},
     NULL,
     "d"},
    {"decimal-got-numeric-string", EV("\"d\":\"12.34\""), -1, "type", {"got string \"12.34\""}, NULL, "d"},
    {"float-got-string", EV("\"f\":\"1.5\""), -1, "type", {"expected float"}, NULL, "f"},
    {"bool-got-string", EV("\"b\":\"true\""), -1, "type", {"expected bool, got string \"true\""}, NULL, "b"},
    {"bool-got-number", EV("\"b\":1"), -1, "type", {"expected bool, got number 1"}, NULL, "b"},
    {"timestamp-got-epoch-number",
     "{\"s\":\"x\",\"ts\":1709251200}",
     -1,
     "type",
     {"expected timestamp (ISO 8601 string), got number 1709251200"},
     NULL,
     "ts"},
    {"enum-got-number", EV("\"e\":1"), -1, "type", {"expected string"}, NULL, "e"},
    {"long-value-is-cut-in-reason",
     EV("\"i\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""),
     -1,
     "type",
     {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xe2\x80\xa6\""},
     NULL,
     "i"},
    {"control-chars-escaped-in-reason", EV("\"i\":\"a\\u0001\\\"b\""), -1, "type", {"\"a\\u0001\\\"b\""}, NULL, "i"},
    {"first-rule-error-in-document-order", "{\"i\":\"x\",\"s\":5," TS "}", -1, "type", {"field 'i'"}, NULL, "i"},

    /* ---------------------------------------------------------- timestamps */
    {"timestamp-without-zone",
     "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00:00\"}",
     -1,
     "format",
     {"has no zone"},
     NULL,
     "ts"},
    {"timestamp-without-zone-fraction",
     "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00:00.123\"}",
     -1,
     "format",
     {"has no zone"},
     NULL,
     "ts"},
    {"date-only", "{\"s\":\"x\",\"ts\":\"2024-03-01\"}", -1, "format", {"is not an ISO 8601 timestamp"}, NULL, "ts"},
    {"no-seconds", "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00Z\"}", -1, "format", {"is not an ISO 8601"}, NULL, "ts"},
    {"not-a-time",
     "{\"s\":\"x\",\"ts\":\"not-a-time\"}",
     -1,
     "format",
     {"\"not-a-time\" is not an ISO 8601"},
     NULL,
     "ts"},
    {"feb-29-non-leap",
     "{\"s\":\"x\",\"ts\":\"2023-02-29T00:00:00Z\"}",
     -1,
     "format",
     {"is not a valid date"},
     NULL,
     "ts"},
    {"feb-29-century",
     "{\"s\":\"x\",\"ts\":\"1900-02-29T00:00:00Z\"}",
     -1,
     "format",
     {"is not a valid date"},
     NULL,
     "ts"},
    {"april-31", "{\"s\":\"x\",\"ts\":\"2024-04-31T00:00:00Z\"}", -1, "format", {"is not a valid date"}},
    {"month-13", "{\"s\":\"x\",\"ts\":\"2024-13-01T00:00:00Z\"}", -1, "format", {"is not a valid date"}},
    {"year-zero", "{\"s\":\"x\",\"ts\":\"0000-01-01T00:00:00Z\"}", -1, "format", {"is not a valid date"}},
    {"hour-24", "{\"s\":\"x\",\"ts\":\"2024-03-01T24:00:00Z\"}", -1, "format", {"is not a valid time of day"}},
    {"leap-second", "{\"s\":\"x\",\"ts\":\"2016-12-31T23:59:60Z\"}", -1, "format", {"leap second"}},
    {"offset-hours-25", "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00:00+25:00\"}", -1, "format", {"invalid zone offset"}},
    {"too-many-fraction-digits",
     "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00:00.1234567890Z\"}",
     -1,
     "format",
     {"is not an ISO 8601"}},
    {"single-digit-month", "{\"s\":\"x\",\"ts\":\"2024-3-01T00:00:00Z\"}", -1, "format", {"is not an ISO 8601"}},
    {"junk-after-zone", "{\"s\":\"x\",\"ts\":\"2024-03-01T00:00:00Zx\"}", -1, "format", {"is not an ISO 8601"}},
    {"too-far-in-the-future",
     "{\"s\":\"x\",\"ts\":\"2024-03-01T01:00:01Z\"}",
     -1,
     "range",
     {"field 'ts': \"2024-03-01T01:00:01Z\" is 3601s in the future (max_future 1h)"},
     NULL,
     "ts"},
    {"field-max-future",
     EV("\"soon\":\"2024-03-01T00:00:11Z\""),
     -1,
     "range",
     {"is 11s in the future (max_future 10s)"},
     NULL,
     "soon"},
    {"before-min",
     EV("\"later\":\"1999-12-31T23:59:59Z\""),
     -1,
     "range",
     {"is before min 2000-01-01T00:00:00Z"},
     NULL,
     "later"},

    /* ---------------------------------------------------------- string rules */
    {"enum-is-case-sensitive", EV("\"e\":\"A\""), -1, "enum", {"field 'e': \"A\" is not one of a, b, c d"}, NULL, "e"},
    {"enum-empty-string", EV("\"e\":\"\""), -1, "enum", {"\"\" is not one of"}, NULL, "e"},
    {"enum-trailing-space", EV("\"e\":\"a \""), -1, "enum", {"\"a \" is not one of"}},
    {"regex-partial-match-fails",
     EV("\"r\":\"ABCD\""),
     -1,
     "pattern",
     {"\"ABCD\" does not match regex [A-Z]{3}"},
     NULL,
     "r"},
    {"regex-lower-case", EV("\"r\":\"abc\""), -1, "pattern", {"does not match"}, NULL, "r"},
    {"regex-trailing-newline", EV("\"r\":\"ABC\\n\""), -1, "pattern", {"does not match"}, NULL, "r"},
    {"length-below-min",
     EV("\"len\":\"a\""),
     -1,
     "length",
     {"field 'len': 1 characters, fewer than min_length 2"},
     NULL,
     "len"},
    {"length-empty", EV("\"len\":\"\""), -1, "length", {"is empty (min_length 2)"}, NULL, "len"},
    {"length-above-max", EV("\"len\":\"abcde\""), -1, "length", {"5 characters, more than max_length 4"}, NULL, "len"},
    {"length-above-max-unicode",
     EV("\"len\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xf0\x9f\x98\x80x\""),
     -1,
     "length",
     {"5 characters"},
     NULL,
     "len"},

    /* ---------------------------------------------------------- numbers */
    {"int-below-min", EV("\"i\":-6"), -1, "range", {"field 'i': -6 is less than min -5"}, NULL, "i"},
    {"int-above-max", EV("\"i\":101"), -1, "range", {"101 is more than max 100"}, NULL, "i"},
    {"int64-overflow",
     EV("\"big\":9223372036854775808"),
     -1,
     "range",
     {"9223372036854775808 is out of int64 range"},
     NULL,
     "big"},
    {"int64-underflow", EV("\"big\":-9223372036854775809"), -1, "range", {"out of int64 range"}, NULL, "big"},
    {"int-huge",
     EV("\"big\":123456789012345678901234567890123456789"),
     -1,
     "range",
     {"out of int64 range"},
     NULL,
     "big"},
    {"float-overflow", EV("\"f\":1e400"), -1, "range", {"1e400 is out of float64 range"}, NULL, "f"},
    {"float-below-min", EV("\"f\":-2"), -1, "range", {"-2 is less than min -1.5"}, NULL, "f"},
    {"decimal-too-many-places",
     EV("\"d\":12.345"),
     -1,
     "precision",
     {"field 'd': 12.345 has more than 2 decimal places; decimal(12,2) does not round"},
     NULL,
     "d"},
    {"decimal-tiny-tail", EV("\"d\":12.3400001"), -1, "precision", {"more than 2 decimal places"}, NULL, "d"},
    {"decimal-tiny-nonzero", EV("\"d\":1e-400"), -1, "precision", {"more than 2 decimal places"}, NULL, "d"},
    {"decimal-too-many-digits",
     EV("\"d\":10000000000.00"),
     -1,
     "precision",
     {"does not fit decimal(12,2) (at most 10 digits before the point)"},
     NULL,
     "d"},
    {"decimal-exponent-too-big", EV("\"d\":1e10"), -1, "precision", {"does not fit decimal(12,2)"}, NULL, "d"},
    {"decimal-huge-exponent", EV("\"d\":1e999999999999"), -1, "precision", {"does not fit"}, NULL, "d"},
    {"decimal-huge-integer",
     EV("\"d\":123456789012345678901234567890123456789012345"),
     -1,
     "precision",
     {"does not fit"},
     NULL,
     "d"},
    {"decimal-below-min", EV("\"d\":-10.51"), -1, "range", {"field 'd': -10.51 is less than min -10.50"}, NULL, "d"},
    {"decimal-scale-0-fraction", EV("\"d0\":1.5"), -1, "precision", {"more than 0 decimal places"}, NULL, "d0"},
    {"decimal-38-too-many-digits",
     EV("\"d38\":12345678901234567890123456789.0"),
     -1,
     "precision",
     {"does not fit decimal(38,10)"},
     NULL,
     "d38"},
};

static tv_schema *rules_schema(void)
{
    GError *error = NULL;
    tv_schema *s = tv_schema_parse(rules_yaml, sizeof rules_yaml - 1, "rules.yaml", &error);
    g_assert_no_error(error);
    return s;
}

static tv_pool *pool_for(const tv_schema *s)
{
    tv_col_kind kinds[64];
    bool nullable[64];
    uint32_t n = tv_validator_columns(s, kinds, nullable, 64);
    g_assert_cmpuint(n, <=, 64);
    return tv_pool_new(n, kinds, nullable, 4);
}

/* A copy with the 64 zero bytes every ecflow payload has after it. */
static uint8_t *padded(const char *text, size_t len)
{
    uint8_t *p = g_malloc0(len + TVJ_PADDING);
    memcpy(p, text, len);
    return p;
}

/* Validates one event into a fresh set; on success renders its row. */
static tv_reason run_one(tv_validator *v, tv_pool *pool, const tv_schema *s, const char *json, size_t len,
                         tv_error *err, GString *row, GString *extras)
{
    tv_columns *cols = tv_pool_take(pool, 4);
    g_assert_nonnull(cols);
    g_autofree uint8_t *buf = padded(json, len);
    tv_row_info info;
    tv_reason r = tv_validate(v, cols, buf, len, INGEST_US, NOW_US, &info, err);
    if (r == TV_VALID) {
        g_assert_cmpuint(cols->rows, ==, 1);
        struct ArrowSchema as;
        tv_schema_export_arrow(s, &as);
        struct ArrowArray arr;
        tv_columns_export(cols, &arr);
        g_autofree char *bad = arrow_check(&as, &arr);
        if (bad)
            g_error("unsound array: %s", bad);
        arrow_row(row, &as, &arr, 0);
        const struct ArrowArray *x = arr.children[as.n_children - 1];
        const int32_t *off = x->buffers[1];
        g_string_append_len(extras, (const char *)x->buffers[2] + off[0], off[1] - off[0]);
        arr.release(&arr);
        as.release(&as);
    } else {
        g_assert_cmpuint(cols->rows, ==, 0);
        tv_columns_give_back(cols);
    }
    return r;
}

static void test_table(void)
{
    tv_schema *s = rules_schema();
    const char *why = NULL;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    g_assert_nonnull(v);
    tv_pool *pool = pool_for(s);
    guint failures = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const vcase *c = &cases[i];
        size_t len = c->len < 0 ? strlen(c->json) : (size_t)c->len;
        tv_error err;
        g_autoptr(GString) row = g_string_new(NULL);
        g_autoptr(GString) extras = g_string_new(NULL);
        tv_reason r = run_one(v, pool, s, c->json, len, &err, row, extras);
        const char *got = tv_reason_name(r);
        gboolean ok = strcmp(got, c->verdict) == 0;
        const char *text = r == TV_VALID ? row->str : err.message;
        for (int k = 0; ok && k < 4 && c->want[k]; k++)
            ok = strstr(text, c->want[k]) != NULL;
        if (ok && r == TV_VALID && c->extras)
            ok = strcmp(extras->str, c->extras) == 0;
        if (ok && r != TV_VALID && c->field)
            ok = err.field && strcmp(err.field, c->field) == 0;
        if (g_test_verbose())
            g_printerr("%-40s %-10s %s\n", c->name, got, r == TV_VALID ? extras->str : err.message);
        if (!ok) {
            failures++;
            g_printerr("case '%s': expected %s, got %s: %s\n  extras: %s\n  field: %s\n", c->name, c->verdict, got,
                       text, r == TV_VALID ? extras->str : "-", r != TV_VALID && err.field ? err.field : "-");
        }
    }
    g_assert_cmpuint(failures, ==, 0);
    g_assert_cmpuint(tv_pool_out(pool), ==, 0);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* A rejected event may have written half its columns; the next valid one
 * overwrites that row, and nothing of the rejected one shows. */
static void test_rows_commit_only_when_valid(void)
{
    tv_schema *s = rules_schema();
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    tv_columns *cols = tv_pool_take(pool, 8);
    const char *events[] = {
        "{\"s\":\"first\",\"e\":\"a\"," TS ",\"x\":1}",
        "{\"s\":\"REJECTED-LONG-STRING\",\"e\":\"b\",\"d\":12.34,\"b\":true,\"x\":\"junk\",\"i\":999," TS "}",
        "{\"s\":\"third\"," TS "}",
        "{\"s\":\"fourth\",\"len\":\"x\"," TS "}",
        "{\"e\":\"c d\",\"s\":\"fifth\"," TS ",\"y\":[]}",
    };
    tv_reason want[] = {TV_VALID, TV_R_RANGE, TV_VALID, TV_R_LENGTH, TV_VALID};
    for (size_t i = 0; i < G_N_ELEMENTS(events); i++) {
        g_autofree uint8_t *buf = padded(events[i], strlen(events[i]));
        tv_row_info info;
        tv_error err;
        g_assert_cmpint(tv_validate(v, cols, buf, strlen(events[i]), INGEST_US, NOW_US, &info, &err), ==, want[i]);
    }
    g_assert_cmpuint(cols->rows, ==, 3);
    struct ArrowSchema as;
    tv_schema_export_arrow(s, &as);
    struct ArrowArray arr;
    tv_columns_export(cols, &arr);
    g_autofree char *bad = arrow_check(&as, &arr);
    g_assert_null(bad);
    g_autoptr(GString) out = g_string_new(NULL);
    for (int r = 0; r < 3; r++) {
        arrow_row(out, &as, &arr, r);
        g_string_append_c(out, '\n');
    }
    g_assert_nonnull(strstr(out->str, "{\"s\":\"first\",\"e\":\"a\",\"r\":null"));
    g_assert_nonnull(strstr(out->str, "{\"s\":\"third\",\"e\":null,\"r\":null,\"len\":null,\"i\":null,\"big\":null,"
                                      "\"f\":null,\"b\":null,\"d\":null"));
    g_assert_nonnull(strstr(out->str, "\"extras\":\"{\\\"x\\\":1}\"}\n"));
    g_assert_nonnull(strstr(out->str, "{\"s\":\"fifth\",\"e\":\"c d\""));
    g_assert_nonnull(strstr(out->str, "\"extras\":\"{\\\"y\\\":[]}\"}\n"));
    g_assert_null(strstr(out->str, "REJECTED"));
    g_assert_null(strstr(out->str, "junk"));
    g_assert_null(strstr(out->str, "12.34"));
    g_assert_cmpint(arr.children[0]->null_count, ==, 0);
    g_assert_cmpint(arr.children[1]->null_count, ==, 1); /* e */
    g_assert_cmpint(arr.children[8]->null_count, ==, 3); /* d */
    arr.release(&arr);
    as.release(&as);
    g_assert_cmpuint(tv_pool_out(pool), ==, 0);
    g_assert_cmpuint(tv_pool_idle(pool), ==, 1);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* A schema's validator with a pool and a column set taken from it. */
typedef struct {
    tv_schema *s;
    tv_validator *v;
    tv_pool *pool;
    tv_columns *cols;
} vfix;

static void vfix_open(vfix *f, tv_schema *s, int64_t max_future_us, uint32_t rows)
{
    const char *why;
    f->s = s;
    f->v = tv_validator_new(s, max_future_us, MAX_DEPTH, NULL, &why);
    f->pool = pool_for(s);
    f->cols = tv_pool_take(f->pool, rows);
}

static void vfix_close(vfix *f)
{
    tv_columns_give_back(f->cols);
    tv_pool_close(f->pool);
    tv_validator_free(f->v);
    tv_schema_free(f->s);
}

/* Every field problem of an event is listed, in document order and then
 * the missing required fields in schema order; the first is the event's
 * reason. Past TV_MAX_PROBLEMS they are counted. Malformed JSON is the one
 * problem of its event. */
static void test_every_problem_listed(void)
{
    vfix fx;
    vfix_open(&fx, rules_schema(), TV_NO_LIMIT, 4);
    tv_validator *v = fx.v;
    tv_columns *cols = fx.cols;
    tv_row_info info;
    tv_error err;
    const char *ev = "{\"e\":\"zz\",\"x\":1,\"i\":999,\"b\":\"yes\",\"len\":\"ok\"}";
    g_autofree uint8_t *buf = padded(ev, strlen(ev));
    g_assert_cmpint(tv_validate(v, cols, buf, strlen(ev), INGEST_US, NOW_US, &info, &err), ==, TV_R_ENUM);
    g_assert_cmpstr(err.field, ==, "e");
    g_assert_cmpstr(err.value, ==, "string \"zz\"");
    g_assert_cmpuint(err.n_problems, ==, 5);
    g_assert_cmpuint(err.n_unlisted, ==, 0);
    const char *fields[] = {"e", "i", "b", "s", "ts"};
    const tv_reason rules[] = {TV_R_ENUM, TV_R_RANGE, TV_R_TYPE, TV_R_REQUIRED, TV_R_REQUIRED};
    for (int i = 0; i < 5; i++) {
        g_assert_cmpstr(err.problems[i].field, ==, fields[i]);
        g_assert_cmpint(err.problems[i].reason, ==, rules[i]);
    }
    g_assert_cmpstr(err.problems[0].message, ==, err.message);
    g_assert_cmpstr(err.problems[1].message, ==, "field 'i': 999 is more than max 100");
    g_assert_cmpstr(err.problems[1].value, ==, "number 999");
    g_assert_cmpstr(err.problems[3].message, ==, "field 's': required but missing");
    g_assert_cmpstr(err.problems[3].value, ==, "");
    char text[TV_ERROR_TEXT_MAX];
    tv_error_text(&err, text, sizeof text);
    g_assert_true(g_str_has_prefix(text, err.message));
    g_assert_true(g_str_has_suffix(text, "; field 's': required but missing; field 'ts': required but missing"));
    g_assert_cmpuint(cols->rows, ==, 0);

    /* malformed: one problem, whatever else is wrong */
    const char *bad = "{\"e\":\"zz\",\"i\":999,\"b\":[1,,2]}";
    g_autofree uint8_t *bbuf = padded(bad, strlen(bad));
    g_assert_cmpint(tv_validate(v, cols, bbuf, strlen(bad), INGEST_US, NOW_US, &info, &err), ==, TV_R_SYNTAX);
    g_assert_cmpuint(err.n_problems, ==, 1);
    g_assert_cmpstr(err.problems[0].message, ==, err.message);
    tv_error_text(&err, text, sizeof text);
    g_assert_cmpstr(text, ==, err.message);
    vfix_close(&fx);

    /* twenty missing required fields: sixteen listed, four counted */
    g_autoptr(GString) y = g_string_new("schema: many\nversion: 1\nfields:\n");
    for (int i = 0; i < 20; i++)
        g_string_append_printf(y, "  f%02d: {type: int, required: true}\n", i);
    GError *e = NULL;
    tv_schema *many = tv_schema_parse(y->str, y->len, "many.yaml", &e);
    g_assert_no_error(e);
    vfix_open(&fx, many, TV_NO_LIMIT, 1);
    g_autofree uint8_t *ebuf = padded("{}", 2);
    g_assert_cmpint(tv_validate(fx.v, fx.cols, ebuf, 2, INGEST_US, NOW_US, &info, &err), ==, TV_R_REQUIRED);
    g_assert_cmpuint(err.n_problems, ==, TV_MAX_PROBLEMS);
    g_assert_cmpuint(err.n_unlisted, ==, 20 - TV_MAX_PROBLEMS);
    g_assert_cmpstr(err.problems[15].field, ==, "f15");
    tv_error_text(&err, text, sizeof text);
    g_assert_true(g_str_has_suffix(text, "; field 'f15': required but missing; and 4 more"));
    vfix_close(&fx);
}

/* The coerce rule: numeric strings for number fields, a number's text for a
 * string field; off by default; only well-formed JSON numbers are taken. */
static void test_coerce(void)
{
    static const char yaml[] = "schema: c\n"
                               "coerce: true\n"
                               "fields:\n"
                               "  price: {type: \"decimal(6,2)\"}\n"
                               "  qty: {type: int, min: 1}\n"
                               "  ratio: {type: float}\n"
                               "  code: {type: string}\n"
                               "  strict: {type: int, coerce: false}\n";
    GError *error = NULL;
    tv_schema *s = tv_schema_parse(yaml, sizeof yaml - 1, "c.yaml", &error);
    g_assert_no_error(error);
    const char *why;
    tv_validator *v = tv_validator_new(s, TV_NO_LIMIT, MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    struct {
        const char *json;
        tv_reason want;
        const char *row;
    } cases[] = {
        {"{\"price\":\"12.5\",\"qty\":\"2\",\"ratio\":\"1e3\",\"code\":7}", TV_VALID,
         "{\"price\":\"12.50\",\"qty\":2,\"ratio\":1000,\"code\":\"7\",\"strict\":null"},
        {"{\"price\":12.5,\"qty\":2,\"code\":\"x\"}", TV_VALID,
         "{\"price\":\"12.50\",\"qty\":2,\"ratio\":null,\"code\":\"x\""},
        {"{\"qty\":\"0\"}", TV_R_RANGE, NULL},
        {"{\"qty\":\"2.5\"}", TV_R_TYPE, NULL},
        {"{\"qty\":\" 2\"}", TV_R_TYPE, NULL},
        {"{\"price\":\"12.345\"}", TV_R_PRECISION, NULL},
        {"{\"price\":\"abc\"}", TV_R_TYPE, NULL},
        {"{\"price\":\"0x10\"}", TV_R_TYPE, NULL},
        {"{\"strict\":\"2\"}", TV_R_TYPE, NULL},
        {"{\"code\":true}", TV_R_TYPE, NULL},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GString) row = g_string_new(NULL);
        g_autoptr(GString) extras = g_string_new(NULL);
        tv_error err;
        tv_reason r = run_one(v, pool, s, cases[i].json, strlen(cases[i].json), &err, row, extras);
        if (r != cases[i].want)
            g_error("%s: got %s (%s), want %s", cases[i].json, tv_reason_name(r), err.message,
                    tv_reason_name(cases[i].want));
        if (cases[i].row && !g_str_has_prefix(row->str, cases[i].row))
            g_error("%s: row %s, want %s...", cases[i].json, row->str, cases[i].row);
        if (r != TV_VALID)
            g_assert_cmpstr(err.value, !=, "");
    }
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);

    /* off unless asked for; refused on a type it cannot apply to */
    static const char plain[] = "schema: p\nfields:\n  qty: {type: int}\n";
    s = tv_schema_parse(plain, sizeof plain - 1, "p.yaml", &error);
    g_assert_no_error(error);
    g_assert_false(s->fields[0].coerce);
    tv_schema_free(s);
    static const char bad[] = "schema: b\nfields:\n  t: {type: timestamp, coerce: true}\n";
    g_assert_null(tv_schema_parse(bad, sizeof bad - 1, "b.yaml", &error));
    g_assert_nonnull(strstr(error->message, "'coerce' does not apply to a timestamp field"));
    g_clear_error(&error);
}

static void test_key_field_and_event_time(void)
{
    tv_schema *s = rules_schema();
    const char *why = NULL;
    g_assert_null(tv_validator_new(s, 0, MAX_DEPTH, "nope", &why));
    g_assert_cmpstr(why, ==, "names no field of the schema");
    g_assert_null(tv_validator_new(s, 0, MAX_DEPTH, "i", &why));
    g_assert_cmpstr(why, ==, "is not a string field");
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, "e", &why);
    tv_pool *pool = pool_for(s);
    tv_columns *cols = tv_pool_take(pool, 4);
    const char *with = "{\"s\":\"x\",\"e\":\"b\",\"ts\":\"2024-02-29T23:00:00.25-01:00\"}";
    const char *without = "{\"s\":\"x\",\"ts\":\"2024-02-29T23:00:00Z\"}";
    g_autofree uint8_t *b1 = padded(with, strlen(with));
    g_autofree uint8_t *b2 = padded(without, strlen(without));
    tv_row_info info;
    tv_error err;
    g_assert_cmpint(tv_validate(v, cols, b1, strlen(with), INGEST_US, NOW_US, &info, &err), ==, TV_VALID);
    g_assert_cmpmem(info.key, info.key_len, "b", 1);
    g_assert_cmpint(info.event_time_us, ==, NOW_US + 250000);
    g_assert_cmpint(tv_validate(v, cols, b2, strlen(without), INGEST_US, NOW_US, &info, &err), ==, TV_VALID);
    g_assert_null(info.key);
    g_assert_cmpint(info.event_time_us, ==, NOW_US - INT64_C(3600000000));
    tv_columns_give_back(cols);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* More than 32 keys in one object: duplicates are found by sorting. */
static void test_many_keys(void)
{
    tv_schema *s = rules_schema();
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    for (int variant = 0; variant < 4; variant++) {
        g_autoptr(GString) j = g_string_new("{\"s\":\"x\"," TS);
        g_autoptr(GString) want = g_string_new("{");
        if (variant >= 2)
            g_string_append(j, ",\"o\":{");
        for (int k = 0; k < 100; k++) {
            g_string_append_printf(j, "%s\"k%03d\":%d", variant >= 2 && k == 0 ? "" : ",", k, k);
            g_string_append_printf(want, "%s\"k%03d\":%d", k ? "," : "", k, k);
        }
        if (variant == 1 || variant == 3)
            g_string_append(j, ",\"k042\":0"); /* one repeat, far from the first */
        if (variant >= 2)
            g_string_append(j, "}");
        g_string_append(j, "}");
        g_string_append(want, "}");
        tv_error err;
        g_autoptr(GString) row = g_string_new(NULL);
        g_autoptr(GString) extras = g_string_new(NULL);
        tv_reason r = run_one(v, pool, s, j->str, j->len, &err, row, extras);
        if (variant == 0) {
            g_assert_cmpint(r, ==, TV_VALID);
            g_assert_cmpstr(extras->str, ==, want->str);
        } else if (variant == 2) {
            g_assert_cmpint(r, ==, TV_VALID);
        } else {
            g_assert_cmpint(r, ==, TV_R_DUPLICATE);
            g_assert_nonnull(strstr(err.message, "duplicate key \"k042\""));
        }
    }
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* The shipped schema accepts what source-generate writes, and keeps what it
 * does not know. */
static void test_shipped_schema_events(void)
{
    g_autofree char *path =
        g_build_filename(g_getenv("ECF_SOURCE_DIR"), "pipelines", "schemas", "ecommerce_event.yaml", NULL);
    GError *error = NULL;
    tv_schema *s = tv_schema_load(path, &error);
    g_assert_no_error(error);
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), 64, "session_id", &why);
    tv_pool *pool = pool_for(s);
    static const struct {
        const char *json, *verdict, *want;
    } events[] = {
        {"{\"event_id\":\"a8966d72-03bf-49f8-91ea-2546f20842d5\",\"event_type\":\"purchase\",\"user_id\":\"u041891\","
         "\"session_id\":\"s0000000003d5\",\"location\":\"S\xc3\xa3o Paulo\",\"device\":\"desktop\","
         "\"timestamp\":\"2024-03-01T00:00:00.067Z\",\"product_id\":\"p1234\",\"price\":123.45,\"quantity\":2,"
         "\"currency\":\"EUR\"}",
         "valid",
         "\"price\":\"123.45\",\"quantity\":2,\"currency\":\"EUR\",\"query\":null,\"page_url\":null,"
         "\"event_date\":\"2024-03-01\",\"ingest_time\":\"2024-03-01T00:00:05.000000Z\",\"extras\":\"{}\"}"},
        {"{\"event_id\":\"e1\",\"event_type\":\"search\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-02-29T21:00:00-03:00\",\"query\":\"running shoes\",\"referrer\":\"ads\",\"ab\":[1,2]}",
         "valid", "\"extras\":\"{\\\"referrer\\\":\\\"ads\\\",\\\"ab\\\":[1,2]}\""},
        {"{\"event_id\":\"e1\",\"event_type\":\"checkout\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\"}",
         "enum",
         "field 'event_type': \"checkout\" is not one of page_view, add_to_cart, remove_from_cart, purchase, search"},
        {"{\"event_id\":\"e1\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\",\"price\":\"abc\"}",
         "type", "field 'price': expected decimal(12,2), got string \"abc\""},
        {"{\"event_id\":\"e1\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\",\"price\":-1}",
         "range", "field 'price': -1.00 is less than min 0"},
        {"{\"event_id\":\"\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\"}",
         "length", "field 'event_id': is empty (min_length 1)"},
        {"{\"event_id\":\"e1\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\",\"currency\":\"eur\"}",
         "pattern", "field 'currency': \"eur\" does not match regex [A-Z]{3}"},
        {"{\"event_id\":\"e1\",\"event_type\":\"purchase\",\"user_id\":\"u1\",\"session_id\":\"s1\","
         "\"timestamp\":\"2024-03-01T00:00:00Z\",\"quantity\":0}",
         "range", "field 'quantity': 0 is less than min 1"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(events); i++) {
        tv_error err;
        g_autoptr(GString) row = g_string_new(NULL);
        g_autoptr(GString) extras = g_string_new(NULL);
        tv_reason r = run_one(v, pool, s, events[i].json, strlen(events[i].json), &err, row, extras);
        const char *text = r == TV_VALID ? row->str : err.message;
        if (strcmp(tv_reason_name(r), events[i].verdict) != 0 || !strstr(text, events[i].want))
            g_error("event %zu: expected %s with '%s', got %s: %s", i, events[i].verdict, events[i].want,
                    tv_reason_name(r), text);
    }
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* ------------------------------------------------------------ columns */

typedef struct {
    struct ArrowArray arr;
} release_job;

static gpointer release_on_thread(gpointer data)
{
    release_job *j = data;
    j->arr.release(&j->arr);
    return NULL;
}

static tv_columns *filled_set(tv_validator *v, tv_pool *pool, int rows)
{
    tv_columns *cols = tv_pool_take(pool, (uint32_t)rows);
    for (int i = 0; i < rows; i++) {
        g_autofree char *j = g_strdup_printf("{\"s\":\"row %d\",\"i\":%d," TS "}", i, i % 100);
        g_autofree uint8_t *buf = padded(j, strlen(j));
        tv_row_info info;
        tv_error err;
        g_assert_cmpint(tv_validate(v, cols, buf, strlen(j), INGEST_US, NOW_US, &info, &err), ==, TV_VALID);
    }
    return cols;
}

static void test_release_on_another_thread_returns_buffers(void)
{
    tv_schema *s = rules_schema();
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    tv_columns *first = filled_set(v, pool, 1000);
    release_job job;
    tv_columns_export(first, &job.arr);
    const void *strings = first->cols[0].data;
    GThread *t = g_thread_new("sink", release_on_thread, &job);
    g_thread_join(t);
    g_assert_null(job.arr.release);
    g_assert_cmpuint(tv_pool_out(pool), ==, 0);
    g_assert_cmpuint(tv_pool_idle(pool), ==, 1);
    /* the same set, buffers and all, serves the next batch */
    tv_columns *again = tv_pool_take(pool, 1000);
    g_assert_true(again == first);
    g_assert_true(again->cols[0].data == strings);
    g_assert_cmpuint(again->rows, ==, 0);
    tv_columns_give_back(again);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* The stage may be destroyed while a sink still holds records. */
static void test_release_after_pool_closed(void)
{
    tv_schema *s = rules_schema();
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    tv_columns *cols = filled_set(v, pool, 10);
    struct ArrowArray arr;
    tv_columns_export(cols, &arr);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
    arr.release(&arr); /* frees the set and, last, the pool: ASan checks */
}

/* A consumer may move a child out (Arrow allows it) and release it later. */
static void test_child_moved_out(void)
{
    tv_schema *s = rules_schema();
    const char *why;
    tv_validator *v = tv_validator_new(s, INT64_C(3600000000), MAX_DEPTH, NULL, &why);
    tv_pool *pool = pool_for(s);
    tv_columns *cols = filled_set(v, pool, 3);
    struct ArrowArray arr;
    tv_columns_export(cols, &arr);
    struct ArrowArray moved = *arr.children[0];
    arr.children[0]->release = NULL;
    arr.release(&arr);
    g_assert_cmpuint(tv_pool_out(pool), ==, 1); /* still held by the moved child */
    const int32_t *off = moved.buffers[1];
    g_assert_cmpmem((const char *)moved.buffers[2] + off[2], off[3] - off[2], "row 2", 5);
    moved.release(&moved);
    g_assert_cmpuint(tv_pool_out(pool), ==, 0);
    tv_pool_close(pool);
    tv_validator_free(v);
    tv_schema_free(s);
}

/* ------------------------------------------------------------ dead letters */

static JsonObject *parse_envelope(const GString *text, JsonParser *p)
{
    GError *error = NULL;
    g_assert_true(json_parser_load_from_data(p, text->str, (gssize)text->len, &error));
    g_assert_no_error(error);
    return json_node_get_object(json_parser_get_root(p));
}

static void test_dead_letter_envelope(void)
{
    static const char raw[] = "{\"price\":\"abc\",\"q\":\"line\\nbreak \\\"quoted\\\" \xe2\x82\xac\ttab\"}";
    ecf_origin o = {.kind = ECF_ORIGIN_KAFKA, .partition = 3, .offset = 42, .topic = "ecommerce_events"};
    tv_dead_letter d = {
        .reason = "field 'price': expected decimal(12,2), got string \"abc\"",
        .klass = "type",
        .field = "price",
        .stage = "validate",
        .at_us = NOW_US + 123456,
        .origin = &o,
        .raw = (const uint8_t *)raw,
        .raw_len = sizeof raw - 1,
    };
    g_autoptr(GString) out = g_string_new(NULL);
    tv_dead_letter_json(out, &d);
    g_assert_null(memchr(out->str, '\n', out->len)); /* one line per envelope */
    g_autoptr(JsonParser) p = json_parser_new();
    JsonObject *o1 = parse_envelope(out, p);
    g_assert_cmpstr(json_object_get_string_member(o1, "reason"), ==, d.reason);
    g_assert_cmpstr(json_object_get_string_member(o1, "class"), ==, "type");
    g_assert_cmpstr(json_object_get_string_member(o1, "field"), ==, "price");
    g_assert_cmpstr(json_object_get_string_member(o1, "stage"), ==, "validate");
    g_assert_cmpstr(json_object_get_string_member(o1, "at"), ==, "2024-03-01T00:00:00.123456Z");
    g_assert_cmpstr(json_object_get_string_member(o1, "raw"), ==, raw);
    JsonObject *src = json_object_get_object_member(o1, "source");
    g_assert_cmpstr(json_object_get_string_member(src, "kind"), ==, "kafka");
    g_assert_cmpstr(json_object_get_string_member(src, "topic"), ==, "ecommerce_events");
    g_assert_cmpint(json_object_get_int_member(src, "partition"), ==, 3);
    g_assert_cmpint(json_object_get_int_member(src, "offset"), ==, 42);

    /* no field, no topic */
    o.kind = ECF_ORIGIN_GENERATED, o.topic = NULL, o.partition = -1, o.offset = 7;
    d.field = NULL;
    tv_dead_letter_json(out, &d);
    g_autoptr(JsonParser) p2 = json_parser_new();
    JsonObject *o2 = parse_envelope(out, p2);
    g_assert_true(json_object_get_null_member(o2, "field"));
    g_assert_true(json_object_get_null_member(json_object_get_object_member(o2, "source"), "topic"));

    /* bytes that are not UTF-8 survive as base64; NUL as \u0000 */
    static const uint8_t bad[] = {'{', '"', 'a', '"', ':', '"', 0xC3, '"', '}'};
    d.raw = bad, d.raw_len = sizeof bad;
    tv_dead_letter_json(out, &d);
    g_autoptr(JsonParser) p3 = json_parser_new();
    JsonObject *o3 = parse_envelope(out, p3);
    g_assert_false(json_object_has_member(o3, "raw"));
    gsize n = 0;
    g_autofree guchar *back = g_base64_decode(json_object_get_string_member(o3, "raw_base64"), &n);
    g_assert_cmpmem(back, n, bad, sizeof bad);

    static const char nul[] = {'{', '"', 'a', '"', ':', 0, '}'};
    d.raw = (const uint8_t *)nul, d.raw_len = sizeof nul;
    tv_dead_letter_json(out, &d);
    g_assert_nonnull(strstr(out->str, "\"raw\":\"{\\\"a\\\":\\u0000}\""));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/validate/table-of-good-and-bad-events", test_table);
    g_test_add_func("/validate/rows-count-only-when-the-event-is-valid", test_rows_commit_only_when_valid);
    g_test_add_func("/validate/key-field-and-event-time-come-from-the-record", test_key_field_and_event_time);
    g_test_add_func("/validate/objects-with-many-keys-still-refuse-duplicates", test_many_keys);
    g_test_add_func("/validate/shipped-schema-takes-generator-events", test_shipped_schema_events);
    g_test_add_func("/validate/coerce-takes-numeric-strings-and-number-text", test_coerce);
    g_test_add_func("/validate/every-problem-of-an-event-is-listed-the-first-is-its-reason", test_every_problem_listed);
    g_test_add_func("/columns/release-on-another-thread-returns-buffers-to-the-pool",
                    test_release_on_another_thread_returns_buffers);
    g_test_add_func("/columns/release-after-the-stage-is-gone-frees-everything", test_release_after_pool_closed);
    g_test_add_func("/columns/child-moved-out-keeps-its-buffers-until-released", test_child_moved_out);
    g_test_add_func("/dead-letter/envelope-carries-reason-source-and-exact-bytes", test_dead_letter_envelope);
    return g_test_run();
}
