/* Iceberg REST catalog client: see catalog_rest.h. */
#include "catalog_rest.h"

#include <glib.h>
#include <json-glib/json-glib.h>
#include <string.h>

#define TOKEN_MARGIN_US (60 * G_USEC_PER_SEC) /* refresh this long before expiry */

struct rest_catalog {
    http_client *http;
    http_client_options hopt;
    char *uri;  /* no trailing '/' */
    char *base; /* <uri>/v1[/<prefix>] */
    char *warehouse;
    char *credential; /* secret */
    char *oauth2_uri;
    char *scope;
    /* the token: the stage's thread commits while a source's thread may load
     * the table (resume positions), so it is guarded */
    GMutex auth_lock;
    char *auth;              /* "Authorization: Bearer ..." (secret), NULL without auth */
    int64_t auth_expires_us; /* monotonic; 0: does not expire (or unknown) */
    char **headers;          /* extra */
};

/* ------------------------------------------------------------ JSON helpers */

static JsonNode *parse_json(const byte_buf *b)
{
    if (!b->len)
        return NULL;
    JsonParser *p = json_parser_new();
    JsonNode *root = NULL;
    if (json_parser_load_from_data(p, (const char *)b->data, (gssize)b->len, NULL) && json_parser_get_root(p))
        root = json_node_copy(json_parser_get_root(p));
    g_object_unref(p);
    return root;
}

static char *node_to_string(JsonNode *n)
{
    JsonGenerator *g = json_generator_new();
    json_generator_set_root(g, n);
    char *s = json_generator_to_data(g, NULL);
    g_object_unref(g);
    return s;
}

/* "HTTP 409 CommitFailedException: Requirement failed: ..." from an
 * ErrorModel answer, or the transport error. */
static char *describe(const char *what, const http_resp *r)
{
    if (r->status == 0)
        return g_strdup_printf("%s: %s", what, r->error ? r->error : "no answer");
    g_autoptr(JsonNode) root = parse_json(&r->body);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    JsonObject *e =
        o && json_object_has_member(o, "error") && JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "error"))
            ? json_object_get_object_member(o, "error")
            : NULL;
    const char *type = e ? json_object_get_string_member_with_default(e, "type", NULL) : NULL;
    const char *msg = e ? json_object_get_string_member_with_default(e, "message", NULL) : NULL;
    if (!msg && o)
        msg = json_object_get_string_member_with_default(o, "error_description", NULL); /* OAuth2 */
    if (!type && o)
        type = json_object_get_string_member_with_default(o, "error", NULL);
    return g_strdup_printf("%s: HTTP %ld%s%s%s%s", what, r->status, type ? " " : "", type ? type : "", msg ? ": " : "",
                           msg ? msg : "");
}

/* ------------------------------------------------------------ requests */

static void wipe_secret(char *s)
{
    if (s)
        memset(s, 0, strlen(s));
    g_free(s);
}

static bool fetch_token(rest_catalog *c, char **err)
{
    const char *colon = strchr(c->credential, ':');
    g_autofree char *id = colon ? g_strndup(c->credential, (gsize)(colon - c->credential)) : g_strdup("");
    g_autofree char *eid = http_escape(id, false);
    g_autofree char *esecret = http_escape(colon ? colon + 1 : c->credential, false);
    g_autofree char *escope = http_escape(c->scope, false);
    g_autofree char *form =
        g_strdup_printf("grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s", eid, esecret, escope);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    http_req r = {.method = "POST", .url = c->oauth2_uri, .headers = headers, .body = form, .body_len = strlen(form)};
    http_resp resp = {0};
    bool ok = http_do(c->http, &r, &resp) && resp.status == 200;
    memset(form, 0, strlen(form));
    memset(esecret, 0, strlen(esecret));
    if (!ok) {
        g_autofree char *what = g_strdup_printf("OAuth2 token from %s", c->oauth2_uri);
        *err = describe(what, &resp);
        http_resp_clear(&resp);
        return false;
    }
    g_autoptr(JsonNode) root = parse_json(&resp.body);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    const char *tok = o ? json_object_get_string_member_with_default(o, "access_token", NULL) : NULL;
    if (!tok) {
        *err = g_strdup_printf("OAuth2 token from %s: the answer has no access_token", c->oauth2_uri);
        http_resp_clear(&resp);
        return false;
    }
    g_free(c->auth);
    c->auth = g_strdup_printf("Authorization: Bearer %s", tok);
    gint64 expires = json_object_get_int_member_with_default(o, "expires_in", 0);
    c->auth_expires_us = expires > 0 ? g_get_monotonic_time() + expires * G_USEC_PER_SEC : 0;
    http_resp_clear(&resp);
    return true;
}

