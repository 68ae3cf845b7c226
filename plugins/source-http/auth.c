/*
 * API keys. Only SHA-256 digests of the keys are kept: comparing digests of
 * equal length in constant time hides both the content and the length of
 * the keys, and a memory dump of the process holds no key.
 */
#define _GNU_SOURCE
#include "source_http.h"

#include <stdlib.h>
#include <string.h>

#define DIGEST_LEN 32
#define MAX_KEY_LEN 4096

struct api_keys {
    GArray *digests; /* guint8[DIGEST_LEN] each */
};

static void digest_of(const char *s, size_t n, guint8 out[DIGEST_LEN])
{
    GChecksum *c = g_checksum_new(G_CHECKSUM_SHA256);
    gsize len = DIGEST_LEN;
    g_checksum_update(c, (const guchar *)s, n);
    g_checksum_get_digest(c, out, &len);
    g_checksum_free(c);
}

static void add_key(api_keys *k, const char *s, size_t n)
{
    while (n && g_ascii_isspace(*s)) {
        s++;
        n--;
    }
    while (n && g_ascii_isspace(s[n - 1]))
        n--;
    if (n == 0 || s[0] == '#')
        return;
    guint8 d[DIGEST_LEN];
    digest_of(s, n, d);
    g_array_append_vals(k->digests, d, DIGEST_LEN);
}

static void add_keys_split(api_keys *k, char *text, char sep)
{
    char *p = text;
    while (*p) {
        char *end = strchr(p, sep);
        size_t n = end ? (size_t)(end - p) : strlen(p);
        add_key(k, p, n);
        p += n + (end ? 1 : 0);
    }
}

/* Keys read from each environment variable, as digests: the variable itself
 * is wiped once read (the environment is readable in /proc/PID/environ, is
 * inherited by children and ends up in crash reports), so a second stage
 * naming the same variable finds its keys here. Stages are created on one
 * thread, before the pipeline's threads start. */
static GHashTable *env_digests; /* name -> GArray of digests */

static void wipe_env(const char *name)
{
    char *v = getenv(name);
    if (v)
        explicit_bzero(v, strlen(v)); /* the bytes /proc/PID/environ shows */
    g_unsetenv(name);
}

static bool add_env_keys(api_keys *k, const char *name, GString *err)
{
    GArray *seen = env_digests ? g_hash_table_lookup(env_digests, name) : NULL;
    if (seen) {
        g_array_append_vals(k->digests, seen->data, seen->len);
        return true;
    }
    const char *v = g_getenv(name);
    if (!v || !*v) {
        g_string_printf(err, "option 'api_keys_env': environment variable %s is not set", name);
        return false;
    }
    api_keys mine = {g_array_new(FALSE, FALSE, 1)};
    char *copy = g_strdup(v);
    add_keys_split(&mine, copy, ',');
    explicit_bzero(copy, strlen(copy));
    g_free(copy);
    wipe_env(name);
    g_array_append_vals(k->digests, mine.digests->data, mine.digests->len);
    if (!env_digests)
        env_digests = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_array_unref);
    g_hash_table_insert(env_digests, g_strdup(name), mine.digests);
    return true;
}

ecf_status api_keys_load(const char *file, const char *env_name, api_keys **out, GString *err)
{
    *out = NULL;
    if (!file && !env_name)
        return ECF_OK;
    api_keys *k = g_new0(api_keys, 1);
    k->digests = g_array_new(FALSE, FALSE, 1);
    if (file) {
        char *text = NULL;
        gsize len = 0;
        GError *gerr = NULL;
        if (!g_file_get_contents(file, &text, &len, &gerr)) {
            g_string_printf(err, "option 'api_keys_file': cannot read %s: %s", file, gerr->message);
            g_error_free(gerr);
            api_keys_free(k);
            return ECF_ERR_CONFIG;
        }
        add_keys_split(k, text, '\n');
        explicit_bzero(text, len);
        g_free(text);
    }
    if (env_name && !add_env_keys(k, env_name, err)) {
        api_keys_free(k);
        return ECF_ERR_CONFIG;
    }
    /* Keys were asked for: an empty list must not mean "open to all". */
    if (k->digests->len == 0) {
        g_string_printf(err, "API keys are configured (%s%s%s) but none was found", file ? "api_keys_file" : "",
                        file && env_name ? ", " : "", env_name ? "api_keys_env" : "");
        api_keys_free(k);
        return ECF_ERR_CONFIG;
    }
    *out = k;
    return ECF_OK;
}

bool api_keys_check(const api_keys *keys, const char *presented)
{
    if (!keys)
        return true;
    if (!presented)
        return false;
    size_t n = strnlen(presented, MAX_KEY_LEN + 1);
    if (n == 0 || n > MAX_KEY_LEN)
        return false;
    guint8 d[DIGEST_LEN];
    digest_of(presented, n, d);
    /* No early exit: every key costs the same whether it matches or not. */
    unsigned match = 0;
    for (guint off = 0; off < keys->digests->len; off += DIGEST_LEN) {
        const guint8 *s = (const guint8 *)keys->digests->data + off;
        unsigned diff = 0;
        for (int i = 0; i < DIGEST_LEN; i++)
            diff |= (unsigned)(s[i] ^ d[i]);
        match |= (unsigned)(diff == 0);
    }
    return match != 0;
}

guint api_keys_count(const api_keys *keys) { return keys ? keys->digests->len / DIGEST_LEN : 0; }

void api_keys_free(api_keys *keys)
{
    if (!keys)
        return;
    g_array_free(keys->digests, TRUE);
    g_free(keys);
}

const char *api_key_presented(struct MHD_Connection *conn)
{
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (auth && g_ascii_strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return auth;
    }
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key");
}
