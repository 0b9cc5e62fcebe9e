"""Cross-domain splits of one data set by database: no database contributes to both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from workflow_scripts.core.errors import UserError


def split_by_db(
    records: Sequence[dict[str, Any]], heldout_dbs: int, *, per_db: int | None = None, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Split `records` by `db_id`: `heldout_dbs` databases drawn with `seed` are held out.

    Returns the records of the other databases (all of them, shuffled with `seed`: Spider lists its questions
    database by database, so a run's `limit` would otherwise train on a handful of databases), the held-out
    records (at most `per_db` per database, in input order) and the held-out database ids (sorted).
    """
    db_ids = sorted({str(r["db_id"]) for r in records})
    if not 0 < heldout_dbs < len(db_ids):
        raise UserError(
            f"cannot hold out {heldout_dbs} of the {len(db_ids)} databases of this data set. "
            f"Fix: choose --heldout-dbs between 1 and {len(db_ids) - 1}."
        )
    rng = random.Random(seed)
    held = sorted(rng.sample(db_ids, heldout_dbs))
    held_set, taken = set(held), dict.fromkeys(held, 0)
    train, heldout = [], []
    for record in records:
        db_id = str(record["db_id"])
        if db_id not in held_set:
            train.append(record)
        elif per_db is None or taken[db_id] < per_db:
            taken[db_id] += 1
            heldout.append(record)
    rng.shuffle(train)
    return train, heldout, held