static bool token_due(const rest_catalog *c)
{
    return c->credential &&
           (!c->auth || (c->auth_expires_us && g_get_monotonic_time() > c->auth_expires_us - TOKEN_MARGIN_US));
}

/* One catalog call. A 401 with a credential fetches a new token and tries
 * once more (the old one may have been revoked or expired early). Returns
 * false only when the token could not be had (*err set); otherwise the
 * answer is in resp for the caller to judge. */
static bool call(rest_catalog *c, const char *method, const char *url, JsonNode *body, int max_attempts,
                 http_resp *resp, char **err)
{
    g_autofree char *text = body ? node_to_string(body) : NULL;
    for (int round = 0; round < 2; round++) {
        g_mutex_lock(&c->auth_lock);
        bool have = !(token_due(c) || round == 1) || fetch_token(c, err);
        char *auth = have ? g_strdup(c->auth) : NULL;
        g_mutex_unlock(&c->auth_lock);
        if (!have)
            return false;
        GPtrArray *h = g_ptr_array_new();
        if (auth)
            g_ptr_array_add(h, auth);
        if (text)
            g_ptr_array_add(h, "Content-Type: application/json");
        for (char **x = c->headers; x && *x; x++)
            g_ptr_array_add(h, *x);
        g_ptr_array_add(h, NULL);
        http_req r = {.method = method,
                      .url = url,
                      .headers = (const char *const *)h->pdata,
                      .body = text,
                      .body_len = text ? strlen(text) : 0,
                      .max_attempts = max_attempts};
        http_resp_clear(resp);
        http_do(c->http, &r, resp);
        g_ptr_array_free(h, TRUE);
        wipe_secret(auth);
        if (resp->status != 401 || !c->credential || round == 1)
            return true;
    }
    return true;
}

/* "a.b" -> "a%1Fb": multi-level namespaces in a path (the spec's unit separator) */
static char *ns_path(const char *ns)
{
    g_auto(GStrv) parts = g_strsplit(ns, ".", -1);
    GString *s = g_string_new(NULL);
    for (int i = 0; parts[i]; i++) {
        g_autofree char *e = http_escape(parts[i], false);
        if (i)
            g_string_append(s, "%1F");
        g_string_append(s, e);
    }
    return g_string_free(s, FALSE);
}

static JsonNode *ns_array(const char *ns)
{
    g_auto(GStrv) parts = g_strsplit(ns, ".", -1);
    JsonArray *a = json_array_new();
    for (int i = 0; parts[i]; i++)
        json_array_add_string_element(a, parts[i]);
    JsonNode *n = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(n, a);
    return n;
}

static char *table_url(const rest_catalog *c, const char *ns, const char *name)
{
    g_autofree char *n = ns_path(ns), *t = http_escape(name, false);
    return g_strdup_printf("%s/namespaces/%s/tables/%s", c->base, n, t);
}

/* ------------------------------------------------------------ connect */

