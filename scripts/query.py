#!/usr/bin/env python3
"""Query the Iceberg table with DuckDB, offline.

    python3 scripts/query.py "SELECT event_type, count(*) FROM events GROUP BY 1"
    python3 scripts/query.py --table ./warehouse/ecommerce/events "SELECT * FROM events LIMIT 5"

`events` is a view over iceberg_scan() of the table folder. DuckDB's iceberg
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
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.table, "metadata", "version-hint.text")):
        sys.exit(f"query.py: {args.table} is not an Iceberg table yet (no metadata/version-hint.text); "
                 "has the pipeline committed anything?")
    con = connect()
    con.execute(f"CREATE VIEW events AS SELECT * FROM iceberg_scan('{args.table}')")
    con.sql(args.sql).show(max_rows=50)


if __name__ == "__main__":
    main()
