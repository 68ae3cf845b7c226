/* The pipeline loader: YAML, ${VAR} expansion (FUZZ_A set, FUZZ_B unset),
 * profiles, plugin option parsing against the real plugins. Input: the
 * file; its first line, if it starts with '#', names the profile. */
#include "pipeline.h"

#include <glib.h>
#include <string.h>

static ecf_registry *reg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reg) {
        g_setenv("FUZZ_A", "42", TRUE);
        g_unsetenv("FUZZ_B");
        g_log_set_always_fatal(G_LOG_FATAL_MASK);
        reg = ecf_registry_new(NULL);
    }
    char *text = g_strndup((const char *)data, size);
    char *profile = NULL;
    if (text[0] == '#') {
        char *nl = strchr(text, '\n');
        profile = g_strndup(text + 1, nl ? (gsize)(nl - text - 1) : strlen(text + 1));
    }
    GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
    ecf_pipeline_def *def = ecf_pipeline_load_string("fuzz.yaml", text, profile, reg, errors);
    if (def)
        ecf_pipeline_def_free(def);
    g_ptr_array_free(errors, TRUE);
    g_free(profile);
    g_free(text);
    return 0;
}