static bool load_config(rest_catalog *c, char **err)
{
    g_autofree char *w = c->warehouse ? http_escape(c->warehouse, false) : NULL;
    g_autofree char *url =
        w ? g_strdup_printf("%s/v1/config?warehouse=%s", c->uri, w) : g_strdup_printf("%s/v1/config", c->uri);
    http_resp resp = {0};
    if (!call(c, "GET", url, NULL, 0, &resp, err)) {
        http_resp_clear(&resp);
        return false;
    }
    if (resp.status != 200) {
        g_autofree char *what = g_strdup_printf("Iceberg REST catalog %s (GET /v1/config)", c->uri);
        *err = describe(what, &resp);
        http_resp_clear(&resp);
        return false;
    }
    g_autoptr(JsonNode) root = parse_json(&resp.body);
    http_resp_clear(&resp);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    if (!o) {
        *err = g_strdup_printf("Iceberg REST catalog %s: GET /v1/config did not answer a JSON object", c->uri);
        return false;
    }
    /* overrides win over defaults; only the path prefix matters here */
    const char *prefix = NULL;
    const char *sections[] = {"overrides", "defaults"};
    for (size_t i = 0; i < G_N_ELEMENTS(sections) && !prefix; i++) {
        JsonNode *s = json_object_get_member(o, sections[i]);
        if (s && JSON_NODE_HOLDS_OBJECT(s))
            prefix = json_object_get_string_member_with_default(json_node_get_object(s), "prefix", NULL);
    }
    g_free(c->base);
    if (prefix && *prefix) {
        g_autofree char *p = http_escape(prefix, false);
        c->base = g_strdup_printf("%s/v1/%s", c->uri, p);
    } else {
        c->base = g_strdup_printf("%s/v1", c->uri);
    }
    return true;
}

rest_catalog *rest_catalog_new(const rest_options *o, char **err)
{
    if (!o->uri || !(g_str_has_prefix(o->uri, "http://") || g_str_has_prefix(o->uri, "https://"))) {
        *err = g_strdup_printf("catalog_uri: expected http[s]://HOST[:PORT][/PATH], got \"%s\"", o->uri ? o->uri : "");
        return NULL;
    }
    rest_catalog *c = g_new0(rest_catalog, 1);
    g_mutex_init(&c->auth_lock);
    c->hopt = o->http;
    c->http = http_client_new(&o->http);
    c->uri = g_strdup(o->uri);
    for (size_t l = strlen(c->uri); l && c->uri[l - 1] == '/'; l--)
        c->uri[l - 1] = 0;
    c->warehouse = o->warehouse && *o->warehouse ? g_strdup(o->warehouse) : NULL;
    c->credential = o->credential && *o->credential ? g_strdup(o->credential) : NULL;
    c->oauth2_uri =
        o->oauth2_uri && *o->oauth2_uri ? g_strdup(o->oauth2_uri) : g_strdup_printf("%s/v1/oauth/tokens", c->uri);
    c->scope = g_strdup(o->scope && *o->scope ? o->scope : "catalog");
    if (!c->credential && o->token && *o->token)
        c->auth = g_strdup_printf("Authorization: Bearer %s", o->token);
    c->headers = g_strdupv((char **)o->headers);
    if (!load_config(c, err)) {
        rest_catalog_free(c);
        return NULL;
    }
    return c;
}

void rest_catalog_free(rest_catalog *c)
{
    if (!c)
        return;
    http_client_free(c->http);
    g_free(c->uri);
    g_free(c->base);
    g_free(c->warehouse);
    wipe_secret(c->credential);
    g_free(c->oauth2_uri);
    g_free(c->scope);
    wipe_secret(c->auth);
    g_mutex_clear(&c->auth_lock);
    g_strfreev(c->headers);
    g_free(c);
}

/* ------------------------------------------------------------ namespaces */

int rest_catalog_namespace_exists(rest_catalog *c, const char *ns, char **err)
{
    g_autofree char *n = ns_path(ns);
    g_autofree char *url = g_strdup_printf("%s/namespaces/%s", c->base, n);
    http_resp resp = {0};
    int r = -1;
    if (call(c, "GET", url, NULL, 0, &resp, err)) {
        if (resp.status == 200)
            r = 1;
        else if (resp.status == 404)
            r = 0;
        else {
            g_autofree char *what = g_strdup_printf("namespace '%s' at %s", ns, c->uri);
            *err = describe(what, &resp);
        }
    }
    http_resp_clear(&resp);
    return r;
}

