/* sink-iceberg's Parquet reader (maintenance rewrites): every chunk decoded. */
#include "parquet_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return pq_reader_fuzz_one(data, size); }
