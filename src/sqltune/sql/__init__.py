"""SQL that a model wrote: run it safely, and score it against the gold query.

    execute.py   one query on a read-only SQLite connection, bounded in time, rows and memory
    sandbox.py   the same in a worker process, killed at the deadline (untrusted SQL)
    scoring.py   BLEU, exact match, execution accuracy and Spider hardness, per group
"""