bool rest_catalog_create_namespace(rest_catalog *c, const char *ns, char **err)
{
    g_autofree char *url = g_strdup_printf("%s/namespaces", c->base);
    JsonObject *o = json_object_new();
    json_object_set_member(o, "namespace", ns_array(ns));
    json_object_set_object_member(o, "properties", json_object_new());
    g_autoptr(JsonNode) body = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(body, o);
    http_resp resp = {0};
    bool ok = call(c, "POST", url, body, 0, &resp, err);
    if (ok && resp.status != 200 && resp.status != 409) { /* 409: someone else made it */
        g_autofree char *what = g_strdup_printf("creating namespace '%s' at %s", ns, c->uri);
        *err = describe(what, &resp);
        ok = false;
    }
    http_resp_clear(&resp);
    return ok;
}

/* ------------------------------------------------------------ tables */

/* Takes a LoadTableResult ({metadata-location, metadata, config}) into t. */
static bool take_table(catalog_table *t, const byte_buf *body, const char *what, char **err)
{
    g_autoptr(JsonNode) root = parse_json(body);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    JsonNode *m = o ? json_object_get_member(o, "metadata") : NULL;
    if (!m || !JSON_NODE_HOLDS_OBJECT(m)) {
        *err = g_strdup_printf("%s: the answer has no table metadata", what);
        return false;
    }
    table_metadata tm = {.root = json_node_copy(m)};
    tm.o = json_node_get_object(tm.root);
    if (tm_format_version(&tm) != 2) {
        *err = g_strdup_printf("%s: format-version %d; this sink writes format v2 tables only", what,
                               tm_format_version(&tm));
        tm_clear(&tm);
        return false;
    }
    if (!tm_location(&tm)) {
        *err = g_strdup_printf("%s: the table metadata has no location", what);
        tm_clear(&tm);
        return false;
    }
    tm_clear(&t->meta);
    t->meta = tm;
    t->version = 1;
    g_free(t->location);
    t->location = g_strdup(tm_location(&tm));
    g_free(t->metadata_file);
    t->metadata_file = g_strdup(json_object_get_string_member_with_default(o, "metadata-location", t->location));
    return true;
}

int rest_catalog_load(rest_catalog *c, catalog_table *t, char **err)
{
    g_autofree char *url = table_url(c, t->ns, t->name);
    g_autofree char *what = g_strdup_printf("table %s.%s at %s", t->ns, t->name, c->uri);
    http_resp resp = {0};
    int r = -1;
    if (call(c, "GET", url, NULL, 0, &resp, err)) {
        if (resp.status == 200)
            r = take_table(t, &resp.body, what, err) ? 1 : -1;
        else if (resp.status == 404) {
            r = 0;
            t->version = 0;
        } else
            *err = describe(what, &resp);
    }
    http_resp_clear(&resp);
    return r;
}

static JsonNode *member_by_id(JsonObject *meta, const char *array, const char *id_key, gint64 id)
{
    JsonNode *a = json_object_get_member(meta, array);
    if (!a || !JSON_NODE_HOLDS_ARRAY(a))
        return NULL;
    JsonArray *arr = json_node_get_array(a);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *e = json_array_get_object_element(arr, i);
        if (e && json_object_get_int_member_with_default(e, id_key, -1) == id)
            return json_array_get_element(arr, i);
    }
    return NULL;
}

static JsonNode *copy_or_null(JsonNode *n) { return n ? json_node_copy(n) : json_node_new(JSON_NODE_NULL); }

