#!/usr/bin/env python3
"""SQLite's own cost of the rows a 100,000-user first import writes (issue 10): the floor
under entra-sync's writer. Not run by CI; run it from the repository root:

    python3 benches/sqlite_floor.py

It builds the current schema from src/store/schema_v*.sql in a temporary directory, then
inserts what `cargo bench --bench sync -- --scenario full-100k` imports: 100,000 users
(~440 bytes of row each, as the benchmark's), their 100,000 `created` audit events, 10,000
groups, the object keys of every id a membership names and 1,000,000 memberships, with
executemany in transactions of ~64,000 rows (as the writer batches), WAL, synchronous=NORMAL
and an 8 MiB cache, as entra-sync configures. No HTTP, JSON parsing or planning: it prints
the process's CPU time spent inside SQLite calls (Python's binding included) and in all.
"""
import glob, json, os, random, re, sqlite3, tempfile, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = "2026-12-04T00:00:00Z"


def schema(conn):
    files = glob.glob(os.path.join(ROOT, "src/store/schema_v*.sql"))
    for path in sorted(files, key=lambda p: int(re.search(r"v(\d+)", p).group(1))):
        conn.executescript(open(path).read())


def main():
    random.seed(1)
    ids = lambda n: [str(uuid.UUID(int=random.getrandbits(128), version=4)) for _ in range(n)]
    users, groups = ids(100_000), ids(10_000)
    links = sorted({(g, random.choice(users)) for g in groups for _ in range(100)})
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "floor.db"), isolation_level=None)
        schema(conn)
        for pragma in ["journal_mode=WAL", "synchronous=NORMAL", "cache_size=-8192",
                       "wal_autocheckpoint=16384"]:
            conn.execute(f"PRAGMA {pragma}")
        in_sqlite = 0.0
        cpu0, wall0 = time.process_time(), time.time()

        def tx(*statements):
            nonlocal in_sqlite
            t = time.process_time()
            conn.execute("BEGIN")
            for sql, rows in statements:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
            in_sqlite += time.process_time() - t

        for i in range(0, len(users), 12_800):
            batch = list(enumerate(users[i:i + 12_800], i))
            tx(("INSERT INTO users (id, attributes, seen_generation, created_at, updated_at,"
                " user_principal_name, display_name, mail, account_enabled, user_type)"
                " VALUES (?, ?, 1, ?, ?, ?, ?, ?, 1, 'Member')",
                [(u, attributes(n), NOW, NOW, f"user{n}@contoso.example", f"User {n}",
                  f"user{n}@contoso.example") for n, u in batch]),
               ("INSERT INTO audit_events (run_id, at, entity, entity_id, action)"
                " VALUES (1, ?, 'user', ?, 'created')", [(NOW, u) for _, u in batch]))
        tx(("INSERT INTO groups (id, attributes, seen_generation, created_at, updated_at,"
            " display_name) VALUES (?, '{}', 1, ?, ?, 'Group')",
            [(g, NOW, NOW) for g in groups]))
        key = {}
        for i in range(0, len(links), 64_000):
            batch = links[i:i + 64_000]
            new = sorted({x for link in batch for x in link if x not in key})
            tx(("INSERT INTO object_keys (id) VALUES (?)", [(x,) for x in new]))
            t = time.process_time()
            key.update(conn.execute(
                "SELECT k.id, k.key FROM json_each(?) j JOIN object_keys k ON k.id = j.value",
                (json.dumps(new),)).fetchall())
            in_sqlite += time.process_time() - t
            tx(("INSERT INTO memberships (group_key, member_key, member_type, added_at,"
                " seen_generation) VALUES (?, ?, 'user', 0, 1)",
                [(key[g], key[m]) for g, m in batch]))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = os.path.getsize(os.path.join(tmp, "floor.db")) / 2**20
        print(f"sqlite floor: 100000 users, 100000 audit events, 10000 groups, {len(links)} "
              f"links: wall {time.time() - wall0:.2f} s, CPU {time.process_time() - cpu0:.2f} s "
              f"in all, {in_sqlite:.2f} s inside SQLite calls; file {size:.1f} MiB")


def attributes(n):
    return json.dumps({
        "displayName": f"User {n}", "userPrincipalName": f"user{n}@contoso.example",
        "mail": f"user{n}@contoso.example", "givenName": "Given", "surname": f"Surname{n}",
        "accountEnabled": True, "userType": "Member", "jobTitle": "Engineer",
        "department": "Department of Things"})


if __name__ == "__main__":
    main()
