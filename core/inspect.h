/*
 * A plugin described for people, from its descriptor alone: what
 * `ecflow plugins inspect` prints. Text for a terminal; Markdown for the
 * options reference (docs/options.md is this output for the shipped
 * plugins, so it cannot drift from their option tables).
 */
#pragma once
#include <glib.h>

#include "loader.h"

/* One plugin: name, version, kind, file, ABI, ports, then each option. */
void ecf_inspect_text(GString *out, const ecf_loaded_plugin *lp);

/* A Markdown document: a title, how to read the tables, an index, then
 * one section per plugin (summary, kind, version, ports and a table of its
 * options), in the order given. Nothing in it depends on the machine. */
void ecf_inspect_markdown(GString *out, const ecf_loaded_plugin *const *plugins, guint n);
