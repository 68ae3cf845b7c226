/*
 * The plugin ABI, pinned. A plugin built against an older <ecflow/plugin.h>
 * reads and fills these structs at these offsets and passes these enum
 * values; a change that is not an append breaks every such plugin without a
 * word. So the layouts are _Static_asserts here: such a change fails the
 * build, and so does an appended member until it is pinned below with the
 * minor that added it (and ECF_ABI_MINOR is raised).
 *
 * Offsets are pinned for LP64 (Linux on x86-64 and aarch64, what ecflow
 * ships on); everywhere, the ecf_host table is pinned slot by slot. The
 * g_test cases check what only running code shows: the core fills every
 * member of the host table it hands out, ECF_PLUGIN_DEFINE stamps the
 * version and size, and a wrapper for a newer member leaves an older host
 * alone.
 */
#include <ecflow/plugin.h>

#include "loader.h"
#include "pipeline.h"
#include "runtime.h"
#include "stage.h"

#include <glib.h>
#include <string.h>

/* Where a member sits and how wide it is: moving or retyping one breaks plugins. */
#define PIN(T, field, off, width)                                                                \
    _Static_assert(offsetof(T, field) == (off), #T "." #field " moved: the ABI is append-only"); \
    _Static_assert(sizeof(((T *)0)->field) == (width), #T "." #field " changed type")
#define PIN_SIZE(T, size)               \
    _Static_assert(sizeof(T) == (size), \
                   "sizeof " #T " changed: pin the new member here (append-only) and raise ECF_ABI_MINOR")

/* ---------------------------------------------------------------- versions, enums */

_Static_assert(ECF_ABI_MAJOR == 1, "a new ABI major: every plugin must be rebuilt");
_Static_assert(ECF_ABI_MINOR >= 3, "ABI minors only grow");
_Static_assert(ECF_PAYLOAD_PADDING == 64, "plugins parse payloads in place with this padding");
_Static_assert(ECF_REQUIRED == 1 && ECF_OPTIONAL == 0 && ECF_SECRET == 2, "option flags");

_Static_assert(ECF_OK == 0 && ECF_ERR_INVALID == 1 && ECF_ERR_CONFIG == 2 && ECF_ERR_IO == 3 &&
                   ECF_ERR_UNAVAILABLE == 4 && ECF_ERR_TIMEOUT == 5 && ECF_ERR_BACKPRESSURE == 6 &&
                   ECF_ERR_NOMEM == 7 && ECF_ERR_STOPPED == 8 && ECF_ERR_DROPPED == 9 && ECF_ERR_FATAL == 10 &&
                   ECF_ERR_INTERNAL == 11 && ECF_STATUS_COUNT_ == 12,
               "ecf_status values: new ones go before ECF_STATUS_COUNT_, none move");
_Static_assert(ECF_SOURCE == 1 && ECF_TRANSFORM == 2 && ECF_SINK == 3, "ecf_kind values");
_Static_assert(ECF_LOG_ERROR == 0 && ECF_LOG_WARN == 1 && ECF_LOG_INFO == 2 && ECF_LOG_DEBUG == 3,
               "ecf_log_level values");
_Static_assert(ECF_METRIC_COUNTER == 1 && ECF_METRIC_GAUGE == 2 && ECF_METRIC_HISTOGRAM == 3, "ecf_metric_kind values");
_Static_assert(ECF_ORIGIN_NONE == 0 && ECF_ORIGIN_GENERATED == 1 && ECF_ORIGIN_HTTP == 2 && ECF_ORIGIN_KAFKA == 3 &&
                   ECF_ORIGIN_FILE == 4,
               "ecf_origin_kind values");
_Static_assert(ECF_OPT_T_STRING == 1 && ECF_OPT_T_INT == 2 && ECF_OPT_T_DOUBLE == 3 && ECF_OPT_T_BOOL == 4 &&
                   ECF_OPT_T_DURATION == 5 && ECF_OPT_T_SIZE == 6 && ECF_OPT_T_ENUM == 7 && ECF_OPT_T_LIST == 8 &&
                   ECF_OPT_T_MAP == 9 && ECF_OPT_T_FILE == 10,
               "ecf_opt_type values");

/* ---------------------------------------------------------------- the host table */

/*
 * Every member in order, with the minor that added it. Slot i sits i
 * function pointers after `config` on any ABI.
 */
#define ECF_HOST_MEMBERS(X)                                                                                         \
    X(config, 0, 0)                                                                                                 \
    X(state, 1, 0)                                                                                                  \
    X(set_state, 2, 0) X(name, 3, 0) X(should_stop, 4, 0) X(set_error, 5, 0) X(log, 6, 0) X(now_us, 7, 0)           \
        X(monotonic_us, 8, 0) X(metric, 9, 0) X(metric_add, 10, 0) X(metric_set, 11, 0) X(metric_observe, 12, 0)    \
            X(batch_new, 13, 0) X(batch_add, 14, 0) X(batch_count, 15, 0) X(batch_message, 16, 0)                   \
                X(batch_bytes, 17, 0) X(batch_release, 18, 0) X(emit, 19, 0) X(try_emit, 20, 0) X(token_new, 21, 0) \
                    X(token_release, 22, 0) X(ack, 23, 0) X(nack, 24, 0) X(hold, 25, 0) X(settle, 26, 0)            \
                        X(set_ready, 27, 0) X(pipeline_ready, 28, 0) X(pipeline_setting, 29, 0)                     \
                            X(declare_schema, 30, 0) X(input_schema, 31, 0) X(input_count, 32, 0)                   \
                                X(batch_set_records, 33, 0) X(batch_records, 34, 0) X(batch_input, 35, 0)           \
                                    X(resume_position, 36, 0) X(port_connected, 37, 0) X(metric_status, 38, 1)      \
                                        X(metric_buckets, 39, 3) X(log_event, 40, 3)
#define HOST_LAST log_event
#define HOST_SLOT sizeof(void (*)(void))

#define PIN_HOST(member, slot, since)                                                                                 \
    _Static_assert(offsetof(ecf_host, member) == offsetof(ecf_host, config) + (slot)*HOST_SLOT,                       \
                   "ecf_host." #member " moved: members are append-only");                                            \
    _Static_assert(sizeof(((ecf_host *)0)->member) == HOST_SLOT, "ecf_host." #member " is not one function pointer"); \
    _Static_assert((since) <= ECF_ABI_MINOR, "ecf_host." #member " is newer than the ABI minor");
ECF_HOST_MEMBERS(PIN_HOST)

_Static_assert(sizeof(ecf_host) == offsetof(ecf_host, HOST_LAST) + HOST_SLOT,
               "ecf_host grew: pin the new member in ECF_HOST_MEMBERS with its minor");
_Static_assert(offsetof(ecf_host, size) == 0 && offsetof(ecf_host, abi_major) == 4 &&
                   offsetof(ecf_host, abi_minor) == 8,
               "ecf_host starts with its size and version");
_Static_assert(offsetof(ecf_stage_head, size) == 0, "a stage handle starts with its size");
_Static_assert(offsetof(ecf_stage_head, host) == sizeof(void *), "then the host table");

/* ---------------------------------------------------------------- LP64 layouts */

#if defined(__LP64__) || defined(_LP64)
PIN(ecf_origin, kind, 0, 4);
PIN(ecf_origin, partition, 4, 4);
PIN(ecf_origin, offset, 8, 8);
PIN(ecf_origin, topic, 16, 8);
PIN_SIZE(ecf_origin, 24);

PIN(ecf_header, name, 0, 8);
PIN(ecf_header, value, 8, 8);
PIN(ecf_header, value_len, 16, 4);
PIN_SIZE(ecf_header, 24);

PIN(ecf_message, payload, 0, 8);
PIN(ecf_message, key, 8, 8);
PIN(ecf_message, payload_len, 16, 4);
PIN(ecf_message, key_len, 20, 4);
PIN(ecf_message, event_time_us, 24, 8);
PIN(ecf_message, ingest_time_us, 32, 8);
PIN(ecf_message, origin, 40, 24);
PIN(ecf_message, token, 64, 8);
PIN(ecf_message, headers, 72, 8);
PIN(ecf_message, n_headers, 80, 4);
PIN_SIZE(ecf_message, 88);

/* struct_size 0 means the 1.0 layout, which ends where ingest_time_us (1.1) starts. */
PIN(ecf_message_init, struct_size, 0, 4);
PIN(ecf_message_init, payload, 8, 8);
PIN(ecf_message_init, payload_len, 16, 8);
PIN(ecf_message_init, key, 24, 8);
PIN(ecf_message_init, key_len, 32, 8);
PIN(ecf_message_init, event_time_us, 40, 8);
PIN(ecf_message_init, origin, 48, 24);
PIN(ecf_message_init, token, 72, 8);
PIN(ecf_message_init, parent, 80, 8);
PIN(ecf_message_init, headers, 88, 8);
PIN(ecf_message_init, n_headers, 96, 8);
PIN(ecf_message_init, ingest_time_us, 104, 8); /* 1.1 */
PIN_SIZE(ecf_message_init, 112);

PIN(ecf_kv, key, 0, 8);
PIN(ecf_kv, value, 8, 8);
PIN_SIZE(ecf_kv, 16);

PIN(ecf_option, name, 0, 8);
PIN(ecf_option, type, 8, 4);
PIN(ecf_option, offset, 16, 8);
PIN(ecf_option, def, 24, 8);
PIN(ecf_option, flags, 32, 4);
PIN(ecf_option, min, 40, 8);
PIN(ecf_option, max, 48, 8);
PIN(ecf_option, choices, 56, 8);
PIN(ecf_option, help, 64, 8);
PIN_SIZE(ecf_option, 72);

PIN(ecf_plugin, abi_major, 0, 4);
PIN(ecf_plugin, abi_minor, 4, 4);
PIN(ecf_plugin, size, 8, 4);
PIN(ecf_plugin, name, 16, 8);
PIN(ecf_plugin, kind, 24, 4);
PIN(ecf_plugin, version, 32, 8);
PIN(ecf_plugin, summary, 40, 8);
PIN(ecf_plugin, ports, 48, 8);
PIN(ecf_plugin, config_size, 56, 8);
PIN(ecf_plugin, options, 64, 8);
PIN(ecf_plugin, tick_interval_us, 72, 8);
PIN(ecf_plugin, create, 80, 8);
PIN(ecf_plugin, start, 88, 8);
PIN(ecf_plugin, run, 96, 8);
PIN(ecf_plugin, process, 104, 8);
PIN(ecf_plugin, tick, 112, 8);
PIN(ecf_plugin, flush, 120, 8);
PIN(ecf_plugin, stop, 128, 8);
PIN(ecf_plugin, destroy, 136, 8);
PIN(ecf_plugin, resume_position, 144, 8);
PIN(ecf_plugin, command_group, 152, 8); /* 1.3 */
PIN(ecf_plugin, command_help, 160, 8);  /* 1.3 */
PIN(ecf_plugin, command, 168, 8);       /* 1.3 */
PIN_SIZE(ecf_plugin, 176);

PIN(ecf_host, config, 16, 8);
PIN_SIZE(ecf_host, 344);
PIN_SIZE(ecf_stage_head, 16);

/* Apache Arrow's C Data Interface: its layout is Arrow's, not ours to change. */
PIN(struct ArrowSchema, format, 0, 8);
PIN(struct ArrowSchema, flags, 24, 8);
PIN(struct ArrowSchema, children, 40, 8);
PIN(struct ArrowSchema, release, 56, 8);
PIN(struct ArrowSchema, private_data, 64, 8);
PIN_SIZE(struct ArrowSchema, 72);
PIN(struct ArrowArray, length, 0, 8);
PIN(struct ArrowArray, n_buffers, 24, 8);
PIN(struct ArrowArray, buffers, 40, 8);
PIN(struct ArrowArray, release, 64, 8);
PIN(struct ArrowArray, private_data, 72, 8);
PIN_SIZE(struct ArrowArray, 80);
#endif

/* ---------------------------------------------------------------- running */

typedef struct {
    const char *name;
    size_t offset;
    uint32_t since;
} host_member;

#define HOST_ROW(member, slot, since) {#member, offsetof(ecf_host, member), since},
static const host_member host_members[] = {ECF_HOST_MEMBERS(HOST_ROW)};

static void *host_slot(const ecf_host *h, size_t offset)
{
    void *fn;
    memcpy(&fn, (const char *)h + offset, sizeof fn);
    return fn;
}

/* A stage of a real pipeline, so the host table is the one plugins get. */
static void test_core_fills_every_member(void)
{
    g_autoptr(GPtrArray) errors = g_ptr_array_new_with_free_func(g_free);
    ecf_registry *reg = ecf_registry_new(NULL);
    ecf_pipeline_def *def = ecf_pipeline_load_string(
        "abi.yaml", "stages:\n  src: {plugin: source-generate, count: 1}\n", NULL, reg, errors);
    for (guint i = 0; !def && i < errors->len; i++)
        g_printerr("%s\n", (char *)errors->pdata[i]); /* ECFLOW_PLUGIN_PATH unset? */
    g_assert_nonnull(def);
    ecf_runtime *rt = ecf_runtime_new(def);
    ecf_stage *s = ecf_stage_new(rt, def->order->pdata[0]);

    const ecf_stage_head *head = (const ecf_stage_head *)(const void *)s;
    g_assert_cmpuint(head->size, ==, sizeof(ecf_stage_head));
    const ecf_host *h = ecf_host_of(s);
    g_assert_cmpuint(h->size, ==, sizeof(ecf_host));
    g_assert_cmpuint(h->abi_major, ==, ECF_ABI_MAJOR);
    g_assert_cmpuint(h->abi_minor, ==, ECF_ABI_MINOR);
    for (size_t i = 0; i < G_N_ELEMENTS(host_members); i++) {
        if (!host_slot(h, host_members[i].offset))
            g_error("the core's host table leaves ecf_host.%s NULL", host_members[i].name);
    }

    ecf_stage_free(s);
    ecf_runtime_free(rt);
    ecf_pipeline_def_free(def);
    ecf_registry_free(reg);
}

ECF_PLUGIN_DEFINE(.name = "abi-probe", .kind = ECF_SINK, .version = "0.0.0", );

static void test_plugin_define_stamps_the_abi(void)
{
    const ecf_plugin *p = ecf_plugin_entry();
    g_assert_cmpuint(p->abi_major, ==, ECF_ABI_MAJOR);
    g_assert_cmpuint(p->abi_minor, ==, ECF_ABI_MINOR);
    g_assert_cmpuint(p->size, ==, sizeof(ecf_plugin));
    g_assert_cmpstr(p->name, ==, "abi-probe");
    g_assert_null(p->resume_position); /* callbacks a plugin leaves out read as NULL */
    g_assert_cmpstr(ECF_PLUGIN_ENTRY_SYMBOL, ==, "ecf_plugin_entry");
}

static int status_calls;

static void count_status(ecf_stage *s, ecf_metric *m, const char *label) { status_calls++; }

/* A 1.1 wrapper on a 1.0 host: the table ends before metric_status. */
static void test_newer_wrapper_skips_an_older_host(void)
{
    ecf_host host = {.metric_status = count_status};
    ecf_stage_head head = {.size = sizeof head, .host = &host};
    ecf_stage *s = (ecf_stage *)(void *)&head;
    ecf_metric *m = (ecf_metric *)(void *)&host; /* any non-NULL handle */

    host.size = (uint32_t)offsetof(ecf_host, metric_status);
    ecf_metric_status(s, m, "lag");
    g_assert_cmpint(status_calls, ==, 0);

    host.size = sizeof(ecf_host);
    ecf_metric_status(s, m, "lag");
    g_assert_cmpint(status_calls, ==, 1);
}

static int bucket_calls;
static char *logged;

static ecf_status count_buckets(ecf_stage *s, ecf_metric *m, const double *b, uint32_t n)
{
    bucket_calls++;
    return ECF_OK;
}

static void record_log(ecf_stage *s, ecf_log_level level, const char *fmt, va_list ap)
{
    g_free(logged);
    logged = g_strdup_vprintf(fmt, ap);
}

/* The 1.3 wrappers on a 1.2 host: buckets stay the default, an event
 * becomes one plain line with its fields. */
static void test_1_3_wrappers_on_a_1_2_host(void)
{
    ecf_host host = {.metric_buckets = count_buckets, .log = record_log};
    host.size = (uint32_t)offsetof(ecf_host, metric_buckets);
    ecf_stage_head head = {.size = sizeof head, .host = &host};
    ecf_stage *s = (ecf_stage *)(void *)&head;
    ecf_metric *m = (ecf_metric *)(void *)&host;
    const double b[] = {1, 2};

    g_assert_cmpint(ecf_metric_buckets(s, m, b, 2), ==, ECF_ERR_UNAVAILABLE);
    g_assert_cmpint(bucket_calls, ==, 0);
    ecf_log_event(s, ECF_LOG_INFO, "commit", (const char *const[]){"rows", "10", "files", "2", NULL});
    g_assert_cmpstr(logged, ==, "event=commit rows=10 files=2");

    host.size = sizeof(ecf_host);
    g_assert_cmpint(ecf_metric_buckets(s, m, b, 2), ==, ECF_OK);
    g_assert_cmpint(bucket_calls, ==, 1);
    g_clear_pointer(&logged, g_free);
}

static char *set_error_text;

static void record_error(ecf_stage *s, const char *fmt, va_list ap)
{
    g_free(set_error_text);
    set_error_text = g_strdup_vprintf(fmt, ap);
}

/* ecf_fail (1.2) is header only: it calls set_error (1.0), so a 1.0 host,
 * whose table ends before metric_status, serves it. */
static void test_fail_runs_on_a_1_0_host(void)
{
    ecf_host host = {.set_error = record_error};
    host.size = (uint32_t)offsetof(ecf_host, metric_status);
    ecf_stage_head head = {.size = sizeof head, .host = &host};
    ecf_stage *s = (ecf_stage *)(void *)&head;

    g_assert_cmpint(ecf_fail(s, ECF_ERR_IO, "cannot open '%s'", "x.ndjson"), ==, ECF_ERR_IO);
    g_assert_cmpstr(set_error_text, ==, "cannot open 'x.ndjson'");
    g_assert_cmpint(ecf_fail(s, ECF_ERR_FATAL, "gone"), ==, ECF_ERR_FATAL);
    g_assert_cmpint(ecf_fail(s, ECF_OK, "no reason"), ==, ECF_ERR_INTERNAL); /* never OK */
    g_assert_cmpint(ecf_error(s, "option 'x': bad"), ==, ECF_ERR_CONFIG);
    g_assert_cmpstr(set_error_text, ==, "option 'x': bad");
    g_clear_pointer(&set_error_text, g_free);
}

typedef struct {
    ecf_kv *props;
} secret_map_config;

/* ECF_OPT_SECRET_MAP (1.2) is the entry a 1.0 plugin wrote by hand. */
static void test_secret_map_is_a_flagged_map(void)
{
    const ecf_option o = ECF_OPT_SECRET_MAP("kafka", secret_map_config, props, "help");
    g_assert_cmpint(o.type, ==, ECF_OPT_T_MAP);
    g_assert_cmpint(o.flags, ==, ECF_SECRET);
    g_assert_null(o.def);
    g_assert_cmpfloat(o.min, >, o.max); /* no range */
}

static void test_message_init_starts_as_the_1_0_layout(void)
{
    ecf_message_init m = {.payload = "x", .payload_len = 1};
    g_assert_cmpuint(m.struct_size, ==, 0); /* what a designated initializer leaves */
    g_assert_cmpint(m.ingest_time_us, ==, 0);
}

static void test_every_status_has_a_name(void)
{
    for (int st = 0; st < ECF_STATUS_COUNT_; st++) {
        const char *name = ecf_status_str((ecf_status)st);
        g_assert_cmpstr(name, !=, "unknown status");
        for (int other = 0; other < st; other++)
            g_assert_cmpstr(name, !=, ecf_status_str((ecf_status)other));
    }
    g_assert_cmpstr(ecf_status_str(ECF_STATUS_COUNT_), ==, "unknown status");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/abi/the-core-fills-every-host-member-it-advertises", test_core_fills_every_member);
    g_test_add_func("/abi/plugin-define-stamps-version-and-size", test_plugin_define_stamps_the_abi);
    g_test_add_func("/abi/a-newer-member-wrapper-leaves-an-older-host-alone", test_newer_wrapper_skips_an_older_host);
    g_test_add_func("/abi/1.3-wrappers-fall-back-on-a-1.2-host", test_1_3_wrappers_on_a_1_2_host);
    g_test_add_func("/abi/ecf-fail-returns-its-status-on-a-1.0-host", test_fail_runs_on_a_1_0_host);
    g_test_add_func("/abi/a-secret-map-is-a-map-flagged-secret", test_secret_map_is_a_flagged_map);
    g_test_add_func("/abi/a-designated-message-init-is-the-1.0-layout", test_message_init_starts_as_the_1_0_layout);
    g_test_add_func("/abi/every-status-has-its-own-name", test_every_status_has_a_name);
    return g_test_run();
}
