/*
 * Who runs table maintenance (maintenance.h) for sink-iceberg: a background
 * thread beside the sink's commits, every maintenance_interval, with its own
 * view of the table; and the operator's `ecflow table VERB PIPELINE.yaml`.
 * Both take their settings from the stage's options.
 */
#ifndef ECF_ICEBERG_UPKEEP_H
#define ECF_ICEBERG_UPKEEP_H

#include "maintenance.h"

#include <ecflow/plugin.h>

typedef struct {
    ecf_stage *stage;       /* logs and metrics */
    catalog_ref ref;        /* the table; borrowed, outlives the upkeep */
    maint_options opt;      /* now_ms and cancel are set per run */
    int64_t interval_us;    /* between runs */
    int64_t clean_every_us; /* the orphan walk lists the whole table: less often */
} upkeep_config;

typedef struct upkeep upkeep;

/* Starts the thread (its first run after one interval). */
upkeep *upkeep_start(const upkeep_config *c);
/* Cancels the current step at its next file, joins; NULL is fine. */
void upkeep_stop(upkeep *u);

extern const char upkeep_command_help[];
/* `ecflow table compact|expire|clean|stats|all [--dry-run]`. */
ecf_status upkeep_command(const upkeep_config *c, int argc, const char *const *argv);

#endif