/* The CreateTableRequest for `next`, a table tm_create made. */
static JsonNode *create_request(const catalog_table *t, const table_metadata *next)
{
    JsonObject *m = next->o;
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "name", t->name);
    const char *loc = tm_location(next);
    if (loc && *loc)
        json_object_set_string_member(o, "location", loc);
    gint64 sid = json_object_get_int_member_with_default(m, "current-schema-id", 0);
    json_object_set_member(o, "schema", copy_or_null(member_by_id(m, "schemas", "schema-id", sid)));
    gint64 spec = json_object_get_int_member_with_default(m, "default-spec-id", 0);
    json_object_set_member(o, "partition-spec", copy_or_null(member_by_id(m, "partition-specs", "spec-id", spec)));
    gint64 order = json_object_get_int_member_with_default(m, "default-sort-order-id", 0);
    json_object_set_member(o, "write-order", copy_or_null(member_by_id(m, "sort-orders", "order-id", order)));
    JsonObject *props = json_object_new();
    JsonNode *p = json_object_get_member(m, "properties");
    if (p && JSON_NODE_HOLDS_OBJECT(p)) {
        GList *keys = json_object_get_members(json_node_get_object(p));
        for (GList *k = keys; k; k = k->next)
            json_object_set_string_member(
                props, k->data, json_object_get_string_member_with_default(json_node_get_object(p), k->data, ""));
        g_list_free(keys);
    }
    json_object_set_string_member(props, "format-version", "2");
    json_object_set_object_member(o, "properties", props);
    json_object_set_boolean_member(o, "stage-create", FALSE);
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, o);
    return n;
}

static JsonObject *action(JsonArray *updates, const char *name)
{
    JsonObject *u = json_object_new();
    json_object_set_string_member(u, "action", name);
    json_array_add_object_element(updates, u);
    return u;
}

static JsonObject *requirement(JsonArray *reqs, const char *type)
{
    JsonObject *r = json_object_new();
    json_object_set_string_member(r, "type", type);
    json_array_add_object_element(reqs, r);
    return r;
}

static void set_id_or_null(JsonObject *o, const char *key, gint64 id)
{
    if (id >= 0)
        json_object_set_int_member(o, key, id);
    else
        json_object_set_null_member(o, key);
}

/* The table properties `next` sets that `base` lacks or has otherwise, as a
 * new object; NULL when none. (Removing properties is nothing this sink does.) */
static JsonObject *changed_properties(JsonObject *base, JsonObject *next)
{
    JsonNode *bn = json_object_get_member(base, "properties"), *nn = json_object_get_member(next, "properties");
    if (!nn || !JSON_NODE_HOLDS_OBJECT(nn))
        return NULL;
    JsonObject *b = bn && JSON_NODE_HOLDS_OBJECT(bn) ? json_node_get_object(bn) : NULL, *n = json_node_get_object(nn);
    JsonObject *out = NULL;
    GList *keys = json_object_get_members(n);
    for (GList *k = keys; k; k = k->next) {
        const char *v = json_object_get_string_member_with_default(n, k->data, NULL);
        const char *was = b ? json_object_get_string_member_with_default(b, k->data, NULL) : NULL;
        if (!v || (was && strcmp(v, was) == 0))
            continue;
        if (!out)
            out = json_object_new();
        json_object_set_string_member(out, k->data, v);
    }
    g_list_free(keys);
    return out;
}

/* The CommitTableRequest taking t->meta to `next`: what next adds (schemas,
 * snapshots, properties) and moves (current schema, main), under
 * requirements that the table is still the one t->meta describes. */
