/* sink-iceberg's Avro container reader (manifests, manifest lists). */
#include "avro_container.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    avro_file f;
    char err[256];
    avro_file_read(data, size, &f, err, sizeof err);
    avro_file_clear(&f);
    return 0;
}
