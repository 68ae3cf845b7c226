/* Table maintenance in the background and on the command line: see upkeep.h. */
#include "upkeep.h"

#include <glib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct upkeep {
    upkeep_config c;
    GThread *thread;
    GMutex lock;
    GCond wake;
    gint stop; /* also maint_options.cancel */
    ecf_metric *m_runs, *m_failures, *m_rewritten, *m_written, *m_expired, *m_orphans, *m_files, *m_seconds;
};

static bool wait_interval(upkeep *u)
{
    g_mutex_lock(&u->lock);
    int64_t until = g_get_monotonic_time() + u->c.interval_us;
    while (!g_atomic_int_get(&u->stop))
        if (!g_cond_wait_until(&u->wake, &u->lock, until))
            break;
    g_mutex_unlock(&u->lock);
    return !g_atomic_int_get(&u->stop);
}

/* One line per step that changed something or failed; quiet otherwise. */
static void log_step(upkeep *u, bool ok, bool changed, const char *what, char *err,
                     void (*report)(const maint_report *, GString *), const maint_report *r)
{
    if (!ok) {
        ecf_metric_add(u->c.stage, u->m_failures, 1);
        ecf_log(u->c.stage, ECF_LOG_WARN, "table maintenance: %s failed (tried again next run): %s", what,
                err ? err : "unknown error");
        return;
    }
    if (r->note)
        ecf_log(u->c.stage, ECF_LOG_WARN, "table maintenance: %s", r->note);
    if (!changed)
        return;
    g_autoptr(GString) s = g_string_new("table maintenance: ");
    report(r, s);
    ecf_log(u->c.stage, ECF_LOG_INFO, "%s", s->str);
}

static void run_once(upkeep *u, ice_table *t, bool clean)
{
    int64_t t0 = g_get_monotonic_time();
    char *err = NULL;
    if (!table_reload(t, &err)) {
        log_step(u, false, false, "loading the table", err, NULL, NULL);
        g_free(err);
        return;
    }
    maint_options o = u->c.opt;
    o.cancel = &u->stop;
    o.now_ms = g_get_real_time() / 1000;
    maint_report r = MAINT_REPORT_INIT;
    bool ok = maint_compact(t, &o, &r, &err);
    log_step(u, ok, r.files_rewritten > 0 || r.manifests_after != r.manifests_before, "compaction", err,
             maint_report_compact, &r);
    ecf_metric_add(u->c.stage, u->m_rewritten, r.files_rewritten);
    ecf_metric_add(u->c.stage, u->m_written, r.files_written);
    ecf_metric_set(u->c.stage, u->m_files, (double)r.files_after);
    g_clear_pointer(&err, g_free);
    maint_report_clear(&r);
    if (!g_atomic_int_get(&u->stop)) {
        o.now_ms = g_get_real_time() / 1000;
        ok = maint_expire(t, &o, &r, &err);
        log_step(u, ok, r.snapshots_after != r.snapshots_before, "snapshot expiry", err, maint_report_expire, &r);
        ecf_metric_add(u->c.stage, u->m_expired, r.snapshots_before - r.snapshots_after);
        g_clear_pointer(&err, g_free);
        maint_report_clear(&r);
    }
    if (clean && !g_atomic_int_get(&u->stop)) {
        o.now_ms = g_get_real_time() / 1000;
        ok = maint_clean(t, &o, &r, &err);
        log_step(u, ok, r.orphans_removed > 0, "orphan removal", err, maint_report_clean, &r);
        ecf_metric_add(u->c.stage, u->m_orphans, r.orphans_removed);
        g_clear_pointer(&err, g_free);
        maint_report_clear(&r);
    }
    ecf_metric_add(u->c.stage, u->m_runs, 1);
    ecf_metric_observe(u->c.stage, u->m_seconds, (double)(g_get_monotonic_time() - t0) / 1e6);
}

static gpointer upkeep_main(gpointer p)
{
    upkeep *u = p;
    ice_table t = {0};
    catalog_table_init(&t.cat, &u->c.ref);
    int64_t last_clean = 0;
    while (wait_interval(u)) {
        int64_t now = g_get_monotonic_time();
        bool clean = last_clean == 0 || now - last_clean >= u->c.clean_every_us;
        if (clean)
            last_clean = now;
        run_once(u, &t, clean);
    }
    table_close(&t);
    return NULL;
}

