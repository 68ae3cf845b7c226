/*
 * An Iceberg REST catalog client (the REST catalog OpenAPI spec: config,
 * OAuth2 tokens, namespaces, load / create / commit table), the catalog of
 * AWS S3 Tables, Polaris, Lakekeeper, Nessie, Unity, Gravitino, SeaweedFS.
 *
 * Commits are POST .../tables/{t} with the changes from the loaded version
 * to the new one (add-schema / set-current-schema, add-snapshot /
 * set-snapshot-ref) and requirements (assert-table-uuid,
 * assert-ref-snapshot-id, assert-current-schema-id) so that a table that
 * moved meanwhile answers 409: reload, re-apply, retry. A commit whose
 * outcome is unknown (timeout, 5xx after sending) is resolved by reloading
 * the table and looking for this commit's snapshot before any retry.
 *
 * One client per sink. Calls may come from several threads at once (the
 * stage's commits, a source's resume positions): the token is guarded.
 */
#ifndef ECF_ICEBERG_CATALOG_REST_H
#define ECF_ICEBERG_CATALOG_REST_H

#include "catalog.h"
#include "http_client.h"

typedef struct {
    const char *uri;            /* base URI; requests go to <uri>/v1/... */
    const char *warehouse;      /* sent to /v1/config; NULL: the server's default */
    const char *credential;     /* "client_id:client_secret" for OAuth2 client credentials */
    const char *token;          /* a bearer token (used when no credential) */
    const char *oauth2_uri;     /* NULL: <uri>/v1/oauth/tokens */
    const char *scope;          /* NULL: "catalog" */
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
    http_client_options http;
} rest_options;

/* Connects: a token (when a credential is given), then GET /v1/config.
 * NULL with *err naming the URI and what it answered. */
rest_catalog *rest_catalog_new(const rest_options *o, char **err);
void rest_catalog_free(rest_catalog *c);

/* Whether namespace `ns` ("a" or "a.b") exists: 1 yes, 0 no, -1 error. */
int rest_catalog_namespace_exists(rest_catalog *c, const char *ns, char **err);
bool rest_catalog_create_namespace(rest_catalog *c, const char *ns, char **err);

/* catalog.h's load and commit for a table of this catalog. */
int rest_catalog_load(rest_catalog *c, catalog_table *t, char **err);
fio_result rest_catalog_commit(rest_catalog *c, catalog_table *t, table_metadata *next, char **err);

#endif
