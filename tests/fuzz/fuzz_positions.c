/* sink-iceberg's Kafka positions, as kept in snapshot summaries (the
 * writer's exactly-once state read back from the table). */
#include "positions.h"

#include <glib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = g_strndup((const char *)data, size);
    pos_map *m = pos_map_new();
    if (pos_from_json(m, json)) {
        char *back = pos_to_json(m);
        pos_map *again = pos_map_new();
        if (!pos_from_json(again, back) || pos_map_count(again) != pos_map_count(m))
            __builtin_trap(); /* what we write we must read */
        pos_map_free(again);
        g_free(back);
        char *d = pos_describe(m, 64);
        g_free(d);
    }
    pos_map_free(m);
    g_free(json);
    return 0;
}
