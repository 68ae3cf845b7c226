/* transform-validate: events checked against a schema with every type and
 * rule, rows written to Arrow columns. Input: one event. */
#include "schema.h"
#include "validate.h"

#include <glib.h>
#include <string.h>

static const char schema_yaml[] = "schema: fuzz\n"
                                  "version: 1\n"
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
                                  "  d38:   {type: \"decimal(38,10)\"}\n"
                                  "  ts:    {type: timestamp, required: true}\n"
                                  "  later: {type: timestamp, max_future: none}\n";

static tv_schema *schema;
static tv_validator *validator;
static tv_pool *pool;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!schema) {
        GError *e = NULL;
        schema = tv_schema_parse(schema_yaml, strlen(schema_yaml), "fuzz.yaml", &e);
        const char *why = NULL;
        validator = tv_validator_new(schema, INT64_C(3600000000), 32, "s", &why);
        tv_col_kind kinds[64];
        bool nullable[64];
        uint32_t n = tv_validator_columns(schema, kinds, nullable, 64);
        pool = tv_pool_new(n, kinds, nullable, 2);
    }
    uint8_t *buf = g_malloc0(size + 64); /* ecflow payloads are padded */
    memcpy(buf, data, size);
    tv_columns *cols = tv_pool_take(pool, 4);
    tv_row_info info;
    tv_error err;
    tv_validate(validator, cols, buf, size, INT64_C(1709251200000000), INT64_C(1709251200000000), &info, &err);
    tv_columns_give_back(cols);
    g_free(buf);
    return 0;
}
