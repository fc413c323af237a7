#!/usr/bin/env python3
"""notifications-service: delivers the messages queued in its database's `outbox` table.

A reference service written without the backup contract: it owns a PostgreSQL database
(`notifications_service`) and a config folder (`<data>/config/rules.json`), both declared in its
manifest's [backup] table, so the deployment-service backs them up on its behalf.

Delivery here appends each message, formatted by the rules, to `<data>/deliveries.log` and marks it
delivered. It talks to PostgreSQL through `psql` (the stack's Unix socket, or an external server).
"""
import json
import os
import signal
import subprocess
import sys
import time

env = os.environ
data = env["AUTOMATE_SERVICE_DATA"]
run_dir = env["AUTOMATE_RUN_DIR"]
# The stack's server on its socket, or an external one (config/external.toml: the supervisor sets pg_host
# and libpq's PGSSLMODE, PGSSLROOTCERT and PGPASSFILE, which psql reads).
host = env.get("AUTOMATE_CFG_PG_HOST") or run_dir
port = env.get("AUTOMATE_CFG_PG_PORT", "10145")
user = env.get("AUTOMATE_CFG_PG_USER", "automate")
poll = float(env.get("AUTOMATE_CFG_POLL_SECONDS", "2"))
database = "notifications_service"
stopping = False


def psql(db, sql):
    out = subprocess.run(
        ["psql", "-h", host, "-p", port, "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql],
        capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql ({db}): {out.stderr.strip()}")
    return [line for line in out.stdout.splitlines() if line]


def prepare():
    state = psql("postgres", f"SELECT datconnlimit FROM pg_database WHERE datname = '{database}'")
    if state == ["-2"]:  # left invalid by an interrupted DROP DATABASE: unusable, so made again
        psql("postgres", f'DROP DATABASE IF EXISTS "{database}"')
    if not state or state == ["-2"]:
        psql("postgres", f'CREATE DATABASE "{database}"')
    psql(database, "CREATE TABLE IF NOT EXISTS outbox (id bigserial PRIMARY KEY, message text NOT NULL, "
                   "created_at timestamptz NOT NULL DEFAULT now(), delivered_at timestamptz)")
    config = os.path.join(data, "config")
    os.makedirs(config, exist_ok=True)
    rules = os.path.join(config, "rules.json")
    if not os.path.exists(rules):
        tmp = rules + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"prefix": "[notify]", "channels": ["log"]}, f, indent=2)
        os.replace(tmp, rules)
    return rules


def main():
    def stop(signum, frame):
        global stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The database may not take connections yet (a server restarting, a certificate being replaced):
    # wait for it here rather than exit, so the supervisor sees no crash loop.
    rules_path = None
    while rules_path is None:
        try:
            rules_path = prepare()
        except Exception as e:
            print(f"notifications-service: not ready, retrying in {poll}s: {e}", file=sys.stderr, flush=True)
            if pause():
                break
    if rules_path is not None:
        print(f"notifications-service: delivering from {database}.outbox every {poll}s", flush=True)
    while not stopping:
        try:
            with open(rules_path) as f:
                rules = json.load(f)
            rows = psql(database, "UPDATE outbox SET delivered_at = now() WHERE delivered_at IS NULL "
                                  "RETURNING id || ' ' || message")
            if rows:
                with open(os.path.join(data, "deliveries.log"), "a") as log:
                    for row in rows:
                        log.write(f"{rules.get('prefix', '')} {row}\n")
                print(f"notifications-service: delivered {len(rows)}", flush=True)
        except Exception as e:  # keep running: PostgreSQL may be restarting
            print(f"notifications-service: {e}", file=sys.stderr, flush=True)
        pause()
    print("notifications-service: stopped", flush=True)


def pause():
    """Waits one poll interval, or less if a stop arrives; returns whether one did."""
    for _ in range(int(poll * 10)):
        if stopping:
            break
        time.sleep(0.1)
    return stopping


if __name__ == "__main__":
    main()
