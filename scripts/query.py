#!/usr/bin/env python3
"""Query the Iceberg table with DuckDB, offline.

    python3 scripts/query.py "SELECT event_type, count(*) FROM events GROUP BY 1"
    python3 scripts/query.py --table ./warehouse/ecommerce/events "SELECT * FROM events LIMIT 5"
    python3 scripts/query.py --rest "SELECT count(*) FROM events"    # the s3 profile's table

`events` is a view over iceberg_scan() of the table folder, or (--rest) over
the table in the Iceberg REST catalog named by the environment that
tests/services/seaweedfs.sh prints (ICEBERG_REST_URI, ICEBERG_WAREHOUSE,
ICEBERG_CREDENTIAL, S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), with
its files read from S3. DuckDB's iceberg
and avro extensions load from their PyPI wheels (duckdb-extension-iceberg,
duckdb-extension-avro; scripts/deps.sh installs them), so no download from
the internet is needed.
"""
import argparse
import glob
import os
import sys


def connect():
    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    con = duckdb.connect()
    for mod in (duckdb_extension_avro, duckdb_extension_iceberg):
        found = glob.glob(os.path.join(os.path.dirname(mod.__file__), "extensions", "*",
                                       "*.duckdb_extension"))
        if not found:
            sys.exit(f"query.py: no extension file in {mod.__name__}; reinstall it with pip")
        con.execute(f"LOAD '{found[0]}'")
    return con


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("sql", help="SQL; the table is the view `events`")
    ap.add_argument("--table", default=os.path.join(os.environ.get("WAREHOUSE", "./warehouse"),
                                                    "ecommerce", "events"),
                    help="table folder (default: $WAREHOUSE/ecommerce/events, or ./warehouse/...)")
    ap.add_argument("--rest", action="store_true",
                    help="the table in the REST catalog of the environment (the s3 profile's)")
    ap.add_argument("--rest-table", default=os.environ.get("ICEBERG_TABLE", "ecommerce.events"),
                    metavar="NAMESPACE.TABLE", help="with --rest (default $ICEBERG_TABLE or ecommerce.events)")
    args = ap.parse_args()
    if args.rest:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
        from lakehouse import duckdb_rest_connect, read_env_file
        env = dict(os.environ)
        state = os.environ.get("ECFLOW_SEAWEEDFS_STATE", ".ecflow/seaweedfs")
        if "ICEBERG_REST_URI" not in env and os.path.isfile(os.path.join(state, "env")):
            env.update(read_env_file(os.path.join(state, "env")))
        con = duckdb_rest_connect(env)
        con.execute(f"CREATE VIEW events AS SELECT * FROM lh.{args.rest_table}")
        con.sql(args.sql).show(max_rows=50)
        return
    if not os.path.isfile(os.path.join(args.table, "metadata", "version-hint.text")):
        sys.exit(f"query.py: {args.table} is not an Iceberg table yet (no metadata/version-hint.text); "
                 "has the pipeline committed anything?")
    con = connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM iceberg_scan('{args.table}')")
    con.sql(args.sql).show(max_rows=50)


if __name__ == "__main__":
    main()
