/* transform-validate's schema file parser. Input: the YAML file. */
#include "schema.h"

#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = g_strndup((const char *)data, size);
    GError *e = NULL;
    tv_schema *s = tv_schema_parse(text, size, "fuzz.yaml", &e);
    if (s)
        tv_schema_free(s);
    g_clear_error(&e);
    g_free(text);
    return 0;
}
