/*
 * Iceberg bounds: the single-value serialization of lower/upper bounds and
 * partition values (spec Appendix D), and the truncation of string and binary
 * bounds to a prefix the way Iceberg's truncateStringMin/Max and
 * truncateBinaryMin/Max do. Shared by the Parquet writer's per-file metrics
 * and the partition values of manifests.
 */
#ifndef ECF_ICEBERG_BOUNDS_H
#define ECF_ICEBERG_BOUNDS_H

#include "byte_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Code points (strings) or bytes (binary) a truncated bound keeps. */
#define ICE_BOUND_CODE_POINTS 16

void ice_bound_from_i32(byte_buf *b, int32_t v);
void ice_bound_from_i64(byte_buf *b, int64_t v);
void ice_bound_from_decimal(byte_buf *b, __int128 unscaled);

/* Lower bound of a string: its first ICE_BOUND_CODE_POINTS UTF-8 code points. */
void ice_bound_string_lower(byte_buf *out, const uint8_t *p, size_t n);
/* Upper bound of a string: itself when short enough, else the prefix with its
 * last code point that can grow incremented; false when none can. */
bool ice_bound_string_upper(byte_buf *out, const uint8_t *p, size_t n);
/* The same for binary, by bytes. */
void ice_bound_binary_lower(byte_buf *out, const uint8_t *p, size_t n);
bool ice_bound_binary_upper(byte_buf *out, const uint8_t *p, size_t n);

#endif