static JsonNode *commit_request(const catalog_table *t, const table_metadata *next, int64_t *added_snapshot,
                                int64_t *removed_snapshot)
{
    JsonObject *base = t->meta.o, *m = next->o;
    JsonArray *updates = json_array_new(), *reqs = json_array_new();
    *added_snapshot = *removed_snapshot = -1;
    json_object_set_string_member(requirement(reqs, "assert-table-uuid"), "uuid",
                                  json_object_get_string_member_with_default(base, "table-uuid", ""));
    JsonArray *schemas = json_object_get_array_member(m, "schemas");
    bool new_schema = false;
    for (guint i = 0; schemas && i < json_array_get_length(schemas); i++) {
        JsonObject *s = json_array_get_object_element(schemas, i);
        gint64 id = json_object_get_int_member_with_default(s, "schema-id", -1);
        if (member_by_id(base, "schemas", "schema-id", id))
            continue;
        JsonObject *u = action(updates, "add-schema");
        json_object_set_member(u, "schema", json_node_copy(json_array_get_element(schemas, i)));
        json_object_set_int_member(u, "last-column-id", tm_last_column_id(next));
        new_schema = true;
    }
    if (new_schema)
        json_object_set_int_member(requirement(reqs, "assert-last-assigned-field-id"), "last-assigned-field-id",
                                   tm_last_column_id(&t->meta));
    gint64 base_sid = json_object_get_int_member_with_default(base, "current-schema-id", 0);
    gint64 next_sid = json_object_get_int_member_with_default(m, "current-schema-id", 0);
    if (base_sid != next_sid) {
        json_object_set_int_member(requirement(reqs, "assert-current-schema-id"), "current-schema-id", base_sid);
        json_object_set_int_member(action(updates, "set-current-schema"), "schema-id", next_sid);
    }
    JsonArray *snaps = json_object_has_member(m, "snapshots") ? json_object_get_array_member(m, "snapshots") : NULL;
    for (guint i = 0; snaps && i < json_array_get_length(snaps); i++) {
        JsonObject *s = json_array_get_object_element(snaps, i);
        gint64 id = json_object_get_int_member_with_default(s, "snapshot-id", -1);
        if (member_by_id(base, "snapshots", "snapshot-id", id))
            continue;
        json_object_set_member(action(updates, "add-snapshot"), "snapshot",
                               json_node_copy(json_array_get_element(snaps, i)));
        *added_snapshot = id;
    }
    /* snapshots expired: gone from next */
    JsonArray *bsnaps =
        json_object_has_member(base, "snapshots") ? json_object_get_array_member(base, "snapshots") : NULL;
    JsonArray *gone = json_array_new();
    for (guint i = 0; bsnaps && i < json_array_get_length(bsnaps); i++) {
        gint64 id =
            json_object_get_int_member_with_default(json_array_get_object_element(bsnaps, i), "snapshot-id", -1);
        if (!member_by_id(m, "snapshots", "snapshot-id", id))
            json_array_add_int_element(gone, id);
    }
    int64_t base_cur = tm_current_snapshot_id(&t->meta), next_cur = tm_current_snapshot_id(next);
    if (json_array_get_length(gone) > 0) {
        json_object_set_array_member(action(updates, "remove-snapshots"), "snapshot-ids", gone);
        *removed_snapshot = json_array_get_int_element(gone, 0);
        if (base_cur == next_cur) { /* decided on this head: still this head */
            JsonObject *r = requirement(reqs, "assert-ref-snapshot-id");
            json_object_set_string_member(r, "ref", "main");
            set_id_or_null(r, "snapshot-id", base_cur);
        }
    } else {
        json_array_unref(gone);
    }
    if (base_cur != next_cur) {
        JsonObject *r = requirement(reqs, "assert-ref-snapshot-id");
        json_object_set_string_member(r, "ref", "main");
        set_id_or_null(r, "snapshot-id", base_cur);
        JsonObject *u = action(updates, "set-snapshot-ref");
        json_object_set_string_member(u, "ref-name", "main");
        json_object_set_string_member(u, "type", "branch");
        json_object_set_int_member(u, "snapshot-id", next_cur);
    }
    JsonObject *props = changed_properties(base, m);
    if (props)
        json_object_set_object_member(action(updates, "set-properties"), "updates", props);
    JsonObject *o = json_object_new();
    JsonObject *ident = json_object_new();
    json_object_set_member(ident, "namespace", ns_array(t->ns));
    json_object_set_string_member(ident, "name", t->name);
    json_object_set_object_member(o, "identifier", ident);
    json_object_set_array_member(o, "requirements", reqs);
    json_object_set_array_member(o, "updates", updates);
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(n, o);
    return n;
}

/* After an answer that does not say whether the commit was applied: the
 * table as it stands tells. 1 applied (t reloaded), 0 not applied (t
 * reloaded), -1 the catalog could not be asked. */
