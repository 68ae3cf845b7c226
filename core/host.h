/*
 * The host services table (`ecf_host` in <ecflow/plugin.h>): what a plugin
 * calls on its stage — config and state, logging, clocks, metrics,
 * batches, emit, ack tokens, readiness, schemas, resume positions.
 */
#pragma once
#include "stage.h"

/* Every stage's `head.host` points here. */
extern const ecf_host ecf_host_table;

/* Settles the message's token as failed with `st` (ECF_OK counts as
 * ECF_ERR_INTERNAL) and `reason`; a message without a token is left alone. */
void ecf_host_nack(ecf_stage *s, ecf_message *m, ecf_status st, const char *reason);
