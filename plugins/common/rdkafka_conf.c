#include "rdkafka_conf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Values of these librdkafka keys never appear in a message we print. */
static bool key_is_secret(const char *key)
{
    static const char *const marks[] = {
        "password", "secret", "jaas", ".pem", "ssl_key", "oauthbearer.config", "token",
    };
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        if (strstr(key, marks[i]))
            return true;
    }
    return false;
}

/* Copies errstr into out with every occurrence of value replaced by "***". */
static void mask_value(const char *errstr, const char *value, char *out, size_t outsz)
{
    size_t vlen = value ? strlen(value) : 0;
    size_t o = 0;
    for (const char *p = errstr; *p && o + 1 < outsz;) {
        if (vlen && strncmp(p, value, vlen) == 0) {
            if (o + 4 > outsz)
                break;
            memcpy(out + o, "***", 3);
            o += 3;
            p += vlen;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
}

/* Sets one property; `origin` names the option the user wrote for the error. */
bool ecf_rdkafka_conf_set(ecf_stage *stage, rd_kafka_conf_t *conf, const char *origin, const char *key,
                          const char *value)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, key, value, errstr, sizeof errstr) == RD_KAFKA_CONF_OK)
        return true;
    char shown[512];
    mask_value(errstr, key_is_secret(key) ? value : NULL, shown, sizeof shown);
    ecf_error(stage, "option '%s': librdkafka rejected it: %s", origin, shown);
    return false;
}

bool ecf_rdkafka_conf_set_int(ecf_stage *stage, rd_kafka_conf_t *conf, const char *origin, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return ecf_rdkafka_conf_set(stage, conf, origin, key, buf);
}