upkeep *upkeep_start(const upkeep_config *c)
{
    upkeep *u = g_new0(upkeep, 1);
    u->c = *c;
    g_mutex_init(&u->lock);
    g_cond_init(&u->wake);
    ecf_stage *s = c->stage;
    u->m_runs = ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_maintenance_runs_total", "Table maintenance runs");
    u->m_failures = ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_maintenance_failures_total",
                                   "Maintenance steps that failed (tried again next run)");
    u->m_rewritten = ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_compacted_input_files_total",
                                    "Small data files rewritten by compaction");
    u->m_written =
        ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_compacted_output_files_total", "Data files compaction wrote");
    u->m_expired =
        ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_expired_snapshots_total", "Snapshots removed by expiry");
    u->m_orphans = ecf_metric_new(s, ECF_METRIC_COUNTER, "iceberg_orphan_files_removed_total",
                                  "Unreferenced files older than orphan_age removed");
    u->m_files = ecf_metric_new(s, ECF_METRIC_GAUGE, "iceberg_table_data_files",
                                "Data files in the current snapshot, as the last maintenance run saw it");
    u->m_seconds = ecf_metric_new(s, ECF_METRIC_HISTOGRAM, "iceberg_maintenance_seconds", "Time of a maintenance run");
    u->thread = g_thread_new("ice:upkeep", upkeep_main, u);
    return u;
}

void upkeep_stop(upkeep *u)
{
    if (!u)
        return;
    g_mutex_lock(&u->lock);
    g_atomic_int_set(&u->stop, 1);
    g_cond_broadcast(&u->wake);
    g_mutex_unlock(&u->lock);
    g_thread_join(u->thread);
    g_mutex_clear(&u->lock);
    g_cond_clear(&u->wake);
    g_free(u);
}

/* ------------------------------------------------------------ command */

const char upkeep_command_help[] =
    "  compact  rewrite small data files per partition and merge manifests (one replace snapshot)\n"
    "  expire   remove snapshots past snapshot_keep_last / snapshot_max_age, and the files only they used\n"
    "  clean    remove files no snapshot references that are older than orphan_age\n"
    "  stats    files, rows, bytes and a size histogram per partition; snapshots and manifests\n"
    "  all      compact, expire, clean\n"
    "  --dry-run: say what would be done, change nothing. Settings come from the stage's options.";

static bool command_step(const char *verb, ice_table *t, maint_options *o, bool *failed)
{
    maint_report r = MAINT_REPORT_INIT;
    char *err = NULL;
    bool ok;
    g_autoptr(GString) s = g_string_new(o->dry_run ? "(dry run) " : "");
    o->now_ms = g_get_real_time() / 1000;
    if (strcmp(verb, "compact") == 0) {
        ok = maint_compact(t, o, &r, &err);
        maint_report_compact(&r, s);
    } else if (strcmp(verb, "expire") == 0) {
        ok = maint_expire(t, o, &r, &err);
        maint_report_expire(&r, s);
    } else {
        ok = maint_clean(t, o, &r, &err);
        maint_report_clean(&r, s);
    }
    if (ok)
        printf("%s\n", s->str);
    else
        fprintf(stderr, "%s failed: %s\n", verb, err ? err : "unknown error");
    if (r.note)
        fprintf(stderr, "warning: %s\n", r.note);
    *failed |= !ok;
    g_free(err);
    maint_report_clear(&r);
    return ok;
}

ecf_status upkeep_command(const upkeep_config *c, int argc, const char *const *argv)
{
    const char *verb = argc > 0 ? argv[0] : "";
    maint_options o = c->opt;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0)
            o.dry_run = true;
        else
            return ecf_error(c->stage, "ecflow table %s: unknown argument '%s' (see ecflow table --help)", verb,
                             argv[i]);
    }
    bool all = strcmp(verb, "all") == 0;
    if (!all && strcmp(verb, "compact") != 0 && strcmp(verb, "expire") != 0 && strcmp(verb, "clean") != 0 &&
        strcmp(verb, "stats") != 0)
        return ecf_error(c->stage, "ecflow table: unknown verb '%s' (compact, expire, clean, stats, all)", verb);
    ice_table t = {0};
    catalog_table_init(&t.cat, &c->ref);
    char *err = NULL;
    if (!table_reload(&t, &err)) {
        ecf_status s = ecf_fail(c->stage, ECF_ERR_IO, "%s", err);
        g_free(err);
        table_close(&t);
        return s;
    }
    printf("table %s\n", c->ref.rest ? t.cat.metadata_file : t.cat.location);
    bool failed = false;
    if (strcmp(verb, "stats") == 0) {
        g_autoptr(GString) s = g_string_new(NULL);
        if (maint_stats(&t, &o, s, &err))
            fputs(s->str, stdout);
        else
            failed = true;
    } else if (all) {
        const char *steps[] = {"compact", "expire", "clean"};
        for (size_t i = 0; i < G_N_ELEMENTS(steps); i++)
            command_step(steps[i], &t, &o, &failed);
    } else {
        command_step(verb, &t, &o, &failed);
    }
    table_close(&t);
    fflush(stdout);
    if (failed) {
        ecf_status s = ecf_fail(c->stage, ECF_ERR_IO, "ecflow table %s: %s", verb, err ? err : "failed (see above)");
        g_free(err);
        return s;
    }
    return ECF_OK;
}