static int applied(rest_catalog *c, catalog_table *t, const table_metadata *next, int64_t snapshot, int64_t removed,
                   char **err)
{
    catalog_table probe;
    catalog_ref ref = {.io = t->io, .rest = c, .ns = t->ns, .name = t->name};
    catalog_table_init(&probe, &ref);
    int r = rest_catalog_load(c, &probe, err);
    int result = -1;
    if (r == 1) {
        if (snapshot >= 0)
            result = tm_snapshot(&probe.meta, snapshot) ? 1 : 0;
        else if (removed >= 0) /* an expiry: applied when the snapshots are gone */
            result = tm_snapshot(&probe.meta, removed) ? 0 : 1;
        else /* a schema change: applied when the table's current schema is ours */
            result = json_object_get_int_member_with_default(probe.meta.o, "current-schema-id", -1) ==
                             json_object_get_int_member_with_default(next->o, "current-schema-id", -2)
                         ? 1
                         : 0;
        /* properties: applied when the table has them as we set them */
        JsonObject *missing = result == 1 ? changed_properties(probe.meta.o, next->o) : NULL;
        if (missing) {
            result = 0;
            json_object_unref(missing);
        }
        if (result == 1) {
            tm_clear(&t->meta);
            t->meta = probe.meta;
            probe.meta = (table_metadata){0};
            t->version = 1;
            g_free(t->metadata_file);
            t->metadata_file = g_steal_pointer(&probe.metadata_file);
        }
    } else if (r == 0) {
        result = 0;
    }
    catalog_table_clear(&probe);
    return result;
}

fio_result rest_catalog_commit(rest_catalog *c, catalog_table *t, table_metadata *next, char **err)
{
    bool create = t->version == 0;
    int64_t snapshot = -1, removed = -1;
    g_autoptr(JsonNode) body = create ? create_request(t, next) : commit_request(t, next, &snapshot, &removed);
    g_autofree char *nsp = ns_path(t->ns);
    g_autofree char *url =
        create ? g_strdup_printf("%s/namespaces/%s/tables", c->base, nsp) : table_url(c, t->ns, t->name);
    g_autofree char *what =
        g_strdup_printf("%s table %s.%s at %s", create ? "creating" : "committing to", t->ns, t->name, c->uri);
    int max = MAX(1, c->hopt.max_attempts);
    for (int n = 1;; n++) {
        http_resp resp = {0};
        g_clear_pointer(err, g_free);
        /* one attempt per request: whether a retry is safe is decided here */
        if (!call(c, "POST", url, body, 1, &resp, err)) {
            http_resp_clear(&resp);
            return FIO_ERROR; /* no token: nothing was sent */
        }
        if (resp.status == 200) {
            bool ok = take_table(t, &resp.body, what, err);
            http_resp_clear(&resp);
            return ok ? FIO_OK : FIO_ERROR;
        }
        if (resp.status == 409) {
            http_resp_clear(&resp);
            return FIO_EXISTS;
        }
        bool unknown = resp.status == 0 || resp.status >= 500;
        *err = describe(what, &resp);
        http_resp_clear(&resp);
        if (!unknown)
            return FIO_ERROR; /* 4xx: refused, and it will be refused again */
        /* Timeout, reset or 5xx: maybe applied. Learn which before any retry:
         * sending it again could append the same rows twice. */
        if (create) {
            if (n >= max)
                return FIO_ERROR;
            http_backoff(&c->hopt, n, 0); /* a create that did land answers 409 (or the table) next */
            continue;
        }
        char *e2 = NULL;
        int a = applied(c, t, next, snapshot, removed, &e2);
        if (a == 1) {
            g_clear_pointer(err, g_free);
            g_free(e2);
            return FIO_OK;
        }
        if (a < 0) {
            char *both = g_strdup_printf("%s; and reloading the table to learn whether it was applied failed: %s", *err,
                                         e2 ? e2 : "unknown error");
            g_free(*err);
            g_free(e2);
            *err = both;
            return FIO_UNKNOWN;
        }
        g_free(e2);
        if (n >= max)
            return FIO_ERROR; /* known not applied */
        http_backoff(&c->hopt, n, 0);
    }
}
